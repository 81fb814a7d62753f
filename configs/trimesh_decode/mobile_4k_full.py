"""The shipped `mobile` decoder's last stage: the 128x128-crop model of ``mobile_4k.py`` fine-tuned
on whole 256x256 inputs (context across the whole preview), as the former `mobile` and `mobile_web`
finished, for 400 steps of batch 16 at Adam 3e-4 cosine-decayed, all 8 symmetries of the square,
on the same previews (``data/previews_4k``: 3,102 photos less nips17_dev, 3000..30000 iterations).

    python launch/train.py --config configs/trimesh_decode/mobile_4k.py --workdir runs/trimesh_mobile_4k
    python launch/train.py --config configs/trimesh_decode/mobile_4k_full.py --workdir runs/trimesh_mobile_4k_full

``model.init`` is the crop-trained stage (``runs/trimesh_mobile_4k``). The shipped `mobile` was
made from that stage's float16 export, the `mobile` of commit 8610064 (``git show
8610064:trimesh_decode/models/mobile.npz > stage.npz``, then ``model.init=stage.npz``; it was run as
``model.init=mobile`` before this model replaced it). Expected on a 2-core CPU: about 2 s per step,
14 minutes. Against the crop stage, image by image: +0.040 dB on all 964 nips17_dev photos (t =
19), +0.019 dB on Kodak (t = 2.8), +0.050 dB on 195 photos of the pool no stage trained on (t =
11; launch/unseen_photos.py); ``trimesh_decode/models/mobile.json`` records the command and the
evaluation.
"""

from pathlib import Path

from compat.config import config_module
from trimesh_decode.settings import REPO, parse_overrides

_stage = config_module(Path(__file__).with_name("mobile_4k.py"))


def get_config(arg: str | None = None):
    c = _stage.get_config()
    c.name = "mobile_4k_full"
    c.model.init = str(REPO / "runs" / "trimesh_mobile_4k")
    c.steps = 400
    c.batch_size = 16
    c.data.crop = 256
    c.optim.lr = 3e-4
    c.optim.warmup = 20
    c.optim.decay_steps = c.steps
    return parse_overrides(c, arg)
