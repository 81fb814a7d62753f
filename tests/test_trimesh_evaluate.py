"""trimesh_decode.evaluate: the paper's evaluation on a tiny dataset (scores, tables, figures, tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from trimesh_helpers import smoke_config

REPO = Path(__file__).resolve().parents[1]


def test_evaluation_writes_json_table_and_figures(tiny_dataset, tmp_path):
    from compat.trainer import train
    from trimesh_decode.evaluate import EvaluationError, evaluate
    from trimesh_decode.models import export_run
    from trimesh_decode.task import make_task

    config = smoke_config(tiny_dataset, steps=2, log_every=1, checkpoint_every=2)
    train(config, tmp_path / "run", make_task(config), progress=False)
    npz = export_run(tmp_path / "run", "tiny", command="pytest", directory=tmp_path)
    images = tmp_path / "held_out"
    images.mkdir()
    for p in sorted((tiny_dataset / "crops").iterdir())[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "eval"
    s = evaluate(
        images, out, models=[str(npz), str(tmp_path / "run")], target_bytes=120, iterations=40, processes=1, figures=2
    )
    assert s["images"] == 3 and set(s["mean"]) >= {"interp", "neural", "neural_run", "blur1", "blur5", "webp", "jpeg"}
    assert 0.0 <= s["improved_psnr"] <= 1.0
    r = s["recall_test"]["top1_in_top5"]
    assert r["neural"] - r["interp"] == r["gained"] - r["lost"] and 0 <= r["interp"] <= 3
    # the second model (the run the first was exported from, float32 vs float16 weights) against the first
    v = s["versus_neural"]["neural_run"]
    assert v["delta_psnr"] == pytest.approx(s["mean"]["neural_run"]["psnr"] - s["mean"]["neural"]["psnr"], abs=1e-5)
    res = json.loads((out / "evaluation.json").read_text())
    assert len(res["images"]) == 3 and res["images"][0]["webp"]["bytes"] <= res["images"][0]["preview_bytes"]
    assert "paper PSNR" in (out / "evaluation.md").read_text()
    assert len(list((out / "figures").glob("*.png"))) == 2
    (out / "figures" / "compare_gone.png").write_bytes(b"an earlier run's pick")
    # blur is blur: five passes are smoother than one, which is smoother than none
    assert s["mean"]["blur5"]["ssim"] != s["mean"]["blur1"]["ssim"]
    # a rerun reuses the cached previews (same bytes)
    before = {p.name: p.read_bytes() for p in (out / "previews").glob("*.tri")}
    s = evaluate(
        images,
        out,
        models=[str(npz)],
        target_bytes=120,
        iterations=40,
        processes=1,
        figures=1,
        baselines=False,
        symmetries=8,
    )
    assert before == {p.name: p.read_bytes() for p in (out / "previews").glob("*.tri")}
    # the first model averaged over the 8 symmetries is one more decoder, scored against the single pass
    assert s["models"] == ["tiny", "tiny_x8"] and set(s["neural_seconds_per_image"]) == {"neural", "neural_tiny_x8"}
    assert s["versus_neural"]["neural_tiny_x8"]["delta_psnr"] != 0.0
    with pytest.raises(EvaluationError, match="symmetries must be one of 1, 2, 4, 8, got 3"):
        evaluate(images, out, models=[str(npz)], processes=1, figures=0, baselines=False, symmetries=3)
    assert len(list((out / "figures").glob("compare_*.png"))) == 1  # this run's pick; none left stale


def test_evaluation_of_a_dataset_scores_the_previews_stored_in_it(tiny_dataset, tmp_path, capsys):
    import shutil

    from compat import metrics
    from compat.images import load_image
    from trimesh_decode import raster_cpu
    from trimesh_decode.bitstream import from_bytes
    from trimesh_decode.cli import main
    from trimesh_decode.evaluate import EvaluationError, evaluate

    out = tmp_path / "eval"
    s = evaluate(None, out, models=["mobile"], figures=0, baselines=False, limit=3, dataset=tiny_dataset)
    assert s["images"] == 3 and s["views"] == "dataset" and s["source"] == str(tiny_dataset)
    res = json.loads((out / "evaluation.json").read_text())
    crops = sorted((tiny_dataset / "crops").iterdir())[:3]
    assert [r["image"] for r in res["images"]] == [c.stem for c in crops]
    for row, crop in zip(res["images"], crops):
        tri = tiny_dataset / "previews" / (crop.stem + ".tri")  # the stored bitstream, not a new encoding
        assert row["preview_bytes"] == tri.stat().st_size
        interp = raster_cpu.interpolate(from_bytes(tri.read_bytes()), 256)
        want = float(metrics.psnr(np.float32(load_image(crop))[None], np.float32(interp)[None])[0])
        assert row["interp"]["psnr"] == pytest.approx(want, abs=1e-4)
    assert not (out / "previews").exists()
    assert "stored previews" in (out / "evaluation.md").read_text()
    # a damaged stored preview is named; --images and --dataset together are refused
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dataset, broken)
    first = sorted((broken / "previews").iterdir())[0]
    first.write_bytes(first.read_bytes()[:20])
    with pytest.raises(EvaluationError, match=first.name):
        evaluate(None, tmp_path / "e2", models=["mobile"], figures=0, baselines=False, dataset=broken)
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                str(tiny_dataset),
                "--images",
                str(tiny_dataset / "crops"),
                "-o",
                str(tmp_path / "e3"),
            ]
        )
        == 2
    )
    assert "give --images or --dataset, not both" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", str(tmp_path / "none"), "-o", str(tmp_path / "e4")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_tile_views_are_the_images_own_pixels_on_a_centred_grid():
    from trimesh_decode.evaluate import square_256, views_of

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (530, 800, 3), np.uint8)  # 2 x 3 whole tiles, margins 9 and 16
    tiles = views_of("k", image, "tiles")
    assert [n for n, _ in tiles] == ["k_r0c0", "k_r0c1", "k_r0c2", "k_r1c0", "k_r1c1", "k_r1c2"]
    assert np.array_equal(tiles[0][1], image[9:265, 16:272]) and np.array_equal(tiles[5][1], image[265:521, 528:784])
    # an image too small for one tile falls back to the centre view; the centre view is one resized square
    small = image[:200, :300]
    assert [n for n, _ in views_of("s", small, "tiles")] == ["s"]
    assert np.array_equal(views_of("k", image)[0][1], square_256(image))
    with pytest.raises(ValueError, match="views"):
        views_of("k", image, "corners")


def test_scores_taken_in_chunks_with_the_originals_classified_once_equal_the_scores_of_the_whole_set():
    from compat import metrics
    from trimesh_decode.evaluate import SEMANTIC, _logits, _scores

    rng = np.random.default_rng(2)
    originals = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    recons = np.clip(originals.astype(int) + rng.integers(-40, 41, originals.shape), 0, 255).astype(np.uint8)
    logits = _logits(originals, chunk=2)
    np.testing.assert_allclose(logits, metrics.classify(originals.astype(np.float32)), rtol=1e-4, atol=1e-3)
    whole, chunked = _scores(originals, recons, logits, chunk=5), _scores(originals, recons, logits, chunk=2)
    assert set(whole) == set(chunked) == {"psnr", "ssim", *SEMANTIC}
    direct = metrics.semantic_similarity(originals.astype(np.float32), recons.astype(np.float32))
    for k in whole:
        assert chunked[k].shape == (5,)
        np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-5, atol=1e-4, err_msg=k)
        if k in SEMANTIC:  # the same as classifying the originals beside each reconstruction
            np.testing.assert_allclose(whole[k], np.asarray(direct[k], np.float64), rtol=1e-4, atol=1e-3, err_msg=k)


def test_recall_test_counts_the_images_only_one_decoder_gets_right():
    from trimesh_decode.evaluate import _mcnemar

    interp = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    neural = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    r = _mcnemar(neural, interp)
    assert (r["interp"], r["neural"], r["gained"], r["lost"]) == (2, 6, 5, 1)
    assert r["p"] == pytest.approx(0.21875)  # 2 * P(X <= 1), X ~ Binomial(6, 1/2) = 2 * 7/64
    assert _mcnemar(interp, interp)["p"] is None  # no discordant image: nothing to test
