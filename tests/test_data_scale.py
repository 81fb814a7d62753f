"""launch/data_scale.py: one run per preview folder, every checkpoint scored on held-out images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launch"))

TINY = "steps=2,checkpoint_every=1,batch_size=8,data.crop=64,model.width=16,model.stacks=1,model.depth=2"


def test_each_folder_trains_once_and_every_checkpoint_is_scored_against_the_same_interpolation(
    tiny_dataset, tmp_path, capsys
):
    import data_scale  # lazy: the launch folder is on the path only for these tests

    images = tmp_path / "held_out"
    images.mkdir()
    for p in sorted((tiny_dataset / "crops").iterdir())[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    out, runs = tmp_path / "study", tmp_path / "runs"
    args = ["--dataset", f"3={tiny_dataset}", "--dataset", f"1={tiny_dataset}", "--images", str(images)]
    args += ["--runs", str(runs), "--set", TINY, "-o", str(out)]
    assert data_scale.main(args) == 0
    res = json.loads((out / "scale.json").read_text())
    assert [(r["photos"], r["step"]) for r in res["rows"]] == [(1, 1), (1, 2), (3, 1), (3, 2)]
    per = json.loads((out / "evaluation" / "evaluation.json").read_text())["images"]
    for row in res["rows"]:
        gains = [r[f"neural_p{row['photos']}_s{row['step']}"]["psnr"] - r["interp"]["psnr"] for r in per]
        assert row["gain_db"] == round(float(np.mean(gains)), 3) and row["crops"] == 8
    # the fits are of what the rows say: the gain at the last step against log10(photos)
    last = [r for r in res["rows"] if r["step"] == 2]
    b, a = np.polyfit(np.log10([1, 3]), [r["gain_db"] for r in last], 1)
    assert abs(res["fit_photos"]["b_per_decade"] - round(b, 4)) < 1e-4
    assert (out / "scale.png").stat().st_size > 0 and "| photos |" in (out / "scale.md").read_text()
    stamps = sorted(p.stat().st_mtime_ns for p in runs.rglob("*.npz"))
    assert len(stamps) == 4
    assert data_scale.main(args) == 0  # a rerun resumes: the runs are done, the exports kept
    assert sorted(p.stat().st_mtime_ns for p in runs.rglob("*.npz")) == stamps
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # a folder that is not a dataset: argparse's one line, status 2
        data_scale.main(["--dataset", f"1={tmp_path}", "--images", str(images), "-o", str(out)])
    assert e.value.code == 2 and "expected PHOTOS=FOLDER" in capsys.readouterr().err
    assert data_scale.main(args[:4] + ["--images", str(tmp_path / "none"), "-o", str(out)]) == 2
    assert "--images must be a folder" in capsys.readouterr().err
