"""libjpeg-turbo's encoder arithmetic, bit for bit, in JAX: the *exact* path.

``encode`` gives the quantised coefficients libjpeg-turbo (Pillow's JPEG encoder, cjpeg with the
default ``-dct int``) writes for an 8-bit RGB or grayscale image, so that ``jpegedit encode`` and
libjpeg produce the same file content. It reproduces, in int32:

* ``jccolor.c``  RGB -> YCbCr in 16-bit fixed point (``SCALEBITS = 16``; Y rounds with ``ONE_HALF``,
  Cb and Cr with ``ONE_HALF - 1`` on top of the ``128 << 16`` offset);
* ``jcprepct.c`` / ``jcsample.c`` edge replication to whole blocks, and ``h2v2_downsample`` for 4:2:0
  (a 2x2 sum plus a bias alternating 1, 2, 1, 2 along each row, shifted right by 2);
* ``jfdctint.c`` the "islow" forward DCT (``CONST_BITS = 13``, ``PASS1_BITS = 2``; outputs are 8x
  the orthonormal DCT);
* ``jcdctmgr.c`` quantisation by ``8 q``, rounding half away from zero (libjpeg-turbo's reciprocal
  multiplication computes exactly this quotient).

and, for decoding, what libjpeg-turbo's decompressor (Pillow's ``Image.open``) shows:

* ``jidctint.c`` the "islow" inverse DCT with its range limit to 0..255;
* ``jdsample.c`` ``h2v2_fancy_upsample`` (the triangle filter, integer, biases 8 and 7), or plain
  replication when the chroma plane is at most 2 samples wide, as libjpeg-turbo does;
* ``jdcolor.c`` YCbCr -> RGB in 16-bit fixed point.

It has no gradient (everything is integer); the models train through :mod:`jpegedit.codec`.
Bit-exactness holds for the coefficients of real 8-bit images; adversarial coefficient values that
overflow libjpeg's own intermediate widths are not reproduced.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jpegedit.codec import Chroma, Coefficients, _component_tables, component_blocks, table_stack, unblockify

__all__ = [
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "downsample_h2v2",
    "upsample_h2v2",
    "fdct_islow",
    "idct_islow",
    "quantize",
    "encode",
    "encode_ycbcr",
    "decode",
    "decode_ycbcr",
]

_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)
_CBCR_OFFSET = 128 << _SCALEBITS


def _fix16(x: float) -> int:
    return int(x * (1 << _SCALEBITS) + 0.5)


def rgb_to_ycbcr(rgb: jax.Array) -> jax.Array:
    """``jccolor.c`` ``rgb_ycc_convert``: uint8-valued ``(..., 3)`` RGB -> int32 ``(..., 3)`` YCbCr."""
    rgb = jnp.asarray(rgb, jnp.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = (_fix16(0.29900) * r + _fix16(0.58700) * g + _fix16(0.11400) * b + _ONE_HALF) >> _SCALEBITS
    cb = (-_fix16(0.16874) * r - _fix16(0.33126) * g + _fix16(0.5) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> _SCALEBITS
    cr = (_fix16(0.5) * r - _fix16(0.41869) * g - _fix16(0.08131) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> _SCALEBITS
    return jnp.stack([y, cb, cr], axis=-1)


def downsample_h2v2(plane: jax.Array) -> jax.Array:
    """``jcsample.c`` ``h2v2_downsample`` of an int32 ``(..., H, W)`` plane (H, W even)."""
    *lead, h, w = plane.shape
    sums = plane.reshape(*lead, h // 2, 2, w // 2, 2).sum(axis=(-3, -1))
    bias = jnp.where(jnp.arange(w // 2) % 2 == 0, 1, 2).astype(jnp.int32)
    return (sums + bias) >> 2


# jfdctint.c constants: FIX(x) = round(x * 2^13).
_CONST_BITS = 13
_PASS1_BITS = 2
_F_0_298 = 2446
_F_0_390 = 3196
_F_0_541 = 4433
_F_0_765 = 6270
_F_0_899 = 7373
_F_1_175 = 9633
_F_1_501 = 12299
_F_1_847 = 15137
_F_1_961 = 16069
_F_2_053 = 16819
_F_2_562 = 20995
_F_3_072 = 25172


def _descale(x: jax.Array, n: int) -> jax.Array:
    return (x + (1 << (n - 1))) >> n


def _islow_pass(d: list[jax.Array], first: bool) -> list[jax.Array]:
    """One 1-D pass of ``jpeg_fdct_islow`` over eight int32 arrays (the eight samples of a row or column)."""
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    if first:
        out0 = (tmp10 + tmp11) << _PASS1_BITS
        out4 = (tmp10 - tmp11) << _PASS1_BITS
        shift = _CONST_BITS - _PASS1_BITS
    else:
        out0 = _descale(tmp10 + tmp11, _PASS1_BITS)
        out4 = _descale(tmp10 - tmp11, _PASS1_BITS)
        shift = _CONST_BITS + _PASS1_BITS
    z1 = (tmp12 + tmp13) * _F_0_541
    out2 = _descale(z1 + tmp13 * _F_0_765, shift)
    out6 = _descale(z1 - tmp12 * _F_1_847, shift)
    # odd part
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * _F_1_175
    tmp4 = tmp4 * _F_0_298
    tmp5 = tmp5 * _F_2_053
    tmp6 = tmp6 * _F_3_072
    tmp7 = tmp7 * _F_1_501
    z1 = z1 * -_F_0_899
    z2 = z2 * -_F_2_562
    z3 = z3 * -_F_1_961 + z5
    z4 = z4 * -_F_0_390 + z5
    out7 = _descale(tmp4 + z1 + z3, shift)
    out5 = _descale(tmp5 + z2 + z4, shift)
    out3 = _descale(tmp6 + z2 + z3, shift)
    out1 = _descale(tmp7 + z1 + z4, shift)
    return [out0, out1, out2, out3, out4, out5, out6, out7]


def fdct_islow(blocks: jax.Array) -> jax.Array:
    """``jpeg_fdct_islow`` of level-shifted int32 ``(..., 8, 8)`` blocks ``[y, x]``: int32 ``[v, u]``
    coefficients, 8x the orthonormal DCT, rounded as libjpeg rounds them."""
    blocks = jnp.asarray(blocks, jnp.int32)
    rows = _islow_pass([blocks[..., k] for k in range(8)], first=True)  # along x: u
    rows = jnp.stack(rows, axis=-1)
    cols = _islow_pass([rows[..., k, :] for k in range(8)], first=False)  # along y: v
    return jnp.stack(cols, axis=-2)


def quantize(fdct: jax.Array, table: jax.Array) -> jax.Array:
    """``jcdctmgr.c`` quantisation of ``fdct_islow`` output by an integer ``(8, 8)`` table: the
    quotient by ``8 q`` rounded half away from zero."""
    d = jnp.asarray(table, jnp.int32) << 3
    mag = (jnp.abs(fdct) + (d >> 1)) // d
    return jnp.where(fdct < 0, -mag, mag)


def _int_tables(qtables) -> np.ndarray:
    q = table_stack(qtables if isinstance(qtables, jax.core.Tracer) else np.asarray(qtables))
    if isinstance(q, jax.core.Tracer):
        return q.astype(jnp.int32)
    if not np.all(np.round(q) == q) or q.min() < 1 or q.max() > 32767:
        raise ValueError("the exact path needs integer quantisation tables in 1..32767")
    return q.astype(np.int32)


def encode_ycbcr(planes: jax.Array, qtables, *, chroma: Chroma = "444") -> Coefficients:
    """Encode int ``(..., H, W, C)`` YCbCr (C = 3) or Y (C = 1) samples with libjpeg's arithmetic."""
    planes = jnp.asarray(planes, jnp.int32)
    h, w, c = planes.shape[-3:]
    q = jnp.asarray(_int_tables(qtables))
    blocks = component_blocks([planes[..., i] for i in range(c)], chroma, downsample_h2v2)
    out = [quantize(fdct_islow(b - 128), t) for b, t in zip(blocks, _component_tables(q, c))]
    return Coefficients.assemble(out, h, w, chroma)


