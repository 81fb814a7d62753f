"""jpegedit.progressive: progressive JPEG files that hold exactly the coefficients they were given,
decoded by libjpeg (jpeglib, Pillow) and Chromium, with scans chosen per image."""

import base64
import html
import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jpeg_helpers import photos, pillow_decode
from PIL import Image

from jpegedit import codec, jpegfile, libjpeg, progressive
from jpegedit.progressive import Scan


def _markers(data: bytes) -> list[int]:
    out, i = [], 2
    while data[i + 1] != 0xDA:
        out.append(data[i + 1])
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return out


def _same(a: codec.Coefficients, b: codec.Coefficients) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.components, b.components))


def _sparse(rng, grid, density, scale):
    """Coefficients like a quantised photo's: a DC field, sparse ACs that thin out with frequency."""
    a = np.zeros((*grid, 8, 8), np.int64)
    a[..., 0, 0] = rng.integers(-1024, 1017, grid)
    zz = np.arange(64)[np.argsort(progressive.ZIGZAG)].reshape(8, 8)  # zigzag index of each position
    keep = rng.random((*grid, 8, 8)) < density * np.exp(-zz / 12.0)
    ac = np.round(rng.laplace(0, scale, (*grid, 8, 8))).astype(np.int64)
    a = np.where(keep & (zz > 0), np.clip(ac, -1023, 1023), a)
    return a.astype(np.int16)


def _coefficients(rng, h, w, chroma, grayscale=False, density=0.3, scale=6.0):
    luma, chroma_grid = codec.block_grid(h, w, chroma)
    if grayscale:
        return codec.Coefficients(_sparse(rng, luma, density, scale), None, None, h, w, "444")
    y, cb, cr = (_sparse(rng, g, density, scale) for g in (luma, chroma_grid, chroma_grid))
    return codec.Coefficients(y, cb, cr, h, w, chroma)


TABLES = codec.quality_to_tables(50)


@pytest.mark.parametrize(
    "h, w, chroma, gray",
    [
        (64, 96, "444", False),
        (37, 53, "420", False),
        (45, 71, "444", False),
        (40, 24, "444", True),
        (8, 8, "420", False),
    ],
)
def test_a_progressive_file_holds_exactly_the_coefficients_it_was_given(h, w, chroma, gray):
    co = _coefficients(np.random.default_rng(h * w), h, w, chroma, gray)
    data = jpegfile.write(co, TABLES, progressive=True)
    assert 0xC2 in _markers(data) and 0xC0 not in _markers(data)  # SOF2: progressive Huffman
    back, q = jpegfile.read_coefficients(data)
    assert _same(co, back) and back.chroma == co.chroma
    np.testing.assert_array_equal(q, TABLES[: 1 if gray else 2])
    # Pillow (libjpeg-turbo) shows the same pixels as for the baseline file of the same coefficients
    np.testing.assert_array_equal(pillow_decode(data), pillow_decode(jpegfile.write(co, TABLES)))


