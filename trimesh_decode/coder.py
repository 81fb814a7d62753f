"""An adaptive binary arithmetic coder (a range coder) for the preview format, compiled with numba.

One state array drives three modes, so the bitstream layout in :mod:`trimesh_decode.bitstream` is
written once and serves all three:

* ``ENCODE``: bits go in, bytes come out (LZMA-style range coder: 32-bit range, 33-bit ``low``
  with carry propagation through a cached byte and a run of 0xFF bytes);
* ``DECODE``: bytes go in, bits come out;
* ``COST``: nothing is written; ``-log2 p`` of every bit is added up (the ideal code length, what
  the hill-climbing encoder budgets with).

Probabilities are 16-bit integers ``p0 = P(bit == 0) * 65536`` in ``[1, 65535]``; adaptive
contexts move by 1/16 of the distance to the observed bit. All arithmetic is integer, so the
bytes are identical on every machine.

Termination is tight: the encoder picks, inside the final interval, the value with the most
trailing zero bits and drops every trailing zero byte; the decoder reads zeros past the end of the
data. LZMA's always-zero first byte is never written. So a preview pays for no flush bytes beyond
what its information needs (about one byte).
"""

from __future__ import annotations

import math

import numba
import numpy as np

ENCODE, DECODE, COST = 0, 1, 2

# Layout of the int64 state array.
S_MODE, S_LOW, S_RANGE, S_CACHE, S_CACHE_SIZE, S_POS, S_CODE, S_ERR, S_NBUF, S_FIRST = range(10)
STATE_SIZE = 10

#: Error codes a decode can leave in ``state[S_ERR]`` (0: none).
ERR_CORRUPT = 1  # the code value left the coding interval: no encoder wrote these bytes
ERR_OVERFLOW = 2  # the encoder's output buffer is full

PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS
HALF = PROB_ONE // 2
ADAPT_SHIFT = 4
TOP = 1 << 24
_LOG2_ONE = float(PROB_BITS)

jit = numba.njit(cache=True, nogil=True)
# the per-bit functions: inlined into their callers, so that the coder's state arrays are not
# reference-counted (atomically) on every bit; palette_bits took 22 us of it at 10 colours
inline = numba.njit(cache=True, nogil=True, inline="always")


def new_state(mode: int, nbuf: int) -> np.ndarray:
    st = np.zeros(STATE_SIZE, np.int64)
    st[S_MODE] = mode
    st[S_RANGE] = 0xFFFFFFFF
    st[S_CACHE_SIZE] = 1
    st[S_NBUF] = nbuf
    st[S_FIRST] = 1
    return st


@jit
def _emit(st, buf, byte):
    # The very first byte LZMA's scheme produces is always 0 (no carry can reach it): skip it.
    if st[S_FIRST] == 1:
        st[S_FIRST] = 0
        return
    pos = st[S_POS]
    if pos >= st[S_NBUF]:
        st[S_ERR] = ERR_OVERFLOW
        return
    buf[pos] = byte
    st[S_POS] = pos + 1


@jit
def _shift_low(st, buf):
    low = st[S_LOW]
    if low < 0xFF000000 or low >= (1 << 32):
        carry = low >> 32
        temp = st[S_CACHE]
        while True:
            _emit(st, buf, (temp + carry) & 0xFF)
            temp = 0xFF
            st[S_CACHE_SIZE] -= 1
            if st[S_CACHE_SIZE] == 0:
                break
        st[S_CACHE] = (low >> 24) & 0xFF
    st[S_CACHE_SIZE] += 1
    st[S_LOW] = (low & 0x00FFFFFF) << 8


@jit
def _next_byte(st, buf):
    pos = st[S_POS]
    st[S_POS] = pos + 1
    if pos < st[S_NBUF]:
        return np.int64(buf[pos])
    return np.int64(0)  # past the end: zeros (the encoder dropped trailing zero bytes)


@jit
def start_decoder(st, buf):
    code = np.int64(0)
    for _ in range(4):
        code = (code << 8) | _next_byte(st, buf)
    st[S_CODE] = code


@inline
def code_bit(st, buf, cost, bit, p0):
    """Code one bit with ``P(0) = p0 / 65536``; returns the bit (decoded in DECODE mode)."""
    mode = st[S_MODE]
    if mode == COST:
        cost[0] += bit_cost(bit, p0)
        return bit
    rng = st[S_RANGE]
    bound = (rng >> PROB_BITS) * p0
    if mode == ENCODE:
        if bit == 0:
            rng = bound
        else:
            st[S_LOW] += bound
            rng -= bound
        while rng < TOP:
            rng <<= 8
            _shift_low(st, buf)
        st[S_RANGE] = rng
        return bit
    code = st[S_CODE]
    if code >= rng:
        st[S_ERR] = ERR_CORRUPT
        return 0
    if code < bound:
        rng = bound
        out = 0
    else:
        code -= bound
        rng -= bound
        out = 1
    while rng < TOP:
        rng <<= 8
        code = (code << 8) | _next_byte(st, buf)
    st[S_RANGE] = rng
    st[S_CODE] = code
    return out


@inline
def adaptive_bit(st, buf, cost, probs, ctx, bit):
    """Code a bit with the adaptive probability ``probs[ctx]`` and update it."""
    b = code_bit(st, buf, cost, bit, probs[ctx])
    probs[ctx] = adapt(probs[ctx], b)
    return b


@inline
def fixed_bit(st, buf, cost, bit, n_zero, n):
    """Code a bit whose probability of 0 is ``n_zero / n`` (0 < n_zero < n), quantised to 16 bits."""
    return code_bit(st, buf, cost, bit, fixed_p0(n_zero, n))


# The model's three rules, shared by the coder and by costings that skip it
# (:func:`trimesh_decode.bitstream.estimate_bits_after`).


@jit
def bit_cost(bit, p0):
    """-log2 of the probability of ``bit`` under ``P(0) = p0 / 65536``: its ideal code length."""
    return _LOG2_ONE - math.log2(p0 if bit == 0 else PROB_ONE - p0)


@jit
def adapt(p0, bit):
    """An adaptive probability after it coded ``bit``: 1/16 of the way towards it, kept in range."""
    if bit == 0:
        p0 += (PROB_ONE - p0) >> ADAPT_SHIFT
    else:
        p0 -= p0 >> ADAPT_SHIFT
    return min(max(p0, 32), PROB_ONE - 32)


@jit
def fixed_p0(n_zero, n):
    """``P(0) = n_zero / n`` quantised to 16 bits (never 0 or 1)."""
    return min(max((n_zero << PROB_BITS) // n, 1), PROB_ONE - 1)


@inline
def uniform(st, buf, cost, value, n):
    """Code ``value`` in ``[0, n)`` with (nearly) equal probabilities: ``log2 n`` bits."""
    lo = np.int64(0)
    hi = np.int64(n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        bit = 1 if value >= mid else 0
        bit = fixed_bit(st, buf, cost, bit, mid - lo, hi - lo)
        if bit == 1:
            lo = mid
        else:
            hi = mid
    return lo


@jit
def finish_encoder(st, buf):
    """Flush: the value with the most trailing zero bits in [low, low + range), then drop zeros."""
    low = st[S_LOW]
    hi = low + st[S_RANGE]  # exclusive
    for k in range(33, -1, -1):
        unit = np.int64(1) << k
        x = ((low + unit - 1) >> k) << k
        if x < hi:
            st[S_LOW] = x
            break
    for _ in range(5):
        _shift_low(st, buf)
    n = st[S_POS]
    while n > 0 and buf[n - 1] == 0:
        n -= 1
    return n