BAND_ROWS = 1024  # rows per band when a large image is encoded band by band (a multiple of 16)


def encode(image: jax.Array, qtables, *, chroma: Chroma = "444", max_band_pixels: int = 1 << 24) -> Coefficients:
    """The coefficients libjpeg-turbo writes for a uint8 RGB ``(..., H, W, 3)`` or grayscale
    ``(..., H, W, 1)`` image at ``qtables`` (e.g. ``codec.quality_to_tables(q)``).

    A single image with more than ``max_band_pixels`` pixels is encoded in bands of
    :data:`BAND_ROWS` rows, which bounds the memory the int32 arithmetic needs; the result is the
    same (every step of the encoder is local to a 16-row band).
    """
    if not isinstance(image, jax.Array):
        image = np.asarray(image)
    if image.ndim < 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image (..., H, W, 3) RGB or (..., H, W, 1) grayscale, got shape {image.shape}")
    if jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError("the exact path takes 8-bit integer samples (uint8), not floats")
    tables = jnp.asarray(_int_tables(qtables))
    h, w = image.shape[-3:-1]
    if image.ndim > 3 or h * w <= max_band_pixels or h <= BAND_ROWS:
        return _encode_jit(jnp.asarray(image), tables, chroma)
    bands = [_encode_jit(jnp.asarray(image[top : top + BAND_ROWS]), tables, chroma) for top in range(0, h, BAND_ROWS)]
    parts = [
        np.concatenate([np.asarray(b.components[i]) for b in bands], axis=0) for i in range(len(bands[0].components))
    ]
    return Coefficients.assemble(parts, h, w, chroma)


