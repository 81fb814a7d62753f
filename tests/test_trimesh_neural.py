"""The neural decoder: model shapes, BatchNorm over the device mesh, training through the shared
harness, export / load of shipped weights, the CLI and the evaluation on a tiny dataset."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from trimesh_decode.hourglass import CHANNEL_SETS, StackedHourglass, depth_to_space, select_channels, space_to_depth

REPO = Path(__file__).resolve().parents[1]


def test_space_to_depth_and_back_are_inverse_and_move_blocks():
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    y = space_to_depth(x, 2)
    assert y.shape == (2, 4, 4, 12)
    # the first output pixel holds the top-left 2x2 block, row by row
    np.testing.assert_array_equal(y[0, 0, 0].reshape(2, 2, 3), x[0, :2, :2])
    np.testing.assert_array_equal(depth_to_space(y, 2), x)
    np.testing.assert_array_equal(space_to_depth(depth_to_space(y, 2), 2), y)


@pytest.mark.parametrize("stacks", [1, 3])
def test_stacked_hourglass_gives_one_256_image_per_stack(stacks):
    m = StackedHourglass(width=16, stacks=stacks, depth=4)
    x = jnp.zeros((1, 256, 256, 8))
    v = jax.eval_shape(lambda: m.init(jax.random.key(0), x))
    out = jax.eval_shape(lambda v: m.apply(v, x), v)
    assert [o.shape for o in out] == [(1, 256, 256, 3)] * stacks
    names = set(v["params"])
    assert {"stem1", "stem2", *(f"hourglass{s}" for s in range(stacks)), *(f"head{s}" for s in range(stacks))} == names


def test_mobile_model_is_phone_sized_and_paper_model_is_wider():
    def count(width):
        m = StackedHourglass(width=width, stacks=2)
        v = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 64, 64, 8))))
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))

    mobile, paper = count(64), count(256)
    assert 4 * mobile * 4 > paper > 8 * mobile  # convs scale with width squared
    assert mobile * 2 < 10e6  # float16 weights under 10 MB


def test_widening_computes_the_same_function_and_the_copies_train_apart():
    """model.widen: a 32-filter network as a 48-filter one (uneven: some channels get two copies,
    some one) gives the same images in both BatchNorm modes; each weight is shared out between the
    copies of its input channel (the parts sum to it and differ), so the copies get different gradients."""
    from trimesh_decode.hourglass import _channel_map, widen

    x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 8))
    small, big = (StackedHourglass(width=w, stacks=2, depth=2, output="residual") for w in (32, 48))
    v = small.init(jax.random.key(0), x, interp=x[..., 2:5])
    rng = np.random.default_rng(2)
    v = jax.tree.map(
        lambda a: np.asarray(a) + 0.1 * rng.standard_normal(a.shape, np.float32), v
    )  # nothing trivially 0 or 1
    v["batch_stats"] = jax.tree.map(np.abs, v["batch_stats"])
    wide = widen(v, 32, 48)
    for train in (False, True):
        run = lambda m, w: m.apply(w, x, interp=x[..., 2:5], train=train, mutable=["batch_stats"])[0]  # noqa: E731
        a, b = jax.jit(functools.partial(run, small))(v), jax.jit(functools.partial(run, big))(wide)
        for p, q in zip(a, b):
            np.testing.assert_allclose(np.asarray(q), np.asarray(p), atol=1e-4)
    k_old = np.asarray(v["params"]["hourglass0"]["skip1"]["Conv_0"]["kernel"])
    k_new = wide["params"]["hourglass0"]["skip1"]["Conv_0"]["kernel"]
    assert k_new.shape == (3, 3, 48, 48)
    # copies stay in their DepthToSpace(4) run: old channel 0 of the run of 2 is new 0 and 2 of the run of 3
    copies = np.flatnonzero(_channel_map(48, 32, 16) == 0)
    assert copies.tolist() == [0, 2]
    np.testing.assert_allclose(sum(k_new[:, :, c, 0] for c in copies), k_old[:, :, 0, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(k_new[:, :, 0, 0], k_new[:, :, 2, 0])

    def loss(params):
        out, _ = big.apply(
            {"params": params, "batch_stats": wide["batch_stats"]},
            x,
            interp=x[..., 2:5],
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.mean(jnp.square(out[-1] - 0.5))

    g = jax.jit(jax.grad(loss))(jax.tree.map(jnp.asarray, wide["params"]))["hourglass0"]["skip1"]["Conv_0"]["kernel"]
    assert not np.allclose(np.asarray(g[..., 0]), np.asarray(g[..., 2]))  # output copies get different gradients
    with pytest.raises(ValueError, match="multiples of 16"):
        widen(v, 32, 40)


def test_input_side_must_fit_the_hourglass():
    m = StackedHourglass(width=16, stacks=1, depth=4)
    with pytest.raises(ValueError, match="multiple of 64"):
        m.init(jax.random.key(0), jnp.zeros((1, 96, 96, 8)))


def test_residual_output_starts_near_the_interpolation_and_channel_sets():
    interp = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3))
    m = StackedHourglass(width=16, stacks=1, depth=2, output="residual")
    v = m.init(jax.random.key(0), jnp.zeros((1, 64, 64, 8)), interp=interp)
    v = {"params": jax.tree.map(jnp.zeros_like, v["params"]), "batch_stats": v["batch_stats"]}
    out = m.apply(v, jnp.ones((1, 64, 64, 8)), interp=interp)[-1]
    np.testing.assert_allclose(out, interp, atol=1e-6)  # a zero network adds nothing
    ch = jnp.arange(8.0).reshape(1, 1, 1, 8)
    assert select_channels(ch, "interp_only").ravel().tolist() == [2, 3, 4]
    assert select_channels(ch, "no_interp").ravel().tolist() == list(CHANNEL_SETS["no_interp"])
    with pytest.raises(ValueError, match="unknown channel set"):
        select_channels(ch, "rgb")


# -- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """8 crops of 2 synthetic photos, encoded quickly (50 iterations)."""
    from trimesh_decode.dataset import build_dataset

    root = tmp_path_factory.mktemp("neural")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:320]
    for k in range(2):
        img = np.stack([(xx * (k + 1)) % 256, (yy * 2) % 256, ((xx + yy) // 2) % 256], -1).astype(np.float64)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos / f"p{k}.png")
    out = root / "ds"
    build_dataset(photos, out, crops=8, size=256, iterations=50, processes=1, progress=False)
    return out


def _config(dataset, **over):
    from compat.config import config_module

    c = config_module(REPO / "configs" / "trimesh_decode" / "smoke.py").get_config(f"data.dataset={dataset}")
    for k, v in over.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def _first_batch(config):
    from trimesh_decode.task import make_task

    task = make_task(config)
    return task, next(iter(task.dataset(0, 1, config.batch_size)))


def test_batchnorm_statistics_over_the_mesh_equal_one_device(tiny_dataset):
    """One global batch split over 8 devices gives the same step - loss, parameters and BatchNorm
    running statistics - as the whole batch on one device: BatchNorm sees the global batch."""
    from compat import mesh as meshlib

    config = _config(tiny_dataset, batch_size=8, **{"data.flip": False})
    task, batch = _first_batch(config)
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
    for a, b in zip(jax.tree.leaves(many_state.params), jax.tree.leaves(one_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=2e-5)  # Adam amplifies float noise
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
    config = _config(
        tiny_dataset,
        steps=30,
        log_every=5,
        checkpoint_every=15,
        **{"optim.lr": 3e-3, "model.output": "residual", "data.crop": 256, "data.flip": False},
    )
    work = tmp_path / "run"
    _, last = train(config, work, make_task(config), progress=False)
    log = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 6 and np.isfinite(last["loss"])
    assert log[-1]["loss"] < 0.9 * log[0]["loss"]
    assert sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())[-1] == 30

    assert log[-1]["psnr"] > log[-1]["psnr_interp"] + 0.5  # the residual network beats interpolation

    npz = export_run(work, "tiny", command="pytest", directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 7 .*keeps steps 15, 30"):
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
    assert meta["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest() and meta["step"] == 30
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
    assert not np.array_equal(n1, n8)  # (30 steps on 8 unflipped crops: far from equivariant)
    assert main(["decode", str(tri), "-o", str(tmp_path / "i8.png"), "--symmetries", "8"]) == 2
    assert "--symmetries is for --decoder neural" in capsys.readouterr().err

    # fine-tuning starts from the run's weights and BatchNorm statistics; another model is refused
    tuned = _config(tiny_dataset, **{"model.output": "residual", "model.init": str(work)})
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

    wider = _config(tiny_dataset, **{"model.output": "residual", "model.init": str(work), "model.width": 32})
    w = make_task(wider).init(jax.random.key(0))
    assert w.params["stem1"]["Conv_0"]["kernel"].shape[-1] == 32
    grown = predict({"params": w.params, "batch_stats": w.batch_stats}, [preview], make_model(wider))
    assert np.abs(grown.astype(int) - b.astype(int)).max() <= 1
    narrower = _config(
        tiny_dataset, **{"model.output": "residual", "model.init": str(npz), "model.width": 16, "model.stacks": 3}
    )
    with pytest.raises(ValueError, match="stacks"):
        make_task(narrower).init(jax.random.key(0))

    # a fine-tuning run resumes from its own checkpoint without its start model on disk
    moved = tmp_path / "start.npz"
    moved.write_bytes(npz.read_bytes())
    moved.with_suffix(".json").write_text(npz.with_suffix(".json").read_text())
    ft = _config(tiny_dataset, steps=2, checkpoint_every=2, **{"model.output": "residual", "model.init": str(moved)})
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


def test_scaled_crops_are_resized_windows_and_an_old_folder_keeps_its_settings(tmp_path):
    """--max-scale cuts squares larger than the crop (in the photo's pixels) and resizes them down;
    a folder built before the setting existed continues with its default, another value is refused."""
    from trimesh_decode.dataset import DatasetError, build_dataset, read_manifest

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (600, 700, 3), dtype=np.uint8)).save(photos / "big.png")
    out = tmp_path / "scaled"
    build_dataset(photos, out, crops=6, size=64, iterations=20, max_scale=4.0, processes=1, progress=False)
    recs = read_manifest(out)
    assert len(recs) == 6
    for r in recs.values():
        x, y, w, h = r["box"]
        assert w == h and 64 <= w <= 256 and x + w <= 700 and y + h <= 600
        assert r["scale"] == pytest.approx(64 / w)
        assert np.asarray(Image.open(out / r["crop"])).shape == (64, 64, 3)
    assert len({r["box"][2] for r in recs.values()}) > 1  # random sides
    with pytest.raises(DatasetError, match="max_scale"):
        build_dataset(photos, out, crops=6, size=64, iterations=20, max_scale=2.0, processes=1, progress=False)
    with pytest.raises(DatasetError, match="max-scale"):
        build_dataset(photos, tmp_path / "x", crops=1, size=64, max_scale=0.5, processes=1, progress=False)

    native = tmp_path / "native"
    build_dataset(photos, native, crops=2, size=64, iterations=20, processes=1, progress=False)
    meta = json.loads((native / "dataset.json").read_text())
    del meta["max_scale"]  # as written before the option existed
    (native / "dataset.json").write_text(json.dumps(meta))
    assert "3 of 3 crops encoded (2 were already there)" in build_dataset(
        photos, native, crops=3, size=64, iterations=20, processes=1, progress=False
    )
    assert all(r["box"][2] == 64 and r["scale"] == 1.0 for r in read_manifest(native).values())


def test_pack_then_unpack_gives_the_same_previews_and_crops_within_the_jpeg_error(tmp_path, capsys):
    """`pack` keeps each photo once (JPEG) and every preview, without crops; `unpack` cuts the crops
    again - resized windows and crops of photos enlarged to hold one - from the packed photos."""
    from trimesh_decode.cli import main
    from trimesh_decode.dataset import read_manifest

    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    yy, xx = np.mgrid[0:300, 0:340]
    smooth = np.stack([xx % 256, (yy * 3 // 4) % 256, ((xx + yy) // 3) % 256], -1).astype(np.uint8)
    Image.fromarray(smooth).save(photos / "big.png")
    Image.fromarray(smooth[:50, :60]).save(photos / "small.png")  # enlarged to hold a 64 crop
    ds = tmp_path / "ds"
    assert (
        main(
            [
                "dataset",
                "--images",
                str(tmp_path / "photos"),
                "--out",
                str(ds),
                "--crops",
                "6",
                "--size",
                "64",
                "--iterations",
                "20",
                "--max-scale",
                "3",
                "--processes",
                "1",
            ]
        )
        == 0
    )
    recs = read_manifest(ds)
    assert {r["scale"] > 1 for r in recs.values()} == {True, False}  # both kinds of crop
    kit, back = tmp_path / "kit", tmp_path / "back"
    assert main(["pack", str(ds), "-o", str(kit)]) == 0
    assert sorted(p.relative_to(kit).as_posix() for p in (kit / "photos").rglob("*.jpg")) == [
        "photos/sub/big.jpg",
        "photos/sub/small.jpg",
    ]
    assert not (kit / "crops").exists() and not (kit / "previews").exists()  # previews ride in the manifest
    assert main(["pack", str(ds), "-o", str(kit)]) == 2  # no overwrite without --force
    assert "not empty; pass --force" in capsys.readouterr().err
    assert main(["unpack", str(kit), "-o", str(back), "--processes", "1"]) == 0
    again = read_manifest(back)
    assert sorted(again) == sorted(recs)
    for i, r in recs.items():
        assert (back / again[i]["preview"]).read_bytes() == (ds / r["preview"]).read_bytes()
        a = np.asarray(Image.open(ds / r["crop"]), np.float64)
        b = np.asarray(Image.open(back / again[i]["crop"]), np.float64)
        assert a.shape == b.shape == (64, 64, 3)
        assert 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12)) > 35  # only the JPEG's error
    assert main(["unpack", str(ds), "-o", str(tmp_path / "x")]) == 2  # an unpacked folder is no pack
    assert "is not a packed dataset" in capsys.readouterr().err
    (kit / "photos" / "sub" / "small.jpg").unlink()
    assert main(["unpack", str(kit), "-o", str(tmp_path / "y")]) == 2
    assert "lacks 1 of its photos, e.g. photos/sub/small.jpg" in capsys.readouterr().err


def test_nan_loss_stops_training_without_applying_the_update(tiny_dataset, tmp_path):
    from compat.trainer import TrainingDiverged, train
    from trimesh_decode.task import make_task

    config = _config(tiny_dataset, steps=4, **{"optim.warmup": 0})
    task = make_task(config)  # a valid config (validation refuses lr=nan); the rate turns NaN after it
    config.optim.lr = float("nan")
    with pytest.raises(TrainingDiverged, match="step"):
        train(config, tmp_path / "nan", task, progress=False)


def test_evaluation_writes_json_table_and_figures(tiny_dataset, tmp_path):
    from compat.trainer import train
    from trimesh_decode.evaluate import EvaluationError, evaluate
    from trimesh_decode.models import export_run
    from trimesh_decode.task import make_task

    config = _config(tiny_dataset, steps=2, log_every=1, checkpoint_every=2)
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


def test_scores_taken_in_chunks_equal_the_scores_of_the_whole_set():
    from trimesh_decode.evaluate import SEMANTIC, _scores

    rng = np.random.default_rng(2)
    originals = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    recons = np.clip(originals.astype(int) + rng.integers(-40, 41, originals.shape), 0, 255).astype(np.uint8)
    whole, chunked = _scores(originals, recons, chunk=5), _scores(originals, recons, chunk=2)
    assert set(whole) == set(chunked) == {"psnr", "ssim", *SEMANTIC}
    for k in whole:
        assert chunked[k].shape == (5,)
        np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-5, atol=1e-4, err_msg=k)


def test_recall_test_counts_the_images_only_one_decoder_gets_right():
    from trimesh_decode.evaluate import _mcnemar

    interp = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    neural = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    r = _mcnemar(neural, interp)
    assert (r["interp"], r["neural"], r["gained"], r["lost"]) == (2, 6, 5, 1)
    assert r["p"] == pytest.approx(0.21875)  # 2 * P(X <= 1), X ~ Binomial(6, 1/2) = 2 * 7/64
    assert _mcnemar(interp, interp)["p"] is None  # no discordant image: nothing to test


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


def test_the_8_symmetries_are_distinct_and_each_is_undone_by_its_inverse():
    from trimesh_decode.decoding import dihedral

    x = jnp.asarray(np.random.default_rng(0).random((2, 16, 16, 3), np.float32))
    turned = [np.asarray(dihedral(x, k)) for k in range(8)]
    assert len({t.tobytes() for t in turned}) == 8
    for k, t in enumerate(turned):
        np.testing.assert_array_equal(dihedral(jnp.asarray(t), k, inverse=True), x)


def test_decodings_averaged_over_a_subgroup_of_symmetries_are_equivariant_to_it_and_only_to_it():
    from trimesh_decode.decoding import decode_channels, dihedral

    rng = np.random.default_rng(1)
    ramp = jnp.asarray(rng.random((1, 16, 16, 1), np.float32))  # a decoder that knows where it is

    def apply(x, interp):
        return interp * ramp + 0.3 * jnp.roll(x[..., :3], 1, axis=2)

    x = jnp.asarray(rng.random((2, 16, 16, 8), np.float32))
    np.testing.assert_allclose(decode_channels(apply, x), jnp.clip(apply(x, x[..., 2:5]), 0, 1), atol=1e-6)
    for symmetries in (1, 2, 4, 8):
        y = decode_channels(apply, x, symmetries)
        for k in range(8):
            d = float(jnp.abs(decode_channels(apply, dihedral(x, k), symmetries) - dihedral(y, k)).max())
            if k < symmetries:
                assert d < 1e-5, (symmetries, k)
            else:
                assert d > 1e-2, (symmetries, k)
    with pytest.raises(ValueError, match="one of 1, 2, 4, 8, got 3"):
        decode_channels(apply, x, 3)


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


def test_worker_processes_give_the_same_batches_and_resume_from_a_saved_state(tiny_dataset):
    """data.workers spreads batches over processes (for an accelerator): the stream is the same as
    in-process loading, and its state restores into a fresh pipeline where it stopped."""
    from trimesh_decode.pipeline import preview_batches

    kw = dict(batch_size=2, seed=3, pad_points=320, pad_triangles=640)
    plain = iter(preview_batches(str(tiny_dataset), **kw))
    expected = [next(plain) for _ in range(6)]
    it = iter(preview_batches(str(tiny_dataset), workers=2, **kw))
    got = [next(it) for _ in range(3)]
    state = it.get_state()
    resumed = iter(preview_batches(str(tiny_dataset), workers=2, **kw))
    resumed.set_state(state)
    got += [next(resumed) for _ in range(3)]
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_device_script_unpacks_trains_and_returns_the_exported_weights_in_pieces(tiny_dataset, tmp_path):
    """launch/device_paper.sh (what a lent accelerator runs) on a packed dataset: it cuts the crops,
    trains at a constant rate until phase 1's time is up (SIGTERM, a checkpoint), decays from those
    weights, exports, and leaves the weights in pieces that join into a model the decoder loads."""
    import os
    import subprocess
    import sys

    from trimesh_decode.cli import main
    from trimesh_decode.models import load_model

    kit = tmp_path / "kit"
    assert main(["pack", str(tiny_dataset), "-o", str(kit / "previews")]) == 0
    out = tmp_path / "out"
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        KIT=str(kit),
        WHEELS="",
        PREVIEWS=str(tmp_path / "previews"),
        RUN=str(tmp_path / "run"),
        OUT=str(out),
        EXPORT=str(tmp_path / "export"),
        MINUTES="5",
        P1_SECONDS="20",
        STEPS2="3",
        WORKERS="0",
        EXTRA=",model.width=16,batch_size=8,checkpoint_every=1,log_every=1,optim.warmup=1,data.crop=64",
    )
    r = subprocess.run(
        ["bash", str(REPO / "launch" / "device_paper.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "8 crops cut from 2 photos" in r.stdout
    assert "phase 1: exit status 75" in r.stdout and "phase 2: exit status 0" in r.stdout
    parts = sorted(out.glob("paper_gpu.npz.part*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    joined = tmp_path / "paper_gpu.npz"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    (tmp_path / "paper_gpu.json").write_bytes((out / "paper_gpu.json").read_bytes())
    decoder = load_model(joined)  # checks the sha256 the json records
    meta = json.loads((out / "paper_gpu.json").read_text())
    assert meta["step"] == 3 and meta["config"]["model"]["init"] == str(tmp_path / "run")
    assert meta["config"]["optim"]["decay_steps"] == 3
    preview = (tiny_dataset / "previews" / "000000.tri").read_bytes()
    from trimesh_decode.bitstream import from_bytes

    assert decoder.decode([from_bytes(preview)]).shape == (1, 256, 256, 3)


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

    config = _config(
        tiny_dataset,
        steps=3,
        checkpoint_every=3,
        log_every=1,
        **{"optim.lr": 3e-3, "optim.ema": 0.5, "model.output": "residual", "data.flip": False},
    )
    task, batch = _first_batch(config)
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
    plain = _config(tiny_dataset, steps=1, checkpoint_every=1, **{"model.output": "residual"})
    assert make_task(plain).init(jax.random.key(0)).ema is None
    train(plain, tmp_path / "plain", make_task(plain), progress=False)
    assert load_model(tmp_path / "plain").meta["weights"] == "trained"

    with pytest.raises(ValueError, match=r"optim.ema=1.0: expected between 0.0 and"):
        make_task(_config(tiny_dataset, **{"optim.ema": 1.0}))
