"""The stochastic hill-climbing preview encoder (Marwood et al., 2018; ../shared/specs/triangle_preview.md).

1. The image is reduced to about 1.2x the grid size (area resampling) and lightly blurred: the
   *work image* every candidate is scored on.
2. Initial state: a palette of ``initial_colours`` fitted by k-means in YCoCg, then vertices added
   greedily, in rounds, at the free grid points where the current rendering errs most, up to
   ``initial_vertices``; each vertex takes the palette entry nearest the image there.
3. Hill climbing: each iteration proposes one random move - move a vertex one grid step (weight
   50), add a vertex (20), remove one (25), change a vertex's palette index (25), nudge one
   channel of a palette colour by one step (20), add a colour (1), remove the least-used colour
   (3) - and every 10 iterations, the proposal "each vertex takes the palette entry nearest the
   image around it". Score = channel-weighted squared error on the work image + lambda * bits
   (the layout's own cost model, :func:`~trimesh_decode.bitstream.estimate_bits`). A move is kept
   when its score is below the best so far plus a tolerance that shrinks linearly to zero.
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
from typing import Iterable

import numba
import numpy as np
from PIL import Image
from scipy import ndimage

from trimesh_decode import bitstream
from trimesh_decode.bitstream import MAX_COLOURS, MAX_VERTICES, Preview, estimate_bits, ycocg6_to_rgb
from trimesh_decode.triangulate import triangulate_into

__all__ = ["EncoderConfig", "EncodeResult", "encode_image", "encode_images", "grid_for", "work_image"]

jit = numba.njit(cache=True, nogil=True)

_MOVE_WEIGHTS = np.array([50.0, 20.0, 25.0, 25.0, 20.0, 1.0, 3.0])  # the spec's proposal weights
_MOVE, _ADD, _REMOVE, _INDEX, _NUDGE, _ADD_COLOUR, _DROP_COLOUR, _REASSIGN = range(8)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Settings of :func:`encode_image`; the defaults are the ones benchmarked on Kodak."""

    grid: int = 64  # grid points on the image's longer side
    iterations: int = 3000
    work_scale: float = 1.2  # work image size / grid size
    blur_sigma: float = 0.5  # Gaussian blur of the work image, in work pixels
    initial_vertices: int = 200
    initial_colours: int = 6
    channel_weights: tuple[float, float, float] = (0.3, 0.6, 0.1)  # R, G, B
    tolerance: float = 0.003  # initial acceptance tolerance, relative to the best error
    byte_tolerance: int = 6  # final size in [target - byte_tolerance, target]


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
        y, co, cg = pal[i, 0], pal[i, 1], pal[i, 2]
        r = 4 * (y - cg + co)
        g = 4 * (y + cg) - 128
        b = 4 * (y - cg - co) + 256
        out[i, 0] = min(max(r, 0), 255)
        out[i, 1] = min(max(g, 0), 255)
        out[i, 2] = min(max(b, 0), 255)


@jit
def _nearest(rgb, pal_rgb, n, wts):
    best = 0
    bd = 1e300
    for i in range(n):
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


@jit
def _gather(occ, gw, gh, ci, px, py, pidx):
    """Points in canonical order (corners TL, TR, BL, BR, then raster order) with palette indices."""
    px[0], py[0], pidx[0] = 0, 0, ci[0]
    px[1], py[1], pidx[1] = gw - 1, 0, ci[1]
    px[2], py[2], pidx[2] = 0, gh - 1, ci[2]
    px[3], py[3], pidx[3] = gw - 1, gh - 1, ci[3]
    n = 4
    for y in range(gh):
        for x in range(gw):
            v = occ[y, x]
            if v >= 0:
                px[n] = x
                py[n] = y
                pidx[n] = v
                n += 1
    return n


