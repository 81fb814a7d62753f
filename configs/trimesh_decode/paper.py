"""The paper's neural decoder: 2 stacked hourglasses of 256 filters on all 8 channels, batch 32
of 256x256 crops, MSE at both loss modules, Adam.

    trimesh-decode dataset --images ../shared/data/photos --out data/trimesh_previews --crops 3000
    python launch/train.py --config configs/trimesh_decode/paper.py --workdir runs/trimesh_paper

Expected: the paper reports interpolation 20.7 dB -> neural 21.7 dB PSNR (SSIM 0.51 -> 0.54) on
held-out previews after full training. It needs an accelerator: about 40 GFLOP per image per step.
The paper states Adam at learning rate 0.1; with BatchNorm after every convolution we tried it
(``paper.py:optim.lr=0.1``) and record what happened in results/previews/README.md; the default
here is 1e-3 with a 100-step warm-up. On a GPU lent for single 10-minute commands (no photos
there): ``launch/device_kit.sh`` here, then ``bash launch/device_paper.sh`` there, which trains
this config at a constant rate and then decays it for as long as its measured speed allows.
``paper.py:model.output=residual,model.init=mobile`` starts it from the shipped 64-filter decoder,
widened 4x with the same function (trimesh_decode.hourglass.widen), instead of from scratch.
"""

from trimesh_decode.settings import base_config, parse_overrides


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "paper"
    return parse_overrides(c, arg)
