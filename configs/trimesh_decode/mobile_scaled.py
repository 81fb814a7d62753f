"""Stages 2 to 6 of the shipped `mobile` decoder. Each stage fine-tunes the one before on crops of
random scale: squares of 256..1024 pixels resized to 256, which look like previews of whole photos
(what `evaluate` measures: Kodak's centre squares are downscaled 2x). Each stage's learning rate
decays to 1% by a cosine. ``stage=N`` picks the stage; the default is stage 2. Stage 1 is
configs/trimesh_decode/mobile.py.

The dataset grows between stages (the builder continues the same folder):

    trimesh-decode dataset --images ../shared/data/photos -o data/trimesh_previews_scaled --crops 2000 --max-scale 4
    python launch/train.py --config configs/trimesh_decode/mobile_scaled.py --workdir runs/trimesh_mobile_scaled
    # --crops 4000, then
    python launch/train.py --config configs/trimesh_decode/mobile_scaled.py:stage=3 \\
        --workdir runs/trimesh_mobile_scaled2
    # --crops 6000, then
    python launch/train.py --config configs/trimesh_decode/mobile_scaled.py:stage=4 \\
        --workdir runs/trimesh_mobile_scaled3
    # --crops 8000, then (all 8 symmetries of the square as augmentation)
    python launch/train.py --config configs/trimesh_decode/mobile_scaled.py:stage=5 \\
        --workdir runs/trimesh_mobile_scaled4
    # no new crops; whole 256x256 inputs instead of 128x128 crops: the shipped model
    python launch/train.py --config configs/trimesh_decode/mobile_scaled.py:stage=6 \\
        --workdir runs/trimesh_mobile_full6

Each stage starts from the run directory of the stage before (``model.init``).

Expected on a 2-core CPU: stage 2 takes 72 minutes, and each later stage adds about 0.01 dB on the
Kodak previews. Stage 6, the shipped model, takes 80 minutes at 4.2 images/s and gives +0.19 dB
over interpolation with every image improved. The measured figures of every stage are in
``results/previews/README.md`` ("Training schedule"); ``trimesh_decode/models/mobile.json`` records
the commands.
"""

from pathlib import Path

from compat.config import ConfigError, config_module, parse_overrides
from trimesh_decode.settings import REPO

_mobile = config_module(Path(__file__).with_name("mobile.py"))

# stage: (the run it starts from, steps, learning rate, further fields)
STAGES = {
    2: ("trimesh_mobile", 2_400, 1e-3, {}),
    3: ("trimesh_mobile_scaled", 800, 5e-4, {}),
    4: ("trimesh_mobile_scaled2", 1_200, 5e-4, {}),
    5: ("trimesh_mobile_scaled3", 1_200, 5e-4, {"dihedral": True}),
    6: ("trimesh_mobile_scaled4", 600, 5e-4, {"dihedral": True, "crop": 256}),
}


def _stage(arg: str | None) -> tuple[int, str | None]:
    """The ``stage=N`` item of ``arg`` (default 2) and the rest of it."""
    items = [t for t in (arg or "").split(",") if t]
    stages = [t for t in items if t.split("=", 1)[0].strip() == "stage"]
    rest = ",".join(t for t in items if t not in stages) or None
    if not stages:
        return 2, rest
    value = stages[-1].split("=", 1)[1].strip()
    if not value.isdigit() or int(value) not in STAGES:
        raise ConfigError(f"stage={value}: the stages are {', '.join(map(str, STAGES))}")
    return int(value), rest


def get_config(arg: str | None = None):
    stage, arg = _stage(arg)
    start, steps, lr, data = STAGES[stage]
    c = _mobile.get_config()
    c.name = "mobile_scaled"
    c.steps = steps
    c.data.dataset = str(REPO / "data" / "trimesh_previews_scaled")
    for key, value in data.items():
        c.data[key] = value
    c.model.init = str(REPO / "runs" / start)
    c.optim.lr = lr
    c.optim.warmup = 50
    c.optim.decay_steps = steps
    return parse_overrides(c, arg)
