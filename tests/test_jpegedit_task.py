"""jpegedit.task: the train step over the mesh, what trains and what stays put, the non-finite guard,
configs, warm starts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jpeg_helpers import jpeg_batch, jpeg_config

from compat import sharding as meshlib
from jpegedit import codec, network, task


def _step_on(devices, config, state0, batch):
    mesh = Mesh(np.asarray(devices), (meshlib.DATA_AXIS,))
    t = task.make_task(config)
    repl = meshlib.replicated_sharding(mesh)
    step = jax.jit(t.train_step, in_shardings=(repl, meshlib.data_sharding(mesh), repl), out_shardings=(repl, repl))
    state = jax.device_put(state0, repl)
    gb = jax.device_put(batch, meshlib.data_sharding(mesh))
    new, metrics = step(state, gb, jax.random.key(0))
    return jax.device_get(new), jax.device_get(metrics)


@pytest.mark.parametrize("attention", [False, True])
def test_one_step_on_8_devices_equals_one_step_on_1_device(attention):
    config = jpeg_config(attention=attention, finetune=attention)
    state0 = task.make_task(config).init(jax.random.key(0))
    batch = jpeg_batch()
    one, m1 = _step_on(jax.devices()[:1], config, state0, batch)
    eight, m8 = _step_on(jax.devices(), config, state0, batch)
    assert float(m1["loss"]) == pytest.approx(float(m8["loss"]), rel=1e-5)
    # Adam's first step is lr * g / (|g| + eps): where a gradient is ~0, summation-order noise in g
    # can change that step by up to lr. So: every parameter within 0.1 lr, nearly all within 1e-7.
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
        assert diff.max() <= 0.1 * config.optim.lr
        assert np.mean(diff > 1e-7) < 1e-4
    # and the step did something
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(state0.params))]
    assert any(moved)
    for name in ("loss", "grad_norm", "psnr", "mse", "table_rate", "attention_rate", "mean_q_luma", "mean_q_chroma"):
        assert np.isfinite(float(m8[name])), name


def test_a_frozen_backbone_stays_put_and_the_head_and_tables_move():
    config = jpeg_config(attention=True, finetune=False)
    t = task.make_task(config)
    state0 = t.init(jax.random.key(0))
    state, _ = jax.jit(t.train_step)(state0, jpeg_batch(), jax.random.key(0))
    for a, b in zip(
        jax.tree.leaves(state.params["net"]["backbone"]), jax.tree.leaves(state0.params["net"]["backbone"])
    ):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(state.params["net"]["head"]["kernel"], state0.params["net"]["head"]["kernel"])
    assert not np.allclose(state.params["q"], state0.params["q"])


def test_a_non_finite_batch_leaves_the_state_unchanged_and_reports_it():
    config = jpeg_config(attention=False)
    t = task.make_task(config)
    state0 = t.init(jax.random.key(0))
    batch = {"image": jpeg_batch()["image"].astype(np.float32)}
    batch["image"][0, 0, 0, 0] = np.nan
    state, m = jax.jit(t.train_step)(state0, batch, jax.random.key(0))
    assert not np.isfinite(float(m["loss"]))
    np.testing.assert_array_equal(state.params["q"], state0.params["q"])
    assert int(state.step) == 0


def test_config_arguments_override_the_loss_weights_and_paths():
    from pathlib import Path

    from compat.config import config_module

    mod = config_module(Path(__file__).resolve().parents[1] / "configs" / "jpegedit" / "qtables_attention.py")
    c = mod.get_config("lam=0.005,gamma=50,data.roots=/a;/b,model.finetune_backbone=false")
    assert (c.loss.lam, c.loss.gamma, c.loss.alpha, c.loss.beta) == (0.005, 50.0, 10.0, 1.0)
    assert list(c.data.roots) == ["/a", "/b"] and c.model.finetune_backbone is False
    assert (c.optim.lr, c.batch_size, c.data.crop, c.steps) == (1e-6, 8, 256, 20000)  # the paper's settings
    with pytest.raises(ValueError, match="key=value"):
        mod.get_config("lam")


def test_training_can_start_from_a_shipped_model_and_read_a_subset_of_a_folder(tmp_path):
    from PIL import Image

    from compat import data as datalib
    from jpegedit.models import load_model

    c = jpeg_config()
    c.model.init = "attention_lam0.01"
    shipped = load_model("attention_lam0.01")
    params, _ = task.init_params(c, jax.random.key(0))
    np.testing.assert_array_equal(network.export_tables(params["q"]), shipped.tables)
    np.testing.assert_array_equal(np.asarray(params["net"]["head"]["kernel"]), shipped.head["kernel"])
    # from a Q-tables-only model: its tables, and a head that leaves every coefficient (nearly) as is
    c.model.init, c.model.identity_head = "qtables_lam0.01", True
    params, net = task.init_params(c, jax.random.key(0))
    np.testing.assert_array_equal(network.export_tables(params["q"]), load_model("qtables_lam0.01").tables)
    a_l, a_c = net.apply(
        {"params": params["net"]}, jnp.asarray(np.random.default_rng(0).uniform(0, 255, (32, 40, 3)), jnp.float32)
    )
    np.testing.assert_allclose(np.asarray(a_l), 1 / (1 + np.exp(-task.IDENTITY_BIAS)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a_c), 1 / (1 + np.exp(-task.IDENTITY_BIAS)), rtol=1e-6)
    # a resume's restore target reads no start model: the same structure even when the model is gone
    c.model.init = "no_such_model"
    with pytest.raises(FileNotFoundError):
        task.make_task(c).init(jax.random.key(0))
    t = task.make_task(c).template(jax.random.key(0))
    fresh = task.make_task(jpeg_config(attention=True)).init(jax.random.key(0))
    assert jax.tree.structure(t) == jax.tree.structure(fresh)
    for i in range(1, 5):
        Image.fromarray(np.full((40, 40, 3), i * 40, np.uint8)).save(tmp_path / f"kodim{i:02d}.png")
    got = datalib.training_images(tmp_path, include=["kodim0[3-4].png"])
    assert [p[-11:] for p in got] == ["kodim03.png", "kodim04.png"]


def test_training_can_start_from_a_standard_encoders_tables_and_refuses_a_bad_quality():
    from compat.config import ConfigError
    from jpegedit.settings import validate_config

    c = jpeg_config()
    c.model.init = "mozjpeg:40"
    params, _ = task.init_params(c, jax.random.key(0))
    np.testing.assert_array_equal(network.export_tables(params["q"]), codec.quality_to_tables(40, base="mozjpeg"))
    c.model.init = "ijg:75"
    params, _ = task.init_params(c, jax.random.key(0))
    np.testing.assert_array_equal(network.export_tables(params["q"]), codec.quality_to_tables(75))
    for bad in ("mozjpeg:0", "mozjpeg:x", "ijg:"):
        c.model.init = bad
        with pytest.raises(ConfigError, match="integer in 1..100"):
            validate_config(c)


def test_the_refinement_config_trains_on_kodim13_to_24_from_the_shipped_model():
    from pathlib import Path

    from compat.config import config_module

    mod = config_module(Path(__file__).resolve().parents[1] / "configs" / "jpegedit" / "refine_kodak.py")
    c = mod.get_config()
    assert list(c.data.include) == [f"kodim{i}.png" for i in range(13, 25)] and c.model.init == "attention_lam0.01"
    assert c.steps == 10000


def test_noise_rounding_trains_with_the_step_key_reaching_the_codec():
    """rounding='noise' (a config choice) needs the train step's PRNG key in the codec: the step
    runs, and two keys give two different noisy losses (the key was once dropped)."""
    config = jpeg_config(attention=False)
    config.rounding = "noise"
    t = task.make_task(config)
    state = t.init(jax.random.key(0))
    step = jax.jit(t.train_step)
    _, m1 = step(state, jpeg_batch(), jax.random.key(1))
    _, m2 = step(state, jpeg_batch(), jax.random.key(2))
    _, m1b = step(state, jpeg_batch(), jax.random.key(1))
    assert np.isfinite(float(m1["loss"])) and float(m1["loss"]) != float(m2["loss"])
    assert float(m1["loss"]) == float(m1b["loss"])
