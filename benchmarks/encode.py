"""Encoding speed: seconds per image for ``jpegedit encode`` with shipped learned models - one per
backbone (VGG16, the paper's; EfficientNet-Lite0, the fast one) - on the CPU (JAX, compile
excluded; features, attention, trellis quantisation, progressive file), its parts, the
``--target-bpp`` search over the default family's ladder, and one fresh ``jpegedit encode`` command
per model (imports and compilation included), beside libjpeg (Pillow, 4:4:4, optimised Huffman) and
mozjpeg (jpeglib, 4:4:4, trellis, progressive) on the same images in the same run. Writes
results/benchmarks/encode_<backend>.json.

    python benchmarks/encode.py [--images ../shared/data/kodak] [--count 6] \
        [--models attention_bits_lam0.002,attention_lite0_lam0.002]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from compat import nets  # noqa: E402
from compat.images import list_images, load_image  # noqa: E402
from jpegedit import baselines, encoder, jpegfile  # noqa: E402
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
    ap.add_argument("--models", default="attention_bits_lam0.002,attention_lite0_lam0.002")
    args = ap.parse_args()
    paths = list_images(args.images)[: args.count]
    images = [load_image(p) for p in paths]
    models = [load_model(m) for m in args.models.split(",")]
    family = encoder.choose_models()
    times, command = {}, {}
    for model in models:
        k = model.backbone
        times[f"jpegedit_{k}"] = per_image(lambda x, model=model: encoder.encode_learned(x, [model]), images)
        # its parts: the backbone's features alone; the image's transforms (untimed here); attention, trellis, file
        times[f"jpegedit_{k}_features"] = per_image(
            lambda x, k=k: jax.block_until_ready(encoder.features(x, k)), images
        )
        quantise = {id(x): encoder.Quantiser(x, [model]) for x in images}

        def trellis(x, model=model, quantise=quantise):
            co, t = quantise[id(x)](model)
            jpegfile.write(co, t, progressive=True)

        times[f"jpegedit_{k}_attention_trellis_file"] = per_image(trellis, images)
        times[f"jpegedit_{k}_no_trellis"] = per_image(
            lambda x, model=model: encoder.encode_learned(x, [model], trellis=None), images
        )
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            cmd = [sys.executable, "-m", "jpegedit.cli", "encode", str(paths[0]), "-o", f"{tmp}/a.jpg"]
            subprocess.run(cmd + ["--model", model.name], check=True, capture_output=True, cwd=ROOT)
            command[model.name] = round(time.perf_counter() - t, 2)
    times[f"jpegedit_target_bpp_0.5 ({encoder.DEFAULT_BACKBONE})"] = per_image(
        lambda x: encoder.encode_learned(x, family, 0.5), images[:2]
    )
    # why Lite0 is fast here: one 3x3 depthwise layer (256x384x96) as XLA's grouped convolution and as
    # compat.nets.depthwise_conv's shifted slices
    h = jnp.ones((1, 256, 384, 96), jnp.float32)
    w = jnp.ones((3, 3, 1, 96), jnp.float32)
    grouped = jax.jit(
        lambda h: jax.lax.conv_general_dilated(
            h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=96
        )
    )
    sliced = jax.jit(lambda h: nets.depthwise_conv(h, w))
    times["depthwise_3x3_grouped_conv"] = per_image(lambda h: jax.block_until_ready(grouped(h)), [h] * 4)
    times["depthwise_3x3_slices"] = per_image(lambda h: jax.block_until_ready(sliced(h)), [h] * 4)
    times["libjpeg"] = per_image(lambda x: baselines.encode("libjpeg-444-opt", x, 50), images)
    times["mozjpeg"] = per_image(lambda x: baselines.encode("mozjpeg-444", x, 50), images)
    med = {k: float(np.median(v)) for k, v in times.items()}
    res = {
        "images": len(images),
        "size": list(images[0].shape[:2]),
        "models": {m.backbone: m.name for m in models},
        "device": str(jax.devices()[0]),
        "seconds_per_image_median": {k: round(v, 4) for k, v in med.items()},
        "seconds_fresh_command": command,
        **{
            f"ratio_jpegedit_{m.backbone}_to_{peer}": round(med[f"jpegedit_{m.backbone}"] / med[peer], 1)
            for m in models
            for peer in ("libjpeg", "mozjpeg")
        },
        "cores": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(res, indent=1))
    out = ROOT / "results" / "benchmarks" / f"encode_{jax.default_backend()}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
