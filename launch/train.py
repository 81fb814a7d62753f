"""Train any config of either package.

    python launch/train.py --config configs/jpegedit/qtables_attention.py:lam=0.01 --workdir runs/att

The config file's ``get_config(arg)`` builds an ml_collections ConfigDict whose ``package`` names the
package whose ``task.make_task(config)`` is run by :func:`compat.trainer.train`. Fields can also be
overridden as flags: ``--config.steps=100 --config.loss.gamma=50``. A run resumes from
``WORKDIR/checkpoints`` when it holds one. Launched as one of several processes (SLURM with several
tasks, a multi-host TPU slice, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID set),
it calls ``jax.distributed.initialize`` first.

Exit status: 0 finished; 2 bad configuration; 3 stopped on a non-finite loss; 75 stopped by SIGTERM
after saving a checkpoint (rerun the same command to continue: the cluster scripts in launch/ do).
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
_CONFIG = config_flags.DEFINE_config_file("config", None, "config file (with an optional :arg)", lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory: checkpoints, metrics.jsonl, tensorboard/, config.json")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "yes", "no"], "call jax.distributed.initialize")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> int:
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax's per-save chatter
    from compat.mesh import maybe_initialize_distributed
    from compat.trainer import TrainingDiverged, train

    maybe_initialize_distributed({"auto": None, "yes": True, "no": False}[_DISTRIBUTED.value])
    config = _CONFIG.value
    package = config.get("package")
    if package not in ("jpegedit", "trimesh_decode"):
        print(f"train: error: config.package must be 'jpegedit' or 'trimesh_decode', got {package!r}", file=sys.stderr)
        return 2
    task = importlib.import_module(f"{package}.task").make_task(config)
    try:
        _, metrics = train(config, _WORKDIR.value, task)
    except TrainingDiverged as e:
        print(f"train: stopped: {e}", file=sys.stderr)
        return 3
    if "preempted" in metrics:
        print(f"train: preempted (SIGTERM): checkpoint saved at step {metrics['preempted']} in {_WORKDIR.value}/checkpoints; "
              f"run the same command again to continue", file=sys.stderr)
        return PREEMPTED
    logging.info("done: %s", {k: round(v, 5) for k, v in metrics.items()})
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