@jit
def _render_error(tgt, wts, sx, sy, px, py, cols, tv, m, owner, stamp, errmap, want_map):
    h, w = tgt.shape[0], tgt.shape[1]
    total = 0.0
    for t in range(m):
        a, b, c = tv[t, 0], tv[t, 1], tv[t, 2]
        ax, ay = px[a] * sx, py[a] * sy
        bx, by = px[b] * sx, py[b] * sy
        cx, cy = px[c] * sx, py[c] * sy
        det = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if det <= 0:
            continue
        inv = 1.0 / det
        x0 = max(int(math.ceil(min(ax, bx, cx) - 1e-9)), 0)
        x1 = min(int(math.floor(max(ax, bx, cx) + 1e-9)), w - 1)
        y0 = max(int(math.ceil(min(ay, by, cy) - 1e-9)), 0)
        y1 = min(int(math.floor(max(ay, by, cy) + 1e-9)), h - 1)
        ca0, ca1, ca2 = cols[a, 0], cols[a, 1], cols[a, 2]
        db0, db1, db2 = cols[b, 0] - ca0, cols[b, 1] - ca1, cols[b, 2] - ca2
        dc0, dc1, dc2 = cols[c, 0] - ca0, cols[c, 1] - ca1, cols[c, 2] - ca2
        for y in range(y0, y1 + 1):
            dy = y - ay
            for x in range(x0, x1 + 1):
                dx = x - ax
                l1 = (dx * (cy - ay) - dy * (cx - ax)) * inv
                l2 = ((bx - ax) * dy - (by - ay) * dx) * inv
                if l1 < -1e-9 or l2 < -1e-9 or l1 + l2 > 1.0 + 1e-9:
                    continue
                p = y * w + x
                if owner[p] == stamp:
                    continue
                owner[p] = stamp
                e0 = ca0 + l1 * db0 + l2 * dc0 - tgt[y, x, 0]
                e1 = ca1 + l1 * db1 + l2 * dc1 - tgt[y, x, 1]
                e2 = ca2 + l1 * db2 + l2 * dc2 - tgt[y, x, 2]
                e = wts[0] * e0 * e0 + wts[1] * e1 * e1 + wts[2] * e2 * e2
                total += e
                if want_map:
                    errmap[y, x] = e
    return total


@jit
def _evaluate(
    tgt,
    wts,
    gw,
    gh,
    occ,
    ci,
    pal,
    npal,
    nv,
    scr_px,
    scr_py,
    scr_idx,
    cols,
    pal_rgb,
    tv,
    tn,
    work,
    owner,
    stamp,
    errmap,
    want_map,
    out,
):
    """Error and bits of a state; out = [error, bits]. Returns False if it cannot be triangulated."""
    n = _gather(occ, gw, gh, ci, scr_px, scr_py, scr_idx)
    m = triangulate_into(scr_px, scr_py, n, tv, tn, work)
    if m < 0:
        return False
    _pal_rgb(pal, npal, pal_rgb)
    for i in range(n):
        for c in range(3):
            cols[i, c] = pal_rgb[scr_idx[i], c]
    sx = (tgt.shape[1] - 1) / (gw - 1)
    sy = (tgt.shape[0] - 1) / (gh - 1)
    out[0] = _render_error(tgt, wts, sx, sy, scr_px, scr_py, cols, tv, m, owner, stamp, errmap, want_map)
    out[1] = estimate_bits(gw, gh, pal, npal, ci, scr_idx[4:], n - 4)
    return True


@jit
def _sort_palette(pal, n, occ, ci, gw, gh, remap):
    """Sort the palette by (Cg, Y, Co), remapping indices. False if two colours are equal."""
    keys = np.empty(n, np.int64)
    for i in range(n):
        keys[i] = (pal[i, 2] << 12) | (pal[i, 0] << 6) | pal[i, 1]
    order = np.argsort(keys)
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


