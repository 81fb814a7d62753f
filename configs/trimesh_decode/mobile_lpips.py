"""The perceptual variant of the shipped `mobile` decoder (the paper's own suggestion): the same
network fine-tuned from the shipped ``mobile`` on the same previews (``data/previews_4k``, built as
in configs/trimesh_decode/mobile_4k.py), with MSE plus ``loss.lpips`` times the LPIPS (AlexNet)
distance of its output. It trades a little PSNR for previews that a classifier - EfficientNet-Lite0
in ``trimesh-decode evaluate``, another network than the one in the loss - recognises more often.

    python launch/train.py --config configs/trimesh_decode/mobile_lpips.py --workdir runs/trimesh_mobile_lpips
    python launch/train.py --config 'configs/trimesh_decode/mobile_lpips.py:loss.lpips=0.1' --workdir runs/lpips_0.1

The weight's default (0.01) comes from a sweep of 0.01 / 0.05 / 0.2, 500 steps each, scored on
nips17_dev images 301-600, which the reported evaluation leaves out (results/previews/README.md,
"The perceptual decoder"); the shipped ``mobile_perceptual`` is this config's run. Expected on a
2-core CPU: about 0.75 s per step (batch 16 of 128x128 crops; LPIPS's share about a quarter), so
the default 500 steps take about 7 minutes.
"""

from pathlib import Path

from compat.config import config_module
from trimesh_decode.settings import parse_overrides

_mobile_4k = config_module(Path(__file__).with_name("mobile_4k.py"))


def get_config(arg: str | None = None):
    c = _mobile_4k.get_config()
    c.name = "mobile_lpips"
    c.steps = 500
    c.batch_size = 16
    c.checkpoint_every = 100
    c.model.init = "mobile"
    c.loss.lpips = 0.01
    c.optim.lr = 1e-4
    c.optim.warmup = 20
    c.optim.decay_steps = c.steps
    return parse_overrides(c, arg)
