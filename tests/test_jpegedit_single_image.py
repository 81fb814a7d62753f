"""Single-image optimisation: many (image, lambda) models in one jit, sharded over 8 fake devices."""

import json

import numpy as np
import pytest
from PIL import Image

from jpegedit import single_image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    for k in range(2):
        x = np.stack([128 + 90 * np.sin(xx / (5.0 + k)), 128 + 80 * np.cos(yy / 7.0), (xx * 3 + yy) % 256], -1)
        x = np.clip(x + rng.normal(0, 5, x.shape), 0, 255).astype(np.uint8)
        Image.fromarray(x if k == 0 else x.transpose(1, 0, 2).copy()).save(d / f"im{k}.png")  # the second a portrait
    return d


def test_portraits_are_turned_and_other_sizes_refused():
    a, b = np.zeros((8, 16, 3), np.uint8), np.zeros((16, 8, 3), np.uint8)
    stack, flipped = single_image.prepare_images([a, b])
    assert stack.shape == (2, 8, 16, 3) and flipped == [False, True]
    with pytest.raises(ValueError, match="one size"):
        single_image.prepare_images([a, np.zeros((8, 24, 3), np.uint8)])


def test_the_vmapped_models_learn_separately_and_resume(folder, tmp_path, capsys):
    out = tmp_path / "res"
    argv = [
        "--data",
        str(folder),
        "--out",
        str(out),
        "--lambdas",
        "0.001,0.1",
        "--steps",
        "6",
        "--lr",
        "5e-4",
        "--head-lr",
        "1e-2",
        "--init",
        "attention_lam0.01",
    ]
    assert single_image.main(argv) == 0
    doc = json.loads((out / "single_image.json").read_text())
    info = doc["info"]
    assert info["models"] == 4 and info["padding"] == 4 and info["devices"] == 8
    # every model's own loss fell on its own image
    assert all(b < a for a, b in zip(info["first_loss"], info["last_loss"]))
    rows = doc["images"]
    assert len(rows) == 4 and {r["image"] for r in rows} == {"im0.png", "im1.png"}
    by = {(r["image"], r["lam"]): r for r in rows}
    # a larger lambda weighs distortion more: more bits, higher PSNR, on the same image
    for name in ("im0.png", "im1.png"):
        lo, hi = by[(name, 0.001)]["after"], by[(name, 0.1)]["after"]
        assert hi["bpp"] > lo["bpp"] and hi["psnr"] > lo["psnr"] + 1.0
    assert [c["lam"] for c in doc["curve"]] == [0.001, 0.1] and (out / "single_image.png").exists()
    assert [c["lam"] for c in doc["start_curve"]] == [0.001, 0.1] and "bd_rate_psnr" in doc["vs_start"]
    # the same command again is refused (the folder holds results) until --force, then resumes from
    # the last checkpoint (nothing left to train)
    assert single_image.main(argv) == 2
    assert single_image.main(argv + ["--force"]) == 0
    assert json.loads((out / "single_image.json").read_text())["info"]["resumed_at"] == 6
    # a task of the shared trainer: its metrics log and recorded config, which a resume must match
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 and log[-1]["non_finite_models"] == 0 and np.isfinite(log[-1]["loss"])
    assert json.loads((out / "config.json").read_text())["lambdas"] == [0.001, 0.1]
    kept = (out / "single_image.json").read_bytes()
    other = [a if a != "0.001,0.1" else "0.001,0.3" for a in argv] + ["--force", "--steps", "8"]
    capsys.readouterr()
    assert single_image.main(other) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lambdas" in err and "another -o" in err
    assert (out / "single_image.json").read_bytes() == kept  # nothing of the run was touched


def test_each_lambda_can_start_from_the_shipped_model_of_that_lambda():
    from jpegedit.models import load_model
    from jpegedit.network import TABLE_SCALE

    starts = [load_model("attention_lam0.001"), load_model("attention_lam0.1")]
    params = single_image.init_params(starts, 5)  # model k starts from starts[k % 2]: image-major, lambda-minor
    for k in range(5):
        np.testing.assert_allclose(np.asarray(params["q"][k]) / TABLE_SCALE, starts[k % 2].tables, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(params["head"]["bias"][k]), starts[k % 2].head["bias"])
    with pytest.raises(ValueError, match="one per lambda"):
        single_image._per_lambda(starts, 3)
    assert single_image._per_lambda(starts[0], 3) == [starts[0]] * 3


def test_sigterm_saves_the_step_and_exits_75_a_second_process_is_refused_and_the_rerun_continues(
    folder, tmp_path, monkeypatch, capsys
):
    from compat.locks import FolderLock
    from compat.trainer import PreemptionWatch

    out = tmp_path / "res"
    argv = ["--data", str(folder), "-o", str(out), "--lambdas", "0.01", "--steps", "4", "--init", "attention_lam0.01"]
    # a notice arriving during step 2 (what SIGTERM sets): that step is saved, then the run stops
    monkeypatch.setattr(PreemptionWatch, "reached", lambda self, step: step == 2)
    assert single_image.main(argv) == 75
    assert "preempted at step 2 of 4" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]
    assert not (out / "single_image.json").exists()
    with FolderLock(out, "test"):  # another process on the folder
        assert single_image.main(argv + ["--force"]) == 2
    assert "in use by another" in capsys.readouterr().err
    monkeypatch.setattr(PreemptionWatch, "reached", lambda self, step: False)
    assert single_image.main(argv + ["--force"]) == 0
    assert json.loads((out / "single_image.json").read_text())["info"]["resumed_at"] == 2
