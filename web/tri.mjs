// tri.mjs: the plain decoder of compat-codecs triangle previews (format byte 0xB1), in JavaScript.
//
// An ES module without dependencies, a port of trimesh_decode's Python decoder: the range decoder
// and the canonical-form check (bitstream.py, coder.py), the integer Bowyer-Watson triangulation
// (triangulate.py) and the float32 rasteriser (raster_cpu.py). Every triangle is the Python
// decoder's; colours agree within one level (float32 rounding). Malformed input throws one
// PreviewFormatError, in time bounded by the format's size limits.
//
//   import { decodePreview } from "./tri.mjs";
//   const { width, height, data } = decodePreview(bytes, { size: 256 }); // RGBA, ImageData-ready
//   ctx.putImageData(new ImageData(data, width, height), 0, 0);

export const MAGIC = 0xb1;
export const MAX_BYTES = 4096;
export const MAX_VERTICES = 1024;
const MIN_GRID = 2, MAX_GRID = 256, MIN_COLOURS = 2, MAX_COLOURS = 32;
const CTX_ZERO = 0, CTX_LEN = 3, CTX_SIGN = 18, CTX_SAME = 20, N_CTX = 21;
const ERR_CORRUPT = 1, ERR_COLOUR = 10;
const ENCODE = 0, DECODE = 1;
const PROB_ONE = 65536, HALF = 32768, TOP = 16777216, TWO32 = 4294967296;

/** Bytes that are not a preview this codec wrote. */
export class PreviewFormatError extends Error {
  constructor(message) {
    super(message);
    this.name = "PreviewFormatError";
  }
}

// ---- the range coder (integers kept exact in doubles: low < 2^34, range < 2^32) ----

function newState(mode, buf, nbuf) {
  return { mode, buf, nbuf, low: 0, range: 0xffffffff, cache: 0, cacheSize: 1, pos: 0, code: 0, err: 0, first: true };
}

function emit(st, byte) {
  if (st.first) { st.first = false; return; } // LZMA's first byte is always 0: never written
  if (st.pos >= st.nbuf) { st.err = 2; return; }
  st.buf[st.pos++] = byte;
}

function shiftLow(st) {
  const low = st.low;
  if (low < 0xff000000 || low >= TWO32) {
    const carry = low >= TWO32 ? 1 : 0;
    let temp = st.cache;
    do {
      emit(st, (temp + carry) & 0xff);
      temp = 0xff;
    } while (--st.cacheSize !== 0);
    st.cache = Math.floor(low / TOP) & 0xff;
  }
  st.cacheSize++;
  st.low = (low % TOP) * 256;
}

function nextByte(st) {
  const p = st.pos++;
  return p < st.nbuf ? st.buf[p] : 0; // past the end: zeros (the encoder drops trailing zero bytes)
}

function codeBit(st, bit, p0) {
  let range = st.range;
  const bound = (range >>> 16) * p0;
  if (st.mode === ENCODE) {
    if (bit === 0) range = bound;
    else { st.low += bound; range -= bound; }
    while (range < TOP) { range *= 256; shiftLow(st); }
    st.range = range;
    return bit;
  }
  let code = st.code, out;
  if (code >= range) { st.err = ERR_CORRUPT; return 0; }
  if (code < bound) { range = bound; out = 0; }
  else { code -= bound; range -= bound; out = 1; }
  while (range < TOP) { range *= 256; code = code * 256 + nextByte(st); }
  st.range = range;
  st.code = code;
  return out;
}

function adaptiveBit(st, probs, ctx, bit) {
  let p0 = probs[ctx];
  const b = codeBit(st, bit, p0);
  if (b === 0) p0 += (PROB_ONE - p0) >> 4;
  else p0 -= p0 >> 4;
  probs[ctx] = Math.min(Math.max(p0, 32), PROB_ONE - 32);
  return b;
}

function fixedBit(st, bit, nZero, n) {
  const p0 = Math.min(Math.max(Math.floor((nZero * PROB_ONE) / n), 1), PROB_ONE - 1);
  return codeBit(st, bit, p0);
}

