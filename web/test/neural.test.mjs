// node --test web/: neural.mjs's input channels against the Python decoder's
// (trimesh_decode.raster_cpu.decoder_channels, hashed in web/conformance/expected.json).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { parsePreview, render } from "../tri.mjs";
import { decoderChannels, NUM_CHANNELS } from "../neural.mjs";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "conformance");
const vectors = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
const sha = (a) => createHash("sha256").update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest("hex");

for (const v of vectors.filter((v) => v.valid)) {
  test(`${v.file}: the edge, vertex and coloured-vertex channels are the Python decoder's, the RGB its render`, () => {
    const p = parsePreview(new Uint8Array(readFileSync(join(dir, v.file))));
    const ch = decoderChannels(p, v.size, v.size);
    const n = v.size * v.size;
    assert.equal(ch.length, n * NUM_CHANNELS);
    const marks = new Uint8Array(2 * n), colours = new Float32Array(3 * n), rgb = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      marks[2 * i] = ch[NUM_CHANNELS * i];
      marks[2 * i + 1] = ch[NUM_CHANNELS * i + 1];
      for (let c = 0; c < 3; c++) {
        rgb[3 * i + c] = ch[NUM_CHANNELS * i + 2 + c];
        colours[3 * i + c] = ch[NUM_CHANNELS * i + 5 + c];
      }
    }
    assert.equal(sha(marks), v.marks_sha256, "edge and vertex maps");
    assert.equal(sha(colours), v.vertex_colours_sha256, "coloured-vertex map");
    assert.deepEqual(rgb, render(p, v.size, v.size).rgb);
    // in [0, 1] up to float32 rounding of the interpolation (the Python channels are not clipped either)
    assert.ok(marks.some((m) => m === 1) && ch.every((x) => x > -1e-5 && x < 1 + 1e-5));
  });
}
