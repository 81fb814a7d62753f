"""Trained neural decoders that ship with the package, and the export that makes them.

A model is ``<name>.npz`` (every parameter and BatchNorm statistic of
:class:`trimesh_decode.hourglass.StackedHourglass`, as float16 - half the bytes, and the decoded images
differ from float32 weights by well under one grey level; keys ``params/...`` and
``batch_stats/...``) beside ``<name>.json`` (its provenance: the model settings, the launch
command, the step, the evaluation, and the sha256 of the .npz, checked on every load).

    python -m trimesh_decode.models export RUN_DIR NAME --command "python launch/train.py ..."
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from compat.checkpoint import read_run
from compat.cli import UsageError, check_output_file
from compat.export import export_main, find_model, read_model, write_model
from trimesh_decode import check_gain, check_symmetries, gain_label
from trimesh_decode.decoding import predict
from trimesh_decode.hourglass import CHANNEL_SETS, StackedHourglass
from trimesh_decode.settings import base_config, upgrade_config

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "mobile"

__all__ = ["MODELS_DIR", "DEFAULT_MODEL", "NeuralDecoder", "list_models", "load_model", "load_run", "export_run"]


@dataclass(frozen=True)
class NeuralDecoder:
    """A trained decoder: ``decode(previews)`` gives uint8 (B, 256, 256, 3) images, averaged over
    ``symmetries`` symmetries of the square (1: one pass; see :func:`trimesh_decode.decoding.predict`)."""

    name: str
    variables: dict  # {"params": ..., "batch_stats": ...}
    settings: dict  # the config's "model" section: width, stacks, depth, channels, output (always all five)
    meta: dict
    symmetries: int = 1
    gain: float = 1.0

    def averaged(self, symmetries: int) -> "NeuralDecoder":
        """The same weights, decoding as the average over ``symmetries`` symmetries (1, 2, 4 or 8)."""
        return replace(self, symmetries=check_symmetries(symmetries))

    def amplified(self, gain: float) -> "NeuralDecoder":
        """The same weights, scaling the network's correction of interpolation by ``gain``
        (:func:`trimesh_decode.amplify`)."""
        return replace(self, gain=check_gain(gain))

    @property
    def label(self) -> str:
        """The name, with ``_x8`` (etc.) when decodings are averaged over symmetries and ``_g1.5``
        (etc.) when the correction is scaled."""
        x = "" if self.symmetries == 1 else f"_x{self.symmetries}"
        return f"{self.name}{x}{gain_label(self.gain)}"

    @property
    def module(self):
        s = self.settings
        return StackedHourglass(width=s["width"], stacks=s["stacks"], depth=s["depth"], output=s["output"])

    def decode(self, previews) -> np.ndarray:
        return predict(self.variables, previews, self.module, self.settings["channels"], self.symmetries, self.gain)


def list_models() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.npz"))


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(_flatten(dict(v), f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def load_model(name_or_path: str | Path = DEFAULT_MODEL) -> NeuralDecoder:
    """A shipped model by name (see :func:`list_models`), a ``.npz`` path, or a run directory of
    launch/train.py (its newest checkpoint). Shipped files are checked against their sha256."""
    p = Path(name_or_path)
    if p.is_dir():
        variables, config, step = load_run(p)
        settings = _settings(config["model"], p / "config.json")
        _check_shapes(variables, settings, p)
        meta = {"run": str(p), "step": step, "weights": _weights(config)}
        return NeuralDecoder(p.name, variables, settings, meta)
    p = find_model(name_or_path, MODELS_DIR, "neural decoder model")
    arrays, meta = read_model(p, require_meta=True)
    if not isinstance(meta.get("model"), dict):
        raise ValueError(f"{p.with_suffix('.json')}: not a neural decoder description (no 'model' settings)")
    settings = _settings(meta["model"], p.with_suffix(".json"))
    flat = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    variables = _unflatten(flat)
    _check_shapes(variables, settings, p)
    return NeuralDecoder(p.stem, variables, settings, meta)


def _settings(model: dict, where) -> dict:
    """A model description's settings, read by :func:`trimesh_decode.settings.upgrade_config` (the
    settings added since take their defaults); settings this code does not know (a newer or an
    experimental model) are refused rather than ignored."""
    missing = [k for k in ("width", "stacks") if k not in model]
    if missing:
        raise ValueError(f"{where}: model settings lack {', '.join(missing)}")
    settings = upgrade_config({"model": dict(model)})["model"]
    unknown = sorted(set(settings) - set(base_config().model))
    if unknown:
        raise ValueError(f"{where}: model settings {', '.join(unknown)} are unknown to this version of trimesh_decode")
    return settings


def _check_shapes(variables: dict, settings: dict, where) -> None:
    m = StackedHourglass(
        width=settings["width"], stacks=settings["stacks"], depth=settings["depth"], output=settings["output"]
    )
    c = len(CHANNEL_SETS[settings["channels"]])
    want = jax.eval_shape(
        lambda: m.init(jax.random.key(0), jnp.zeros((1, 64, 64, c)), interp=jnp.zeros((1, 64, 64, 3)))
    )
    got = jax.tree.map(lambda a: a.shape, variables)
    need = jax.tree.map(lambda a: a.shape, dict(want))
    if got != need:
        raise ValueError(f"{where}: the weights do not fit the model {settings}")


def load_run(workdir: str | Path, step: int | None = None, *, ema: bool = True) -> tuple[dict, dict, int]:
    """``({"params", "batch_stats"}, config dict, step)`` of a run directory (newest checkpoint by
    default): the moving average of the weights when the run kept one (``optim.ema``) and ``ema``
    is true, else the trained weights themselves."""
    state, config, step = read_run(workdir, step)
    config = upgrade_config(config)
    source = state.get("ema") if ema else None
    source = source if source else state
    return {"params": source["params"], "batch_stats": source["batch_stats"]}, config, step


def _weights(config: dict) -> str:
    """Which weights :func:`load_run` reads from a run of this config (as :func:`load_run` returns it)."""
    return "ema" if config["optim"]["ema"] else "trained"


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
    variables, config, step = load_run(run_dir, step)
    flat = {k: v.astype(np.float16) for k, v in _flatten(variables).items()}
    meta = {
        "model": config["model"],
        "parameters": int(sum(v.size for k, v in flat.items() if k.startswith("params/"))),
        "step": int(step),
        "weights": _weights(config),
        "command": command,
        "config": config,
        "evaluation": evaluation,
    }
    return write_model(directory, name, flat, meta)


def _onnx_commands(sub) -> dict:
    e = sub.add_parser(
        "export-onnx",
        help="write a model as ONNX (opset 17) for onnxruntime and onnxruntime-web",
        description="Write a neural decoder as ONNX: input channels (N, 256, 256, 8) NHWC float32 (the rendered "
        "preview channels), output image (N, 256, 256, 3) NHWC in [0, 1].",
        epilog="example:\n  python -m trimesh_decode.models export-onnx mobile -o mobile.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("model", help="a shipped model's name, a .npz, or a training run folder")
    e.add_argument("-o", "--out", required=True, help="the .onnx file to write")
    e.add_argument(
        "--float16",
        action="store_true",
        help="store the weights as float16 (half the file, for the web; the arithmetic stays float32)",
    )
    e.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    return {"export-onnx": export_onnx_command}


def export_onnx_command(args) -> str:
    from trimesh_decode.onnx_export import OPSET, OnnxDecoder, export_onnx  # lazy: imports the onnx extra

    out = check_output_file(args.out, args.force)
    try:
        OnnxDecoder.check_installed()
    except ImportError:
        raise UsageError("export-onnx needs the onnx extra: pip install -e '.[onnx]'") from None
    decoder = load_model(args.model)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        export_onnx(decoder, tmp, float16=args.float16)
        os.replace(tmp, out)  # atomic: a reader never sees half a model
    finally:
        tmp.unlink(missing_ok=True)
    kind = "float16 weights" if args.float16 else "float32"
    return f"wrote {out}: {decoder.name}, opset {OPSET}, {kind}, {out.stat().st_size / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    return export_main(
        __doc__, export_run, lambda full: full.get("summary", full), MODELS_DIR, argv, extra=_onnx_commands
    )


if __name__ == "__main__":
    sys.exit(main())
