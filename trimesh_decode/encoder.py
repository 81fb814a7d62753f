"""The stochastic hill-climbing preview encoder (Marwood et al., 2018; ../shared/specs/triangle_preview.md).

1. The image is reduced to about 1.2x the grid size (area resampling) and lightly blurred: the
   *work image* every candidate is scored on.
2. Initial state: a palette of ``initial_colours`` (fewer for a tiny budget) fitted by k-means in
   YCoCg, then vertices added greedily, in rounds, at the free grid points where the current
   rendering errs most, up to ``initial_vertices`` (by default about one per byte of the budget:
   :func:`initial_vertices_for_budget`); each vertex takes the palette entry nearest the image
   there. The grid, too, follows the budget (:func:`grid_for_budget`).
3. Hill climbing: each iteration proposes one random move - move a vertex one grid step (weight
   50), add a vertex (20), remove one (25), change a vertex's palette index (25; half of the time
   to the entry nearest the image there), nudge one channel of a palette colour by one step (20),
   add a colour (1), remove the least-used colour (3) - and every 40 iterations of the first half,
   the proposal "each vertex takes the palette entry nearest the image around it". Half of the
   added vertices go near a triangle drawn in proportion to its error. Score =
   channel-weighted squared error on the work image + lambda * bits (the layout's own cost model,
   :func:`~trimesh_decode.bitstream.estimate_bits`, its palette part kept while a move leaves the
   palette alone). A move is kept when its score is below the best so far plus a tolerance that
   shrinks linearly to zero (for budgets up to 100 B; above, none: :func:`tolerance_for_budget`).
4. Lambda follows the byte target: it is nudged every 32 iterations (firmly in the last 30 % of the
   run) towards the estimated size that lands inside the window.
5. Finally the exact size from the real coder is brought into ``[target - tolerance, target]``
   (when the image allows it) by greedy single-vertex removals or additions.

Deterministic for a seed (numba's own generator, seeded per call); :func:`encode_images` runs
images in parallel processes. The search loop is compiled with numba. A move that changes the
points is first scored by a local estimate (:func:`_local_error`: the triangles it can touch cut
out and triangulated again by themselves; exact for about 97% of moves, the rest differ where
co-circular points tie); only a move the estimate would keep is triangulated whole
(:func:`~trimesh_decode.triangulate.triangulate_from`, resumed from the saved state before the
first point that changed) and kept on that exact score. Other moves keep the triangles and
re-score only the triangles whose colours changed (a cache of triangle errors). On this VM a
3000-iteration encode took 0.47 s before; 16000 iterations take about 0.45 s now.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
from collections import namedtuple
from typing import Iterable

import numba
import numpy as np
from PIL import Image
from scipy import ndimage

from trimesh_decode import bitstream
from trimesh_decode.bitstream import MAX_COLOURS, MAX_GRID, MAX_VERTICES, Preview, estimate_bits_after, palette_bits
from trimesh_decode.colour import palette_key, palette_keys, rgb_to_ycocg6_1, ycocg6_to_rgb, ycocg6_to_rgb_1
from trimesh_decode.triangulate import (
    SNAP_EVERY,
    _incircle,
    _orient,
    capacity,
    snapshots,
    triangulate_from,
    triangulate_into,
)

__all__ = [
    "EncoderConfig",
    "EncodeResult",
    "MIN_TARGET",
    "encode_image",
    "encode_images",
    "grid_for",
    "grid_for_budget",
    "initial_vertices_for_budget",
    "tolerance_for_budget",
    "work_image",
]

jit = numba.njit(cache=True, nogil=True)
# the climb's per-move helpers: inlined, so that the namedtuples of arrays they take are not
# reference-counted array by array on every call (atomic operations that took a quarter of the time)
inline = numba.njit(cache=True, nogil=True, inline="always")

_MOVE_WEIGHTS = np.array([50.0, 20.0, 25.0, 25.0, 20.0, 1.0, 3.0])  # the spec's proposal weights
_MOVE, _ADD, _REMOVE, _INDEX, _NUDGE, _ADD_COLOUR, _DROP_COLOUR, _REASSIGN = range(8)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Settings of :func:`encode_image`; the defaults are the ones benchmarked on Kodak."""

    grid: int | None = None  # grid points on the image's longer side; None: by the budget (grid_for_budget)
    # 16000: about 0.45 s per 256x256 image on one core of this VM (the local estimate screens the
    # moves); on Kodak's centre squares at 200 B, 21.53 dB by interpolation (6000: 21.21, 20000: 21.54)
    iterations: int = 16000
    work_scale: float = 1.2  # work image size / grid size
    blur_sigma: float = 0.5  # Gaussian blur of the work image, in work pixels
    initial_vertices: int | None = None  # None: by the budget (initial_vertices_for_budget)
    initial_colours: int = 6
    channel_weights: tuple[float, float, float] = (0.3, 0.6, 0.1)  # R, G, B
    # initial acceptance tolerance, relative to the best error; None: by the budget (tolerance_for_budget)
    tolerance: float | None = None
    byte_tolerance: int = 2  # final size in [target - byte_tolerance, target]
    # screen the moves that change the points by a local re-triangulation (_local_error) before the
    # exact evaluation; False: triangulate every candidate whole (the same search, slower)
    local_estimate: bool = True


@dataclasses.dataclass(frozen=True)
class EncodeResult:
    preview: Preview
    data: bytes
    seconds: float
    iterations: int
    work_psnr: float  # PSNR of the interpolation on the work image (what the search optimised)

    @property
    def num_bytes(self) -> int:
        return len(self.data)


MIN_TARGET = 16  # the smallest byte budget (a 2-colour preview of a few vertices)


def grid_for_budget(target_bytes: int) -> int:
    """The grid for a byte budget: about 4.5 sqrt(bytes) points on the longer side, 16 to 64. A
    small budget buys few vertices, and on a coarse grid their positions cost fewer bits (the
    occupancy code spends log2 C(points, vertices)); on Kodak's centre squares, against the fixed
    64: +0.8 dB at 24 B, +0.6 at 60 B, +0.1 at 140 B (and 64 is best from about 200 B)."""
    return int(min(64, max(16, round(4.5 * math.sqrt(target_bytes)))))


def initial_vertices_for_budget(target_bytes: int) -> int:
    """Vertices placed before the climb: about one per byte up to 150 B, then one per 2 bytes more
    (a budget's mesh has about that many; a start far above it spends the climb on removals). On
    Kodak's centre squares, against the former fixed 200: +0.6 dB at 24 B, +0.7 at 48 B, +0.4 at
    100 B, +0.1 at 400 B, the same at 200 B."""
    return target_bytes if target_bytes <= 150 else 150 + (target_bytes - 150) // 2


def tolerance_for_budget(target_bytes: int) -> float:
    """The acceptance tolerance for a byte budget: a little (0.002 of the best error, shrinking to 0)
    up to 100 B, where a mesh of few vertices otherwise sticks in its first local optimum, and none
    (greedy) above. On Kodak's centre squares at 6000 iterations, 0.002 against 0: +0.11 dB at 16 B,
    +0.04 at 24 B, +0.15 at 48 B, +0.07 at 100 B, -0.07 at 150 B; the former 0.003 everywhere was
    0.15 dB behind greedy at 200 B."""
    return 0.002 if target_bytes <= 100 else 0.0


def grid_for(height: int, width: int, grid: int) -> tuple[int, int]:
    """(GW, GH): ``grid`` points on the longer side (no more than its pixels), proportionally
    fewer (>= 2) on the other."""
    if not bitstream.MIN_GRID <= grid <= bitstream.MAX_GRID:
        raise ValueError(f"grid {grid} out of range ({bitstream.MIN_GRID}..{bitstream.MAX_GRID})")
    long_side = max(2, min(grid, max(height, width)))
    if width >= height:
        return long_side, max(2, min(long_side, round(long_side * height / width)))
    return max(2, min(long_side, round(long_side * width / height))), long_side


