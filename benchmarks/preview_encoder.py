"""Quality, size and speed of the preview encoder on Kodak at 200 bytes (issue goal: >= 18.75 dB).

The 24 Kodak images, centre-cropped to a square and resized to 256x256 (Lanczos), are encoded at
200 bytes, one image at a time on one core, then decoded by interpolation at 256x256; PSNR is RGB,
0..255. The peer is the reference point of ../shared/specs/triangle_preview.md (the WebP 2 C++
encoder on this kind of machine: 18.75 dB at 206.5 bytes, median 8.3 s per image), which cannot be
run here, and WebP / JPEG (scan bytes) at the same budget via Pillow, measured in the same run.
Then images/s with every core (``encode_images``), PSNR and seconds at 3000 to 30000 iterations
(what more search buys), and the RD curve: PSNR and SSIM against bytes from 16 to 400 B, with
ThumbHash and BlurHash at their own sizes (``thumbhash-python``, ``blurhash-python``: the peers
extra), measured in the same run. Writes results/benchmarks/preview_encoder.json and its plot,
preview_encoder.png (PSNR and SSIM against bytes, PSNR against one-core seconds).
``preview_encoder_history.py`` puts the current encoder beside the code of an earlier commit.

    python benchmarks/preview_encoder.py [--count 24] [--iterations N (default: the encoder's, 16000)]
    python benchmarks/preview_encoder.py --images DIR -o out/previews.json   # any folder: centre squares
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from trimesh_decode import baselines, raster_cpu
from trimesh_decode.encoder import EncoderConfig, encode_image, encode_images

ROOT = Path(__file__).resolve().parents[1]
KODAK = Path(os.environ.get("COMPAT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "kodak"
REFERENCE = {"psnr": 18.75, "bytes_mean": 206.5, "seconds_median": 8.3}


def kodak_256(i: int) -> np.ndarray:
    return square_256(Image.open(KODAK / f"kodim{i:02d}.png").convert("RGB"))


def square_256(im: Image.Image) -> np.ndarray:
    """The centre square of an image, resized to 256x256 (Lanczos)."""
    w, h = im.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(im.crop(box).resize((256, 256), Image.Resampling.LANCZOS))


def psnr(a, b) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def ssim(a, b) -> float:
    """SSIM (compat.metrics: Gaussian 11x11, sigma 1.5, mean over RGB) of two uint8 images."""
    from compat import metrics

    return float(metrics.ssim(np.asarray(a, np.float32), np.asarray(b, np.float32)))


def mean_scores(results, images) -> dict:
    """Mean PSNR and SSIM of the previews decoded by interpolation at 256x256."""
    dec = [raster_cpu.interpolate(r.preview, 256) for r in results]
    return {
        "psnr_mean": round(float(np.mean([psnr(d, im) for d, im in zip(dec, images)])), 3),
        "ssim_mean": round(float(np.mean([ssim(d, im) for d, im in zip(dec, images)])), 4),
    }


BUDGETS = (16, 20, 24, 32, 48, 64, 100, 150, 200, 300, 400)
BLURHASH_COMPONENTS = ((3, 3), (4, 3), (4, 4), (5, 5), (6, 6), (9, 9))


def rd_curve(images, cfg) -> dict:
    """Mean PSNR against mean bytes: ours at every budget of BUDGETS, and the placeholders web pages
    use, at their own sizes (the peers extra; skipped when missing): ThumbHash (decoded at 32 px,
    then bilinear to 256) and BlurHash at several component counts (its string's characters are its
    bytes; decoded at 256)."""
    curve = {"ours": [], "thumbhash": None, "blurhash": None}
    for budget in BUDGETS:
        rs = [encode_image(img, budget, seed=0, config=cfg) for img in images]
        curve["ours"].append(
            {
                "target": budget,
                "bytes_mean": round(float(np.mean([r.num_bytes for r in rs])), 2),
                "bytes_min": int(min(r.num_bytes for r in rs)),
                **mean_scores(rs, images),
                "seconds_median": round(float(np.median([r.seconds for r in rs])), 3),
            }
        )
        print(json.dumps(curve["ours"][-1]), flush=True)
    try:
        import base64

        import blurhash
        import thumbhash
    except ImportError:
        return curve  # pip install -e '.[peers]'
    ps, ss, ns = [], [], []
    for img in images:
        h = thumbhash.image_to_thumbhash(Image.fromarray(img))
        ns.append(len(base64.b64decode(h)))
        dec = np.asarray(thumbhash.thumbhash_to_image(h).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR))
        ps.append(psnr(dec, img))
        ss.append(ssim(dec, img))
    curve["thumbhash"] = [
        {
            "bytes_mean": round(float(np.mean(ns)), 2),
            "psnr_mean": round(float(np.mean(ps)), 3),
            "ssim_mean": round(float(np.mean(ss)), 4),
        }
    ]
    curve["blurhash"] = []
    for nx, ny in BLURHASH_COMPONENTS:
        ps, ss, ns = [], [], []
        for img in images:
            h = blurhash.encode(Image.fromarray(img), nx, ny)
            ns.append(len(h))
            dec = np.asarray(blurhash.decode(h, 256, 256).convert("RGB"))
            ps.append(psnr(dec, img))
            ss.append(ssim(dec, img))
        curve["blurhash"].append(
            {
                "components": [nx, ny],
                "bytes_mean": round(float(np.mean(ns)), 2),
                "psnr_mean": round(float(np.mean(ps)), 3),
                "ssim_mean": round(float(np.mean(ss)), 4),
            }
        )
    return curve


ITERATIONS = (3000, 6000, 10000, 12000, 16000, 30000)


def iterations_curve(images, budget: int, cfg) -> list[dict]:
    """Mean PSNR and median one-core seconds at the budget for other iteration counts (the same
    encoder otherwise): what more search buys, and the time it costs."""
    rows = []
    for n in ITERATIONS:
        c = dataclasses.replace(cfg, iterations=n)
        rs = [encode_image(img, budget, seed=0, config=c) for img in images]
        rows.append(
            {
                "iterations": n,
                **mean_scores(rs, images),
                "seconds_median_one_core": round(float(np.median([r.seconds for r in rs])), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def seconds_curve(ax, rows: list[dict], style: str, label: str) -> None:
    """PSNR against median one-core seconds, each point labelled with its iteration count."""
    ax.plot([r["seconds_median_one_core"] for r in rows], [r["psnr_mean"] for r in rows], style, label=label)
    for r in rows:
        ax.annotate(
            str(r["iterations"]),
            (r["seconds_median_one_core"], r["psnr_mean"]),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )


def plot(curve: dict, iterations: list[dict], title: str, path: Path) -> None:
    """Three panels: PSNR and SSIM against bytes (ours at every budget, ThumbHash, BlurHash; WebP 2's
    reference point), and PSNR against one-core seconds per image (ours at each iteration count at
    the budget, WebP 2's reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    ticks = [16, 24, 32, 48, 64, 100, 150, 200, 300, 400]
    for ax, key, label in ((axes[0], "psnr_mean", "PSNR (dB, RGB)"), (axes[1], "ssim_mean", "SSIM")):
        for name, style in (("ours", "o-"), ("blurhash", "s--"), ("thumbhash", "D")):
            pts = [q for q in curve.get(name) or [] if key in q]
            if pts:
                ax.plot([q["bytes_mean"] for q in pts], [q[key] for q in pts], style, label=name)
        if key == "psnr_mean":
            ax.plot([REFERENCE["bytes_mean"]], [REFERENCE["psnr"]], "kx", ms=9, label="WebP 2 (reference figure)")
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("bytes (mean over the images)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax = axes[2]
    seconds_curve(ax, iterations, "o-", "ours")
    ax.plot([REFERENCE["seconds_median"]], [REFERENCE["psnr"]], "kx", ms=9, label="WebP 2 (reference figure)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image, median, one core (log; labels: iterations)")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--iterations", type=int, default=EncoderConfig().iterations)
    ap.add_argument("--bytes", type=int, default=200)
    ap.add_argument("--images", default=None, help="any folder of images instead of Kodak (needs -o)")
    ap.add_argument("-o", "--out", default=None, help="the JSON to write (default, for Kodak only: results/)")
    args = ap.parse_args()
    cfg = EncoderConfig(iterations=args.iterations)
    if args.images:
        from compat.images import list_images, load_image

        if not args.out:
            raise SystemExit("--images needs -o OUT.json (the committed results/ hold Kodak's figures)")
        paths = list_images(args.images)[: args.count]
        if not paths:
            raise SystemExit(f"no images in {args.images}")
        images = [square_256(Image.fromarray(load_image(p))) for p in paths]
    else:
        if not KODAK.exists():
            raise SystemExit(f"needs the Kodak images in {KODAK}")
        paths = [KODAK / f"kodim{i:02d}.png" for i in range(1, args.count + 1)]
        images = [kodak_256(i) for i in range(1, args.count + 1)]
    encode_image(images[0], args.bytes, 0, EncoderConfig(iterations=20))  # compile (numba cache)
    rows = []
    for i, img in enumerate(images, 1):
        r = encode_image(img, args.bytes, seed=0, config=cfg)
        dec = raster_cpu.interpolate(r.preview, 256)
        webp = baselines.at_bytes(img, args.bytes, "webp")
        jpeg = baselines.at_bytes(img, args.bytes, "jpeg")
        rows.append(
            {
                "image": paths[i - 1].stem,
                "bytes": r.num_bytes,
                "psnr": round(psnr(dec, img), 3),
                "ssim": round(ssim(dec, img), 4),
                "seconds": round(r.seconds, 3),
                "vertices": len(r.preview.vertices) + 4,
                "colours": r.preview.num_colours,
                "webp_psnr": round(webp.psnr, 3) if webp else None,
                "webp_bytes": webp.num_bytes if webp else None,
                "jpeg_scan_psnr": round(jpeg.psnr, 3) if jpeg else None,
                "jpeg_scan_bytes": jpeg.num_bytes if jpeg else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    t = time.perf_counter()
    encode_images(images, args.bytes, seed=0, config=cfg, processes=os.cpu_count())
    par = len(images) / (time.perf_counter() - t)
    col = lambda k: np.array([r[k] for r in rows if r[k] is not None], float)  # noqa: E731
    summary = {
        "images": len(rows),
        "target_bytes": args.bytes,
        "iterations": args.iterations,
        "psnr_mean": round(col("psnr").mean(), 3),
        "psnr_min": round(col("psnr").min(), 3),
        "psnr_max": round(col("psnr").max(), 3),
        "ssim_mean": round(col("ssim").mean(), 4),
        "bytes_mean": round(col("bytes").mean(), 2),
        "bytes_min": int(col("bytes").min()),
        "bytes_max": int(col("bytes").max()),
        "seconds_median_one_core": round(float(np.median(col("seconds"))), 3),
        "seconds_max_one_core": round(float(col("seconds").max()), 3),
        "images_per_second_all_cores": round(par, 2),
        "cores": os.cpu_count(),
        "webp_psnr_mean": round(col("webp_psnr").mean(), 3),
        "jpeg_scan_psnr_mean": round(col("jpeg_scan_psnr").mean(), 3),
        "reference_webp2": REFERENCE,
        "speedup_vs_reference_median": round(REFERENCE["seconds_median"] / float(np.median(col("seconds"))), 1),
        "machine": platform.processor() or platform.machine(),
    }
    curve = rd_curve(images, cfg)
    summary["iterations_curve"] = iterations_curve(images, args.bytes, cfg)
    print(json.dumps(summary, indent=1))
    out = Path(args.out) if args.out else ROOT / "results" / "benchmarks" / "preview_encoder.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "rd_curve": curve, "images": rows}, indent=1) + "\n")
    where = Path(args.images).name if args.images else "Kodak"
    title = f"Previews vs the web's placeholders ({where} squares, 256x256; seconds at {args.bytes} B)"
    plot(curve, summary["iterations_curve"], title, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
