"""orbax-checkpoint: the train state and the data iterator, saved together, asynchronously.

``Checkpointer(directory)`` wraps an orbax ``CheckpointManager`` with two items per step: ``state``
(any pytree of arrays, restored onto the shardings of a template) and ``data`` (a Grain iterator's
state, one file per process). Only complete checkpoints count (orbax writes to a temporary folder and
renames it when done).

Integrity: when a save has completed, the sha256 of every file of that step is recorded in
``<step>/compat_sha256.json`` (the step is *sealed*). A restore first checks those sums: a
checkpoint whose files changed, went missing or were added is moved aside as
``corrupt-<step>-<time>`` (never deleted), a warning names it, and the one before is used. A sealed
checkpoint that is intact but does not fit the template (the config or the code changed) is left
where it is and :class:`CheckpointMismatchError` is raised. When every checkpoint has been moved
aside, a restore refuses to report "nothing to resume" (:class:`NoUsableCheckpointError`) unless
told that a fresh start is wanted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = [
    "Checkpointer",
    "CheckpointError",
    "NoUsableCheckpointError",
    "CheckpointMismatchError",
    "CheckpointCorruptError",
    "CheckpointSaveError",
    "read_run",
    "SUMS_FILE",
]

log = logging.getLogger(__name__)


SUMS_FILE = "compat_sha256.json"


class CheckpointError(RuntimeError):
    """A checkpoint directory cannot be used as it is; the message says why and what to do."""


class NoUsableCheckpointError(CheckpointError):
    """Checkpoints exist (or existed and were moved aside) but none of them can be restored."""


class CheckpointMismatchError(CheckpointError):
    """An intact checkpoint does not fit the state it is restored into (the config or code changed)."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's files differ from the checksums recorded when it was saved."""


class CheckpointSaveError(CheckpointError):
    """A (background) save failed, e.g. on a full disk."""


def _brief(e: BaseException, limit: int = 240) -> str:
    """``Type: message`` on one line; a long message keeps its start and its end (where OS errors
    say what happened: "File too large", "No space left on device")."""
    text = " ".join(str(e).split())
    if len(text) > limit:
        text = f"{text[: limit // 3]} ... {text[-(2 * limit) // 3 :]}"
    return f"{type(e).__name__}: {text}"


def _file_sums(folder: Path) -> dict[str, str]:
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name != SUMS_FILE:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
            out[f.relative_to(folder).as_posix()] = h.hexdigest()
    return out


