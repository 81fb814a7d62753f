"""The preview format: a ~200-byte triangle-mesh image (Marwood et al., 2018), as bytes.

A :class:`Preview` holds a grid size, a palette of 2..32 colours (6-bit Y, Co, Cg), the palette
indices of the four image corners, and up to 1024 more vertices on distinct grid points, each with
a palette index. The decoder triangulates the vertices (:mod:`trimesh_decode.triangulate`) and
interpolates the colours (:mod:`trimesh_decode.raster`).

The bytes (see ``../shared/specs/triangle_preview.md``; our layout, not WebP 2's):

1. one raw byte, ``MAGIC`` (format and version);
2. then, under the adaptive binary arithmetic coder of :mod:`trimesh_decode.coder`:
   grid width and height, each uniform in [2, 256]; a 1-bit noise flag (carried, unused);
3. the palette size, uniform in [2, 32]; the first colour raw (3 x 6 bits); each next colour as the
   difference from the previous one, per channel a zero flag, the magnitude's bit length in unary,
   its remaining bits, and a sign (none for Cg: the palette is sorted by (Cg, Y, Co), strictly);
4. the number of non-corner vertices, uniform in [0, min(1024, GW*GH - 4)]; the four corners'
   palette indices (top-left, top-right, bottom-left, bottom-right), uniform;
5. a raster scan over the non-corner grid points: an occupancy bit with the fixed probability
   (vertices still to place) / (points still to scan) (an enumerative code of the vertex bitmap;
   it stops when no vertex is left), and for each vertex its palette index: an adaptive "same as
   the previous index" bit, else the index among the other entries, uniform;
6. one raw byte: the CRC-8 (polynomial 0x07) of everything before it. An arithmetic code has no
   end marker, so a cut-short preview can be the valid code of another preview; the check byte
   catches that (and corruption) with probability 255/256, the canonical-form check below the rest.

``from_bytes`` accepts exactly what ``to_bytes`` writes: any other input - truncated, with trailing
bytes, out-of-range values, random bytes - raises :class:`PreviewFormatError`, in time and memory
bounded by the size limits above.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from trimesh_decode import coder
from trimesh_decode.coder import adaptive_bit, code_bit, fixed_bit, jit, uniform
from trimesh_decode.colour import palette_keys, rgb_to_ycocg6, ycocg6_to_rgb

__all__ = [
    "MAGIC",
    "MAX_BYTES",
    "MAX_VERTICES",
    "PreviewFormatError",
    "Preview",
    "to_bytes",
    "from_bytes",
    "bit_cost",
    "estimate_bits",
    "estimate_bits_after",
    "palette_bits",
    "rgb_to_ycocg6",
    "ycocg6_to_rgb",
]

MAGIC = 0xB1  # 0xB: triangle preview, 0x1: version 1
MIN_GRID, MAX_GRID = 2, 256
MIN_COLOURS, MAX_COLOURS = 2, 32
MAX_VERTICES = 1024  # besides the four corners
MAX_BYTES = 4096  # the largest legal preview (256x256 grid, 1024 vertices, 32 colours) is far smaller

# Context numbers of the adaptive probabilities.
_CTX_ZERO = 0  # + channel
_CTX_LEN = 3  # + 5 * channel + position
_CTX_SIGN = 18  # + channel (Y, Co)
_CTX_SAME = 20
_N_CTX = 21

# Error codes of the layout (the coder's own are 1 and 2).
_ERR_COLOUR = 10
_ERR_GRID = 11


class PreviewFormatError(ValueError):
    """Bytes that are not a preview this codec wrote, or a preview that breaks the format's rules."""


# ---------------------------------------------------------------------------------------------
# The preview.


