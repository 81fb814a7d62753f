"""Real JPEG files from quantised coefficients and tables, and back.

libjpeg does the entropy coding (through ``jpeglib``, which hands coefficient arrays to
``jpeg_write_coefficients`` / ``jpeg_read_coefficients``), so every file written here is an ordinary
baseline JFIF file that any viewer decodes:

* ``write(coefficients, qtables)`` -> bytes: sequential baseline DCT, 8-bit tables, with the standard
  (Annex K) Huffman tables - the paper's setting - or, with ``optimize_huffman=True``, tables
  optimised for the image by libjpeg's two-pass coder;
* ``write(..., progressive=True)``: the same coefficients in a progressive file, through our own
  entropy coder (:mod:`jpegedit.progressive`; libjpeg's transcoder writes sequential files only);
* ``read_coefficients(data)`` -> ``(coefficients, qtables)`` for any baseline or progressive JPEG in
  YCbCr (4:4:4 or 4:2:0) or grayscale.

Errors are specific: :class:`CorruptJPEGError` (not a JPEG, cut short, unreadable),
:class:`UnsupportedJPEGError` (a valid JPEG this codec cannot represent: CMYK, 4:2:2, ...), and
``ValueError`` for coefficients or tables a baseline file cannot hold.
"""

from __future__ import annotations

import os
import tempfile
import threading

import numpy as np

from jpegedit import progressive as _progressive
from jpegedit.codec import Coefficients, block_grid, table_stack

__all__ = ["JPEGFileError", "CorruptJPEGError", "UnsupportedJPEGError", "write", "read_coefficients"]

# jpeglib switches its libjpeg build with process-global state; this is the build we write with.
LIBJPEG_VERSION = "turbo210"
_LOCK = threading.Lock()


class JPEGFileError(ValueError):
    """A JPEG file could not be read as coefficients and tables."""


class CorruptJPEGError(JPEGFileError):
    """The bytes are not a complete, well-formed JPEG file."""


class UnsupportedJPEGError(JPEGFileError):
    """A well-formed JPEG that this codec does not represent (colour space, sampling, tables)."""


def _jpeglib():
    import jpeglib  # lazy: it loads a C library; only mozjpeg and coefficient reads need it

    return jpeglib


# --- checks ----------------------------------------------------------------------------------


def _baseline_tables(qtables, n_components: int) -> np.ndarray:
    q = table_stack(np.asarray(qtables))
    if not np.all(np.isfinite(q)) or not np.all(np.round(q) == q):
        raise ValueError("quantisation tables must hold integers (round learned tables before writing a file)")
    if q.min() < 1 or q.max() > 255:
        raise ValueError(f"baseline JPEG tables hold 1..255, got values in {int(q.min())}..{int(q.max())}")
    return q[: 1 if n_components == 1 else 2].astype(np.uint16)