def work_image(image: np.ndarray, gw: int, gh: int, cfg: EncoderConfig) -> np.ndarray:
    """The reduced, lightly blurred float64 RGB copy the search scores candidates on."""
    ww = max(2, round(cfg.work_scale * gw))
    wh = max(2, round(cfg.work_scale * gh))
    small = np.asarray(Image.fromarray(image).resize((ww, wh), Image.Resampling.BOX), np.float64)
    if cfg.blur_sigma > 0:
        small = ndimage.gaussian_filter(small, sigma=(cfg.blur_sigma, cfg.blur_sigma, 0), mode="nearest")
    return small


# ---------------------------------------------------------------------------------------------
# Compiled core.


@inline
def _pal_rgb(pal, n, out):
    for i in range(n):
        out[i, 0], out[i, 1], out[i, 2] = ycocg6_to_rgb_1(pal[i, 0], pal[i, 1], pal[i, 2])


@jit
def _nearest(rgb, pal_rgb, n, wts):
    """The palette entry (of the first n, in RGB) nearest the colour, by the channel weights."""
    return _nearest_except(rgb, pal_rgb, n, wts, n)


@jit
def _nearest_except(rgb, pal_rgb, n, wts, skip):
    """As :func:`_nearest`, entry ``skip`` left out (-1 if none is left)."""
    best = -1
    bd = 1e300
    for i in range(n):
        if i == skip:
            continue
        d = 0.0
        for c in range(3):
            e = pal_rgb[i, c] - rgb[c]
            d += wts[c] * e * e
        if d < bd:
            bd = d
            best = i
    return best


@jit
def _target_at(tgt, gx, gy, sx, sy, out):
    """Mean of the work image over the 3x3 pixels around the grid point."""
    h, w = tgt.shape[0], tgt.shape[1]
    cx = int(round(gx * sx))
    cy = int(round(gy * sy))
    out[:] = 0.0
    cnt = 0
    for y in range(max(cy - 1, 0), min(cy + 2, h)):
        for x in range(max(cx - 1, 0), min(cx + 2, w)):
            for c in range(3):
                out[c] += tgt[y, x, c]
            cnt += 1
    for c in range(3):
        out[c] /= cnt


# The search's named state, passed to the compiled core as namedtuples (numba reads their fields).
# Target: the work image (H, W, 3) float64 and the channel weights (3,).
Target = namedtuple("Target", ["image", "weights"])
# Layout: a preview as the search edits it. occ (GH, GW): each grid point's palette index, -1 where
# there is no vertex; vx, vy: the non-corner vertices (the first nv are valid, in any order); ci: the
# corners' palette indices (TL, TR, BL, BR); pal: the palette (the first npal rows valid, sorted by
# trimesh_decode.colour.palette_key). nv and npal travel beside it.
Layout = namedtuple("Layout", ["occ", "vx", "vy", "ci", "pal"])
# Scratch: the buffers of evaluations and moves (points in canonical order with their palette
# indices, colours and colour keys, the palette in RGB, triangulation work space, the current
# layout's triangles, an index remap, a colour) and the triangle cache (open addressing: two key
# words, the error, the fill count).
Scratch = namedtuple(
    "Scratch",
    "px py pidx cols ckey pal_rgb tv tn work tv_cur remap colour ck1 ck2 cval cfill terr mv".split(),
)
# Mesh: the current layout's points (canonical order, with colours and colour keys), triangles, their
# neighbours (tn[k, i]: across the edge opposite vertex i) and their errors; n and m are 1-arrays;
# cum: the errors' running sum; vt: a triangle of each point; pid (GH, GW): each grid point's point,
# -1 where none.
# What the local estimate (_local_error) edits a copy of, in thought.
Mesh = namedtuple("Mesh", "px py pidx cols ckey tv tn terr cum n m vt pid".split())
# Local: the local estimate's buffers (its points, their source in the mesh, triangulation space,
# the region's triangles and a flag per mesh triangle) and a Scratch over its points.
Local = namedtuple("Local", "src tv tn work region flag keep s".split())
LOCAL_POINTS = 192  # a local re-triangulation of more points falls back to the whole one
# Schedule: what the climb is asked to do.
Schedule = namedtuple("Schedule", ["iterations", "seed", "lam", "target_bits", "tol0", "move_cdf", "local"])


CACHE_SLOTS = 1 << 13  # triangles remembered by a climb (a mesh of 200 B has about 300)


