"""The rasteriser of :mod:`trimesh_decode.raster`, compiled for the CPU with numba.

Same pixel-to-triangle rule, same float32 arithmetic, so the triangle of every pixel is identical
to the JAX version's and the colours agree to float32 rounding (tests pin both). The difference is
the loop order a CPU likes: each triangle walks only the rows it covers and writes its span starts
directly (the JAX version evaluates every (triangle, row) pair, which vectorises on an accelerator),
then one pass per row hands every pixel its triangle and shades it; meshes of a batch run in
parallel threads. Uses: decoding on a CPU without JAX compilation (``trimesh-decode decode
--decoder interp``), rendering in CPU data pipelines, and the CPU figure of benchmarks/raster.py.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trimesh_decode.bitstream import Preview
from trimesh_decode.meshes import Mesh, pack

__all__ = ["triangle_index", "render", "decoder_channels", "interpolate"]

# XLA's CPU backend lets LLVM fuse a * b + c into one fused multiply-add; allowing the same
# contraction (and nothing else of fast-math) here gives bit-identical span ends.
_jit = numba.njit(cache=True, nogil=True, fastmath={"contract"})
BIG = np.float32(3.0e38)


@_jit
def _positions(points, n, gw, gh, height, width):
    """As :func:`trimesh_decode.raster._pixel_positions`, to the bit."""
    x = np.empty(n, np.float32)
    y = np.empty(n, np.float32)
    sx = np.float32(width - 1) / (np.float32(gw) - np.float32(1.0))
    sy = np.float32(height - 1) / (np.float32(gh) - np.float32(1.0))
    for i in range(n):
        x[i] = np.float32(width - 1) if points[i, 0] == gw - 1 else np.float32(points[i, 0]) * sx
        y[i] = np.float32(height - 1) if points[i, 1] == gh - 1 else np.float32(points[i, 1]) * sy
    return x, y


@_jit
def _sorted3(x, y, i0, i1, i2):
    """The triangle's vertices ordered by (y, x): every edge between two of them then runs in its
    canonical direction (lower (y, x) first), as in the JAX rasteriser."""
    ax, ay, bx, by, cx, cy = x[i0], y[i0], x[i1], y[i1], x[i2], y[i2]
    if (ay > by) or (ay == by and ax > bx):
        ax, ay, bx, by = bx, by, ax, ay
    if (by > cy) or (by == cy and bx > cx):
        bx, by, cx, cy = cx, cy, bx, by
        if (ay > by) or (ay == by and ax > bx):
            ax, ay, bx, by = bx, by, ax, ay
    return ax, ay, bx, by, cx, cy


@_jit
def _cross(row, x0, y0, x1, y1, left, right):
    """Fold edge (x0, y0) -> (x1, y1)'s crossing of ``row`` into (left, right): JAX's per (edge,
    row) test and float32 arithmetic."""
    if y1 > y0:
        if row >= y0 and row <= y1:
            xc = x0 + (row - y0) * ((x1 - x0) / (y1 - y0))
            left = min(left, xc)
            right = max(right, xc)
    elif row == y0:
        left = min(left, min(x0, x1))
        right = max(right, max(x0, x1))
    return left, right


@_jit
def _emit(starts, r, left, right, width, key_t, shift):
    """The span [ceil(left), floor(right)] of row r, clipped to the image: its key at its start."""
    if not left <= right:
        return
    start = min(max(math.ceil(left), 0.0), width - 1.0)
    end = min(max(math.floor(right), -1.0), width - 1.0)
    if start > end:
        return
    s = int(start)
    key = (int(end) << shift) | key_t
    if key > starts[r, s]:
        starts[r, s] = key


@_jit
def _spans(points, triangles, nt, npts, gw, gh, height, width, starts, shift):
    """Write each (triangle, row) span's key ``end << shift | t`` at its first pixel of ``starts``
    (H, W) int32, keeping the largest on a tie - the JAX rasteriser's scatter-max (a later end
    wins, then a higher triangle).

    With the vertices ordered by y (v0, v1, v2), a row strictly between v0's and v2's and not on
    v1's meets exactly two edges: the long one v0-v2 and the short one beside it. Those rows take
    that shortcut; the few rows through a vertex take all three edges, as JAX does. Both compute
    each crossing with JAX's operations, so the spans are the same to the bit."""
    x, y = _positions(points, max(npts, 1), gw, gh, height, width)
    starts[:, :] = -1
    for t in range(nt):
        x0, y0, x1, y1, x2, y2 = _sorted3(x, y, triangles[t, 0], triangles[t, 1], triangles[t, 2])
        r0 = max(0, int(math.ceil(y0)))
        r1 = min(height - 1, int(math.floor(y2)))
        if r0 > r1:
            continue
        s02 = (x2 - x0) / (y2 - y0) if y2 > y0 else np.float32(0.0)
        s01 = (x1 - x0) / (y1 - y0) if y1 > y0 else np.float32(0.0)
        s12 = (x2 - x1) / (y2 - y1) if y2 > y1 else np.float32(0.0)
        for r in range(r0, r1 + 1):
            row = np.float32(r)
            if row == y0 or row == y1 or row == y2:
                left, right = _cross(row, x0, y0, x1, y1, BIG, -BIG)
                left, right = _cross(row, x1, y1, x2, y2, left, right)
                left, right = _cross(row, x0, y0, x2, y2, left, right)
            else:  # y0 < row < y2, row != y1
                xl = x0 + (row - y0) * s02
                xs = x0 + (row - y0) * s01 if row < y1 else x1 + (row - y1) * s12
                left = min(xl, xs)
                right = max(xl, xs)
            _emit(starts, r, left, right, width, t, shift)
    return x, y


