"""Progressive JPEG files (ITU-T T.81 Annex G) written from quantised coefficients, exactly.

libjpeg's transcoding path (``jpeg_write_coefficients``, which :mod:`jpegedit.jpegfile` drives through
jpeglib) writes only sequential files, and jpeglib's mozjpeg builds refuse coefficient input, so this
module is its own entropy coder. It writes the coefficients it is given, bit for bit (a test reads
them back with libjpeg), into an SOF2 file that every JPEG decoder reads, and chooses the scans for
the image:

* DC: one interleaved scan of every component (4:2:0 MCUs padded as libjpeg pads them);
* AC, per component: a successive-approximation depth ``Al`` (0..3 for luma, 0..2 for chroma) and a
  split of the band 1..63 into spectral-selection scans at any of the boundaries in
  :data:`SPLITS`, followed by one refinement scan of 1..63 per dropped bit. Every candidate scan is
  *counted* (its symbols and extra bits under its own optimal Huffman table, plus the bytes of its
  DHT and SOS segments), a shortest path over the boundaries gives the best split for each depth,
  and the cheapest depth wins. This is what mozjpeg's ``optimize_scans`` searches for, measured
  exactly rather than estimated;
* every scan has its own optimised Huffman table (at most 16-bit codes, none all ones).

The counting and the bit writing share one kernel per scan kind (DC first, DC refinement, AC first,
AC refinement), compiled with numba, so the sizes the search compares are the sizes written (before
0xFF byte stuffing).
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numba
import numpy as np

__all__ = ["Scan", "write", "scan_script", "single_scans", "ZIGZAG"]

jit = numba.njit(cache=True, nogil=True)

# ZIGZAG[k]: the natural-order (row-major) index of the k-th coefficient in zigzag order.
ZIGZAG = np.array(
    [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
     28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
     54, 47, 55, 62, 63],
    dtype=np.int64,
)  # fmt: skip

# Band starts the search may split 1..63 at (64: the end), and the deepest successive approximation
# tried for luma, Cb, Cr. On Kodak (6 images x 7 learned models) boundaries (1, 3, 6, 9, 13, 19, 27)
# and depths (3, 2, 2) made files 0.02% smaller than these at 5x the time (375 vs 70 ms per image);
# one 1..63 scan per component at depth 0 costs 0.1-0.6% more (8 ms).
SPLITS = (1, 3, 6, 9, 64)
MAX_AL = (1, 1, 1)
_MAX_CORR_BITS = 1000  # libjpeg's bound on buffered refinement bits before an EOB run is forced out
_MAX_EOBRUN = 0x7FFF


class Scan(NamedTuple):
    components: tuple[int, ...]  # component indices (several only for an interleaved DC scan)
    ss: int  # spectral selection start (zigzag index)
    se: int  # spectral selection end
    ah: int  # successive approximation: bit position of the previous scan (0: first scan)
    al: int  # bit position of this scan


# --- the bit writer --------------------------------------------------------------------------
# st[0]: bytes written, st[1]: bit accumulator, st[2]: bits in it, st[3]: bits counted (count mode).


@jit
def _put(buf, st, code, size):
    if size == 0:
        return
    acc = (st[1] << size) | (code & ((1 << size) - 1))
    n = st[2] + size
    while n >= 8:
        n -= 8
        b = (acc >> n) & 0xFF
        buf[st[0]] = b
        st[0] += 1
        if b == 0xFF:  # byte stuffing
            buf[st[0]] = 0
            st[0] += 1
    st[1] = acc & ((1 << n) - 1)
    st[2] = n


@jit
def _flush(buf, st):
    """Pad the last byte with one bits (T.81 F.1.2.3)."""
    if st[2] > 0:
        _put(buf, st, 0x7F, 8 - st[2])


@jit
def _symbol(emit, freq, codes, sizes, buf, st, s):
    if emit:
        _put(buf, st, codes[s], sizes[s])
    else:
        freq[s] += 1


@jit
def _bits(emit, buf, st, value, size):
    if emit:
        _put(buf, st, value, size)
    else:
        st[3] += size


@jit
def _nbits(v):
    n = 0
    while v:
        v >>= 1
        n += 1
    return n


# --- the four kinds of scan ------------------------------------------------------------------


@jit
def _dc_first(emit, dc, comp, table, al, freq, codes, sizes, buf, st):
    """``dc``: the DC values of the scan's blocks in MCU order, ``comp`` their component, ``table``
    each component's table (0 or 1). ``freq``/``codes``/``sizes`` are (2, 257)."""
    last = np.zeros(4, np.int64)
    for i in range(dc.shape[0]):
        c = comp[i]
        v = dc[i] >> al  # the point transform is an arithmetic shift
        diff = v - last[c]
        last[c] = v
        a = -diff if diff < 0 else diff
        n = _nbits(a)
        t = table[c]
        _symbol(emit, freq[t], codes[t], sizes[t], buf, st, n)
        _bits(emit, buf, st, diff - 1 if diff < 0 else diff, n)


