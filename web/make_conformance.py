"""Write web/conformance/: preview files (valid ones, edge cases, malformed ones) and expected.json,
what the Python decoder makes of each - the triangles, at 64x64 the RGB image, the triangle of
every pixel and the neural decoder's other input channels (sha256s), or the error - and
web/index.html, a page of the photo previews (inline) decoded by web/page.mjs. web/test/*.test.mjs
hold web/tri.mjs and web/neural.mjs to the vectors, and tests/test_web.py checks that they still
are what the Python decoder says, and opens the page in Chromium.

    python web/make_conformance.py            # (re)writes web/conformance/
    python web/make_conformance.py --check    # exit 1 if a file differs from what it would write
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from trimesh_decode import raster_cpu
from trimesh_decode.bitstream import MAX_VERTICES, Preview, PreviewFormatError, _crc8, from_bytes, to_bytes
from trimesh_decode.encoder import EncoderConfig, encode_image
from trimesh_decode.meshes import pack
from trimesh_decode.triangulate import preview_triangles

OUT = Path(__file__).resolve().parent / "conformance"
SIZE = 64  # the size of the stored decodings


def _photo(name: str, side: int = 256) -> np.ndarray:
    from PIL import Image  # lazy: only the photo vectors need it
    from skimage import data  # lazy: slow to import; only the photo vectors need it

    im = getattr(data, name)()
    h, w = im.shape[:2]
    s = min(h, w)
    crop = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.asarray(Image.fromarray(crop).resize((side, side), Image.LANCZOS))


def valid_previews() -> dict[str, bytes]:
    out = {}
    for name, budget, its in (("astronaut", 200, 600), ("coffee", 60, 400), ("chelsea", 400, 600), ("rocket", 24, 300)):
        r = encode_image(_photo(name), target_bytes=budget, seed=1, config=EncoderConfig(iterations=its))
        out[f"photo_{name}_{budget}B.tri"] = r.data
    pal2 = [[10, 30, 5], [40, 33, 50]]
    out["minimal_2x2_grid.tri"] = to_bytes(Preview.create(2, 2, pal2, [0, 1, 1, 0], [], []))
    out["wide_256x2_grid.tri"] = to_bytes(Preview.create(256, 2, pal2, [0, 1, 0, 1], [[100, 0], [17, 1]], [1, 0]))
    out["tall_2x256_grid.tri"] = to_bytes(Preview.create(2, 256, pal2, [1, 0, 0, 1], [[0, 128], [1, 200]], [1, 1]))
    # every grid point a vertex: co-circular everywhere, the tie rule decides every triangle
    g = 9
    full = [[x, y] for y in range(g) for x in range(g) if not ((x in (0, g - 1)) and (y in (0, g - 1)))]
    pal = [[20 + i, 28 + i % 5, 10 + 3 * i] for i in range(6)]
    cycle = [i % 6 for i in range(len(full))]
    out["cocircular_full_9x9.tri"] = to_bytes(Preview.create(g, g, pal, [0, 1, 2, 3], full, cycle))
    # points on the border (hull edges split) and collinear rows
    border = [[x, 0] for x in range(3, 60, 7)] + [[63, y] for y in range(5, 60, 9)] + [[x, 32] for x in range(1, 63, 5)]
    cycle = [i % 6 for i in range(len(border))]
    out["border_and_collinear_64x64.tri"] = to_bytes(Preview.create(64, 64, pal, [5, 4, 3, 2], border, cycle))
    # the largest: 256x256 grid, 32 colours, 1024 vertices
    rng = np.random.default_rng(7)
    pts = rng.choice(256 * 256, size=MAX_VERTICES + 200, replace=False)
    pts = [[int(p % 256), int(p // 256)] for p in pts]
    pts = [p for p in pts if not (p[0] in (0, 255) and p[1] in (0, 255))][:MAX_VERTICES]
    big_pal = [[int(a), int(b), int(c)] for a, b, c in rng.integers(0, 64, (32, 3))]
    prev = Preview.create(256, 256, big_pal, [0, 1, 2, 3], pts, rng.integers(0, 32, len(pts)))
    out["largest_256x256_1024_vertices.tri"] = to_bytes(prev)
    return out


def _refused(data: bytes) -> bool:
    try:
        from_bytes(data)
    except PreviewFormatError:
        return True
    return False


def malformed(valid: bytes) -> dict[str, bytes]:
    def crc(body: bytes) -> bytes:
        return body + bytes([_crc8(body)])

    head = valid[:-1]
    flipped = bytearray(head)
    at = len(flipped) // 2
    while True:  # a flip (or a cut) can give another valid preview: take the first one refused
        flipped[at] ^= 0x10
        if _refused(crc(bytes(flipped))):
            break
        flipped[at] ^= 0x10
        at += 1
    rng = np.random.default_rng(3)
    return {
        "bad_empty.tri": b"",
        "bad_magic.tri": bytes([0x89]) + valid[1:],
        "bad_only_magic.tri": valid[:1],
        "bad_check_byte.tri": head + bytes([valid[-1] ^ 0xFF]),
        "bad_truncated.tri": next(t for t in (crc(head[:-cut]) for cut in range(1, len(head))) if _refused(t)),
        "bad_trailing_bytes.tri": crc(head + b"\x00\x17"),
        "bad_bit_flip_with_check_byte.tri": crc(bytes(flipped)),
        "bad_random_with_check_byte.tri": crc(bytes([0xB1]) + rng.integers(0, 256, 120, dtype=np.uint8).tobytes()),
        "bad_too_long.tri": crc(bytes([0xB1]) + bytes(4100)),
    }


def expected(name: str, data: bytes) -> dict:
    try:
        p = from_bytes(data)
    except PreviewFormatError as e:
        return {"file": name, "valid": False, "error": str(e)}
    mesh = pack([p])
    index = raster_cpu.triangle_index(mesh, SIZE, SIZE)[0]
    rgb = raster_cpu.interpolate(p, SIZE)
    channels = raster_cpu.decoder_channels(mesh, SIZE, SIZE)[0]
    return {
        "file": name,
        "valid": True,
        "grid": [p.grid_w, p.grid_h],
        "colours": p.num_colours,
        "vertices": len(p.vertices),
        "triangles": preview_triangles(p).ravel().tolist(),
        "size": SIZE,
        "index_sha256": hashlib.sha256(index.astype("<i4").tobytes()).hexdigest(),
        "rgb": base64.b64encode(rgb.tobytes()).decode(),
        # the neural decoder's input besides the RGB: edge and vertex maps (0/1 bytes, per pixel)
        # and the coloured-vertex map (float32, 3 per pixel)
        "marks_sha256": hashlib.sha256(channels[..., :2].astype(np.uint8).tobytes()).hexdigest(),
        "vertex_colours_sha256": hashlib.sha256(channels[..., 5:8].astype("<f4").tobytes()).hexdigest(),
    }


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Triangle previews, decoded in the browser</title>
<style>
  body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
  .grid {{ display: flex; flex-wrap: wrap; gap: 1.2em; }}
  figure {{ margin: 0; }}
  canvas {{ width: 256px; height: 256px; background: #eee; display: block; }}
  figcaption {{ font-size: 13px; color: #555; max-width: 256px; }}
</style>
</head>
<body>
<h1>Triangle previews, decoded in the browser</h1>
<p>Each preview's bytes are inline in this page, as a site would embed them, and decoded at once by
<code>tri.mjs</code> (the plain decoder: Delaunay mesh, linear interpolation).
<span id="summary">Decoding...</span></p>
<p id="neural">Then the same bytes go through the neural decoder (<code>neural.mjs</code>, the
network exported to ONNX, run by onnxruntime-web) and replace the plain decoding...</p>
<div class="grid">
{figures}
</div>
<script type="module" src="page.mjs"></script>
</body>
</html>
"""