@_jit
def _planes(x, y, colours, triangles, nt):
    """Per triangle: reference vertex (x0, y0), its colour, d colour/dx, d colour/dy (as JAX's)."""
    planes = np.zeros((max(nt, 1), 11), np.float32)
    for t in range(nt):
        i0, i1, i2 = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        x0, y0 = x[i0], y[i0]
        ux, uy = x[i1] - x0, y[i1] - y0
        vx, vy = x[i2] - x0, y[i2] - y0
        det = ux * vy - uy * vx
        if det == 0:
            det = np.float32(1.0)
        planes[t, 0] = x0
        planes[t, 1] = y0
        for ch in range(3):
            c0 = colours[i0, ch]
            uc = colours[i1, ch] - c0
            vc = colours[i2, ch] - c0
            planes[t, 2 + ch] = c0
            planes[t, 5 + ch] = (uc * vy - vc * uy) / det
            planes[t, 8 + ch] = (vc * ux - uc * vx) / det
    return planes


@_jit
def _one(points, colours, triangles, nt, npts, gw, gh, starts, shift, want_index, index, shade, rgb):
    """One mesh: spans, then one pass per row that hands each pixel the triangle of the last span
    starting at or before it (the JAX version's running maximum: a later column always wins) and
    shades it from that triangle's plane."""
    height, width = starts.shape
    mask = (1 << shift) - 1
    x, y = _spans(points, triangles, nt, npts, gw, gh, height, width, starts, shift)
    planes = _planes(x, y, colours, triangles, nt) if shade else np.zeros((1, 11), np.float32)
    for r in range(height):
        t = 0
        row = np.float32(r)
        px, ys, c0, c1, c2, dx0, dx1, dx2, dy0, dy1, dy2 = _load(planes, 0, row)
        for c in range(width):
            k = starts[r, c]
            if k >= 0:
                t = k & mask
                if shade:  # the plane of the new triangle, into registers
                    px, ys, c0, c1, c2, dx0, dx1, dx2, dy0, dy1, dy2 = _load(planes, t, row)
            if want_index:
                index[r, c] = t
            if shade:
                xs = np.float32(c) - px
                rgb[r, c, 0] = c0 + dx0 * xs + dy0 * ys
                rgb[r, c, 1] = c1 + dx1 * xs + dy1 * ys
                rgb[r, c, 2] = c2 + dx2 * xs + dy2 * ys


@_jit
def _load(planes, t, row):
    return (
        planes[t, 0],
        row - planes[t, 1],
        planes[t, 2],
        planes[t, 3],
        planes[t, 4],
        planes[t, 5],
        planes[t, 6],
        planes[t, 7],
        planes[t, 8],
        planes[t, 9],
        planes[t, 10],
    )


@numba.njit(cache=True, nogil=True, parallel=True, fastmath={"contract"})
def _batch(points, colours, triangles, nts, npts, grids, height, width, shift, want_index, index, shade, rgb, scratch):
    for b in numba.prange(points.shape[0]):
        # one span buffer per thread, reused mesh after mesh: it stays in cache (a fresh one per mesh
        # cost a page fault per 4 KiB and a trip to memory)
        starts = scratch[numba.get_thread_id()]
        i = np.int64(b)  # prange's index is unsigned; mixed with 0 it would become a float
        ib = i if want_index else np.int64(0)
        cb = i if shade else np.int64(0)
        _one(
            points[b],
            colours[b],
            triangles[b],
            nts[b],
            npts[b],
            grids[b, 0],
            grids[b, 1],
            starts,
            shift,
            want_index,
            index[ib],
            shade,
            rgb[cb],
        )


