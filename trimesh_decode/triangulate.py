"""Deterministic Delaunay triangulation of a preview's grid vertices (Bowyer-Watson, integer).

Grid points are very often co-circular (every rectangle of four grid points is), so the Delaunay
triangulation is not unique; encoder and decoder must agree on one. The rule here, in exact
integer arithmetic (coordinates <= 255, every determinant fits in int64), is:

* start from the two triangles of the image corners, split along the top-left/bottom-right diagonal;
* insert the other vertices in the order given (raster order for a preview);
* a triangle joins the cavity of a new point only when the point lies *strictly* inside its
  circumcircle; a point exactly on a circumcircle leaves that triangle alone.

The result is a Delaunay triangulation (no vertex strictly inside any triangle's circumcircle),
equal to every other one where no four points are co-circular (so to ``scipy.spatial.Delaunay``
there), and the same on every machine. Compiled with numba: the hill-climbing encoder calls it on
every iteration.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["triangulate", "preview_triangles", "TriangulationError", "max_triangles"]

jit = numba.njit(cache=True, nogil=True)


class TriangulationError(ValueError):
    """Points that cannot be triangulated by this rule (not corners first, duplicates, outside)."""


def max_triangles(n_points: int) -> int:
    """Upper bound on the triangles of ``n_points`` points (2n - 2 - hull points <= 2n - 6 + ...)."""
    return max(2 * n_points - 4, 2)


@jit
def _orient(ax, ay, bx, by, cx, cy):
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


@jit
def _incircle(ax, ay, bx, by, cx, cy, dx, dy):
    """> 0 when d lies strictly inside the circumcircle of the positively oriented (a, b, c)."""
    adx, ady = ax - dx, ay - dy
    bdx, bdy = bx - dx, by - dy
    cdx, cdy = cx - dx, cy - dy
    ad = adx * adx + ady * ady
    bd = bdx * bdx + bdy * bdy
    cd = cdx * cdx + cdy * cdy
    return adx * (bdy * cd - bd * cdy) - ady * (bdx * cd - bd * cdx) + ad * (bdx * cdy - bdy * cdx)


SNAP_EVERY = 16  # points between two saved states of triangulate_from


@jit
def capacity(n_points):
    """Triangle slots that triangulate_into needs for ``n_points`` points (live and dead ones)."""
    return 5 * n_points + 80


@jit
def snapshots(n_points):
    """Buffers for :func:`triangulate_from`'s saved states with up to ``n_points`` points: the
    states (uninitialised: only what is written is read) and their (nt, nlive, last, valid)."""
    cap = capacity(n_points)
    k = max(1, (n_points - 4) // SNAP_EVERY)
    return np.empty((k, 7 * cap), np.int64), np.zeros((k, 4), np.int64)


@jit
def triangulate_into(px, py, n, tv, tn, work):
    """Triangulate points ``(px[i], py[i])``, i < n (int64; 0..3 the corners TL, TR, BL, BR).

    ``tv`` (cap, 3) and ``tn`` (cap, 3) are scratch of capacity ``cap >= 5 n + 16``; ``work`` an
    int64 scratch of length ``>= 4 * cap + 2 * n``. On return ``tv[:m]`` holds the ``m`` live
    triangles, positively oriented; returns ``m``, or -1 for points this rule cannot take.
    """
    return triangulate_from(px, py, n, tv, tn, work, np.empty((0, 0), np.int64), np.zeros((0, 4), np.int64), 4)


@jit
def triangulate_from(px, py, n, tv, tn, work, snaps, meta, start):
    """:func:`triangulate_into`, resumable: the same triangles, in the same order.

    Before inserting point ``4 + c * SNAP_EVERY`` (c >= 1, while there is room in ``snaps``,
    from :func:`snapshots`) the state is saved in ``snaps[c - 1]``. Insertion resumes from the
    latest valid saved state before point ``start``: the caller guarantees that points ``[0,
    start)`` are those of the triangulation that saved it (the hill climb changes a few points of
    the last one). States from points at or after ``n`` are marked invalid. A caller that moves on
    from a triangulation other than the one that saved the states marks those after ``start``
    invalid (``meta[c - 1, 3] = 0``).
    """
    cap = tv.shape[0]
    alive = work[:cap]
    stack = work[cap : 2 * cap]
    cavity = work[2 * cap : 3 * cap]
    mark = work[3 * cap : 4 * cap]
    first_of = work[4 * cap : 4 * cap + n]  # new triangle whose first vertex is v
    second_of = work[4 * cap + n : 4 * cap + 2 * n]  # new triangle whose second vertex is v
    nsnap = snaps.shape[0] if snaps.shape[1] >= 7 * cap else 0
    c = min((start - 4) // SNAP_EVERY, nsnap)
    while c >= 1 and meta[c - 1, 3] == 0:
        c -= 1
    if c >= 1:  # resume from a saved state
        nt, nlive, last = meta[c - 1, 0], meta[c - 1, 1], meta[c - 1, 2]
        row = snaps[c - 1]
        for t in range(nt):
            for i in range(3):
                tv[t, i] = row[7 * t + i]
                tn[t, i] = row[7 * t + 3 + i]
            alive[t] = row[7 * t + 6]
            mark[t] = 0
        p0 = 4 + c * SNAP_EVERY
    else:
        # Corners: TL(0) TR(1) BL(2) BR(3); triangles (0, 1, 3) and (0, 3, 2).
        tv[0, 0], tv[0, 1], tv[0, 2] = 0, 1, 3
        tv[1, 0], tv[1, 1], tv[1, 2] = 0, 3, 2
        # tn[t, i]: the triangle across the edge opposite vertex i.
        tn[0, 0], tn[0, 1], tn[0, 2] = -1, 1, -1
        tn[1, 0], tn[1, 1], tn[1, 2] = -1, -1, 0
        alive[0] = 1
        alive[1] = 1
        mark[0] = 0
        mark[1] = 0
        nt = 2
        nlive = 2
        last = 0
        p0 = 4
    for c in range(max((n - 5) // SNAP_EVERY, 0), nsnap):  # states before points not there
        meta[c, 3] = 0
    for p in range(p0, n):
        if p > 4 and (p - 4) % SNAP_EVERY == 0 and (p - 4) // SNAP_EVERY <= nsnap:
            c = (p - 4) // SNAP_EVERY - 1
            row = snaps[c]
            for t in range(nt):
                for i in range(3):
                    row[7 * t + i] = tv[t, i]
                    row[7 * t + 3 + i] = tn[t, i]
                row[7 * t + 6] = alive[t]
            meta[c, 0], meta[c, 1], meta[c, 2], meta[c, 3] = nt, nlive, last, 1
        stamp = p - 3  # (marks of a resumed state are 0: below every stamp to come)
        x, y = px[p], py[p]
        # Room for the largest possible cavity's new triangles (at most live + 2): compact the
        # dead ones away when it runs short.
        if nt + nlive + 4 > cap:
            nt = _compact(tv, tn, alive, nt, stack)
            last = nt - 1
        # Locate: a visibility walk from the last new triangle (terminates on Delaunay meshes);
        # a scan of every triangle if it ever runs long.
        t = last
        steps = 0
        while True:
            moved = False
            for i in range(3):
                a = tv[t, (i + 1) % 3]
                b = tv[t, (i + 2) % 3]
                if _orient(px[a], py[a], px[b], py[b], x, y) < 0:
                    nb = tn[t, i]
                    if nb >= 0:
                        t = nb
                        moved = True
                        break
                    return -1  # outside the hull: not inside the corners' rectangle
            if not moved:
                break
            steps += 1
            if steps > 4 * nt + 8:
                t = -1
                for s in range(nt):
                    if (
                        alive[s] == 1
                        and _orient(px[tv[s, 0]], py[tv[s, 0]], px[tv[s, 1]], py[tv[s, 1]], x, y) >= 0
                        and _orient(px[tv[s, 1]], py[tv[s, 1]], px[tv[s, 2]], py[tv[s, 2]], x, y) >= 0
                        and _orient(px[tv[s, 2]], py[tv[s, 2]], px[tv[s, 0]], py[tv[s, 0]], x, y) >= 0
                    ):
                        t = s
                        break
                if t < 0:
                    return -1
                break
        # A vertex equal to an existing one cannot be inserted.
        for i in range(3):
            v = tv[t, i]
            if px[v] == x and py[v] == y:
                return -1
        # Cavity: triangles whose circumcircle holds the point strictly (connected, star-shaped).
        ncav = 0
        sp = 0
        stack[sp] = t
        sp += 1
        mark[t] = stamp
        while sp > 0:
            sp -= 1
            c = stack[sp]
            cavity[ncav] = c
            ncav += 1
            for i in range(3):
                nb = tn[c, i]
                if nb >= 0 and mark[nb] != stamp:
                    a0, a1, a2 = tv[nb, 0], tv[nb, 1], tv[nb, 2]
                    if _incircle(px[a0], py[a0], px[a1], py[a1], px[a2], py[a2], x, y) > 0:
                        mark[nb] = stamp
                        stack[sp] = nb
                        sp += 1
        # Re-triangulate: one new triangle (a, b, p) per boundary edge (a, b) of the cavity.
        nnew = 0
        for ci in range(ncav):
            c = cavity[ci]
            for i in range(3):
                nb = tn[c, i]
                if nb >= 0 and mark[nb] == stamp:
                    continue
                a = tv[c, (i + 1) % 3]
                b = tv[c, (i + 2) % 3]
                o = _orient(px[a], py[a], px[b], py[b], x, y)
                if o == 0:
                    continue  # the point lies on this hull edge: the edge splits in two
                if o < 0:
                    return -1  # pragma: no cover - a cavity is star-shaped from its point
                nt_new = nt + nnew
                tv[nt_new, 0], tv[nt_new, 1], tv[nt_new, 2] = a, b, p
                tn[nt_new, 2] = nb
                tn[nt_new, 0] = -1
                tn[nt_new, 1] = -1
                alive[nt_new] = 1
                mark[nt_new] = 0
                if nb >= 0:
                    for j in range(3):
                        if tn[nb, j] == c:
                            tn[nb, j] = nt_new
                first_of[a] = nt_new
                second_of[b] = nt_new
                nnew += 1
        # Link the fan: across (b, p) lies the new triangle starting at b; across (p, a) the one
        # ending at a (none where the fan opens on a hull edge).
        for k in range(nt, nt + nnew):
            a = tv[k, 0]
            b = tv[k, 1]
            f = first_of[b]
            if f >= nt and f < nt + nnew and tv[f, 0] == b:
                tn[k, 0] = f
            s = second_of[a]
            if s >= nt and s < nt + nnew and tv[s, 1] == a:
                tn[k, 1] = s
        for ci in range(ncav):
            alive[cavity[ci]] = 0
        last = nt
        nt += nnew
        nlive += nnew - ncav
    return _compact(tv, tn, alive, nt, stack)


@jit
def _compact(tv, tn, alive, nt, newid):
    m = 0
    for t in range(nt):
        if alive[t] == 1:
            newid[t] = m
            m += 1
        else:
            newid[t] = -1
    for t in range(nt):
        if alive[t] == 1:
            k = newid[t]
            for i in range(3):
                tv[k, i] = tv[t, i]
                nb = tn[t, i]
                tn[k, i] = newid[nb] if nb >= 0 else -1
            alive[k] = 1
    for t in range(m, nt):
        alive[t] = 0
    return m


def scratch(n_points: int):
    """Scratch buffers for :func:`triangulate_into` with up to ``n_points`` points."""
    cap = capacity(n_points)
    return (
        np.zeros((cap, 3), np.int64),
        np.zeros((cap, 3), np.int64),
        np.zeros(4 * cap + 2 * n_points, np.int64),
    )


def triangulate(points) -> np.ndarray:
    """Triangles ``(T, 3)`` int32 of integer points ``(n, 2)`` as ``(x, y)``, positively oriented.

    ``points[:4]`` must be the corners of the bounding rectangle - top-left, top-right,
    bottom-left, bottom-right - and the rest distinct points inside it (on its border allowed),
    inserted in the given order.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 4:
        raise TriangulationError(f"expected (n >= 4, 2) points, got shape {pts.shape}")
    if not np.issubdtype(pts.dtype, np.integer):
        if not np.all(pts == np.round(pts)):
            raise TriangulationError("grid points have integer coordinates")
    pts = pts.astype(np.int64)
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts[:4]
    if not (x0 == x2 < x1 == x3 and y0 == y1 < y2 == y3):
        raise TriangulationError("the first four points must be the corners TL, TR, BL, BR of a rectangle")
    if np.abs(pts).max() > 1 << 14:
        raise TriangulationError("coordinates beyond 16384 would overflow the exact predicates")
    n = len(pts)
    tv, tn, work = scratch(n)
    m = triangulate_into(pts[:, 0].copy(), pts[:, 1].copy(), n, tv, tn, work)
    if m < 0:
        raise TriangulationError("points repeat or lie outside the corners' rectangle")
    return tv[:m].astype(np.int32)


def preview_triangles(preview) -> np.ndarray:
    """The triangles of a :class:`~trimesh_decode.bitstream.Preview`, indexing ``preview.all_points()``."""
    return triangulate(preview.all_points())
