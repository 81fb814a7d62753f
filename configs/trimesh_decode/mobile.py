"""The phone-sized neural decoder: 2 stacked hourglasses of 64 filters (1.7 M parameters, 6.8 MB
as float32), all 8 channels, predicting a correction of the interpolated image (``output=residual``,
so training starts from the interpolation decoder's quality), trained on aligned 128x128 crops of
the rendered 256x256 inputs (4x the images/s of whole crops on a CPU).

    trimesh-decode dataset --images ../shared/data/photos --out data/trimesh_previews --crops 3000
    python launch/train.py --config configs/trimesh_decode/mobile.py --workdir runs/trimesh_mobile

Expected: on a 2-core CPU about 15 images/s; the loss falls below the interpolation's MSE within a
few hundred steps. This is stage 1 of the shipped model: stage 2 (configs/trimesh_decode/mobile_scaled.py)
fine-tunes it on crops of random scale; trimesh_decode/models/mobile.json records both commands,
the step count and the evaluation.
"""

from trimesh_decode.settings import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "mobile"
    c.steps = 20_000
    c.log_every = 10
    c.checkpoint_every = 100
    c.data.crop = 128
    c.model.width = 64
    c.model.output = "residual"
    c.optim.lr = 1e-3
    c.optim.warmup = 50
    return parse_overrides(c, arg)
