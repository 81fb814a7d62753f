"""Shipped model files, the same way for both packages: ``<name>.npz`` (compressed numpy arrays)
beside ``<name>.json`` (provenance: config, launch command, step, evaluation, and the sha256 of the
.npz, checked on every load), and the ``python -m <package>.models export`` command that writes them
from a run directory of launch/train.py.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compat.checkpoint import CheckpointError
from compat.cli import OneLineParser, UsageError, run_subcommand
from compat.images import write_file_atomic

__all__ = ["write_model", "read_model", "find_model", "export_main"]


def write_model(directory: str | Path, name: str, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``directory/name.npz`` and its ``.json`` (``meta`` plus name and sha256); returns the .npz."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    out = Path(directory) / f"{name}.npz"
    write_file_atomic(out, data)
    description = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), **meta}
    write_file_atomic(out.with_suffix(".json"), json.dumps(description, indent=1).encode())
    return out


def find_model(name_or_path: str | Path, directory: Path, what: str) -> Path:
    """A shipped model's .npz by name, or the given .npz path; FileNotFoundError naming the shipped ones."""
    p = Path(name_or_path)
    if p.suffix != ".npz":
        p = directory / f"{name_or_path}.npz"
    if not p.is_file():
        shipped = ", ".join(sorted(q.stem for q in directory.glob("*.npz"))) or "none"
        raise FileNotFoundError(f"no {what} {str(name_or_path)!r} (shipped: {shipped})")
    return p


def read_model(path: Path, *, require_meta: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)`` of a model file, after checking the .npz against the sha256 its .json records.
    Damaged or altered files raise ValueError with the reason."""
    path = Path(path)
    data = path.read_bytes()
    meta_path = path.with_suffix(".json")
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_path}: not a model description ({e})") from None
    elif require_meta:
        raise ValueError(f"{path}: its settings file {meta_path.name} is missing")
    else:
        meta = {}
    want = meta.get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise ValueError(f"{path}: sha256 does not match {meta_path.name}; the model file was altered or truncated")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except Exception as e:  # zipfile / numpy raise several kinds on damaged files
        raise ValueError(f"{path}: cannot read the weights ({type(e).__name__}: {e})") from None
    return arrays, meta


def export_main(
    doc: str,
    export_run: Callable[..., Path],
    evaluation: Callable[[dict], dict] | None,
    models_dir: Path,
    argv: list[str] | None = None,
    extra: Callable[[Any], dict[str, Callable]] | None = None,
) -> int:
    """``export RUN NAME --command ... [--step N] [--evaluation FILE] [--dir DIR] [--force]``:
    ``export_run(run, name, command=, step=, evaluation=[, directory=])``; ``evaluation`` picks what to
    record from the evaluation JSON; ``models_dir``: where ``export_run`` writes without ``--dir``."""
    prog = "python -m " + export_run.__module__
    ap = OneLineParser(
        prog=prog, description=doc.split("\n\n")[0], epilog=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="action", metavar="COMMAND", parser_class=OneLineParser)
    e = sub.add_parser(
        "export",
        help="export a run as a shipped model",
        epilog=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("run")
    e.add_argument("name")
    e.add_argument("--command", required=True, help="the launch command that produced the run")
    e.add_argument("--step", type=int, default=None)
    e.add_argument("--evaluation", default=None, help="an evaluation JSON to record beside the weights")
    e.add_argument(
        "--dir", default=None, help="write there instead of the package's shipped models (e.g. a study's models)"
    )
    e.add_argument("--force", action="store_true", help="replace a model of that name")

    def export(args) -> str:
        directory = Path(args.dir) if args.dir else None
        target = (directory or models_dir) / f"{args.name}.npz"
        if target.exists() and not args.force:
            raise UsageError(f"{target} exists; pass --force to replace that model")
        ev = None
        if args.evaluation:
            try:
                full = json.loads(Path(args.evaluation).read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise UsageError(f"--evaluation {args.evaluation}: {err}") from None
            ev = evaluation(full) if evaluation else full
        where = {"directory": directory} if directory else {}
        made = directory is not None and not directory.exists()
        if directory:
            directory.mkdir(parents=True, exist_ok=True)
        try:
            path = export_run(args.run, args.name, command=args.command, step=args.step, evaluation=ev, **where)
        except BaseException:
            if made and not any(directory.iterdir()):  # a refused export leaves nothing behind
                directory.rmdir()
            raise
        return f"wrote {path}"

    commands = {"export": export}
    if extra is not None:  # a package's own subcommands: extra(subparsers) -> {name: handler}
        commands.update(extra(sub))
    return run_subcommand(
        prog, ap, commands, argv, expected=(CheckpointError, FileNotFoundError, ValueError), dest="action"
    )
