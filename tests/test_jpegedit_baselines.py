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
    if codec not in baselines.available():
        pytest.skip("pyjpegli (the optional peers extra) is not installed")
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


def test_jpegedit_evaluate_writes_curves_for_baselines_and_learned_models(tmp_path, photo, capsys):
    from PIL import Image

    from jpegedit.cli import main

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    Image.fromarray(photo[:, ::-1]).save(data / "b.png")
    out = tmp_path / "res"
    assert main(["evaluate", "--data", str(data), "-o", str(out), "--codecs", "libjpeg-444,libjpeg-444-opt",
                 "--models", "qtables_lam0.01,attention_lam0.01", "--no-lpips"]) == 0
    assert "README.md" in capsys.readouterr().out
    std = json.loads((out / "learned-444-std.json").read_text())
    opt = json.loads((out / "learned-444-opt.json").read_text())
    assert len(std["points"]) == 4 and [m["model"] for m in std["mean"]] == ["attention_lam0.01", "qtables_lam0.01"]
    # the same coefficients: optimised Huffman tables only make the files smaller, never the pictures differ
    for a, b in zip(std["points"], opt["points"]):
        assert b["bytes"] < a["bytes"] and b["psnr"] == a["psnr"]
    table = (out / "README.md").read_text()
    assert "learned-444-std | libjpeg-444" in table
    summary = json.loads((out / "summary.json").read_text())
    assert {r["test"] for r in summary["learned_vs_baselines"]} == {"learned-444-std", "learned-444-opt"}
    assert main(["evaluate", "--data", str(data), "-o", str(out), "--codecs", "x264"]) == 2
    assert "unknown codec" in capsys.readouterr().err


def test_qualitative_figures_attention_maps_and_the_smoothing_edit(tmp_path, photo):
    from jpegedit import figures
    from jpegedit.models import load_model

    model = load_model("attention_lam0.01")
    a_l, a_c = figures.attention_maps(photo, model)
    assert a_l.shape == (22, 25) and a_c.shape == (22, 25)  # one value per 8x8 block
    assert a_l.min() == 0.0 and a_l.max() == 1.0
    sm = figures.smoothed(photo, model)
    assert sm.shape == photo.shape
    # attention only attenuates (A in (0, 1)): the edit removes detail, never adds it
    grad = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    assert grad(sm) < grad(photo)
    files = figures.figures(photo, tmp_path, crop=96)
    assert [f.name for f in files] == ["attention.png", "smoothed.png", "crops.png"] and all(f.stat().st_size > 5000 for f in files)