@jit
def _dc_refine(emit, dc, al, buf, st):
    for i in range(dc.shape[0]):
        _bits(emit, buf, st, (dc[i] >> al) & 1, 1)


@jit
def _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr):
    """Emit the pending EOB run ``run[0]`` and then the ``ncorr[0]`` buffered correction bits."""
    if run[0] > 0:
        n = _nbits(run[0]) - 1
        _symbol(emit, freq, codes, sizes, buf, st, n << 4)
        _bits(emit, buf, st, run[0], n)
        run[0] = 0
    for i in range(ncorr[0]):
        _bits(emit, buf, st, corr[i], 1)
    ncorr[0] = 0


@jit
def _ac_first(emit, blocks, ss, se, al, freq, codes, sizes, buf, st):
    """``blocks``: (n, 64) coefficients in zigzag order, one component in raster order."""
    run = np.zeros(1, np.int64)
    corr = np.zeros(1, np.uint8)
    ncorr = np.zeros(1, np.int64)
    lim = (1 << al) - 1  # |v| <= lim: zero after the point transform
    for b in range(blocks.shape[0]):
        last = se
        while last >= ss and -lim <= blocks[b, last] <= lim:  # the block's last coefficient this scan codes
            last -= 1
        r = 0
        for k in range(ss, last + 1):
            v = np.int64(blocks[b, k])
            if v < 0:
                a = (-v) >> al
                extra = ~a
            else:
                a = v >> al
                extra = a
            if a == 0:
                r += 1
                continue
            _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)
            while r > 15:
                _symbol(emit, freq, codes, sizes, buf, st, 0xF0)
                r -= 16
            n = _nbits(a)
            _symbol(emit, freq, codes, sizes, buf, st, (r << 4) + n)
            _bits(emit, buf, st, extra, n)
            r = 0
        if last < se:
            run[0] += 1
            if run[0] == _MAX_EOBRUN:
                _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)
    _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)


