"""RD curves of the reference JPEG encoders (jpegedit.baselines) on small images."""

import json

import numpy as np
import pytest

from jpegedit import baselines


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:176, 0:200]
    x = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 90 * np.cos(yy / 13.0), (xx + yy) % 256], -1)
    return np.clip(x + rng.normal(0, 6, x.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("codec", list(baselines.CODECS))
def test_every_codec_writes_standard_jpegs_whose_size_grows_with_quality(codec, photo):
    small, large = baselines.encode(codec, photo, 5), baselines.encode(codec, photo, 80)
    assert small[:2] == b"\xff\xd8" and len(small) < len(large)
    assert baselines.decode(large).shape == photo.shape


def test_the_codecs_differ_as_documented(photo):
    q = 20
    std = len(baselines.encode("libjpeg-444", photo, q))
    assert len(baselines.encode("libjpeg-444-opt", photo, q)) < std  # optimised Huffman tables
    assert len(baselines.encode("libjpeg-420", photo, q)) < std  # half the chroma
    assert len(baselines.encode("mozjpeg-444", photo, q)) < std  # trellis + optimised coding
    with pytest.raises(ValueError, match="unknown codec"):
        baselines.encode("webp", photo, q)


def test_curves_summary_and_plots(tmp_path, photo):
    images = [("a", photo), ("b", photo[::-1].copy())]
    qs = (2, 5, 10, 20, 40, 80)
    baselines.rd_curves(images, tmp_path, ["libjpeg-444", "libjpeg-444-opt", "mozjpeg-444"], qualities=qs,
                        lpips=False, progress=False)
    doc = json.loads((tmp_path / "libjpeg-444.json").read_text())
    assert len(doc["points"]) == 12 and [m["quality"] for m in doc["mean"]] == list(qs)
    assert all(m["images"] == 2 and m["lpips"] is None for m in doc["mean"])
    bpp = [m["bpp"] for m in doc["mean"]]
    assert bpp == sorted(bpp)
    s = baselines.summary(tmp_path, below=10.0)
    opt = s["codecs"]["libjpeg-444-opt"]
    assert opt["bd_rate_psnr"] < -5  # the same quantisation, fewer bits: a clearly negative BD-rate
    assert s["codecs"]["mozjpeg-444"]["lowest_bpp"] < s["codecs"]["libjpeg-444"]["lowest_bpp"]
    assert [p.name for p in baselines.plot(tmp_path)] == ["rd_psnr.png", "rd_ms_ssim.png"]
    # a rerun measures nothing new (resumable), and keeps the points
    before = (tmp_path / "libjpeg-444.json").read_text()
    baselines.rd_curves(images, tmp_path, ["libjpeg-444"], qualities=qs, lpips=False, progress=False)
    assert (tmp_path / "libjpeg-444.json").read_text() == before
