"""Random previews and point sets for the trimesh_decode tests."""

import numpy as np

from trimesh_decode.bitstream import Preview


def random_points(rng, gw: int, gh: int, k: int) -> np.ndarray:
    """Corners (TL, TR, BL, BR) then up to k distinct non-corner grid points in raster order."""
    corners = np.array([[0, 0], [gw - 1, 0], [0, gh - 1], [gw - 1, gh - 1]])
    free = np.array(
        [(x, y) for y in range(gh) for x in range(gw) if not ((x in (0, gw - 1)) and (y in (0, gh - 1)))]
    ).reshape(-1, 2)
    k = min(k, len(free))
    pick = np.sort(rng.choice(len(free), size=k, replace=False))
    return np.concatenate([corners, free[pick]]).astype(np.int64)


def random_preview(rng, gw=None, gh=None, k=None, n=None) -> Preview:
    gw = gw or int(rng.integers(2, 80))
    gh = gh or int(rng.integers(2, 80))
    n = n or int(rng.integers(2, 33))
    kmax = min(1024, gw * gh - 4)
    k = int(rng.integers(0, kmax + 1)) if k is None else min(k, kmax)
    pts = random_points(rng, gw, gh, k)[4:]
    while True:
        pal = rng.integers(0, 64, (n, 3))
        if len(np.unique(pal, axis=0)) == n:
            break
    # runs of equal indices, like real previews
    idx = np.repeat(rng.integers(0, n, max(k, 1)), 3)[:k]
    return Preview.create(gw, gh, pal, rng.integers(0, n, 4), pts, idx)
