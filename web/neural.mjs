// neural.mjs: the neural decoder of compat-codecs triangle previews, in the browser (or Node).
//
// The same bitstream as tri.mjs, decoded by the stacked-hourglass network exported with
//   python -m trimesh_decode.models export-onnx mobile_web --float16 -o web/models/mobile_web.onnx
// (mobile_web: 32 filters, sized for the browser's CPU back end; `mobile`, 64 filters, decodes
// slightly better at three times the multiply-adds)
// and run by onnxruntime-web (passed in, so that this module has no import of its own beyond
// tri.mjs). The network's input is the preview's 8 channels at 256x256, rendered here exactly as
// trimesh_decode.raster_cpu.decoder_channels renders them: 0 edge map (pixels whose right or lower
// neighbour lies in another triangle), 1 vertex map (1 at the pixel nearest each mesh point), 2-4
// the interpolated RGB, 5-7 the coloured-vertex map (the point's colour there, 0 elsewhere).
//
//   import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";
//   import { NeuralDecoder } from "./neural.mjs";
//   const neural = await NeuralDecoder.create(ort, "models/mobile_web.onnx");
//   const { width, height, data } = await neural.decode(bytes); // RGBA, ImageData-ready

import { parsePreview, render, roundHalfEven } from "./tri.mjs";

export const SIZE = 256; // the exported networks' input and output side
export const NUM_CHANNELS = 8;

/** The network's input for a parsed preview: Float32Array (height * width * 8), NHWC, in [0, 1]. */
export function decoderChannels(preview, width = SIZE, height = SIZE) {
  const { index, rgb, x, y, colours } = render(preview, width, height);
  const out = new Float32Array(width * height * NUM_CHANNELS);
  for (let r = 0, i = 0; r < height; r++) {
    for (let c = 0; c < width; c++, i++) {
      const t = index[i];
      const edge = (c < width - 1 && index[i + 1] !== t) || (r < height - 1 && index[i + width] !== t);
      const o = NUM_CHANNELS * i;
      out[o] = edge ? 1 : 0;
      out[o + 2] = rgb[3 * i];
      out[o + 3] = rgb[3 * i + 1];
      out[o + 4] = rgb[3 * i + 2];
    }
  }
  // in point order, so that a later point on the same pixel wins (as NumPy's and JAX's scatter)
  for (let p = 0; p < x.length; p++) {
    const xi = Math.min(Math.max(roundHalfEven(x[p]), 0), width - 1);
    const yi = Math.min(Math.max(roundHalfEven(y[p]), 0), height - 1);
    const o = NUM_CHANNELS * (yi * width + xi);
    out[o + 1] = 1;
    out[o + 5] = colours[3 * p];
    out[o + 6] = colours[3 * p + 1];
    out[o + 7] = colours[3 * p + 2];
  }
  return out;
}

/** An exported decoder in an onnxruntime-web session. */
export class NeuralDecoder {
  constructor(ort, session, ep) {
    this.ort = ort;
    this.session = session;
    this.ep = ep;
  }

  /**
   * ``ort``: the onnxruntime-web module (ort.wasm.min.mjs; ort.webgpu.min.mjs for ``ep: "webgpu"``);
   * ``model``: the .onnx file's URL or bytes. Wasm threads: up to 4 where the page is cross-origin
   * isolated (SharedArrayBuffer), else 1, unless ``threads`` says.
   */
  static async create(ort, model, { threads, ep = "wasm" } = {}) {
    const isolated = typeof self !== "undefined" && self.crossOriginIsolated;
    const cores = (typeof navigator !== "undefined" && navigator.hardwareConcurrency) || 1;
    ort.env.wasm.numThreads = threads ?? (isolated ? Math.min(4, cores) : 1);
    const session = await ort.InferenceSession.create(model, {
      executionProviders: [ep],
      graphOptimizationLevel: "all",
      freeDimensionOverrides: { N: 1 },
    });
    return new NeuralDecoder(ort, session, ep);
  }

  /**
   * Decode a preview's bytes: {width, height, data (RGBA Uint8ClampedArray), ms: {channels,
   * network}}. Malformed bytes throw tri.mjs's PreviewFormatError.
   */
  async decode(bytes) {
    const t0 = performance.now();
    const channels = decoderChannels(parsePreview(bytes));
    const t1 = performance.now();
    const input = new this.ort.Tensor("float32", channels, [1, SIZE, SIZE, NUM_CHANNELS]);
    const { image } = await this.session.run({ channels: input });
    const t2 = performance.now();
    const y = image.data, data = new Uint8ClampedArray(4 * SIZE * SIZE);
    // clip to [0, 1], scale in float32 and round half to even: the Python decoders' conversion
    for (let i = 0, j = 0; i < y.length; i += 3, j += 4) {
      for (let c = 0; c < 3; c++) data[j + c] = roundHalfEven(Math.fround(Math.min(Math.max(y[i + c], 0), 1) * 255));
      data[j + 3] = 255;
    }
    return { width: SIZE, height: SIZE, data, ms: { channels: t1 - t0, network: t2 - t1 } };
  }
}
