"""Stage 2 of the browser's decoder `mobile_web`: stage 1 (configs/trimesh_decode/mobile_web.py,
128x128 crops) fine-tuned on whole 256x256 inputs, as `mobile`'s last stage was, for 400 steps of
batch 16 at Adam 3e-4 cosine-decayed, all 8 symmetries of the square. The shipped `mobile_web`.

    python launch/train.py --config configs/trimesh_decode/mobile_web.py --workdir runs/trimesh_mobile_web
    python launch/train.py --config configs/trimesh_decode/mobile_web_full.py --workdir runs/trimesh_mobile_web256

Expected on a 2-core CPU: about 0.85 s per step, 6 minutes. Against stage 1 on all 964 nips17_dev
photos: +0.023 dB (t = 19), top-1 recall 46 -> 54 of 964 (results/previews/README.md);
trimesh_decode/models/mobile_web.json records the commands and the evaluation.
"""

from pathlib import Path

from compat.config import config_module
from trimesh_decode.settings import REPO, parse_overrides

_stage1 = config_module(Path(__file__).with_name("mobile_web.py"))


def get_config(arg: str | None = None):
    c = _stage1.get_config()
    c.name = "mobile_web_full"
    c.model.init = str(REPO / "runs" / "trimesh_mobile_web")
    c.steps = 400
    c.batch_size = 16
    c.data.crop = 256
    c.optim.lr = 3e-4
    c.optim.warmup = 20
    c.optim.decay_steps = c.steps
    return parse_overrides(c, arg)
