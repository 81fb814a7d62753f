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
   add a colour (1), remove the least-used colour (3) - and every 10 iterations of the first half,
   the proposal "each vertex takes the palette entry nearest the image around it". Score =
   channel-weighted squared error on the work image + lambda * bits (the layout's own cost model,
   :func:`~trimesh_decode.bitstream.estimate_bits`, its palette part kept while a move leaves the
   palette alone). A move is kept when its score is below the best so far plus a tolerance that
   shrinks linearly to zero (for budgets up to 100 B; above, none: :func:`tolerance_for_budget`).
4. Lambda follows the byte target: it is nudged every 32 iterations (firmly in the last 30 % of the
   run) towards the estimated size that lands inside the window.
5. Finally the exact size from the real coder is brought into ``[target - tolerance, target]``
   (when the image allows it) by greedy single-vertex removals or additions.

Deterministic for a seed (numba's own generator, seeded per call); :func:`encode_images` runs
images in parallel processes. The search loop is compiled with numba: it triangulates
(:func:`~trimesh_decode.triangulate.triangulate_into`) and renders the work image on every
iteration.
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
from trimesh_decode.bitstream import MAX_COLOURS, MAX_VERTICES, Preview, estimate_bits_after, palette_bits
from trimesh_decode.colour import palette_key, palette_keys, rgb_to_ycocg6_1, ycocg6_to_rgb, ycocg6_to_rgb_1
from trimesh_decode.triangulate import triangulate_into

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

_MOVE_WEIGHTS = np.array([50.0, 20.0, 25.0, 25.0, 20.0, 1.0, 3.0])  # the spec's proposal weights
_MOVE, _ADD, _REMOVE, _INDEX, _NUDGE, _ADD_COLOUR, _DROP_COLOUR, _REASSIGN = range(8)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Settings of :func:`encode_image`; the defaults are the ones benchmarked on Kodak."""

    grid: int | None = None  # grid points on the image's longer side; None: by the budget (grid_for_budget)
    # 6000: about twice 3000's time, 0.4-0.5 s per 256x256 image on one core of this VM; on Kodak's
    # centre squares at 200 B, 20.94 dB by interpolation (3000: 20.62, 8000: 21.05)
    iterations: int = 6000
    work_scale: float = 1.2  # work image size / grid size
    blur_sigma: float = 0.5  # Gaussian blur of the work image, in work pixels
    initial_vertices: int | None = None  # None: by the budget (initial_vertices_for_budget)
    initial_colours: int = 6
    channel_weights: tuple[float, float, float] = (0.3, 0.6, 0.1)  # R, G, B
    # initial acceptance tolerance, relative to the best error; None: by the budget (tolerance_for_budget)
    tolerance: float | None = None
    byte_tolerance: int = 2  # final size in [target - byte_tolerance, target]


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


@jit
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
    "px py pidx cols ckey pal_rgb tv tn work tv_cur remap colour ck1 ck2 cval cfill".split(),
)
# Schedule: what the climb is asked to do.
Schedule = namedtuple("Schedule", ["iterations", "seed", "lam", "target_bits", "tol0", "move_cdf"])


CACHE_SLOTS = 1 << 13  # triangles remembered by a climb (a mesh of 200 B has about 300)


@jit
def _scratch(cache_slots):
    """Buffers for evaluations; ``cache_slots`` (a power of 2, or 1: no cache) for the triangle cache."""
    cap_pts = MAX_VERTICES + 4
    cap = 5 * cap_pts + 80
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
    )


@jit
def _scales(t, lay):
    """Work-image pixels per grid step, (x, y): grid point (gx, gy) sits at (gx sx, gy sy)."""
    gh, gw = lay.occ.shape
    return (t.image.shape[1] - 1) / (gw - 1), (t.image.shape[0] - 1) / (gh - 1)


@jit
def _assign(dst, src, nv, npal):
    """Copy the layout ``src`` (its first nv vertices and npal colours) into ``dst``."""
    gh, gw = src.occ.shape
    for y in range(gh):
        for x in range(gw):
            dst.occ[y, x] = src.occ[y, x]
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


@jit
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
def _triangle_error(t, s, a, b, c, gw, gh, errmap, want_map):
    """The weighted squared error of triangle (a, b, c) against the work image over its pixels
    (each pixel has one triangle: exact integer edge tests, ties by :func:`_edge_bias`), written
    into ``errmap`` too when ``want_map``. Coordinates are scaled to integers: pixel x is at
    x (GW - 1), grid point gx at gx (W - 1)."""
    tgt, wts = t.image, t.weights
    h, w = tgt.shape[0], tgt.shape[1]
    kx, ky = gw - 1, gh - 1
    ax, ay = s.px[a] * (w - 1), s.py[a] * (h - 1)
    bx, by = s.px[b] * (w - 1), s.py[b] * (h - 1)
    cx, cy = s.px[c] * (w - 1), s.py[c] * (h - 1)
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
    ca0, ca1, ca2 = s.cols[a, 0], s.cols[a, 1], s.cols[a, 2]
    db0, db1, db2 = s.cols[b, 0] - ca0, s.cols[b, 1] - ca1, s.cols[b, 2] - ca2
    dc0, dc1, dc2 = s.cols[c, 0] - ca0, s.cols[c, 1] - ca1, s.cols[c, 2] - ca2
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


@jit
def _render_error(t, s, tv, m, gw, gh, errmap):
    """The weighted squared error of the ``m`` triangles ``tv`` against the work image (and, when
    ``errmap`` has the work image's size, each pixel's error in it). Each triangle's error comes
    from the cache when the same triangle (points and colours) was scored before: a move changes
    only the triangles around it."""
    h, w = t.image.shape[0], t.image.shape[1]
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
            total += _triangle_error(t, s, a, b, c, gw, gh, errmap, want_map)
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
            s.cval[i] = _triangle_error(t, s, a, b, c, gw, gh, errmap, want_map)  # (False; typed, not literal)
            s.cfill[0] += 1
        total += s.cval[i]
    return total


@jit
def _evaluate(t, lay, nv, npal, s, errmap, out, head, moved, m_cur):
    """Error and bits of a layout: out = [error, bits, the palette part of the bits, triangles].
    ``head``: that part when the caller knows it (the palette did not change), else negative.
    ``moved``: whether the points differ from the current layout's, whose ``m_cur`` triangles are
    in ``s.tv_cur`` (if not, they are not triangulated again). False if the layout cannot be
    triangulated."""
    gh, gw = lay.occ.shape
    n = _gather(lay, s.px, s.py, s.pidx)
    if moved:
        tv = s.tv
        m = triangulate_into(s.px, s.py, n, s.tv, s.tn, s.work)
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


@jit
def _keep_triangles(s, m):
    """The candidate's triangles become the current layout's."""
    for k in range(m):
        for i in range(3):
            s.tv_cur[k, i] = s.tv[k, i]


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


@jit
def _move_vertex(lay, nv, npal):
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
    vx[j], vy[j] = x, y
    return True, nv, npal


@jit
def _add_vertex(t, lay, nv, npal, s, sx, sy):
    """A vertex at a random free grid point, with the palette colour nearest the image there."""
    gh, gw = lay.occ.shape
    if nv >= MAX_VERTICES or nv >= gw * gh - 4:
        return False, nv, npal
    x = np.random.randint(0, gw)
    y = np.random.randint(0, gh)
    if _is_corner(x, y, gw, gh) or lay.occ[y, x] >= 0:
        return False, nv, npal
    _target_at(t.image, x, y, sx, sy, s.colour)
    lay.occ[y, x] = _nearest(s.colour, s.pal_rgb, npal, t.weights)
    lay.vx[nv], lay.vy[nv] = x, y
    return True, nv + 1, npal


@jit
def _remove_vertex(lay, nv, npal):
    if nv == 0:
        return False, nv, npal
    j = np.random.randint(0, nv)
    lay.occ[lay.vy[j], lay.vx[j]] = -1
    lay.vx[j], lay.vy[j] = lay.vx[nv - 1], lay.vy[nv - 1]
    return True, nv - 1, npal


@jit
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


@jit
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


@jit
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


@jit
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


@jit
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


@jit
def _propose(kind, t, lay, nv, npal, s, sx, sy):
    """Apply one random move of the given kind to the candidate ``lay`` in place."""
    if kind == _MOVE:
        return _move_vertex(lay, nv, npal)
    if kind == _ADD:
        return _add_vertex(t, lay, nv, npal, s, sx, sy)
    if kind == _REMOVE:
        return _remove_vertex(lay, nv, npal)
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
    # (cand, as below; typed arguments, not literals: one compiled _evaluate)
    _evaluate(t, cand, nv, npal, s, errmap, out, -1.0, nv >= 0, np.int64(0))
    cur_err, cur_bits, cur_head, m_cur = out[0], out[1], out[2], int(out[3])
    _keep_triangles(s, m_cur)
    b_nv, b_npal, best_err, best_bits = nv, npal, cur_err, cur_bits
    adjust_from = int(0.7 * iterations)
    for it in range(iterations):
        # lambda follows the byte target
        if it > 0 and it % 32 == 0:
            f = 1.25 if it >= adjust_from else 1.08
            if cur_bits > target_bits:
                lam *= f
            else:
                lam /= f
        kind = _REASSIGN  # every 10th iteration of the first half (later it almost never helps)
        if it % 10 != 9 or 2 * it >= iterations:
            r = np.random.random() * move_cdf[-1]
            kind = 0
            while move_cdf[kind] < r:
                kind += 1
        _assign(cand, lay, nv, npal)
        _pal_rgb(lay.pal, npal, s.pal_rgb)
        ok, c_nv, c_npal = _propose(kind, t, cand, nv, npal, s, sx, sy)
        if not ok:
            continue
        # the palette part of the bits is recomputed only when the move changed the palette
        head = -1.0 if kind == _NUDGE or kind == _ADD_COLOUR or kind == _DROP_COLOUR else cur_head
        # and the triangulation only when it moved, added or removed a vertex
        moved = kind == _MOVE or kind == _ADD or kind == _REMOVE
        if not _evaluate(t, cand, c_nv, c_npal, s, errmap, out, head, moved, m_cur):
            continue
        score = out[0] + lam * out[1]
        tol = schedule.tol0 * best_err * (1.0 - it / iterations)
        if score < best_err + lam * best_bits + tol:
            _assign(lay, cand, c_nv, c_npal)
            nv, npal = c_nv, c_npal
            cur_err, cur_bits, cur_head = out[0], out[1], out[2]
            if moved:
                m_cur = int(out[3])
                _keep_triangles(s, m_cur)
            if score < best_err + lam * best_bits:
                _assign(best, lay, nv, npal)
                b_nv, b_npal, best_err, best_bits = nv, npal, cur_err, cur_bits
    _assign(lay, best, b_nv, b_npal)
    return b_nv, b_npal, lam, best_err, best_bits


@jit
def _error_map(t, lay, nv, npal, errmap):
    s = _scratch(np.int64(1))
    out = np.zeros(4)
    for y in range(errmap.shape[0]):
        for x in range(errmap.shape[1]):
            errmap[y, x] = 0.0
    _evaluate(t, lay, nv, npal, s, errmap, out, -1.0, nv >= 0, np.int64(0))  # (typed, not literal: as in _climb)
    return out[0], out[1]


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
    for _ in range(12):
        d = ((ycc[:, None] - centres[None]) ** 2).sum(-1)
        lab = d.argmin(1)
        for i in range(len(centres)):
            if np.any(lab == i):
                centres[i] = ycc[lab == i].mean(0)
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
            for j in range(s.nv):
                c = s.copy()
                c.occ[c.vy[j], c.vx[j]] = -1
                c.vx[j], c.vy[j] = c.vx[c.nv - 1], c.vy[c.nv - 1]
                c.nv -= 1
                costs[j], _ = _error_bits(tgt, wts, c)
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
    schedule = Schedule(cfg.iterations, seed, lam, target_bits, tol, cdf)
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