@functools.partial(jax.jit, static_argnums=2)
def _encode_jit(image: jax.Array, qtables: jax.Array, chroma: str) -> Coefficients:
    planes = image.astype(jnp.int32) if image.shape[-1] == 1 else rgb_to_ycbcr(image)
    return encode_ycbcr(planes, qtables, chroma=chroma)


# --- decoding --------------------------------------------------------------------------------


def _islow_inverse_pass(c: list[jax.Array], shift: int) -> list[jax.Array]:
    """One 1-D pass of ``jpeg_idct_islow`` over eight int32 arrays (coefficients 0..7 along an axis)."""
    z1 = (c[2] + c[6]) * _F_0_541
    tmp2 = z1 - c[6] * _F_1_847
    tmp3 = z1 + c[2] * _F_0_765
    tmp0 = (c[0] + c[4]) << _CONST_BITS
    tmp1 = (c[0] - c[4]) << _CONST_BITS
    tmp10, tmp13 = tmp0 + tmp3, tmp0 - tmp3
    tmp11, tmp12 = tmp1 + tmp2, tmp1 - tmp2
    # odd part
    tmp0, tmp1, tmp2, tmp3 = c[7], c[5], c[3], c[1]
    z1, z2, z3, z4 = tmp0 + tmp3, tmp1 + tmp2, tmp0 + tmp2, tmp1 + tmp3
    z5 = (z3 + z4) * _F_1_175
    tmp0 = tmp0 * _F_0_298
    tmp1 = tmp1 * _F_2_053
    tmp2 = tmp2 * _F_3_072
    tmp3 = tmp3 * _F_1_501
    z1 = z1 * -_F_0_899
    z2 = z2 * -_F_2_562
    z3 = z3 * -_F_1_961 + z5
    z4 = z4 * -_F_0_390 + z5
    tmp0 = tmp0 + z1 + z3
    tmp1 = tmp1 + z2 + z4
    tmp2 = tmp2 + z2 + z3
    tmp3 = tmp3 + z1 + z4
    return [
        _descale(tmp10 + tmp3, shift),
        _descale(tmp11 + tmp2, shift),
        _descale(tmp12 + tmp1, shift),
        _descale(tmp13 + tmp0, shift),
        _descale(tmp13 - tmp0, shift),
        _descale(tmp12 - tmp1, shift),
        _descale(tmp11 - tmp2, shift),
        _descale(tmp10 - tmp3, shift),
    ]


