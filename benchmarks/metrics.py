"""Throughput of compat.metrics on 24 Kodak-sized (512x768) image pairs on the CPU.

Prints images/s of each metric (jit-compiled, compile time excluded, best of ``--repeats``) and the
ratio to scikit-image's ``structural_similarity`` measured in the same run on the same pairs.
Uses ../shared/data/kodak when present (each image vs its libjpeg JPEG at quality 50), else
scikit-image's photos resized to 512x768.

    python benchmarks/metrics.py [--repeats 3] [--chunk 4] [-o results/benchmarks/metrics_cpu.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"


def load_pairs(n: int = 24) -> tuple[np.ndarray, np.ndarray, str]:
    if KODAK.is_dir():
        paths = sorted(KODAK.glob("kodim*.png"))[:n]
        imgs = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        imgs = [im if im.shape[0] == 512 else np.ascontiguousarray(np.rot90(im)) for im in imgs]
        source = f"{len(imgs)} Kodak images (portraits rotated to 512x768)"
    else:
        from skimage import data

        base = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
        imgs = [np.asarray(Image.fromarray(base[i % 4]).resize((768, 512), Image.BICUBIC)) for i in range(n)]
        source = f"{n} scikit-image photos resized to 512x768 (../shared/data/kodak absent)"
    dist = []
    for im in imgs:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=50)
        dist.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return np.stack(imgs), np.stack(dist), source


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=4, help="images per jit call for the networks (memory)")
    ap.add_argument("-o", "--out", help="write the figures as JSON here")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    from skimage.metrics import structural_similarity

    from compat import metrics as M

    x, y, source = load_pairs()
    n = x.shape[0]
    print(f"{source}; jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs")

    def skimage_ssim():
        for a, b in zip(x, y):
            structural_similarity(
                a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
            )

    ref_t = timed(skimage_ssim, args.repeats)
    ref_ips = n / ref_t

    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    cases = {
        "psnr": (M.psnr, n),
        "ssim": (M.ssim, n),
        "ms_ssim": (M.ms_ssim, n),
        "lpips_alex": (lambda a, b: M.lpips(a, b, "alex"), args.chunk),
        "lpips_vgg": (lambda a, b: M.lpips(a, b, "vgg"), args.chunk),
        "classify": (lambda a, b: M.classify(a), n),
    }
    rows = {"skimage_ssim": {"images_per_s": ref_ips, "ratio_to_skimage_ssim": 1.0}}
    print(f"{'metric':>14} {'images/s':>10} {'x skimage SSIM':>15}")
    print(f"{'skimage ssim':>14} {ref_ips:10.2f} {1.0:15.2f}")
    for name, (fn, chunk) in cases.items():
        f = jax.jit(fn)
        f(xj[:chunk], yj[:chunk]).block_until_ready()  # compile

        def run():
            for i in range(0, n, chunk):
                f(xj[i : i + chunk], yj[i : i + chunk]).block_until_ready()

        t = timed(run, args.repeats)
        ips = n / t
        rows[name] = {"images_per_s": ips, "ratio_to_skimage_ssim": ips / ref_ips}
        print(f"{name:>14} {ips:10.2f} {ips / ref_ips:15.2f}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "source": source,
            "image_size": list(x.shape[1:3]),
            "num_images": n,
            "jax": jax.__version__,
            "platform": jax.devices()[0].platform,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": sys.version.split()[0],
        }
        out.write_text(json.dumps({"meta": meta, "metrics": rows}, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
