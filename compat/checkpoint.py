"""orbax-checkpoint: the train state and the data iterator, saved together, asynchronously.

``Checkpointer(directory)`` wraps an orbax ``CheckpointManager`` with two items per step: ``state``
(any pytree of arrays, restored onto the shardings of a template) and ``data`` (a Grain iterator's
state, one file per process). Only complete checkpoints count (orbax writes to a temporary folder and
renames it when done). When the newest one cannot be read - a truncated or corrupted file - it is
moved aside as ``corrupt-<step>-<time>`` (never deleted), a warning names it, and the one before is
used.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "NoUsableCheckpointError", "read_run"]

log = logging.getLogger(__name__)


class NoUsableCheckpointError(RuntimeError):
    """Checkpoints exist but none of them could be restored."""


class Checkpointer:
    """Save and restore ``(state, data iterator)`` pairs under ``directory``.

    ``max_to_keep`` newest checkpoints are kept (None: all); ``keep_period`` also keeps every step
    that is a multiple of it; saves are asynchronous unless ``async_save=False``.
    """

    def __init__(self, directory: str | Path, *, max_to_keep: int | None = 3, keep_period: int | None = None, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            keep_period=keep_period,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()},
        )

    @property
    def manager(self) -> ocp.CheckpointManager:
        return self._manager

    # -- saving -------------------------------------------------------------------------------

    def save(self, step: int, state, iterator=None, *, force: bool = False) -> bool:
        items = {"state": ocp.args.StandardSave(state)}
        if iterator is not None and hasattr(iterator, "get_state"):
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def wait(self) -> None:
        """Block until the asynchronous saves in flight are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    # -- restoring ----------------------------------------------------------------------------

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def restore(self, step: int, template, iterator=None):
        """The state saved at ``step``, shaped and sharded like ``template``; ``iterator`` (if given)
        is moved to where it was."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        items = {"state": ocp.args.StandardRestore(abstract)}
        if iterator is not None and (self.directory / str(step) / "data").is_dir():
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def read(self, step: int):
        """The state saved at ``step`` on this process's first device (no template: for inspection,
        export, evaluation) - whatever the device topology that saved it (e.g. 2 hosts x 4 GPUs)."""
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        meta = self._manager.item_metadata(step)["state"]
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
        return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]

    def restore_latest(self, template, iterator=None):
        """``(state, step)`` from the newest checkpoint that can be read, or ``(None, None)`` when there
        is none. Unreadable newer checkpoints are moved aside with a warning."""
        self._manager.wait_until_finished()
        steps = self.steps()
        for step in reversed(steps):
            try:
                return self.restore(step, template, iterator), step
            except Exception as e:  # orbax/tensorstore/json raise many kinds on damaged files
                aside = self.directory / f"corrupt-{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                if jax.process_index() == 0:  # one process moves it; every process skips it
                    (self.directory / str(step)).rename(aside)
                msg = (f"checkpoint at step {step} in {self.directory} cannot be restored "
                       f"({type(e).__name__}: {str(e)[:200]}); moved it to {aside.name} and trying the previous one")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                log.warning(msg)
                self._manager.reload()
        if steps:
            raise NoUsableCheckpointError(f"none of the checkpoints {steps} in {self.directory} could be restored")
        return None, None


def read_run(workdir: str | Path, step: int | None = None) -> tuple[dict, dict, int]:
    """``(state, config dict, step)`` of a run directory of launch/train.py: the state saved at
    ``step`` (default: the newest checkpoint) as numpy arrays, and the run's config.json."""
    import json

    import numpy as np

    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    ck = Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        step = ck.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{workdir} holds no checkpoint")
        if step not in ck.steps():
            kept = ", ".join(map(str, ck.steps())) or "none"
            raise FileNotFoundError(f"{workdir} holds no checkpoint of step {step} (it keeps steps {kept})")
        state = ck.read(step)
    finally:
        ck.close()
    return jax.tree.map(np.asarray, state), config, int(step)