def page(files: dict[str, bytes]) -> bytes:
    """web/index.html: the photo previews inline (base64), decoded by web/page.mjs when the page loads."""
    figs = []
    for name in sorted(n for n in files if n.startswith("photo_")):
        data = files[name]
        figs.append(
            f'<figure><canvas width="256" height="256" data-name="{name}" '
            f'data-tri="{base64.b64encode(data).decode()}"></canvas>'
            f'<figcaption>{name}: {len(data)} bytes; <span class="plain"></span><span class="neural"></span>'
            "</figcaption></figure>"
        )
    return PAGE.format(figures="\n".join(figs)).encode()


def build() -> dict[str, bytes]:
    files = valid_previews()
    files.update(malformed(files["photo_astronaut_200B.tri"]))
    doc = [expected(n, d) for n, d in sorted(files.items())]
    files["expected.json"] = (json.dumps(doc, indent=0) + "\n").encode()
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    args = ap.parse_args(argv)
    files = build()
    html = page(files)
    index = OUT.parent / "index.html"
    if args.check:
        stale = [n for n, d in files.items() if not (OUT / n).is_file() or (OUT / n).read_bytes() != d]
        extra = sorted(p.name for p in OUT.iterdir() if p.name not in files) if OUT.is_dir() else []
        for n in stale + extra:
            print(f"web/conformance/{n} differs from what the Python decoder gives", file=sys.stderr)
        if not index.is_file() or index.read_bytes() != html:
            print("web/index.html differs from what it would be", file=sys.stderr)
            stale.append("index.html")
        return 1 if stale or extra else 0
    OUT.mkdir(exist_ok=True)
    for n, d in files.items():
        (OUT / n).write_bytes(d)
    index.write_bytes(html)
    print(f"wrote {len(files)} files to {OUT} and {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