@jit
def _propose(kind, tgt, wts, gw, gh, occ, vx, vy, nv, ci, pal, npal, pal_rgb, remap, tmp3, sx, sy):
    """Apply one random move of the given kind in place. Returns (ok, nv, npal)."""
    if kind == _MOVE:
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
    if kind == _ADD:
        if nv >= MAX_VERTICES or nv >= gw * gh - 4:
            return False, nv, npal
        x = np.random.randint(0, gw)
        y = np.random.randint(0, gh)
        if _is_corner(x, y, gw, gh) or occ[y, x] >= 0:
            return False, nv, npal
        _target_at(tgt, x, y, sx, sy, tmp3)
        occ[y, x] = _nearest(tmp3, pal_rgb, npal, wts)
        vx[nv], vy[nv] = x, y
        return True, nv + 1, npal
    if kind == _REMOVE:
        if nv == 0:
            return False, nv, npal
        j = np.random.randint(0, nv)
        occ[vy[j], vx[j]] = -1
        vx[j], vy[j] = vx[nv - 1], vy[nv - 1]
        return True, nv - 1, npal
    if kind == _INDEX:
        j = np.random.randint(-4, nv)
        new = np.random.randint(0, npal - 1)
        if j < 0:
            cur = ci[j + 4]
            ci[j + 4] = new if new < cur else new + 1
        else:
            cur = occ[vy[j], vx[j]]
            occ[vy[j], vx[j]] = new if new < cur else new + 1
        return True, nv, npal
    if kind == _NUDGE:
        i = np.random.randint(0, npal)
        c = np.random.randint(0, 3)
        step = 1 if np.random.random() < 0.5 else -1
        v = pal[i, c] + step
        if v < 0 or v > 63:
            return False, nv, npal
        pal[i, c] = v
        if not _sort_palette(pal, npal, occ, ci, gw, gh, remap):
            return False, nv, npal
        return True, nv, npal
    if kind == _ADD_COLOUR:
        if npal >= MAX_COLOURS or nv == 0:
            return False, nv, npal
        j = np.random.randint(0, nv)
        _target_at(tgt, vx[j], vy[j], sx, sy, tmp3)
        r, g, b = int(round(tmp3[0])), int(round(tmp3[1])), int(round(tmp3[2]))
        pal[npal, 0] = min(max((1 + 2 * g + r + b) >> 4, 0), 63)
        pal[npal, 1] = min(max((256 + r - b) >> 3, 0), 63)
        pal[npal, 2] = min(max((512 + 2 * g - r - b) >> 4, 0), 63)
        occ[vy[j], vx[j]] = npal
        if not _sort_palette(pal, npal + 1, occ, ci, gw, gh, remap):
            return False, nv, npal
        return True, nv, npal + 1
    if kind == _DROP_COLOUR:
        if npal <= 2:
            return False, nv, npal
        use = np.zeros(npal, np.int64)
        for k in range(4):
            use[ci[k]] += 1
        for j in range(nv):
            use[occ[vy[j], vx[j]]] += 1
        drop = np.argmin(use)
        # users move to the nearest remaining colour
        for c in range(3):
            tmp3[c] = pal_rgb[drop, c]
        best = -1
        bd = 1e300
        for i in range(npal):
            if i == drop:
                continue
            d = 0.0
            for c in range(3):
                e = pal_rgb[i, c] - tmp3[c]
                d += wts[c] * e * e
            if d < bd:
                bd = d
                best = i
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
    # _REASSIGN: every vertex takes the palette entry nearest the image around it
    changed = False
    for k in range(4):
        x = 0 if k % 2 == 0 else gw - 1
        y = 0 if k < 2 else gh - 1
        _target_at(tgt, x, y, sx, sy, tmp3)
        best = _nearest(tmp3, pal_rgb, npal, wts)
        if best != ci[k]:
            ci[k] = best
            changed = True
    for j in range(nv):
        _target_at(tgt, vx[j], vy[j], sx, sy, tmp3)
        best = _nearest(tmp3, pal_rgb, npal, wts)
        if best != occ[vy[j], vx[j]]:
            occ[vy[j], vx[j]] = best
            changed = True
    return changed, nv, npal


