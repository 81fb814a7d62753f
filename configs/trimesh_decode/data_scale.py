"""The data-scale study's run: the `mobile` network (64 filters, residual output) trained from
scratch on one preview folder, at a constant learning rate so that its checkpoints along the way
are the same training stopped earlier (the steps study), all 8 symmetries of the square, batch 16
of 128x128 crops. launch/data_scale.py trains one per folder (126 / 1,000 / all photos, the same
number of crops and steps) and scores every checkpoint on held-out images.

    python launch/train.py --config 'configs/trimesh_decode/data_scale.py:data.dataset=data/previews_126' \\
        --workdir runs/scale_126

Expected on a 2-core CPU: about 0.55 s per step, so the default 1500 steps take about 14 minutes.
"""

from pathlib import Path

from compat.config import config_module
from trimesh_decode.settings import parse_overrides

_mobile = config_module(Path(__file__).with_name("mobile.py"))


def get_config(arg: str | None = None):
    c = _mobile.get_config()
    c.name = "data_scale"
    c.steps = 1_500
    c.batch_size = 16
    c.checkpoint_every = 250
    c.keep_checkpoints = 100
    c.data.dihedral = True
    c.optim.lr = 1e-3
    c.optim.warmup = 50
    c.optim.decay_steps = 0
    return parse_overrides(c, arg)