def _coefficient_array(a, expect: tuple[int, int], name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 4 or a.shape[-2:] != (8, 8):
        raise ValueError(
            f"{name} coefficients must be (rows, cols, 8, 8) for one image, got shape {a.shape} "
            "(write a batch one image at a time)"
        )
    if a.shape[:2] != expect:
        raise ValueError(
            f"{name} has a {a.shape[0]}x{a.shape[1]} block grid, the image size needs {expect[0]}x{expect[1]}"
        )
    if not np.all(np.isfinite(a)) or not np.all(np.round(a) == a):
        raise ValueError(f"{name} coefficients must be integers (quantise with hard rounding before writing)")
    # Baseline Huffman coding holds AC magnitudes up to 1023 and DC values up to 2047 (8-bit samples).
    ac = a.copy()
    ac[..., 0, 0] = 0
    if np.abs(ac).max(initial=0) > 1023 or np.abs(a[..., 0, 0]).max(initial=0) > 2047:
        raise ValueError(f"{name} coefficients out of the baseline range (|AC| <= 1023, |DC| <= 2047)")
    return np.ascontiguousarray(a, dtype=np.int16)


# --- writing ---------------------------------------------------------------------------------


def write(
    coefficients: Coefficients,
    qtables,
    *,
    optimize_huffman: bool = False,
    progressive: bool = False,
    quick: bool = False,
) -> bytes:
    """A JPEG file (bytes) holding exactly ``coefficients`` and ``qtables``.

    ``qtables``: ``(2, 8, 8)`` integer tables (luma, chroma; ``(1, 8, 8)`` or ``(8, 8)`` for
    grayscale) in natural order, values 1..255. A baseline (SOF0) file with the standard Huffman
    tables unless ``optimize_huffman`` (libjpeg's two-pass coder); with ``progressive`` a
    progressive (SOF2) file whose scans and per-scan optimised Huffman tables are chosen for the
    image by :mod:`jpegedit.progressive` (``optimize_huffman`` is then implied); ``quick`` skips
    that choice (one AC scan per component: a few tenths of a percent larger, 9x faster).
    """
    if not isinstance(coefficients, Coefficients):
        raise TypeError(f"expected jpegedit.codec.Coefficients, got {type(coefficients).__name__}")
    co = coefficients
    luma_grid, chroma_grid = block_grid(co.height, co.width, co.chroma)
    y = _coefficient_array(co.y, luma_grid, "Y")
    cb = cr = None
    if not co.grayscale:
        cb = _coefficient_array(co.cb, chroma_grid, "Cb")
        cr = _coefficient_array(co.cr, chroma_grid, "Cr")
    q = _baseline_tables(qtables, 1 if co.grayscale else 3)
    if progressive:
        comps = (y,) if co.grayscale else (y, cb, cr)
        script = _progressive.single_scans(len(comps)) if quick else None
        return _progressive.write(comps, q, co.height, co.width, co.chroma, script)

    jpeglib = _jpeglib()
    jpeg = jpeglib.from_dct(y, cb, cr, qt=q)
    jpeg.height, jpeg.width = co.height, co.width
    if co.grayscale:
        jpeg.samp_factor = np.array([[1, 1]])
        jpeg.quant_tbl_no = np.array([0])
    else:
        luma = [2, 2] if co.chroma == "420" else [1, 1]
        jpeg.samp_factor = np.array([luma, [1, 1], [1, 1]])
        jpeg.quant_tbl_no = np.array([0, 1, 1])
    flags = ["+OPTIMIZE_CODING" if optimize_huffman else "-OPTIMIZE_CODING", "-PROGRESSIVE_MODE", "-ARITH_CODE"]
    fd, path = tempfile.mkstemp(suffix=".jpg")
    os.close(fd)
    try:
        with _LOCK, jpeglib.version(LIBJPEG_VERSION):
            jpeg.write_dct(path, flags=flags)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.remove(path)


# --- reading ---------------------------------------------------------------------------------

_STANDALONE = {0xD8, 0x01} | set(range(0xD0, 0xD8))  # SOI, TEM, RSTn: no length field


def _check_complete(data: bytes) -> None:
    """Walk the marker segments (so thumbnails inside APPn segments are skipped) and require a scan
    followed by an end-of-image marker; libjpeg only *warns* about a file cut short."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise CorruptJPEGError("not a JPEG file (no start-of-image marker)")
    i = 2
    while True:
        while i < len(data) and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= len(data):
            raise CorruptJPEGError("truncated JPEG file: it ends before any image data")
        marker = data[i]
        if data[i - 1] != 0xFF:
            raise CorruptJPEGError(f"corrupt JPEG file: expected a marker at byte {i - 1}")
        i += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:
            raise CorruptJPEGError("corrupt JPEG file: end-of-image before any scan")
        if i + 2 > len(data):
            raise CorruptJPEGError("truncated JPEG file: cut inside its headers")
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2 or i + length > len(data):
            raise CorruptJPEGError("truncated JPEG file: cut inside its headers")
        i += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    if data.find(b"\xff\xd9", i) < 0:
        raise CorruptJPEGError("truncated JPEG file: no end-of-image marker after the image data")


def read_coefficients(data: bytes) -> tuple[Coefficients, np.ndarray]:
    """The quantised coefficients and tables of a JPEG file: ``(Coefficients (int16), qtables)``.

    ``qtables`` is ``(2, 8, 8)`` (luma, chroma) for colour files and ``(1, 8, 8)`` for grayscale,
    natural order, int32.
    """
    if isinstance(data, (str, os.PathLike)):
        raise TypeError("read_coefficients takes the file's bytes; read the file first")
    data = bytes(data)
    _check_complete(data)
    jpeglib = _jpeglib()
    fd, path = tempfile.mkstemp(suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            with _LOCK, jpeglib.version(LIBJPEG_VERSION):
                jpeg = jpeglib.read_dct(path)
                jpeg.load()
        except OSError as e:
            raise CorruptJPEGError(f"libjpeg could not read the file: {e}") from None
    finally:
        os.remove(path)

    space = str(jpeg.jpeg_color_space).split(".")[-1]
    samp = np.asarray(jpeg.samp_factor).tolist()
    tbl = [int(t) for t in np.asarray(jpeg.quant_tbl_no).ravel()]
    qt = np.asarray(jpeg.qt).astype(np.int32)
    if space == "JCS_GRAYSCALE":
        co = Coefficients(np.array(jpeg.Y, np.int16), None, None, int(jpeg.height), int(jpeg.width), "444")
        return co, qt[tbl[0]][None]
    if space != "JCS_YCbCr" or len(samp) != 3:
        raise UnsupportedJPEGError(
            f"only YCbCr and grayscale JPEGs are supported, this one is {space.removeprefix('JCS_')}"
        )
    if samp[1:] != [[1, 1], [1, 1]] or samp[0] not in ([1, 1], [2, 2]):
        raise UnsupportedJPEGError(
            f"only 4:4:4 and 4:2:0 chroma sampling are supported, this file has sampling factors {samp}"
        )
    if tbl[1] != tbl[2]:
        raise UnsupportedJPEGError("Cb and Cr use different quantisation tables; this codec shares one chroma table")
    chroma = "420" if samp[0] == [2, 2] else "444"
    co = Coefficients(
        np.array(jpeg.Y, np.int16),
        np.array(jpeg.Cb, np.int16),
        np.array(jpeg.Cr, np.int16),
        int(jpeg.height),
        int(jpeg.width),
        chroma,
    )
    return co, np.stack([qt[tbl[0]], qt[tbl[1]]])
