"""Steps/s and images/s of jpegedit's train step in the paper's configuration, on this machine.

The paper's setting: batch 8 of 256x256 crops, Adam, 4:4:4, cubic_ste rounding, MSE only (gamma 0).
Variants: Q-tables only; Q-tables + attention with the VGG16 backbone frozen; fine-tuned (the
paper's); and fine-tuned with the LPIPS term (gamma > 0). Every variant runs the same batch of crops
of Kodak images (scikit-image photos when ../shared/data/kodak is absent), jit-compiled, over all
local devices, compile time excluded, best of ``--repeats`` x ``--steps``. The peer, measured in the
same run, is the Q-tables-only step: each ratio is the price of the extra network.

    python benchmarks/train_jpegedit.py [--batch 8] [--crop 256] [--steps 3] [--repeats 2]

Writes ``results/benchmarks/train_jpegedit_<backend>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from compat import sharding as meshlib
from jpegedit import task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import load_pairs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {
    "qtables_only": dict(attention=False, finetune=False, gamma=0.0),
    "attention_frozen_backbone": dict(attention=True, finetune=False, gamma=0.0),
    "attention_finetuned_backbone": dict(attention=True, finetune=True, gamma=0.0),
    "attention_finetuned_lpips": dict(attention=True, finetune=True, gamma=50.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, help="variants to run (default: all)")
    ap.add_argument("-o", "--out", default=None)
    args = ap.parse_args()

    images, _, source = load_pairs(max(args.batch, 1))
    s = args.crop
    crops = np.stack(
        [
            im[(17 * i) % (im.shape[0] - s) :][:s, (29 * i) % (im.shape[1] - s) :][:, :s]
            for i, im in enumerate(images[: args.batch])
        ]
    )
    mesh = meshlib.data_mesh()
    repl = meshlib.replicated_sharding(mesh)
    batch = jax.device_put({"image": crops}, meshlib.data_sharding(mesh))

    results = {}
    for name, v in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        c = task.base_config()
        c.batch_size, c.data.crop = args.batch, s
        c.model.attention, c.model.finetune_backbone, c.loss.gamma = v["attention"], v["finetune"], v["gamma"]
        t = task.make_task(c)
        state = jax.device_put(t.init(jax.random.key(0)), repl)
        step = jax.jit(
            t.train_step,
            in_shardings=(repl, meshlib.data_sharding(mesh), repl),
            out_shardings=(repl, repl),
            donate_argnums=0,
        )
        t0 = time.perf_counter()
        state, m = step(state, batch, jax.random.key(0))
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(args.steps):
                state, m = step(state, batch, jax.random.key(i))
            jax.block_until_ready(m)
            best = min(best, (time.perf_counter() - t0) / args.steps)
        results[name] = {
            "steps_per_s": 1 / best,
            "images_per_s": args.batch / best,
            "first_step_s": compile_s,
            "loss": float(m["loss"]),
        }
        print(
            f"  {name:30s} {1 / best:8.3f} steps/s  {args.batch / best:8.2f} images/s   (first step incl. compile "
            f"{compile_s:.1f} s)",
            flush=True,
        )

    peer = results.get("qtables_only", {}).get("steps_per_s")
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    print(
        f"{source}; batch {args.batch} x {s}x{s}; {jax.device_count()} {backend} device(s) ({device}), "
        f"{os.cpu_count()} CPUs"
    )
    if peer:
        for name, r in results.items():
            r["ratio_to_qtables_only"] = r["steps_per_s"] / peer
            print(f"  {name:30s} {r['ratio_to_qtables_only']:.3f}x the Q-tables-only step")
    out = Path(args.out or REPO / "results" / "benchmarks" / f"train_jpegedit_{backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "source": source,
                "batch": args.batch,
                "crop": s,
                "backend": backend,
                "device": device,
                "devices": jax.device_count(),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "jax": jax.__version__,
                "variants": results,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
