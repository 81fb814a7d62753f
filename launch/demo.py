"""Both methods in one command, on photos that ship with scikit-image (or a folder of yours).

    python -m launch.demo                      # writes demo/index.html and prints where it is
    python -m launch.demo --images DIR --out report/ --force

For each photo:

* **jpegedit** - the shipped learned JPEG model (``jpegedit/models``, Q-tables + attention) writes a
  baseline JPEG; libjpeg (Pillow) encodes the same photo at the quality whose file size is closest.
  Both files are decoded by Pillow's libjpeg - the standard decoder - and scored: bpp, PSNR,
  MS-SSIM, LPIPS (AlexNet).
* **trimesh_decode** - the 256x256 centre square is encoded as a 200-byte triangle preview; the
  same bytes are decoded by interpolation and by the shipped neural decoder (``mobile``); PSNR, SSIM.

Writes ``OUT/index.html`` (open it in a browser), PNG figures beside it, and ``OUT/report.json``.
A few minutes' work on 2 CPU cores, most of it compiling. Refuses to overwrite an existing report
without ``--force``; exits 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw

from compat import metrics
from compat.cli import OneLineParser, UsageError, write_atomic
from compat.cli import run as run_tool
from compat.images import load_folder
from jpegedit.encoder import encode_jpeg
from jpegedit.models import load_model as load_jpeg_model
from jpegedit.scoring import decode, score
from trimesh_decode import raster_cpu
from trimesh_decode.encoder import encode_image
from trimesh_decode.evaluate import square_256
from trimesh_decode.models import DEFAULT_MODEL
from trimesh_decode.models import load_model as load_decoder

EXAMPLE = """examples:
  python -m launch.demo                                  # scikit-image's photos -> demo/index.html
  python -m launch.demo --images ../shared/data/kodak --out kodak_demo --limit 4