def _run(mesh: Mesh, height: int, width: int, want_index: bool, shade: bool, out: np.ndarray | None = None):
    if height < 2 or width < 2:
        raise ValueError(f"output size {height}x{width}: each side must be at least 2 pixels")
    # a span's key is its end column shifted past the bits of a triangle number, so that a mask (not
    # a division) recovers the triangle
    shift = max(int(mesh.triangles.shape[1]) - 1, 0).bit_length()
    if width << shift >= 2**31:
        raise ValueError(
            f"output width {width} with {mesh.triangles.shape[1]} triangles per mesh: the span keys "
            "(end column, triangle) would not fit in 32 bits"
        )
    b = len(mesh.points)
    index = np.empty((b, height, width) if want_index else (1, 1, 1), np.int32)
    if out is not None:
        if (
            out.shape != (b, height, width, 3)
            or out.dtype != np.float32
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise ValueError(
                f"out must be a writeable C-contiguous float32 array of shape {(b, height, width, 3)}, "
                f"got {out.dtype} {out.shape}"
            )
        rgb = out
    else:
        rgb = np.empty((b, height, width, 3) if shade else (1, 1, 1, 3), np.float32)
    _batch(
        np.ascontiguousarray(mesh.points, np.int32),
        np.ascontiguousarray(mesh.colours, np.float32),
        np.ascontiguousarray(mesh.triangles, np.int32),
        np.asarray(mesh.num_triangles, np.int64),
        np.asarray(mesh.num_points, np.int64),
        np.asarray(mesh.grid, np.int64),
        height,
        width,
        shift,
        want_index,
        index,
        shade,
        rgb,
        np.empty((numba.config.NUMBA_NUM_THREADS, height, width), np.int32),
    )
    return index, rgb


def triangle_index(mesh: Mesh, height: int, width: int) -> np.ndarray:
    """(B, H, W) int32: the triangle each pixel belongs to (as :func:`trimesh_decode.raster.triangle_index`)."""
    return _run(mesh, height, width, True, False)[0]


def render(mesh: Mesh, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """(B, H, W, 3) float32: barycentric interpolation (as :func:`trimesh_decode.raster.render`).
    ``out``: an array of that shape to render into (a data pipeline's reused batch buffer: no
    fresh memory to fault in on every call); it is returned."""
    return _run(mesh, height, width, False, True, out)[1]


def decoder_channels(mesh: Mesh, height: int, width: int) -> np.ndarray:
    """(B, H, W, 8) float32: the neural decoder's input (as :func:`trimesh_decode.raster.decoder_channels`)."""
    index, rgb = _run(mesh, height, width, True, True)
    b = len(index)
    out = np.zeros((b, height, width, 8), np.float32)
    edge = np.zeros((b, height, width), bool)
    edge[:, :, :-1] = index[:, :, :-1] != index[:, :, 1:]
    edge[:, :-1, :] |= index[:, :-1, :] != index[:, 1:, :]
    out[..., 0] = edge
    out[..., 2:5] = rgb
    for i in range(b):
        n = int(mesh.num_points[i])
        x, y = _positions(
            np.ascontiguousarray(mesh.points[i], np.int32),
            max(n, 1),
            int(mesh.grid[i, 0]),
            int(mesh.grid[i, 1]),
            height,
            width,
        )
        x, y = x[:n], y[:n]
        xi = np.clip(np.round(x), 0, width - 1).astype(np.int64)
        yi = np.clip(np.round(y), 0, height - 1).astype(np.int64)
        out[i, yi, xi, 1] = 1.0
        out[i, yi, xi, 5:8] = mesh.colours[i, :n]  # a later vertex on the same pixel wins, as in JAX's scatter
    return out


def interpolate(preview: Preview, size: int | tuple[int, int] = 256) -> np.ndarray:
    """Decode one preview by interpolation: uint8 (H, W, 3). ``size`` is W = H or (H, W).

    The plain decoder: this module's rasteriser (the same triangles and float32 arithmetic as
    :mod:`trimesh_decode.raster`), which needs no compilation per output size."""
    h, w = (size, size) if isinstance(size, int) else size
    if h < 2 or w < 2:
        raise ValueError(f"output size {h}x{w}: each side must be at least 2 pixels")
    rgb = render(pack([preview]), h, w)[0]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
