"""Trained neural decoders that ship with the package, and the export that makes them.

A model is ``<name>.npz`` (every parameter and BatchNorm statistic of
:class:`trimesh_decode.model.StackedHourglass`, as float16 - half the bytes, and the decoded images
differ from float32 weights by well under one grey level; keys ``params/...`` and
``batch_stats/...``) beside ``<name>.json`` (its provenance: the model settings, the launch
command, the step, the evaluation, and the sha256 of the .npz, checked on every load).

    python -m trimesh_decode.models export RUN_DIR NAME --command "python launch/train.py ..."
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "mobile"

__all__ = ["MODELS_DIR", "DEFAULT_MODEL", "NeuralDecoder", "list_models", "load_model", "load_run", "export_run"]


@dataclass(frozen=True)
class NeuralDecoder:
    """A trained decoder: ``decode(previews)`` gives uint8 (B, 256, 256, 3) images."""

    name: str
    variables: dict  # {"params": ..., "batch_stats": ...}
    settings: dict  # the config's "model" section: width, stacks, depth, channels, output
    meta: dict

    @property
    def module(self):
        from trimesh_decode.model import StackedHourglass

        s = self.settings
        return StackedHourglass(width=s["width"], stacks=s["stacks"], depth=s.get("depth", 4), output=s.get("output", "image"))

    def decode(self, previews) -> np.ndarray:
        from trimesh_decode.task import predict

        return predict(self.variables, previews, self.module, self.settings.get("channels", "all"))


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
        return NeuralDecoder(p.name, variables, dict(config["model"]), {"run": str(p), "step": step})
    if p.suffix != ".npz":
        p = MODELS_DIR / f"{name_or_path}.npz"
    if not p.is_file():
        raise FileNotFoundError(f"no neural decoder model {str(name_or_path)!r} (shipped: {', '.join(list_models()) or 'none'})")
    data = p.read_bytes()
    meta_path = p.with_suffix(".json")
    if not meta_path.is_file():
        raise ValueError(f"{p}: its settings file {meta_path.name} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        settings = dict(meta["model"])
    except (json.JSONDecodeError, KeyError) as e:
        raise ValueError(f"{meta_path}: not a model description ({e})") from None
    want = meta.get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise ValueError(f"{p}: sha256 does not match {meta_path.name}; the model file was altered or truncated")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            flat = {k: np.asarray(z[k], np.float32) for k in z.files}
    except Exception as e:  # zipfile / numpy raise several kinds on damaged files
        raise ValueError(f"{p}: cannot read the weights ({type(e).__name__}: {e})") from None
    variables = _unflatten(flat)
    _check_shapes(variables, settings, p)
    return NeuralDecoder(p.stem, variables, settings, meta)


def _check_shapes(variables: dict, settings: dict, where) -> None:
    import jax
    import jax.numpy as jnp

    from trimesh_decode.model import CHANNEL_SETS, StackedHourglass

    m = StackedHourglass(width=settings["width"], stacks=settings["stacks"], depth=settings.get("depth", 4), output=settings.get("output", "image"))
    c = len(CHANNEL_SETS[settings.get("channels", "all")])
    want = jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 64, 64, c)), interp=jnp.zeros((1, 64, 64, 3))))
    got = jax.tree.map(lambda a: a.shape, variables)
    need = jax.tree.map(lambda a: a.shape, dict(want))
    if got != need:
        raise ValueError(f"{where}: the weights do not fit the model {settings}")


def load_run(workdir: str | Path, step: int | None = None) -> tuple[dict, dict, int]:
    """``({"params", "batch_stats"}, config dict, step)`` of a run directory (newest checkpoint by default)."""
    import jax

    from compat.checkpoint import Checkpointer

    workdir = Path(workdir)
    config = json.loads((workdir / "config.json").read_text())
    ck = Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        step = ck.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{workdir} holds no checkpoint")
        state = ck.read(step)
    finally:
        ck.close()
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    return jax.tree.map(np.asarray, variables), config, int(step)


def export_run(run_dir: str | Path, name: str, *, command: str, step: int | None = None, evaluation: dict | None = None,
               directory: Path = MODELS_DIR) -> Path:
    """Write ``<directory>/<name>.npz`` and ``.json`` from a run directory of launch/train.py."""
    variables, config, step = load_run(run_dir, step)
    flat = {k: v.astype(np.float16) for k, v in _flatten(variables).items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **flat)
    data = buf.getvalue()
    out = Path(directory) / f"{name}.npz"
    out.write_bytes(data)
    meta = {
        "name": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "model": config["model"],
        "parameters": int(sum(v.size for k, v in flat.items() if k.startswith("params/"))),
        "step": int(step),
        "command": command,
        "config": config,
        "evaluation": evaluation,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="export a run as a shipped model")
    e.add_argument("run")
    e.add_argument("name")
    e.add_argument("--command", required=True, help="the launch command that produced the run")
    e.add_argument("--step", type=int, default=None)
    e.add_argument("--evaluation", default=None, help="a summary JSON of trimesh-decode evaluate to record")
    args = ap.parse_args(argv)
    ev = json.loads(Path(args.evaluation).read_text()).get("summary") if args.evaluation else None
    print(f"wrote {export_run(args.run, args.name, command=args.command, step=args.step, evaluation=ev)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