"""
JPEG_MODEL = "attention_lam0.01"
PREVIEW_BYTES = 200


def embedded_photos() -> list[tuple[str, np.ndarray]]:
    """Colour photos scikit-image ships (no download)."""
    from skimage import data  # lazy: slow to import; only the embedded example needs it

    return [("astronaut", data.astronaut()), ("coffee", data.coffee()), ("chelsea", data.chelsea())]


def folder_photos(folder: str, limit: int | None) -> list[tuple[str, np.ndarray]]:
    return load_folder(folder, limit=limit, min_side=64, what="the demo")


def _save(path: Path, image: np.ndarray) -> str:
    Image.fromarray(image).save(path)
    return path.name


def _libjpeg_closest(image: np.ndarray, target: int) -> tuple[int, bytes]:
    """The Pillow (libjpeg) quality, 4:4:4, whose file size is closest to ``target`` bytes."""

    def enc(q):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=q, subsampling=0)
        return buf.getvalue()

    lo, hi = 1, 100
    while lo < hi:  # smallest quality whose size reaches the target
        mid = (lo + hi) // 2
        if len(enc(mid)) < target:
            lo = mid + 1
        else:
            hi = mid
    cands = [(q, enc(q)) for q in {max(1, lo - 1), lo}]
    return min(cands, key=lambda c: abs(len(c[1]) - target))


def jpeg_part(name: str, image: np.ndarray, out: Path) -> dict:
    model = load_jpeg_model(JPEG_MODEL)
    learned = encode_jpeg(model, image)
    q, ref = _libjpeg_closest(image, len(learned))
    h, w = image.shape[:2]
    rows = {}
    for key, data in (("libjpeg", ref), ("learned", learned)):
        (out / f"{name}_{key}.jpg").write_bytes(data)
        rows[key] = {**score(image, data, lpips=True), "file": f"{name}_{key}.jpg"}
    rows["libjpeg"]["quality"] = q
    rows["model"] = JPEG_MODEL
    rows["figure"] = _crops_figure(
        out / f"{name}_jpeg.png",
        image,
        [decode(ref), decode(learned)],
        ["original", f"libjpeg q{q}", f"learned ({JPEG_MODEL})"],
        rows,
    )
    return rows


def _crops_figure(path: Path, image, decoded, titles, rows) -> str:
    """The central 128x128 of each, enlarged 2x with nearest neighbours, side by side."""

    h, w = image.shape[:2]
    s = min(128, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    tiles = [
        Image.fromarray(np.ascontiguousarray(x[top : top + s, left : left + s])).resize(
            (2 * s, 2 * s), Image.Resampling.NEAREST
        )
        for x in [image, *decoded]
    ]
    canvas = Image.new("RGB", (len(tiles) * (2 * s + 8), 2 * s + 22), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (t, title) in enumerate(zip(tiles, titles)):
        canvas.paste(t, (i * (2 * s + 8), 20))
        draw.text((i * (2 * s + 8) + 2, 4), title, fill="black")
    canvas.save(path)
    return path.name


def preview_part(name: str, image: np.ndarray, out: Path) -> dict:
    sq = square_256(image)
    res = encode_image(sq, PREVIEW_BYTES, seed=0)
    (out / f"{name}.tri").write_bytes(res.data)
    interp = raster_cpu.interpolate(res.preview, 256)
    rows: dict = {"bytes": res.num_bytes, "file": f"{name}.tri"}
    recon = {"interpolation": interp}
    try:
        decoder = load_decoder(DEFAULT_MODEL)
        recon["neural"] = decoder.decode([res.preview])[0]
        rows["model"] = decoder.name
    except FileNotFoundError:
        rows["model"] = None  # no shipped neural decoder in this install: interpolation only
    x = sq.astype(np.float32)
    for key, y in recon.items():
        y32 = y.astype(np.float32)
        rows[key] = {
            "psnr": float(metrics.psnr(x, y32)),
            "ssim": float(metrics.ssim(x, y32)),
            "image": _save(out / f"{name}_{key}.png", y),
        }
    rows["original"] = _save(out / f"{name}_square.png", sq)
    return rows


def _page(results: list[dict], seconds: float) -> str:
    def img(src, alt):
        return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" loading="eager">'

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>compat-codecs demo</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%;image-rendering:pixelated}.row{display:flex;gap:8px}.row figure{margin:0}"
        "figcaption{font-size:90%}</style></head><body>",
        "<h1>compat-codecs: both methods, same bitstreams</h1>",
        "<p>Left: <b>jpegedit</b> - a learned JPEG (Q-tables + attention) against libjpeg at about the same "
        "bytes; both are ordinary JPEG files, decoded here by the standard decoder. Right: <b>trimesh_decode</b> - "
        f"one {PREVIEW_BYTES}-byte triangle preview, decoded by interpolation and by the neural decoder.</p>",
    ]
    for r in results:
        j, p = r["jpeg"], r["preview"]
        parts.append(f"<h2>{html.escape(r['name'])} ({r['size'][1]}x{r['size'][0]})</h2>")
        parts.append("<h3>JPEG at equal bytes (centre, 2x)</h3>" + img(j["figure"], f"{r['name']} JPEG comparison"))
        parts.append(
            "<table><tr><th></th><th>bytes</th><th>bpp</th><th>PSNR dB</th><th>MS-SSIM</th><th>LPIPS</th></tr>"
        )
        for k in ("libjpeg", "learned"):
            m = j[k]
            label = f"libjpeg q{m['quality']}" if k == "libjpeg" else f"learned ({j['model']})"
            parts.append(
                f"<tr><th>{label}</th><td>{m['bytes']}</td><td>{m['bpp']:.3f}</td><td>{m['psnr']:.2f}</td>"
                f"<td>{'n/a' if m['ms_ssim'] is None else format(m['ms_ssim'], '.4f')}</td>"
                f"<td>{m['lpips']:.4f}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<h3>The same {p['bytes']}-byte preview, two decoders</h3><div class='row'>")
        parts.append(f"<figure>{img(p['original'], 'original')}<figcaption>original (256x256)</figcaption></figure>")
        for k in ("interpolation", "neural"):
            if k in p:
                label = f"{k} ({p['model']})" if k == "neural" else k
                cap = f"{label}: {p[k]['psnr']:.2f} dB, SSIM {p[k]['ssim']:.3f}"
                parts.append(f"<figure>{img(p[k]['image'], k)}<figcaption>{html.escape(cap)}</figcaption></figure>")
        parts.append("</div>")
        if p.get("model") is None:
            parts.append("<p>No neural decoder model ships with this install: interpolation only.</p>")
    parts.append(f"<p>Made by <code>python -m launch.demo</code> in {seconds:.0f} s. Numbers: report.json.</p>")
    # marks every image that the browser decoded (launch/check_report.py reads the marks)
    parts.append(
        "<script>window.addEventListener('load',()=>{for(const i of document.images)"
        "{i.setAttribute('data-decoded', i.complete && i.naturalWidth>0 ? 'yes':'no')}"
        "document.body.setAttribute('data-ready','yes')});</script></body></html>"
    )
    return "\n".join(parts)


def run(images: str | None, out: str, force: bool, limit: int | None = None) -> Path:
    t0 = time.perf_counter()
    outdir = Path(out)
    index = outdir / "index.html"
    if index.exists() and not force:
        raise UsageError(f"{index} exists; pass --force to overwrite it")
    photos = folder_photos(images, limit) if images else embedded_photos()[:limit]
    outdir.mkdir(parents=True, exist_ok=True)
    results = []
    for k, (name, image) in enumerate(photos):
        print(
            f"[{k + 1}/{len(photos)}] {name}: learned JPEG vs libjpeg, then a {PREVIEW_BYTES}-byte preview", flush=True
        )
        results.append(
            {
                "name": name,
                "size": list(image.shape[:2]),
                "jpeg": jpeg_part(name, image, outdir),
                "preview": preview_part(name, image, outdir),
            }
        )
    seconds = time.perf_counter() - t0
    write_atomic(
        outdir / "report.json", json.dumps({"seconds": seconds, "images": results}, indent=1).encode(), force=True
    )
    write_atomic(index, _page(results, seconds).encode(), force=True)
    return index


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(
        prog="python -m launch.demo",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--images", default=None, help="a folder of photos (default: scikit-image's astronaut, coffee, chelsea)"
    )
    p.add_argument("--out", "-o", default="demo", help="report folder (default ./demo)")
    p.add_argument("--limit", type=int, default=None, help="only the first N photos")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")

    def command(args) -> str:
        index = run(args.images, args.out, args.force, args.limit)
        return f"report: {index.resolve()}  (open it in a browser)"

    return run_tool("python -m launch.demo", p, command, argv)


if __name__ == "__main__":
    sys.exit(main())
