"""Batched barycentric rasteriser in JAX, and the neural decoder's 8 input channels.

Vertex ``(gx, gy)`` of a ``GW x GH`` grid sits at pixel-centre coordinates
``(gx (W-1) / (GW-1), gy (H-1) / (GH-1))`` of a ``W x H`` output, so the corners are the corner
pixels and every pixel centre lies in the mesh's hull.

How a pixel finds its triangle, with no per-triangle loop: for every (triangle, row) the exact
span of pixel centres the triangle covers on that row is computed from its edges (each edge is
evaluated in one canonical direction, so two triangles sharing an edge get bit-identical
crossings and the half-open rounding ``[ceil(left), floor(right)]`` splits the row between them).
Each span writes ``(its last pixel, triangle)`` at its first pixel with a scatter-max (on a tie the
span reaching furthest wins, so a span touching a row at a single vertex cannot shadow its
neighbour), and a running maximum along the row hands every pixel the triangle of the last span
that started at or before it. Every pixel therefore gets exactly one triangle, by construction.
The colour is then the triangle's affine (barycentric) interpolant of its three vertex colours.

Cost: O(T H) for the spans and O(H W) for the fill and shading, all vectorised; ``vmap`` over a
batch of previews (padded to a common triangle count).

The 8 channels (:func:`decoder_channels`), in [0, 1], as Baluja et al. feed their network:
0 edge map (1-px Delaunay edges: pixels whose right or lower neighbour lies in another triangle),
1 vertex map (1 at the pixel nearest each vertex), 2-4 interpolated RGB, 5-7 coloured-vertex map
(the vertex's palette colour at that pixel, 0 elsewhere).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from trimesh_decode.meshes import Mesh, pack, pack_meshes

__all__ = [
    "Mesh",
    "pack",
    "pack_meshes",
    "triangle_index",
    "render",
    "decoder_channels",
    "NUM_CHANNELS",
]

NUM_CHANNELS = 8


def _pixel_positions(points, grid, height, width):
    """Pixel coordinates of grid points: ``p * s`` with the scalar ``s = (W - 1) / (GW - 1)`` (one
    float32 product, the same on every backend and in :mod:`trimesh_decode.raster_cpu`; XLA would
    turn ``p * (W - 1) / (GW - 1)`` into a product with a rounded reciprocal), and the last grid
    line exactly on the last pixel centre, so every pixel centre lies in the mesh's hull."""
    g = grid.astype(jnp.float32)
    p = points.astype(jnp.float32)
    sx = jnp.float32(width - 1) / (g[0] - 1)
    sy = jnp.float32(height - 1) / (g[1] - 1)
    x = jnp.where(points[:, 0] == grid[0] - 1, jnp.float32(width - 1), p[:, 0] * sx)
    y = jnp.where(points[:, 1] == grid[1] - 1, jnp.float32(height - 1), p[:, 1] * sy)
    return x, y


def _single_index(points, triangles, num_triangles, grid, height, width):
    """(H, W) int32 triangle index of one mesh."""
    x, y = _pixel_positions(points, grid, height, width)
    tcount = triangles.shape[0]
    valid = jnp.arange(tcount) < num_triangles
    # Edges in canonical direction (lower (y, x) first), so shared edges are computed identically.
    a = triangles
    b = jnp.roll(triangles, -1, axis=1)
    ax, ay, bx, by = x[a], y[a], x[b], y[b]
    swap = (ay > by) | ((ay == by) & (ax > bx))
    x0 = jnp.where(swap, bx, ax)
    y0 = jnp.where(swap, by, ay)
    x1 = jnp.where(swap, ax, bx)
    y1 = jnp.where(swap, ay, by)  # (T, 3)
    rows = jnp.arange(height, dtype=jnp.float32)[None, None, :]  # (1, 1, H)
    x0, y0, x1, y1 = (v[:, :, None] for v in (x0, y0, x1, y1))
    sloped = y1 > y0
    cross = sloped & (rows >= y0) & (rows <= y1)
    xc = x0 + (rows - y0) * ((x1 - x0) / jnp.where(sloped, y1 - y0, 1.0))
    flat = (~sloped) & (rows == y0)
    big = jnp.float32(3.0e38)
    left = jnp.minimum(jnp.where(cross, xc, big), jnp.where(flat, jnp.minimum(x0, x1), big)).min(axis=1)
    right = jnp.maximum(jnp.where(cross, xc, -big), jnp.where(flat, jnp.maximum(x0, x1), -big)).max(axis=1)
    start = jnp.clip(jnp.ceil(left), 0, width - 1).astype(jnp.int32)  # (T, H)
    end = jnp.clip(jnp.floor(right), -1, width - 1).astype(jnp.int32)
    ok = valid[:, None] & (left <= right) & (start <= end)
    key = jnp.where(ok, end * tcount + jnp.arange(tcount, dtype=jnp.int32)[:, None], -1)
    row_idx = jnp.broadcast_to(jnp.arange(height, dtype=jnp.int32)[None, :], key.shape)
    starts = jnp.full((height, width), -1, jnp.int32)
    starts = starts.at[row_idx.ravel(), jnp.where(ok, start, width).ravel()].max(key.ravel(), mode="drop")
    tri_at_start = jnp.where(starts >= 0, starts % tcount, 0)
    cols = jnp.arange(width, dtype=jnp.int32)[None, :]
    marker = jnp.where(starts >= 0, cols * tcount + tri_at_start, -1)
    filled = jax.lax.cummax(marker, axis=1)
    return jnp.where(filled >= 0, filled % tcount, 0).astype(jnp.int32)