@dataclasses.dataclass(frozen=True, eq=False)
class Preview:
    """A triangle preview. Vertex coordinates are grid coordinates ``(x, y)``, ``0 <= x < grid_w``.

    ``vertices`` (k, 2) are the non-corner vertices in raster order (by y, then x), distinct;
    ``indices`` (k,) and ``corner_indices`` (4,: TL, TR, BL, BR) index ``palette`` (n, 3), 6-bit
    (Y, Co, Cg) colours sorted strictly by (Cg, Y, Co). Build one with :meth:`create`, which sorts
    and canonicalises, or construct it directly and it is checked.
    """

    grid_w: int
    grid_h: int
    palette: np.ndarray
    corner_indices: np.ndarray
    vertices: np.ndarray
    indices: np.ndarray
    noise: bool = False

    def __post_init__(self):
        object.__setattr__(self, "palette", np.asarray(self.palette, np.uint8).reshape(-1, 3))
        object.__setattr__(self, "corner_indices", np.asarray(self.corner_indices, np.int32).reshape(4))
        object.__setattr__(self, "vertices", np.asarray(self.vertices, np.int32).reshape(-1, 2))
        object.__setattr__(self, "indices", np.asarray(self.indices, np.int32).reshape(-1))
        object.__setattr__(self, "grid_w", int(self.grid_w))
        object.__setattr__(self, "grid_h", int(self.grid_h))
        object.__setattr__(self, "noise", bool(self.noise))
        self._check()

    def _check(self) -> None:
        gw, gh, n, k = self.grid_w, self.grid_h, len(self.palette), len(self.vertices)
        bad = PreviewFormatError
        if not (MIN_GRID <= gw <= MAX_GRID and MIN_GRID <= gh <= MAX_GRID):
            raise bad(f"grid {gw}x{gh} out of range (each side {MIN_GRID}..{MAX_GRID})")
        if not MIN_COLOURS <= n <= MAX_COLOURS:
            raise bad(f"palette has {n} colours, the format holds {MIN_COLOURS}..{MAX_COLOURS}")
        if int(self.palette.max()) > 63:
            raise bad("palette channels are 6-bit (0..63)")
        key = palette_keys(self.palette)
        if np.any(np.diff(key) <= 0):
            raise bad("palette must be sorted strictly by (Cg, Y, Co), without duplicates (use Preview.create)")
        if k > min(MAX_VERTICES, gw * gh - 4):
            raise bad(
                f"{k} vertices besides the corners; a {gw}x{gh} grid holds at most {min(MAX_VERTICES, gw * gh - 4)}"
            )
        if len(self.indices) != k:
            raise bad(f"{k} vertices but {len(self.indices)} palette indices")
        for name, idx in (("corner", self.corner_indices), ("vertex", self.indices)):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise bad(f"a {name} palette index is outside 0..{n - 1}")
        if k:
            x, y = self.vertices[:, 0].astype(np.int64), self.vertices[:, 1].astype(np.int64)
            if x.min() < 0 or y.min() < 0 or x.max() >= gw or y.max() >= gh:
                raise bad(f"a vertex lies outside the {gw}x{gh} grid")
            corner = ((x == 0) | (x == gw - 1)) & ((y == 0) | (y == gh - 1))
            if corner.any():
                raise bad("the corners are implicit vertices; list only the others")
            r = y * gw + x
            if np.any(np.diff(r) <= 0):
                raise bad("vertices must be distinct and in raster order (use Preview.create)")

    @classmethod
    def create(cls, grid_w, grid_h, palette, corner_indices, vertices, indices, noise=False) -> "Preview":
        """Canonical preview from any palette order and vertex order: sorts both, merges duplicate
        colours, drops vertices listed twice (keeping the first) and corners listed as vertices."""
        pal = np.asarray(palette, np.int64).reshape(-1, 3)
        if pal.size and (pal.min() < 0 or pal.max() > 63):
            raise PreviewFormatError("palette channels are 6-bit (0..63)")
        keys = palette_keys(pal)
        uniq, inverse = np.unique(keys, return_inverse=True)
        order = np.array([np.flatnonzero(keys == u)[0] for u in uniq], np.int64)
        new_pal = pal[order]
        ci = np.asarray(corner_indices, np.int64).reshape(4)
        idx = np.asarray(indices, np.int64).reshape(-1)
        v = np.asarray(vertices, np.int64).reshape(-1, 2)
        for name, a in (("corner", ci), ("vertex", idx)):
            if len(a) and (a.min() < 0 or a.max() >= len(pal)):
                raise PreviewFormatError(f"a {name} palette index is outside 0..{len(pal) - 1}")
        gw, gh = int(grid_w), int(grid_h)
        if len(v):
            corner = ((v[:, 0] == 0) | (v[:, 0] == gw - 1)) & ((v[:, 1] == 0) | (v[:, 1] == gh - 1))
            v, idx = v[~corner], idx[~corner]
            raster = v[:, 1] * gw + v[:, 0]
            _, first = np.unique(raster, return_index=True)
            v, idx = v[first], idx[first]
        return cls(gw, gh, new_pal, inverse[ci], v, inverse[idx] if len(idx) else idx, noise)

    @property
    def num_colours(self) -> int:
        return len(self.palette)

    def corner_points(self) -> np.ndarray:
        gw, gh = self.grid_w - 1, self.grid_h - 1
        return np.array([[0, 0], [gw, 0], [0, gh], [gw, gh]], np.int32)

    def all_points(self) -> np.ndarray:
        """(k + 4, 2): the corners (TL, TR, BL, BR), then the vertices in raster order."""
        return np.concatenate([self.corner_points(), self.vertices], 0)

    def all_indices(self) -> np.ndarray:
        return np.concatenate([self.corner_indices, self.indices])

    def rgb_palette(self) -> np.ndarray:
        return ycocg6_to_rgb(self.palette)

    def vertex_rgb(self) -> np.ndarray:
        """(k + 4, 3) uint8: the colour of every vertex, in :meth:`all_points` order."""
        return self.rgb_palette()[self.all_indices()]

    def __eq__(self, other) -> bool:
        if not isinstance(other, Preview):
            return NotImplemented
        return (
            (self.grid_w, self.grid_h, self.noise) == (other.grid_w, other.grid_h, other.noise)
            and np.array_equal(self.palette, other.palette)
            and np.array_equal(self.corner_indices, other.corner_indices)
            and np.array_equal(self.vertices, other.vertices)
            and np.array_equal(self.indices, other.indices)
        )

    def __repr__(self) -> str:
        return (
            f"Preview(grid={self.grid_w}x{self.grid_h}, colours={self.num_colours}, "
            f"vertices={len(self.vertices)}+4, noise={self.noise})"
        )


