"""RD curves of the reference JPEG encoders (jpegedit.baselines) on small images."""

import json

import numpy as np
import pytest

from jpegedit import baselines, report, scoring


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
    assert scoring.decode(large).shape == photo.shape


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
    baselines.rd_curves(
        images, tmp_path, ["libjpeg-444", "libjpeg-444-opt", "mozjpeg-444"], qualities=qs, lpips=False, progress=False
    )
    doc = json.loads((tmp_path / "libjpeg-444.json").read_text())
    assert len(doc["points"]) == 12 and [m["quality"] for m in doc["mean"]] == list(qs)
    assert all(m["images"] == 2 and m["lpips"] is None for m in doc["mean"])
    bpp = [m["bpp"] for m in doc["mean"]]
    assert bpp == sorted(bpp)
    s = report.summary(tmp_path, below=10.0)
    opt = s["codecs"]["libjpeg-444-opt"]
    assert opt["bd_rate_psnr"] < -5  # the same quantisation, fewer bits: a clearly negative BD-rate
    assert s["codecs"]["mozjpeg-444"]["lowest_bpp"] < s["codecs"]["libjpeg-444"]["lowest_bpp"]
    assert [p.name for p in report.plot(tmp_path)] == ["rd_psnr.png", "rd_ms_ssim.png"]
    # a rerun measures nothing new (resumable), and keeps the points
    before = (tmp_path / "libjpeg-444.json").read_text()
    baselines.rd_curves(images, tmp_path, ["libjpeg-444"], qualities=qs, lpips=False, progress=False)
    assert (tmp_path / "libjpeg-444.json").read_text() == before
    # a run on a subset of the images keeps (and averages) only theirs, measuring nothing
    baselines.rd_curves(images[:1], tmp_path, ["libjpeg-444"], qualities=qs, lpips=False, progress=False)
    sub = json.loads((tmp_path / "libjpeg-444.json").read_text())
    assert {p["image"] for p in sub["points"]} == {images[0][0]} and all(m["images"] == 1 for m in sub["mean"])
    assert sub["points"] == [p for p in json.loads(before)["points"] if p["image"] == images[0][0]]


def test_jpegedit_evaluate_writes_curves_for_baselines_and_learned_models(tmp_path, photo, capsys):
    from PIL import Image

    from jpegedit.cli import main

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(photo).save(data / "a.png")
    Image.fromarray(photo[:, ::-1]).save(data / "b.png")
    out = tmp_path / "res"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "-o",
                str(out),
                "--codecs",
                "libjpeg-444,libjpeg-444-opt",
                "--models",
                "qtables_lam0.01,attention_lam0.01",
                "--no-lpips",
            ]
        )
        == 0
    )
    assert "README.md" in capsys.readouterr().out
    # one curve per variant (model family) and file kind
    curves = {
        n: json.loads((out / f"learned-{n}.json").read_text())
        for n in ("attention-std", "attention-opt", "attention-prog", "qtables-std", "qtables-opt", "qtables-prog")
    }
    assert all(len(c["points"]) == 2 and [m["model"] for m in c["mean"]] == [c["models"][0]] for c in curves.values())
    assert curves["attention-std"]["models"] == ["attention_lam0.01"] and curves["qtables-opt"]["models"] == [
        "qtables_lam0.01"
    ]
    for fam in ("attention", "qtables"):
        std, opt, prog = curves[f"{fam}-std"], curves[f"{fam}-opt"], curves[f"{fam}-prog"]
        # the same coefficients: optimised Huffman tables and progressive scans only make the files
        # smaller, never the pictures differ
        for a, b, c in zip(std["points"], opt["points"], prog["points"]):
            assert c["bytes"] < b["bytes"] < a["bytes"] and c["psnr"] == b["psnr"] == a["psnr"]
            assert a["table_rate"] > 0 and (a["attention_rate"] > 0) == (fam == "attention")  # the rate proxy, Fig. 5
            assert a["rate"] == "paper" and abs(a["bits_estimate_bpp"] - a["bpp"]) < 0.1 * a["bpp"]  # the bits estimate
    table = (out / "README.md").read_text()
    assert "learned-attention-std | libjpeg-444" in table and "learned-qtables-opt | libjpeg-444-opt" in table
    # what `jpegedit encode` writes: every step of each family's ladder, and the --target-bpp choice
    for fam in ("attention", "qtables"):
        tool = json.loads((out / f"learned-{fam}-tool.json").read_text())
        assert len(tool["points"]) == 2 * len(tool["settings"]["steps"]) == 2 * 16  # one model: 7 + 1 + 8 steps
        bpp = [m["bpp"] for m in tool["mean"]]
        assert bpp == sorted(bpp) and bpp[-1] > 2.5 * bpp[0]  # (small images: the headers weigh)
        target = json.loads((out / f"learned-{fam}-target.json").read_text())
        assert all(p["bytes_quick"] <= p["target"] * p["pixels"] / 8 for p in target["points"])
        assert {p["target"] for p in target["points"]} and all(m["images"] == 2 for m in target["mean"])
    summary = json.loads((out / "summary.json").read_text())
    tested = {f"learned-{n}" for n in curves} | {
        f"learned-{f}-{k}" for f in ("attention", "qtables") for k in ("tool", "target")
    }
    assert {r["test"] for r in summary["learned_vs_baselines"]} == tested
    # a results folder is never written into by accident: a rerun needs --force
    rerun = [
        "evaluate",
        "--data",
        str(data),
        "-o",
        str(out),
        "--codecs",
        "libjpeg-444",
        "--models",
        "qtables_lam0.01",
        "--no-lpips",
    ]
    before = (out / "learned-qtables-std.json").read_text()
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(rerun) == 2
    assert "is not empty; pass --force to continue" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    # with --force it measures nothing new and keeps only that model's points
    assert main([*rerun, "--force"]) == 0
    assert (out / "learned-qtables-std.json").read_text() == before
    assert main(["evaluate", "--data", str(data), "-o", str(out), "--codecs", "x264", "--force"]) == 2
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
    assert [f.name for f in files] == ["attention.png", "smoothed.png", "crops.png"] and all(
        f.stat().st_size > 5000 for f in files
    )