@jit
def _scratch(cache_slots):
    """Buffers for evaluations; ``cache_slots`` (a power of 2, or 1: no cache) for the triangle cache."""
    cap_pts = MAX_VERTICES + 4
    cap = capacity(cap_pts)
    return Scratch(
        np.zeros(cap_pts, np.int64),
        np.zeros(cap_pts, np.int64),
        np.zeros(cap_pts, np.int64),
        np.zeros((cap_pts, 3)),
        np.zeros(cap_pts, np.int64),
        np.zeros((MAX_COLOURS + 1, 3)),
        np.zeros((cap, 3), np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros(4 * cap + 2 * cap_pts, np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros(MAX_COLOURS + 1, np.int64),
        np.zeros(3),
        np.full(cache_slots, -1, np.int64),
        np.zeros(cache_slots, np.int64),
        np.zeros(cache_slots),
        np.zeros(1, np.int64),
        np.zeros(cap),
        np.full(4, -1, np.int64),
    )


@jit
def _mesh():
    cap_pts = MAX_VERTICES + 4
    cap = capacity(cap_pts)
    return Mesh(
        np.zeros(cap_pts, np.int64),
        np.zeros(cap_pts, np.int64),
        np.zeros(cap_pts, np.int64),
        np.zeros((cap_pts, 3)),
        np.zeros(cap_pts, np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros(cap),
        np.zeros(cap),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
        np.zeros(cap_pts, np.int64),
        np.full((MAX_GRID, MAX_GRID), -1, np.int64),
    )


@jit
def _local(s):
    """Buffers of the local estimate; its Scratch shares ``s``'s triangle cache."""
    n = LOCAL_POINTS + 4
    cap = capacity(n)
    cap_mesh = s.tv.shape[0]
    ls = Scratch(
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros((n, 3)),
        np.zeros(n, np.int64),
        s.pal_rgb,
        s.tv,
        s.tn,
        s.work,
        s.tv_cur,
        s.remap,
        s.colour,
        s.ck1,
        s.ck2,
        s.cval,
        s.cfill,
        np.zeros(cap),
        s.mv,
    )
    return Local(
        np.zeros(n, np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros(4 * cap + 2 * n, np.int64),
        np.zeros(cap_mesh, np.int64),
        np.zeros(cap_mesh, np.int64),
        np.zeros((cap, 3), np.int64),
        ls,
    )


@jit
def _scales(t, lay):
    """Work-image pixels per grid step, (x, y): grid point (gx, gy) sits at (gx sx, gy sy)."""
    gh, gw = lay.occ.shape
    return (t.image.shape[1] - 1) / (gw - 1), (t.image.shape[0] - 1) / (gh - 1)


@inline
def _assign(dst, dst_nv, src, nv, npal):
    """Copy the layout ``src`` (its first nv vertices and npal colours) into ``dst``, which has
    ``dst_nv`` vertices: only the grid points of the two layouts' vertices are written (a layout's
    grid is -1 everywhere else)."""
    for i in range(dst_nv):
        dst.occ[dst.vy[i], dst.vx[i]] = -1
    for i in range(nv):
        dst.occ[src.vy[i], src.vx[i]] = src.occ[src.vy[i], src.vx[i]]
    for i in range(nv):
        dst.vx[i] = src.vx[i]
        dst.vy[i] = src.vy[i]
    for i in range(src.ci.shape[0]):
        dst.ci[i] = src.ci[i]
    for i in range(npal):
        for c in range(3):
            dst.pal[i, c] = src.pal[i, c]


@jit
def _copy(lay):
    return Layout(lay.occ.copy(), lay.vx.copy(), lay.vy.copy(), lay.ci.copy(), lay.pal.copy())


@inline
def _gather(lay, px, py, pidx):
    """Points in canonical order (corners TL, TR, BL, BR, then raster order) with palette indices."""
    gh, gw = lay.occ.shape
    px[0], py[0], pidx[0] = 0, 0, lay.ci[0]
    px[1], py[1], pidx[1] = gw - 1, 0, lay.ci[1]
    px[2], py[2], pidx[2] = 0, gh - 1, lay.ci[2]
    px[3], py[3], pidx[3] = gw - 1, gh - 1, lay.ci[3]
    n = 4
    for y in range(gh):
        for x in range(gw):
            v = lay.occ[y, x]
            if v >= 0:
                px[n] = x
                py[n] = y
                pidx[n] = v
                n += 1
    return n


@jit
def _edge_bias(ux, uy, vx, vy, s1, s2):
    """0 if the pixels exactly on edge u -> v belong to this triangle, else 1. A pixel on an edge
    goes where the pixel moved by an infinitesimal (s1, s2 delta) would lie (delta << 1; s = +1,
    or -1 on the last column or row, so that the move points into the image): the triangle's
    neighbour sees the edge the other way round, so every pixel has exactly one triangle."""
    g1 = (uy - vy) * s1  # the edge function's gradient along the move, first order
    if g1 != 0:
        return 0 if g1 > 0 else 1
    return 0 if (vx - ux) * s2 > 0 else 1


@jit
def _triangle_error(tgt, wts, px, py, cols, a, b, c, gw, gh, errmap, want_map):
    """The weighted squared error of triangle (a, b, c) against the work image over its pixels
    (each pixel has one triangle: exact integer edge tests, ties by :func:`_edge_bias`), written
    into ``errmap`` too when ``want_map``. Coordinates are scaled to integers: pixel x is at
    x (GW - 1), grid point gx at gx (W - 1)."""
    h, w = tgt.shape[0], tgt.shape[1]
    kx, ky = gw - 1, gh - 1
    ax, ay = px[a] * (w - 1), py[a] * (h - 1)
    bx, by = px[b] * (w - 1), py[b] * (h - 1)
    cx, cy = px[c] * (w - 1), py[c] * (h - 1)
    det = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    if det <= 0:
        return 0.0
    t_ab = _edge_bias(ax, ay, bx, by, 1, 1)
    t_bc = _edge_bias(bx, by, cx, cy, 1, 1)
    t_ca = _edge_bias(cx, cy, ax, ay, 1, 1)
    x0 = -(-min(ax, bx, cx) // kx)
    x1 = min(max(ax, bx, cx) // kx, w - 1)
    y0 = -(-min(ay, by, cy) // ky)
    y1 = min(max(ay, by, cy) // ky, h - 1)
    inv = 1.0 / det
    ca0, ca1, ca2 = cols[a, 0], cols[a, 1], cols[a, 2]
    db0, db1, db2 = cols[b, 0] - ca0, cols[b, 1] - ca1, cols[b, 2] - ca2
    dc0, dc1, dc2 = cols[c, 0] - ca0, cols[c, 1] - ca1, cols[c, 2] - ca2
    # per pixel step along a row, each edge function changes by a constant
    gb, gc = (cy - ay) * kx, -(by - ay) * kx
    total = 0.0
    for y in range(y0, y1 + 1):
        dy = y * ky - ay
        eb0 = -ax * (cy - ay) - dy * (cx - ax)  # at x = 0
        ec0 = (bx - ax) * dy + (by - ay) * ax
        ea0 = det - eb0 - ec0
        # the span of x where every edge test holds (exact integer bounds), the last column apart
        last = y == h - 1
        if last:  # the last row: pixels on an edge go where a move upwards takes them
            u_ab, u_bc, u_ca = (
                _edge_bias(ax, ay, bx, by, 1, -1),
                _edge_bias(bx, by, cx, cy, 1, -1),
                _edge_bias(cx, cy, ax, ay, 1, -1),
            )
        else:
            u_ab, u_bc, u_ca = t_ab, t_bc, t_ca
        lo, hi = x0, min(x1, w - 2)
        lo, hi = _clip_span(lo, hi, eb0, gb, u_ca)
        lo, hi = _clip_span(lo, hi, ec0, gc, u_ab)
        lo, hi = _clip_span(lo, hi, ea0, -gb - gc, u_bc)
        hi = max(hi, lo - 1)
        extra = 0
        if x1 == w - 1:  # the last column: pixels on an edge go where a move to the left takes them
            eb, ec, s2 = eb0 + (w - 1) * gb, ec0 + (w - 1) * gc, -1 if last else 1
            if (
                eb >= _edge_bias(cx, cy, ax, ay, -1, s2)
                and ec >= _edge_bias(ax, ay, bx, by, -1, s2)
                and det - eb - ec >= _edge_bias(bx, by, cx, cy, -1, s2)
            ):
                extra = 1
        for j in range(lo, hi + 1 + extra):
            x = j if j <= hi else w - 1
            l1, l2 = (eb0 + x * gb) * inv, (ec0 + x * gc) * inv
            e0 = ca0 + l1 * db0 + l2 * dc0 - tgt[y, x, 0]
            e1 = ca1 + l1 * db1 + l2 * dc1 - tgt[y, x, 1]
            e2 = ca2 + l1 * db2 + l2 * dc2 - tgt[y, x, 2]
            e = wts[0] * e0 * e0 + wts[1] * e1 * e1 + wts[2] * e2 * e2
            total += e
            if want_map:
                errmap[y, x] = e
    return total


@jit
def _clip_span(lo, hi, e0, g, t):
    """[lo, hi] narrowed to the x where e0 + x g >= t."""
    if g > 0:
        lo = max(lo, -((e0 - t) // g))  # ceil((t - e0) / g)
    elif g < 0:
        hi = min(hi, (e0 - t) // -g)  # floor((e0 - t) / -g)
    elif e0 < t:
        hi = lo - 1
    return lo, hi


@inline
def _render_error(t, s, tv, m, gw, gh, errmap):
    """The weighted squared error of the ``m`` triangles ``tv`` against the work image (and, when
    ``errmap`` has the work image's size, each pixel's error in it). Each triangle's error comes
    from the cache when the same triangle (points and colours) was scored before: a move changes
    only the triangles around it."""
    tgt, wts, px, py, cols = t.image, t.weights, s.px, s.py, s.cols
    h, w = tgt.shape[0], tgt.shape[1]
    want_map = errmap.shape[0] == h and errmap.shape[1] == w
    slots = s.ck1.shape[0]
    use_cache = slots > 1 and not want_map
    if use_cache and 2 * s.cfill[0] > slots:  # half full: start again
        s.ck1[:] = -1
        s.cfill[0] = 0
    mask = slots - 1
    total = 0.0
    for k in range(m):
        a, b, c = tv[k, 0], tv[k, 1], tv[k, 2]
        if not use_cache:
            e = _triangle_error(tgt, wts, px, py, cols, a, b, c, gw, gh, errmap, want_map)
            s.terr[k] = e
            total += e
            continue
        # the same rotation of the triangle every time (its lowest point first), so that a hit
        # and a miss give the same value
        ka, kb, kc = s.py[a] * 256 + s.px[a], s.py[b] * 256 + s.px[b], s.py[c] * 256 + s.px[c]
        if kb < ka and kb < kc:
            a, b, c, ka, kb, kc = b, c, a, kb, kc, ka
        elif kc < ka and kc < kb:
            a, b, c, ka, kb, kc = c, a, b, kc, ka, kb
        k1 = ka | (kb << 16) | (kc << 32)
        k2 = s.ckey[a] | (s.ckey[b] << 18) | (s.ckey[c] << 36)
        hsh = k1 * np.int64(-7046029254386353131) ^ k2 * np.int64(-4658895280553007687)
        i = (hsh ^ (hsh >> 29)) & mask
        while s.ck1[i] != -1 and (s.ck1[i] != k1 or s.ck2[i] != k2):
            i = (i + 1) & mask
        if s.ck1[i] == -1:
            s.ck1[i], s.ck2[i] = k1, k2
            s.cval[i] = _triangle_error(tgt, wts, px, py, cols, a, b, c, gw, gh, errmap, want_map)  # (False; typed)
            s.cfill[0] += 1
        total += s.cval[i]
        s.terr[k] = s.cval[i]
    return total


@inline
def _evaluate(t, lay, nv, npal, s, errmap, out, head, moved, m_cur, snaps, smeta, start, kx, ky):
    """Error and bits of a layout: out = [error, bits, the palette part of the bits, triangles].
    ``head``: that part when the caller knows it (the palette did not change), else negative.
    ``moved``: whether the points differ from the current layout's, whose ``m_cur`` triangles are
    in ``s.tv_cur`` (if not, they are not triangulated again); then the triangulation resumes from
    the saved state (``snaps``, ``smeta``: :func:`~trimesh_decode.triangulate.triangulate_from`)
    before point ``start``, the first that differs; if not, the points are ``kx``, ``ky`` (in
    canonical order: the current mesh's), not gathered from the grid again. False if the layout
    cannot be triangulated."""
    gh, gw = lay.occ.shape
    if moved:
        n = _gather(lay, s.px, s.py, s.pidx)
    else:
        n = nv + 4
        for i in range(4):
            s.px[i], s.py[i], s.pidx[i] = kx[i], ky[i], lay.ci[i]
        for i in range(4, n):
            s.px[i], s.py[i] = kx[i], ky[i]
            s.pidx[i] = lay.occ[ky[i], kx[i]]
    if moved:
        tv = s.tv
        m = triangulate_from(s.px, s.py, n, s.tv, s.tn, s.work, snaps, smeta, start)
        if m < 0:
            return False
    else:
        tv, m = s.tv_cur, m_cur
    _pal_rgb(lay.pal, npal, s.pal_rgb)
    for i in range(n):
        q = s.pidx[i]
        for c in range(3):
            s.cols[i, c] = s.pal_rgb[q, c]
        s.ckey[i] = palette_key(lay.pal[q, 0], lay.pal[q, 1], lay.pal[q, 2])  # 18 bits, one per colour
    out[0] = _render_error(t, s, tv, m, gw, gh, errmap)
    if head < 0:
        head = palette_bits(gw, gh, lay.pal, npal)
    out[1] = estimate_bits_after(head, gw, gh, npal, lay.ci, s.pidx[4:], n - 4)
    out[2] = head
    out[3] = m
    return True


@inline
def _evaluate_whole(t, lay, nv, npal, s, errmap, out, moved):
    """``_evaluate`` of a layout triangulated from the start (no saved state, no current mesh)."""
    return _evaluate(
        t,
        lay,
        nv,
        npal,
        s,
        errmap,
        out,
        -1.0,
        moved,
        np.int64(0),
        np.empty((0, 0), np.int64),
        np.zeros((0, 4), np.int64),
        np.int64(4),
        s.px,
        s.py,
    )  # (typed: as in _climb)


@inline
def _keep_triangles(s, m):
    """The candidate's triangles become the current layout's."""
    for k in range(m):
        for i in range(3):
            s.tv_cur[k, i] = s.tv[k, i]


@inline
def _keep_mesh(s, mesh, n, m, moved):
    """The evaluated candidate (its points in ``s``, its triangles in ``s.tv_cur``; ``s.tn`` when
    ``moved``) becomes the current mesh."""
    for i in range(mesh.n[0]):
        mesh.pid[mesh.py[i], mesh.px[i]] = -1
    mesh.n[0], mesh.m[0] = n, m
    for i in range(n):
        mesh.pid[s.py[i], s.px[i]] = i
        mesh.px[i], mesh.py[i], mesh.pidx[i], mesh.ckey[i] = s.px[i], s.py[i], s.pidx[i], s.ckey[i]
        for c in range(3):
            mesh.cols[i, c] = s.cols[i, c]
    acc = 0.0
    for k in range(m):
        mesh.terr[k] = s.terr[k]
        acc += s.terr[k]
        mesh.cum[k] = acc
        for i in range(3):
            mesh.tv[k, i] = s.tv_cur[k, i]
            mesh.vt[s.tv_cur[k, i]] = k
            if moved:
                mesh.tn[k, i] = s.tn[k, i]


@inline
def _inside(px, py, tv, k, x, y):
    """Whether (x, y) lies in triangle k (positively oriented; its border included)."""
    a, b, c = tv[k, 0], tv[k, 1], tv[k, 2]
    return (
        _orient(px[a], py[a], px[b], py[b], x, y) >= 0
        and _orient(px[b], py[b], px[c], py[c], x, y) >= 0
        and _orient(px[c], py[c], px[a], py[a], x, y) >= 0
    )


@inline
def _splice(mesh, ox, oy, nx, ny, q, pidx):
    """The palette indices of the current mesh's points in canonical order with the point at
    (ox, oy) taken out and one at (nx, ny) of index ``q`` put in (either absent: -1), into ``pidx``;
    returns their count and the first place where the points differ from the mesh's. (What
    :func:`_gather` gives for the candidate, without a scan of the grid.)"""
    n, px, py = mesh.n[0], mesh.px, mesh.py
    for i in range(4):
        pidx[i] = mesh.pidx[i]
    j = 4
    first = -1
    put = nx < 0
    for i in range(4, n):
        if not put and (py[i] > ny or (py[i] == ny and px[i] > nx)):
            first = j if first < 0 else first
            pidx[j] = q
            j += 1
            put = True
        if px[i] == ox and py[i] == oy:
            first = j if first < 0 else first
            continue
        pidx[j] = mesh.pidx[i]
        j += 1
    if not put:
        first = j if first < 0 else first
        pidx[j] = q
        j += 1
    return j, first


@inline
def _walk(px, py, tv, tn, m, t, x, y):
    """A triangle of the mesh that holds (x, y): a visibility walk from triangle ``t`` (it ends on a
    Delaunay mesh; a scan of them all if it ever runs long); -1 if none does."""
    for _ in range(4 * m + 8):
        moved = False
        for i in range(3):
            a, b = tv[t, (i + 1) % 3], tv[t, (i + 2) % 3]
            if _orient(px[a], py[a], px[b], py[b], x, y) < 0:
                if tn[t, i] < 0:
                    return -1
                t = tn[t, i]
                moved = True
                break
        if not moved:
            return t
    for k in range(m):  # pragma: no cover - a walk does not cycle on a Delaunay mesh
        if _inside(px, py, tv, k, x, y):
            return k
    return -1


@inline
def _local_error(t, mesh, loc, total, ox, oy, nx, ny, colour, ckey, gw, gh, errmap):
    """The error (``total`` now) of the current mesh with its vertex at (ox, oy) removed and a vertex at (nx, ny)
    of the given colour added (either absent: -1), estimated without triangulating everything: the
    triangles a change can touch (the removed vertex's star; the triangles whose circumcircle holds
    the new point, reached from it) are cut out, their points triangulated again by themselves, and
    the new triangles that tile the hole exactly replace the old ones. Negative where that cannot
    be done (the hole is not tiled, too many points): the caller triangulates everything.

    Where points are co-circular the local Delaunay triangulation may pick other diagonals than the
    whole one (whose ties follow the insertion order), so this is an estimate: the climb takes a
    move on the exact evaluation only (``_evaluate``), and uses this one to skip the moves that
    would not be taken."""
    px, py, tv, tn = mesh.px, mesh.py, mesh.tv, mesh.tn
    m = mesh.m[0]
    region, flag = loc.region, loc.flag
    nr = 0
    a = -1
    t0 = 0
    if ox >= 0:
        a = mesh.pid[oy, ox]
        if a < 4:
            return -1.0
        t0 = mesh.vt[a]
        region[0] = t0
        flag[t0] = 1
        nr = 1
        q = 0
        while q < nr:  # the star: the triangles around the vertex, neighbour by neighbour
            c = region[q]
            q += 1
            for i in range(3):
                nb = tn[c, i]
                if nb >= 0 and flag[nb] == 0 and (tv[nb, 0] == a or tv[nb, 1] == a or tv[nb, 2] == a):
                    region[nr] = nb
                    flag[nb] = 1
                    nr += 1
    if nx >= 0:
        t0 = _walk(px, py, tv, tn, m, t0, nx, ny)
        if t0 < 0:
            for k in range(nr):
                flag[region[k]] = 0
            return -1.0
        if flag[t0] == 0:
            region[nr] = t0
            flag[t0] = 1
            nr += 1
        q = 0
        while q < nr:  # grow through neighbours whose circumcircle holds the new point strictly
            c = region[q]
            q += 1
            for i in range(3):
                nb = tn[c, i]
                if nb >= 0 and flag[nb] == 0:
                    v0, v1, v2 = tv[nb, 0], tv[nb, 1], tv[nb, 2]
                    if _incircle(px[v0], py[v0], px[v1], py[v1], px[v2], py[v2], nx, ny) > 0:
                        region[nr] = nb
                        flag[nb] = 1
                        nr += 1
    # the region's points (not the removed one), each once, and the new point; in canonical order
    # (raster order) after four corners of a box around them all
    ls, src = loc.s, loc.src
    npt = 4
    x0, y0, x1, y1 = 1 << 20, 1 << 20, -(1 << 20), -(1 << 20)
    area = 0
    for r in range(nr):
        k = region[r]
        area += _orient(px[tv[k, 0]], py[tv[k, 0]], px[tv[k, 1]], py[tv[k, 1]], px[tv[k, 2]], py[tv[k, 2]])
        for i in range(3):
            v = tv[k, i]
            if v == a:
                continue
            dup = False
            for j in range(4, npt):
                if src[j] == v:
                    dup = True
                    break
            if dup:
                continue
            if npt >= LOCAL_POINTS + 3:
                for j in range(nr):
                    flag[region[j]] = 0
                return -1.0
            src[npt] = v
            npt += 1
    if nx >= 0:
        src[npt] = -1
        npt += 1
    for j in range(nr):
        flag[region[j]] = 0
    for j in range(4, npt):  # insertion sort by (y, x)
        v = src[j]
        kx, ky = (nx, ny) if v < 0 else (px[v], py[v])
        i = j
        while i > 4:
            u = src[i - 1]
            ux, uy = (nx, ny) if u < 0 else (px[u], py[u])
            if uy < ky or (uy == ky and ux < kx):
                break
            src[i] = u
            i -= 1
        src[i] = v
    lpx, lpy = ls.px, ls.py
    for j in range(4, npt):
        v = src[j]
        if v < 0:
            lpx[j], lpy[j], ls.ckey[j] = nx, ny, ckey
            for c in range(3):
                ls.cols[j, c] = colour[c]
        else:
            lpx[j], lpy[j], ls.ckey[j] = px[v], py[v], mesh.ckey[v]
            for c in range(3):
                ls.cols[j, c] = mesh.cols[v, c]
        x0, y0 = min(x0, lpx[j]), min(y0, lpy[j])
        x1, y1 = max(x1, lpx[j]), max(y1, lpy[j])
    far = 4096  # corners far out: no circumcircle of a triangle of the hole holds one
    lpx[0], lpy[0], lpx[1], lpy[1] = x0 - far, y0 - far, x1 + far, y0 - far
    lpx[2], lpy[2], lpx[3], lpy[3] = x0 - far, y1 + far, x1 + far, y1 + far
    lm = triangulate_into(lpx, lpy, npt, loc.tv, loc.tn, loc.work)
    if lm < 0:
        return -1.0
    # the new triangles inside the hole (by their centroid): they must cover its area exactly
    keep, nk, got = loc.keep, 0, 0
    for k in range(lm):
        i, j, w = loc.tv[k, 0], loc.tv[k, 1], loc.tv[k, 2]
        if i < 4 or j < 4 or w < 4:
            continue
        cx, cy = lpx[i] + lpx[j] + lpx[w], lpy[i] + lpy[j] + lpy[w]
        for r in range(nr):
            h = region[r]
            va, vb, vc = tv[h, 0], tv[h, 1], tv[h, 2]
            if (
                _orient(3 * px[va], 3 * py[va], 3 * px[vb], 3 * py[vb], cx, cy) >= 0
                and _orient(3 * px[vb], 3 * py[vb], 3 * px[vc], 3 * py[vc], cx, cy) >= 0
                and _orient(3 * px[vc], 3 * py[vc], 3 * px[va], 3 * py[va], cx, cy) >= 0
            ):
                keep[nk, 0], keep[nk, 1], keep[nk, 2] = i, j, w
                nk += 1
                got += _orient(lpx[i], lpy[i], lpx[j], lpy[j], lpx[w], lpy[w])
                break
    if got != area:
        return -1.0
    old = 0.0
    for r in range(nr):
        old += mesh.terr[region[r]]
    return max(total - old + _render_error(t, ls, keep, nk, gw, gh, errmap), 0.0)


@jit
def _sort_palette(lay, n, remap):
    """Sort the palette by (Cg, Y, Co), remapping indices. False if two colours are equal."""
    pal, occ, ci = lay.pal, lay.occ, lay.ci
    gh, gw = occ.shape
    keys = np.empty(n, np.int64)
    order = np.empty(n, np.int64)
    for i in range(n):  # insertion sort of at most MAX_COLOURS keys (np.argsort compiles for seconds)
        keys[i] = palette_key(pal[i, 0], pal[i, 1], pal[i, 2])
        j = i
        while j > 0 and keys[order[j - 1]] > keys[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i
    for j in range(1, n):
        if keys[order[j]] == keys[order[j - 1]]:
            return False
    tmp = pal[:n].copy()
    for j in range(n):
        remap[order[j]] = j
        for c in range(3):
            pal[j, c] = tmp[order[j], c]
    for k in range(4):
        ci[k] = remap[ci[k]]
    for y in range(gh):
        for x in range(gw):
            if occ[y, x] >= 0:
                occ[y, x] = remap[occ[y, x]]
    return True


@jit
def _is_corner(x, y, gw, gh):
    return (x == 0 or x == gw - 1) and (y == 0 or y == gh - 1)


# The moves. Each edits the layout in place and returns (applied, nv, npal); a move that does not
# apply leaves the layout as a candidate to be discarded.


@inline
def _move_vertex(lay, nv, npal, s):
    """A vertex steps to one of its 8 neighbouring grid points."""
    gh, gw = lay.occ.shape
    occ, vx, vy = lay.occ, lay.vx, lay.vy
    if nv == 0:
        return False, nv, npal
    j = np.random.randint(0, nv)
    d = np.random.randint(0, 8)
    dx = (-1, 0, 1, -1, 1, -1, 0, 1)[d]
    dy = (-1, -1, -1, 0, 0, 1, 1, 1)[d]
    x, y = vx[j] + dx, vy[j] + dy
    if x < 0 or y < 0 or x >= gw or y >= gh or _is_corner(x, y, gw, gh) or occ[y, x] >= 0:
        return False, nv, npal
    occ[y, x] = occ[vy[j], vx[j]]
    occ[vy[j], vx[j]] = -1
    s.mv[0], s.mv[1], s.mv[2], s.mv[3] = vx[j], vy[j], x, y
    vx[j], vy[j] = x, y
    return True, nv, npal


@inline
def _by_error(mesh):
    """A triangle of the mesh drawn in proportion to its error (-1 if there is no error)."""
    m = mesh.m[0]
    if m == 0 or mesh.cum[m - 1] <= 0:
        return -1
    r = np.random.random() * mesh.cum[m - 1]
    lo, hi = 0, m - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if mesh.cum[mid] < r:
            lo = mid + 1
        else:
            hi = mid
    return lo


@inline
def _add_vertex(t, lay, nv, npal, s, sx, sy, mesh):
    """A vertex at a random free grid point, with the palette colour nearest the image there. Half
    of the time the point is drawn from the box around a triangle of the current ``mesh`` picked
    in proportion to its error (where a vertex is likelier to help)."""
    gh, gw = lay.occ.shape
    if nv >= MAX_VERTICES or nv >= gw * gh - 4:
        return False, nv, npal
    k = _by_error(mesh) if np.random.random() < 0.5 else -1
    if k >= 0:
        a, b, c = mesh.tv[k, 0], mesh.tv[k, 1], mesh.tv[k, 2]
        px, py = mesh.px, mesh.py
        x = np.random.randint(min(px[a], px[b], px[c]), max(px[a], px[b], px[c]) + 1)
        y = np.random.randint(min(py[a], py[b], py[c]), max(py[a], py[b], py[c]) + 1)
    else:
        x = np.random.randint(0, gw)
        y = np.random.randint(0, gh)
    if _is_corner(x, y, gw, gh) or lay.occ[y, x] >= 0:
        return False, nv, npal
    _target_at(t.image, x, y, sx, sy, s.colour)
    lay.occ[y, x] = _nearest(s.colour, s.pal_rgb, npal, t.weights)
    lay.vx[nv], lay.vy[nv] = x, y
    s.mv[0], s.mv[1], s.mv[2], s.mv[3] = -1, -1, x, y
    return True, nv + 1, npal


@inline
def _remove_vertex(lay, nv, npal, s):
    if nv == 0:
        return False, nv, npal
    j = np.random.randint(0, nv)
    s.mv[0], s.mv[1], s.mv[2], s.mv[3] = lay.vx[j], lay.vy[j], -1, -1
    lay.occ[lay.vy[j], lay.vx[j]] = -1
    lay.vx[j], lay.vy[j] = lay.vx[nv - 1], lay.vy[nv - 1]
    return True, nv - 1, npal


@inline
def _change_index(t, lay, nv, npal, s, sx, sy):
    """A vertex (or a corner) takes another palette entry: half of the time the one nearest the image
    around it (other than its own), else any other."""
    j = np.random.randint(-4, nv)
    new = np.random.randint(0, npal - 1)  # an index among the npal - 1 others
    if np.random.random() < 0.5:
        gh, gw = lay.occ.shape
        if j < 0:
            k = j + 4  # TL, TR, BL, BR
            x, y, cur = (0 if k % 2 == 0 else gw - 1), (0 if k < 2 else gh - 1), lay.ci[k]
        else:
            x, y = lay.vx[j], lay.vy[j]
            cur = lay.occ[y, x]
        _target_at(t.image, x, y, sx, sy, s.colour)
        near = _nearest_except(s.colour, s.pal_rgb, npal, t.weights, cur)
        new = near if near < cur else near - 1
    if j < 0:
        cur = lay.ci[j + 4]
        lay.ci[j + 4] = new if new < cur else new + 1
    else:
        cur = lay.occ[lay.vy[j], lay.vx[j]]
        lay.occ[lay.vy[j], lay.vx[j]] = new if new < cur else new + 1
    return True, nv, npal


@inline
def _nudge_colour(lay, nv, npal, s):
    """One channel of one palette entry moves by one level (the palette is sorted again)."""
    i = np.random.randint(0, npal)
    c = np.random.randint(0, 3)
    step = 1 if np.random.random() < 0.5 else -1
    v = lay.pal[i, c] + step
    if v < 0 or v > 63:
        return False, nv, npal
    lay.pal[i, c] = v
    if not _sort_palette(lay, npal, s.remap):
        return False, nv, npal
    return True, nv, npal


@inline
def _add_colour(t, lay, nv, npal, s, sx, sy):
    """A new palette entry: the image's colour at a random vertex, which takes it."""
    if npal >= MAX_COLOURS or nv == 0:
        return False, nv, npal
    j = np.random.randint(0, nv)
    _target_at(t.image, lay.vx[j], lay.vy[j], sx, sy, s.colour)
    r, g, b = int(round(s.colour[0])), int(round(s.colour[1])), int(round(s.colour[2]))
    lay.pal[npal, 0], lay.pal[npal, 1], lay.pal[npal, 2] = rgb_to_ycocg6_1(r, g, b)
    lay.occ[lay.vy[j], lay.vx[j]] = npal
    if not _sort_palette(lay, npal + 1, s.remap):
        return False, nv, npal
    return True, nv, npal + 1


@inline
def _drop_colour(t, lay, nv, npal, s):
    """The least used palette entry goes; its users move to the nearest remaining colour."""
    if npal <= 2:
        return False, nv, npal
    occ, vx, vy, ci, pal, remap, pal_rgb, wts = lay.occ, lay.vx, lay.vy, lay.ci, lay.pal, s.remap, s.pal_rgb, t.weights
    use = np.zeros(npal, np.int64)
    for k in range(4):
        use[ci[k]] += 1
    for j in range(nv):
        use[occ[vy[j], vx[j]]] += 1
    drop = np.argmin(use)
    for c in range(3):
        s.colour[c] = pal_rgb[drop, c]
    best = _nearest_except(s.colour, pal_rgb, npal, wts, drop)
    for i in range(npal):
        remap[i] = i if i < drop else i - 1
    remap[drop] = best if best < drop else best - 1
    for i in range(drop, npal - 1):
        for c in range(3):
            pal[i, c] = pal[i + 1, c]
    for k in range(4):
        ci[k] = remap[ci[k]]
    for j in range(nv):
        occ[vy[j], vx[j]] = remap[occ[vy[j], vx[j]]]
    return True, nv, npal - 1


@inline
def _reassign(t, lay, nv, npal, s, sx, sy):
    """Every vertex takes the palette entry nearest the image around it."""
    gh, gw = lay.occ.shape
    changed = False
    for k in range(4):
        x = 0 if k % 2 == 0 else gw - 1
        y = 0 if k < 2 else gh - 1
        _target_at(t.image, x, y, sx, sy, s.colour)
        best = _nearest(s.colour, s.pal_rgb, npal, t.weights)
        if best != lay.ci[k]:
            lay.ci[k] = best
            changed = True
    for j in range(nv):
        _target_at(t.image, lay.vx[j], lay.vy[j], sx, sy, s.colour)
        best = _nearest(s.colour, s.pal_rgb, npal, t.weights)
        if best != lay.occ[lay.vy[j], lay.vx[j]]:
            lay.occ[lay.vy[j], lay.vx[j]] = best
            changed = True
    return changed, nv, npal


@inline
def _propose(kind, t, lay, nv, npal, s, sx, sy, mesh):
    """Apply one random move of the given kind to the candidate ``lay`` in place."""
    if kind == _MOVE:
        return _move_vertex(lay, nv, npal, s)
    if kind == _ADD:
        return _add_vertex(t, lay, nv, npal, s, sx, sy, mesh)
    if kind == _REMOVE:
        return _remove_vertex(lay, nv, npal, s)
    if kind == _INDEX:
        return _change_index(t, lay, nv, npal, s, sx, sy)
    if kind == _NUDGE:
        return _nudge_colour(lay, nv, npal, s)
    if kind == _ADD_COLOUR:
        return _add_colour(t, lay, nv, npal, s, sx, sy)
    if kind == _DROP_COLOUR:
        return _drop_colour(t, lay, nv, npal, s)
    return _reassign(t, lay, nv, npal, s, sx, sy)


@jit
def _climb(t, lay, nv, npal, schedule, errmap):
    """The hill climb. ``lay`` is updated in place to the best layout found; returns
    (nv, npal, lam, error, bits)."""
    np.random.seed(schedule.seed)
    iterations, lam, target_bits, move_cdf = schedule.iterations, schedule.lam, schedule.target_bits, schedule.move_cdf
    s = _scratch(np.int64(CACHE_SLOTS))
    out = np.zeros(4)
    sx, sy = _scales(t, lay)
    cand, best = _copy(lay), _copy(lay)
    snaps, smeta = snapshots(MAX_VERTICES + 4)  # the current triangulation's saved states
    # (cand, as below; typed arguments, not literals: one compiled _evaluate)
    _evaluate(t, cand, nv, npal, s, errmap, out, -1.0, nv >= 0, np.int64(0), snaps, smeta, np.int64(4), s.px, s.py)
    cur_err, cur_bits, cur_head, m_cur = out[0], out[1], out[2], int(out[3])
    _keep_triangles(s, m_cur)
    mesh, loc = _mesh(), _local(s)
    _keep_mesh(s, mesh, nv + 4, m_cur, True)
    gh, gw = lay.occ.shape
    b_nv, b_npal, best_err, best_bits = nv, npal, cur_err, cur_bits
    c_nv = nv  # the candidate's vertices (those _assign clears)
    adjust_from = int(0.7 * iterations)
    for it in range(iterations):
        # lambda follows the byte target
        if it > 0 and it % 32 == 0:
            f = 1.25 if it >= adjust_from else 1.08
            if cur_bits > target_bits:
                lam *= f
            else:
                lam /= f
        kind = _REASSIGN  # every 40th iteration of the first half (every 10th: the same quality, slower)
        if it % 40 != 39 or 2 * it >= iterations:
            r = np.random.random() * move_cdf[-1]
            kind = 0
            while move_cdf[kind] < r:
                kind += 1
        _assign(cand, c_nv, lay, nv, npal)
        c_nv = nv
        _pal_rgb(lay.pal, npal, s.pal_rgb)
        ok, c_nv, c_npal = _propose(kind, t, cand, nv, npal, s, sx, sy, mesh)
        if not ok:
            continue
        # the palette part of the bits is recomputed only when the move changed the palette
        head = -1.0 if kind == _NUDGE or kind == _ADD_COLOUR or kind == _DROP_COLOUR else cur_head
        # and the triangulation only when it moved, added or removed a vertex
        moved = kind == _MOVE or kind == _ADD or kind == _REMOVE
        tol = schedule.tol0 * best_err * (1.0 - it / iterations)
        start = 4  # the first point that differs from the current layout's (4: not known)
        if moved and schedule.local:  # a move the local estimate rejects is not evaluated whole
            nx, ny = s.mv[2], s.mv[3]
            q = cand.occ[ny, nx] if nx >= 0 else 0
            ck = palette_key(cand.pal[q, 0], cand.pal[q, 1], cand.pal[q, 2])
            est = _local_error(t, mesh, loc, cur_err, s.mv[0], s.mv[1], nx, ny, s.pal_rgb[q], ck, gw, gh, errmap)
            if est >= 0:
                n, start = _splice(mesh, s.mv[0], s.mv[1], nx, ny, q, s.pidx)
                bits = estimate_bits_after(cur_head, gw, gh, c_npal, cand.ci, s.pidx[4:], n - 4)
                if est + lam * bits >= best_err + lam * best_bits + tol:
                    continue
        ok = _evaluate(t, cand, c_nv, c_npal, s, errmap, out, head, moved, m_cur, snaps, smeta, start, mesh.px, mesh.py)
        score = out[0] + lam * out[1]
        if not ok or score >= best_err + lam * best_bits + tol:
            if moved:  # the states saved after ``start`` are the candidate's
                for c in range((start - 4) // SNAP_EVERY, smeta.shape[0]):
                    smeta[c, 3] = 0
            continue
        _assign(lay, nv, cand, c_nv, c_npal)
        nv, npal = c_nv, c_npal
        cur_err, cur_bits, cur_head = out[0], out[1], out[2]
        if moved:
            m_cur = int(out[3])
            _keep_triangles(s, m_cur)
        _keep_mesh(s, mesh, nv + 4, m_cur, moved)
        if score < best_err + lam * best_bits:
            _assign(best, b_nv, lay, nv, npal)
            b_nv, b_npal, best_err, best_bits = nv, npal, cur_err, cur_bits
    _assign(lay, nv, best, b_nv, b_npal)
    return b_nv, b_npal, lam, best_err, best_bits


@jit
def _error_map(t, lay, nv, npal, errmap):
    s = _scratch(np.int64(1))
    out = np.zeros(4)
    for y in range(errmap.shape[0]):
        for x in range(errmap.shape[1]):
            errmap[y, x] = 0.0
    _evaluate_whole(t, lay, nv, npal, s, errmap, out, nv >= 0)
    return out[0], out[1]


@jit
def _removal_errors(t, lay, nv, npal, out):
    """``out[j]``: the error of the layout without its vertex j (by the local estimate, exact where
    it cannot be made)."""
    s = _scratch(np.int64(CACHE_SLOTS))
    res = np.zeros(4)
    em = np.zeros((1, 1))
    _evaluate_whole(t, lay, nv, npal, s, em, res, nv >= 0)
    m = int(res[3])
    _keep_triangles(s, m)
    mesh, loc = _mesh(), _local(s)
    _keep_mesh(s, mesh, nv + 4, m, True)
    cand, total, c_nv = _copy(lay), res[0], nv
    for j in range(nv):
        e = _local_error(
            t, mesh, loc, total, lay.vx[j], lay.vy[j], -1, -1, s.colour, 0, lay.occ.shape[1], lay.occ.shape[0], em
        )
        if e < 0:
            _assign(cand, c_nv, lay, nv, npal)
            cand.occ[cand.vy[j], cand.vx[j]] = -1
            cand.vx[j], cand.vy[j] = cand.vx[nv - 1], cand.vy[nv - 1]
            c_nv = nv - 1
            _evaluate_whole(t, cand, nv - 1, npal, s, em, res, True)
            e = res[0]
        out[j] = e


@jit
def _greedy_add(t, lay, nv, npal, count, errmap):
    """Add up to ``count`` vertices at the free grid points of largest local error (one round)."""
    tgt, occ = t.image, lay.occ
    h, w = tgt.shape[0], tgt.shape[1]
    gh, gw = occ.shape
    _error_map(t, lay, nv, npal, errmap)
    sx, sy = _scales(t, lay)
    score = np.full(gw * gh, -1.0)
    for y in range(gh):
        for x in range(gw):
            if _is_corner(x, y, gw, gh) or occ[y, x] >= 0:
                continue
            cx = int(round(x * sx))
            cy = int(round(y * sy))
            total = 0.0
            for yy in range(max(cy - 1, 0), min(cy + 2, h)):
                for xx in range(max(cx - 1, 0), min(cx + 2, w)):
                    total += errmap[yy, xx]
            score[y * gw + x] = total
    order = np.argsort(-score)
    pal_rgb = np.zeros((MAX_COLOURS + 1, 3))
    _pal_rgb(lay.pal, npal, pal_rgb)
    colour = np.zeros(3)
    taken = np.zeros((gh, gw), np.bool_)
    added = 0
    for r in range(gw * gh):
        if added >= count or nv >= MAX_VERTICES or nv >= gw * gh - 4:
            break
        p = order[r]
        if score[p] <= 0:
            break
        x, y = p % gw, p // gw
        if taken[y, x]:
            continue
        _target_at(tgt, x, y, sx, sy, colour)
        occ[y, x] = _nearest(colour, pal_rgb, npal, t.weights)
        lay.vx[nv], lay.vy[nv] = x, y
        nv += 1
        added += 1
        for yy in range(max(y - 2, 0), min(y + 3, gh)):
            for xx in range(max(x - 2, 0), min(x + 3, gw)):
                taken[yy, xx] = True
    return nv


# ---------------------------------------------------------------------------------------------
# Python side.


def _kmeans_palette(tgt: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k colours (6-bit YCoCg, sorted, distinct) fitted to the work image by k-means in YCoCg."""
    pix = tgt.reshape(-1, 3)
    r, g, b = pix[:, 0], pix[:, 1], pix[:, 2]
    ycc = np.stack([(1 + 2 * g + r + b) / 16, (256 + r - b) / 8, (512 + 2 * g - r - b) / 16], 1)
    rng = np.random.default_rng(seed)
    centres = ycc[rng.choice(len(ycc), size=min(k, len(ycc)), replace=False)]
    k = len(centres)
    for _ in range(12):
        # |p - c|^2 = |p|^2 - 2 p.c + |c|^2; |p|^2 is the same for every centre
        lab = ((centres * centres).sum(1)[None] - 2.0 * (ycc @ centres.T)).argmin(1)
        count = np.bincount(lab, minlength=k)
        used = count > 0
        for c in range(3):
            centres[used, c] = np.bincount(lab, ycc[:, c], minlength=k)[used] / count[used]
    q = np.clip(np.floor(centres), 0, 63).astype(np.int64)
    q = np.unique(q, axis=0)
    while len(q) < 2:  # a flat image: any second colour
        q = np.unique(
            np.concatenate([q, np.clip(q[:1] + [[1, 0, 0]], 0, 63) if q[0, 0] < 63 else q[:1] - [[1, 0, 0]]]), axis=0
        )
    keys = palette_keys(q)
    return q[np.argsort(keys)]


@dataclasses.dataclass
class _State:
    gw: int
    gh: int
    occ: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    nv: int
    ci: np.ndarray
    pal: np.ndarray
    npal: int

    def preview(self) -> Preview:
        v = np.stack([self.vx[: self.nv], self.vy[: self.nv]], 1)
        idx = self.occ[v[:, 1], v[:, 0]] if self.nv else np.zeros(0, np.int64)
        return Preview.create(self.gw, self.gh, self.pal[: self.npal], self.ci, v, idx)

    def layout(self) -> Layout:
        return Layout(self.occ, self.vx, self.vy, self.ci, self.pal)

    def copy(self) -> "_State":
        return dataclasses.replace(
            self, occ=self.occ.copy(), vx=self.vx.copy(), vy=self.vy.copy(), ci=self.ci.copy(), pal=self.pal.copy()
        )


def _initial_state(tgt, wts, gw, gh, seed: int, colours: int, vertices: int) -> _State:
    pal = np.zeros((MAX_COLOURS + 1, 3), np.int64)
    q = _kmeans_palette(tgt, colours, seed)
    pal[: len(q)] = q
    npal = len(q)
    occ = np.full((gh, gw), -1, np.int64)
    vx = np.zeros(MAX_VERTICES + 1, np.int64)
    vy = np.zeros(MAX_VERTICES + 1, np.int64)
    prgb = ycocg6_to_rgb(q).astype(np.float64)
    h, w = tgt.shape[:2]
    corners = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]
    ci = np.array([int(np.argmin((wts * (prgb - tgt[y, x]) ** 2).sum(1))) for x, y in corners], np.int64)
    errmap = np.zeros((h, w))
    nv = 0
    goal = min(vertices, MAX_VERTICES, gw * gh - 4)
    per_round = max(8, goal // 8)
    while nv < goal:
        new = _greedy_add(Target(tgt, wts), Layout(occ, vx, vy, ci, pal), nv, npal, min(per_round, goal - nv), errmap)
        if new == nv:
            break
        nv = new
    return _State(gw, gh, occ, vx, vy, nv, ci, pal, npal)


def _error_bits(tgt, wts, s: _State) -> tuple[float, float]:
    e, b = _error_map(Target(tgt, wts), s.layout(), s.nv, s.npal, np.zeros(tgt.shape[:2]))
    return float(e), float(b)


def _fit_size(tgt, wts, s: _State, target: int, tol: int) -> tuple[_State, bytes]:
    """Greedy vertex removals / additions until the real size is in [target - tol, target].

    Far from the window several vertices move per round (about one per 2 bytes of distance);
    removals take the vertices whose loss raises the error least.
    """
    data = bitstream.to_bytes(s.preview())
    cap = 1 << 30  # largest batch of additions still allowed (halves on every overshoot)
    for _ in range(400):
        if len(data) > target and s.nv == 0 and s.npal > 2:  # no vertex left to drop: a colour goes
            c = s.copy()
            scratch = _scratch(1)
            _pal_rgb(c.pal, c.npal, scratch.pal_rgb)
            _, _, c.npal = _drop_colour(Target(tgt, wts), c.layout(), c.nv, c.npal, scratch)
            s = c
        elif len(data) > target and s.nv > 0:
            costs = np.empty(s.nv)
            _removal_errors(Target(tgt, wts), s.layout(), s.nv, s.npal, costs)
            drop = set(np.argsort(costs)[: max(1, (len(data) - target) // 3)].tolist())
            keep = [j for j in range(s.nv) if j not in drop]
            c = s.copy()
            for j in drop:
                c.occ[s.vy[j], s.vx[j]] = -1
            c.vx[: len(keep)], c.vy[: len(keep)] = s.vx[keep], s.vy[keep]
            c.nv = len(keep)
            s = c
        elif len(data) < target - tol:
            c = s.copy()
            want = max(1, min(cap, (target - tol // 2 - len(data)) // 3))
            c.nv = _greedy_add(Target(tgt, wts), c.layout(), c.nv, c.npal, want, np.zeros(tgt.shape[:2]))
            if c.nv == s.nv:
                break
            d = bitstream.to_bytes(c.preview())
            if len(d) > target and want == 1:
                break
            if len(d) > target:
                cap = max(1, want // 2)  # too many at once: the next round adds fewer
                continue
            s = c
        else:
            break
        data = bitstream.to_bytes(s.preview())
    return s, data


def encode_image(
    image: np.ndarray, target_bytes: int = 200, seed: int = 0, config: EncoderConfig | None = None
) -> EncodeResult:
    """Encode an RGB uint8 image (H, W, 3) as a preview of about ``target_bytes`` bytes.

    The size lands in ``[target - byte_tolerance, target]`` whenever the image has the detail to
    fill it (a flat image needs fewer bytes and gets them). Deterministic for ``seed``.
    """
    cfg = config or EncoderConfig()
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    if min(img.shape[:2]) < 2:
        raise ValueError(f"image {img.shape[1]}x{img.shape[0]} is too small for a preview (2x2 at least)")
    if not MIN_TARGET <= target_bytes <= bitstream.MAX_BYTES:
        raise ValueError(f"target of {target_bytes} bytes out of range ({MIN_TARGET}..{bitstream.MAX_BYTES})")
    t0 = time.perf_counter()
    gw, gh = grid_for(img.shape[0], img.shape[1], cfg.grid or grid_for_budget(target_bytes))
    tgt = work_image(img, gw, gh, cfg)
    wts = np.asarray(cfg.channel_weights, np.float64)
    wts = wts / wts.sum()
    # a tiny budget starts with fewer colours (each costs about 2 bytes)
    colours = min(cfg.initial_colours, max(2, target_bytes // 8))
    vertices = cfg.initial_vertices if cfg.initial_vertices is not None else initial_vertices_for_budget(target_bytes)
    s = _initial_state(tgt, wts, gw, gh, seed, colours, vertices)
    e0, b0 = _error_bits(tgt, wts, s)
    target_bits = 8.0 * (target_bytes - cfg.byte_tolerance / 2)
    lam = max(e0, 1.0) / max(b0, 1.0) * 0.2
    cdf = np.cumsum(_MOVE_WEIGHTS)
    tol = cfg.tolerance if cfg.tolerance is not None else tolerance_for_budget(target_bytes)
    schedule = Schedule(cfg.iterations, seed, lam, target_bits, tol, cdf, cfg.local_estimate)
    nv, npal, lam, err, bits = _climb(Target(tgt, wts), s.layout(), s.nv, s.npal, schedule, np.zeros((1, 1)))
    s.nv, s.npal = int(nv), int(npal)
    s, data = _fit_size(tgt, wts, s, target_bytes, cfg.byte_tolerance)
    err, _ = _error_bits(tgt, wts, s)
    mse = err / (tgt.shape[0] * tgt.shape[1])
    work_psnr = 10 * math.log10(255.0**2 / max(mse, 1e-12))
    return EncodeResult(bitstream.from_bytes(data), data, time.perf_counter() - t0, cfg.iterations, work_psnr)


def _encode_one(args):
    image, target, seed, cfg = args
    return encode_image(image, target, seed, cfg)


def encode_images(
    images: Iterable[np.ndarray],
    target_bytes: int = 200,
    seed: int = 0,
    config: EncoderConfig | None = None,
    processes: int | None = None,
) -> list[EncodeResult]:
    """Encode many images in parallel processes (image i uses seed ``seed + i``)."""
    jobs = [(np.asarray(im), target_bytes, seed + i, config) for i, im in enumerate(images)]
    processes = processes or os.cpu_count() or 1
    if processes <= 1 or len(jobs) <= 1:
        return [_encode_one(j) for j in jobs]
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold JAX threads
    with ctx.Pool(min(processes, len(jobs))) as pool:
        return pool.map(_encode_one, jobs, chunksize=1)
