"""The preview encoder against its own past: quality and one-core seconds of the current code and of
the code at an earlier commit, on the same images, in one run.

The speed goals of the preview encoder are stated against the code of a given day ("today's
30000-iteration quality in <= 0.5 s"). Timings from different sessions of this VM differ by up to
2x, so both encoders are measured here, one after the other, on the same core. The earlier code is
taken from this repository's history (``git archive REV compat trimesh_decode`` into a temporary
folder); each encoder runs in its own process with its tree first on ``sys.path`` (checked), pinned
to one core, with a warm-up encode before the clock starts (numba compiles it). Each preview's
bytes come back and are decoded by the *current* plain decoder (the format has not changed), so
PSNR and SSIM are measured the same way for both.

Images: 256x256 centre squares (Lanczos) of Kodak by default, or of any folder (``--images``),
e.g. the ImageNet-domain photos ``../shared/data/photos_4k/nips17_dev``. Writes a JSON (rows per
encoder and iteration count, per-image figures, the goal's verdict) and a plot of PSNR against
median seconds per image.

    python benchmarks/preview_encoder_history.py -o out/history_kodak.json
    python benchmarks/preview_encoder_history.py --images ../shared/data/photos_4k/nips17_dev --count 100 \\
        -o out/history_nips17.json
    python benchmarks/preview_encoder_history.py --rev 220b1d2 --past 3000,10000,30000 --now 0,30000 -o out/h.json

``--now 0`` is the current encoder's default iteration count. The default ``--rev`` is the code
of the day issue 29 was filed (220b1d2: 3000 iterations by default, "30000 iterations ~4.7 s").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ISSUE_29_FILED = "220b1d2"  # the encoder of the day the speed goal was written


def _worker(tree: str, images_npz: str, iterations: str, budget: int, out: str, core: int) -> None:
    """Encode every image at every iteration count with the encoder of ``tree`` (one core)."""
    import time

    sys.path.insert(0, tree)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    import trimesh_decode
    from trimesh_decode.encoder import EncoderConfig, encode_image

    where = Path(trimesh_decode.__file__).resolve()
    if Path(tree).resolve() not in where.parents:
        raise SystemExit(f"imported {where}, not the tree {tree}")
    images = np.load(images_npz)["images"]
    encode_image(images[0], budget, 0, EncoderConfig(iterations=1000))  # compile every path before the clock
    default = EncoderConfig().iterations
    rows = []
    for n in [int(s) for s in iterations.split(",")]:
        cfg = EncoderConfig(iterations=n or default)
        for i, img in enumerate(images):
            t = time.perf_counter()
            r = encode_image(img, budget, seed=0, config=cfg)
            rows.append(
                {
                    "iterations": cfg.iterations,
                    "default": n == 0 or cfg.iterations == default,
                    "image": i,
                    "seconds": time.perf_counter() - t,
                    "data": r.data.hex(),
                }
            )
        print(f"  {tree}: {cfg.iterations} iterations done", file=sys.stderr, flush=True)
    Path(out).write_text(json.dumps({"default_iterations": default, "rows": rows}))


def _run_tree(label: str, tree: Path, images_npz: Path, iterations: str, budget: int, core: int, tmp: Path) -> dict:
    out = tmp / f"rows_{label}.json"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        str(tree),
        str(images_npz),
        iterations,
        str(budget),
        str(out),
        str(core),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(cmd, check=True, env=env, cwd=tmp)
    return json.loads(out.read_text())


def _export(rev: str, dest: Path) -> str:
    """The packages at ``rev`` in ``dest``; returns the full commit id."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "compat", "trimesh_decode"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return sha.strip()


