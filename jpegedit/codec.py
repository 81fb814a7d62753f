"""The differentiable JPEG: colour, padding, 8x8 blocks, DCT, quantisation, and back.

Every function is pure JAX (``jit``, ``vmap`` and ``grad`` pass through) and keeps any leading batch
axes. Images are ``(..., H, W, 3)`` RGB or ``(..., H, W, 1)`` grayscale with values in 0..255 (any
float or integer dtype); coefficients are :class:`Coefficients`, quantised DCT coefficients per
component laid out ``(..., H/8, W/8, 8, 8)`` with each block in natural order ``[v, u]`` (row =
vertical frequency), exactly as ``jpegfile`` writes them and as libjpeg stores them.

This is the *float* path the models train through: the orthonormal DCT-II (which is JPEG's DCT) in
float32 and JFIF's colour transform with real coefficients. ``jpegedit.libjpeg`` is its exact twin,
libjpeg-turbo's integer arithmetic, used to write files with the same coefficients libjpeg writes.

Rounding modes for quantisation (``rounding=``):

``hard``       round half away from zero, as libjpeg's quantiser does; zero gradient.
``cubic``      Shin & Song's smooth approximation ``r + (x - r)^3`` with ``r = round(x)``.
``cubic_ste``  the paper's choice: exact rounding forward, ``cubic``'s gradient ``3 (x - r)^2`` backward.
``ste``        exact rounding forward, identity gradient backward (straight-through).
``noise``      ``x + u``, ``u ~ U(-1/2, 1/2)`` (needs ``key``): the additive-noise proxy of learned codecs.
``none``       no rounding: the unquantised ``F * A / Q`` (what a rate estimate reads; see
               ``jpegedit.losses.estimated_bits``).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ROUNDING_MODES",
    "CHROMA_MODES",
    "STD_LUMA_TABLE",
    "STD_CHROMA_TABLE",
    "MOZJPEG_TABLE",
    "TABLE_BASES",
    "Coefficients",
    "quality_scale",
    "quality_to_tables",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "pad_edge",
    "blockify",
    "unblockify",
    "dct_matrix",
    "dct2d",
    "idct2d",
    "round_half_away",
    "round_with",
    "quantize",
    "dequantize",
    "downsample_420",
    "upsample_420",
    "block_grid",
    "table_stack",
    "component_blocks",
    "encode",
    "scale",
    "encode_ycbcr",
    "decode",
    "decode_ycbcr",
    "roundtrip",
]

ROUNDING_MODES = ("hard", "cubic", "cubic_ste", "ste", "noise", "none")
CHROMA_MODES = ("444", "420")
Rounding = Literal["hard", "cubic", "cubic_ste", "ste", "noise", "none"]
Chroma = Literal["444", "420"]

# ITU-T T.81 Annex K tables (K.1 luminance, K.2 chrominance) in natural order [v, u]; libjpeg's
# jcparam.c scales these by the IJG quality factor.
STD_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int32,
)
STD_CHROMA_TABLE = np.full((8, 8), 99, dtype=np.int32)
STD_CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]
STD_LUMA_TABLE.setflags(write=False)
STD_CHROMA_TABLE.setflags(write=False)

# mozjpeg's default table (its quant_tbl_master_idx 3, N. Robidoux's table for ImageMagick), for luma
# and chroma alike, scaled by the same IJG quality factor; tests/test_codec.py checks it against
# jpeglib's mozjpeg 4.0.3 at every quality.
MOZJPEG_TABLE = np.array(
    [
        [16, 16, 16, 18, 25, 37, 56, 85],
        [16, 17, 20, 27, 34, 40, 53, 75],
        [16, 20, 24, 31, 43, 62, 91, 135],
        [18, 27, 31, 40, 53, 74, 106, 156],
        [25, 34, 43, 53, 69, 94, 131, 189],
        [37, 40, 62, 74, 94, 124, 169, 238],
        [56, 53, 91, 106, 131, 169, 226, 311],
        [85, 75, 135, 156, 189, 238, 311, 418],
    ],
    dtype=np.int32,
)
MOZJPEG_TABLE.setflags(write=False)
TABLE_BASES = {"ijg": (STD_LUMA_TABLE, STD_CHROMA_TABLE), "mozjpeg": (MOZJPEG_TABLE, MOZJPEG_TABLE)}


def quality_scale(quality: int) -> int:
    """IJG quality (1..100) to libjpeg's percentage scale factor (``jpeg_quality_scaling``)."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise TypeError(f"quality must be an integer in 1..100, got {quality!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    return 5000 // quality if quality < 50 else 200 - 2 * quality


