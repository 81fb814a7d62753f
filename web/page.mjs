// page.mjs: web/index.html's script. Every <canvas data-tri="(base64 preview)"> is decoded at once
// by tri.mjs (the plain decoder), the plain decoding speed is measured, and then each canvas is
// replaced by the neural decoding (neural.mjs on onnxruntime-web), with the time per preview.
// Query: ?model=URL (default models/mobile_web.onnx), ?ep=wasm|webgpu (default: webgpu where the
// browser offers a GPU adapter), ?threads=N (default: up to 4 where the page is
// cross-origin isolated, else 1), ?export=1 (each canvas's pixels as base64 in
// data-rgba and data-neural-rgba, for tests/test_web.py).
import { decodePreview } from "./tri.mjs";
import { NeuralDecoder } from "./neural.mjs";

const DIST = "./node_modules/onnxruntime-web/dist/"; // npm ci --prefix web
const params = new URLSearchParams(location.search);
const figures = [...document.querySelectorAll("canvas[data-tri]")];
const bytesOf = (canvas) => Uint8Array.from(atob(canvas.dataset.tri), (c) => c.charCodeAt(0));
const summary = document.getElementById("summary");
const neuralLine = document.getElementById("neural");

function show(canvas, { width, height, data }, key) {
  const ctx = canvas.getContext("2d");
  ctx.putImageData(new ImageData(data, width, height), 0, 0);
  if (params.has("export")) { // for the test: the canvas as the browser holds it
    const px = ctx.getImageData(0, 0, width, height).data;
    let s = "";
    for (let i = 0; i < px.length; i += 8192) s += String.fromCharCode(...px.subarray(i, i + 8192));
    canvas.dataset[key] = btoa(s);
  }
}

// 1. the plain decoder, at once
let total = 0;
for (const canvas of figures) {
  const t0 = performance.now();
  const image = decodePreview(bytesOf(canvas), { size: canvas.width });
  const ms = performance.now() - t0;
  total += ms;
  show(canvas, image, "rgba");
  canvas.nextElementSibling.querySelector(".plain").textContent = `plain ${ms.toFixed(1)} ms`;
}

// 2. its speed: every preview decoded again, after a warm-up (the JIT), for about a second
const inputs = figures.map(bytesOf);
for (let i = 0; i < 5; i++) for (const b of inputs) decodePreview(b);
const t1 = performance.now();
let n = 0;
while (performance.now() - t1 < 1000) {
  for (const b of inputs) {
    decodePreview(b, { size: 256 });
    n++;
  }
}
const rate = n / ((performance.now() - t1) / 1000);
summary.textContent =
  `${figures.length} previews decoded in ${total.toFixed(1)} ms; ${rate.toFixed(0)} previews of 256x256 per second.`;
document.body.dataset.rate = rate.toFixed(1);
document.body.dataset.ready = "yes";

// 3. the neural decoder, replacing each canvas
function unavailable(why) {
  neuralLine.textContent = `Neural decoder not shown: ${why}.`;
  document.body.dataset.neural = "unavailable";
}

async function neural() {
  // WebGPU where the browser has an adapter (a GPU), falling back to WebAssembly on the CPU;
  // ?ep= asks for one
  const gpu = typeof navigator.gpu !== "undefined" && (await navigator.gpu.requestAdapter().catch(() => null));
  const eps = params.has("ep") ? [params.get("ep")] : gpu ? ["webgpu", "wasm"] : ["wasm"];
  const url = params.get("model") ?? "models/mobile_web.onnx";
  const response = await fetch(url).catch(() => null);
  if (!response || !response.ok) {
    return unavailable(
      `no model at ${url} (python -m trimesh_decode.models export-onnx mobile_web --float16 -o web/models/mobile_web.onnx)`,
    );
  }
  const model = new Uint8Array(await response.arrayBuffer());
  const threads = params.has("threads") ? Number(params.get("threads")) : undefined;
  let ort, decoder, ep, why = "";
  const t0 = performance.now();
  for (ep of eps) {
    try {
      ort = await import(DIST + (ep === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"));
    } catch {
      why = "onnxruntime-web is not installed (npm ci --prefix web)";
      continue;
    }
    try {
      decoder = await NeuralDecoder.create(ort, model.slice(), { threads, ep }); // (a copy: a session may take the buffer)
      await decoder.decode(inputs[0]); // the first run allocates and plans: not a preview's cost
      break;
    } catch (e) {
      decoder = null;
      why = `onnxruntime-web (${ep}): ${e}`;
    }
  }
  if (!decoder) return unavailable(why);
  const load = performance.now() - t0;
  const times = [];
  for (const canvas of figures) {
    const image = await decoder.decode(bytesOf(canvas));
    const ms = image.ms.channels + image.ms.network;
    times.push(ms);
    show(canvas, image, "neuralRgba");
    canvas.nextElementSibling.querySelector(".neural").textContent =
      `, neural ${ms.toFixed(0)} ms (channels ${image.ms.channels.toFixed(1)}, network ${image.ms.network.toFixed(0)})`;
  }
  // the time per preview once warm: every preview twice more, the median
  for (let k = 0; k < 2; k++) {
    for (const b of inputs) {
      const { ms } = await decoder.decode(b);
      times.push(ms.channels + ms.network);
    }
  }
  const median = times.slice(figures.length).sort((a, b) => a - b)[(times.length - figures.length) >> 1];
  const used = ort.env.wasm.numThreads;
  const where = ep === "wasm" ? `wasm, ${used} thread${used > 1 ? "s" : ""}` : ep;
  neuralLine.textContent =
    `Now shown: the neural decoder (${url.split("/").pop()}, onnxruntime-web ${ort.env.versions.web}, ${where}): ${median.toFixed(0)} ms per preview (median, warm), ` +
    `after ${load.toFixed(0)} ms to load the model.`;
  document.body.dataset.neuralEp = ep;
  document.body.dataset.neuralThreads = String(used);
  document.body.dataset.neuralMs = median.toFixed(1);
  document.body.dataset.neural = "done";
}

neural().catch((e) => unavailable(String(e)));
