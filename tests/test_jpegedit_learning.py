"""jpegedit's method: attention net, learnable tables and their projection, the loss, the train step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh
from jpeg_helpers import photos

from compat import sharding as meshlib
from jpegedit import codec, encoder, losses, models, network, task


def _config(attention=True, finetune=False, crop=32, lam=0.01, gamma=0.0):
    c = task.base_config()
    c.data.crop = crop
    c.model.attention = attention
    c.model.finetune_backbone = finetune
    c.loss.lam, c.loss.gamma = lam, gamma
    c.optim.lr = 1e-4
    return c


# --- model -----------------------------------------------------------------------------------


def test_attention_net_gives_two_8x8_maps_per_block_in_0_1():
    net = network.AttentionNet()
    x = jnp.asarray(photos()["chelsea"][:40, :64], jnp.float32)[None]
    params = net.init(jax.random.key(0), x)["params"]
    assert set(params) == {"backbone", "head"}
    assert params["head"]["Conv_0" if "Conv_0" in params["head"] else "kernel"].shape[-1] == 128
    a_l, a_c = net.apply({"params": params}, x)
    assert a_l.shape == a_c.shape == (1, 5, 8, 8, 8)
    assert float(a_l.min()) > 0 and float(a_l.max()) < 1
    # odd sizes: one map per block of the padded image (the codec's block grid)
    a_l, _ = net.apply({"params": params}, jnp.zeros((1, 41, 65, 3)))
    assert a_l.shape[1:3] == (6, 9)


def test_the_backbone_is_the_pretrained_vgg16_up_to_conv3_3():
    b = network.pretrained_backbone()
    assert sorted(b) == [f"Conv_{i}" for i in range(7)]
    assert b["Conv_6"]["kernel"].shape == (3, 3, 256, 256)
    params, _ = task.init_params(_config(), jax.random.key(0))
    np.testing.assert_array_equal(params["net"]["backbone"]["Conv_0"]["kernel"], b["Conv_0"]["kernel"])


def test_attention_of_ones_is_the_plain_codec():
    x = jnp.asarray(photos()["noise_37x53"][:32, :48], jnp.float32)
    t = codec.quality_to_tables(60)
    ones = jnp.ones((4, 6, 8, 8))
    a = codec.encode(x, t, rounding="hard")
    b = codec.encode(x, t, rounding="hard", scales=(ones, ones))
    for u, v in zip(a.components, b.components):
        np.testing.assert_array_equal(u, v)
    zero = codec.encode(x, t, rounding="hard", scales=(jnp.zeros_like(ones), ones))
    assert float(jnp.abs(zero.y).max()) == 0 and float(jnp.abs(zero.cb).max()) > 0


# --- tables ----------------------------------------------------------------------------------


def test_tables_start_in_1_2_and_the_projection_keeps_them_in_1_255():
    q = network.init_tables(jax.random.key(1))
    t = network.tables_from_params(q)
    assert float(t.min()) >= 1.0 and float(t.max()) <= 2.0
    tx = optax.chain(optax.sgd(1.0), network.project_tables())
    params = {"q": q, "other": jnp.ones(3)}
    state = tx.init(params)
    grads = {"q": jnp.full_like(q, 1.0).at[0, 0, 0].set(-1.0), "other": jnp.ones(3)}  # push most down, one up
    updates, _ = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    nt = network.tables_from_params(new["q"])
    assert float(nt.min()) == pytest.approx(1.0) and float(nt.max()) == pytest.approx(255.0)
    np.testing.assert_allclose(new["other"], 0.0)  # other parameters are not projected


def test_export_rounds_and_clips_to_baseline_tables():
    q = jnp.asarray(np.array([0.2, 1.4, 1.6, 37.5, 254.6, 400.0]) * network.TABLE_SCALE)
    np.testing.assert_array_equal(network.export_tables(q), [1, 1, 2, 38, 255, 255])


# --- loss ------------------------------------------------------------------------------------


def test_each_loss_term():
    tables = jnp.stack([jnp.full((8, 8), 2.0), jnp.full((8, 8), 4.0)])
    assert float(losses.table_rate(tables)) == pytest.approx(64 / 2 + 64 / 4)
    a = (jnp.full((2, 3, 8, 8), 0.25), jnp.full((2, 3, 8, 8), 0.5))
    assert float(losses.attention_rate(*a)) == pytest.approx(0.75)
    assert float(losses.attention_rate(None, None)) == 0.0
    x = jnp.zeros((2, 32, 32, 3))
    y = x + 3.0
    d = losses.distortion(x, y, gamma=0.0)
    assert float(d["mse"]) == pytest.approx(9.0) and float(d["lpips"]) == 0.0
    d = losses.distortion(x, y + jnp.arange(32.0)[:, None, None], gamma=1.0)
    assert float(d["lpips"]) > 0
    total, terms = losses.objective(x, y, tables, a, lam=0.1, alpha=10.0, beta=2.0, gamma=0.0)
    assert float(terms["distortion_term"]) == pytest.approx(0.9)
    assert float(terms["rate_term"]) == pytest.approx(10 * 48 + 2 * 0.75)
    assert float(total) == pytest.approx(0.9 + 480 + 1.5)


def test_the_bit_estimate_is_within_a_few_percent_of_real_files_at_every_rate():
    from jpegedit import jpegfile

    for name in ("astronaut", "coffee", "chelsea"):
        image = jnp.asarray(photos()[name], jnp.float32)
        for q in (1, 5, 10, 25, 50, 75):
            t = codec.quality_to_tables(q)
            real = 8 * len(jpegfile.write(codec.encode(image, t, rounding="hard"), t))
            est = float(losses.estimated_bits(codec.encode(image, t, rounding="none").components))
            assert abs(est - real) / real < 0.08, (name, q, est, real)


def test_the_bit_estimate_counts_the_rounded_coefficients():
    y = (
        jnp.zeros((1, 2, 8, 8))
        .at[0, 0, 0, 1]
        .set(2.6)
        .at[0, 0, 1, 0]
        .set(-0.4)
        .at[0, 1, 0, 0]
        .set(5.2)
        .at[0, 1, 2, 2]
        .set(0.5)
    )
    w = losses.BITS_WEIGHTS
    # block 0: one nonzero AC (3), DC 0; block 1: DC 5 (difference 5) and one AC (1: ties away from zero)
    want = (
        w["nonzero"] * 2 + w["log"] * (np.log2(4) + np.log2(2)) + w["dc_log"] * np.log2(6) + 2 * w["block"] + w["file"]
    )
    assert float(losses.estimated_bits([y])) == pytest.approx(want, rel=1e-5)
    # leading axes are images: one estimate each
    assert losses.estimated_bits([jnp.stack([y, 2 * y])]).shape == (2,)


def test_the_bit_estimate_pushes_kept_and_threshold_coefficients_hardest():
    y = jnp.zeros((1, 1, 8, 8)).at[0, 0, 0, 1].set(3.0).at[0, 0, 0, 2].set(0.05).at[0, 0, 0, 3].set(0.55)
    g = np.asarray(jax.grad(lambda v: losses.estimated_bits([v]))(y))[0, 0, 0]
    assert g[1] > 0  # a kept coefficient: fewer magnitude bits if smaller
    assert g[3] > g[1]  # at the threshold: dropping it saves a whole code
    assert 0 <= g[2] < 0.25 * g[3]  # far below the threshold it is free: only the smooth step's tail


def test_the_bits_rate_mode_makes_the_estimated_bpp_the_rate_term():
    image = jnp.asarray(photos()["astronaut"][:64, :64], jnp.float32)[None]
    tables = jnp.asarray(codec.quality_to_tables(20), jnp.float32)
    un = codec.encode(image, tables, rounding="none")
    decoded = codec.decode(jax.tree.map(lambda c: codec.round_with(c, "hard"), un), tables)
    total, terms = losses.objective(image, decoded, tables, None, lam=0.01, rate="bits", unrounded=un.components)
    assert float(terms["rate_term"]) == pytest.approx(float(losses.estimated_bits(un.components)[0]) / 64**2)
    assert float(total) == pytest.approx(0.01 * float(terms["mse"]) + float(terms["rate_term"]), rel=1e-6)
    with pytest.raises(ValueError, match="unrounded"):
        losses.objective(image, decoded, tables, None, lam=0.01, rate="bits")
    with pytest.raises(ValueError, match="rate must be one of"):
        losses.objective(image, decoded, tables, None, lam=0.01, rate="entropy")


def test_training_on_the_bit_estimate_trades_bits_for_distortion_with_lambda():
    out = {}
    for lam in (3e-4, 1e-2):
        config = _config(attention=False, lam=lam)
        config.loss.rate = "bits"
        config.optim.lr = 3e-4
        t = task.make_task(config)
        state = t.init(jax.random.key(0))
        step = jax.jit(t.train_step)
        for _ in range(30):
            state, m = step(state, _batch(), jax.random.key(0))
        out[lam] = m
    assert float(out[3e-4]["bpp_estimate"]) < float(out[1e-2]["bpp_estimate"])
    assert float(out[3e-4]["mse"]) > float(out[1e-2]["mse"])
    config.chroma = "420"
    with pytest.raises(ValueError, match="4:4:4"):
        task.make_task(config)


# --- the train step --------------------------------------------------------------------------


def _batch(n=8, s=32):
    img = photos()["astronaut"]
    return {"image": np.stack([img[17 * i : 17 * i + s, 23 * i : 23 * i + s] for i in range(n)])}


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
    config = _config(attention=attention, finetune=attention)
    state0 = task.make_task(config).init(jax.random.key(0))
    batch = _batch()
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
    config = _config(attention=True, finetune=False)
    t = task.make_task(config)
    state0 = t.init(jax.random.key(0))
    state, _ = jax.jit(t.train_step)(state0, _batch(), jax.random.key(0))
    for a, b in zip(
        jax.tree.leaves(state.params["net"]["backbone"]), jax.tree.leaves(state0.params["net"]["backbone"])
    ):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(state.params["net"]["head"]["kernel"], state0.params["net"]["head"]["kernel"])
    assert not np.allclose(state.params["q"], state0.params["q"])


def test_a_non_finite_batch_leaves_the_state_unchanged_and_reports_it():
    config = _config(attention=False)
    t = task.make_task(config)
    state0 = t.init(jax.random.key(0))
    batch = {"image": _batch()["image"].astype(np.float32)}
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


# --- a run, end to end: train -> checkpoint -> real JPEG files -> libjpeg at equal bytes ---------


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
    config = _config(attention=False, crop=64)
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
    config = _config(attention=True, crop=32)
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


def test_the_vgg19_backbone_reads_its_weights_from_a_file_the_user_gives(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py (the test extra) writes the Keras-layout file")
    from compat.weights import VGG19_KERAS_LAYERS

    rng = np.random.default_rng(0)
    chans = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
    path = tmp_path / "vgg19_notop.h5"
    kernels, c_in = [], 3
    with h5py.File(path, "w") as f:
        for name, c in zip(VGG19_KERAS_LAYERS, chans):
            k = (rng.normal(size=(3, 3, c_in, c)) * 0.05).astype(np.float32)
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g.create_group(name)
            g[name]["kernel:0"] = k
            g[name]["bias:0"] = np.zeros(c, np.float32)
            kernels.append(k)
            c_in = c
    config = _config(attention=True)
    config.model.backbone, config.model.backbone_weights = "vgg19", str(path)
    params, net = task.init_params(config, jax.random.key(0))
    assert sorted(params["net"]["backbone"]) == [f"Conv_{i}" for i in range(8)]  # conv1_1 .. conv3_4
    np.testing.assert_array_equal(params["net"]["backbone"]["Conv_7"]["kernel"], kernels[7])
    a_l, a_c = net.apply({"params": params["net"]}, jnp.zeros((1, 32, 32, 3)))
    assert a_l.shape == (1, 4, 4, 8, 8)
    config.model.backbone_weights = ""
    with pytest.raises(ValueError, match="backbone_weights"):
        task.init_params(config, jax.random.key(0))


def test_training_can_start_from_a_shipped_model_and_read_a_subset_of_a_folder(tmp_path):
    from PIL import Image

    from compat import data as datalib
    from jpegedit.models import load_model

    c = _config()
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
    assert jax.tree.structure(t) == jax.tree.structure(task.make_task(_config(attention=True)).init(jax.random.key(0)))
    for i in range(1, 5):
        Image.fromarray(np.full((40, 40, 3), i * 40, np.uint8)).save(tmp_path / f"kodim{i:02d}.png")
    got = datalib.training_images(tmp_path, include=["kodim0[3-4].png"])
    assert [p[-11:] for p in got] == ["kodim03.png", "kodim04.png"]


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
    config = _config(attention=False)
    config.rounding = "noise"
    t = task.make_task(config)
    state = t.init(jax.random.key(0))
    step = jax.jit(t.train_step)
    _, m1 = step(state, _batch(), jax.random.key(1))
    _, m2 = step(state, _batch(), jax.random.key(2))
    _, m1b = step(state, _batch(), jax.random.key(1))
    assert np.isfinite(float(m1["loss"])) and float(m1["loss"]) != float(m2["loss"])
    assert float(m1["loss"]) == float(m1b["loss"])
