"""Deterministic Delaunay and the JAX rasteriser: scipy agreement, exact cover, the 8 channels."""

import numpy as np
import pytest
from preview_helpers import random_points, random_preview
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay

from trimesh_decode import raster, raster_cpu
from trimesh_decode.triangulate import TriangulationError, triangulate


def _tri_set(t):
    return {tuple(sorted(x)) for x in np.asarray(t).tolist()}


def _orient(p, t):
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _incircle(a, b, c, d):
    ad, bd, cd = a - d, b - d, c - d
    A, B, C = (ad**2).sum(-1), (bd**2).sum(-1), (cd**2).sum(-1)
    return (
        ad[..., 0] * (bd[..., 1] * C - B * cd[..., 1])
        - ad[..., 1] * (bd[..., 0] * C - B * cd[..., 0])
        + A * (bd[..., 0] * cd[..., 1] - bd[..., 1] * cd[..., 0])
    )


def _cocircular(p, t) -> bool:
    """Whether some point lies exactly on a triangle's circumcircle (the triangulation is not unique)."""
    a, b, c = (p[t[:, i]][:, None].astype(np.int64) for i in range(3))
    z = _incircle(a, b, c, p[None].astype(np.int64)) == 0
    z[np.arange(len(t))[:, None], t] = False
    return bool(z.any())


def _is_delaunay(p, t) -> bool:
    a, b, c = (p[t[:, i]][:, None].astype(np.int64) for i in range(3))
    return bool((_incircle(a, b, c, p[None].astype(np.int64)) <= 0).all())


def test_equals_scipy_where_the_triangulation_is_unique():
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(60):
        p = random_points(rng, 256, 256, int(rng.integers(0, 300)))
        ref = Delaunay(p).simplices
        if _cocircular(p, ref):
            continue
        compared += 1
        assert _tri_set(triangulate(p)) == _tri_set(ref)
    assert compared >= 40


@pytest.mark.parametrize("gw,gh,density", [(32, 32, 1.0), (64, 64, 0.3), (16, 40, 0.7), (2, 2, 0), (3, 128, 1.0)])
def test_dense_degenerate_grids_tile_the_rectangle(gw, gh, density):
    rng = np.random.default_rng(1)
    p = random_points(rng, gw, gh, int(density * (gw * gh - 4)))
    t = triangulate(p)
    o = _orient(p, t)
    assert (o > 0).all()  # every triangle valid and positively oriented
    assert o.sum() == 2 * (gw - 1) * (gh - 1)  # areas add up to the rectangle: no overlap, no hole
    assert len(t) == 2 * len(p) - 2 - len(np.unique(p[(p[:, 0] % (gw - 1) == 0) | (p[:, 1] % (gh - 1) == 0)], axis=0))
    assert _is_delaunay(p, t)
    # every pixel centre of a render is covered exactly once
    mesh = raster.pack_meshes([(p, np.zeros((len(p), 3), np.float32), t, (gw, gh))])
    h, w = 2 * gh - 1, 2 * gw - 1  # vertices on pixel centres, the hardest case for ties
    idx = np.asarray(raster.triangle_index(mesh, h, w))[0]
    yy, xx = np.mgrid[0:h, 0:w]
    q = np.stack([xx.ravel() / 2, yy.ravel() / 2], 1)
    a, b, c = p[t[idx.ravel(), 0]], p[t[idx.ravel(), 1]], p[t[idx.ravel(), 2]]

    def side(u, v):
        return (v[:, 0] - u[:, 0]) * (q[:, 1] - u[:, 1]) - (v[:, 1] - u[:, 1]) * (q[:, 0] - u[:, 0])

    assert (side(a, b) >= 0).all() and (side(b, c) >= 0).all() and (side(c, a) >= 0).all()
    # the CPU rasteriser's shortcut for rows between vertices meets every tie here the same way
    from trimesh_decode import raster_cpu

    np.testing.assert_array_equal(raster_cpu.triangle_index(mesh, h, w)[0], idx)


def test_the_same_points_give_the_same_triangles():
    p = random_points(np.random.default_rng(2), 64, 64, 500)
    np.testing.assert_array_equal(triangulate(p), triangulate(p.copy()))


def test_bad_point_sets_are_refused():
    good = random_points(np.random.default_rng(3), 8, 8, 10)
    with pytest.raises(TriangulationError, match="corners"):
        triangulate(good[::-1])
    with pytest.raises(TriangulationError, match="repeat|outside"):
        triangulate(np.concatenate([good, good[5:6]]))
    with pytest.raises(TriangulationError, match="repeat|outside"):
        triangulate(np.concatenate([good, [[9, 3]]]))
    with pytest.raises(TriangulationError, match="shape"):
        triangulate(np.zeros((3, 2)))


