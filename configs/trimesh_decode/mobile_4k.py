"""The shipped `mobile` decoder fine-tuned on previews of the larger photo pool and of every encoder
strength: crops of ``../shared/data/photos_4k`` (less ``nips17_dev/``, the ImageNet-domain test set)
and ``../shared/data/photos``, each encoded with its own hill-climbing budget, log-uniform in
3000..30000 iterations (the encoder's default is 16000), so the decoder sees what the encoder ships.

    trimesh-decode dataset --images ../shared/data/photos_4k --exclude nips17_dev --images ../shared/data/photos \\
        -o data/previews_4k --crops 4000 --iterations 3000:30000 --max-scale 4
    python launch/train.py --config configs/trimesh_decode/mobile_4k.py --workdir runs/trimesh_mobile_4k

Starts from the shipped ``mobile`` (``model.init``); aligned 128x128 crops of the rendered inputs,
all 8 symmetries of the square, Adam at 3e-4 cosine-decayed over ``steps``. Expected on a 2-core
CPU: the dataset about 6 minutes (~0.2 s per crop on each core), training about 1.1 s per step
(batch 32), so the default 3000 steps take about 54 minutes. ``trimesh_decode/models/mobile.json`` records the
command and the evaluation of the model shipped from it.
"""

from pathlib import Path

from compat.config import config_module
from trimesh_decode.settings import REPO, parse_overrides

_mobile = config_module(Path(__file__).with_name("mobile.py"))


def get_config(arg: str | None = None):
    c = _mobile.get_config()
    c.name = "mobile_4k"
    c.steps = 3_000
    c.data.dataset = str(REPO / "data" / "previews_4k")
    c.data.dihedral = True
    c.model.init = "mobile"
    c.optim.lr = 3e-4
    c.optim.warmup = 50
    c.optim.decay_steps = c.steps
    return parse_overrides(c, arg)
