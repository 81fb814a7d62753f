"""The neural decoder's held-out gain against the number of photos it trained on and against its
training steps: one run of ``configs/trimesh_decode/data_scale.py`` (from scratch, constant learning
rate) per preview folder, every checkpoint scored on held-out images; a table (``scale.md``),
``scale.json`` and a plot (``scale.png``) with a log-linear fit of each trend extrapolated to the
paper's +1 dB.

    python launch/data_scale.py --dataset 126=data/previews_126 --dataset 1000=data/previews_1000 \\
        --dataset 3102=data/previews_4k --images ../shared/data/photos_4k/nips17_dev --limit 200 \\
        -o results/previews_scale

``--dataset PHOTOS=FOLDER``: a ``trimesh-decode dataset`` folder and the number of photos it was
drawn from (the folders should hold the same number of crops, so that only the photos differ).
The runs live under ``--runs`` (default ``runs/data_scale/<PHOTOS>``, resumed where they stopped),
their checkpoints are exported there as ``.npz``; the held-out evaluation (previews cached) is
``OUT/evaluation/``, scored by ``trimesh-decode evaluate`` with the shipped ``mobile`` as the
reference. ``--set`` passes overrides to the run config (e.g. ``steps=3000``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "configs" / "trimesh_decode" / "data_scale.py"


def train(photos: int, dataset: str, runs: Path, overrides: str) -> Path:
    """Train (or resume) the run of one folder; returns its directory."""
    work = runs / str(photos)
    arg = f"data.dataset={Path(dataset).resolve()}" + (f",{overrides}" if overrides else "")
    cmd = [sys.executable, str(ROOT / "launch" / "train.py"), f"--config={CONFIG}:{arg}", f"--workdir={work}"]
    subprocess.run(cmd, check=True)
    return work


def export_checkpoints(work: Path, photos: int) -> list[tuple[int, Path]]:
    """Every checkpoint of a run as ``<work>/models/p<photos>_s<step>.npz``: ``[(step, path)]``."""
    from compat.checkpoint import Checkpointer  # lazy: JAX loads only for a study
    from trimesh_decode.models import export_run  # lazy: as above

    ck = Checkpointer(work / "checkpoints", async_save=False)
    try:
        steps = ck.steps()
    finally:
        ck.close()
    out = []
    (work / "models").mkdir(exist_ok=True)
    for step in steps:
        path = work / "models" / f"p{photos}_s{step}.npz"
        if not path.exists():
            export_run(work, path.stem, command=f"launch/data_scale.py ({work})", step=step, directory=path.parent)
        out.append((step, path))
    return out


def fit_log(x: list[float], y: list[float]) -> dict | None:
    """``y = a + b log10(x)`` by least squares, and the x at which it reaches +1 dB (None if it never
    rises)."""
    if len(set(x)) < 2:
        return None
    b, a = np.polyfit(np.log10(x), y, 1)
    reach = float(10 ** ((1.0 - a) / b)) if b > 0 else None
    return {"a": round(float(a), 4), "b_per_decade": round(float(b), 4), "reaches_1db_at": reach}


def study(datasets: list[tuple[int, str]], images: str, out: Path, runs: Path, limit: int | None, overrides: str):
    from trimesh_decode.dataset import read_manifest  # lazy: as below
    from trimesh_decode.evaluate import evaluate  # lazy: JAX and the models load only for a study

    models = {}
    for photos, folder in datasets:
        work = train(photos, folder, runs, overrides)
        models[photos] = export_checkpoints(work, photos)
    paths = [str(p) for photos in models for _, p in models[photos]]
    evaluate(images, out / "evaluation", models=["mobile", *paths], figures=0, baselines=False, limit=limit)
    per = json.loads((out / "evaluation" / "evaluation.json").read_text())["images"]
    interp = np.array([r["interp"]["psnr"] for r in per])
    interp_ssim = float(np.mean([r["interp"]["ssim"] for r in per]))
    rows = []
    for photos, folder in datasets:
        crops = list(read_manifest(folder).values())
        distinct, count = len({c["source"] for c in crops}), len(crops)
        for step, path in models[photos]:
            rec = [r[f"neural_{path.stem}"] for r in per]
            p = np.array([r["psnr"] for r in rec])
            rows.append(
                {
                    "photos": photos,
                    "distinct_photos_in_crops": distinct,
                    "crops": count,
                    "step": step,
                    "gain_db": round(float((p - interp).mean()), 3),
                    "gain_ssim": round(float(np.mean([r["ssim"] for r in rec])) - interp_ssim, 4),
                    "improved": round(float(np.mean(p > interp)), 3),
                    "top1_in_top5": round(float(np.mean([r["top1_in_top5"] for r in rec])), 3),
                }
            )
    shipped = np.array([r["neural"]["psnr"] for r in per])
    last = max(r["step"] for r in rows)
    at_last = [r for r in rows if r["step"] == last]
    biggest = max(p for p, _ in datasets)
    along = [r for r in rows if r["photos"] == biggest]
    return {
        "images": images,
        "limit": limit,
        "held_out_images": len(per),
        "interp_psnr": round(float(interp.mean()), 3),
        "shipped_mobile_gain_db": round(float((shipped - interp).mean()), 3),
        "overrides": overrides,
        "rows": rows,
        "fit_photos": fit_log([r["photos"] for r in at_last], [r["gain_db"] for r in at_last]),
        "fit_steps": fit_log([r["step"] for r in along], [r["gain_db"] for r in along]),
        "fit_steps_photos": biggest,
        "fit_photos_step": last,
    }


def _extrapolation(fit: dict | None, what: str) -> str:
    if fit is None:
        return f"gain against {what}: too few points to fit"
    reach = fit["reaches_1db_at"]
    where = f"+1 dB at about {reach:.3g} {what}" if reach else "never +1 dB (the gain does not rise)"
    return f"gain = {fit['a']:+.3f} {fit['b_per_decade']:+.3f} x log10({what}) dB: {where}"


def write(res: dict, out: Path) -> None:
    import matplotlib  # lazy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    (out / "scale.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        f"# Neural gain against photos and steps ({res['images']}, {res['held_out_images']} held-out images, 200 B)",
        "",
        f"Interpolation {res['interp_psnr']:.2f} dB; the shipped `mobile` gains "
        f"{res['shipped_mobile_gain_db']:+.3f} dB on the same previews.",
        "",
        "| photos | distinct in the crops | crops | step | gain dB | gain SSIM | improved | top-1 in top-5 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['photos']} | {r['distinct_photos_in_crops']} | {r['crops']} | {r['step']} | {r['gain_db']:+.3f} | "
            f"{r['gain_ssim']:+.4f} | {100 * r['improved']:.0f}% | {r['top1_in_top5']:.3f} |"
        )
    lines += [
        "",
        f"- at step {res['fit_photos_step']}: " + _extrapolation(res["fit_photos"], "photos"),
        f"- with {res['fit_steps_photos']} photos: " + _extrapolation(res["fit_steps"], "steps"),
    ]
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    photos = sorted({r["photos"] for r in res["rows"]})
    steps = sorted({r["step"] for r in res["rows"]})
    for s in steps:
        pts = [(r["photos"], r["gain_db"]) for r in res["rows"] if r["step"] == s]
        ax[0].plot(*zip(*pts), "o-", label=f"step {s}")
    for p in photos:
        pts = [(r["step"], r["gain_db"]) for r in res["rows"] if r["photos"] == p]
        ax[1].plot(*zip(*pts), "o-", label=f"{p} photos")
    for a, fit, xs in ((ax[0], res["fit_photos"], photos), (ax[1], res["fit_steps"], steps)):
        if fit:
            top = fit["reaches_1db_at"] or xs[-1] * 10
            x = np.geomspace(xs[0], min(top, xs[-1] * 1e4), 50)
            a.plot(x, fit["a"] + fit["b_per_decade"] * np.log10(x), "k:", label="log fit")
        a.axhline(1.0, color="r", lw=0.7, label="paper +1 dB")
        a.axhline(res["shipped_mobile_gain_db"], color="grey", lw=0.7, ls="--", label="shipped mobile")
        a.set(xscale="log", ylabel="neural - interpolation (dB)")
        a.legend(fontsize=7)
    ax[0].set(xlabel="photos in the training pool", title="gain against photos")
    ax[1].set(xlabel="training steps (batch 16)", title="gain against steps")
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=110)


def _dataset(text: str) -> tuple[int, str]:
    photos, sep, folder = text.partition("=")
    if not sep or not photos.isdigit() or int(photos) < 1 or not (Path(folder) / "manifest.jsonl").is_file():
        raise argparse.ArgumentTypeError(f"expected PHOTOS=FOLDER with a dataset folder, got {text!r}")
    return int(photos), folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=_dataset, action="append", required=True, help="PHOTOS=FOLDER (repeat)")
    ap.add_argument("--images", required=True, help="folder of held-out images")
    ap.add_argument("--limit", type=int, default=None, help="only the first N held-out images")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "data_scale"), help="where the runs live")
    ap.add_argument("--set", default="", help="overrides of the run config, e.g. steps=3000")
    ap.add_argument("-o", "--out", required=True, help="output folder (resumable)")
    args = ap.parse_args(argv)
    if not Path(args.images).is_dir():
        print(f"data_scale: --images must be a folder, got {args.images}", file=sys.stderr)
        return 2
    if len({p for p, _ in args.dataset}) != len(args.dataset):
        print("data_scale: each --dataset needs its own photo count", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        res = study(sorted(args.dataset), args.images, out, Path(args.runs), args.limit, args.set)
    except subprocess.CalledProcessError as e:  # launch/train.py has printed its own line
        print(f"data_scale: a run stopped (launch/train.py exit {e.returncode}); rerun to resume", file=sys.stderr)
        return e.returncode
    write(res, out)
    print((out / "scale.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