# ---------------------------------------------------------------------------------------------
# The layout: one function for encoding, decoding and costing.


@coder.inline
def _signed_delta(st, buf, cost, probs, ch, delta, signed):
    """Zero flag, unary bit length, mantissa, sign: the difference of one palette channel."""
    nonzero = adaptive_bit(st, buf, cost, probs, _CTX_ZERO + ch, 1 if delta != 0 else 0)
    if nonzero == 0:
        return 0
    mag = abs(delta)
    length = 0
    m = mag
    while m > 0:
        length += 1
        m >>= 1
    # unary: is the bit length greater than j + 1? (at most 6 bits for 1..63)
    n = 1
    for j in range(5):
        more = adaptive_bit(st, buf, cost, probs, _CTX_LEN + 5 * ch + j, 1 if length > j + 1 else 0)
        if more == 0:
            break
        n += 1
    value = np.int64(1)
    for j in range(n - 2, -1, -1):
        b = code_bit(st, buf, cost, (mag >> j) & 1, coder.HALF)
        value = (value << 1) | b
    if signed:
        neg = adaptive_bit(st, buf, cost, probs, _CTX_SIGN + ch, 1 if delta < 0 else 0)
        if neg == 1:
            return -value
    return value


@jit
def _header(st, buf, cost, probs, hdr, palette, corners):
    """What precedes the vertices: the palette part (:func:`_palette_header`), the vertex count and
    the corners' palette indices. ``hdr = [grid_w, grid_h, noise, n_colours, n_vertices]``; read in
    ENCODE/COST mode, filled in DECODE mode. Returns 0 or an error code."""
    err = _palette_header(st, buf, cost, probs, hdr, palette)
    if err:
        return err
    gw, gh, n = hdr[0], hdr[1], hdr[3]
    hdr[4] = uniform(st, buf, cost, hdr[4], min(MAX_VERTICES, gw * gh - 4) + 1)
    for c in range(4):
        corners[c] = uniform(st, buf, cost, corners[c], n)
    return 0


