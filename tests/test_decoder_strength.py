"""launch/decoder_strength.py: the neural gain against the encoder's budget, one evaluation per budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launch"))


def test_the_gain_per_budget_is_the_mean_of_the_images_own_gains_and_a_rerun_reuses_the_previews(
    tiny_dataset, tmp_path, capsys
):
    import decoder_strength

    images = tmp_path / "held_out"
    images.mkdir()
    for p in sorted((tiny_dataset / "crops").iterdir())[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "study"
    args = ["--images", str(images), "--iterations", "40", "10", "--model", "mobile", "-o", str(out)]
    assert decoder_strength.main(args) == 0
    res = json.loads((out / "strength.json").read_text())
    assert [r["iterations"] for r in res["rows"]] == [10, 40]  # sorted
    for row in res["rows"]:
        per = json.loads((out / f"it{row['iterations']}" / "evaluation.json").read_text())["images"]
        gains = [r["neural"]["psnr"] - r["interp"]["psnr"] for r in per]
        assert row["images"] == 2 and row["mobile"]["gain_db"] == round(float(np.mean(gains)), 3)
        assert row["mobile"]["improved"] == round(float(np.mean(np.array(gains) > 0)), 3)
    table = (out / "strength.md").read_text().splitlines()
    assert table[2].startswith("| iterations | interpolation (dB) | mobile: gain") and len(table) == 6
    assert (out / "strength.png").stat().st_size > 0
    previews = sorted((out / "it10" / "previews").glob("*.tri"))
    stamps = [p.stat().st_mtime_ns for p in previews]
    assert decoder_strength.main(args) == 0  # resumed: the cached previews are read, not encoded again
    assert [p.stat().st_mtime_ns for p in previews] == stamps
    capsys.readouterr()
    assert (
        decoder_strength.main(
            ["--images", str(tmp_path / "none"), "--iterations", "5", "--model", "mobile", "-o", str(out)]
        )
        == 2
    )
    assert "--images must be a folder" in capsys.readouterr().err


def test_each_further_model_is_compared_image_by_image_with_the_first(tiny_dataset, tmp_path, capsys):
    import decoder_strength

    images = tmp_path / "held_out"
    images.mkdir()
    for p in sorted((tiny_dataset / "crops").iterdir())[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "study"
    args = ["--images", str(images), "--iterations", "20", "--model", "mobile", "--model", "mobile_web", "-o", str(out)]
    assert decoder_strength.main(args) == 0
    capsys.readouterr()
    row = json.loads((out / "strength.json").read_text())["rows"][0]
    per = json.loads((out / "it20" / "evaluation.json").read_text())["images"]
    d = np.array([r["neural_mobile_web"]["psnr"] - r["neural"]["psnr"] for r in per])
    assert row["mobile_web"]["vs_first_db"] == round(float(d.mean()), 4)
    assert row["mobile_web"]["vs_first_se"] == round(float(d.std(ddof=1) / np.sqrt(3)), 4)
    assert "vs_first_db" not in row["mobile"]
    table = (out / "strength.md").read_text()
    assert "| iterations | mobile_web - mobile |" in table
