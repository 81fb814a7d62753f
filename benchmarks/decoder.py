"""Neural decoder speed: ms per 256x256 preview on one CPU core (goal for ``mobile``: <= 50 ms; also
``mobile_web``, the same network at 32 filters, and ``paper``), and
training images/s, against interpolation decoding of the same previews measured in the same run.

Decoding: batch 1, channels rendered from the preview plus the network, jit-compiled (compile
excluded), median of ``--repeats``; for ``mobile`` and ``mobile_web`` also the network exported to ONNX in onnxruntime
(channels rendered by raster_cpu; ``decode --backend onnx``), against the JAX figure; one core
means the process is pinned to one CPU and XLA runs
single-threaded. Loading (one core): ms per training element on the host - the crop's PNG read, the
preview parsed, triangulated and padded - against Pillow reading the PNG alone (the dataset's crops
when data/trimesh_previews_scaled exists, else synthetic ones); a process makes 1000 / ms elements
per second, which is what ``data.workers`` multiplies for an accelerator. Training: one step of the config's
batch (``mobile``: 128x128 crops; ``paper``: 256)
with every core, images/s. The models' weights are random (speed does not depend on them).
Writes results/benchmarks/decoder_<backend>.json.

    python benchmarks/decoder.py [--repeats 20] [--train-steps 5] [--elements 200]
"""

from __future__ import annotations

import os
import sys

if "--all-cores" not in sys.argv:
    # one core for the decoding figures: set before JAX starts its thread pools
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import median_ms as _median_ms  # noqa: E402


