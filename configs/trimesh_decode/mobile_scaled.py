"""Stage 2 of the shipped `mobile` decoder: the stage-1 model (configs/trimesh_decode/mobile.py,
crops at the photos' own resolution) fine-tuned on crops of random scale - squares of 256..1024
pixels resized to 256 - which look like previews of whole photos (what `evaluate` measures: Kodak's
centre squares are downscaled 2x), with the learning rate decayed to 1% by a cosine.

    trimesh-decode dataset --images ../shared/data/photos --out data/trimesh_previews_scaled \\
        --crops 2000 --max-scale 4
    python launch/train.py --config configs/trimesh_decode/mobile_scaled.py \\
        --workdir runs/trimesh_mobile_scaled

Expected: on a 2-core CPU 18-20 images/s, 72 minutes; on the Kodak previews (`trimesh-decode
evaluate`) +0.15 dB PSNR and +0.006 SSIM over interpolation, 96% of images improved (stage 1 alone:
+0.09 dB, +0.003). The shipped model adds stage 3: the builder continued to --crops 4000, then

    python launch/train.py --config "configs/trimesh_decode/mobile_scaled.py:model.init=runs/trimesh_mobile_scaled,steps=800,optim.decay_steps=800,optim.lr=5e-4" \
        --workdir runs/trimesh_mobile_scaled2

(22 minutes; Kodak +0.16 dB, +0.0074 SSIM, every image improved), and stage 4: --crops 6000, then

    python launch/train.py --config "configs/trimesh_decode/mobile_scaled.py:model.init=runs/trimesh_mobile_scaled2,steps=1200,optim.decay_steps=1200,optim.lr=5e-4" \
        --workdir runs/trimesh_mobile_scaled3

(35 minutes; Kodak +0.17 dB, +0.0077 SSIM, every image improved), stage 5:
--crops 8000, then, with all 8 symmetries of the square as augmentation,

    python launch/train.py --config "configs/trimesh_decode/mobile_scaled.py:model.init=runs/trimesh_mobile_scaled3,steps=1200,optim.decay_steps=1200,optim.lr=5e-4,data.dihedral=True" \
        --workdir runs/trimesh_mobile_scaled4

(42 minutes; Kodak +0.18 dB, +0.0090 SSIM, every image improved), and stage 6 (the shipped one):
no new crops, whole 256x256 inputs instead of 128x128 crops,

    python launch/train.py --config "configs/trimesh_decode/mobile_scaled.py:model.init=runs/trimesh_mobile_scaled4,steps=600,optim.decay_steps=600,optim.lr=5e-4,data.dihedral=True,data.crop=256" \
        --workdir runs/trimesh_mobile_full6

(80 minutes at 4.2 images/s; Kodak +0.19 dB, +0.0099 SSIM, every image improved).
trimesh_decode/models/mobile.json records every command and the measured figures.
"""

from pathlib import Path

from compat.config import config_module, parse_overrides
from trimesh_decode.task import REPO

_mobile = config_module(Path(__file__).with_name("mobile.py"))


def get_config(arg: str | None = None):
    c = _mobile.get_config()
    c.name = "mobile_scaled"
    c.steps = 2_400
    c.data.dataset = str(REPO / "data" / "trimesh_previews_scaled")
    c.model.init = str(REPO / "runs" / "trimesh_mobile")
    c.optim.lr = 1e-3
    c.optim.warmup = 50
    c.optim.decay_steps = c.steps
    return parse_overrides(c, arg)