SCRIPTS = {
    # libjpeg's jpeg_simple_progression: DC and AC successive approximation, spectral selection
    "libjpeg": [
        Scan((0, 1, 2), 0, 0, 0, 1),
        Scan((0,), 1, 5, 0, 2),
        Scan((2,), 1, 63, 0, 1),
        Scan((1,), 1, 63, 0, 1),
        Scan((0,), 6, 63, 0, 2),
        Scan((0,), 1, 63, 2, 1),
        Scan((0, 1, 2), 0, 0, 1, 0),
        Scan((2,), 1, 63, 1, 0),
        Scan((1,), 1, 63, 1, 0),
        Scan((0,), 1, 63, 1, 0),
    ],
    # deep refinement and narrow bands
    "deep": [Scan((0, 1, 2), 0, 0, 0, 3)]
    + [Scan((c,), s, e, 0, 4) for c in range(3) for s, e in ((1, 1), (2, 9), (10, 63))]
    + [Scan((0, 1, 2), 0, 0, a + 1, a) for a in (2, 1, 0)]
    + [Scan((c,), 1, 63, a + 1, a) for a in (3, 2, 1, 0) for c in range(3)],
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("chroma", ["444", "420"])
def test_every_kind_of_scan_is_coded_exactly(name, chroma):
    """Successive approximation of DC and AC (the refinement scans' correction bits and EOB runs)
    and spectral selection, on dense and on sparse coefficients."""
    rng = np.random.default_rng(7)
    for density, scale in ((0.9, 40.0), (0.05, 3.0)):
        co = _coefficients(rng, 77, 93, chroma, density=density, scale=scale)
        data = progressive.write(co.components, TABLES, co.height, co.width, co.chroma, SCRIPTS[name])
        back, _ = jpegfile.read_coefficients(data)
        assert _same(co, back)
        np.testing.assert_array_equal(pillow_decode(data), pillow_decode(jpegfile.write(co, TABLES)))


def test_long_eob_runs_and_many_buffered_correction_bits_are_forced_out_in_time():
    """An EOB run is at most 32767 blocks and a refinement scan buffers at most ~1000 correction
    bits: a gray 1456x1456 image of empty blocks (33,124 of them) and blocks whose every coefficient
    was nonzero before the last bit (each adds 63 correction bits to the run) need both flushes."""
    h = w = 1456
    y = np.zeros((h // 8, w // 8, 8, 8), np.int16)
    y[..., 0, 0] = 5
    y[:40, :, :, :] = 2  # 40 block rows: every coefficient's last bit is a correction bit
    y[:40, :, 0, 0] = 7
    co = codec.Coefficients(y, None, None, h, w, "444")
    script = [Scan((0,), 0, 0, 0, 0), Scan((0,), 1, 63, 0, 1), Scan((0,), 1, 63, 1, 0)]
    for s in (script, None):
        back, _ = jpegfile.read_coefficients(progressive.write((y,), TABLES, h, w, "444", s))
        assert _same(co, back)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    chroma=st.sampled_from(["444", "420"]),
    density=st.floats(0.0, 1.0),
    al=st.integers(0, 5),
    cut=st.integers(1, 62),
)
def test_any_coefficients_and_any_valid_script_read_back_exactly(seed, h, w, chroma, density, al, cut):
    rng = np.random.default_rng(seed)
    co = _coefficients(rng, h, w, chroma, density=density, scale=float(rng.uniform(0.5, 300)))
    script = [Scan((0, 1, 2), 0, 0, 0, al)]
    script += [Scan((c,), s, e, 0, al) for c in range(3) for s, e in ((1, cut), (cut + 1, 63)) if s <= e]
    script += [Scan((0, 1, 2), 0, 0, a + 1, a) for a in reversed(range(al))]
    script += [Scan((c,), 1, 63, a + 1, a) for a in reversed(range(al)) for c in range(3)]
    for s in (script, None):
        back, _ = jpegfile.read_coefficients(progressive.write(co.components, TABLES, h, w, chroma, s))
        assert _same(co, back)


def test_the_chosen_scans_are_no_larger_than_fixed_scripts_and_smaller_than_baseline_on_a_photo():
    image = photos()["chelsea"]
    for quality in (10, 50, 90):
        tables = codec.quality_to_tables(quality)
        co = libjpeg.encode(image, tables, chroma="444")
        chosen = len(jpegfile.write(co, tables, progressive=True))
        flat = [Scan((0, 1, 2), 0, 0, 0, 0)] + [Scan((c,), 1, 63, 0, 0) for c in range(3)]
        for script in (SCRIPTS["libjpeg"], flat):
            assert chosen <= len(progressive.write(co.components, tables, co.height, co.width, "444", script))
        assert chosen < len(jpegfile.write(co, tables, optimize_huffman=True))


def test_chromium_decodes_progressive_files_as_libjpeg_does(tmp_path):
    """Every kind of file this module writes (4:4:4, 4:2:0 at odd sizes, grayscale, deep successive
    approximation) opened as an <img> in headless Chromium: the pixels it draws are Pillow's."""
    from launch.check_report import evaluate_served, find_browser

    if find_browser() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the files were not opened in a browser")
    rng = np.random.default_rng(3)
    image = photos()["chelsea"][:123, :171]
    files = {}
    for chroma in ("444", "420"):
        co = libjpeg.encode(image, codec.quality_to_tables(30), chroma=chroma)
        files[f"photo{chroma}.jpg"] = jpegfile.write(co, codec.quality_to_tables(30), progressive=True)
        co = _coefficients(rng, 61, 83, chroma, density=0.5, scale=20.0)
        files[f"deep{chroma}.jpg"] = progressive.write(co.components, TABLES, 61, 83, chroma, SCRIPTS["deep"])
    files["gray.jpg"] = jpegfile.write(_coefficients(rng, 50, 30, "444", grayscale=True), TABLES, progressive=True)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "index.html").write_text(
        """<!doctype html><body><script type="module">
for (const name of %s) {
  const bitmap = await createImageBitmap(await (await fetch(name)).blob(), {colorSpaceConversion: "none"});
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const px = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  let s = ""; for (let i = 0; i < px.length; i += 8192) s += String.fromCharCode(...px.subarray(i, i + 8192));
  const p = document.createElement("p");
  p.dataset.name = name; p.dataset.w = bitmap.width; p.dataset.h = bitmap.height; p.dataset.rgba = btoa(s);
  document.body.append(p);
}
document.body.dataset.done = "1";
</script>"""
        % list(files)
    )
    dom = evaluate_served(tmp_path, "index.html", "document.body.dataset.done", timeout=120)
    tags = re.findall(r"<p\b[^>]*>", dom)
    assert len(tags) == len(files)
    for tag in tags:
        get = lambda k: html.unescape(re.search(rf'data-{k}="([^"]*)"', tag).group(1))  # noqa: E731
        name, w, h = get("name"), int(get("w")), int(get("h"))
        shown = np.frombuffer(base64.b64decode(get("rgba")), np.uint8).reshape(h, w, 4)[..., :3]
        want = np.asarray(Image.open(io.BytesIO(files[name])).convert("RGB"))
        assert shown.shape == want.shape, name
        assert np.abs(shown.astype(int) - want).max() <= 1, name
