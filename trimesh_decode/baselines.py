"""Preview-regime baselines: WebP and JPEG at a byte target (Baluja et al., appendix).

The image is downscaled, encoded with Pillow, decoded and upscaled back (bicubic). For every
candidate downscaled size a binary search finds the quality whose output lands closest to the byte
target without exceeding it; of those, the one with the best PSNR at full size is kept.

A JPEG file's headers (quantisation and Huffman tables, ~150-600 bytes) alone exceed a 200-byte
budget, so for JPEG ``count="scan"`` counts only the entropy-coded scan (the bytes after the SOS
header) - the comparison the preview setting allows, with the shared headers assumed known to the
decoder. ``count="file"`` counts whole files (then JPEG usually cannot reach 200 bytes: ``None``).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

__all__ = ["BaselineResult", "at_bytes", "scan_bytes"]

SIDES = (8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 128)


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    codec: str
    num_bytes: int  # as counted (file or scan)
    file_bytes: int
    side: int  # the downscaled longer side
    quality: int
    decoded: np.ndarray  # uint8, the original's size
    psnr: float


def scan_bytes(jpeg: bytes) -> int:
    """Bytes of a baseline JPEG's entropy-coded data: from the end of the SOS header to EOI."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError("not a JPEG marker stream")
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker == 0xDA:
            return len(jpeg) - (i + 2 + length)
        i += 2 + length
    raise ValueError("no SOS marker: not a complete JPEG")


def _encode(small: Image.Image, codec: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if codec == "webp":
        small.save(buf, "WEBP", quality=quality, method=6)
    elif codec == "jpeg":
        small.save(buf, "JPEG", quality=quality, optimize=True, subsampling=2)
    else:
        raise ValueError(f"unknown baseline codec {codec!r} (webp or jpeg)")
    return buf.getvalue()


def _count(data: bytes, codec: str, count: str) -> int:
    return scan_bytes(data) if (codec == "jpeg" and count == "scan") else len(data)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def at_bytes(image: np.ndarray, target: int, codec: str = "webp", count: str | None = None) -> BaselineResult | None:
    """The best-PSNR downscale / quality setting of ``codec`` within ``target`` bytes (None if none fits)."""
    count = count or ("scan" if codec == "jpeg" else "file")
    if count not in ("file", "scan"):
        raise ValueError(f"count must be 'file' or 'scan', got {count!r}")
    img = Image.fromarray(np.asarray(image, np.uint8))
    w, h = img.size
    best: BaselineResult | None = None
    for side in SIDES:
        if side > max(w, h):
            break
        sw, sh = (side, max(1, round(side * h / w))) if w >= h else (max(1, round(side * w / h)), side)
        small = img.resize((sw, sh), Image.Resampling.LANCZOS)
        lo, hi, found = 0, 100, None
        while lo <= hi:  # the highest quality within the target (sizes grow with quality)
            q = (lo + hi) // 2
            data = _encode(small, codec, q)
            if _count(data, codec, count) <= target:
                found, lo = (q, data), q + 1
            else:
                hi = q - 1
        if found is None:
            continue
        q, data = found
        dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
        res = BaselineResult(codec, _count(data, codec, count), len(data), side, q, dec, _psnr(dec, image))
        if best is None or res.psnr > best.psnr:
            best = res
    return best