function uniform(st, value, n) {
  let lo = 0, hi = n;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const bit = fixedBit(st, value >= mid ? 1 : 0, mid - lo, hi - lo);
    if (bit === 1) lo = mid; else hi = mid;
  }
  return lo;
}

function finishEncoder(st) {
  const low = st.low, hi = low + st.range;
  for (let k = 33; k >= 0; k--) {
    const unit = 2 ** k;
    const x = Math.floor((low + unit - 1) / unit) * unit;
    if (x < hi) { st.low = x; break; }
  }
  for (let i = 0; i < 5; i++) shiftLow(st);
  let n = st.pos;
  while (n > 0 && st.buf[n - 1] === 0) n--;
  return n;
}

// ---- the layout: one function writes and reads (bitstream.py's _layout) ----

function signedDelta(st, probs, ch, delta, signed) {
  if (adaptiveBit(st, probs, CTX_ZERO + ch, delta !== 0 ? 1 : 0) === 0) return 0;
  const mag = Math.abs(delta);
  let length = 0;
  for (let m = mag; m > 0; m >>= 1) length++;
  let n = 1;
  for (let j = 0; j < 5; j++) {
    if (adaptiveBit(st, probs, CTX_LEN + 5 * ch + j, length > j + 1 ? 1 : 0) === 0) break;
    n++;
  }
  let value = 1;
  for (let j = n - 2; j >= 0; j--) value = (value << 1) | codeBit(st, (mag >> j) & 1, HALF);
  if (signed && adaptiveBit(st, probs, CTX_SIGN + ch, delta < 0 ? 1 : 0) === 1) return -value;
  return value;
}

function layout(st, p) {
  // p: {gw, gh, noise, n, k, palette (Int32Array 96), corners (4), vx, vy, vidx}; read when
  // encoding, filled when decoding. Returns 0 or an error code.
  const probs = new Int32Array(N_CTX).fill(HALF);
  const gw = (p.gw = uniform(st, p.gw - MIN_GRID, MAX_GRID - MIN_GRID + 1) + MIN_GRID);
  const gh = (p.gh = uniform(st, p.gh - MIN_GRID, MAX_GRID - MIN_GRID + 1) + MIN_GRID);
  p.noise = codeBit(st, p.noise, HALF);
  const n = (p.n = uniform(st, p.n - MIN_COLOURS, MAX_COLOURS - MIN_COLOURS + 1) + MIN_COLOURS);
  const pal = p.palette;
  for (let c = 0; c < 3; c++) pal[c] = uniform(st, pal[c], 64);
  for (let i = 1; i < n; i++) {
    for (const c of [2, 0, 1]) {
      const d = signedDelta(st, probs, c, pal[3 * i + c] - pal[3 * (i - 1) + c], c !== 2);
      const v = pal[3 * (i - 1) + c] + d;
      if (v < 0 || v > 63) return ERR_COLOUR;
      pal[3 * i + c] = v;
    }
  }
  const k = (p.k = uniform(st, p.k, Math.min(MAX_VERTICES, gw * gh - 4) + 1));
  for (let c = 0; c < 4; c++) p.corners[c] = uniform(st, p.corners[c], n);
  let prev = p.corners[0], left = k, remaining = gw * gh - 4, j = 0;
  for (let y = 0; y < gh && left > 0; y++) {
    for (let x = 0; x < gw && left > 0; x++) {
      if ((x === 0 || x === gw - 1) && (y === 0 || y === gh - 1)) continue;
      if (st.err) return st.err;
      let here = j < k && p.vx[j] === x && p.vy[j] === y ? 1 : 0;
      here = left < remaining ? fixedBit(st, here, remaining - left, remaining) : 1;
      remaining--;
      if (here === 0) continue;
      p.vx[j] = x;
      p.vy[j] = y;
      const idx = p.vidx[j];
      let out;
      if (adaptiveBit(st, probs, CTX_SAME, idx === prev ? 1 : 0) === 1) out = prev;
      else {
        const other = uniform(st, idx < prev ? idx : idx - 1, n - 1);
        out = other < prev ? other : other + 1;
      }
      p.vidx[j] = out;
      prev = out;
      j++;
      left--;
    }
  }
  return st.err;
}

