"""Encoding speed: seconds per image for ``jpegedit encode`` with a shipped learned model (attention
network on the CPU, JAX, compile excluded), beside libjpeg (Pillow, 4:4:4, optimised Huffman) and
mozjpeg (jpeglib, 4:4:4, trellis) on the same images in the same run. Writes
results/benchmarks/encode_<backend>.json.

    python benchmarks/encode.py [--images ../shared/data/kodak] [--count 6] [--model attention_lam0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from compat.images import list_images, load_image  # noqa: E402
from jpegedit import baselines  # noqa: E402
from jpegedit.encoder import encode_jpeg  # noqa: E402
from jpegedit.models import load_model  # noqa: E402


def per_image(f, images) -> list[float]:
    f(images[0])  # compile / warm up
    out = []
    for x in images:
        t = time.perf_counter()
        f(x)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--images", default=str(Path(os.environ.get("COMPAT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "kodak")
    )
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--model", default="attention_lam0.01")
    args = ap.parse_args()
    images = [load_image(p) for p in list_images(args.images)[: args.count]]
    model = load_model(args.model)
    t_ours = per_image(lambda x: encode_jpeg(model, x, optimize_huffman=True), images)
    t_lib = per_image(lambda x: baselines.encode("libjpeg-444-opt", x, 50), images)
    t_moz = per_image(lambda x: baselines.encode("mozjpeg-444", x, 50), images)
    med = {k: float(np.median(v)) for k, v in (("jpegedit", t_ours), ("libjpeg", t_lib), ("mozjpeg", t_moz))}
    res = {
        "images": len(images),
        "size": list(images[0].shape[:2]),
        "model": model.name,
        "device": str(jax.devices()[0]),
        "seconds_per_image_median": {k: round(v, 4) for k, v in med.items()},
        "ratio_jpegedit_to_libjpeg": round(med["jpegedit"] / med["libjpeg"], 1),
        "ratio_jpegedit_to_mozjpeg": round(med["jpegedit"] / med["mozjpeg"], 1),
        "cores": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(res, indent=1))
    out = ROOT / "results" / "benchmarks" / f"encode_{jax.default_backend()}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