def quality_to_tables(quality: int, *, baseline: bool = True, base: str = "ijg") -> np.ndarray:
    """The ``(2, 8, 8)`` int32 tables (luma, chroma) libjpeg uses at IJG ``quality``
    (``base="mozjpeg"``: mozjpeg's default tables, :data:`MOZJPEG_TABLE`, at that quality).

    ``(basic * scale + 50) // 100`` clamped to 1..32767, and to 1..255 when ``baseline`` (what
    ``jpeg_set_quality(cinfo, quality, TRUE)`` does, and what Pillow calls).
    """
    if base not in TABLE_BASES:
        raise ValueError(f"base must be one of {', '.join(TABLE_BASES)}, got {base!r}")
    scale = quality_scale(quality)
    tables = (np.stack(TABLE_BASES[base]).astype(np.int64) * scale + 50) // 100
    return np.clip(tables, 1, 255 if baseline else 32767).astype(np.int32)


@flax.struct.dataclass
class Coefficients:
    """Quantised DCT coefficients of one JPEG (or a batch of them, along leading axes).

    ``y``, ``cb``, ``cr``: ``(..., rows, cols, 8, 8)`` per component, the block grid libjpeg uses
    (``ceil(H/8) x ceil(W/8)`` for luma and 4:4:4 chroma, ``ceil(H/16) x ceil(W/16)`` for 4:2:0
    chroma); ``cb`` and ``cr`` are None for a grayscale JPEG. ``height``, ``width`` and ``chroma``
    are static (not traced): they travel through ``jit`` and ``vmap`` as metadata.
    """

    y: jax.Array
    cb: jax.Array | None
    cr: jax.Array | None
    height: int = flax.struct.field(pytree_node=False)
    width: int = flax.struct.field(pytree_node=False)
    chroma: str = flax.struct.field(pytree_node=False, default="444")

    @classmethod
    def assemble(cls, components: list, height: int, width: int, chroma: str) -> "Coefficients":
        """From a list of one (grayscale) or three component arrays."""
        if len(components) == 1:
            return cls(components[0], None, None, height, width, "444")
        y, cb, cr = components
        return cls(y, cb, cr, height, width, chroma)

    @property
    def grayscale(self) -> bool:
        return self.cb is None

    @property
    def components(self) -> tuple[jax.Array, ...]:
        return (self.y,) if self.cb is None else (self.y, self.cb, self.cr)


