"""Speed and memory of jpegedit's JAX codec against libjpeg-turbo (Pillow), same images, same run.

For a batch of Kodak-sized images (24 x 512x768, portraits rotated; scikit-image photos resized
when ../shared/data/kodak is absent), quality 50, 4:4:4:

* ``float_forward``: jit-compiled encode to quantised coefficients + decode (float path, hard
  rounding), uint8 images in, float32 images out, one image at a time inside the program
  (``lax.map``); ``_vectorised``: the whole batch as one array (memory-bound on a CPU, the better
  choice on an accelerator);
* ``float_fwd_bwd``: the same with ``cubic_ste`` rounding and the gradient of an MSE loss with
  respect to the images and the tables (what a training step pays for the codec);
* ``exact_forward``: libjpeg-turbo's integer arithmetic (``jpegedit.libjpeg``) encode + decode;
* peer: Pillow's libjpeg-turbo encode (standard Huffman tables, entropy coding included) + decode of
  each image, one after the other.

Megapixels/s (best of ``--repeats``, compile excluded) and the ratio to the peer; peak memory of the
compiled 24-image programs from XLA's memory analysis (arguments + outputs + temporaries), and the
process's peak RSS. Writes ``results/benchmarks/codec_<backend>.json``.

    python benchmarks/codec.py [--batch 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jpegedit import codec, libjpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import load_pairs, timed  # noqa: E402  (same image loader as the metrics benchmark)

REPO = Path(__file__).resolve().parents[1]
QUALITY = 50


def _bytes(compiled) -> int | None:
    m = compiled.memory_analysis()
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args()

    images, _, source = load_pairs(args.batch)
    n, h, w, _ = images.shape
    mpix = n * h * w / 1e6
    tables = codec.quality_to_tables(QUALITY)
    ftables = jnp.asarray(tables, jnp.float32)
    x = jnp.asarray(images)
    xf = jnp.asarray(images, jnp.float32)

    def forward(img, q):
        return codec.roundtrip(img, q, rounding="hard")[0]

    def loss(img, q):
        out, _ = codec.roundtrip(img, q, rounding="cubic_ste")
        return jnp.sum((out - img) ** 2) / img.size

    def per_image(f):
        # lax.map: one image at a time inside the compiled program (cache-sized working set on CPU)
        return lambda img, q: jax.lax.map(lambda one: f(one, q), img)

    def grad_per_image(img, q):
        def step(acc, one):
            value, (gi, gq) = jax.value_and_grad(loss, argnums=(0, 1))(one, q)
            return (acc[0] + value, acc[1] + gq), gi

        (value, gq), gi = jax.lax.scan(step, (0.0, jnp.zeros_like(q)), img)
        return value, (gi, gq)

    def exact_fn(img, q):
        return libjpeg._decode_jit(libjpeg._encode_jit(img, q, "444"), q)

    itables = jnp.asarray(tables)
    programs = {
        # name: (function, image argument, table argument)
        "float_forward": (per_image(forward), x, ftables),
        "float_forward_vectorised": (forward, x, ftables),
        "float_fwd_bwd": (grad_per_image, xf, ftables),
        "float_fwd_bwd_vectorised": (jax.value_and_grad(loss, argnums=(0, 1)), xf, ftables),
        "exact_forward": (per_image(exact_fn), x, itables),
    }
    results, mem = {}, {}
    for name, (f, img, q) in programs.items():
        compiled = jax.jit(f).lower(img, q).compile()
        fn = lambda c=compiled, a=img, b=q: jax.block_until_ready(c(a, b))  # noqa: E731
        fn()  # warm
        results[name] = mpix / timed(fn, args.repeats)
        mem[name] = _bytes(compiled)

    def pillow_roundtrip():
        for im in images:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, "JPEG", quality=QUALITY, subsampling=0)
            np.asarray(Image.open(io.BytesIO(buf.getvalue())))

    pillow_roundtrip()
    peer = mpix / timed(pillow_roundtrip, args.repeats)

    backend = jax.default_backend()
    print(
        f"{source}; batch {n} x {h}x{w} = {mpix:.2f} MP, quality {QUALITY}, 4:4:4; JAX on {backend} "
        f"({jax.devices()[0].device_kind}, {os.cpu_count()} CPUs)"
    )
    print(f"  {'Pillow libjpeg-turbo encode+decode':38s} {peer:8.1f} MP/s   1.00x   (peer, one image at a time)")
    for name, v in results.items():
        m = mem[name]
        print(
            f"  {name:38s} {v:8.1f} MP/s   {v / peer:.2f}x   peak {m / 2**30 if m else float('nan'):.2f} GiB (XLA, "
            f"batch {n})"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"  process peak RSS {rss:.2f} GiB")

    out = Path(args.out or REPO / "results" / "benchmarks" / f"codec_{backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "source": source,
                "batch": n,
                "height": h,
                "width": w,
                "quality": QUALITY,
                "chroma": "444",
                "backend": backend,
                "device": jax.devices()[0].device_kind,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "jax": jax.__version__,
                "pillow": Image.__version__,
                "megapixels_per_s": {"pillow_libjpeg_turbo": peer, **results},
                "ratio_to_pillow": {k: v / peer for k, v in results.items()},
                "peak_bytes_xla": mem,
                "peak_rss_gib": rss,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
