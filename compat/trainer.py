"""The training loop both methods share. It knows nothing of JPEG or triangles.

A package hands :func:`train` a :class:`Task` of pure functions:

``init(rng) -> state``
    a pytree (parameters, optimiser state, step counter...); the trainer replicates it over the mesh.
``train_step(state, batch, rng) -> (state, metrics)``
    pure; ``metrics`` is a dict of scalars and must hold ``"loss"`` and ``"grad_norm"``. The step
    must leave the state unchanged when either is not finite (see :func:`guard_update`): the trainer
    then stops with :class:`TrainingDiverged`, naming the step, and the last checkpoint stays the
    last good one.
``dataset(process_index, process_count, local_batch_size) -> grain.IterDataset``
    this process's batches (dicts of arrays, leading axis = local batch).

What the loop adds: the ``data`` mesh over every device of every process, global batches from
per-process shares, ``jax.jit(train_step, donate_argnums=0)``, an orbax checkpoint of state + data
iterator every ``checkpoint_every`` steps (async, kept by policy) and resumption from the newest
readable one, a JSONL log and TensorBoard events every ``log_every`` steps, a progress bar with ETA,
and the resolved config in the work directory. The host reads the device only at logging and saving
steps (big_vision's habit): a device-side sentinel records the first non-finite step, so the stop
still names it exactly, and no checkpoint is written after it.

Preemption: SIGTERM (what SLURM, Kubernetes and Cloud TPU send before taking the machine) makes the
loop finish the step in flight, save a checkpoint of that step (state + data iterator, synchronously)
and return with ``metrics["preempted"] = step``; the same command started again continues
identically. A notice that arrives during start-up (building or restoring the state, compiling)
is held until the first step is done, which is then saved. With several processes JAX's
preemption service (started by ``jax.distributed.initialize``) hears the signal on any process and
orbax's ``reached_preemption`` makes all of them stop at the same step.

What a work directory is promised (each refusal raises before anything in it is changed):

* one trainer at a time: process 0 holds an exclusive lock on ``WORKDIR/.lock`` for the run; a second
  trainer raises :class:`WorkdirBusyError`;
* the run's config is its identity: resuming with a config that differs from ``config.json`` (beyond
  ``steps`` and the logging and checkpoint cadence) raises :class:`ConfigMismatchError` naming the differing keys,
  unless ``allow_config_change`` (then the old file is kept as ``config-before-<step>.json``);
* checkpoints are verified against the checksums recorded when they were saved (see
  :mod:`compat.checkpoint`); a run whose checkpoints were all moved aside as damaged does not start
  again from step 0 unless ``fresh_start_ok``;
* ``metrics.jsonl`` holds each step once: on resume the lines after the restored step (logged by a
  run that was killed before its next checkpoint) are dropped, and TensorBoard purges those steps;
* a background save that fails (a full disk) stops the run at the next step with
  :class:`~compat.checkpoint.CheckpointSaveError`, naming the last complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from compat import sharding as meshlib
from compat.checkpoint import Checkpointer, CheckpointError
from compat.config import ConfigError, flatten
from compat.locks import FolderBusyError, FolderLock

__all__ = [
    "Task",
    "TrainingDiverged",
    "RunRefused",
    "ConfigMismatchError",
    "WorkdirBusyError",
    "train",
    "guard_update",
    "global_norm",
    "JsonlWriter",
    "CADENCE_KEYS",
]

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """The loss or the gradients stopped being finite."""


class RunRefused(CheckpointError):
    """The work directory cannot take this run as asked; nothing in it was changed."""


class ConfigMismatchError(RunRefused):
    """The config differs from the one the work directory's run was started with."""


class WorkdirBusyError(RunRefused, FolderBusyError):
    """Another trainer holds the work directory."""


# config fields that may change between the runs of one work directory: how long to train (a run is
# extended by raising steps) and how often to log and save
CADENCE_KEYS = frozenset({"steps", "log_every", "checkpoint_every", "keep_checkpoints", "async_checkpoints"})