def decoding(repeats: int) -> dict:
    from preview_helpers import random_preview

    from trimesh_decode import raster
    from trimesh_decode.decoding import _predict
    from trimesh_decode.hourglass import StackedHourglass

    rng = np.random.default_rng(0)
    preview = random_preview(rng, 64, 64, 170, 8)
    mesh = raster.pack([preview])
    out = {"interp_ms": round(_median_ms(lambda: raster.render(mesh, 256, 256), repeats), 2)}
    for name, width in (("mobile", 64), ("mobile_web", 32), ("paper", 256)):
        model = StackedHourglass(width=width, stacks=2, output="image" if name == "paper" else "residual")
        v = model.init(jax.random.key(0), jnp.zeros((1, 256, 256, 8)), interp=jnp.zeros((1, 256, 256, 3)))
        params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))
        ms = _median_ms(lambda: _predict(v, mesh, model, "all"), max(3, repeats // (4 if name == "paper" else 1)))
        out[name] = {
            "ms_per_preview": round(ms, 1),
            "parameters": params,
            "ratio_to_interp": round(ms / out["interp_ms"], 1),
        }
        if name == "mobile":  # averaged over the 8 symmetries of the square (--symmetries 8)
            ms8 = _median_ms(lambda: _predict(v, mesh, model, "all", 8), max(3, repeats // 4))
            out[name]["ms_per_preview_x8"] = round(ms8, 1)
            out[name]["ratio_x8_to_single"] = round(ms8 / ms, 1)
        if name != "paper":
            onnx_ms = _onnx_ms(v, width, preview, repeats)
            if onnx_ms is not None:  # the same network exported, in onnxruntime (decode --backend onnx)
                out[name]["onnx_ms_per_preview"] = round(onnx_ms, 1)
                out[name]["onnx_ratio_to_jax"] = round(onnx_ms / ms, 2)
    return out


def _onnx_ms(variables, width: int, preview, repeats: int) -> float | None:
    """ms per preview of the residual hourglass of ``width`` filters (``mobile``'s shape at 64,
    ``mobile_web``'s at 32) exported to ONNX, onnxruntime on one thread; None without the onnx extra."""
    import tempfile

    try:
        from trimesh_decode.models import NeuralDecoder
        from trimesh_decode.onnx_export import OnnxDecoder, export_onnx

        OnnxDecoder.check_installed()
    except ImportError:
        return None
    settings = {"width": width, "stacks": 2, "depth": 4, "channels": "all", "output": "residual"}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(NeuralDecoder(f"w{width}", variables, settings, {}), Path(tmp) / "m.onnx")
        dec = OnnxDecoder(path, threads=1)
        return _median_ms(lambda: dec.decode([preview]), repeats)


def loading(n: int) -> dict:
    import tempfile

    from PIL import Image
    from preview_helpers import random_preview

    from trimesh_decode.bitstream import to_bytes
    from trimesh_decode.pipeline import _LoadPair, dataset_records

    real = ROOT / "data" / "trimesh_previews_scaled"
    with tempfile.TemporaryDirectory() as tmp:
        if (real / "manifest.jsonl").exists():
            root, records, source = real, dataset_records(str(real))[:n], "dataset crops"
        else:  # photo-like crops (smooth noise) and random ~170-point previews
            root, rng, records, source = Path(tmp), np.random.default_rng(2), [], "synthetic crops"
            (root / "crops").mkdir()
            (root / "previews").mkdir()
            for i in range(n):
                small = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(small).resize((256, 256), Image.Resampling.BICUBIC).save(root / "crops" / f"{i}.png")
                (root / "previews" / f"{i}.tri").write_bytes(to_bytes(random_preview(rng, 64, 64, 170, 8)))
                records.append((f"crops/{i}.png", f"previews/{i}.tri"))
        load = _LoadPair(str(root), 320, 640)
        for rec in records[:5]:
            load.map(rec)  # warm caches and numba
        t = time.perf_counter()
        for rec in records:
            load.map(rec)
        element = (time.perf_counter() - t) / len(records) * 1e3
        t = time.perf_counter()
        for crop, _ in records:
            np.asarray(Image.open(root / crop).convert("RGB"))
        png = (time.perf_counter() - t) / len(records) * 1e3
    return {
        "source": source,
        "elements": len(records),
        "ms_per_element": round(element, 2),
        "png_read_ms": round(png, 2),
        "ratio_to_png_read": round(element / png, 1),
        "elements_per_s_per_process": round(1e3 / element),
    }


def training(steps: int) -> dict:
    from preview_helpers import random_preview

    from compat.config import config_module
    from trimesh_decode.meshes import preview_arrays
    from trimesh_decode.task import make_task

    res = {}
    rng = np.random.default_rng(1)
    for name in ("mobile", "paper"):
        config = config_module(ROOT / "configs" / "trimesh_decode" / f"{name}.py").get_config()
        b = config.batch_size if name == "mobile" else 8  # paper: a smaller batch, so a CPU finishes
        arrays = [
            preview_arrays(random_preview(rng, 64, 64, 170, 8), config.data.pad_points, config.data.pad_triangles)
            for _ in range(b)
        ]
        batch = {k: np.stack([a[k] for a in arrays]) for k in arrays[0]}
        batch["image"] = rng.integers(0, 256, (b, 256, 256, 3), dtype=np.uint8)
        task = make_task(config)
        state = task.init(jax.random.key(0))
        step = jax.jit(task.train_step, donate_argnums=0)
        state, m = step(state, batch, jax.random.key(0))
        jax.block_until_ready(m["loss"])
        t = time.perf_counter()
        for i in range(steps):
            state, m = step(state, batch, jax.random.key(i))
        jax.block_until_ready(m["loss"])
        dt = (time.perf_counter() - t) / steps
        res[name] = {"batch": b, "crop": config.data.crop, "step_s": round(dt, 2), "images_per_s": round(b / dt, 1)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--elements", type=int, default=200, help="training elements to load for the host figure")
    ap.add_argument("--all-cores", action="store_true", help="(internal) the training half, with every core")
    args = ap.parse_args()
    if args.all_cores:
        print(json.dumps(training(args.train_steps)))
        return
    res = {
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "decode_one_core": decoding(args.repeats),
        "load_one_core": loading(args.elements),
    }
    # training uses every core: a fresh process, not pinned
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, __file__, "--all-cores", "--train-steps", str(args.train_steps)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    res["train_all_cores"] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["train_all_cores"]["cores"] = os.cpu_count()
    print(json.dumps(res, indent=1))
    out = ROOT / "results" / "benchmarks" / f"decoder_{jax.default_backend()}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