@jit
def _ac_refine(emit, blocks, ss, se, al, freq, codes, sizes, buf, st):
    """The refinement of bit ``al`` of the band ss..se (T.81 G.1.2.3, as libjpeg's jcphuff.c orders
    its symbols, runs and correction bits)."""
    run = np.zeros(1, np.int64)
    corr = np.zeros(_MAX_CORR_BITS + 128, np.uint8)  # correction bits waiting for the next symbol
    ncorr = np.zeros(1, np.int64)  # of them, those owed to earlier blocks (the EOB run's) come first
    absv = np.zeros(64, np.int64)
    for b in range(blocks.shape[0]):
        eob = 0
        for k in range(ss, se + 1):
            v = np.int64(blocks[b, k])
            a = ((-v) if v < 0 else v) >> al
            absv[k] = a
            if a == 1:
                eob = k  # the last coefficient that becomes nonzero in this scan
        r = 0
        start = ncorr[0]  # this block's own correction bits are corr[start:ncorr]
        for k in range(ss, se + 1):
            a = absv[k]
            if a == 0:
                r += 1
                continue
            while r > 15 and k <= eob:
                # the run's earlier bits go out with the EOB run, this block's own with the ZRL
                own = ncorr[0] - start
                ncorr[0] = start
                _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)
                _symbol(emit, freq, codes, sizes, buf, st, 0xF0)
                r -= 16
                for i in range(own):
                    _bits(emit, buf, st, corr[start + i], 1)
                start = 0
            if a > 1:  # already nonzero: one correction bit, sent with the next symbol
                corr[ncorr[0]] = a & 1
                ncorr[0] += 1
                continue
            own = ncorr[0] - start
            ncorr[0] = start
            _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)
            _symbol(emit, freq, codes, sizes, buf, st, (r << 4) + 1)
            _bits(emit, buf, st, 0 if blocks[b, k] < 0 else 1, 1)
            for i in range(own):
                _bits(emit, buf, st, corr[start + i], 1)
            start = 0
            r = 0
        if r > 0 or ncorr[0] > start:
            # the block ends in an EOB: its correction bits join the run's (they follow in corr)
            run[0] += 1
            if run[0] == _MAX_EOBRUN or ncorr[0] > _MAX_CORR_BITS - 64 + 1:
                _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)
    _eobrun(emit, freq, codes, sizes, buf, st, run, corr, ncorr)


# --- Huffman tables ----------------------------------------------------------------------------