def test_rate_proxy_study_checks_that_the_loss_rate_terms_order_the_models_as_the_real_bits(tmp_path):
    from jpegedit import baselines

    def doc(codec, rows):
        pts = [
            {"image": i, "model": m, "table_rate": t, "attention_rate": a, "bpp": b + 0.01 * i, "psnr": 30.0}
            for m, t, a, b in rows
            for i in range(2)
        ]
        (tmp_path / f"{codec}.json").write_text(
            json.dumps({"codec": codec, "points": pts, "mean": baselines.mean_curve(pts, key="model")})
        )

    doc("learned-attention-std", [("a_lam1", 3.0, 0.9, 1.0), ("a_lam0.1", 1.0, 0.5, 0.5), ("a_lam0.01", 0.6, 0.3, 0.3)])
    doc("learned-qtables-std", [("q_lam1", 3.0, 0.0, 0.9), ("q_lam0.1", 1.0, 0.0, 1.2)])  # out of order
    doc("learned-qtables-opt", [("q_lam1", 3.0, 0.0, 0.5), ("q_lam0.1", 1.0, 0.0, 0.4)])  # only -std curves count
    res = report.rate_proxy(tmp_path)
    assert set(res) == {"learned-attention-std", "learned-qtables-std"}
    att = res["learned-attention-std"]
    assert att["monotone"] and att["spearman"] == pytest.approx(1.0)
    assert [r["model"] for r in att["models"]] == ["a_lam0.01", "a_lam0.1", "a_lam1"]
    assert att["models"][0]["table_term"] == 6.0 and att["models"][0]["attention_term"] == 0.3
    assert not res["learned-qtables-std"]["monotone"] and res["learned-qtables-std"]["spearman"] == pytest.approx(-1.0)
    assert (tmp_path / "rate_proxy.png").stat().st_size > 0


def test_shipped_attention_from_shared_backbone_features_equals_the_whole_network(photo):
    import jax.numpy as jnp

    from jpegedit.encoder import attention, features
    from jpegedit.models import attention_params, list_models, load_model
    from jpegedit.network import AttentionNet

    names = [n for n in list_models() if n.startswith("attention_")][:2]
    assert names, "no shipped attention model"
    feats = features(photo)
    for name in names:
        m = load_model(name)
        want = AttentionNet().apply({"params": attention_params(m)}, jnp.asarray(photo, jnp.float32))
        for got in (attention(m, photo), attention(m, photo, feats)):
            for a, b in zip(got, want):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_variants_trained_on_the_bit_estimate_are_checked_against_that_estimate(tmp_path):
    from jpegedit import baselines

    pts = [
        {
            "image": i,
            "model": m,
            "table_rate": 1.0,
            "attention_rate": 0.0,
            "rate": "bits",
            "bpp": b,
            "bits_estimate_bpp": b * (1.02 if i else 0.98),
            "psnr": 30.0,
        }
        for m, b in (("qb_lam0.1", 0.5), ("qb_lam1", 1.0))
        for i in range(2)
    ]
    doc = {"codec": "learned-qtables_bits-std", "points": pts, "mean": baselines.mean_curve(pts, key="model")}
    (tmp_path / "learned-qtables_bits-std.json").write_text(json.dumps(doc))
    res = report.rate_proxy(tmp_path)["learned-qtables_bits-std"]
    assert res["mean_relative_error"] == pytest.approx(0.02) and res["files"] == 4
    assert res["monotone"] and res["spearman"] == pytest.approx(1.0)
    assert [r["model"] for r in res["models"]] == ["qb_lam0.1", "qb_lam1"]
    assert (tmp_path / "bits_estimate.png").stat().st_size > 0 and not (tmp_path / "rate_proxy.png").exists()


def _doc(codec, curves):
    """A codec's results document from per-image ``{image: [(bpp, psnr), ...]}``."""
    points = [
        {"image": n, "quality": i, "bpp": b, "psnr": q, "ms_ssim": None, "lpips": None}
        for n, c in curves.items()
        for i, (b, q) in enumerate(c)
    ]
    return {"codec": codec, "points": points, "mean": baselines.mean_curve(points)}


def test_the_per_image_median_bd_rate_ignores_one_outlier_image_that_moves_the_mean():
    bpp = np.array([0.1, 0.2, 0.4, 0.8])
    psnr = 25 + 6 * np.log2(bpp / 0.1)
    ref = {n: list(zip(bpp, psnr)) for n in "abc"}
    # images a and b: the same file sizes; image c: 4x the bits of the reference
    test = {"a": ref["a"], "b": ref["b"], "c": list(zip(4 * bpp, psnr))}
    e = report._bd_entry(_doc("ref", ref), _doc("test", test), 0.4)
    assert abs(e["median_bd_rate_psnr"]) < 1e-6 and e["median_images_psnr"] == 3
    assert e["bd_rate_psnr"] > 20  # the mean curve is pulled by image c alone
    assert e["median_bd_rate_ms_ssim"] is None and e["median_images_ms_ssim"] == 0  # nothing measured
    one = report._bd_entry(_doc("ref", ref), _doc("test", {"c": test["c"]}), 0.4)
    assert abs(one["median_bd_rate_psnr"] - 300.0) < 1e-6  # 4x the bits everywhere: +300%