@dataclasses.dataclass(frozen=True)
class Task:
    init: Callable[[jax.Array], Any]
    train_step: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
    dataset: Callable[[int, int, int], Any]
    name: str = "task"
    # optional: host-side summary of the state (e.g. mean table value) merged into logged metrics
    describe: Callable[[Any], dict] | None = None
    # optional: ``template(rng) -> state`` of init's structure that reads no start model (a config's
    # ``model.init``): the restore target of a resume, so a resumed run needs only its checkpoints
    template: Callable[[jax.Array], Any] | None = None
    # optional: ``upgrade(recorded config dict) -> dict``, how this version reads a config.json that
    # an older version recorded (fields added since take their defaults); applied before the resume
    # check compares it with the config given
    upgrade: Callable[[dict], dict] | None = None
    # optional: ``state_sharding(state, mesh) -> shardings`` (a pytree of shardings matching the state,
    # or a prefix of it) for a state that is not replicated, e.g. one model per batch row sharded over
    # ``data`` as the single-image optimisation does; default: every leaf on every device
    state_sharding: Callable[[Any, Any], Any] | None = None


def global_norm(tree) -> jax.Array:
    leaves = [jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(leaves)) if leaves else jnp.float32(0.0)


class Update(NamedTuple):
    """What :func:`apply_gradients` computed: the loss and its auxiliary output, the parameters and
    optimiser state after the step, the gradients' global norm, and whether the step is finite."""

    loss: jax.Array
    aux: Any
    params: Any
    opt_state: Any
    grad_norm: jax.Array
    ok: jax.Array


def apply_gradients(loss_fn: Callable, params, opt_state, tx: optax.GradientTransformation, *args, **kwargs) -> Update:
    """The anatomy of every train step: ``loss_fn(params, *args, **kwargs) -> (loss, aux)``, its
    gradients, their global norm and one ``tx`` update. ``ok`` is false when the loss or the norm is
    not finite; the step then builds its new state as usual and keeps the old one with
    :func:`guard_update` (so the NaN stop of :func:`train` names the first bad step exactly)."""
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *args, **kwargs)
    gnorm = global_norm(grads)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    return Update(loss, aux, optax.apply_updates(params, updates), new_opt_state, gnorm, ok)