def block_grid(height: int, width: int, chroma: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Block rows and columns of the luma and of the chroma components for an image size."""
    _check_chroma(chroma)
    luma = (math.ceil(height / 8), math.ceil(width / 8))
    if chroma == "420":
        return luma, (math.ceil(height / 16), math.ceil(width / 16))
    return luma, luma


def _check_chroma(chroma: str) -> None:
    if chroma not in CHROMA_MODES:
        raise ValueError(f"chroma must be one of {CHROMA_MODES}, got {chroma!r}")


# --- colour ----------------------------------------------------------------------------------

# JFIF (ITU-T T.871) full-range YCbCr; libjpeg's jccolor.c / jdcolor.c use these constants.
_RGB_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]], dtype=np.float64
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)
_YCC_OFFSET = np.array([0.0, 128.0, 128.0])


def _float(x: jax.Array) -> jax.Array:
    """``x`` as a float array: float dtypes are kept (float64 under x64), integers become float32."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _mix(x: jax.Array | list[jax.Array], matrix: np.ndarray, offset: np.ndarray) -> list[jax.Array]:
    """``matrix @ x[..., :] + offset`` per pixel, as three planes (``x``: ``(..., 3)`` or three planes).
    Written out as weighted sums: XLA fuses them into one pass, where a ``(..., 3) @ (3, 3)`` product
    runs as a slow batched dot."""
    c = list(x) if isinstance(x, (list, tuple)) else [x[..., i] for i in range(3)]
    return [sum(float(matrix[o, i]) * c[i] for i in range(3)) + float(offset[o]) for o in range(3)]


def rgb_to_ycbcr(rgb: jax.Array) -> jax.Array:
    """JFIF RGB -> YCbCr, full range, chroma offset by 128; ``(..., 3)`` in, ``(..., 3)`` out (float)."""
    return jnp.stack(_mix(_float(rgb), _RGB_TO_YCC, _YCC_OFFSET), axis=-1)


def ycbcr_to_rgb(ycc: jax.Array) -> jax.Array:
    """The exact inverse of :func:`rgb_to_ycbcr` (no clipping)."""
    return jnp.stack(_mix(_float(ycc), _YCC_TO_RGB, -_YCC_TO_RGB @ _YCC_OFFSET), axis=-1)


# --- geometry --------------------------------------------------------------------------------


def pad_edge(plane: jax.Array, height: int, width: int) -> jax.Array:
    """Pad ``(..., h, w)`` to ``(..., height, width)`` by replicating the last row and column (libjpeg's
    ``expand_right_edge`` / ``expand_bottom_edge``)."""
    h, w = plane.shape[-2:]
    if (h, w) == (height, width):
        return plane
    if height < h or width < w:
        raise ValueError(f"cannot pad {h}x{w} down to {height}x{width}")
    pad = [(0, 0)] * (plane.ndim - 2) + [(0, height - h), (0, width - w)]
    return jnp.pad(plane, pad, mode="edge")


def blockify(plane: jax.Array) -> jax.Array:
    """``(..., H, W)`` with H, W multiples of 8 -> ``(..., H/8, W/8, 8, 8)``."""
    *lead, h, w = plane.shape
    if h % 8 or w % 8:
        raise ValueError(f"blockify needs sides that are multiples of 8, got {h}x{w}")
    x = plane.reshape(*lead, h // 8, 8, w // 8, 8)
    return jnp.swapaxes(x, -3, -2)


def unblockify(blocks: jax.Array) -> jax.Array:
    """``(..., R, C, 8, 8)`` -> ``(..., 8R, 8C)``; the inverse of :func:`blockify`."""
    *lead, r, c, _, _ = blocks.shape
    return jnp.swapaxes(blocks, -3, -2).reshape(*lead, 8 * r, 8 * c)


# --- DCT -------------------------------------------------------------------------------------


@functools.cache
def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix ``D[k, n] = a_k cos((2n + 1) k pi / 16)`` (float64)."""
    k = np.arange(8)[:, None]
    n = np.arange(8)[None, :]
    d = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2 / 8)
    d[0] /= np.sqrt(2)
    return d


@functools.cache
def _dct_kron() -> np.ndarray:
    """The 2-D DCT as one 64x64 matrix on row-major flattened blocks: ``kron(D, D)``."""
    d = dct_matrix()
    return np.kron(d, d)


def _block_matmul(blocks: jax.Array, matrix: np.ndarray, row_scale=None, col_scale=None) -> jax.Array:
    """``diag(row_scale) @ matrix @ diag(col_scale)`` applied to every flattened ``(..., 8, 8)`` block.

    One (N, 64) x (64, 64) product: far faster on CPU than N batched 8x8 products; HIGHEST precision
    so that accelerators that default to bfloat16 passes keep float32 accuracy. The optional (8, 8)
    scales (traced, differentiable) fold quantisation tables into the transform.
    """
    blocks = _float(blocks)
    m = jnp.asarray(matrix, blocks.dtype)
    if row_scale is not None:
        m = m * jnp.reshape(row_scale, (64, 1)).astype(blocks.dtype)
    if col_scale is not None:
        m = m * jnp.reshape(col_scale, (1, 64)).astype(blocks.dtype)
    flat = blocks.reshape(*blocks.shape[:-2], 64)
    out = jnp.matmul(flat, m.T, precision=jax.lax.Precision.HIGHEST)
    return out.reshape(blocks.shape)


def dct2d(blocks: jax.Array) -> jax.Array:
    """Orthonormal 2-D DCT-II of ``(..., 8, 8)`` blocks ``[y, x]`` -> coefficients ``[v, u]`` (JPEG's FDCT);
    the same as ``D @ blocks @ D.T`` with :func:`dct_matrix` ``D``."""
    return _block_matmul(blocks, _dct_kron())


def idct2d(coeffs: jax.Array) -> jax.Array:
    """Inverse of :func:`dct2d` (JPEG's IDCT): ``D.T @ coeffs @ D``."""
    return _block_matmul(coeffs, _dct_kron().T)


# --- rounding and quantisation ---------------------------------------------------------------


def round_half_away(x: jax.Array) -> jax.Array:
    """Round to nearest, ties away from zero (libjpeg's quantiser); ``jnp.round`` ties to even."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def round_with(x: jax.Array, mode: Rounding = "hard", key: jax.Array | None = None) -> jax.Array:
    """Round ``x`` to integers with one of :data:`ROUNDING_MODES` (see the module doc)."""
    if mode == "hard":
        return round_half_away(x)
    if mode == "none":
        return x
    r = jax.lax.stop_gradient(round_half_away(x))
    if mode == "cubic":
        return r + (x - r) ** 3
    if mode == "cubic_ste":
        cubic = r + (x - r) ** 3
        return cubic + jax.lax.stop_gradient(r - cubic)
    if mode == "ste":
        return x + jax.lax.stop_gradient(r - x)
    if mode == "noise":
        if key is None:
            raise ValueError("rounding='noise' needs a PRNG key")
        return x + jax.random.uniform(key, x.shape, x.dtype, -0.5, 0.5)
    raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {mode!r}")


def quantize(coeffs: jax.Array, table: jax.Array, mode: Rounding = "hard", key: jax.Array | None = None) -> jax.Array:
    """``round(coeffs / table)``; ``table`` is ``(8, 8)`` (or broadcasts), float allowed for learning."""
    return round_with(_float(coeffs) / _float(table), mode, key)


def dequantize(q: jax.Array, table: jax.Array) -> jax.Array:
    return q * _float(table)


# --- chroma subsampling ----------------------------------------------------------------------


def downsample_420(plane: jax.Array) -> jax.Array:
    """2x2 box average of ``(..., H, W)`` (H, W even): libjpeg's ``h2v2_downsample`` without its
    alternating integer rounding bias (the exact path has that)."""
    *lead, h, w = plane.shape
    return plane.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def _fancy_axis(x: jax.Array, axis: int) -> jax.Array:
    """Double ``axis`` with libjpeg's triangle filter: each output sample is 3/4 of its nearer input
    sample plus 1/4 of the next one beyond it (edge samples replicated)."""
    n = x.shape[axis]
    prev = jnp.concatenate(
        [jax.lax.slice_in_dim(x, 0, 1, axis=axis), jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis
    )
    nxt = jnp.concatenate(
        [jax.lax.slice_in_dim(x, 1, n, axis=axis), jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis
    )
    even = 0.75 * x + 0.25 * prev
    odd = 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis=axis + 1 if axis >= 0 else axis)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)


def upsample_420(plane: jax.Array, height: int, width: int) -> jax.Array:
    """Upsample a 4:2:0 chroma plane to ``(..., height, width)`` as libjpeg's decoder does by default
    ("fancy" triangle filtering, ``h2v2_fancy_upsample``): the plane is first cut to its true size
    ``ceil(height/2) x ceil(width/2)``, so the edge samples are replicated rather than the padding
    blocks read; planes at most 2 samples wide are replicated, not filtered (libjpeg-turbo's rule)."""
    ch, cw = math.ceil(height / 2), math.ceil(width / 2)
    plane = plane[..., :ch, :cw]
    if cw <= 2:  # libjpeg-turbo replicates instead of filtering planes this narrow
        up = jnp.repeat(jnp.repeat(plane, 2, axis=-2), 2, axis=-1)
        return up[..., :height, :width]
    up = _fancy_axis(_fancy_axis(plane, plane.ndim - 2), plane.ndim - 1)
    return up[..., :height, :width]


# --- the codec -------------------------------------------------------------------------------


def _split_image(image: jax.Array) -> tuple[jax.Array, bool]:
    image = jnp.asarray(image)
    if image.ndim < 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image (..., H, W, 3) RGB or (..., H, W, 1) grayscale, got shape {image.shape}")
    if image.shape[-3] < 1 or image.shape[-2] < 1:
        raise ValueError(f"empty image: shape {image.shape}")
    return image, image.shape[-1] == 1


def table_stack(q):
    """Quantisation tables as a ``(n, 8, 8)`` stack, n = 1 or 2 (luma[, chroma]); a single ``(8, 8)``
    table becomes a stack of one. Works on NumPy and JAX arrays alike; checks the shape only."""
    if q.shape == (8, 8):
        q = q[None]
    if q.ndim != 3 or q.shape[-2:] != (8, 8) or q.shape[0] not in (1, 2):
        raise ValueError(f"qtables must be (2, 8, 8) (luma, chroma) or (8, 8), got shape {q.shape}")
    return q


def _tables(qtables: jax.Array) -> jax.Array:
    return table_stack(_float(qtables))


def _component_tables(q: jax.Array, n: int) -> list[jax.Array]:
    return [q[min(i, q.shape[0] - 1)] for i in range(n)]


def encode_ycbcr(
    planes: jax.Array,
    qtables: jax.Array,
    *,
    chroma: Chroma = "444",
    rounding: Rounding = "hard",
    key: jax.Array | None = None,
) -> Coefficients:
    """Encode ``(..., H, W, C)`` YCbCr (C = 3) or Y (C = 1) sample planes in 0..255.

    Pads by edge replication to whole blocks as libjpeg does (for 4:2:0: columns to a multiple of 16
    before averaging, rows to an even count, then the averaged rows to whole blocks), shifts levels by
    128, takes the DCT of every block and quantises with ``qtables[0]`` (luma) and ``qtables[1]``
    (chroma) using ``rounding``.
    """
    planes = _float(planes)
    if planes.ndim < 3 or planes.shape[-1] not in (1, 3):
        raise ValueError(f"expected sample planes (..., H, W, 3) or (..., H, W, 1), got shape {planes.shape}")
    return _encode_planes([planes[..., i] for i in range(planes.shape[-1])], qtables, chroma, rounding, key)


def component_blocks(planes: list[jax.Array], chroma: str, downsample=None) -> list[jax.Array]:
    """Sample planes (Y or Y, Cb, Cr; each ``(..., H, W)``) -> each component's ``(..., rows, cols, 8, 8)``
    blocks, padded and (4:2:0 chroma) downsampled as libjpeg does.

    Luma and 4:4:4 chroma are padded to whole blocks by edge replication. For 4:2:0 libjpeg pads the
    columns at full resolution to a multiple of 16 but the rows only to an even count, averages
    (``downsample``, default :func:`downsample_420`), then replicates the last *averaged* row to
    whole blocks (``jcprepct.c``), so the two axes are padded differently.
    """
    _check_chroma(chroma)
    downsample = downsample_420 if downsample is None else downsample
    h, w = planes[0].shape[-2:]
    (lr, lc), (cr, cc) = block_grid(h, w, chroma if len(planes) == 3 else "444")
    out = []
    for i, p in enumerate(planes):
        if i == 0:
            p = pad_edge(p, 8 * lr, 8 * lc)
        elif chroma == "420":
            p = pad_edge(downsample(pad_edge(p, h + h % 2, 16 * cc)), 8 * cr, 8 * cc)
        else:
            p = pad_edge(p, 8 * cr, 8 * cc)
        out.append(blockify(p))
    return out


def _encode_planes(planes: list[jax.Array], qtables, chroma: str, rounding: str, key, scales=None) -> Coefficients:
    q = _tables(qtables)
    c = len(planes)
    keys = [None] * c if key is None else list(jax.random.split(key, c))
    out = []
    # DCT and division by the table as one 64x64 product (the table scales the DCT's rows): the same
    # numbers as quantize(dct2d(blocks), table), in one pass over memory
    z = [
        _block_matmul(blocks - 128.0, _dct_kron(), 1.0 / table)
        for blocks, table in zip(component_blocks(planes, chroma), _component_tables(q, c))
    ]
    z = _scaled(z, scales)
    out = [round_with(zi, rounding, keys[i]) for i, zi in enumerate(z)]
    return Coefficients.assemble(out, *planes[0].shape[-2:], chroma)


def _scaled(components: list, scales) -> list:
    return components if scales is None else [c * scales[min(i, len(scales) - 1)] for i, c in enumerate(components)]


def scale(coefficients: Coefficients, scales: tuple[jax.Array, ...] | None) -> Coefficients:
    """Unrounded coefficients (``encode(..., rounding="none")``) times per-block ``scales``
    ``(A_luma, A_chroma)``, as :func:`encode` applies them before rounding."""
    co = coefficients
    return Coefficients.assemble(_scaled(list(co.components), scales), co.height, co.width, co.chroma)


def encode(
    image: jax.Array,
    qtables: jax.Array,
    *,
    chroma: Chroma = "444",
    rounding: Rounding = "hard",
    key: jax.Array | None = None,
    scales: tuple[jax.Array, ...] | None = None,
) -> Coefficients:
    """Encode an RGB ``(..., H, W, 3)`` or grayscale ``(..., H, W, 1)`` image to quantised coefficients.

    ``scales``: optional per-block multipliers of the DCT coefficients before quantisation,
    ``Z = round(F * A / Q)`` - ``(A_luma, A_chroma)``, each broadcasting to that component's
    ``(..., rows, cols, 8, 8)`` blocks (jpegedit's attention pre-editing). The decoder does not
    know them: it dequantises with ``Q`` alone, as every JPEG decoder does.
    """
    image, gray = _split_image(image)
    image = _float(image)
    planes = [image[..., 0]] if gray else _mix(image, _RGB_TO_YCC, _YCC_OFFSET)
    return _encode_planes(planes, qtables, chroma, rounding, key, scales)


def decode_ycbcr(coefficients: Coefficients, qtables: jax.Array, *, round_samples: bool = False) -> jax.Array:
    """Dequantise, inverse DCT and (4:2:0) upsample to ``(..., H, W, C)`` sample planes.

    ``round_samples`` rounds and clamps every component plane to 0..255 after the inverse DCT, as a
    decoder producing 8-bit samples does (no gradient through that rounding).
    """
    return jnp.stack(_decode_planes(coefficients, qtables, round_samples), axis=-1)


def _decode_planes(coefficients: Coefficients, qtables, round_samples: bool) -> list[jax.Array]:
    q = _tables(qtables)
    co = coefficients
    h, w = co.height, co.width
    planes = []
    for i, (blocks, table) in enumerate(zip(co.components, _component_tables(q, len(co.components)))):
        # dequantize + IDCT as one 64x64 product (the table scales the IDCT's columns)
        p = unblockify(_block_matmul(blocks, _dct_kron().T, None, table)) + 128.0
        if round_samples:
            p = jnp.clip(round_half_away(p), 0.0, 255.0)
        if i > 0 and co.chroma == "420":
            p = upsample_420(p, h, w)
        planes.append(p[..., :h, :w])
    return planes


def decode(
    coefficients: Coefficients, qtables: jax.Array, *, round_samples: bool = False, clip: bool = True
) -> jax.Array:
    """Coefficients -> RGB ``(..., H, W, 3)`` (or ``(..., H, W, 1)``) float32 in 0..255 (clipped when ``clip``)."""
    planes = _decode_planes(coefficients, qtables, round_samples)
    if not coefficients.grayscale:
        planes = _mix(planes, _YCC_TO_RGB, -_YCC_TO_RGB @ _YCC_OFFSET)
    image = jnp.stack(planes, axis=-1)
    return jnp.clip(image, 0.0, 255.0) if clip else image


def roundtrip(
    image: jax.Array,
    qtables: jax.Array,
    *,
    chroma: Chroma = "444",
    rounding: Rounding = "cubic_ste",
    key: jax.Array | None = None,
    clip: bool = True,
    scales: tuple[jax.Array, ...] | None = None,
) -> tuple[jax.Array, Coefficients]:
    """What a JPEG decoder shows for ``image`` at ``qtables``: ``(decoded image, coefficients)``.

    The differentiable simulation the models train through (default ``cubic_ste``, the paper's).
    """
    co = encode(image, qtables, chroma=chroma, rounding=rounding, key=key, scales=scales)
    return decode(co, qtables, clip=clip), co
