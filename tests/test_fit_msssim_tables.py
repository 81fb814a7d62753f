"""launch/fit_msssim_tables.py: the table family it searches, and its refusals (exit 2, nothing written)."""

import importlib.util
from pathlib import Path

import numpy as np

from jpegedit import codec

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("fit_msssim_tables", REPO / "launch" / "fit_msssim_tables.py")
fit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fit)


def test_untilted_shape_is_mozjpegs_table_and_the_tilt_coarsens_only_high_frequencies():
    np.testing.assert_array_equal(fit.shaped_tables(50, 0.0, 1.0), codec.quality_to_tables(50, base="mozjpeg"))
    flat, tilted = fit.shaped_tables(60, 0.0, 1.0), fit.shaped_tables(60, 1.0, 1.0)
    assert tilted[0, 0, 0] < flat[0, 0, 0] and tilted[0, 7, 6] > flat[0, 7, 6]  # DC finer, high frequencies coarser
    half = fit.shaped_tables(60, 1.0, 0.5)
    np.testing.assert_array_equal(half[0], tilted[0])
    assert half[1].mean() < 0.6 * tilted[1].mean()
    assert fit.shaped_tables(3, 1.0, 1.0).max() == 255 and fit.shaped_tables(100, 1.0, 1.0).min() == 1


def test_refuses_bad_arguments_and_existing_models_with_one_line(tmp_path, capsys):
    photos = tmp_path / "photos"
    for sub in ("cbsd68", "mcmaster", "wikipedia"):
        (photos / sub).mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "qtables_msssim_q40.npz").write_bytes(b"mine")
    cases = [
        (["-o", str(tmp_path / "out"), "--data", str(photos), "--qualities", "40"], "--force"),
        (["-o", str(tmp_path / "new"), "--data", str(photos), "--qualities", "0"], "1..100"),
        (["-o", str(tmp_path / "new"), "--data", str(tmp_path / "none")], "cbsd68/"),
        (["-o", str(tmp_path / "new"), "--data", str(photos), "--tilts", "a"], "comma-separated"),
    ]
    for argv, words in cases:
        assert fit.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err
    assert (tmp_path / "out" / "qtables_msssim_q40.npz").read_bytes() == b"mine"
    assert not (tmp_path / "new").exists()


def test_the_search_scores_real_files_and_writes_models_the_ms_ssim_tune_can_load(tmp_path, monkeypatch, capsys):
    from jpeg_helpers import photos as test_photos

    from jpegedit.models import load_model

    # two photos that ship with scikit-image instead of ../shared/data/photos, and a shorter curve
    crops = [(n, np.ascontiguousarray(test_photos()[n][:176, :232])) for n in ("astronaut", "coffee")]
    monkeypatch.setattr(fit, "training_photos", lambda root: crops)
    monkeypatch.setattr(fit, "FIT_QUALITIES", (8, 20, 40, 75))
    monkeypatch.setattr(fit, "MOZ_QUALITIES", (5, 10, 20, 40, 60, 80, 95))
    photos = tmp_path / "photos"
    for sub in ("cbsd68", "mcmaster", "wikipedia"):
        (photos / sub).mkdir(parents=True)
    argv = ["-o", str(tmp_path / "m"), "--data", str(photos), "--tilts", "0,1", "--chromas", "1", "--alphas", "0.3"]
    assert fit.main([*argv, "--qualities", "30,50"]) == 0
    said = capsys.readouterr().out
    assert "2 candidates on 2 photos" in said and "wrote qtables_msssim_q30, qtables_msssim_q50" in said
    m = load_model(tmp_path / "m" / "qtables_msssim_q30.npz")  # its sha256 checked against the .json
    search = m.meta["fit"]["search"]
    assert [r["tilt"] for r in search] == [0.0, 1.0] and all(len(r["bd_ms_ssim"]) == 3 for r in search)
    best = min(search, key=lambda r: r["objective"])
    assert m.meta["fit"]["tilt"] == best["tilt"] and m.distortion == "ms_ssim" and m.rate == "bits"
    np.testing.assert_array_equal(m.tables, fit.shaped_tables(30, best["tilt"], 1.0))