const CRC_TABLE = (() => {
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let b = 0; b < 8; b++) c = c & 0x80 ? ((c << 1) ^ 0x07) & 0xff : (c << 1) & 0xff;
    t[i] = c;
  }
  return t;
})();

function crc8(bytes, end) {
  let crc = 0;
  for (let i = 0; i < end; i++) crc = CRC_TABLE[crc ^ bytes[i]];
  return crc;
}

function emptyFields() {
  return {
    gw: 0, gh: 0, noise: 0, n: 0, k: 0,
    palette: new Int32Array(3 * MAX_COLOURS), corners: new Int32Array(4),
    vx: new Int32Array(MAX_VERTICES + 1).fill(-1), vy: new Int32Array(MAX_VERTICES + 1).fill(-1),
    vidx: new Int32Array(MAX_VERTICES + 1),
  };
}

function toBytes(p) {
  const buf = new Uint8Array(MAX_BYTES);
  const st = newState(ENCODE, buf, MAX_BYTES);
  const q = { ...p, palette: p.palette.slice(), corners: p.corners.slice(), vx: p.vx.slice(), vy: p.vy.slice(), vidx: p.vidx.slice() };
  if (layout(st, q)) return null;
  const n = finishEncoder(st);
  const out = new Uint8Array(n + 2);
  out[0] = MAGIC;
  out.set(buf.subarray(0, n), 1);
  out[n + 1] = crc8(out, n + 1);
  return out;
}

const paletteKey = (pal, i) => (pal[3 * i + 2] << 12) | (pal[3 * i] << 6) | pal[3 * i + 1];

/**
 * Parse a preview. Returns {gridW, gridH, noise, palette (n x [Y, Co, Cg]), corners (4 palette
 * indices: TL, TR, BL, BR), vertices ([x, y] grid points in raster order), indices}; throws
 * PreviewFormatError for anything to_bytes would not have written.
 */
