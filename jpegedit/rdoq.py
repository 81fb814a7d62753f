"""Rate-distortion optimised quantisation (a trellis over each block's run-length code) on top of
the learned tables and attention.

The learned encoder's coefficients are ``round(F * A / Q)``: the attention ``A`` edits the image
before rounding. A trellis goes further: for every block it picks, jointly for all 63 AC
coefficients, the integer values that minimise

    squared error in RGB  +  lam * bits,

where a coefficient may keep the attention's value ``round(F * A / Q)``, plain rounding
``round(F / Q)``, either moved one step towards zero, or zero, and the bits are those of the
progressive file's first AC scan (:mod:`jpegedit.progressive`): the code length of each run/size
symbol under that component's optimal Huffman table, the value's extra bits, the ZRLs of long runs,
and for a block that ends early its share of the EOB runs. The code lengths come from the
coefficients themselves (counted by the progressive coder) and are re-counted after each pass.
The search is exact per block (dynamic programming over the position of the last nonzero
coefficient, O(63^2) per block, pruned to the positions that can be nonzero); DC stays as it is.

The error is the decoded image's against the original, not against the attention's edit: the
trellis decides for itself where zeros pay, and the attention only proposes values. ``lam`` is in
squared-error units per bit; :func:`lam_for_tables` scales a dimensionless ``alpha`` by the mean
squared luma step, so one ``alpha`` suits every model of a family.
"""

from __future__ import annotations

import jax.numpy as jnp
import numba
import numpy as np

from jpegedit import codec
from jpegedit import progressive as _progressive

__all__ = ["quantise", "transform", "quantise_transformed", "lam_for_tables", "CHANNEL_WEIGHTS"]

jit = numba.njit(cache=True, nogil=True)

# Squared RGB error per unit squared error of Y, Cb, Cr (the JFIF inverse transform's column norms:
# R = Y + 1.402 Cr, G = Y - 0.344 Cb - 0.714 Cr, B = Y + 1.772 Cb); the errors of different
# components are independent, so their cross terms average out.
CHANNEL_WEIGHTS = (3.0, 0.344136**2 + 1.772**2, 1.402**2 + 0.714136**2)


def lam_for_tables(tables: np.ndarray, alpha: float) -> float:
    """``alpha`` times the mean squared step of the luma table (squared-error units per bit)."""
    q = np.asarray(tables, np.float64).reshape(-1, 64)[0]
    return float(alpha * np.mean(q**2))


@jit
def _trellis(f, t, dc, q, weight, lam, aclen, eob, out):
    """``f``: (n, 64) F / Q in zigzag order, ``t``: F * A / Q, ``dc``: the DC values to keep, ``q``:
    the 64 steps (zigzag), ``weight``: (64,) each coefficient's squared-error weight (zigzag),
    ``aclen``: code lengths of the 256 AC symbols, ``eob``: bits of ending a block early. Writes the
    chosen coefficients into ``out`` (n, 64)."""
    n = f.shape[0]
    big = 1e300
    best = np.empty(64)
    prev = np.empty(64, np.int64)
    val = np.empty(64, np.int64)
    zero = np.empty(64)  # zero[j]: error of zeroing coefficients 1..j
    cands = np.empty(4, np.int64)
    live = np.empty(64, np.int64)
    w2 = np.empty(64)
    for k in range(64):
        w2[k] = weight[k] * q[k] * q[k]
    for b in range(n):
        zero[0] = 0.0
        for k in range(1, 64):
            zero[k] = zero[k - 1] + w2[k] * f[b, k] * f[b, k]
        best[0] = 0.0
        nlive = 1
        live[0] = 0
        for j in range(1, 64):
            best[j] = big
            # candidate values: the attention's and plain rounding, each also one step towards zero
            nc = 0
            for src in range(2):
                x = t[b, j] if src == 0 else f[b, j]
                r = np.int64(np.floor(abs(x) + 0.5))
                if x < 0:
                    r = -r
                for v in (r, r - 1 if r > 0 else (r + 1 if r < 0 else 0)):
                    if v == 0 or abs(v) > 1023:
                        continue
                    dup = False
                    for c in range(nc):
                        if cands[c] == v:
                            dup = True
                    if not dup:
                        cands[nc] = v
                        nc += 1
            for c in range(nc):
                v = cands[c]
                s = _progressive._nbits(abs(v))
                d = w2[j] * (f[b, j] - v) * (f[b, j] - v)
                for li in range(nlive):
                    i = live[li]
                    r = j - i - 1
                    bits = (r >> 4) * aclen[0xF0] + aclen[((r & 15) << 4) | s] + s
                    cost = best[i] + (zero[j - 1] - zero[i]) + d + lam * bits
                    if cost < best[j]:
                        best[j] = cost
                        prev[j] = i
                        val[j] = v
            if best[j] < big:
                live[nlive] = j
                nlive += 1
        # the block ends after its last nonzero coefficient i (i == 63: no EOB)
        end, endcost = 0, big
        for li in range(nlive):
            i = live[li]
            cost = best[i] + (zero[63] - zero[i]) + (lam * eob if i < 63 else 0.0)
            if cost < endcost:
                end, endcost = i, cost
        for k in range(64):
            out[b, k] = 0
        out[b, 0] = dc[b]
        j = end
        while j > 0:
            out[b, j] = val[j]
            j = prev[j]


