"""Train any config of either package.

    python launch/train.py --config configs/jpegedit/qtables_attention.py:lam=0.01 --workdir runs/att

The config file's ``get_config(arg)`` builds an ml_collections ConfigDict whose ``package`` names the
package whose ``task.make_task(config)`` is run by :func:`compat.trainer.train`. Fields can also be
overridden as flags: ``--config.steps=100 --config.loss.gamma=50``. A run resumes from
``WORKDIR/checkpoints`` when it holds one. Launched as one of several processes (SLURM with several
tasks, a multi-host TPU slice, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set),
it calls ``jax.distributed.initialize`` first.

The whole resolved config (names, types, choices, ranges) is checked before anything is created.
A work directory belongs to one run: resuming it with another config is refused, naming the keys
that differ (``--allow_config_change`` continues it with the new one); a second trainer on it is
refused; checkpoints that fail their checksums are moved aside, and a run left with none of them
does not silently start again from step 0 (``--fresh_start`` does that).

Exit status: 0 finished; 2 refused, with one line and nothing written (a bad config, a busy work
directory, a changed config, no usable checkpoint, one that does not fit); 3 stopped on a non-finite
loss; 4 a checkpoint could not be saved (e.g. a full disk: the line names the last good one); 75
stopped by SIGTERM after saving a checkpoint (rerun the same command to continue: the cluster
scripts in launch/ do).
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # so that config files can import the packages when run from anywhere
    sys.path.insert(0, str(REPO))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

PREEMPTED = 75  # EX_TEMPFAIL: stopped on SIGTERM with a checkpoint; rerun to continue
SAVE_FAILED = 4
_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (with an optional :arg)", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics.jsonl, tensorboard/, config.json")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "yes", "no"], "call jax.distributed.initialize")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "continue a run with a config that differs from its config.json"
)
_FRESH = flags.DEFINE_bool("fresh_start", False, "start from step 0 when every checkpoint was moved aside as damaged")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> int:
    print(f"train: error: {message}", file=sys.stderr)
    return 2


def _parse_flags(argv):
    """absl's flag parsing, with its errors (a config file's among them, which absl prints with the
    file's traceback) as one line and exit status 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        flag = lines[0].split(": ", 1)[0].removeprefix("flag ") if lines else "flags"
        cause = lines[-1] if lines else type(e).__name__
        if ": " in cause and cause.split(": ", 1)[0].endswith(("Error", "Exception")):
            cause = cause.split(": ", 1)[1]
        sys.exit(_fail(f"{flag}: {cause.removeprefix(f'flag {flag}: ')}"))


def main(argv) -> int:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # orbax's per-save chatter, and its background threads' tracebacks of a failed save, which the
    # trainer reports itself as one line (CheckpointSaveError)
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    from compat.checkpoint import (
        CheckpointError,
        CheckpointSaveError,
    )  # lazy: JAX loads after the flags set its platform
    from compat.config import ConfigError  # lazy: as above
    from compat.sharding import maybe_initialize_distributed  # lazy: as above
    from compat.trainer import TrainingDiverged, train  # lazy: as above

    config, workdir = _CONFIG.value, Path(_WORKDIR.value)
    try:
        package = config.get("package")
    except OSError as e:  # ml_collections reports a config file it could not load only when it is read
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        return _fail(f"--config: {lines[-1] if lines else e}")
    if package not in ("jpegedit", "trimesh_decode"):
        return _fail(f"config.package must be 'jpegedit' or 'trimesh_decode', got {package!r}")
    maybe_initialize_distributed({"auto": None, "yes": True, "no": False}[_DISTRIBUTED.value])
    try:
        task = importlib.import_module(f"{package}.task").make_task(config)  # validates the config first
        _, metrics = train(config, workdir, task, allow_config_change=_ALLOW_CHANGE.value, fresh_start_ok=_FRESH.value)
    except TrainingDiverged as e:
        print(f"train: stopped: {e}", file=sys.stderr)
        return 3
    except CheckpointSaveError as e:
        print(f"train: stopped: {e}", file=sys.stderr)
        return SAVE_FAILED
    except (CheckpointError, ConfigError) as e:
        return _fail(str(e))
    if "preempted" in metrics:
        print(
            f"train: preempted (SIGTERM): checkpoint saved at step {metrics['preempted']} in {workdir}/checkpoints; "
            f"run the same command again to continue",
            file=sys.stderr,
        )
        return PREEMPTED
    logging.info("done: %s", {k: round(v, 5) for k, v in metrics.items()})
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)
