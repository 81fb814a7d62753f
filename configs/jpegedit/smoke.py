"""jpegedit smoke test: seconds on a CPU. Q-tables + attention (frozen backbone), 64x64 crops,
batch 8, 6 steps, a checkpoint every 3; a learning rate large enough to see the tables move.

    python launch/train.py --config configs/jpegedit/smoke.py --workdir /tmp/jpegedit_smoke

Expected: in about a minute (most of it compiling), 3 lines in metrics.jsonl (every 2 steps), checkpoints
at steps 3 and 6, a finite loss. Training photos: ../shared/data/photos, or ``smoke.py:data.roots=DIR``.
"""

from jpegedit.settings import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "smoke"
    c.steps = 6
    c.batch_size = 8
    c.log_every = 2
    c.checkpoint_every = 3
    c.data.crop = 64
    c.model.attention = True
    c.model.finetune_backbone = False
    c.optim.lr = 1e-4
    return parse_overrides(c, arg)
