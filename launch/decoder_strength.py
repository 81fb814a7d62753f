"""The neural decoders' gain over interpolation against the encoder's strength: the same images
encoded at several hill-climbing budgets, each decoded by interpolation and by every model; a table
(``strength.md``), ``strength.json`` and a plot (``strength.png``: gain in dB against iterations,
one line per decoder, plus interpolation's own PSNR).

    python launch/decoder_strength.py --images ../shared/data/photos_4k/nips17_dev --limit 100 \\
        --iterations 300 3000 16000 30000 --model mobile --model OLD.npz -o results/previews_strength

With several models, ``strength.md`` also holds each one's PSNR image by image against the first
(mean difference and standard error). The study of training on mixed budgets against 3000 only, at
equal photos, crops and steps (``results/previews_strength_mix``): two preview folders of the same
crops (``trimesh-decode dataset`` with ``--iterations 3000:30000`` and ``--iterations 3000``), one
``configs/trimesh_decode/data_scale.py`` run on each, then

    python launch/decoder_strength.py --images ../shared/data/photos_4k/nips17_dev --limit 100 \\
        --iterations 300 3000 6000 10000 16000 30000 --model runs/strength_mixed \\
        --model runs/strength_3000 --model mobile -o results/previews_strength_mix

Each budget is one ``trimesh-decode evaluate`` folder under OUT (``it<N>/``, previews cached there),
so an interrupted study continues where it stopped. Without baselines or figures; the images'
centre squares at 256x256, 200 bytes, seed 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def study(images: str, out: Path, iterations: list[int], models: list[str], limit: int | None) -> dict:
    from trimesh_decode.evaluate import evaluate  # lazy: JAX and the models load only for a study

    rows = []
    for n in iterations:
        evaluate(images, out / f"it{n}", models=models, iterations=n, figures=0, baselines=False, limit=limit)
        full = json.loads((out / f"it{n}" / "evaluation.json").read_text())
        per = full["images"]
        keys = [k for k in per[0] if k == "neural" or k.startswith("neural_")]
        interp = np.array([r["interp"]["psnr"] for r in per])
        row = {"iterations": n, "images": len(per), "interp_psnr": round(float(interp.mean()), 3)}
        first = np.array([r[keys[0]]["psnr"] for r in per])
        for i, (label, k) in enumerate(zip(labels(models), keys)):
            p = np.array([r[k]["psnr"] for r in per])
            s = np.array([r[k]["ssim"] - r["interp"]["ssim"] for r in per])
            row[label] = {
                "gain_db": round(float((p - interp).mean()), 3),
                "gain_ssim": round(float(s.mean()), 4),
                "improved": round(float(np.mean(p > interp)), 3),
            }
            if i:  # image by image against the first model: the mean difference and its standard error
                d = p - first
                se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
                row[label]["vs_first_db"] = round(float(d.mean()), 4)
                row[label]["vs_first_se"] = round(se, 4)
        rows.append(row)
    return {"images": images, "limit": limit, "models": models, "labels": labels(models), "rows": rows}


def labels(models: list[str]) -> list[str]:
    """The table's name of each model: a shipped name as it is, a file or run folder by its stem."""
    return [Path(m).stem if ("/" in m or m.endswith(".npz")) else m for m in models]


def write(res: dict, out: Path) -> None:
    import matplotlib  # lazy: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: as above

    (out / "strength.json").write_text(json.dumps(res, indent=1) + "\n")
    models = res["labels"]
    lines = [
        f"# Neural gain against encoder strength ({res['images']}, {res['rows'][0]['images']} images, 200 B)",
        "",
        "| iterations | interpolation (dB) | " + " | ".join(f"{m}: gain dB / SSIM / improved" for m in models) + " |",
        "|---|---|" + "---|" * len(models),
    ]
    for r in res["rows"]:
        cells = [f"{r[m]['gain_db']:+.3f} / {r[m]['gain_ssim']:+.4f} / {100 * r[m]['improved']:.0f}%" for m in models]
        lines.append(f"| {r['iterations']} | {r['interp_psnr']:.2f} | " + " | ".join(cells) + " |")
    if len(models) > 1:
        lines += [
            "",
            f"Image by image against `{models[0]}`: mean PSNR difference in dB (standard error).",
            "",
            "| iterations | " + " | ".join(f"{m} - {models[0]}" for m in models[1:]) + " |",
            "|---|" + "---|" * (len(models) - 1),
        ]
        for r in res["rows"]:
            cells = [f"{r[m]['vs_first_db']:+.3f} ({r[m]['vs_first_se']:.3f})" for m in models[1:]]
            lines.append(f"| {r['iterations']} | " + " | ".join(cells) + " |")
    (out / "strength.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    its = [r["iterations"] for r in res["rows"]]
    for m in models:
        ax[0].plot(its, [r[m]["gain_db"] for r in res["rows"]], "o-", label=Path(m).stem)
    ax[0].set(xscale="log", xlabel="encoder iterations", ylabel="neural - interpolation (dB)", title="gain")
    ax[0].axhline(0, color="grey", lw=0.5)
    ax[0].legend()
    ax[1].plot(its, [r["interp_psnr"] for r in res["rows"]], "o-", color="k", label="interpolation")
    for m in models:
        ax[1].plot(its, [r["interp_psnr"] + r[m]["gain_db"] for r in res["rows"]], "o--", label=Path(m).stem)
    ax[1].set(xscale="log", xlabel="encoder iterations", ylabel="PSNR (dB)", title="quality")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / "strength.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="folder of held-out images")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--iterations", type=int, nargs="+", required=True, help="encoder budgets")
    ap.add_argument("--model", action="append", required=True, help="a neural decoder (repeat)")
    ap.add_argument("-o", "--out", required=True, help="output folder (resumable)")
    args = ap.parse_args(argv)
    if not Path(args.images).is_dir() or min(args.iterations) < 1:
        print(
            f"decoder_strength: --images must be a folder and --iterations positive, got {args.images}", file=sys.stderr
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = study(args.images, out, sorted(set(args.iterations)), args.model, args.limit)
    write(res, out)
    print((out / "strength.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
