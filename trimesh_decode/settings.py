"""trimesh_decode's configuration: :func:`base_config` (the paper's settings), the rules a resolved
config must meet (:data:`CONFIG_RULES`, :func:`validate_config`) and :func:`upgrade_config`, the one
place where a run or a model recorded by an older version is read as this version's config (the
trainer on resume, the shipped models, export and evaluation). The configs in
``configs/trimesh_decode/`` start from :func:`base_config`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import ml_collections

from compat.config import ConfigError, at_least, between, choice, parse_overrides, trainer_config, upgrade, validate
from trimesh_decode import SIZE
from trimesh_decode.hourglass import CHANNEL_SETS

__all__ = [
    "REPO",
    "DEFAULT_DATASET",
    "base_config",
    "CONFIG_RULES",
    "validate_config",
    "parse_overrides",
    "upgrade_config",
]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = str(REPO / "data" / "trimesh_previews")


def base_config():
    """The paper's settings: 256-filter hourglasses, 2 stacks, all 8 channels, MSE at every loss
    module, Adam, batch 32 of 256x256 crops."""
    c = trainer_config("trimesh_decode", "paper", steps=100_000, batch_size=32)
    # dataset: a folder of `trimesh-decode dataset`; meshes padded to fixed sizes (static shapes);
    # crop: train on aligned random crops of this side (multiple of 64; 256 = whole images)
    # flip: random horizontal flips; dihedral: also vertical flips and transposes (all 8 symmetries)
    # colour_permute: one of the 6 orders of R, G, B per image, the same for the interpolated image,
    # the coloured-vertex map and the target (the renderer is linear in the vertex colours; only the
    # palette's YCoCg grid is not symmetric in R, G, B, so the pairs are near, not exact, encodings)
    # threads: host threads that read crops and triangulate previews; workers: as many processes too
    # (0: none) - the host work holds the GIL, so an accelerator needs workers to be fed
    c.data = ml_collections.ConfigDict(
        {
            "dataset": DEFAULT_DATASET,
            "pad_points": 320,
            "pad_triangles": 640,
            "flip": True,
            "dihedral": False,
            "colour_permute": False,
            "crop": SIZE,
            "threads": 2,
            "workers": 0,
        }
    )
    # init: start from a trained decoder (a shipped name, an exported .npz, or a run folder: its newest
    # checkpoint, float32) - its weights and BatchNorm statistics; the optimiser starts afresh. A start
    # of a smaller width is widened to this one, computing the same function (hourglass.widen)
    c.model = ml_collections.ConfigDict(
        {"width": 256, "stacks": 2, "depth": 4, "channels": "all", "output": "image", "init": ""}
    )
    # the paper states Adam at learning rate 0.1; see configs/trimesh_decode/paper.py for what trained.
    # ema: decay of an exponential moving average of the weights and BatchNorm statistics, kept in the
    # train state beside them (0: none; 0.999 averages about the last 1000 steps once past step 9000,
    # before that about the last ninth of the steps: ema_decay). Evaluation, export and warm starts
    # from the run read the average (trimesh_decode.models.load_run)
    c.optim = ml_collections.ConfigDict(
        {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "warmup": 100, "decay_steps": 0, "ema": 0.0}
    )
    # the objective: MSE at every loss module (the paper's), plus `lpips` times the LPIPS distance
    # (compat.metrics.lpips, network `lpips_net`) of the last module's image - the perceptual variant
    # the paper suggests. Evaluation's classifier (EfficientNet-Lite0) is another network, so a
    # decoder trained on LPIPS is not scored by the features it was trained to match
    c.loss = ml_collections.ConfigDict({"lpips": 0.0, "lpips_net": "alex"})
    return c


def _crop(v):
    return None if v % 64 == 0 and 64 <= v <= SIZE else f"a multiple of 64 in 64..{SIZE}"


def _width(v):
    return None if v >= 16 and v % 16 == 0 else "a multiple of 16 (the loss modules' DepthToSpace(4))"


CONFIG_RULES = {
    "data.pad_points": at_least(4),
    "data.pad_triangles": at_least(2),
    "data.crop": _crop,
    "data.threads": at_least(1),
    "data.workers": at_least(0),
    "model.width": _width,
    "model.stacks": at_least(1),
    "model.depth": between(1, 6),
    "model.channels": choice(*CHANNEL_SETS),
    "model.output": choice("image", "residual"),
    "optim.lr": between(1e-12, 10.0),
    "optim.b1": between(0.0, 0.999999),
    "optim.b2": between(0.0, 0.999999999),
    "optim.warmup": at_least(0),
    "optim.decay_steps": at_least(0),
    "optim.ema": between(0.0, 0.999999999),
    "loss.lpips": between(0.0, 1000.0),
    "loss.lpips_net": choice("alex", "vgg"),
}


def validate_config(config) -> None:
    """Names, types, choices and ranges of a resolved config, and the combinations make_task
    refuses: :class:`compat.config.ConfigError` with one line, before anything is created."""
    validate(config, base_config(), CONFIG_RULES)
    if config.model.output == "residual" and config.model.channels == "no_interp":
        raise ConfigError(
            "model.output='residual' adds the interpolated image, which model.channels='no_interp' withholds"
        )


def upgrade_config(old: Mapping) -> dict:
    """A run's ``config.json`` (or a shipped model's recorded config) as this version's config:
    fields added since take their :func:`base_config` values, which are what the runs and models
    before them computed with (e.g. ``model.depth`` 4, ``model.channels`` all, ``model.output``
    image, ``optim.ema`` 0, ``loss.lpips`` 0)."""
    return upgrade(old, base_config())
