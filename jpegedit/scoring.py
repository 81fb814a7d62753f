"""Scoring encoded bytes the way a user sees them: Pillow (libjpeg-turbo, the standard decoder)
decodes the file, and the decoding is compared with the original. Every measurement of the JPEG
method - baseline curves, learned curves, run evaluation, figures, the demo, per-image
optimisation - scores files through :func:`score`."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from compat import metrics

__all__ = ["MS_SSIM_MIN_SIDE", "LPIPS_MIN_SIDE", "decode", "score"]

MS_SSIM_MIN_SIDE = 161  # MS-SSIM's five scales need at least this many pixels on the short side
LPIPS_MIN_SIDE = 31  # LPIPS (AlexNet)'s last tapped layer keeps a pixel from this side on


def decode(data: bytes) -> np.ndarray:
    """The standard decoder: Pillow's libjpeg-turbo, uint8 RGB."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def score(
    original: np.ndarray, data: bytes, *, lpips: bool = False, ms_ssim: bool = True, decoded: np.ndarray | None = None
) -> dict:
    """``{bytes, bpp, psnr, ms_ssim, lpips}`` of the file ``data`` against ``original`` (uint8 RGB).
    ``ms_ssim`` is None when not asked or when the image is too small for it (below
    :data:`MS_SSIM_MIN_SIDE` px); ``lpips`` (AlexNet) is None when not asked. ``decoded``: the
    file's decoding when the caller already has it."""
    y = decode(data) if decoded is None else decoded
    h, w = original.shape[:2]
    x32, y32 = original.astype(np.float32), y.astype(np.float32)
    return {
        "bytes": len(data),
        "bpp": metrics.bpp(len(data), h, w),
        "psnr": float(metrics.psnr(x32, y32)),
        "ms_ssim": float(metrics.ms_ssim(x32, y32)) if ms_ssim and min(h, w) >= MS_SSIM_MIN_SIDE else None,
        "lpips": float(metrics.lpips(x32, y32, net="alex")) if lpips else None,
    }
