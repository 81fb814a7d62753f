"""Fit the weights of jpegedit's bit estimate (``jpegedit.losses.BITS_WEIGHTS``) to real files.

For every image and every table set (libjpeg's quality 1..90 and the shipped paper-family Q-tables)
this writes a baseline JPEG with the standard Huffman tables (``jpegedit.jpegfile.write``), counts
its bits, and fits ``bits ~ nonzero * #nonzero AC + log * sum log2(1+|AC|) + dc_log * sum
log2(1+|dDC|) + block * #blocks + file`` by least relative squares; ``file`` (headers and tables,
once per file) is measured: the size of a one-block file. Each term is counted by
``jpegedit.losses.estimated_bits`` itself (the function training uses, with that term's weight 1
and the others 0), so the fitted estimate is the training code's. Prints the weights and the fit's
error and writes JSON.

    python launch/fit_bits_estimate.py --data ../shared/data/kodak -o results/kodak/bits_estimate_fit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compat.cli import OneLineParser, UsageError, check_output_file, run, write_atomic
from compat.images import list_images, load_image
from jpegedit import codec, jpegfile, losses  # noqa: E402
from jpegedit.models import list_models, load_model  # noqa: E402

QUALITIES = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 90)
NAMES = ("nonzero", "log", "dc_log", "block")


def features(unrounded: codec.Coefficients) -> np.ndarray:
    """Each term of the estimate alone (weight 1, the others and the headers 0)."""
    return np.array(
        [
            float(losses.estimated_bits(unrounded.components, {k: float(k == n) for k in (*NAMES, "file")}))
            for n in NAMES
        ]
    )


def main(argv=None) -> int:
    ap = OneLineParser(
        prog="launch/fit_bits_estimate.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--data", required=True, help="folder of test images (e.g. ../shared/data/kodak)")
    ap.add_argument("-o", "--out", required=True, help="JSON to write")
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    return run(ap.prog, ap, _fit_command, argv)


def _fit_command(args) -> str:
    out = check_output_file(args.out, args.force)
    if not Path(args.data).is_dir():
        raise UsageError(f"--data {args.data} is not a folder")
    tables = {f"libjpeg_q{q}": codec.quality_to_tables(q) for q in QUALITIES}
    tables.update({m: load_model(m).tables for m in list_models() if m.startswith("qtables_lam")})  # the paper family
    rows, bits, keys = [], [], []
    for path in list_images(args.data):
        image = jnp.asarray(load_image(path), jnp.float32)
        for name, t in tables.items():
            un = codec.encode(image, t, rounding="none")
            rows.append(features(un))
            co = jax.tree.map(codec.round_half_away, un)  # = codec.encode(image, t, rounding="hard")
            bits.append(8 * len(jpegfile.write(co, t)))
            keys.append((path.stem, name))
        print(f"{path.name}: {len(tables)} files", flush=True)
    # the headers: one block of zeros (its own bits, a few, are left in)
    one = codec.encode(jnp.zeros((8, 8, 3)) + 128.0, codec.quality_to_tables(50), rounding="hard")
    header = 8 * len(jpegfile.write(one, codec.quality_to_tables(50)))
    x, y = np.array(rows), np.array(bits, float)
    w, *_ = np.linalg.lstsq(x / y[:, None], 1.0 - header / y, rcond=None)  # least relative error
    weights = {n: round(float(v), 3) for n, v in zip(NAMES, w)} | {"file": header}
    # the estimate with the rounded weights (it is linear in them: estimated_bits(components, weights))
    est = x @ np.array([weights[n] for n in NAMES]) + header
    rel = np.abs(est - y) / y
    per_table = {name: float(np.mean([r for (_, n), r in zip(keys, rel) if n == name])) for name in tables}
    result = {
        "weights": weights,
        "files": len(y),
        "mean_relative_error": float(rel.mean()),
        "max_relative_error": float(rel.max()),
        "mean_relative_error_per_table": per_table,
    }
    write_atomic(out, json.dumps(result, indent=1).encode(), args.force)
    return json.dumps({k: v for k, v in result.items() if k != "mean_relative_error_per_table"})


if __name__ == "__main__":
    raise SystemExit(main())
