"""Neural decoder smoke test: seconds on a CPU. A 16-filter, 1-stack, depth-2 hourglass, batch 8,
6 steps, a checkpoint every 3, 64x64 crops of the rendered inputs.

    python launch/train.py --config configs/trimesh_decode/smoke.py:data.dataset=DIR --workdir /tmp/trimesh_smoke

Expected: within a minute (mostly compiling), 3 lines in metrics.jsonl, checkpoints at steps 3 and
6, a finite loss. DIR is a folder of ``trimesh-decode dataset`` (a handful of crops is enough).
"""

from trimesh_decode.settings import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "smoke"
    c.steps = 6
    c.batch_size = 8
    c.log_every = 2
    c.checkpoint_every = 3
    c.data.crop = 64
    c.model.width = 16
    c.model.stacks = 1
    c.model.depth = 2
    c.optim.warmup = 0
    return parse_overrides(c, arg)
