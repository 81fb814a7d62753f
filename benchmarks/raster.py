"""Rasteriser speed: megapixels/s of trimesh_decode.raster for a batch of 256x256 previews,
against scipy.interpolate.LinearNDInterpolator on the same triangulations, same run.

Previews: 64x64 grids with 170 vertices and 8 colours (what the encoder writes at 200 bytes).
Ours: the JAX rasteriser - ``render`` (jit, vmap over the batch; compile excluded, best of 3) and
``decoder_channels`` (all 8 channels) - on whatever device JAX has; and its CPU build
(``trimesh_decode.raster_cpu``: numba, the same triangles and float32 arithmetic, meshes in parallel
threads over every core), also into a reused output buffer (``out=``). Peer: for each preview, scipy's
interpolator evaluated at every pixel centre -
once building it from a prebuilt ``scipy.spatial.Delaunay`` (interpolation only) and once from
the points (triangulation included); best of 3 like ours. Writes results/benchmarks/raster.json.

    python benchmarks/raster.py [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import jax
import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from preview_helpers import random_preview  # noqa: E402

from trimesh_decode import raster, raster_cpu  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    previews = [random_preview(rng, 64, 64, 170, 8) for _ in range(args.batch)]
    mesh = raster.pack(previews)
    h = w = 256
    mp = args.batch * h * w / 1e6
    t_render = best(lambda: raster.render(mesh, h, w))
    t_chan = best(lambda: raster.decoder_channels(mesh, h, w))
    t_cpu = best(lambda: raster_cpu.render(mesh, h, w))
    t_cpu_chan = best(lambda: raster_cpu.decoder_channels(mesh, h, w))
    buf = np.empty((args.batch, h, w, 3), np.float32)  # a data pipeline's reused batch buffer
    t_cpu_buf = best(lambda: raster_cpu.render(mesh, h, w, out=buf))
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # scipy's interpolator runs on one thread: the per-thread comparison
    t_cpu_1 = best(lambda: raster_cpu.render(mesh, h, w))
    numba.set_num_threads(threads)
    yy, xx = np.mgrid[0:h, 0:w]
    q = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
    pts = [p.all_points() * (255 / 63) for p in previews]
    cols = [p.vertex_rgb() / 255.0 for p in previews]
    tris = [Delaunay(x) for x in pts]

    def scipy_interp():
        for tri, c in zip(tris, cols):
            LinearNDInterpolator(tri, c)(q)

    def scipy_with_triangulation():
        for x, c in zip(pts, cols):
            LinearNDInterpolator(x, c)(q)

    t_scipy = best(scipy_interp)  # best of 3, as ours
    t_scipy_tri = best(scipy_with_triangulation)
    res = {
        "batch": args.batch,
        "size": [h, w],
        "device": str(jax.devices()[0]),
        "render_mp_per_s": round(mp / t_render, 1),
        "channels_mp_per_s": round(mp / t_chan, 1),
        "scipy_interp_mp_per_s": round(mp / t_scipy, 1),
        "scipy_with_triangulation_mp_per_s": round(mp / t_scipy_tri, 1),
        "cpu_render_mp_per_s": round(mp / t_cpu, 1),
        "cpu_channels_mp_per_s": round(mp / t_cpu_chan, 1),
        "cpu_render_one_thread_mp_per_s": round(mp / t_cpu_1, 1),
        "cores": os.cpu_count(),
        "cpu_render_into_buffer_mp_per_s": round(mp / t_cpu_buf, 1),
        "ratio_cpu_render_into_buffer_vs_scipy_interp": round(t_scipy / t_cpu_buf, 2),
        "ratio_cpu_render_one_thread_vs_scipy_interp": round(t_scipy / t_cpu_1, 2),
        "ratio_render_vs_scipy_interp": round(t_scipy / t_render, 2),
        "ratio_cpu_render_vs_scipy_interp": round(t_scipy / t_cpu, 2),
        "ratio_cpu_render_vs_scipy_with_triangulation": round(t_scipy_tri / t_cpu, 2),
        "ratio_render_vs_scipy_with_triangulation": round(t_scipy_tri / t_render, 2),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(res, indent=1))
    out = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / f"raster_{jax.default_backend()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
