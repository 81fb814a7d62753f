"""compat's training harness: mesh, Grain data, orbax checkpoints, NaN guard, resumption after SIGKILL."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from compat import data as datalib
from compat import sharding as meshlib
from compat.checkpoint import (
    SUMS_FILE,
    CheckpointCorruptError,
    Checkpointer,
    CheckpointMismatchError,
    NoUsableCheckpointError,
)
from compat.trainer import Task, TrainingDiverged, global_norm, guard_update, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Twelve generated 'photos' of varied sizes (no shared data needed)."""
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(12):
        h, w = 40 + 7 * i, 90 - 3 * i
        yy, xx = np.mgrid[0:h, 0:w]
        im = np.stack([(yy * (i + 1)) % 256, (xx * 3) % 256, (yy + xx + 20 * i) % 256], -1)
        im = np.clip(im + rng.integers(-10, 11, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(d / f"p{i:02d}.png")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(d / "tiny.png")  # smaller than any crop
    return d


# --- mesh ------------------------------------------------------------------------------------


def test_the_mesh_spans_all_eight_fake_devices_and_splits_batches():
    mesh = meshlib.data_mesh()
    assert mesh.devices.size == 8 == jax.device_count()
    assert meshlib.local_batch_size(16, mesh) == 16
    with pytest.raises(ValueError, match="multiple of 8"):
        meshlib.local_batch_size(12, mesh)
    batch = meshlib.global_batch({"image": np.arange(16 * 3).reshape(16, 3)}, mesh)
    assert batch["image"].shape == (16, 3)
    assert len(batch["image"].addressable_shards) == 8
    assert batch["image"].addressable_shards[3].data.shape == (2, 3)


# --- data ------------------------------------------------------------------------------------


def test_crops_are_deterministic_sharded_and_resumable(photo_dir):
    paths = datalib.training_images(photo_dir, min_side=32)
    assert not any(p.endswith("tiny.png") for p in paths) and len(paths) == 12

    def take(it, n):
        return [next(it)["image"] for _ in range(n)]

    a = take(iter(datalib.crop_batches(paths, crop=32, batch_size=4, seed=1, flip=True)), 5)
    b = take(iter(datalib.crop_batches(paths, crop=32, batch_size=4, seed=1, flip=True)), 5)
    c = take(iter(datalib.crop_batches(paths, crop=32, batch_size=4, seed=2, flip=True)), 5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert a[0].shape == (4, 32, 32, 3) and a[0].dtype == np.uint8
    # resumable: the state after 2 batches continues with batches 3, 4, 5
    it = iter(datalib.crop_batches(paths, crop=32, batch_size=4, seed=1, flip=True))
    take(it, 2)
    state = it.get_state()
    fresh = iter(datalib.crop_batches(paths, crop=32, batch_size=4, seed=1, flip=True))
    fresh.set_state(state)
    assert all(np.array_equal(x, y) for x, y in zip(take(fresh, 3), a[2:]))
    # two processes with half the batch each see exactly the one-process global batches
    s0 = take(
        iter(datalib.crop_batches(paths, crop=32, batch_size=2, seed=1, flip=True, shard_index=0, shard_count=2)), 5
    )
    s1 = take(
        iter(datalib.crop_batches(paths, crop=32, batch_size=2, seed=1, flip=True, shard_index=1, shard_count=2)), 5
    )
    assert all(np.array_equal(np.concatenate([x, y]), g) for x, y, g in zip(s0, s1, a))
    with pytest.raises(ValueError, match="shard_index"):
        datalib.crop_batches(paths, crop=32, batch_size=2, seed=1, shard_index=2, shard_count=2)
    with pytest.raises(FileNotFoundError):
        datalib.training_images(photo_dir / "absent")


# --- checkpoints -----------------------------------------------------------------------------


def _small_state(v: float):
    return {"w": jnp.full((4, 3), v), "step": jnp.asarray(int(v), jnp.int32)}


def _state_files(step_dir: Path) -> list[Path]:
    return [f for f in step_dir.rglob("*") if f.is_file() and f.name != SUMS_FILE]


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    ck = Checkpointer(tmp_path / "ck", async_save=False)
    for step in (1, 2):
        ck.save(step, _small_state(step), force=True)
    ck.wait()
    for f in _state_files(tmp_path / "ck" / "2"):  # damage every file of step 2's state
        f.write_bytes(b"\x00garbage")
    with pytest.warns(RuntimeWarning, match="step 2 .* cannot be used: its files differ from the checksums"):
        state, step = ck.restore_latest(_small_state(0))
    assert step == 1 and float(state["w"][0, 0]) == 1.0
    assert any(p.name.startswith("corrupt-2-") for p in (tmp_path / "ck").iterdir())  # moved aside, not deleted
    ck.save(2, _small_state(22), force=True)  # the step can be written again
    ck.close()


def test_same_size_corruption_inside_a_data_file_is_caught_by_the_checksums(tmp_path):
    """Garbled bytes that keep the file's size restore without complaint from orbax itself; the
    sums recorded when the save completed catch them, so the previous checkpoint is used."""
    ck = Checkpointer(tmp_path / "ck", async_save=True)
    for step in (1, 2):
        ck.save(step, {"w": jnp.arange(4096, dtype=jnp.float32) + step}, force=True)
    ck.wait()
    assert ck.sealed(1) and ck.sealed(2)
    data = max(_state_files(tmp_path / "ck" / "2"), key=lambda f: f.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 16] = b"\xff" * 16
    data.write_bytes(bytes(raw))
    assert ck.verify(2) and ck.verify(1) == []
    with pytest.warns(RuntimeWarning, match="step 2 .* differ from the checksums"):
        state, step = ck.restore_latest({"w": jnp.zeros(4096, jnp.float32)})
    assert step == 1 and float(state["w"][0]) == 1.0
    ck.close()


def test_reading_a_damaged_checkpoint_for_export_is_refused(tmp_path):
    ck = Checkpointer(tmp_path / "ck", async_save=False)
    ck.save(1, _small_state(1), force=True)
    f = max(_state_files(tmp_path / "ck" / "1"), key=lambda f: f.stat().st_size)
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorruptError, match="step 1 .* damaged"):
        ck.read(1)
    ck.close()


def test_an_intact_checkpoint_that_does_not_fit_is_left_in_place_and_named(tmp_path):
    ck = Checkpointer(tmp_path / "ck", async_save=False)
    ck.save(1, _small_state(1), force=True)
    with pytest.raises(CheckpointMismatchError, match="step 1 .* intact .* does not fit"):
        ck.restore_latest({"w": jnp.zeros((4, 3)), "other": jnp.zeros(2), "step": jnp.zeros((), jnp.int32)})
    assert ck.steps() == [1] and not list((tmp_path / "ck").glob("corrupt-*"))
    ck.close()


def test_when_every_checkpoint_was_moved_aside_a_fresh_start_needs_to_be_asked_for(tmp_path):
    ck = Checkpointer(tmp_path / "ck", async_save=False)
    ck.save(1, _small_state(1), force=True)
    for f in _state_files(tmp_path / "ck" / "1"):
        f.write_bytes(b"x")
    with pytest.warns(RuntimeWarning), pytest.raises(NoUsableCheckpointError, match="refusing to start again"):
        ck.restore_latest(_small_state(0))
    with pytest.raises(NoUsableCheckpointError, match="corrupt-1-"):  # and on every later attempt
        ck.restore_latest(_small_state(0))
    assert ck.restore_latest(_small_state(0), fresh_start_ok=True) == (None, None)
    ck.close()


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    ck = Checkpointer(tmp_path / "empty", async_save=False)
    assert ck.restore_latest(_small_state(0)) == (None, None)
    ck.close()


# --- the loop --------------------------------------------------------------------------------


def _toy_task(nan_at: int | None = None) -> Task:
    """Linear regression on random data; optionally a NaN in the batch at one step."""

    def init(rng):
        return {"w": jax.random.normal(rng, (3,)), "step": jnp.zeros((), jnp.int32)}

    def train_step(state, batch, rng):
        def loss_fn(w):
            return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

        loss, g = jax.value_and_grad(loss_fn)(state["w"])
        new = {"w": state["w"] - 0.1 * g, "step": state["step"] + 1}
        ok = jnp.isfinite(loss) & jnp.isfinite(global_norm(g))
        return guard_update(ok, new, state), {"loss": loss, "grad_norm": global_norm(g)}

    class Stream:
        def __init__(self, bs):
            self.bs, self.i = bs, 0

        def __iter__(self):
            return self

        # the iterator protocol grain's orbax handler uses for iterators that are not Grain's own
        def get_state(self) -> bytes:
            return json.dumps({"i": self.i}).encode()

        def set_state(self, state: bytes) -> None:
            self.i = json.loads(state)["i"]

        def start_prefetch(self) -> None:
            pass

        def __next__(self):
            rng = np.random.default_rng(self.i)
            x = rng.normal(size=(self.bs, 3)).astype(np.float32)
            self.i += 1
            if nan_at is not None and self.i == nan_at:
                x[0, 0] = np.nan
            return {"x": x, "y": x @ np.array([1.0, -2.0, 0.5], np.float32)}

    return Task(init=init, train_step=train_step, dataset=lambda p, n, bs: Stream(bs), name="toy")


def _toy_config(**kw):
    c = ml_collections.ConfigDict(
        {
            "steps": 6,
            "batch_size": 8,
            "seed": 0,
            "log_every": 2,
            "checkpoint_every": 2,
            "keep_checkpoints": 5,
            "async_checkpoints": False,
        }
    )
    c.update(kw)
    return c


def test_a_nan_in_a_batch_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(
        TrainingDiverged, match=r"at step 5: stopped without applying the update; the last good checkpoint is step 4"
    ):
        train(_toy_config(), tmp_path, _toy_task(nan_at=5), progress=False)
    ck = Checkpointer(tmp_path / "checkpoints", async_save=False)
    assert ck.steps() == [2, 4]
    state, _ = ck.restore_latest(_toy_task().init(jax.random.key(0)))
    assert np.isfinite(np.asarray(state["w"])).all() and int(state["step"]) == 4
    ck.close()


def test_the_loss_is_read_only_at_logging_and_saving_steps_and_the_first_bad_step_is_still_named(tmp_path):
    """No host sync per step: a NaN at step 3 is seen at step 5 (the first logging and saving step),
    named as step 3, and no checkpoint is written after it."""
    config = _toy_config(steps=10, log_every=5, checkpoint_every=5)
    with pytest.raises(TrainingDiverged, match=r"at step 3: .*no checkpoint was written yet"):
        train(config, tmp_path, _toy_task(nan_at=3), progress=False)
    assert not (tmp_path / "checkpoints").is_dir() or not [
        p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()
    ]
    assert not (tmp_path / "metrics.jsonl").read_text()


def test_a_preemption_notice_during_start_up_saves_the_first_step_instead_of_killing_the_run(tmp_path):
    """SIGTERM while the run is still starting (here: inside init; in practice loading a start model,
    restoring or compiling) is held until the first step is done, which is saved; the process lives."""
    import dataclasses
    import os

    toy = _toy_task()

    def init(rng):
        os.kill(os.getpid(), signal.SIGTERM)  # the notice arrives before any step
        return toy.init(rng)

    before = signal.getsignal(signal.SIGTERM)
    _, last = train(_toy_config(), tmp_path, dataclasses.replace(toy, init=init), progress=False)
    assert last["preempted"] == 1
    ck = Checkpointer(tmp_path / "checkpoints", async_save=False)
    assert ck.steps() == [1]
    ck.close()
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back
    _, last = train(_toy_config(), tmp_path, toy, progress=False)  # the same command continues
    assert last["step"] == 6 and "preempted" not in last


def test_the_loop_logs_jsonl_and_tensorboard_and_writes_its_config(tmp_path):
    state, _ = train(_toy_config(), tmp_path, _toy_task(), progress=False)
    target = np.array([1.0, -2.0, 0.5])
    start = np.asarray(_toy_task().init(jax.random.split(jax.random.key(0))[0])["w"])
    assert np.linalg.norm(np.asarray(state["w"]) - target) < 0.5 * np.linalg.norm(start - target)  # it learned
    lines = [json.loads(rec) for rec in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in lines] == [2, 4, 6]
    assert {"loss", "grad_norm", "step_time_s", "images_per_s"} <= set(lines[0])
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 6
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    # a finished run restarted does nothing more and keeps its state
    state, _ = train(_toy_config(), tmp_path, _toy_task(), progress=False)
    assert int(state["step"]) == 6


# --- resumption after SIGKILL, through launch/train.py ----------------------------------------


def _launch(workdir: Path, photos: Path, steps: int) -> subprocess.Popen:
    arg = (
        f"data.roots={photos},data.crop=32,steps={steps},checkpoint_every=2,log_every=1,optim.lr=0.0001,"
        "async_checkpoints=false"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "launch" / "train.py"),
            f"--config={REPO}/configs/jpegedit/qtables_only.py:{arg}",
            f"--workdir={workdir}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _final_tables(workdir: Path, step: int) -> np.ndarray:
    ck = Checkpointer(workdir / "checkpoints", async_save=False)
    state = ck.read(step)
    ck.close()
    return np.asarray(state["params"]["q"])


def test_a_run_killed_mid_training_and_restarted_reaches_the_same_parameters(tmp_path, photo_dir):
    steps = 24  # enough steps after checkpoint 4 that the kill always lands mid-run
    ref = _launch(tmp_path / "ref", photo_dir, steps)
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-2000:]

    run = _launch(tmp_path / "run", photo_dir, steps)
    ckdir = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 300
    while not (ckdir / "4").is_dir():  # wait until mid-training, then kill without warning
        assert run.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = {p.name for p in ckdir.iterdir()}
    assert str(steps) not in done
    again = _launch(tmp_path / "run", photo_dir, steps)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-2000:]
    assert "resumed from step" in out
    np.testing.assert_array_equal(_final_tables(tmp_path / "run", steps), _final_tables(tmp_path / "ref", steps))
    # the log of the resumed run continues where the killed one stopped
    steps_logged = [json.loads(rec)["step"] for rec in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged[-1] == steps and sorted(set(steps_logged)) == list(range(1, steps + 1))


def test_plot_metrics_overlays_runs_and_keeps_an_existing_figure(tmp_path, capsys):
    import json

    from compat.plot_metrics import _smooth, main

    for name, slope in (("a", 1.0), ("b", 2.0)):
        (tmp_path / name).mkdir()
        rows = [{"step": s, "loss": slope * s, "images_per_s": 3.0} for s in range(1, 11)]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "both.png"
    args = [str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--smooth", "3"]
    assert main(args) == 0 and out.stat().st_size > 1000
    assert main(args) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main([str(tmp_path / "a")]) == 0 and (tmp_path / "a" / "metrics.png").exists()
    assert main([str(tmp_path / "nope"), "-o", str(tmp_path / "x.png")]) == 2
    (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')  # a write cut short
    assert main([str(tmp_path / "a"), "-o", str(tmp_path / "y.png")]) == 0
    (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo\n{"step": 3}\n')
    assert main([str(tmp_path / "a"), "-o", str(tmp_path / "z.png")]) == 2
    assert "metrics.jsonl:2: not a JSON line" in capsys.readouterr().err
    assert _smooth([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]


# --- what a work directory is promised ---------------------------------------------------------


def test_resuming_with_a_changed_config_is_refused_naming_the_keys_and_nothing_changes(tmp_path):
    from compat.trainer import ConfigMismatchError

    train(_toy_config(steps=4), tmp_path, _toy_task(), progress=False)
    before = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    config_before = (tmp_path / "config.json").read_text()
    with pytest.raises(
        ConfigMismatchError, match=r"another config \(batch_size: 8 -> 16; seed: 0 -> 1\).*--allow_config_change"
    ):
        train(_toy_config(steps=6, seed=1, batch_size=16), tmp_path, _toy_task(), progress=False)
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == before  # nothing renamed corrupt-*
    assert (tmp_path / "config.json").read_text() == config_before
    # the length of the run and the logging and checkpoint cadence may change (a run is extended);
    # any other change is allowed by the flag, and the old config is kept
    _, last = train(_toy_config(steps=6, log_every=1, checkpoint_every=1), tmp_path, _toy_task(), progress=False)
    assert last["step"] == 6
    _, last = train(_toy_config(steps=8, seed=1), tmp_path, _toy_task(), progress=False, allow_config_change=True)
    assert last["step"] == 8
    assert json.loads((tmp_path / "config-before-6.json").read_text())["seed"] == 0
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1


def test_a_state_that_no_longer_fits_is_refused_and_the_checkpoints_survive(tmp_path):
    """The same config but code whose state differs (as model.attention=false once did through the
    config): the intact checkpoints are not renamed corrupt-*, and the original run still resumes."""
    import dataclasses

    from compat.checkpoint import CheckpointMismatchError

    train(_toy_config(steps=4), tmp_path, _toy_task(), progress=False)
    toy = _toy_task()
    wider = dataclasses.replace(toy, init=lambda rng: {**toy.init(rng), "extra": jnp.zeros(2)})
    with pytest.raises(CheckpointMismatchError, match="step 4 .* intact"):
        train(_toy_config(steps=4), tmp_path, wider, progress=False)
    assert not list((tmp_path / "checkpoints").glob("corrupt-*"))
    state, _ = train(_toy_config(steps=4), tmp_path, _toy_task(), progress=False)
    assert int(state["step"]) == 4


def test_a_second_trainer_on_a_busy_work_directory_is_refused(tmp_path):
    from compat.trainer import WorkdirBusyError

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from compat.locks import FolderLock; "
            "lock = FolderLock(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusyError, match=rf"in use by another trainer \(pid {holder.pid}\)"):
            train(_toy_config(), tmp_path, _toy_task(), progress=False)
        assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    train(_toy_config(), tmp_path, _toy_task(), progress=False)  # the lock died with its process


def test_after_a_kill_the_metrics_log_holds_each_step_once(tmp_path):
    train(_toy_config(log_every=1), tmp_path, _toy_task(), progress=False)
    # as if killed after logging steps 5 and 6 but before the step-6 checkpoint, mid-line
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "6")
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"loss": 0.1, "st')
    train(_toy_config(log_every=1), tmp_path, _toy_task(), progress=False)
    lines = [json.loads(rec) for rec in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [rec["step"] for rec in lines] == [1, 2, 3, 4, 5, 6]


def test_a_failed_background_save_stops_the_run_at_once_naming_the_last_good_checkpoint(tmp_path):
    """A full disk, made real by RLIMIT_FSIZE in a child process: from step 4 on no file may pass
    64 KiB, so the asynchronous saves fail; the run stops within a step of the failing save with one
    line, instead of training on while nothing is saved."""
    script = r"""
import resource, signal, sys
import jax, jax.numpy as jnp, numpy as np, ml_collections
from compat.checkpoint import CheckpointSaveError
from compat.trainer import Task, train
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
def step(state, batch, rng):
    return {"w": state["w"] * 1.001, "step": state["step"] + 1}, {"loss": jnp.float32(1), "grad_norm": jnp.float32(0)}
class Stream:
    def __iter__(self): return self
    def __next__(self): return {"x": np.zeros((8, 1), np.float32)}
def describe(state):
    if int(state["step"]) == 4:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
    return {}
task = Task(init=lambda rng: {"w": jax.random.normal(rng, (1 << 18,)), "step": jnp.zeros((), jnp.int32)},
            train_step=step, dataset=lambda p, n, b: Stream(), describe=describe)
c = ml_collections.ConfigDict({"steps": 40, "batch_size": 8, "seed": 0, "log_every": 2, "checkpoint_every": 2,
                               "keep_checkpoints": 5, "async_checkpoints": True})
try:
    train(c, sys.argv[1], task, progress=False)
except CheckpointSaveError as e:
    print("STOPPED:", e)
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    ).stdout
    stop = [rec for rec in out.splitlines() if rec.startswith("STOPPED:")]
    assert stop, out[-2000:]
    assert re.search(
        r"failed \(.*File too large.*\); (the last good checkpoint is step 2|no checkpoint was completed)$", stop[0]
    )
    logged = [json.loads(rec)["step"] for rec in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) <= 6  # stopped at the save after the failing one at the latest, not at step 40


def test_a_checkpoint_that_was_never_sealed_is_tried_and_moved_aside_only_if_unreadable(tmp_path):
    """A step saved by an older version (or killed between its save and its seal) has no checksums:
    it is restored if it can be, else moved aside - it is not sealed as it is first."""
    ck = Checkpointer(tmp_path / "ck", async_save=False)
    for step in (1, 2, 3):
        ck.save(step, _small_state(step), force=True)
    for step in (2, 3):
        (tmp_path / "ck" / str(step) / SUMS_FILE).unlink()
    for f in _state_files(tmp_path / "ck" / "3"):
        f.write_bytes(b"\x00garbage")
    with pytest.warns(RuntimeWarning, match="step 3 .* never sealed and cannot be restored"):
        state, step = ck.restore_latest(_small_state(0))
    assert step == 2 and float(state["w"][0, 0]) == 2.0
    ck.close()  # what was read back intact is sealed now
    again = Checkpointer(tmp_path / "ck", async_save=False)
    assert again.sealed(2) and again.verify(2) == []
    again.close()


def test_apply_gradients_takes_one_optimiser_step_and_flags_a_non_finite_one():
    import optax

    from compat.trainer import apply_gradients, guard_update

    tx = optax.sgd(0.5)
    params = {"w": jnp.array([1.0, -2.0])}

    def loss_fn(p, scale):
        return scale * jnp.sum(p["w"] ** 2), "aux"

    u = apply_gradients(loss_fn, params, tx.init(params), tx, 1.0)
    np.testing.assert_allclose(u.params["w"], [0.0, 0.0])  # w - 0.5 * 2w
    np.testing.assert_allclose(u.grad_norm, np.sqrt(20.0), rtol=1e-6)
    assert bool(u.ok) and u.aux == "aux" and float(u.loss) == 5.0
    bad = apply_gradients(loss_fn, params, tx.init(params), tx, jnp.nan)
    assert not bool(bad.ok)
    np.testing.assert_array_equal(guard_update(bad.ok, bad.params, params)["w"], params["w"])
