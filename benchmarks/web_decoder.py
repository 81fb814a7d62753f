"""The plain decoder in JavaScript (web/tri.mjs): previews of 256x256 per second in Node and in
headless Chromium (web/index.html measures itself), against the Python decoder
(``raster_cpu.interpolate``, numba, one thread) on the same previews in the same run; and the file's
gzipped size (the minified size needs terser: ``npx terser web/tri.mjs --module -c -m | gzip -9 | wc -c``).
And the neural decoders (each shipped model of ``--models``, default ``mobile`` and the browser's
``mobile_web``, exported as the web's float16 ONNX file): milliseconds per preview in Chromium
through onnxruntime-web (web/index.html measures itself, wasm, 1 thread and the page's default),
against onnxruntime in Python (``OnnxDecoder``, one thread) in the same run, and each network's
multiply-adds; needs the onnx extra and ``npm ci --prefix web``. Writes
results/benchmarks/web_decoder.json.

    python benchmarks/web_decoder.py [--seconds 2] [--models mobile,mobile_web]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WEB = ROOT / "web"
PHOTOS = sorted((WEB / "conformance").glob("photo_*.tri"))

NODE_BENCH = """
import { readFileSync } from "node:fs";
import { decodePreview } from "%s";
const inputs = %s.map((f) => new Uint8Array(readFileSync(f)));
for (let i = 0; i < 5; i++) for (const b of inputs) decodePreview(b);
const t0 = performance.now(); let n = 0;
while (performance.now() - t0 < %d) for (const b of inputs) { decodePreview(b, { size: 256 }); n++; }
console.log(n / ((performance.now() - t0) / 1000));
"""


def python_rate(seconds: float) -> float:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from trimesh_decode import raster_cpu
    from trimesh_decode.bitstream import from_bytes

    previews = [from_bytes(p.read_bytes()) for p in PHOTOS]
    for p in previews:
        raster_cpu.interpolate(p, 256)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for p in previews:
            raster_cpu.interpolate(p, 256)
            n += 1
    return n / (time.perf_counter() - t0)


def node_rate(seconds: float) -> float | None:
    node = shutil.which("node")
    if node is None:
        return None
    files = json.dumps([str(p) for p in PHOTOS])
    script = NODE_BENCH % ((WEB / "tri.mjs").as_uri(), files, int(seconds * 1000))
    out = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def chromium_rate() -> float | None:
    from launch.check_report import dump_served, find_browser

    if find_browser() is None:
        return None
    m = re.search(r'data-rate="([0-9.]+)"', dump_served(WEB, "index.html"))
    return float(m.group(1)) if m else None


def neural_ms(seconds: float, name: str) -> dict:
    """ms per preview of the shipped model ``name``: onnxruntime (Python, one thread, channels
    included) and the page in Chromium (wasm, 1 thread and the page's default)."""
    import tempfile

    from launch.check_report import evaluate_served, find_browser
    from trimesh_decode.bitstream import from_bytes
    from trimesh_decode.models import load_model
    from trimesh_decode.onnx_export import OnnxDecoder, export_onnx

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "models").mkdir()
        decoder = load_model(name)
        out["multiply_adds_g"] = round(multiply_adds(decoder.settings) / 1e9, 3)
        model = export_onnx(decoder, site / "models" / f"{name}.onnx", float16=True)
        out["onnx_float16_mib"] = round(model.stat().st_size / 2**20, 2)
        dec = OnnxDecoder(model, threads=1)
        previews = [from_bytes(p.read_bytes()) for p in PHOTOS]
        dec.decode(previews[:1])
        times, t0 = [], time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for p in previews:
                t = time.perf_counter()
                dec.decode([p])
                times.append(time.perf_counter() - t)
        out["onnxruntime_python_1_thread_ms"] = round(1000 * float(sorted(times)[len(times) // 2]), 1)
        if find_browser() is None or not (WEB / "node_modules" / "onnxruntime-web").is_dir():
            return out
        for part in ("index.html", "page.mjs", "tri.mjs", "neural.mjs", "node_modules"):
            (site / part).symlink_to(WEB / part)
        for label, query in (("1_thread", "&threads=1"), ("default_threads", "")):
            dom = evaluate_served(site, f"index.html?model=models/{name}.onnx" + query, "document.body.dataset.neural")
            ms = re.search(r'data-neural-ms="([0-9.]+)"', dom)
            threads = re.search(r'data-neural-threads="([0-9]+)"', dom)
            out[f"chromium_wasm_{label}_ms"] = float(ms.group(1)) if ms else None
            out[f"chromium_wasm_{label}_threads"] = int(threads.group(1)) if threads else None
            if ms:
                key = f"chromium_wasm_{label}_ratio_to_onnxruntime"
                out[key] = round(float(ms.group(1)) / out["onnxruntime_python_1_thread_ms"], 2)
    return out


def multiply_adds(settings: dict, size: int = 256) -> int:
    """Multiply-adds of one decoding by the hourglass of ``settings`` (width, stacks, depth) at
    ``size`` x ``size``: the convolutions (stem 7x7/2 on 8 channels and 3x3/2; per level a 3x3
    skip, a 3x3 after SpaceToDepth(2), a 3x3 after DepthToSpace(2); the bottom 3x3; the heads' 1x1)."""
    w, stacks, depth = settings["width"], settings["stacks"], settings["depth"]
    s = size // 2
    total = 49 * 8 * w * s * s
    s //= 2
    total += 9 * w * w * s * s
    glass, side = 0, s
    for _ in range(depth):
        glass += 9 * w * w * side * side  # skip
        glass += 9 * 4 * w * w * (side // 2) ** 2  # down, after SpaceToDepth(2)
        glass += 9 * (w // 4) * w * side * side  # up, after DepthToSpace(2)
        side //= 2
    glass += 9 * w * w * side * side  # bottom
    head = (w // 16) * 3 * size * size
    return total + stacks * (glass + head)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="how long each rate is measured")
    ap.add_argument("--models", default="mobile,mobile_web", help="the shipped neural decoders to time")
    args = ap.parse_args()
    py = python_rate(args.seconds)
    res = {
        "previews": [p.name for p in PHOTOS],
        "python_raster_cpu_per_s": round(py, 1),
        "tri_mjs_gzip_bytes": len(gzip.compress((WEB / "tri.mjs").read_bytes(), 9)),
    }
    for name, rate in (("node", node_rate(args.seconds)), ("chromium", chromium_rate())):
        res[f"{name}_per_s"] = None if rate is None else round(rate, 1)
        res[f"{name}_ratio_to_python"] = None if rate is None else round(rate / py, 2)
    try:
        res["neural"] = {name: neural_ms(args.seconds, name) for name in args.models.split(",")}
    except ImportError:
        res["neural"] = None  # the onnx extra is not installed
    print(json.dumps(res, indent=1))
    out = ROOT / "results" / "benchmarks" / "web_decoder.json"
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
