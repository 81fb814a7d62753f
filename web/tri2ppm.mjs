#!/usr/bin/env node
// tri2ppm.mjs IN.tri OUT.ppm [--size N] [--force]: decode a triangle preview to a binary PPM (P6)
// with web/tri.mjs. Exit status 2 with one line on stderr for bad input; OUT is never overwritten
// without --force.
//   node web/tri2ppm.mjs preview.tri preview.ppm --size 256
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { decodePreview, PreviewFormatError } from "./tri.mjs";

const USAGE = "usage: tri2ppm.mjs IN.tri OUT.ppm [--size N] [--force]\n  example: node web/tri2ppm.mjs p.tri p.ppm --size 256";

function fail(message) {
  process.stderr.write(`tri2ppm: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  process.stdout.write(USAGE + "\n");
  process.exit(0);
}
let size = 256, force = false;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--size") {
    size = Number(args[++i]);
    if (!Number.isInteger(size) || size < 2 || size > 4096) fail(`--size must be an integer in 2..4096, got ${args[i]}`);
  } else if (args[i] === "--force") force = true;
  else if (args[i].startsWith("--")) fail(`unknown option ${args[i]}\n${USAGE}`);
  else files.push(args[i]);
}
if (files.length !== 2) fail(USAGE);
const [input, output] = files;
if (!existsSync(input)) fail(`${input} does not exist`);
if (existsSync(output) && statSync(output).isDirectory()) fail(`${output} is a folder`);
if (existsSync(output) && !force) fail(`${output} exists; pass --force to overwrite it`);
let image;
try {
  image = decodePreview(readFileSync(input), { size });
} catch (e) {
  if (e instanceof PreviewFormatError) fail(`${input}: ${e.message}`);
  throw e;
}
const { width, height, data } = image;
const header = Buffer.from(`P6\n${width} ${height}\n255\n`, "ascii");
const body = Buffer.alloc(3 * width * height);
for (let i = 0, j = 0; j < body.length; i += 4, j += 3) {
  body[j] = data[i];
  body[j + 1] = data[i + 1];
  body[j + 2] = data[i + 2];
}
const tmp = `${output}.tmp-${process.pid}`;
writeFileSync(tmp, Buffer.concat([header, body]));
renameSync(tmp, output); // atomic: a reader never sees half a file
