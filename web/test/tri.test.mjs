// node --test web/: web/tri.mjs against the Python decoder's outputs (web/conformance/expected.json,
// written by web/make_conformance.py), and a fuzz of its parser.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { decodePreview, parsePreview, PreviewFormatError, render } from "../tri.mjs";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "conformance");
const vectors = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
const bytesOf = (name) => new Uint8Array(readFileSync(join(dir, name)));

test("there are valid and malformed vectors", () => {
  assert.ok(vectors.filter((v) => v.valid).length >= 8);
  assert.ok(vectors.filter((v) => !v.valid).length >= 8);
});

for (const v of vectors.filter((v) => v.valid)) {
  test(`${v.file}: the Python decoder's triangles, pixel triangles and colours (within 1 level)`, () => {
    const p = parsePreview(bytesOf(v.file));
    assert.deepEqual([p.gridW, p.gridH, p.palette.length, p.vertices.length], [...v.grid, v.colours, v.vertices]);
    const { triangles, index } = render(p, v.size, v.size);
    assert.deepEqual(Array.from(triangles), v.triangles);
    const sha = createHash("sha256").update(Buffer.from(index.buffer, index.byteOffset, index.byteLength)).digest("hex");
    assert.equal(sha, v.index_sha256, "the triangle of every pixel");
    const want = Buffer.from(v.rgb, "base64");
    const { width, height, data } = decodePreview(bytesOf(v.file), { size: v.size });
    assert.equal(width * height * 3, want.length);
    let worst = 0;
    for (let i = 0, j = 0; i < want.length; i += 3, j += 4) {
      for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(data[j + c] - want[i + c]));
      assert.equal(data[j + 3], 255);
    }
    assert.ok(worst <= 1, `a colour differs by ${worst} levels`);
  });
}

for (const v of vectors.filter((v) => !v.valid)) {
  test(`${v.file}: refused with the Python decoder's message`, () => {
    assert.throws(() => parsePreview(bytesOf(v.file)), (e) => e instanceof PreviewFormatError && e.message === v.error);
  });
}

test("fuzz: mutated, cut and random bytes either decode or throw PreviewFormatError, fast", () => {
  const seeds = vectors.filter((v) => v.valid).map((v) => bytesOf(v.file));
  let state = 12345;
  const rand = (n) => ((state = (state * 1103515245 + 12345) >>> 0) % n);
  const t0 = Date.now();
  for (let i = 0; i < 3000; i++) {
    const base = seeds[rand(seeds.length)];
    let b = base.slice(0, Math.max(1, base.length - rand(4)));
    if (rand(4) === 0) b = Uint8Array.from({ length: 1 + rand(300) }, () => rand(256));
    for (let k = rand(3); k >= 0; k--) b[rand(b.length)] ^= 1 << rand(8);
    if (rand(2) === 0) b[0] = 0xb1;
    try {
      const out = decodePreview(b, { size: 16 });
      assert.equal(out.data.length, 16 * 16 * 4);
    } catch (e) {
      if (!(e instanceof PreviewFormatError)) throw e;
    }
  }
  assert.ok(Date.now() - t0 < 30000);
});

test("bad arguments are refused", () => {
  const ok = bytesOf(vectors.find((v) => v.valid).file);
  assert.throws(() => decodePreview(ok, { size: 1 }), RangeError);
  assert.throws(() => parsePreview(new Uint8Array(0)), PreviewFormatError);
});