def _code_lengths(blocks: np.ndarray) -> tuple[np.ndarray, float]:
    """AC code lengths (256) of a component's first AC scan and the bits per early-ending block."""
    freq = np.zeros(257, np.int64)
    st = np.zeros(4, np.int64)
    z = np.zeros(1, np.uint8)
    nocodes = np.zeros(257, np.int64)
    _progressive._ac_first(False, blocks, 1, 63, 0, freq, nocodes, nocodes, z, st)
    bits, huffval = _progressive._optimal_table(freq)
    _, sizes = _progressive._codes(bits, huffval)
    lengths = sizes[:256].astype(np.float64)
    lengths[freq[:256] == 0] = 17.0  # a symbol not yet used would cost about a long code
    ended = int(np.sum(blocks[:, 63] == 0))
    eob_bits = sum(freq[e << 4] * (sizes[e << 4] + e) for e in range(15))
    return lengths, float(eob_bits) / max(1, ended)


def transform(image: np.ndarray, attention: tuple | None = None) -> list[np.ndarray]:
    """The DCT coefficients ``F`` (or ``F * A`` with attention maps) of ``image`` (uint8 RGB, 4:4:4)
    per component, (rows, cols, 8, 8) float64: what :func:`quantise_transformed` divides by any
    tables, so that a caller trying several tables transforms once."""
    ones = np.ones((2, 8, 8), np.float32)
    co = codec.encode(jnp.asarray(image, jnp.float32), ones, rounding="none", scales=attention)
    return [np.asarray(c, np.float64) for c in co.components]


def quantise_transformed(
    plain: list[np.ndarray],
    edited: list[np.ndarray],
    tables: np.ndarray,
    lam: float,
    height: int,
    width: int,
    passes: int = 2,
    step_power: float = 0.0,
) -> codec.Coefficients:
    """The trellis on coefficients from :func:`transform`: ``plain`` (``F``) and ``edited``
    (``F * A``; the same arrays without attention) under integer ``tables``. ``step_power`` p > 0
    weighs each coefficient's squared error by ``(mean step / step) ** p`` (the mean over the
    component's AC steps): errors where the tables are fine count more, as in mozjpeg's trellis;
    0: plain squared error in RGB (what PSNR measures)."""
    zz = _progressive.ZIGZAG
    qs = np.asarray(tables, np.float64).reshape(-1, 64)
    comps = []
    for c, (fp, fe) in enumerate(zip(plain, edited)):
        q = qs[min(c, len(qs) - 1)]
        f = (fp.reshape(-1, 64) / q)[:, zz]
        t = (fe.reshape(-1, 64) / q)[:, zz]
        cur = (np.sign(t) * np.floor(np.abs(t) + 0.5)).astype(np.int64)  # round half away: the plain encoder's
        dc = cur[:, 0].copy()
        weight = CHANNEL_WEIGHTS[c] * (np.mean(q[1:]) / q[zz]) ** step_power
        for _ in range(passes):
            lengths, eob = _code_lengths(np.clip(cur, -1023, 1023).astype(np.int16))
            nxt = np.empty_like(cur)
            _trellis(f, t, dc, q[zz], weight, lam, lengths, eob, nxt)
            cur = nxt
        natural = np.empty_like(cur)
        natural[:, zz] = cur
        comps.append(natural.reshape(*fp.shape[:2], 8, 8).astype(np.int16))
    return codec.Coefficients(*comps, height, width, "444")


def quantise(
    image: np.ndarray, tables: np.ndarray, lam: float, attention: tuple | None = None, passes: int = 2
) -> codec.Coefficients:
    """Trellis-quantised coefficients of ``image`` (uint8 RGB, 4:4:4) under integer ``tables`` (and
    the attention maps, if given) at rate weight ``lam`` (see :func:`lam_for_tables`)."""
    plain = transform(image)
    edited = transform(image, attention) if attention is not None else plain
    return quantise_transformed(plain, edited, tables, lam, image.shape[0], image.shape[1], passes)
