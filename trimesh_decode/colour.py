"""The preview format's colours (the spec's integer formulas) and its palette order, as compiled
scalar helpers that the bitstream (whole arrays) and the encoder (inside its search) share.

Colours are 6-bit YCoCg: ``Y = (1 + 2G + R + B) >> 4``, ``Co = (256 + R - B) >> 3``,
``Cg = (512 + 2G - R - B) >> 4`` (each clamped to 0..63), and back ``R = 4 (Y - Cg + Co)``,
``G = 4 (Y + Cg) - 128``, ``B = 4 (Y - Cg - Co) + 256`` (each clamped to 0..255). A palette is
sorted by ``(Cg, Y, Co)``: :func:`palette_key`.
"""

from __future__ import annotations

import numpy as np

from trimesh_decode.coder import jit

__all__ = ["rgb_to_ycocg6_1", "ycocg6_to_rgb_1", "palette_key", "rgb_to_ycocg6", "ycocg6_to_rgb", "palette_keys"]


@jit
def rgb_to_ycocg6_1(r, g, b):
    """One integer RGB colour (0..255) as 6-bit ``(Y, Co, Cg)``."""
    return (
        min(max((1 + 2 * g + r + b) >> 4, 0), 63),
        min(max((256 + r - b) >> 3, 0), 63),
        min(max((512 + 2 * g - r - b) >> 4, 0), 63),
    )


@jit
def ycocg6_to_rgb_1(y, co, cg):
    """One 6-bit ``(Y, Co, Cg)`` colour as RGB, clamped to 0..255."""
    return (
        min(max(4 * (y - cg + co), 0), 255),
        min(max(4 * (y + cg) - 128, 0), 255),
        min(max(4 * (y - cg - co) + 256, 0), 255),
    )


@jit
def palette_key(y, co, cg):
    """The sort key of a palette entry: palettes are stored in increasing ``(Cg, Y, Co)``."""
    return (cg << 12) | (y << 6) | co


@jit
def _rows(c, kind, out):
    for i in range(c.shape[0]):
        if kind == 0:
            out[i, 0], out[i, 1], out[i, 2] = rgb_to_ycocg6_1(c[i, 0], c[i, 1], c[i, 2])
        elif kind == 1:
            out[i, 0], out[i, 1], out[i, 2] = ycocg6_to_rgb_1(c[i, 0], c[i, 1], c[i, 2])
        else:
            out[i, 0] = palette_key(c[i, 0], c[i, 1], c[i, 2])


def _apply(colours, kind: int, width: int) -> np.ndarray:
    c = np.ascontiguousarray(np.asarray(colours, np.int64))
    if c.shape[-1:] != (3,):
        raise ValueError(f"colours must have 3 channels in the last axis, got shape {c.shape}")
    flat = c.reshape(-1, 3)
    out = np.empty((len(flat), width), np.int64)
    _rows(flat, kind, out)
    return out.reshape(c.shape[:-1] + ((width,) if width > 1 else ()))


def rgb_to_ycocg6(rgb) -> np.ndarray:
    """Integer RGB 0..255 (..., 3) -> 6-bit (Y, Co, Cg) (..., 3), uint8."""
    return _apply(rgb, 0, 3).astype(np.uint8)


def ycocg6_to_rgb(ycocg) -> np.ndarray:
    """6-bit (Y, Co, Cg) (..., 3) -> RGB (..., 3), uint8, clamped to 0..255."""
    return _apply(ycocg, 1, 3).astype(np.uint8)


def palette_keys(palette) -> np.ndarray:
    """The :func:`palette_key` of every entry of a (n, 3) palette, int64 (n,)."""
    return _apply(np.asarray(palette).reshape(-1, 3), 2, 1)
