"""jpegedit.codec (the float path) and jpegedit.libjpeg (the exact path) against libjpeg-turbo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from jpeg_helpers import photos, pillow_decode, pillow_jpeg

from jpegedit import codec, jpegfile, libjpeg

QUALITIES = (10, 30, 50, 75, 90, 95)


def _equal_fraction(ours: codec.Coefficients, ref: codec.Coefficients) -> list[float]:
    return [float(np.mean(np.asarray(a) == np.asarray(b))) for a, b in zip(ours.components, ref.components)]


# --- tables ----------------------------------------------------------------------------------


def test_quality_tables_equal_the_tables_in_libjpeg_files_for_every_quality():
    image = np.zeros((8, 8, 3), np.uint8)
    for q in range(1, 101):
        _, tables = jpegfile.read_coefficients(pillow_jpeg(image, q))
        np.testing.assert_array_equal(codec.quality_to_tables(q), tables, err_msg=f"quality {q}")


def test_quality_tables_clamp_to_baseline_and_reject_bad_qualities():
    assert codec.quality_to_tables(1).max() == 255
    assert codec.quality_to_tables(1, baseline=False).max() == 121 * 5000 // 100  # no 255 clamp
    assert (codec.quality_to_tables(100) == 1).all()
    assert (codec.quality_to_tables(50)[0] == codec.STD_LUMA_TABLE).all()
    for bad in (0, 101, -5):
        with pytest.raises(ValueError, match="1..100"):
            codec.quality_to_tables(bad)
    with pytest.raises(TypeError):
        codec.quality_to_tables(50.5)
    with pytest.raises(ValueError, match="base must be one of ijg, mozjpeg"):
        codec.quality_to_tables(50, base="jpegli")


def test_mozjpeg_base_gives_the_tables_mozjpeg_writes_at_every_quality(tmp_path):
    import jpeglib

    image = np.zeros((16, 16, 3), np.uint8)
    for q in range(1, 101):
        with jpeglib.version("mozjpeg403"):
            im = jpeglib.from_spatial(image)
            im.samp_factor = "4:4:4"
            im.write_spatial(str(tmp_path / "m.jpg"), qt=q)
            written = np.asarray(jpeglib.read_dct(str(tmp_path / "m.jpg")).qt)[:2]
        np.testing.assert_array_equal(codec.quality_to_tables(q, baseline=False, base="mozjpeg"), written, f"q{q}")
    assert codec.quality_to_tables(20, base="mozjpeg").max() == 255  # the baseline clamp


# --- the exact path --------------------------------------------------------------------------


@pytest.mark.parametrize("chroma", ["444", "420"])
@pytest.mark.parametrize("name", sorted(photos()))
def test_exact_path_writes_the_coefficients_libjpeg_writes(name, chroma):
    image = photos()[name]
    for q in QUALITIES:
        ref, _ = jpegfile.read_coefficients(pillow_jpeg(image, q, chroma))
        ours = libjpeg.encode(image, codec.quality_to_tables(q), chroma=chroma)
        assert [a.shape for a in ours.components] == [a.shape for a in ref.components]
        assert _equal_fraction(ours, ref) == [1.0, 1.0, 1.0], f"{name} q{q} {chroma}"


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_exact_decoder_shows_what_libjpeg_shows(chroma):
    for name, image in photos().items():
        for q in (10, 75, 95):
            data = pillow_jpeg(image, q, chroma)
            co, tables = jpegfile.read_coefficients(data)
            np.testing.assert_array_equal(
                np.asarray(libjpeg.decode(co, tables)), pillow_decode(data), err_msg=f"{name} q{q}"
            )


def test_exact_colour_conversion_matches_libjpeg_on_every_grey_and_primary_ramp():
    # A 1-pixel-per-colour image at quality 100 (tables of ones): Y of a flat 8x8 block is its DC / 8.
    v = np.arange(256, dtype=np.uint8)
    for rgb in [(v, v, v), (v, 0 * v, 0 * v), (0 * v, v, 0 * v), (0 * v, 0 * v, v)]:
        ycc = np.asarray(libjpeg.rgb_to_ycbcr(np.stack(rgb, -1)))
        flat = np.broadcast_to(np.stack(rgb, -1)[:, None, None, :], (256, 8, 8, 3)).reshape(256 * 8, 8, 3)
        ref, _ = jpegfile.read_coefficients(pillow_jpeg(np.ascontiguousarray(flat), 100))
        for c, comp in enumerate(ref.components):
            np.testing.assert_array_equal(comp[:, 0, 0, 0] // 8 + 128, ycc[:, c])


def test_exact_path_is_batched_and_jittable():
    image = photos()["noise_37x53"]
    tables = codec.quality_to_tables(50)
    batch = np.stack([image, image[::-1], 255 - image])
    many = libjpeg.encode(batch, tables, chroma="420")
    for i in range(3):
        one = libjpeg.encode(batch[i], tables, chroma="420")
        for a, b in zip(many.components, one.components):
            np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b))
    jitted = jax.jit(lambda x, q: libjpeg.encode_ycbcr(libjpeg.rgb_to_ycbcr(x), q, chroma="420"))(image, tables)
    np.testing.assert_array_equal(np.asarray(jitted.cb), np.asarray(many.cb)[0])


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_large_images_are_encoded_band_by_band_with_the_same_result(chroma):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (libjpeg.BAND_ROWS + 77, 24, 3), dtype=np.uint8)
    tables = codec.quality_to_tables(80)
    whole = libjpeg.encode(image, tables, chroma=chroma)
    banded = libjpeg.encode(image, tables, chroma=chroma, max_band_pixels=1000)
    assert (banded.height, banded.width, banded.chroma) == (whole.height, whole.width, chroma)
    for a, b in zip(banded.components, whole.components):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_exact_path_refuses_float_images_and_fractional_tables():
    with pytest.raises(TypeError, match="uint8"):
        libjpeg.encode(np.zeros((8, 8, 3), np.float32), codec.quality_to_tables(50))
    with pytest.raises(ValueError, match="integer"):
        libjpeg.encode(np.zeros((8, 8, 3), np.uint8), codec.quality_to_tables(50) + 0.5)


# --- the float path --------------------------------------------------------------------------


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_float_path_agrees_with_libjpeg_on_nearly_every_coefficient(chroma):
    """The exact DCT of rounded YCbCr: >= 99% identical at Q <= 75, never more than 4 apart."""
    for name in ("astronaut", "chelsea", "coffee"):
        image = photos()[name]
        for q in QUALITIES:
            ref, _ = jpegfile.read_coefficients(pillow_jpeg(image, q, chroma))
            ycc = jnp.round(codec.rgb_to_ycbcr(image))
            ours = codec.encode_ycbcr(ycc, codec.quality_to_tables(q), chroma=chroma)
            fractions = _equal_fraction(ours, ref)
            worst = max(int(np.abs(np.asarray(a) - b).max()) for a, b in zip(ours.components, ref.components))
            assert worst <= 4, f"{name} q{q}: a coefficient differs by {worst}"
            if q <= 75:
                assert min(fractions) >= 0.99, f"{name} q{q}: {fractions}"
            else:
                assert min(fractions) >= 0.95, f"{name} q{q}: {fractions}"


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_float_decoder_is_within_a_few_levels_of_libjpeg(chroma):
    image = photos()["astronaut"]
    for q in (10, 50, 95):
        data = pillow_jpeg(image, q, chroma)
        co, tables = jpegfile.read_coefficients(data)
        ours = np.asarray(codec.decode(co, tables, round_samples=True))
        diff = np.abs(codec.round_half_away(ours) - pillow_decode(data))
        assert diff.max() <= 3 and diff.mean() < 0.35, (q, diff.max(), diff.mean())


def test_dct_is_orthonormal_and_is_jpegs_dct():
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8), minval=-128, maxval=127)
    np.testing.assert_allclose(codec.idct2d(codec.dct2d(x)), x, atol=1e-3)
    np.testing.assert_allclose(np.sum(codec.dct2d(x) ** 2), np.sum(x**2), rtol=1e-5)
    flat = codec.dct2d(jnp.full((8, 8), 10.0))
    assert float(flat[0, 0]) == pytest.approx(80.0, abs=1e-4)  # DC = 8 x mean
    np.testing.assert_allclose(flat.at[0, 0].set(0), 0, atol=1e-4)
    # A horizontal cosine lands in row 0 (v = 0), column u: natural [v, u] order.
    n = np.arange(8)
    wave = np.broadcast_to(np.cos((2 * n + 1) * 3 * np.pi / 16), (8, 8))
    c = np.asarray(codec.dct2d(jnp.asarray(wave, jnp.float32)))
    assert np.unravel_index(np.abs(c).argmax(), c.shape) == (0, 3)


def test_colour_transform_round_trips_and_is_jfif():
    rgb = jax.random.uniform(jax.random.key(1), (4, 5, 3), minval=0, maxval=255)
    np.testing.assert_allclose(codec.ycbcr_to_rgb(codec.rgb_to_ycbcr(rgb)), rgb, atol=1e-3)
    np.testing.assert_allclose(codec.rgb_to_ycbcr(jnp.array([255.0, 255.0, 255.0])), [255, 128, 128], atol=1e-3)
    np.testing.assert_allclose(codec.rgb_to_ycbcr(jnp.array([255.0, 0.0, 0.0])), [76.245, 84.972, 255.5], atol=1e-2)


def test_blocks_are_laid_out_rows_then_columns():
    plane = jnp.arange(16 * 24, dtype=jnp.float32).reshape(16, 24)
    b = codec.blockify(plane)
    assert b.shape == (2, 3, 8, 8)
    np.testing.assert_array_equal(b[1, 2], plane[8:16, 16:24])
    np.testing.assert_array_equal(codec.unblockify(b), plane)
    with pytest.raises(ValueError, match="multiples of 8"):
        codec.blockify(jnp.zeros((9, 8)))


@pytest.mark.parametrize("size", [(1, 1), (7, 9), (17, 33), (770, 513)])
@pytest.mark.parametrize("chroma", ["444", "420", "gray"])
def test_odd_sizes_round_trip(size, chroma, tmp_path):
    rng = np.random.default_rng(size[0] * 1000 + size[1])
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    smooth = np.stack([yy % 256, xx % 256, (yy + xx) % 256], -1)
    image = np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)
    if chroma == "gray":
        image, mode = image[..., :1], "444"
    else:
        mode = chroma
    tables = codec.quality_to_tables(90)
    # exact path: file -> Pillow shows what our decoder shows, coefficients read back, equal libjpeg's
    co = libjpeg.encode(image, tables, chroma=mode)
    data = jpegfile.write(co, tables)
    assert pillow_decode(data).shape == image.shape
    np.testing.assert_array_equal(pillow_decode(data), np.asarray(libjpeg.decode(co, tables)))
    back, _ = jpegfile.read_coefficients(data)
    for a, b in zip(back.components, co.components):
        np.testing.assert_array_equal(a, np.asarray(b))
    ref, _ = jpegfile.read_coefficients(pillow_jpeg(image, 90, mode))
    assert _equal_fraction(co, ref) == [1.0] * len(co.components)
    # float path: same shapes, decodes back close to the image at quality 90
    decoded, fco = codec.roundtrip(image, tables, chroma=mode, rounding="hard")
    assert decoded.shape == image.shape
    assert [a.shape for a in fco.components] == [a.shape for a in co.components]
    assert float(jnp.abs(decoded - image).mean()) < 12


# --- rounding and gradients ------------------------------------------------------------------


def test_rounding_modes_forward_values():
    x = jnp.array([-2.5, -1.4, -0.5, 0.2, 0.5, 1.5, 2.6])
    np.testing.assert_array_equal(codec.round_with(x, "hard"), [-3, -1, -1, 0, 1, 2, 3])  # ties away from 0
    np.testing.assert_array_equal(codec.round_with(x, "ste"), codec.round_with(x, "hard"))
    np.testing.assert_array_equal(codec.round_with(x, "cubic_ste"), codec.round_with(x, "hard"))
    r = codec.round_with(x, "hard")
    np.testing.assert_allclose(codec.round_with(x, "cubic"), r + (x - r) ** 3, atol=1e-6)
    noisy = codec.round_with(x, "noise", jax.random.key(0))
    assert float(jnp.abs(noisy - x).max()) <= 0.5 and not np.allclose(noisy, x)
    with pytest.raises(ValueError, match="PRNG key"):
        codec.round_with(x, "noise")
    with pytest.raises(ValueError, match="rounding must be one of"):
        codec.round_with(x, "floor")


def test_rounding_modes_gradients():
    x = jnp.array([-1.3, 0.2, 0.45, 2.9])
    g = {m: jax.grad(lambda v, m=m: codec.round_with(v, m, jax.random.key(0)).sum())(x) for m in codec.ROUNDING_MODES}
    np.testing.assert_array_equal(g["hard"], 0.0)
    np.testing.assert_array_equal(g["ste"], 1.0)
    np.testing.assert_array_equal(g["noise"], 1.0)
    np.testing.assert_array_equal(g["none"], 1.0)
    np.testing.assert_array_equal(codec.round_with(x, "none"), x)
    r = codec.round_half_away(x)
    np.testing.assert_allclose(g["cubic"], 3 * (x - r) ** 2, rtol=1e-5)
    np.testing.assert_allclose(g["cubic_ste"], g["cubic"], rtol=1e-5)


@pytest.mark.parametrize("rounding", ["cubic", "noise"])
@pytest.mark.parametrize("chroma", ["444", "420"])
def test_smooth_modes_pass_numerical_gradient_checks(rounding, chroma):
    image = jnp.asarray(photos()["gradient_61x83"][:16, :16], jnp.float32)
    tables = jnp.asarray(codec.quality_to_tables(50), jnp.float32)
    key = jax.random.key(3)

    def f(img, q):
        out, _ = codec.roundtrip(img, q, chroma=chroma, rounding=rounding, key=key, clip=False)
        return out

    with jax.enable_x64(True):
        check_grads(f, (image.astype(jnp.float64), tables.astype(jnp.float64)), order=1, modes=["rev"], eps=1e-4)


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_cubic_ste_gives_finite_nonzero_gradients_to_image_and_tables(chroma):
    image = jnp.asarray(photos()["chelsea"][:64, :96], jnp.float32)
    tables = jnp.asarray(codec.quality_to_tables(50), jnp.float32)

    def loss(img, q):
        out, _ = codec.roundtrip(img, q, chroma=chroma, rounding="cubic_ste")
        return jnp.mean((out - image) ** 2)

    gi, gq = jax.grad(loss, argnums=(0, 1))(image, tables)
    for g in (gi, gq):
        assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
    assert float(jnp.abs(gq[1]).max()) > 0  # the chroma table learns too


def test_float_path_vmaps_and_jits():
    images = (
        jnp.asarray(np.stack([photos()["noise_37x53"]] * 2), jnp.float32) * jnp.array([1.0, 0.5])[:, None, None, None]
    )
    tables = jnp.asarray(codec.quality_to_tables(75), jnp.float32)
    f = jax.jit(lambda x: codec.roundtrip(x, tables, chroma="420", rounding="hard")[0])
    batched = f(images)
    mapped = jax.vmap(f)(images)
    single = f(images[1])
    np.testing.assert_allclose(batched, mapped, atol=1e-3)
    np.testing.assert_allclose(batched[1], single, atol=1e-3)


def test_encode_rejects_shapes_it_cannot_read():
    tables = codec.quality_to_tables(50)
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        codec.encode(jnp.zeros((8, 8)), tables)
    with pytest.raises(ValueError, match="qtables"):
        codec.encode(jnp.zeros((8, 8, 3)), jnp.ones((3, 8, 8)))
    with pytest.raises(ValueError, match="chroma"):
        codec.encode(jnp.zeros((8, 8, 3)), tables, chroma="422")


# --- Kodak (the full sweep is benchmarks/jpeg_parity.py) -------------------------------------


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_exact_path_on_a_kodak_image(kodak_dir, chroma):
    from compat.images import load_image

    image = load_image(kodak_dir / "kodim01.png")
    for q in (10, 95):
        ref, _ = jpegfile.read_coefficients(pillow_jpeg(image, q, chroma))
        assert _equal_fraction(libjpeg.encode(image, codec.quality_to_tables(q), chroma=chroma), ref) == [1.0] * 3