@jit
def _scratch(pixels):
    """Buffers of one evaluation: points, indices, colours, triangulation scratch, pixel owners."""
    cap_pts = MAX_VERTICES + 4
    cap = 5 * cap_pts + 80
    return (
        np.zeros(cap_pts, np.int64),
        np.zeros(cap_pts, np.int64),
        np.zeros(cap_pts, np.int64),
        np.zeros((cap_pts, 3)),
        np.zeros((MAX_COLOURS + 1, 3)),
        np.zeros((cap, 3), np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros(4 * cap + 2 * cap_pts, np.int64),
        np.zeros(pixels, np.int64),
    )


@jit
def _climb(tgt, wts, gw, gh, occ, vx, vy, nv, ci, pal, npal, iterations, seed, lam, target_bits, tol0, move_cdf):
    """The hill climb. Arrays are updated in place to the best state; returns (nv, npal, lam, err, bits)."""
    np.random.seed(seed)
    h, w = tgt.shape[0], tgt.shape[1]
    px, py, pidx, cols, pal_rgb, tv, tn, work, owner = _scratch(h * w)
    errmap = np.zeros((1, 1))
    out = np.zeros(2)
    remap = np.zeros(MAX_COLOURS + 1, np.int64)
    tmp3 = np.zeros(3)
    sx = (w - 1) / (gw - 1)
    sy = (h - 1) / (gh - 1)
    stamp = 1
    _evaluate(
        tgt,
        wts,
        gw,
        gh,
        occ,
        ci,
        pal,
        npal,
        nv,
        px,
        py,
        pidx,
        cols,
        pal_rgb,
        tv,
        tn,
        work,
        owner,
        stamp,
        errmap,
        False,
        out,
    )
    cur_err, cur_bits = out[0], out[1]
    # candidate and best copies
    c_occ, c_vx, c_vy, c_ci, c_pal = occ.copy(), vx.copy(), vy.copy(), ci.copy(), pal.copy()
    b_occ, b_vx, b_vy, b_ci, b_pal = occ.copy(), vx.copy(), vy.copy(), ci.copy(), pal.copy()
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
        kind = _REASSIGN
        if it % 10 != 9:
            r = np.random.random() * move_cdf[-1]
            kind = 0
            while move_cdf[kind] < r:
                kind += 1
        c_occ[:, :] = occ
        c_vx[:nv] = vx[:nv]
        c_vy[:nv] = vy[:nv]
        c_ci[:] = ci
        c_pal[:npal] = pal[:npal]
        _pal_rgb(pal, npal, pal_rgb)
        ok, c_nv, c_npal = _propose(
            kind, tgt, wts, gw, gh, c_occ, c_vx, c_vy, nv, c_ci, c_pal, npal, pal_rgb, remap, tmp3, sx, sy
        )
        if not ok:
            continue
        stamp += 1
        if not _evaluate(
            tgt,
            wts,
            gw,
            gh,
            c_occ,
            c_ci,
            c_pal,
            c_npal,
            c_nv,
            px,
            py,
            pidx,
            cols,
            pal_rgb,
            tv,
            tn,
            work,
            owner,
            stamp,
            errmap,
            False,
            out,
        ):
            continue
        score = out[0] + lam * out[1]
        tol = tol0 * best_err * (1.0 - it / iterations)
        if score < best_err + lam * best_bits + tol:
            occ[:, :] = c_occ
            vx[:c_nv] = c_vx[:c_nv]
            vy[:c_nv] = c_vy[:c_nv]
            ci[:] = c_ci
            pal[:c_npal] = c_pal[:c_npal]
            nv, npal = c_nv, c_npal
            cur_err, cur_bits = out[0], out[1]
            if score < best_err + lam * best_bits:
                b_occ[:, :] = occ
                b_vx[:nv] = vx[:nv]
                b_vy[:nv] = vy[:nv]
                b_ci[:] = ci
                b_pal[:npal] = pal[:npal]
                b_nv, b_npal, best_err, best_bits = nv, npal, cur_err, cur_bits
    occ[:, :] = b_occ
    vx[:b_nv] = b_vx[:b_nv]
    vy[:b_nv] = b_vy[:b_nv]
    ci[:] = b_ci
    pal[:b_npal] = b_pal[:b_npal]
    return b_nv, b_npal, lam, best_err, best_bits


@jit
def _error_map(tgt, wts, gw, gh, occ, ci, pal, npal, nv, errmap):
    px, py, pidx, cols, pal_rgb, tv, tn, work, owner = _scratch(tgt.shape[0] * tgt.shape[1])
    out = np.zeros(2)
    errmap[:, :] = 0.0
    _evaluate(
        tgt, wts, gw, gh, occ, ci, pal, npal, nv, px, py, pidx, cols, pal_rgb, tv, tn, work, owner, 1, errmap, True, out
    )
    return out[0], out[1]


@jit
def _greedy_add(tgt, wts, gw, gh, occ, vx, vy, nv, ci, pal, npal, count, errmap):
    """Add up to ``count`` vertices at the free grid points of largest local error (one round)."""
    h, w = tgt.shape[0], tgt.shape[1]
    _error_map(tgt, wts, gw, gh, occ, ci, pal, npal, nv, errmap)
    sx = (w - 1) / (gw - 1)
    sy = (h - 1) / (gh - 1)
    score = np.full(gw * gh, -1.0)
    for y in range(gh):
        for x in range(gw):
            if _is_corner(x, y, gw, gh) or occ[y, x] >= 0:
                continue
            cx = int(round(x * sx))
            cy = int(round(y * sy))
            s = 0.0
            for yy in range(max(cy - 1, 0), min(cy + 2, h)):
                for xx in range(max(cx - 1, 0), min(cx + 2, w)):
                    s += errmap[yy, xx]
            score[y * gw + x] = s
    order = np.argsort(-score)
    pal_rgb = np.zeros((MAX_COLOURS + 1, 3))
    _pal_rgb(pal, npal, pal_rgb)
    tmp3 = np.zeros(3)
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
        _target_at(tgt, x, y, sx, sy, tmp3)
        occ[y, x] = _nearest(tmp3, pal_rgb, npal, wts)
        vx[nv], vy[nv] = x, y
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
    keys = (q[:, 2] << 12) | (q[:, 0] << 6) | q[:, 1]
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

    def copy(self) -> "_State":
        return dataclasses.replace(
            self, occ=self.occ.copy(), vx=self.vx.copy(), vy=self.vy.copy(), ci=self.ci.copy(), pal=self.pal.copy()
        )


def _initial_state(tgt, wts, gw, gh, cfg: EncoderConfig, seed: int) -> _State:
    pal = np.zeros((MAX_COLOURS + 1, 3), np.int64)
    q = _kmeans_palette(tgt, cfg.initial_colours, seed)
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
    goal = min(cfg.initial_vertices, MAX_VERTICES, gw * gh - 4)
    per_round = max(8, goal // 8)
    while nv < goal:
        new = _greedy_add(tgt, wts, gw, gh, occ, vx, vy, nv, ci, pal, npal, min(per_round, goal - nv), errmap)
        if new == nv:
            break
        nv = new
    return _State(gw, gh, occ, vx, vy, nv, ci, pal, npal)


def _error_bits(tgt, wts, s: _State) -> tuple[float, float]:
    e, b = _error_map(tgt, wts, s.gw, s.gh, s.occ, s.ci, s.pal, s.npal, s.nv, np.zeros(tgt.shape[:2]))
    return float(e), float(b)


def _fit_size(tgt, wts, s: _State, target: int, tol: int) -> tuple[_State, bytes]:
    """Greedy vertex removals / additions until the real size is in [target - tol, target].

    Far from the window several vertices move per round (about one per 2 bytes of distance);
    removals take the vertices whose loss raises the error least.
    """
    data = bitstream.to_bytes(s.preview())
    cap = 1 << 30  # largest batch of additions still allowed (halves on every overshoot)
    for _ in range(400):
        if len(data) > target and s.nv > 0:
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
            c.nv = _greedy_add(
                tgt, wts, c.gw, c.gh, c.occ, c.vx, c.vy, c.nv, c.ci, c.pal, c.npal, want, np.zeros(tgt.shape[:2])
            )
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
    if not 24 <= target_bytes <= bitstream.MAX_BYTES:
        raise ValueError(f"target of {target_bytes} bytes out of range (24..{bitstream.MAX_BYTES})")
    t0 = time.perf_counter()
    gw, gh = grid_for(img.shape[0], img.shape[1], cfg.grid)
    tgt = work_image(img, gw, gh, cfg)
    wts = np.asarray(cfg.channel_weights, np.float64)
    wts = wts / wts.sum()
    s = _initial_state(tgt, wts, gw, gh, cfg, seed)
    e0, b0 = _error_bits(tgt, wts, s)
    target_bits = 8.0 * (target_bytes - cfg.byte_tolerance / 2)
    lam = max(e0, 1.0) / max(b0, 1.0) * 0.2
    cdf = np.cumsum(_MOVE_WEIGHTS)
    nv, npal, lam, err, bits = _climb(
        tgt,
        wts,
        gw,
        gh,
        s.occ,
        s.vx,
        s.vy,
        s.nv,
        s.ci,
        s.pal,
        s.npal,
        cfg.iterations,
        seed,
        lam,
        target_bits,
        cfg.tolerance,
        cdf,
    )
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
