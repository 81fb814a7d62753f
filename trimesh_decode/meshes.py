"""Triangle meshes as the rasterisers take them: :class:`Mesh`, padded batches of a preview's
grid points, vertex colours and Delaunay triangles. Both rasterisers read it -
:mod:`trimesh_decode.raster` (JAX, batched on any backend) and :mod:`trimesh_decode.raster_cpu`
(numba) - and the training pipeline packs its batches with it."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from trimesh_decode.bitstream import Preview
from trimesh_decode.triangulate import preview_triangles

__all__ = ["Mesh", "MESH_KEYS", "pack", "pack_meshes", "preview_arrays"]

# the fields of a Mesh, as the keys of a training batch
MESH_KEYS = ("points", "colours", "triangles", "num_triangles", "grid", "num_points")


class Mesh(NamedTuple):
    """A batch of triangle meshes on grids, padded: the rasteriser's input.

    points (B, N, 2) int32 grid coordinates; colours (B, N, 3) float32; triangles (B, T, 3) int32
    indices into points; num_triangles (B,) int32 (rows past it are padding); grid (B, 2) int32
    (GW, GH); num_points (B,) int32.
    """

    points: np.ndarray
    colours: np.ndarray
    triangles: np.ndarray
    num_triangles: np.ndarray
    grid: np.ndarray
    num_points: np.ndarray


def _bucket(n: int, step: int) -> int:
    return max(step, -(-n // step) * step)


def pack_meshes(items: Sequence[tuple], *, pad_points: int | None = None, pad_triangles: int | None = None) -> Mesh:
    """Pad ``(points, colours, triangles, (GW, GH))`` tuples into one :class:`Mesh`.

    Sizes are rounded up to multiples of 64 (or given), so batches of similar previews share one
    compiled program.
    """
    if not items:
        raise ValueError("no meshes to pack")
    n = pad_points or _bucket(max(len(p) for p, *_ in items), 64)
    t = pad_triangles or _bucket(max(len(tr) for _, _, tr, _ in items), 64)
    b = len(items)
    pts = np.zeros((b, n, 2), np.int32)
    col = np.zeros((b, n, 3), np.float32)
    tri = np.zeros((b, t, 3), np.int32)
    nt = np.zeros(b, np.int32)
    npts = np.zeros(b, np.int32)
    grid = np.zeros((b, 2), np.int32)
    for i, (p, c, tr, g) in enumerate(items):
        if len(p) > n or len(tr) > t:
            raise ValueError(f"mesh {i} has {len(p)} points / {len(tr)} triangles, more than the padding {n} / {t}")
        pts[i, : len(p)] = p
        col[i, : len(p)] = c
        tri[i, : len(tr)] = tr
        nt[i] = len(tr)
        npts[i] = len(p)
        grid[i] = g
    return Mesh(pts, col, tri, nt, grid, npts)


def pack(previews: Sequence[Preview], **kwargs) -> Mesh:
    """Triangulate previews and pack them; vertex colours are the palette's RGB in [0, 1]."""
    items = [
        (p.all_points(), p.vertex_rgb().astype(np.float32) / 255.0, preview_triangles(p), (p.grid_w, p.grid_h))
        for p in previews
    ]
    return pack_meshes(items, **kwargs)


def preview_arrays(preview: Preview, pad_points: int, pad_triangles: int) -> dict[str, np.ndarray]:
    """One preview as the padded arrays of a :class:`Mesh` (no batch axis), keyed by :data:`MESH_KEYS`."""
    m = pack([preview], pad_points=pad_points, pad_triangles=pad_triangles)
    return {k: getattr(m, k)[0] for k in MESH_KEYS}