def _optimal_table(freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(bits, huffval)`` of an optimal JPEG Huffman table for symbol counts ``freq`` (256): code
    lengths at most 16, no code of all ones (a reserved symbol takes the longest code and is then
    dropped, as in T.81 K.2)."""
    symbols = [int(s) for s in np.nonzero(freq)[0]]
    heap = [(int(freq[s]), s, (s,)) for s in symbols] + [(1, 256, (256,))]
    heapq.heapify(heap)
    depth = dict.fromkeys(symbols + [256], 0)
    order = 257
    while len(heap) > 1:
        f1, _, a = heapq.heappop(heap)
        f2, _, b = heapq.heappop(heap)
        for s in a + b:
            depth[s] += 1
        heapq.heappush(heap, (f1 + f2, order, a + b))
        order += 1
    bits = np.zeros(64, np.int64)
    for d in depth.values():
        bits[d] += 1
    for i in range(63, 16, -1):  # K.3: move pairs of too-long codes up the tree
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # the reserved symbol's code
    huffval = sorted(symbols, key=lambda s: (depth[s], s))
    return bits[1:17].copy(), np.array(huffval, np.int64)


def _codes(bits: np.ndarray, huffval: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical codes and their lengths for every symbol (T.81 C.2)."""
    codes = np.zeros(257, np.int64)
    sizes = np.zeros(257, np.int64)
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(int(bits[length - 1])):
            s = int(huffval[k])
            codes[s], sizes[s] = code, length
            code += 1
            k += 1
        code <<= 1
    return codes, sizes


def _table_cost(freq: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Bits of the symbols under their optimal table plus the bits of its DHT entry."""
    bits, huffval = _optimal_table(freq)
    _, sizes = _codes(bits, huffval)
    return int(np.dot(freq[:256], sizes[:256])) + 8 * (17 + len(huffval)), bits, huffval


# --- components, MCUs and scans -----------------------------------------------------------------


class _Image(NamedTuple):
    height: int
    width: int
    sampling: tuple[tuple[int, int], ...]  # (h, v) per component
    blocks: tuple[np.ndarray, ...]  # (n, 64) int16 zigzag, raster order, per component
    grids: tuple[tuple[int, int], ...]  # block rows, cols per component
    mcu_dc: np.ndarray  # DC values of every block of the interleaved scan, MCU order
    mcu_comp: np.ndarray  # their component


def _image(components, height: int, width: int, chroma: str) -> _Image:
    sampling = ((2, 2) if chroma == "420" else (1, 1),) + ((1, 1),) * (len(components) - 1)
    if len(components) == 1:
        sampling = ((1, 1),)
    blocks, grids = [], []
    for a in components:
        a = np.asarray(a)
        grids.append(a.shape[:2])
        blocks.append(np.ascontiguousarray(a.reshape(-1, 64)[:, ZIGZAG], dtype=np.int16))
    hmax = max(h for h, _ in sampling)
    vmax = max(v for _, v in sampling)
    mcu_rows, mcu_cols = -(-height // (8 * vmax)), -(-width // (8 * hmax))
    if len(components) == 1:  # a single-component scan is never interleaved: raster order
        dc = blocks[0][:, 0].astype(np.int64)
        return _Image(height, width, sampling, tuple(blocks), tuple(grids), dc, np.zeros(dc.shape, np.int64))
    dcs, comps = [], []
    for c, (a, (h, v)) in enumerate(zip(components, sampling)):
        d = np.asarray(a)[..., 0, 0].astype(np.int64)
        # MCU padding: libjpeg's dummy blocks repeat the DC of the block beside them
        d = np.pad(d, ((0, mcu_rows * v - d.shape[0]), (0, mcu_cols * h - d.shape[1])), mode="edge")
        d = d.reshape(mcu_rows, v, mcu_cols, h).transpose(0, 2, 1, 3).reshape(mcu_rows * mcu_cols, v * h)
        dcs.append(d)
        comps.append(np.full(d.shape, c, np.int64))
    dc = np.concatenate(dcs, axis=1).ravel()
    comp = np.concatenate(comps, axis=1).ravel()
    return _Image(height, width, sampling, tuple(blocks), tuple(grids), dc, comp)


def _dc_tables(img: _Image) -> np.ndarray:
    return np.array([0] + [1] * (len(img.blocks) - 1) + [0] * (4 - len(img.blocks)), np.int64)


_NOBUF = np.zeros(1, np.uint8)
_NOCODES = np.zeros((2, 257), np.int64)


def _count(img: _Image, scan: Scan) -> tuple[int, list[np.ndarray]]:
    """``(extra bits, symbol counts per table)`` of one scan."""
    st = np.zeros(4, np.int64)
    if scan.ss == 0:
        if scan.ah:
            return len(img.mcu_dc), []
        freq = np.zeros((2, 257), np.int64)
        _dc_first(False, img.mcu_dc, img.mcu_comp, _dc_tables(img), scan.al, freq, _NOCODES, _NOCODES, _NOBUF, st)
        used = [freq[0]] + ([freq[1]] if len(img.blocks) > 1 else [])
        return int(st[3]), used
    freq = np.zeros(257, np.int64)
    kernel = _ac_refine if scan.ah else _ac_first
    (c,) = scan.components
    kernel(False, img.blocks[c], scan.ss, scan.se, scan.al, freq, _NOCODES[0], _NOCODES[0], _NOBUF, st)
    return int(st[3]), [freq]


def _scan_cost(img: _Image, scan: Scan) -> int:
    """Bits of the scan's data, its Huffman tables and its SOS segment."""
    extra, freqs = _count(img, scan)
    header = 8 * (2 + 2 + 1 + 2 * len(scan.components) + 3) + (8 * 4 if freqs else 0)  # SOS, DHT marker+length
    return extra + header + sum(_table_cost(f)[0] for f in freqs)


def scan_script(img: _Image, splits=SPLITS, max_al=MAX_AL) -> list[Scan]:
    """The cheapest script of the family described in the module docstring, for this image."""
    n = len(img.blocks)
    scans = [Scan(tuple(range(n)), 0, 0, 0, 0)]
    first, refine = [], []
    for c in range(n):
        best = None
        for al in range(max_al[min(c, 2)] + 1):
            # shortest path over the band boundaries: cost[j] = cheapest coding of 1..splits[j]-1
            cost = {0: (0, [])}
            for j in range(1, len(splits)):
                options = []
                for i in range(j):
                    s = Scan((c,), splits[i], splits[j] - 1, 0, al)
                    options.append((cost[i][0] + _scan_cost(img, s), cost[i][1] + [s]))
                cost[j] = min(options, key=lambda o: o[0])
            total, bands = cost[len(splits) - 1]
            refs = [Scan((c,), 1, 63, a + 1, a) for a in reversed(range(al))]
            total += sum(_scan_cost(img, s) for s in refs)
            if best is None or total < best[0]:
                best = (total, bands, refs)
        first += best[1]
        refine += best[2]
    first.sort(key=lambda s: (s.ss, s.components))
    refine.sort(key=lambda s: (-s.al, s.components))
    return scans + first + refine


# --- the file -----------------------------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _dht(tables: list[tuple[int, np.ndarray, np.ndarray]]) -> bytes:
    """One DHT segment: (class << 4 | id, bits, huffval) per table."""
    payload = b"".join(
        bytes([tc]) + bytes(bits.astype(np.uint8)) + bytes(hv.astype(np.uint8)) for tc, bits, hv in tables
    )
    return _segment(0xC4, payload)


def single_scans(n_components: int) -> list[Scan]:
    """The quick script: the DC scan and one 1..63 scan per component (what :func:`scan_script`
    improves on by 0.1-0.6%; never smaller than its choice, so an upper bound of the file size)."""
    return [Scan(tuple(range(n_components)), 0, 0, 0, 0)] + [Scan((c,), 1, 63, 0, 0) for c in range(n_components)]


def write(
    components, qtables: np.ndarray, height: int, width: int, chroma: str, script: list[Scan] | None = None
) -> bytes:
    """A progressive JPEG file (bytes) of ``components`` ((rows, cols, 8, 8) integer coefficients in
    natural order: Y, or Y, Cb, Cr) under integer ``qtables`` (one (8, 8) table per distinct
    component kind: luma, chroma). The checks on ranges are the caller's (:func:`jpegedit.jpegfile.write`)."""
    img = _image(components, height, width, chroma)
    script = scan_script(img) if script is None else script
    n = len(img.blocks)
    out = [b"\xff\xd8", _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    for t, q in enumerate(np.asarray(qtables)[: 1 if n == 1 else 2]):
        out.append(_segment(0xDB, bytes([t]) + bytes(np.asarray(q).reshape(64)[ZIGZAG].astype(np.uint8))))
    sof = bytearray([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([n])
    for c, (h, v) in enumerate(img.sampling):
        sof += bytes([c + 1, (h << 4) | v, 0 if c == 0 else 1])
    out.append(_segment(0xC2, bytes(sof)))
    total = sum(b.shape[0] for b in img.blocks)
    buf = np.zeros(total * 64 * 8 + 4096, np.uint8)  # far above any scan's size (incl. stuffing)
    for scan in script:
        st = np.zeros(4, np.int64)
        extra, freqs = _count(img, scan)
        codes = np.zeros((2, 257), np.int64)
        sizes = np.zeros((2, 257), np.int64)
        tables = []
        for t, f in enumerate(freqs):
            bits, hv = _optimal_table(f)
            codes[t], sizes[t] = _codes(bits, hv)
            tables.append(((0 if scan.ss == 0 else 0x10) | t, bits, hv))
        if tables:
            out.append(_dht(tables))
        # DC scans name their DC table (0 luma, 1 chroma) in the high nibble; an AC scan's one table is 0
        sos = bytearray([len(scan.components)])
        for c in scan.components:
            sos += bytes([c + 1, (min(c, 1) << 4) if scan.ss == 0 else 0])
        sos += bytes([scan.ss, scan.se, (scan.ah << 4) | scan.al])
        out.append(_segment(0xDA, bytes(sos)))
        if scan.ss == 0 and scan.ah:
            _dc_refine(True, img.mcu_dc, scan.al, buf, st)
        elif scan.ss == 0:
            _dc_first(True, img.mcu_dc, img.mcu_comp, _dc_tables(img), scan.al, _NOCODES.copy(), codes, sizes, buf, st)
        else:
            (c,) = scan.components
            kernel = _ac_refine if scan.ah else _ac_first
            kernel(True, img.blocks[c], scan.ss, scan.se, scan.al, np.zeros(257, np.int64), codes[0], sizes[0], buf, st)
        _flush(buf, st)
        out.append(buf[: st[0]].tobytes())
    out.append(b"\xff\xd9")
    return b"".join(out)
