"""Evaluate a trained jpegedit run as real JPEG files against libjpeg at the same bytes.

For each image: the run's exported integer tables (and, with attention, the maps the trained network
computes for that image) give quantised coefficients ``round(F * A / Q)``; :mod:`jpegedit.jpegfile`
writes the baseline file (standard Huffman tables, the paper's setting) and Pillow (libjpeg-turbo)
decodes it. libjpeg's curve is Pillow's JPEG at every quality 1..100 (4:4:4, standard Huffman
tables); its PSNR and MS-SSIM at our file's exact size are interpolated linearly in log-bytes
between the two neighbouring qualities.

    python -m jpegedit.evaluate RUN_DIR [--images ../shared/data/kodak] [--count 4] [-o RUN_DIR/eval.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from compat.checkpoint import CheckpointError
from compat.cli import OneLineParser, UsageError, check_output_file, run, write_atomic
from compat.images import list_images, load_image
from jpegedit.encoder import encode_run
from jpegedit.models import load_run
from jpegedit.network import export_tables
from jpegedit.scoring import score

__all__ = ["libjpeg_curve", "at_equal_bytes", "evaluate_run"]


def _scores(x: np.ndarray, data: bytes) -> dict:
    s = score(x, data)
    return {k: s[k] for k in ("bytes", "psnr", "ms_ssim")}


def libjpeg_curve(image: np.ndarray, qualities=range(1, 101)) -> list[dict]:
    out = []
    for q in qualities:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=q, subsampling=0)
        out.append({"quality": q, **_scores(image, buf.getvalue())})
    return out


def at_equal_bytes(curve: list[dict], num_bytes: int) -> dict | None:
    """libjpeg's PSNR / MS-SSIM at ``num_bytes``, interpolated in log-bytes; None outside its range."""
    pts = sorted(curve, key=lambda r: r["bytes"])
    b = np.log([p["bytes"] for p in pts])
    t = np.log(num_bytes)
    if t < b[0] or t > b[-1]:
        return None
    return {k: float(np.interp(t, b, [p[k] for p in pts])) for k in ("psnr", "ms_ssim")}


def evaluate_run(workdir: str | Path, images: list[Path], step: int | None = None) -> dict:
    params, config, step = load_run(workdir, step)
    rows = []
    for path in images:
        x = load_image(path)
        m = config["model"]
        data, tables = encode_run(x, params, m["backbone"], m["head"], m["hidden"])
        ours = _scores(x, data)
        ref = at_equal_bytes(libjpeg_curve(x), ours["bytes"])
        row = {"image": Path(path).name, **ours, "bpp": 8 * ours["bytes"] / (x.shape[0] * x.shape[1])}
        if ref is not None:
            row.update(
                libjpeg_psnr=ref["psnr"],
                libjpeg_ms_ssim=ref["ms_ssim"],
                delta_psnr=ours["psnr"] - ref["psnr"],
                delta_ms_ssim=ours["ms_ssim"] - ref["ms_ssim"],
            )
        rows.append(row)
        print(
            f"  {row['image']}: {row['bpp']:.3f} bpp  PSNR {row['psnr']:.2f} dB (libjpeg at same bytes "
            f"{row.get('libjpeg_psnr', float('nan')):.2f})  MS-SSIM {row['ms_ssim']:.4f} "
            f"({row.get('libjpeg_ms_ssim', float('nan')):.4f})",
            flush=True,
        )
    deltas = [r for r in rows if "delta_psnr" in r]
    return {
        "run": str(workdir),
        "step": int(step),
        "config": config["name"],
        "lam": config["loss"]["lam"],
        "tables": export_tables(params["q"]).tolist(),
        "mean_bpp": float(np.mean([r["bpp"] for r in rows])),
        "mean_delta_psnr": float(np.mean([r["delta_psnr"] for r in deltas])) if deltas else None,
        "mean_delta_ms_ssim": float(np.mean([r["delta_ms_ssim"] for r in deltas])) if deltas else None,
        "images": rows,
    }


EXAMPLE = """example:
  python -m jpegedit.evaluate runs/qt --images ../shared/data/kodak --count 4 -o out/qt_eval.json
"""


def evaluate_command(args: argparse.Namespace) -> str:
    out = check_output_file(Path(args.out) if args.out else Path(args.run) / "eval.json", args.force)
    if not Path(args.images).is_dir():
        raise UsageError(f"--images {args.images} is not a folder")
    images = list_images(args.images)[: args.count]
    if not images:
        raise UsageError(f"no images under {args.images}")
    result = evaluate_run(args.run, images, args.step)
    write_atomic(out, json.dumps(result, indent=1).encode(), args.force)
    return (
        f"mean over {len(images)} images: {result['mean_bpp']:.3f} bpp, delta PSNR vs libjpeg at equal bytes "
        f"{result['mean_delta_psnr']:+.3f} dB, delta MS-SSIM {result['mean_delta_ms_ssim']:+.5f}; wrote {out}"
    )


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(
        prog="python -m jpegedit.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="a run directory of launch/train.py")
    p.add_argument(
        "--images",
        default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"),
        help="folder of test images (default ../shared/data/kodak)",
    )
    p.add_argument("--count", type=int, default=4, help="how many images (sorted), default 4")
    p.add_argument("--step", type=int, default=None, help="the checkpoint step (default: the newest)")
    p.add_argument("-o", "--out", default=None, help="the JSON to write (default RUN/eval.json)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    return run(p.prog, p, evaluate_command, argv, expected=(CheckpointError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