def guard_update(ok: jax.Array, new_state, old_state):
    """``new_state`` where ``ok`` else ``old_state`` (leaf by leaf, inside jit): a non-finite step
    changes nothing."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, old_state)


class JsonlWriter:
    """One JSON object per line, flushed at every write (a killed run keeps every logged step)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class PreemptionWatch:
    """Has a SIGTERM arrived? One process: our own handler (the previous one is put back on close).
    Several: orbax's ``reached_preemption``, the step all processes agree to stop at."""

    def __init__(self, manager):
        self.manager = manager
        self.multi = jax.process_count() > 1
        self.signalled = False
        self._old = None
        if not self.multi and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum, frame):
        self.signalled = True
        log.warning("SIGTERM: finishing the current step, then saving a checkpoint and stopping")

    def reached(self, step: int) -> bool:
        return self.manager.reached_preemption(step) if self.multi else self.signalled

    def close(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def _to_dict(config) -> dict:
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dict(config)


def config_differences(old: dict, new: dict) -> list[str]:
    """``["key: old -> new", ...]`` between two resolved configs (as config.json holds them),
    leaving out the cadence keys."""
    a, b = flatten(old), flatten(new)
    missing = object()
    out = []
    for k in sorted(set(a) | set(b)):
        if k in CADENCE_KEYS:
            continue
        va, vb = a.get(k, missing), b.get(k, missing)
        if va != vb:
            show = lambda v: "(absent)" if v is missing else json.dumps(v)  # noqa: E731
            out.append(f"{k}: {show(va)} -> {show(vb)}")
    return out


def _config_json(config) -> dict:
    return json.loads(json.dumps(_to_dict(config), sort_keys=True, default=str))


def _check_config(
    config, workdir: Path, has_checkpoints: bool, allow_change: bool, upgrade: Callable[[dict], dict] | None = None
) -> tuple[dict, dict | None]:
    """``(resolved config as JSON, the run's config.json or None)``; refuses (ConfigMismatchError)
    a config that differs from the run's."""
    new = _config_json(config)
    path = workdir / "config.json"
    if not (has_checkpoints and path.is_file()):
        return new, None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigMismatchError(
            f"{path} cannot be read ({e}); it records the config of the run in {workdir}"
        ) from None
    diff = config_differences(upgrade(old) if upgrade else old, new)
    if diff and not allow_change:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ConfigMismatchError(
            f"the run in {workdir} was started with another config ({shown}); rerun with its config, "
            "use a new --workdir, or pass --allow_config_change to continue it with this one"
        )
    return new, old


def _truncate_metrics(path: Path, last_step: int) -> int:
    """Drop the lines of ``metrics.jsonl`` after ``last_step`` (and a torn last line); returns how
    many were dropped. The file is replaced atomically."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step", 0)
        except (ValueError, AttributeError):
            dropped += 1
            continue
        if isinstance(step, (int, float)) and step > last_step:
            dropped += 1
        else:
            keep.append(line + "\n")
    if dropped:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        os.replace(tmp, path)
    return dropped


def _new_sentinel(start: int) -> dict:
    """The device-side record of the first non-finite step: ``step`` -1 until one happens."""
    return {
        "next": jnp.asarray(start, jnp.int32),
        "step": jnp.asarray(-1, jnp.int32),
        "loss": jnp.zeros((), jnp.float32),
        "grad_norm": jnp.zeros((), jnp.float32),
    }


def _watched(train_step):
    """``train_step`` that also keeps the sentinel on the device, so that the loop reads the loss
    back only at logging and saving steps (no host sync per step) and still names the exact first
    non-finite step. The task's own guard keeps that step's update out of the state."""

    def step(state, batch, rng, sentinel):
        state, m = train_step(state, batch, rng)
        loss, gnorm = jnp.asarray(m["loss"], jnp.float32), jnp.asarray(m["grad_norm"], jnp.float32)
        hit = (sentinel["step"] < 0) & ~(jnp.isfinite(loss) & jnp.isfinite(gnorm))
        sentinel = {
            "next": sentinel["next"] + 1,
            "step": jnp.where(hit, sentinel["next"], sentinel["step"]),
            "loss": jnp.where(hit, loss, sentinel["loss"]),
            "grad_norm": jnp.where(hit, gnorm, sentinel["grad_norm"]),
        }
        return state, m, sentinel

    return step


def _raise_if_diverged(sentinel: dict, last_good: int | None, workdir: Path) -> None:
    bad = int(sentinel["step"])
    if bad < 0:
        return
    loss, gnorm = float(sentinel["loss"]), float(sentinel["grad_norm"])
    where = (
        f"the last good checkpoint is step {last_good}" if last_good is not None else "no checkpoint was written yet"
    )
    raise TrainingDiverged(
        f"non-finite loss ({loss}) or gradient norm ({gnorm}) at step {bad + 1}: stopped without "
        f"applying the update; {where} in {workdir / 'checkpoints'}"
    )


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in metrics.items()}


def train(
    config,
    workdir: str | Path,
    task: Task,
    *,
    progress: bool = True,
    allow_config_change: bool = False,
    fresh_start_ok: bool = False,
) -> tuple[Any, dict]:
    """Run ``task`` for ``config.steps`` steps in ``workdir``; returns ``(state, last metrics)``.

    Config fields used: ``steps``, ``batch_size`` (global), ``seed``, ``log_every``,
    ``checkpoint_every``, ``keep_checkpoints``; optionally ``async_checkpoints`` (default True).
    Resumes from ``workdir/checkpoints`` when it holds a checkpoint. Raises :class:`RunRefused` (a
    busy work directory, a changed config), :class:`~compat.checkpoint.CheckpointError` (no usable
    checkpoint, one that does not fit, a failed save) or :class:`TrainingDiverged`.
    """
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise RunRefused(f"work directory {workdir} exists and is not a directory")
    mesh = meshlib.data_mesh()
    try:
        local_bs = meshlib.local_batch_size(config.batch_size, mesh)
    except ValueError as e:
        raise ConfigError(f"batch_size={config.batch_size}: {e}") from None
    workdir.mkdir(parents=True, exist_ok=True)
    pid, nproc = jax.process_index(), jax.process_count()
    lock = FolderLock(workdir, "trainer", WorkdirBusyError) if pid == 0 else None
    ckpt = watch = writer = tb = bar = None
    try:
        ckdir = workdir / "checkpoints"
        has_checkpoints = ckdir.is_dir() and any(p.name.isdigit() for p in ckdir.iterdir())
        resolved, recorded = _check_config(config, workdir, has_checkpoints, allow_config_change, task.upgrade)

        rng = jax.random.key(config.seed)
        init_rng, step_rng = jax.random.split(rng)
        ckpt = Checkpointer(
            ckdir,
            max_to_keep=config.get("keep_checkpoints", 3),
            async_save=config.get("async_checkpoints", True),
        )
        # SIGTERM from here on (start-up included: loading, restoring, compiling can take minutes) lets
        # the step in flight finish and saves it, so a preemption notice never kills the run outright
        watch = PreemptionWatch(ckpt.manager)
        # a resume restores into a template (when the task has one) and reads no start model: a
        # checkpoint present either restores or raises, never a silent fresh start
        resuming = ckpt.latest_step() is not None and task.template is not None
        state = (task.template if resuming else task.init)(init_rng)
        repl = meshlib.replicated_sharding(mesh)
        state_shardings = repl if task.state_sharding is None else task.state_sharding(state, mesh)
        state = jax.device_put(state, state_shardings)
        iterator = iter(task.dataset(pid, nproc, local_bs))
        restored, start = ckpt.restore_latest(state, iterator, fresh_start_ok=fresh_start_ok)
        if restored is not None:
            state = restored
            log.info("resumed from step %d", start)
        start = start or 0
        if pid == 0:
            if recorded is not None and recorded != resolved:  # an allowed change: the old config is kept
                os.replace(workdir / "config.json", workdir / f"config-before-{start}.json")
            (workdir / "config.json").write_text(json.dumps(resolved, indent=1, sort_keys=True))
            dropped = _truncate_metrics(workdir / "metrics.jsonl", start)
            if dropped:
                log.info("dropped %d lines of metrics.jsonl logged after step %d (redone now)", dropped, start)

        step_fn = jax.jit(
            _watched(task.train_step),
            in_shardings=(state_shardings, meshlib.data_sharding(mesh), repl, repl),
            out_shardings=(state_shardings, repl, repl),
            donate_argnums=(0, 3),
        )
        sentinel = jax.device_put(_new_sentinel(start), repl)

        if pid == 0:
            writer = JsonlWriter(workdir / "metrics.jsonl")
            try:
                from tensorboardX import SummaryWriter  # lazy: slow to import; only TensorBoard logging needs it

                # purge_step: TensorBoard drops the events of the steps redone after a resume
                tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=start + 1 if start else None)
            except ImportError:  # pragma: no cover - tensorboardX is a dependency
                log.warning("tensorboardX not installed: no TensorBoard events")
            if progress:
                bar = tqdm(total=config.steps, initial=start, desc=task.name, unit="step", dynamic_ncols=True)

        metrics: dict = {}
        preempted = None
        last_good = start if restored is not None else None
        t_last, steps_since = time.perf_counter(), 0
        for step in range(start, config.steps):
            batch = meshlib.global_batch(next(iterator), mesh)
            state, m, sentinel = step_fn(state, batch, jax.random.fold_in(step_rng, step), sentinel)
            ckpt.check()  # a failed background save stops the run here, not at the next save
            done = step + 1
            steps_since += 1
            if bar is not None:
                bar.update(1)
            logging_step = done % config.log_every == 0 or done == config.steps
            preempt = watch.reached(done)
            saving_step = preempt or done % config.checkpoint_every == 0
            if logging_step or saving_step:  # the only host syncs: nothing is logged or saved past a bad step
                _raise_if_diverged(sentinel, last_good, workdir)
            if logging_step:
                now = time.perf_counter()
                dt = (now - t_last) / steps_since
                metrics = _scalars(m)
                if task.describe is not None:
                    metrics.update(task.describe(state))
                metrics.update(step=done, step_time_s=dt, images_per_s=config.batch_size / dt)
                if writer is not None:
                    writer.write(metrics)
                if tb is not None:
                    for k, v in metrics.items():
                        if k != "step":
                            tb.add_scalar(k, v, done)
                    tb.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{metrics['loss']:.4g}")
                t_last, steps_since = time.perf_counter(), 0
            if preempt:
                ckpt.save(done, state, iterator, force=True)
                ckpt.wait()
                preempted = done
                log.warning(
                    "preempted: saved a checkpoint at step %d in %s; rerun the same command to continue",
                    done,
                    workdir / "checkpoints",
                )
                break
            if done % config.checkpoint_every == 0 or done == config.steps:
                ckpt.save(done, state, iterator, force=True)
                last_good = done
    finally:
        try:
            for closer in (watch, ckpt):
                if closer is not None:
                    closer.close()
        finally:
            for closer in (writer, tb, bar):
                if closer is not None:
                    closer.close()
            if lock is not None:
                lock.release()
    if preempted is not None:
        metrics = {**metrics, "preempted": preempted}
    return state, metrics
