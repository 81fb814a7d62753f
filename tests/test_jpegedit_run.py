"""A jpegedit run end to end: train -> checkpoint -> export -> real JPEG files -> libjpeg at equal bytes."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jpeg_helpers import jpeg_config, photos

from jpegedit import codec, encoder, models, network, task


def _crops(tmp_path, boxes):
    """A training folder ``tmp_path/photos`` of square crops ``(top, left, side)`` of astronaut, as 0.png, 1.png, ..."""
    from PIL import Image

    out = tmp_path / "photos"
    out.mkdir()
    img = photos()["astronaut"]
    for i, (top, left, side) in enumerate(boxes):
        Image.fromarray(img[top : top + side, left : left + side]).save(out / f"{i}.png")
    return out


def test_a_trained_run_is_evaluated_as_real_jpeg_files_against_libjpeg_at_equal_bytes(tmp_path):
    from PIL import Image

    from compat.trainer import train
    from jpegedit import evaluate

    photos_dir = _crops(tmp_path, [(40 * i, 50 * i, 200) for i in range(4)])
    config = jpeg_config(attention=False, crop=64)
    config.update({"steps": 4, "batch_size": 8, "log_every": 2, "checkpoint_every": 2, "async_checkpoints": False})
    config.data.roots = [str(photos_dir)]
    config.optim.lr = 3e-5  # 3 units of Q per step: the tables leave their [1, 2] start
    train(config, tmp_path / "run", task.make_task(config), progress=False)

    result = evaluate.evaluate_run(tmp_path / "run", [photos_dir / "0.png"])
    assert result["step"] == 4
    tables = np.asarray(result["tables"])
    assert tables.shape == (2, 8, 8) and tables.min() >= 1 and tables.max() <= 255 and tables.max() > 2
    row = result["images"][0]
    assert row["bytes"] > 0 and 20 < row["psnr"] < 60 and "libjpeg_psnr" in row
    params, _, _ = models.load_run(tmp_path / "run")
    data, exported = encoder.encode_run(np.asarray(Image.open(photos_dir / "0.png")), params)
    assert Image.open(__import__("io").BytesIO(data)).size == (200, 200)
    np.testing.assert_array_equal(exported, tables)


def test_the_coeff_head_trains_exports_and_encodes_as_the_network_computes_it(tmp_path):
    from PIL import Image

    from compat.trainer import train
    from jpegedit.encoder import attention
    from jpegedit.models import export_run, load_model

    photos_dir = _crops(tmp_path, [(60 * i, 70 * i, 96) for i in range(2)])
    config = jpeg_config(attention=True, crop=32)
    config.model.head, config.model.hidden, config.loss.rate = "coeff", 16, "bits"
    config.update({"steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "async_checkpoints": False})
    config.data.roots = [str(photos_dir)]
    config.optim.lr = 1e-3
    t = task.make_task(config)
    start = t.init(jax.random.key(0))
    assert start.params["net"]["hidden"]["kernel"].shape == (256 + 192, 16)
    train(config, tmp_path / "run", t, progress=False)
    params, _, _ = models.load_run(tmp_path / "run")
    assert not np.allclose(
        params["net"]["hidden"]["kernel"], start.params["net"]["hidden"]["kernel"]
    )  # the hidden layer trains
    export_run(tmp_path / "run", "coeff_test", command="test", directory=tmp_path)
    m = load_model(str(tmp_path / "coeff_test.npz"))
    assert m.head["hidden"]["kernel"].shape == (448, 16)
    x = np.asarray(Image.open(photos_dir / "0.png"))
    coeffs = network.coefficient_features(
        codec.encode(jnp.asarray(x, jnp.float32), m.tables, rounding="none").components
    )
    want = network.AttentionNet(head="coeff", hidden=16).apply(
        {"params": params["net"]}, jnp.asarray(x, jnp.float32), coeffs=coeffs
    )
    for a, b in zip(attention(m, x), want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # the run's own file and the exported model's file agree
    data, _ = encoder.encode_run(x, params, head="coeff", hidden=16)
    from jpegedit.encoder import encode_jpeg

    assert encode_jpeg(m, x) == data
    with pytest.raises(ValueError, match="coeff head needs"):
        network.AttentionNet(head="coeff", hidden=16).apply({"params": params["net"]}, jnp.asarray(x, jnp.float32))


def test_libjpeg_at_equal_bytes_interpolates_in_log_bytes():
    from jpegedit.evaluate import at_equal_bytes

    curve = [{"bytes": 1000, "psnr": 30.0, "ms_ssim": 0.9}, {"bytes": 4000, "psnr": 40.0, "ms_ssim": 0.98}]
    mid = at_equal_bytes(curve, 2000)
    assert mid["psnr"] == pytest.approx(35.0) and mid["ms_ssim"] == pytest.approx(0.94)
    assert at_equal_bytes(curve, 500) is None and at_equal_bytes(curve, 5000) is None


def test_every_shipped_model_records_its_kodak_evaluation_as_the_committed_results_have_it():
    """jpegedit/models/*.json carry the mean Kodak point of each of their files (launch/
    fill_model_evaluations.py from results/kodak); a re-measured results folder must be copied in."""
    import importlib.util

    from jpegedit.models import list_models, load_model

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("fill", repo / "launch" / "fill_model_evaluations.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    assert fill.main([str(repo / "results" / "kodak"), "--check"]) == 0
    # the Lite0 family was measured apart (without LPIPS), on the same images
    assert fill.main([str(repo / "results" / "kodak_lite0"), "--data", "../shared/data/kodak", "--check"]) == 0
    for name in list_models():
        ev = load_model(name).meta["evaluation"]
        assert ev["set"] == "kodak" and {"std", "opt"} <= set(ev["files"]), name
        assert ev["files"]["opt"]["bpp"] < ev["files"]["std"]["bpp"], name