export function parsePreview(input) {
  const data = input instanceof Uint8Array ? input : new Uint8Array(input);
  if (data.length === 0) throw new PreviewFormatError("empty input: a preview has at least its format byte");
  if (data.length > MAX_BYTES) throw new PreviewFormatError(`${data.length} bytes: longer than any preview (${MAX_BYTES} at most)`);
  if (data[0] !== MAGIC) {
    const hex = (b) => b.toString(16).padStart(2, "0");
    throw new PreviewFormatError(`not a triangle preview (first byte 0x${hex(data[0])}, expected 0x${hex(MAGIC)})`);
  }
  if (data.length < 2) throw new PreviewFormatError("truncated preview: only the format byte");
  if (crc8(data, data.length - 1) !== data[data.length - 1]) throw new PreviewFormatError("corrupt or truncated preview: the check byte does not match");
  const body = data.subarray(1, data.length - 1);
  const st = newState(DECODE, body, body.length);
  for (let i = 0; i < 4; i++) st.code = st.code * 256 + nextByte(st);
  const p = emptyFields();
  const err = layout(st, p);
  if (err === ERR_COLOUR) throw new PreviewFormatError("corrupt preview: a palette colour leaves the 6-bit range");
  if (err) throw new PreviewFormatError("corrupt preview: these bytes are not arithmetic-coded preview data");
  for (let i = 1; i < p.n; i++) {
    if (paletteKey(p.palette, i) <= paletteKey(p.palette, i - 1)) {
      throw new PreviewFormatError("corrupt preview: palette must be sorted strictly by (Cg, Y, Co), without duplicates (use Preview.create)");
    }
  }
  const canonical = toBytes(p);
  if (canonical === null || !equal(canonical, data)) {
    if (canonical && canonical.length < data.length && equal(canonical, data.subarray(0, canonical.length))) {
      throw new PreviewFormatError(`${data.length - canonical.length} trailing bytes after a ${canonical.length}-byte preview`);
    }
    if (canonical && canonical.length > data.length && equal(canonical.subarray(0, data.length), data)) {
      throw new PreviewFormatError(`truncated preview: ${data.length} of its ${canonical.length} bytes`);
    }
    throw new PreviewFormatError("corrupt preview: the bytes do not match the preview they decode to");
  }
  const palette = [], vertices = [];
  for (let i = 0; i < p.n; i++) palette.push([p.palette[3 * i], p.palette[3 * i + 1], p.palette[3 * i + 2]]);
  for (let j = 0; j < p.k; j++) vertices.push([p.vx[j], p.vy[j]]);
  return { gridW: p.gw, gridH: p.gh, noise: p.noise === 1, palette, corners: Array.from(p.corners), vertices, indices: Array.from(p.vidx.subarray(0, p.k)) };
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** 6-bit (Y, Co, Cg) to RGB 0..255, the spec's integer formulas. */
export function ycocgToRgb([y, co, cg]) {
  const c = (v) => Math.min(Math.max(v, 0), 255);
  return [c(4 * (y - cg + co)), c(4 * (y + cg) - 128), c(4 * (y - cg - co) + 256)];
}

// ---- the triangulation (triangulate.py: Bowyer-Watson, strict in-circle, raster insertion) ----

const orient = (ax, ay, bx, by, cx, cy) => (bx - ax) * (cy - ay) - (by - ay) * (cx - ax);

function incircle(ax, ay, bx, by, cx, cy, dx, dy) {
  const adx = ax - dx, ady = ay - dy, bdx = bx - dx, bdy = by - dy, cdx = cx - dx, cdy = cy - dy;
  const ad = adx * adx + ady * ady, bd = bdx * bdx + bdy * bdy, cd = cdx * cdx + cdy * cdy;
  return adx * (bdy * cd - bd * cdy) - ady * (bdx * cd - bd * cdx) + ad * (bdx * cdy - bdy * cdx);
}

/**
 * Triangles (Int32Array, 3 indices each, positively oriented) of integer points px, py: points 0..3
 * the corners TL, TR, BL, BR, the rest inserted in order. Throws for points this rule cannot take.
 */
export function triangulate(px, py) {
  const n = px.length;
  const cap = 5 * n + 80;
  let tv = new Int32Array(3 * cap), tn = new Int32Array(3 * cap);
  const alive = new Uint8Array(cap), mark = new Int32Array(cap), stack = new Int32Array(cap), cavity = new Int32Array(cap);
  const firstOf = new Int32Array(n), secondOf = new Int32Array(n);
  tv.set([0, 1, 3, 0, 3, 2]);
  tn.set([-1, 1, -1, -1, -1, 0]);
  alive[0] = alive[1] = 1;
  let nt = 2, nlive = 2, last = 0, stamp = 0;
  const fail = () => { throw new PreviewFormatError("corrupt preview: its points cannot be triangulated"); };
  for (let p = 4; p < n; p++) {
    const x = px[p], y = py[p];
    if (nt + nlive + 4 > cap) { nt = compact(tv, tn, alive, nt, stack); last = nt - 1; }
    let t = last, steps = 0;
    for (;;) {
      let moved = false;
      for (let i = 0; i < 3; i++) {
        const a = tv[3 * t + ((i + 1) % 3)], b = tv[3 * t + ((i + 2) % 3)];
        if (orient(px[a], py[a], px[b], py[b], x, y) < 0) {
          const nb = tn[3 * t + i];
          if (nb < 0) fail();
          t = nb;
          moved = true;
          break;
        }
      }
      if (!moved) break;
      if (++steps > 4 * nt + 8) {
        t = -1;
        for (let s = 0; s < nt; s++) {
          const a = tv[3 * s], b = tv[3 * s + 1], c = tv[3 * s + 2];
          if (alive[s] && orient(px[a], py[a], px[b], py[b], x, y) >= 0 && orient(px[b], py[b], px[c], py[c], x, y) >= 0 && orient(px[c], py[c], px[a], py[a], x, y) >= 0) { t = s; break; }
        }
        if (t < 0) fail();
        break;
      }
    }
    for (let i = 0; i < 3; i++) { const v = tv[3 * t + i]; if (px[v] === x && py[v] === y) fail(); }
    stamp++;
    let ncav = 0, sp = 0;
    stack[sp++] = t;
    mark[t] = stamp;
    while (sp > 0) {
      const c = stack[--sp];
      cavity[ncav++] = c;
      for (let i = 0; i < 3; i++) {
        const nb = tn[3 * c + i];
        if (nb >= 0 && mark[nb] !== stamp) {
          const a0 = tv[3 * nb], a1 = tv[3 * nb + 1], a2 = tv[3 * nb + 2];
          if (incircle(px[a0], py[a0], px[a1], py[a1], px[a2], py[a2], x, y) > 0) { mark[nb] = stamp; stack[sp++] = nb; }
        }
      }
    }
    let nnew = 0;
    for (let ci = 0; ci < ncav; ci++) {
      const c = cavity[ci];
      for (let i = 0; i < 3; i++) {
        const nb = tn[3 * c + i];
        if (nb >= 0 && mark[nb] === stamp) continue;
        const a = tv[3 * c + ((i + 1) % 3)], b = tv[3 * c + ((i + 2) % 3)];
        const o = orient(px[a], py[a], px[b], py[b], x, y);
        if (o === 0) continue; // the point lies on this hull edge: the edge splits in two
        if (o < 0) fail();
        const k = nt + nnew;
        tv[3 * k] = a; tv[3 * k + 1] = b; tv[3 * k + 2] = p;
        tn[3 * k] = -1; tn[3 * k + 1] = -1; tn[3 * k + 2] = nb;
        alive[k] = 1;
        mark[k] = 0;
        if (nb >= 0) for (let j = 0; j < 3; j++) if (tn[3 * nb + j] === c) tn[3 * nb + j] = k;
        firstOf[a] = k;
        secondOf[b] = k;
        nnew++;
      }
    }
    for (let k = nt; k < nt + nnew; k++) {
      const a = tv[3 * k], b = tv[3 * k + 1];
      const f = firstOf[b];
      if (f >= nt && f < nt + nnew && tv[3 * f] === b) tn[3 * k] = f;
      const s = secondOf[a];
      if (s >= nt && s < nt + nnew && tv[3 * s + 1] === a) tn[3 * k + 1] = s;
    }
    for (let ci = 0; ci < ncav; ci++) alive[cavity[ci]] = 0;
    last = nt;
    nt += nnew;
    nlive += nnew - ncav;
  }
  const m = compact(tv, tn, alive, nt, stack);
  return tv.slice(0, 3 * m);
}

function compact(tv, tn, alive, nt, newid) {
  let m = 0;
  for (let t = 0; t < nt; t++) newid[t] = alive[t] ? m++ : -1;
  for (let t = 0; t < nt; t++) {
    if (!alive[t]) continue;
    const k = newid[t];
    for (let i = 0; i < 3; i++) {
      tv[3 * k + i] = tv[3 * t + i];
      const nb = tn[3 * t + i];
      tn[3 * k + i] = nb >= 0 ? newid[nb] : -1;
    }
    alive[k] = 1;
  }
  for (let t = m; t < nt; t++) alive[t] = 0;
  return m;
}

// ---- the rasteriser (raster_cpu.py: float32 arithmetic, the same pixel-to-triangle rule) ----

const f32 = Math.fround;
const BIG = f32(3.0e38);

function sorted3(x, y, i0, i1, i2) {
  let ax = x[i0], ay = y[i0], bx = x[i1], by = y[i1], cx = x[i2], cy = y[i2];
  if (ay > by || (ay === by && ax > bx)) [ax, ay, bx, by] = [bx, by, ax, ay];
  if (by > cy || (by === cy && bx > cx)) {
    [bx, by, cx, cy] = [cx, cy, bx, by];
    if (ay > by || (ay === by && ax > bx)) [ax, ay, bx, by] = [bx, by, ax, ay];
  }
  return [ax, ay, bx, by, cx, cy];
}

function cross(row, x0, y0, x1, y1, lr) {
  if (y1 > y0) {
    if (row >= y0 && row <= y1) {
      const xc = f32(x0 + f32(row - y0) * f32(f32(x1 - x0) / f32(y1 - y0)));
      lr[0] = Math.min(lr[0], xc);
      lr[1] = Math.max(lr[1], xc);
    }
  } else if (row === y0) {
    lr[0] = Math.min(lr[0], Math.min(x0, x1));
    lr[1] = Math.max(lr[1], Math.max(x0, x1));
  }
}

/**
 * Render a parsed preview at width x height by barycentric interpolation: {triangles, index
 * (Int32Array, each pixel's triangle), rgb (Float32Array, 3 per pixel, 0..1), x, y (Float32Array,
 * each mesh point's pixel position: the 4 corners, then the vertices), colours (3 per point, 0..1)}.
 * With ``rgba`` (a Uint8ClampedArray of 4 * width * height) the pixels go there as bytes instead
 * (index, rgb null).
 */
export function render(preview, width, height, rgba = null) {
  if (!(width >= 2 && height >= 2)) throw new RangeError(`output size ${height}x${width}: each side must be at least 2 pixels`);
  const { gridW: gw, gridH: gh } = preview;
  const pts = [[0, 0], [gw - 1, 0], [0, gh - 1], [gw - 1, gh - 1], ...preview.vertices];
  const idx = [...preview.corners, ...preview.indices];
  const npts = pts.length;
  const px = Int32Array.from(pts, (p) => p[0]), py = Int32Array.from(pts, (p) => p[1]);
  const tri = triangulate(px, py);
  const nt = tri.length / 3;
  const x = new Float32Array(npts), y = new Float32Array(npts);
  const sx = f32(f32(width - 1) / f32(gw - 1)), sy = f32(f32(height - 1) / f32(gh - 1));
  for (let i = 0; i < npts; i++) {
    x[i] = px[i] === gw - 1 ? width - 1 : f32(px[i] * sx);
    y[i] = py[i] === gh - 1 ? height - 1 : f32(py[i] * sy);
  }
  // spans: the key (end column, triangle) of each (triangle, row) span at its first pixel; the
  // largest key wins a tie (the JAX rasteriser's scatter-max)
  const starts = new Float64Array(width * height).fill(-1);
  const lr = [0, 0];
  for (let t = 0; t < nt; t++) {
    const [x0, y0, x1, y1, x2, y2] = sorted3(x, y, tri[3 * t], tri[3 * t + 1], tri[3 * t + 2]);
    const r0 = Math.max(0, Math.ceil(y0)), r1 = Math.min(height - 1, Math.floor(y2));
    if (r0 > r1) continue;
    const s02 = y2 > y0 ? f32(f32(x2 - x0) / f32(y2 - y0)) : 0;
    const s01 = y1 > y0 ? f32(f32(x1 - x0) / f32(y1 - y0)) : 0;
    const s12 = y2 > y1 ? f32(f32(x2 - x1) / f32(y2 - y1)) : 0;
    for (let r = r0; r <= r1; r++) {
      let left, right;
      if (r === y0 || r === y1 || r === y2) {
        lr[0] = BIG; lr[1] = -BIG;
        cross(r, x0, y0, x1, y1, lr);
        cross(r, x1, y1, x2, y2, lr);
        cross(r, x0, y0, x2, y2, lr);
        [left, right] = lr;
      } else {
        const xl = f32(x0 + f32(r - y0) * s02);
        const xs = r < y1 ? f32(x0 + f32(r - y0) * s01) : f32(x1 + f32(r - y1) * s12);
        left = Math.min(xl, xs);
        right = Math.max(xl, xs);
      }
      if (!(left <= right)) continue;
      const start = Math.min(Math.max(Math.ceil(left), 0), width - 1);
      const end = Math.min(Math.max(Math.floor(right), -1), width - 1);
      if (start > end) continue;
      const key = end * nt + t;
      if (key > starts[r * width + start]) starts[r * width + start] = key;
    }
  }
  // planes: per triangle, the reference vertex, its colour and the colour's x and y slopes
  const rgbOf = preview.palette.map(ycocgToRgb);
  const col = new Float32Array(3 * npts);
  for (let i = 0; i < npts; i++) for (let c = 0; c < 3; c++) col[3 * i + c] = f32(rgbOf[idx[i]][c] / 255);
  const planes = new Float32Array(11 * Math.max(nt, 1));
  for (let t = 0; t < nt; t++) {
    const i0 = tri[3 * t], i1 = tri[3 * t + 1], i2 = tri[3 * t + 2];
    const x0 = x[i0], y0 = y[i0];
    const ux = f32(x[i1] - x0), uy = f32(y[i1] - y0), vx = f32(x[i2] - x0), vy = f32(y[i2] - y0);
    let det = f32(ux * vy - uy * vx);
    if (det === 0) det = 1;
    planes[11 * t] = x0;
    planes[11 * t + 1] = y0;
    for (let c = 0; c < 3; c++) {
      const c0 = col[3 * i0 + c], uc = f32(col[3 * i1 + c] - c0), vc = f32(col[3 * i2 + c] - c0);
      planes[11 * t + 2 + c] = c0;
      planes[11 * t + 5 + c] = f32(f32(uc * vy - vc * uy) / det);
      planes[11 * t + 8 + c] = f32(f32(vc * ux - uc * vx) / det);
    }
  }
  // one pass per row: each pixel takes the triangle of the last span starting at or before it,
  // shaded from that triangle's plane (loaded into locals when the triangle changes)
  const index = rgba ? null : new Int32Array(width * height);
  const rgb = rgba ? null : new Float32Array(3 * width * height);
  for (let r = 0; r < height; r++) {
    let t = -1, px0 = 0, ys = 0, c0 = 0, c1 = 0, c2 = 0, dx0 = 0, dx1 = 0, dx2 = 0, dy0 = 0, dy1 = 0, dy2 = 0;
    for (let c = 0; c < width; c++) {
      const k = starts[r * width + c];
      const nt1 = k >= 0 ? k % nt : t < 0 ? 0 : t;
      if (nt1 !== t) {
        t = nt1;
        const o = 11 * t;
        px0 = planes[o]; ys = f32(r - planes[o + 1]);
        c0 = planes[o + 2]; c1 = planes[o + 3]; c2 = planes[o + 4];
        dx0 = planes[o + 5]; dx1 = planes[o + 6]; dx2 = planes[o + 7];
        dy0 = planes[o + 8]; dy1 = planes[o + 9]; dy2 = planes[o + 10];
      }
      const xs = f32(c - px0), i = r * width + c;
      const v0 = f32(f32(c0 + dx0 * xs) + dy0 * ys);
      const v1 = f32(f32(c1 + dx1 * xs) + dy1 * ys);
      const v2 = f32(f32(c2 + dx2 * xs) + dy2 * ys);
      if (rgba) {
        rgba[4 * i] = roundHalfEven(f32(v0 * 255));
        rgba[4 * i + 1] = roundHalfEven(f32(v1 * 255));
        rgba[4 * i + 2] = roundHalfEven(f32(v2 * 255));
        rgba[4 * i + 3] = 255;
      } else {
        index[i] = t;
        rgb[3 * i] = v0; rgb[3 * i + 1] = v1; rgb[3 * i + 2] = v2;
      }
    }
  }
  return { triangles: tri, index, rgb, x, y, colours: col };
}

export function roundHalfEven(v) {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Decode a preview's bytes: {width, height, data} with data RGBA (Uint8ClampedArray), ready for
 * new ImageData(data, width, height). Options: size (both sides, default 256) or width/height.
 */
export function decodePreview(bytes, { size = 256, width = size, height = size } = {}) {
  const preview = parsePreview(bytes);
  const data = new Uint8ClampedArray(4 * width * height);
  render(preview, width, height, data);
  return { width, height, data };
}