@jit
def _palette_header(st, buf, cost, probs, hdr, palette):
    """Grid size, noise flag, colour count, the palette (the first colour, then per channel the
    sorted deltas, Cg first: its difference is never negative)."""
    gw = uniform(st, buf, cost, hdr[0] - MIN_GRID, MAX_GRID - MIN_GRID + 1) + MIN_GRID
    gh = uniform(st, buf, cost, hdr[1] - MIN_GRID, MAX_GRID - MIN_GRID + 1) + MIN_GRID
    noise = code_bit(st, buf, cost, hdr[2], coder.HALF)
    hdr[0], hdr[1], hdr[2] = gw, gh, noise
    n = uniform(st, buf, cost, hdr[3] - MIN_COLOURS, MAX_COLOURS - MIN_COLOURS + 1) + MIN_COLOURS
    hdr[3] = n
    for c in range(3):
        palette[0, c] = uniform(st, buf, cost, palette[0, c], 64)
    for i in range(1, n):
        for c in (2, 0, 1):
            d = _signed_delta(st, buf, cost, probs, c, np.int64(palette[i, c]) - np.int64(palette[i - 1, c]), c != 2)
            v = np.int64(palette[i - 1, c]) + d
            if v < 0 or v > 63:
                return _ERR_COLOUR
            palette[i, c] = v
    return 0


@jit
def _vertex_index(st, buf, cost, probs, idx, prev, n):
    """A vertex's palette index: one adaptive "same as the previous vertex's" bit, else the index
    among the other ``n - 1``. Returns the index (decoded in DECODE mode)."""
    same = adaptive_bit(st, buf, cost, probs, _CTX_SAME, 1 if idx == prev else 0)
    if same == 1:
        return prev
    other = uniform(st, buf, cost, idx if idx < prev else idx - 1, n - 1)
    return other if other < prev else other + 1


@jit
def _layout(st, buf, cost, hdr, palette, corners, vx, vy, vidx):
    """hdr = [grid_w, grid_h, noise, n_colours, n_vertices]. ENCODE/COST read the arrays, DECODE
    fills them (palette (32, 3), vx/vy/vidx (1024,)). Returns 0 or an error code."""
    probs = np.full(_N_CTX, coder.HALF, np.int64)
    err = _header(st, buf, cost, probs, hdr, palette, corners)
    if err:
        return err
    gw, gh, n, k = hdr[0], hdr[1], hdr[3], hdr[4]
    npoints = gw * gh - 4
    prev = np.int64(corners[0])
    left = k
    remaining = npoints
    j = 0
    for y in range(gh):
        if left == 0:
            break
        for x in range(gw):
            if left == 0:
                break
            if (x == 0 or x == gw - 1) and (y == 0 or y == gh - 1):
                continue
            if st[coder.S_ERR] != 0:
                return st[coder.S_ERR]
            here = 1 if (j < k and vx[j] == x and vy[j] == y) else 0
            if left < remaining:
                here = fixed_bit(st, buf, cost, here, remaining - left, remaining)
            else:
                here = 1
            remaining -= 1
            if here == 0:
                continue
            vx[j] = x
            vy[j] = y
            idx = _vertex_index(st, buf, cost, probs, np.int64(vidx[j]), prev, n)
            vidx[j] = idx
            prev = idx
            j += 1
            left -= 1
    return st[coder.S_ERR]


