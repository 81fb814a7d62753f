"""The neural decoder's train task (trimesh_decode.task) through the shared harness: BatchNorm over the mesh,
augmentation, the optimiser, the weight average, export and warm starts."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from trimesh_helpers import first_batch, smoke_config

REPO = Path(__file__).resolve().parents[1]


def test_batchnorm_statistics_over_the_mesh_equal_one_device(tiny_dataset):
    """One global batch split over 8 devices gives the same step - loss, parameters and BatchNorm
    running statistics - as the whole batch on one device: BatchNorm sees the global batch."""
    from compat import sharding as meshlib

    config = smoke_config(tiny_dataset, batch_size=8, **{"data.flip": False})
    task, batch = first_batch(config)
    state = task.init(jax.random.key(0))
    rng = jax.random.key(1)
    one_state, one_m = jax.jit(task.train_step)(state, batch, rng)

    mesh = meshlib.data_mesh()
    assert mesh.size == 8
    repl = meshlib.replicated_sharding(mesh)
    step = jax.jit(task.train_step, in_shardings=(repl, meshlib.data_sharding(mesh), repl), out_shardings=(repl, repl))
    many_state, many_m = step(
        meshlib.replicate(task.init(jax.random.key(0)), mesh), meshlib.global_batch(batch, mesh), rng
    )

    np.testing.assert_allclose(many_m["loss"], one_m["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(many_state.batch_stats), jax.tree.leaves(one_state.batch_stats)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # Adam's first step moves a parameter by lr * g / (|g| + eps): the full learning rate for any
    # gradient well above eps, whatever float noise it carries, but anything in [-lr, lr] where a
    # gradient is near zero. So all but a few parameters must agree closely, and none by more than
    # two steps.
    largest = max(
        float(np.abs(np.asarray(b) - np.asarray(p)).max())
        for b, p in zip(jax.tree.leaves(one_state.params), jax.tree.leaves(state.params))
    )
    differ = total = 0
    for a, b in zip(jax.tree.leaves(many_state.params), jax.tree.leaves(one_state.params)):
        a, b = np.asarray(a), np.asarray(b)
        differ += int((np.abs(a - b) > 1e-3 * np.abs(b) + 2e-5).sum())
        total += b.size
        assert np.abs(a - b).max() <= 2.01 * largest
    assert differ <= 1e-3 * total, f"{differ} of {total} parameters took another step"
    # and the statistics moved: the step really updated them
    moved = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(one_state.batch_stats), jax.tree.leaves(state.batch_stats))
    ]
    assert max(moved) > 1e-4


def test_training_lowers_the_loss_and_exports_a_decoder(tiny_dataset, tmp_path, capsys):
    from compat.trainer import train
    from trimesh_decode.cli import main
    from trimesh_decode.models import export_run, load_model
    from trimesh_decode.task import make_task

    # the same 8 whole crops every step (no flip, no crop): the loss must fall
    config = smoke_config(
        tiny_dataset,
        steps=16,
        log_every=4,
        checkpoint_every=8,
        **{"optim.lr": 6e-3, "model.output": "residual", "data.crop": 256, "data.flip": False},
    )
    work = tmp_path / "run"
    _, last = train(config, work, make_task(config), progress=False)
    log = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 4 and np.isfinite(last["loss"])
    assert log[-1]["loss"] < 0.9 * log[0]["loss"]
    assert sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())[-1] == 16

    assert log[-1]["psnr"] > log[-1]["psnr_interp"] + 0.5  # the residual network beats interpolation

    npz = export_run(work, "tiny", command="pytest", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 7 .*keeps steps 8, 16"):
        export_run(work, "early", command="pytest", step=7, directory=tmp_path)
    # a setting this version does not know (an experimental branch's model) is refused, not ignored
    import shutil

    newer = tmp_path / "newer"
    shutil.copytree(work, newer)
    cfg = json.loads((newer / "config.json").read_text())
    cfg["model"]["refine"] = 32
    (newer / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "newer.npz").write_bytes(npz.read_bytes())
    desc = json.loads(npz.with_suffix(".json").read_text())
    desc["model"]["refine"] = 32
    (tmp_path / "newer.json").write_text(json.dumps(desc))
    for path in (newer, tmp_path / "newer.npz"):
        with pytest.raises(ValueError, match="refine are unknown"):
            load_model(path)
    meta = json.loads(npz.with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest() and meta["step"] == 16
    dec = load_model(npz)
    from_run = load_model(work)
    from trimesh_decode.bitstream import from_bytes

    preview = from_bytes(next((tiny_dataset / "previews").iterdir()).read_bytes())
    a, b = dec.decode([preview]), from_run.decode([preview])
    assert a.shape == (1, 256, 256, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # float16 export vs float32 run

    # the CLI decodes the same file both ways
    tri = tmp_path / "p.tri"
    tri.write_bytes(next((tiny_dataset / "previews").iterdir()).read_bytes())
    assert main(["decode", str(tri), "-o", str(tmp_path / "n.png"), "--decoder", "neural", "--model", str(npz)]) == 0
    assert "neural decoder tiny" in capsys.readouterr().out
    assert main(["decode", str(tri), "-o", str(tmp_path / "i.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "n.png")).shape == np.asarray(Image.open(tmp_path / "i.png")).shape
    # averaged over the 8 symmetries: another decoding of the same file; interpolation has none to average
    assert (
        main(
            [
                "decode",
                str(tri),
                "-o",
                str(tmp_path / "n8.png"),
                "--decoder",
                "neural",
                "--model",
                str(npz),
                "--symmetries",
                "8",
            ]
        )
        == 0
    )
    assert "neural decoder tiny_x8" in capsys.readouterr().out
    n1, n8 = (np.asarray(Image.open(tmp_path / f)) for f in ("n.png", "n8.png"))
    np.testing.assert_array_equal(n8, dec.averaged(8).decode([preview])[0])
    assert not np.array_equal(n1, n8)  # (16 steps on 8 unflipped crops: far from equivariant)
    assert main(["decode", str(tri), "-o", str(tmp_path / "i8.png"), "--symmetries", "8"]) == 2
    assert "--symmetries is for --decoder neural" in capsys.readouterr().err
    # --gain scales the network's correction of interpolation: 1.5 lands half as far again past it
    args = ["decode", str(tri), "--decoder", "neural", "--model", str(npz)]
    assert main([*args, "-o", str(tmp_path / "g.png"), "--gain", "1.5"]) == 0
    assert "neural decoder tiny_g1.5" in capsys.readouterr().out
    g = np.asarray(Image.open(tmp_path / "g.png")).astype(float)
    interp = np.asarray(Image.open(tmp_path / "i.png")).astype(float)
    want = np.clip(interp + 1.5 * (n1.astype(float) - interp), 0, 255)
    assert np.abs(g - want).max() <= 2.0 and np.abs(g - n1).max() > 2.0  # rounding of the two decodings
    np.testing.assert_array_equal(dec.amplified(1.0).decode([preview]), dec.decode([preview]))
    for bad in ("0", "-1", "5", "x"):
        with pytest.raises(SystemExit) as exit_:  # argparse's own refusal: one line, exit 2
            main([*args, "-o", str(tmp_path / "bad.png"), "--gain", bad])
        assert exit_.value.code == 2 and "--gain" in capsys.readouterr().err
    assert main(["decode", str(tri), "-o", str(tmp_path / "ig.png"), "--gain", "1.5"]) == 2
    assert "--gain is for --decoder neural" in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists() and not (tmp_path / "ig.png").exists()

    # fine-tuning starts from the run's weights and BatchNorm statistics; another model is refused
    tuned = smoke_config(tiny_dataset, **{"model.output": "residual", "model.init": str(work)})
    start = make_task(tuned).init(jax.random.key(7))
    same = jax.tree.map(
        lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))),
        {"params": start.params, "batch_stats": start.batch_stats},
        from_run.variables,
    )
    assert all(jax.tree.leaves(same))
    # a wider model grows from the run (model.widen) and decodes as it does; another design is refused
    from trimesh_decode.decoding import predict
    from trimesh_decode.task import make_model

    wider = smoke_config(tiny_dataset, **{"model.output": "residual", "model.init": str(work), "model.width": 32})
    w = make_task(wider).init(jax.random.key(0))
    assert w.params["stem1"]["Conv_0"]["kernel"].shape[-1] == 32
    grown = predict({"params": w.params, "batch_stats": w.batch_stats}, [preview], make_model(wider))
    assert np.abs(grown.astype(int) - b.astype(int)).max() <= 1
    narrower = smoke_config(
        tiny_dataset, **{"model.output": "residual", "model.init": str(npz), "model.width": 16, "model.stacks": 3}
    )
    with pytest.raises(ValueError, match="stacks"):
        make_task(narrower).init(jax.random.key(0))

    # a fine-tuning run resumes from its own checkpoint without its start model on disk
    moved = tmp_path / "start.npz"
    moved.write_bytes(npz.read_bytes())
    moved.with_suffix(".json").write_text(npz.with_suffix(".json").read_text())
    ft = smoke_config(
        tiny_dataset, steps=2, checkpoint_every=2, **{"model.output": "residual", "model.init": str(moved)}
    )
    train(ft, tmp_path / "ft", make_task(ft), progress=False)
    moved.unlink()
    ft.steps = 3
    _, resumed = train(ft, tmp_path / "ft", make_task(ft), progress=False)
    assert resumed["step"] == 3 and np.isfinite(resumed["loss"])
    with pytest.raises(FileNotFoundError):  # a fresh run does need it
        train(ft, tmp_path / "ft2", make_task(ft), progress=False)

    # a damaged model file is refused with a clear message
    data = bytearray(npz.read_bytes())
    data[100] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    bad.with_suffix(".json").write_text(npz.with_suffix(".json").read_text())
    assert main(["decode", str(tri), "-o", str(tmp_path / "x.png"), "--decoder", "neural", "--model", str(bad)]) == 2
    assert "sha256" in capsys.readouterr().err


def test_nan_loss_stops_training_without_applying_the_update(tiny_dataset, tmp_path):
    from compat.trainer import TrainingDiverged, train
    from trimesh_decode.task import make_task

    config = smoke_config(tiny_dataset, steps=4, **{"optim.warmup": 0})
    task = make_task(config)  # a valid config (validation refuses lr=nan); the rate turns NaN after it
    config.optim.lr = float("nan")
    with pytest.raises(TrainingDiverged, match="step"):
        train(config, tmp_path / "nan", task, progress=False)


def test_dihedral_augmentation_moves_inputs_and_targets_together_through_all_8_symmetries():
    from trimesh_decode.task import _augment, base_config

    c = base_config()
    c.data.crop = 256
    c.data.dihedral = True
    rng = np.random.default_rng(0)
    image = jnp.asarray(rng.random((1, 256, 256, 3), np.float32))
    batch = jnp.repeat(image, 64, axis=0)
    channels = jnp.concatenate([jnp.zeros_like(batch[..., :2]), batch, jnp.zeros_like(batch)], -1)  # RGB at 2:5
    ch, tg = _augment(channels, batch, jax.random.key(3), c)
    np.testing.assert_array_equal(ch[..., 2:5], tg)  # the same symmetry for the input and its target
    x = np.asarray(image[0])
    symmetries = [
        np.ascontiguousarray(s) for t in (x, x.transpose(1, 0, 2)) for s in (t, t[::-1], t[:, ::-1], t[::-1, ::-1])
    ]
    seen = {next(i for i, s in enumerate(symmetries) if np.array_equal(np.asarray(y), s)) for y in tg}
    assert seen == set(range(8))
    c.data.dihedral = False  # the default: horizontal flips only
    _, tg = _augment(channels, batch, jax.random.key(3), c)
    seen = {next(i for i, s in enumerate(symmetries) if np.array_equal(np.asarray(y), s)) for y in tg}
    assert seen == {0, 2}


def test_colour_permutation_reorders_both_colour_inputs_and_the_target_alike_and_leaves_the_maps():
    from trimesh_decode.task import _augment, base_config

    c = base_config()
    c.data.crop, c.data.flip, c.data.colour_permute = 256, False, True
    rng = np.random.default_rng(1)
    maps = jnp.asarray(rng.random((48, 8, 8, 2), np.float32))  # edge and vertex maps
    rgb = jnp.asarray(rng.random((48, 8, 8, 3), np.float32))
    channels = jnp.concatenate([maps, rgb, 0.5 * rgb], -1)  # interpolated RGB at 2:5, coloured vertices at 5:8
    # 8x8 images: below the crop, which is then a no-op; the colour order does not care about the size
    ch, tg = _augment(channels, rgb, jax.random.key(5), c)
    np.testing.assert_array_equal(ch[..., :2], maps)
    np.testing.assert_array_equal(ch[..., 2:5], tg)
    np.testing.assert_array_equal(ch[..., 5:8], 0.5 * tg)
    orders = set()
    for i in range(48):
        order = next(p for p in itertools.permutations(range(3)) if np.array_equal(tg[i], rgb[i][..., list(p)]))
        orders.add(order)
    assert len(orders) == 6
    c.data.colour_permute = False  # the default: colours as they are
    _, tg = _augment(channels, rgb, jax.random.key(5), c)
    np.testing.assert_array_equal(tg, rgb)


def test_a_cosine_shorter_than_its_warmup_is_refused_by_name():
    from trimesh_decode.task import base_config, make_optimizer

    c = base_config()
    c.optim.warmup, c.optim.decay_steps = 50, 6
    with pytest.raises(ValueError, match=r"optim.decay_steps \(6\) must exceed optim.warmup \(50\)"):
        make_optimizer(c)
    c.optim.decay_steps = 60
    make_optimizer(c)  # a cosine after the warm-up is fine


@pytest.mark.parametrize("width", [8, 24, 0])
def test_a_width_the_loss_modules_cannot_split_is_a_config_error_before_anything_is_built(width):
    from compat.config import ConfigError
    from trimesh_decode.settings import base_config, validate_config

    c = base_config()
    c.model.width = width
    with pytest.raises(ConfigError, match=rf"model.width={width}: expected a multiple of 16"):
        validate_config(c)


def test_weight_average_follows_every_step_resumes_and_is_what_the_run_decodes_with(tiny_dataset, tmp_path):
    """optim.ema keeps ``d * ema + (1 - d) * new`` of the weights and BatchNorm statistics after
    every step, with ``d = min(ema, (1 + step) / (10 + step))``; a run's checkpoints carry it, a
    resumed run continues it, and evaluation / export / warm starts read it."""
    from compat.trainer import train
    from trimesh_decode.models import export_run, load_model, load_run
    from trimesh_decode.task import ema_decay, make_task

    assert float(ema_decay(0, 0.999)) == pytest.approx(0.1)
    assert float(ema_decay(90, 0.999)) == pytest.approx(0.91)
    assert float(ema_decay(10_000, 0.999)) == pytest.approx(0.999)

    config = smoke_config(
        tiny_dataset,
        steps=3,
        checkpoint_every=3,
        log_every=1,
        **{"optim.lr": 3e-3, "optim.ema": 0.5, "model.output": "residual", "data.flip": False},
    )
    task, batch = first_batch(config)
    state = task.init(jax.random.key(0))
    step = jax.jit(task.train_step)
    expect = {"params": state.params, "batch_stats": state.batch_stats}
    for i in range(3):
        state, _ = step(state, batch, jax.random.key(i))
        d = min(0.5, (1 + i) / (10 + i))
        expect = jax.tree.map(
            lambda e, n: d * e + (1 - d) * n, expect, {"params": state.params, "batch_stats": state.batch_stats}
        )
    for a, b in zip(jax.tree.leaves(state.ema), jax.tree.leaves(expect)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    moved = max(
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(state.ema["params"]), jax.tree.leaves(state.params))
    )
    assert moved > 1e-5  # the average lags the weights

    work = tmp_path / "ema"
    train(config, work, make_task(config), progress=False)
    config.steps = 5  # resumed: the average comes back with the weights and goes on
    _, last = train(config, work, make_task(config), progress=False)
    assert last["step"] == 5
    averaged, _, at = load_run(work)
    trained, _, _ = load_run(work, ema=False)
    assert at == 5
    gap = [float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(averaged), jax.tree.leaves(trained))]
    assert max(gap) > 1e-5
    dec = load_model(work)
    assert dec.meta["weights"] == "ema"
    for a, b in zip(jax.tree.leaves(dec.variables), jax.tree.leaves(averaged)):
        np.testing.assert_array_equal(a, b)
    npz = export_run(work, "averaged", command="pytest", directory=tmp_path)
    assert json.loads(npz.with_suffix(".json").read_text())["weights"] == "ema"

    # without an average the state holds none, and the run decodes with its weights
    plain = smoke_config(tiny_dataset, steps=1, checkpoint_every=1, **{"model.output": "residual"})
    assert make_task(plain).init(jax.random.key(0)).ema is None
    train(plain, tmp_path / "plain", make_task(plain), progress=False)
    assert load_model(tmp_path / "plain").meta["weights"] == "trained"

    with pytest.raises(ValueError, match=r"optim.ema=1.0: expected between 0.0 and"):
        make_task(smoke_config(tiny_dataset, **{"optim.ema": 1.0}))


def test_the_perceptual_objective_adds_its_weight_times_the_lpips_of_the_last_image_and_moves_the_gradient():
    from compat import metrics
    from trimesh_decode.task import loss_fn, make_model

    config = smoke_config("unused", **{"model.stacks": 2})
    model = make_model(config)
    rng = np.random.default_rng(0)
    channels = jnp.asarray(rng.random((2, 64, 64, 8), np.float32))
    targets = jnp.asarray(rng.random((2, 64, 64, 3), np.float32))
    v = model.init(jax.random.key(0), channels, train=False, interp=channels[..., 2:5])
    mse_only, (images, _, terms) = loss_fn(v["params"], v["batch_stats"], channels, targets, config, model)
    assert len(terms) == 2  # one MSE per loss module, no perceptual term at weight 0
    config.loss.lpips = 0.5
    both, (_, _, terms) = loss_fn(v["params"], v["batch_stats"], channels, targets, config, model)
    perceptual = float(jnp.mean(metrics.lpips(images[-1] * 255.0, targets * 255.0)))
    assert len(terms) == 3 and abs(float(terms[-1]) - perceptual) < 1e-5
    assert abs(float(both) - (float(mse_only) + 0.5 * perceptual)) < 1e-5

    def grad(weight):
        config.loss.lpips = weight
        return jax.grad(lambda p: loss_fn(p, v["batch_stats"], channels, targets, config, model)[0])(v["params"])

    g0, g1 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(grad(w))]) for w in (0.0, 0.5))
    assert np.all(np.isfinite(g1)) and np.linalg.norm(g1 - g0) > 1e-3 * np.linalg.norm(g0)


def test_an_unknown_perceptual_network_is_a_config_error_by_name():
    from compat.config import ConfigError
    from trimesh_decode.settings import base_config, validate_config

    c = base_config()
    c.loss.lpips_net = "resnet"
    with pytest.raises(ConfigError, match="loss.lpips_net"):
        validate_config(c)