def _score(raw: dict, images: np.ndarray, who: str) -> list[dict]:
    """Decode every preview with the current plain decoder; rows per iteration count."""
    # imported here, not at the top: the worker must import trimesh_decode from its own tree
    from preview_encoder import psnr, ssim

    from trimesh_decode import raster_cpu
    from trimesh_decode.bitstream import from_bytes

    by_n: dict[int, list] = {}
    for r in raw["rows"]:
        by_n.setdefault(r["iterations"], []).append(r)
    out = []
    for n, rs in sorted(by_n.items()):
        dec = np.stack([raster_cpu.interpolate(from_bytes(bytes.fromhex(r["data"])), 256) for r in rs])
        ref = images[[r["image"] for r in rs]]
        ps = [psnr(d, o) for d, o in zip(dec, ref)]
        ss = [ssim(d, o) for d, o in zip(dec, ref)]
        secs = [r["seconds"] for r in rs]
        out.append(
            {
                "encoder": who,
                "iterations": n,
                "default": rs[0]["default"],
                "psnr_mean": round(float(np.mean(ps)), 3),
                "ssim_mean": round(float(np.mean(ss)), 4),
                "bytes_mean": round(float(np.mean([len(r["data"]) // 2 for r in rs])), 2),
                "seconds_median_one_core": round(float(np.median(secs)), 3),
                "seconds_mean_one_core": round(float(np.mean(secs)), 3),
                "psnr": [round(p, 3) for p in ps],
                "seconds": [round(s, 3) for s in secs],
            }
        )
        print(json.dumps({k: v for k, v in out[-1].items() if k not in ("psnr", "seconds")}), flush=True)
    return out


def verdict(past: list[dict], now: list[dict], goal_seconds: float = 0.5) -> dict:
    """Today's default against the past code's largest iteration count: quality at least as high,
    at most ``goal_seconds`` per image, and the ratio of the two median times; plus the
    cheapest current row that reaches the past quality (its speed-up)."""
    ref = max(past, key=lambda r: r["iterations"])
    default = next(r for r in now if r["default"])
    reach = [r for r in now if r["psnr_mean"] >= ref["psnr_mean"]]
    cheapest = min(reach, key=lambda r: r["seconds_median_one_core"]) if reach else None
    paired = np.array(default["psnr"]) - np.array(ref["psnr"])
    return {
        "past": {
            "iterations": ref["iterations"],
            "psnr_mean": ref["psnr_mean"],
            "seconds": ref["seconds_median_one_core"],
        },
        "default": {
            "iterations": default["iterations"],
            "psnr_mean": default["psnr_mean"],
            "seconds": default["seconds_median_one_core"],
        },
        "default_minus_past_db": round(float(paired.mean()), 3),
        "default_better_on": int((paired > 0).sum()),
        "images": int(paired.size),
        "speedup_default": round(ref["seconds_median_one_core"] / default["seconds_median_one_core"], 1),
        "cheapest_at_past_quality": None
        if cheapest is None
        else {
            "iterations": cheapest["iterations"],
            "seconds": cheapest["seconds_median_one_core"],
            "speedup": round(ref["seconds_median_one_core"] / cheapest["seconds_median_one_core"], 1),
        },
        "goal_met": bool(
            default["psnr_mean"] >= ref["psnr_mean"] and default["seconds_median_one_core"] <= goal_seconds
        ),
    }


def plot(past: list[dict], now: list[dict], rev: str, title: str, path: Path) -> None:
    import matplotlib
    from preview_encoder import seconds_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rows, label, style in ((past, f"encoder at {rev}", "s--"), (now, "current encoder", "o-")):
        seconds_curve(ax, rows, style, label)
    d = next(r for r in now if r["default"])
    ax.plot([d["seconds_median_one_core"]], [d["psnr_mean"]], "r*", ms=12, label="current default")
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image, median, one core (log)")
    ax.set_ylabel("PSNR (dB, interpolation)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=ISSUE_29_FILED, help="the earlier commit (default: %(default)s)")
    ap.add_argument("--past", default="3000,10000,30000", help="iteration counts of the earlier encoder")
    ap.add_argument("--now", default="3000,6000,0,30000", help="iteration counts of the current one (0: its default)")
    ap.add_argument("--bytes", type=int, default=200)
    ap.add_argument("--images", default=None, help="a folder of images (default: Kodak)")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--core", type=int, default=0, help="the core both encoders run on")
    ap.add_argument("-o", "--out", required=True, help="the JSON to write (the plot goes beside it)")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    from PIL import Image
    from preview_encoder import KODAK, square_256

    from compat.images import list_images, load_image

    out = Path(args.out)
    if out.exists() and not args.force:
        raise SystemExit(f"{out} exists (--force to overwrite)")
    folder = Path(args.images) if args.images else KODAK
    if not folder.is_dir():
        raise SystemExit(f"no folder {folder}")
    paths = list_images(folder)[: args.count]
    if not paths:
        raise SystemExit(f"no images in {folder}")
    images = np.stack([square_256(Image.fromarray(load_image(p))) for p in paths])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "images.npz", images=images)
        sha = _export(args.rev, tmp / "past")
        print(f"{len(images)} images from {folder}; earlier code {sha[:12]}", flush=True)
        raw_past = _run_tree("past", tmp / "past", tmp / "images.npz", args.past, args.bytes, args.core, tmp)
        raw_now = _run_tree("now", ROOT, tmp / "images.npz", args.now, args.bytes, args.core, tmp)
    past = _score(raw_past, images, args.rev)
    now = _score(raw_now, images, "current")
    v = verdict(past, now)
    print(json.dumps(v, indent=1))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "images": [p.name for p in paths],
        "folder": str(folder),
        "target_bytes": args.bytes,
        "past_commit": sha,
        "current_commit": head,
        "cpu": (os.cpu_count(), os.uname().machine),
        "verdict": v,
        "past": past,
        "current": now,
    }
    out.write_text(json.dumps(record, indent=1) + "\n")
    plot(
        past,
        now,
        args.rev,
        f"Preview encoder then and now ({folder.name}, {len(images)} squares, {args.bytes} B)",
        out.with_suffix(".png"),
    )
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