def test_render_equals_scipy_linear_interpolation():
    rng = np.random.default_rng(4)
    for _ in range(8):
        gw, gh = int(rng.integers(8, 64)), int(rng.integers(8, 64))
        p = random_points(rng, gw, gh, int(rng.integers(0, 200)))
        ref_tri = Delaunay(p)
        if _cocircular(p, ref_tri.simplices):
            continue
        colours = rng.random((len(p), 3)).astype(np.float32)
        h, w = 2 * (gh - 1) + 1, 2 * (gw - 1) + 1  # a uniform integer scale keeps the triangulation
        mesh = raster.pack_meshes([(p, colours, triangulate(p), (gw, gh))])
        out = np.asarray(raster.render(mesh, h, w))[0]
        scaled = Delaunay(p * 2)
        assert _tri_set(scaled.simplices) == _tri_set(ref_tri.simplices)
        yy, xx = np.mgrid[0:h, 0:w]
        ref = LinearNDInterpolator(scaled, colours)(xx.ravel(), yy.ravel()).reshape(h, w, 3)
        np.testing.assert_allclose(out, ref, atol=1e-4)


def test_batch_render_equals_single_renders_at_any_size():
    rng = np.random.default_rng(5)
    previews = [random_preview(rng, 64, 64, k, 6) for k in (0, 50, 300)]
    batch = np.asarray(raster.render(raster.pack(previews), 37, 91))
    for i, p in enumerate(previews):
        single = np.asarray(raster.render(raster.pack([p]), 37, 91))[0]
        np.testing.assert_allclose(batch[i], single, atol=1e-6)
    assert batch.min() >= -1e-5 and batch.max() <= 1 + 1e-5


def test_decoder_channels():
    p = random_preview(np.random.default_rng(6), 64, 64, 150, 6)
    ch = np.asarray(raster.decoder_channels(raster.pack([p]), 256, 256))[0]
    assert ch.shape == (256, 256, raster.NUM_CHANNELS)
    edge, vert, rgb, vcol = ch[..., 0], ch[..., 1], ch[..., 2:5], ch[..., 5:8]
    assert set(np.unique(edge)) <= {0.0, 1.0} and 0.02 < edge.mean() < 0.5
    assert vert.sum() == len(p.vertices) + 4  # one pixel per vertex (grid points are >= 4 px apart)
    np.testing.assert_allclose(rgb, np.asarray(raster.render(raster.pack([p]), 256, 256))[0])
    pts = np.round(p.all_points() * 255 / 63).astype(int)
    np.testing.assert_allclose(vcol[pts[:, 1], pts[:, 0]], p.vertex_rgb() / 255.0, atol=1e-6)
    assert (vcol[vert == 0] == 0).all()
    # where vertices fall on pixel centres (253 = 4 * 63 + 1), the colour there is the vertex's own
    exact = np.asarray(raster.render(raster.pack([p]), 253, 253))[0]
    q = p.all_points() * 4
    np.testing.assert_allclose(exact[q[:, 1], q[:, 0]], p.vertex_rgb() / 255.0, atol=1e-5)


def test_interpolate_gives_uint8_and_refuses_tiny_sizes():
    p = random_preview(np.random.default_rng(7), 10, 20, 30, 4)
    img = raster_cpu.interpolate(p, (40, 20))
    assert img.dtype == np.uint8 and img.shape == (40, 20, 3)
    with pytest.raises(ValueError, match="at least 2"):
        raster_cpu.interpolate(p, 1)


@pytest.mark.parametrize("size", [(256, 256), (37, 91), (253, 253), (2, 2)])
def test_cpu_rasteriser_gives_the_same_triangles_and_colours_as_the_jax_one(size):
    from trimesh_decode import raster_cpu

    rng = np.random.default_rng(8)
    previews = [random_preview(rng, 64, 64, 170, 8) for _ in range(6)] + [random_preview(rng) for _ in range(6)]
    previews.append(random_preview(rng, 64, 64, 0, 2))  # corners only
    mesh = raster.pack(previews)
    h, w = size
    np.testing.assert_array_equal(raster_cpu.triangle_index(mesh, h, w), np.asarray(raster.triangle_index(mesh, h, w)))
    ch_cpu = raster_cpu.decoder_channels(mesh, h, w)
    ch_jax = np.asarray(raster.decoder_channels(mesh, h, w))
    np.testing.assert_allclose(ch_cpu[..., 2:5], ch_jax[..., 2:5], atol=2e-6)  # float32 rounding only
    if min(h, w) > 2 * 64:  # vertices on distinct pixels: the maps are the same
        np.testing.assert_array_equal(ch_cpu[..., [0, 1, 5, 6, 7]], ch_jax[..., [0, 1, 5, 6, 7]])
    else:
        np.testing.assert_array_equal(ch_cpu[..., 0], ch_jax[..., 0])
    # into a reused buffer (stale contents overwritten): the same picture
    buf = np.full((len(previews), h, w, 3), np.nan, np.float32)
    assert raster_cpu.render(mesh, h, w, out=buf) is buf
    np.testing.assert_array_equal(buf, raster_cpu.render(mesh, h, w))
    with pytest.raises(ValueError, match="out must be"):
        raster_cpu.render(mesh, h, w, out=np.zeros((len(previews), h, w, 3), np.float64))