def idct_islow(coefficients: jax.Array, table: jax.Array) -> jax.Array:
    """``jpeg_idct_islow``: quantised ``(..., 8, 8)`` ``[v, u]`` blocks and their integer table ->
    8-bit samples ``[y, x]`` (int32 in 0..255, level shift undone)."""
    c = jnp.asarray(coefficients, jnp.int32) * jnp.asarray(table, jnp.int32)
    cols = _islow_inverse_pass([c[..., k, :] for k in range(8)], _CONST_BITS - _PASS1_BITS)  # along v
    ws = jnp.stack(cols, axis=-2)
    rows = _islow_inverse_pass([ws[..., k] for k in range(8)], _CONST_BITS + _PASS1_BITS + 3)  # along u
    return jnp.clip(jnp.stack(rows, axis=-1) + 128, 0, 255)


def upsample_h2v2(plane: jax.Array, height: int, width: int) -> jax.Array:
    """``jdsample.c`` 2x2 upsampling of an int32 chroma plane to ``(..., height, width)``: the plane is
    cut to its true size ``ceil(height/2) x ceil(width/2)`` (edge samples are replicated beyond it)
    and filtered with ``h2v2_fancy_upsample``, or replicated when at most 2 samples wide."""
    ch, cw = -(-height // 2), -(-width // 2)
    p = jnp.asarray(plane, jnp.int32)[..., :ch, :cw]
    if cw <= 2:
        up = jnp.repeat(jnp.repeat(p, 2, axis=-2), 2, axis=-1)
        return up[..., :height, :width]
    above = jnp.concatenate([p[..., :1, :], p[..., :-1, :]], axis=-2)
    below = jnp.concatenate([p[..., 1:, :], p[..., -1:, :]], axis=-2)
    colsum = jnp.stack([3 * p + above, 3 * p + below], axis=-2).reshape(*p.shape[:-2], 2 * ch, cw)
    left = jnp.concatenate([colsum[..., :1], colsum[..., :-1]], axis=-1)
    right = jnp.concatenate([colsum[..., 1:], colsum[..., -1:]], axis=-1)
    even = (3 * colsum + left + 8) >> 4
    odd = (3 * colsum + right + 7) >> 4
    up = jnp.stack([even, odd], axis=-1).reshape(*p.shape[:-2], 2 * ch, 2 * cw)
    return up[..., :height, :width]


def ycbcr_to_rgb(ycc: jax.Array) -> jax.Array:
    """``jdcolor.c`` ``ycc_rgb_convert``: int ``(..., 3)`` YCbCr -> int32 RGB in 0..255."""
    ycc = jnp.asarray(ycc, jnp.int32)
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128, ycc[..., 2] - 128
    r = y + ((_fix16(1.40200) * cr + _ONE_HALF) >> _SCALEBITS)
    g = y + ((-_fix16(0.34414) * cb + _ONE_HALF - _fix16(0.71414) * cr) >> _SCALEBITS)
    b = y + ((_fix16(1.77200) * cb + _ONE_HALF) >> _SCALEBITS)
    return jnp.clip(jnp.stack([r, g, b], axis=-1), 0, 255)


def decode_ycbcr(coefficients: Coefficients, qtables) -> jax.Array:
    """Coefficients -> int32 ``(..., H, W, C)`` component samples, upsampled, as libjpeg-turbo makes them."""
    co = coefficients
    q = jnp.asarray(_int_tables(qtables))
    planes = []
    for i, (blocks, table) in enumerate(zip(co.components, _component_tables(q, len(co.components)))):
        p = unblockify(idct_islow(blocks, table))
        if i > 0 and co.chroma == "420":
            p = upsample_h2v2(p, co.height, co.width)
        planes.append(p[..., : co.height, : co.width])
    return jnp.stack(planes, axis=-1)


def decode(coefficients: Coefficients, qtables) -> jax.Array:
    """The uint8 image libjpeg-turbo decodes (default settings: islow IDCT, fancy upsampling) from
    ``coefficients``: ``(..., H, W, 3)`` RGB, or ``(..., H, W, 1)`` for grayscale."""
    return _decode_jit(coefficients, jnp.asarray(_int_tables(qtables)))


@jax.jit
def _decode_jit(coefficients: Coefficients, qtables: jax.Array) -> jax.Array:
    planes = decode_ycbcr(coefficients, qtables)
    image = planes if coefficients.grayscale else ycbcr_to_rgb(planes)
    return image.astype(jnp.uint8)
