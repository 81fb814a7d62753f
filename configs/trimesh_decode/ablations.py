"""Ablations of the neural decoder, on the ``mobile`` settings: which input channels, how many
hourglasses. The argument names one ablation (then ``,key=value`` overrides as usual). Every
ablation trains from scratch on the same data for the same schedule: the random-scale crops of
``mobile_scaled`` (``data/trimesh_previews_scaled``), 500 steps of batch 32, Adam 1e-3 with a
50-step warm-up and a cosine decay to 1e-5, so the runs compare like with like:

    python launch/train.py --config configs/trimesh_decode/ablations.py:channels=all --workdir runs/abl_all
    python launch/train.py --config configs/trimesh_decode/ablations.py:channels=no_interp --workdir runs/abl_no_interp
    python launch/train.py --config configs/trimesh_decode/ablations.py:channels=interp_only \\
        --workdir runs/abl_interp_only
    python launch/train.py --config configs/trimesh_decode/ablations.py:stacks=1 --workdir runs/abl_stacks1
    python launch/train.py --config configs/trimesh_decode/ablations.py:stacks=3 --workdir runs/abl_stacks3

``channels=no_interp`` cannot add a correction to an image it does not see, so it predicts the image
itself (``output=image``, the paper's head). Expected: the paper finds all 8 channels best; compare
runs of equal steps with ``trimesh-decode evaluate --model runs/abl_X``. On a 2-core CPU each run
takes 10-25 minutes; results/previews/README.md has the measured table.
"""

from pathlib import Path

from compat.config import config_module, parse_overrides
from trimesh_decode.settings import REPO

_mobile = config_module(Path(__file__).with_name("mobile.py"))


def get_config(arg: str | None = None):
    c = _mobile.get_config()
    c.name = "ablation"
    c.steps = 500
    c.data.dataset = str(REPO / "data" / "trimesh_previews_scaled")
    c.optim.lr = 1e-3
    c.optim.warmup = 50
    aliases = {"channels": "model.channels", "stacks": "model.stacks"}
    c = parse_overrides(c, arg, aliases)
    if "decay_steps" not in (arg or ""):  # the cosine spans the run, however many steps it is given
        c.optim.decay_steps = c.steps
    if c.model.channels == "no_interp":
        c.model.output = "image"
    c.name = f"ablation_{c.model.channels}_stacks{c.model.stacks}"
    return c
