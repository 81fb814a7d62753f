"""``compat-measure``: every quality measure of compat.metrics for an image pair.

Without images it measures an embedded default - scikit-image's astronaut photo against its own
libjpeg (Pillow) JPEG at quality 20 - so that a fresh install can be checked with one command.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
from PIL import Image

from compat import metrics as M
from compat.cli import OneLineParser, UsageError, check_output_file, run, write_atomic
from compat.images import load_image

EXAMPLE = """examples:
  compat-measure                                   # astronaut vs its JPEG at quality 20
  compat-measure original.png decoded.png --lpips vgg -o scores.json
"""


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="compat-measure",
        description="PSNR, SSIM, MS-SSIM, LPIPS and classifier agreement of a distorted image against its original.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("original", nargs="?", help="reference image (any format compat.images reads)")
    p.add_argument("distorted", nargs="?", help="image to score, same size as the reference")
    p.add_argument("--lpips", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default alex)")
    p.add_argument("-o", "--out", help="also write the scores as JSON to this file")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def _default_pair() -> tuple[np.ndarray, np.ndarray, str]:
    from skimage import data  # lazy: slow to import; only the embedded example needs it

    x = data.astronaut()
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=20)
    y = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return x, y, f"skimage astronaut vs its libjpeg JPEG, quality 20 ({len(buf.getvalue())} bytes)"


def measure(x: np.ndarray, y: np.ndarray, lpips_net: str = "alex") -> dict[str, float | bool]:
    scores: dict[str, float | bool] = {
        "psnr": float(M.psnr(x, y)),
        "ssim": float(M.ssim(x, y)),
        f"lpips_{lpips_net}": float(M.lpips(x, y, lpips_net)),
    }
    if min(x.shape[:2]) >= 161:
        scores["ms_ssim"] = float(M.ms_ssim(x, y))
        scores["ms_ssim_db"] = float(M.ms_ssim_db(x, y))
    sem = M.semantic_similarity(x, y)
    scores.update({k: (bool(v) if v.dtype == bool else float(v)) for k, v in sem.items()})
    return scores


def measure_command(args: argparse.Namespace) -> str:
    if (args.original is None) != (args.distorted is None):
        raise UsageError("give both an original and a distorted image, or neither (for the embedded example)")
    out = check_output_file(args.out, args.force) if args.out else None
    if args.original is None:
        x, y, what = _default_pair()
    else:
        x, y = load_image(args.original), load_image(args.distorted)
        what = f"{args.original} vs {args.distorted}"
        if x.shape != y.shape:
            raise UsageError(f"the images differ in size: {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}")
    scores = measure(x, y, args.lpips)
    lines = [what] + [f"  {k:>14}: {v:.6f}" if isinstance(v, float) else f"  {k:>14}: {v}" for k, v in scores.items()]
    if out is not None:
        write_atomic(out, (json.dumps({"pair": what, **scores}, indent=2) + "\n").encode(), args.force)
        lines.append(f"wrote {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # a ValueError of compat.metrics (e.g. images too small for a measure) is the input's fault
    return run("compat-measure", _parser(), measure_command, argv, expected=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
