"""Ablations of the neural decoder, on the ``mobile`` settings: which input channels, how many
hourglasses. The argument names one ablation (then ``,key=value`` overrides as usual):

    python launch/train.py --config configs/trimesh_decode/ablations.py:channels=all --workdir runs/abl_all
    python launch/train.py --config configs/trimesh_decode/ablations.py:channels=no_interp --workdir runs/abl_no_interp
    python launch/train.py --config configs/trimesh_decode/ablations.py:channels=interp_only --workdir runs/abl_interp_only
    python launch/train.py --config configs/trimesh_decode/ablations.py:stacks=1 --workdir runs/abl_stacks1
    python launch/train.py --config configs/trimesh_decode/ablations.py:stacks=3 --workdir runs/abl_stacks3

``channels=no_interp`` cannot add a correction to an image it does not see, so it predicts the image
itself (``output=image``, the paper's head). Expected: the paper finds all 8 channels best; compare
runs of equal steps with ``trimesh-decode evaluate --model runs/abl_X``.
"""

from pathlib import Path

from compat.config import config_module, parse_overrides

_mobile = config_module(Path(__file__).with_name("mobile.py"))


def get_config(arg: str | None = None):
    c = _mobile.get_config()
    c.name = "ablation"
    c.steps = 2000
    aliases = {"channels": "model.channels", "stacks": "model.stacks"}
    c = parse_overrides(c, arg, aliases)
    if c.model.channels == "no_interp":
        c.model.output = "image"
    c.name = f"ablation_{c.model.channels}_stacks{c.model.stacks}"
    return c