class Checkpointer:
    """Save and restore ``(state, data iterator)`` pairs under ``directory``.

    ``max_to_keep`` newest checkpoints are kept (None: all); ``keep_period`` also keeps every step
    that is a multiple of it; saves are asynchronous unless ``async_save=False``.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        max_to_keep: int | None = 3,
        keep_period: int | None = None,
        async_save: bool = True,
    ):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._async = async_save
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
        """Start saving ``step`` (in the background when async); the save before it is waited for
        and sealed first. A failed save raises :class:`CheckpointSaveError`."""
        self.wait()
        items = {"state": ocp.args.StandardSave(state)}
        if iterator is not None and hasattr(iterator, "get_state"):
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        try:
            saved = self._manager.save(step, args=ocp.args.Composite(**items), force=force)
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds on a full disk
            raise self._save_error(step, e) from e
        if not self._async:  # a synchronous save is complete here
            self._seal()
        return saved

    def check(self) -> None:
        """Raise :class:`CheckpointSaveError` at once if a background save has failed."""
        try:
            self._manager.check_for_errors()
        except Exception as e:  # noqa: BLE001
            raise self._save_error(None, e) from e

    def wait(self) -> None:
        """Block until the asynchronous saves in flight are on disk, then seal them."""
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._save_error(None, e) from e
        self._seal()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._manager.close()

    def _save_error(self, step, e: BaseException) -> CheckpointSaveError:
        self._manager.reload()
        good = [s for s in self.steps() if self.sealed(s)]
        last = f"the last good checkpoint is step {good[-1]}" if good else "no checkpoint was completed"
        what = f"of step {step} " if step is not None else ""
        return CheckpointSaveError(f"saving the checkpoint {what}in {self.directory} failed ({_brief(e)}); {last}")

    # -- integrity ----------------------------------------------------------------------------

    def sealed(self, step: int) -> bool:
        return (self.directory / str(step) / SUMS_FILE).is_file()

    def _seal(self) -> None:
        """Record the checksums of every completed step that has none yet (process 0 writes them)."""
        if jax.process_index() != 0:
            return
        for step in self.steps():
            folder = self.directory / str(step)
            if folder.is_dir() and not self.sealed(step):
                record = json.dumps({"step": step, "files": _file_sums(folder)}, indent=0, sort_keys=True)
                tmp = folder / f".{SUMS_FILE}.tmp"
                tmp.write_text(record)
                os.replace(tmp, folder / SUMS_FILE)

    def verify(self, step: int) -> list[str] | None:
        """The files of ``step`` that differ from its recorded checksums (empty: intact), or None
        when the step was never sealed (saved by an older version, or killed before sealing)."""
        folder = self.directory / str(step)
        try:
            recorded = json.loads((folder / SUMS_FILE).read_text())["files"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return [SUMS_FILE]
        now = _file_sums(folder)
        return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))

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
        export, evaluation) - whatever the device topology that saved it (e.g. 2 hosts x 4 GPUs).
        A step whose files fail their checksums raises :class:`CheckpointCorruptError`."""
        bad = self.verify(step)
        if bad:
            raise CheckpointCorruptError(
                f"checkpoint at step {step} in {self.directory} is damaged: "
                f"{', '.join(bad[:3])} differ from the checksums recorded when it was saved"
            )
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        meta = self._manager.item_metadata(step)["state"]
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
        return self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]

    def restore_latest(self, template, iterator=None, *, fresh_start_ok: bool = False):
        """``(state, step)`` from the newest intact checkpoint, or ``(None, None)`` when there is none.

        A checkpoint that fails its checksums (or, never sealed, cannot be read) is moved aside with
        a warning and the one before is tried. An intact one that does not fit ``template`` raises
        :class:`CheckpointMismatchError` and nothing is moved. When no checkpoint is usable but some
        were moved aside (now or earlier), :class:`NoUsableCheckpointError` is raised unless
        ``fresh_start_ok``."""
        try:  # not wait(): a step that was never sealed is checked by restoring it, not sealed as it is
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._save_error(None, e) from e
        steps = self.steps()
        for step in reversed(steps):
            bad = self.verify(step)
            if bad:
                self._move_aside(
                    step, f"its files differ from the checksums recorded when it was saved ({', '.join(bad[:3])})"
                )
                continue
            try:
                return self.restore(step, template, iterator), step
            except Exception as e:  # orbax/tensorstore/json raise many kinds
                detail = _brief(e)
                if bad is not None:  # intact: the state it holds is not the state asked for
                    raise CheckpointMismatchError(
                        f"checkpoint at step {step} in {self.directory} is intact (its checksums hold) but does not "
                        "fit "
                        f"this run's state ({detail}): the config or the code changed since it was saved"
                    ) from e
                self._move_aside(step, f"it was never sealed and cannot be restored ({detail})")
        aside = sorted(p.name for p in self.directory.glob("corrupt-*"))
        if aside and not fresh_start_ok:
            raise NoUsableCheckpointError(
                f"no usable checkpoint in {self.directory}: {', '.join(aside[:4])} were moved aside as damaged; "
                "refusing to start again from step 0 (pass --fresh_start to do so, or restore a checkpoint)"
            )
        return None, None

    def _move_aside(self, step: int, why: str) -> None:
        aside = self.directory / f"corrupt-{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:  # one process moves it; every process skips it
            (self.directory / str(step)).rename(aside)
        msg = f"checkpoint at step {step} in {self.directory} cannot be used: {why}; moved it to {aside.name}"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
        self._manager.reload()


def read_run(workdir: str | Path, step: int | None = None) -> tuple[dict, dict, int]:
    """``(state, config dict, step)`` of a run directory of launch/train.py: the state saved at
    ``step`` (default: the newest checkpoint) as numpy arrays, and the run's config.json."""

    workdir = Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} is not a run directory of launch/train.py (it has no config.json)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read ({_brief(e)}); it records the run's config") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a config (a JSON object)")
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