def _arrays(p: Preview):
    hdr = np.array([p.grid_w, p.grid_h, int(p.noise), p.num_colours, len(p.vertices)], np.int64)
    pal = np.zeros((MAX_COLOURS, 3), np.int64)
    pal[: p.num_colours] = p.palette
    vx = np.full(MAX_VERTICES + 1, -1, np.int64)
    vy = np.full(MAX_VERTICES + 1, -1, np.int64)
    vidx = np.zeros(MAX_VERTICES + 1, np.int64)
    k = len(p.vertices)
    vx[:k], vy[:k], vidx[:k] = p.vertices[:, 0], p.vertices[:, 1], p.indices
    return hdr, pal, p.corner_indices.astype(np.int64), vx, vy, vidx


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC_TABLE[crc ^ byte]
    return crc


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def to_bytes(preview: Preview) -> bytes:
    """The preview's bytes (canonical: ``from_bytes`` inverts it exactly)."""
    buf = np.zeros(MAX_BYTES, np.uint8)
    st = coder.new_state(coder.ENCODE, MAX_BYTES)
    cost = np.zeros(1)
    err = _layout(st, buf, cost, *_arrays(preview))
    if err:  # pragma: no cover - a checked Preview always fits
        raise PreviewFormatError(f"cannot encode {preview!r} (coder error {err})")
    n = coder.finish_encoder(st, buf)
    head = bytes([MAGIC]) + buf[:n].tobytes()
    return head + bytes([_crc8(head)])


def bit_cost(preview: Preview) -> float:
    """The ideal code length in bits (what the arithmetic coder spends, to within a few bits),
    including the magic and check bytes."""
    st = coder.new_state(coder.COST, 0)
    cost = np.zeros(1)
    _layout(st, np.zeros(1, np.uint8), cost, *_arrays(preview))
    return 16.0 + float(cost[0])