def _planes(points, colours, triangles, grid, height, width):
    """Per triangle: reference vertex (x0, y0), its colour, d colour/dx, d colour/dy: (T, 11)."""
    x, y = _pixel_positions(points, grid, height, width)
    i0, i1, i2 = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    x0, y0, c0 = x[i0], y[i0], colours[i0]
    ux, uy, uc = x[i1] - x0, y[i1] - y0, colours[i1] - c0
    vx, vy, vc = x[i2] - x0, y[i2] - y0, colours[i2] - c0
    det = ux * vy - uy * vx
    det = jnp.where(det == 0, 1.0, det)
    dcdx = (uc * vy[:, None] - vc * uy[:, None]) / det[:, None]
    dcdy = (vc * ux[:, None] - uc * vx[:, None]) / det[:, None]
    return jnp.concatenate([x0[:, None], y0[:, None], c0, dcdx, dcdy], axis=1)


def _shade(index, planes, height, width):
    p = planes[index]  # (H, W, 11)
    xs = jnp.arange(width, dtype=jnp.float32)[None, :] - p[..., 0]
    ys = jnp.arange(height, dtype=jnp.float32)[:, None] - p[..., 1]
    return p[..., 2:5] + p[..., 5:8] * xs[..., None] + p[..., 8:11] * ys[..., None]


def _single_render(points, colours, triangles, num_triangles, grid, height, width):
    index = _single_index(points, triangles, num_triangles, grid, height, width)
    return _shade(index, _planes(points, colours, triangles, grid, height, width), height, width), index


def _single_channels(points, colours, triangles, num_triangles, grid, num_points, height, width):
    rgb, index = _single_render(points, colours, triangles, num_triangles, grid, height, width)
    edge = jnp.zeros((height, width), bool)
    edge = edge.at[:, :-1].set(index[:, :-1] != index[:, 1:])
    edge = edge.at[:-1, :].set(edge[:-1, :] | (index[:-1, :] != index[1:, :]))
    x, y = _pixel_positions(points, grid, height, width)
    xi = jnp.clip(jnp.round(x), 0, width - 1).astype(jnp.int32)
    yi = jnp.clip(jnp.round(y), 0, height - 1).astype(jnp.int32)
    real = jnp.arange(points.shape[0]) < num_points
    yi = jnp.where(real, yi, height)  # padding points fall outside and are dropped
    vmap_ = jnp.zeros((height, width), jnp.float32).at[yi, xi].set(1.0, mode="drop")
    vcol = jnp.zeros((height, width, 3), jnp.float32).at[yi, xi].set(colours, mode="drop")
    return jnp.concatenate([edge[..., None].astype(jnp.float32), vmap_[..., None], rgb, vcol], axis=-1)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def triangle_index(mesh: Mesh, height: int, width: int) -> jax.Array:
    """(B, H, W) int32: the triangle each pixel belongs to."""
    f = functools.partial(_single_index, height=height, width=width)
    return jax.vmap(f)(mesh.points, mesh.triangles, mesh.num_triangles, mesh.grid)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def render(mesh: Mesh, height: int, width: int) -> jax.Array:
    """(B, H, W, C) float32: barycentric interpolation of the vertex colours."""
    f = functools.partial(_single_render, height=height, width=width)
    return jax.vmap(f)(mesh.points, mesh.colours, mesh.triangles, mesh.num_triangles, mesh.grid)[0]


@functools.partial(jax.jit, static_argnames=("height", "width"))
def decoder_channels(mesh: Mesh, height: int, width: int) -> jax.Array:
    """(B, H, W, 8) float32 in [0, 1]: edge map, vertex map, interpolated RGB, coloured-vertex map."""
    f = functools.partial(_single_channels, height=height, width=width)
    return jax.vmap(f)(mesh.points, mesh.colours, mesh.triangles, mesh.num_triangles, mesh.grid, mesh.num_points)