def test_cpu_rasteriser_refuses_a_width_whose_span_keys_overflow():
    from trimesh_decode import raster_cpu

    mesh = raster.pack([random_preview(np.random.default_rng(9), 8, 8, 10, 4)])
    padded = mesh._replace(triangles=np.zeros((1, 2**16, 3), np.int32))  # 16 bits of triangle number
    with pytest.raises(ValueError, match="32 bits"):
        raster_cpu.render(padded, 2, 2**15)
    assert raster_cpu.render(padded, 2, 2**15 - 1).shape == (1, 2, 2**15 - 1, 3)


def test_the_last_grid_line_falls_exactly_on_the_last_pixel_centre():
    """x = p * ((W-1)/(G-1)) rounds, so the last grid line is pinned to W-1: no pixel centre ever
    lies outside the hull (G = 58 and W = 253 would give 251.99998 otherwise)."""
    from trimesh_decode import raster_cpu

    p = random_preview(np.random.default_rng(9), 58, 66, 40, 4)
    x, y = raster._pixel_positions(p.all_points(), np.array([58, 66]), 253, 253)
    pts = p.all_points()
    assert (np.asarray(x)[pts[:, 0] == 57] == 252).all() and (np.asarray(y)[pts[:, 1] == 65] == 252).all()
    cx, cy = raster_cpu._positions(pts.astype(np.int32), len(pts), 58, 66, 253, 253)
    np.testing.assert_array_equal(cx, np.asarray(x))
    np.testing.assert_array_equal(cy, np.asarray(y))


def test_a_resumed_triangulation_equals_the_whole_one():
    """triangulate_from resumes from the state saved before the first point that changed (what the
    encoder's exact evaluations do): the same triangles and neighbours, in the same order, as a
    triangulation from scratch, over chains of changed point sets - kept (the saved states are
    the new set's) or dropped (those after the change marked invalid) - on grids of 8 to 64."""
    from trimesh_decode.triangulate import SNAP_EVERY, scratch, snapshots, triangulate_from, triangulate_into

    def points(rng, g, k):
        pts = set()
        while len(pts) < k:
            x, y = (int(v) for v in rng.integers(0, g, 2))
            if not (x in (0, g - 1) and y in (0, g - 1)):
                pts.add((y, x))
        pts = sorted(pts)
        return (
            np.array([0, g - 1, 0, g - 1] + [x for y, x in pts], np.int64),
            np.array([0, 0, g - 1, g - 1] + [y for y, x in pts], np.int64),
        )

    rng = np.random.default_rng(0)
    snaps, meta = snapshots(1028)
    (tv, tn, work), (tv2, tn2, work2) = scratch(1028), scratch(1028)
    resumed = 0
    for _ in range(120):
        g = int(rng.choice([8, 16, 64]))
        px, py = points(rng, g, int(rng.integers(1, min(g * g - 4, 300))))
        m = triangulate_from(px, py, len(px), tv, tn, work, snaps, meta, 4)
        assert m == triangulate_into(px, py, len(px), tv2, tn2, work2) and (tv[:m] == tv2[:m]).all()
        for _ in range(5):
            qx, qy = points(rng, g, len(px) - 4)
            r = int(rng.integers(4, len(px) + 1))
            nx, ny = np.concatenate([px[:r], qx[r:]]), np.concatenate([py[:r], qy[r:]])
            key = ny * 1000 + nx  # keep raster order after the shared prefix
            keep = np.ones(len(nx), bool)
            last = -1
            for i in range(4, len(nx)):
                keep[i] = key[i] > last
                last = max(last, key[i])
            nx, ny = nx[keep], ny[keep]
            start = min(r, len(nx))
            resumed += start >= 4 + SNAP_EVERY and meta[(start - 4) // SNAP_EVERY - 1, 3] == 1
            m = triangulate_from(nx, ny, len(nx), tv, tn, work, snaps, meta, start)
            m0 = triangulate_into(nx, ny, len(nx), tv2, tn2, work2)
            assert m == m0 and (tv[:m] == tv2[:m]).all() and (tn[:m] == tn2[:m]).all()
            if rng.random() < 0.5:
                px, py = nx, ny
            else:
                meta[(start - 4) // SNAP_EVERY :, 3] = 0
    assert resumed > 100  # most changes resumed from a saved state