def from_bytes(data: bytes) -> Preview:
    """Parse a preview; raises :class:`PreviewFormatError` naming what is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise PreviewFormatError("empty input: a preview has at least its format byte")
    if len(data) > MAX_BYTES:
        raise PreviewFormatError(f"{len(data)} bytes: longer than any preview ({MAX_BYTES} at most)")
    if data[0] != MAGIC:
        raise PreviewFormatError(f"not a triangle preview (first byte 0x{data[0]:02x}, expected 0x{MAGIC:02x})")
    if len(data) < 2:
        raise PreviewFormatError("truncated preview: only the format byte")
    if _crc8(data[:-1]) != data[-1]:
        raise PreviewFormatError("corrupt or truncated preview: the check byte does not match")
    body = np.frombuffer(data[:-1], np.uint8, offset=1)
    buf = np.zeros(max(len(body), 1), np.uint8)  # writable: one compiled layout serves every mode
    buf[: len(body)] = body
    st = coder.new_state(coder.DECODE, len(body))
    coder.start_decoder(st, buf)
    hdr = np.zeros(5, np.int64)
    pal = np.zeros((MAX_COLOURS, 3), np.int64)
    corners = np.zeros(4, np.int64)
    vx = np.full(MAX_VERTICES + 1, -1, np.int64)
    vy = np.full(MAX_VERTICES + 1, -1, np.int64)
    vidx = np.zeros(MAX_VERTICES + 1, np.int64)
    err = _layout(st, buf, np.zeros(1), hdr, pal, corners, vx, vy, vidx)
    if err == _ERR_COLOUR:
        raise PreviewFormatError("corrupt preview: a palette colour leaves the 6-bit range")
    if err:
        raise PreviewFormatError("corrupt preview: these bytes are not arithmetic-coded preview data")
    gw, gh, noise, n, k = (int(v) for v in hdr)
    try:
        p = Preview(gw, gh, pal[:n], corners, np.stack([vx[:k], vy[:k]], 1), vidx[:k], bool(noise))
    except PreviewFormatError as e:
        raise PreviewFormatError(f"corrupt preview: {e}") from None
    canonical = to_bytes(p)
    if canonical != data:
        if len(canonical) < len(data) and data.startswith(canonical):
            raise PreviewFormatError(
                f"{len(data) - len(canonical)} trailing bytes after a {len(canonical)}-byte preview"
            )
        if len(canonical) > len(data) and canonical.startswith(data):
            raise PreviewFormatError(f"truncated preview: {len(data)} of its {len(canonical)} bytes")
        raise PreviewFormatError("corrupt preview: the bytes do not match the preview they decode to")
    return p


@jit
def palette_bits(gw, gh, palette, n):
    """The ideal code length of the header's palette part (grid size, noise flag, colour count,
    palette): what :func:`estimate_bits_after` takes, so that a caller can keep it while only the
    vertices change."""
    st = np.zeros(coder.STATE_SIZE, np.int64)
    st[coder.S_MODE] = coder.COST
    cost = np.zeros(1)
    probs = np.full(_N_CTX, coder.HALF, np.int64)  # the palette's contexts; the vertices' is apart
    hdr = np.array([gw, gh, 0, n, 0], np.int64)
    _palette_header(st, np.zeros(1, np.uint8), cost, probs, hdr, palette)
    return cost[0]


@jit
def estimate_bits(gw, gh, palette, n, corners, order_indices, k):
    """Ideal code length in bits of a preview, fast: the layout's own cost, except the occupancy
    bits, taken in closed form (log2 C(points, k), what the enumerative code spends).

    ``palette`` (>= n, 3) sorted; ``order_indices`` the palette indices of the ``k`` non-corner
    vertices in raster order. Used by the hill-climbing encoder on every iteration.
    """
    return estimate_bits_after(palette_bits(gw, gh, palette, n), gw, gh, n, corners, order_indices, k)


@jit
def _uniform_bits(value, n):
    """:func:`~trimesh_decode.coder.uniform`'s code length for ``value`` in [0, n): the same
    bisection and 16-bit probabilities, without a coder."""
    lo, hi, acc = np.int64(0), np.int64(n), 0.0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        bit = 1 if value >= mid else 0
        acc += coder.bit_cost(bit, coder.fixed_p0(mid - lo, hi - lo))
        if bit == 1:
            lo = mid
        else:
            hi = mid
    return acc


@jit
def estimate_bits_after(head, gw, gh, n, corners, order_indices, k):
    """:func:`estimate_bits` given the palette part's length ``head`` (:func:`palette_bits`)."""
    acc = head + _uniform_bits(k, min(MAX_VERTICES, gw * gh - 4) + 1)
    for c in range(4):
        acc += _uniform_bits(corners[c], n)
    # The vertices' indices as _vertex_index codes them: the adaptive "same" bit's -log2 p (and
    # its update), else the uniform code of the index among the other n - 1 (its length tabulated
    # once per call).
    other = np.zeros(max(n - 1, 1))
    for v in range(n - 1):
        other[v] = _uniform_bits(v, n - 1)
    p0 = np.int64(coder.HALF)
    prev = np.int64(corners[0])
    for j in range(k):
        idx = np.int64(order_indices[j])
        same = 1 if idx == prev else 0
        acc += coder.bit_cost(same, p0)
        p0 = coder.adapt(p0, same)
        if not same:
            acc += other[idx if idx < prev else idx - 1]
            prev = idx
    npoints = gw * gh - 4
    occupancy = (math.lgamma(npoints + 1) - math.lgamma(k + 1) - math.lgamma(npoints - k + 1)) / math.log(2.0)
    return 16.0 + acc + occupancy
