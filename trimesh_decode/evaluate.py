"""The second paper's evaluation: interpolation vs neural decoding of the same ~200-byte previews.

For every held-out image (centre-cropped to a square, resized to 256x256 with Lanczos; Kodak by
default; or, with ``views="tiles"``, every whole 256x256 tile of the image at its own resolution,
the grid centred - six per Kodak image, 144 in all) the preview is encoded once (cached under
``OUT/previews``, so a rerun reuses it) and decoded by

* ``interp`` - barycentric interpolation (the standard decoder);
* ``neural`` - each given model (the first one is "the" neural decoder; more are ablations), and
  optionally the first one averaged over the square's symmetries (``symmetries``);
* ``blur1`` / ``blur5`` - interpolation then a Gaussian blur of radius 2, once / five times;
* ``webp`` / ``jpeg`` - Pillow at the preview's own byte count (downscale, encode, upscale; JPEG
  counts scan bytes, see :mod:`trimesh_decode.baselines`).

With ``dataset`` (``--dataset DIR``) the views are instead the 256x256 crops of a ``trimesh-decode
dataset`` folder, decoded from the previews stored beside them (:func:`dataset_views`): how a model
does on the very bitstreams it trained on, or on a held-out folder built the same way.

Scores per image: PSNR (RGB, 0..255), SSIM, and the semantic measures of the paper's Table 1 with
compat's EfficientNet-Lite0 (standing in for Inception-ResNet-v2): L2 between logit vectors, and
whether the original's top-1 class is in the reconstruction's top 1 / 5 / 10. Summary: means, the
fraction of images the neural decoder improves, paired t-tests against interpolation.

Writes ``OUT/evaluation.json`` (every number), ``OUT/evaluation.md`` (a table with the paper's
numbers beside ours) and ``OUT/figures/*.png`` (original | interpolation | neural, with PSNR/SSIM,
as the paper's Fig. 1 and 6).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

from compat import metrics
from compat.images import ImageError, center_crop, load_folder, load_image, write_file_atomic
from trimesh_decode import SIZE, raster, raster_cpu
from trimesh_decode import baselines as bl
from trimesh_decode.bitstream import PreviewFormatError, from_bytes
from trimesh_decode.dataset import read_manifest
from trimesh_decode.encoder import EncoderConfig, encode_images
from trimesh_decode.models import load_model

__all__ = ["square_256", "dataset_views", "evaluate", "PAPER"]

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """An evaluation request this module refuses (the message says why, in one line)."""


# Baluja et al. 2019, on their held-out previews (Sec. 4, Table 1).
PAPER = {
    "interp": {"psnr": 20.7, "ssim": 0.51, "top1_in_top1": 0.05},
    "neural": {"psnr": 21.7, "ssim": 0.54, "top1_in_top1": 0.17},
    "improved_psnr": 0.985,
    "improved_ssim": 0.942,
}
SEMANTIC = ("logit_l2", "top1_in_top1", "top1_in_top5", "top1_in_top10")


def square_256(image: np.ndarray) -> np.ndarray:
    """The central square, resized to 256x256 (Lanczos): the evaluation's view of an image."""
    s = min(image.shape[:2])
    sq = center_crop(image, s)
    if s == SIZE:
        return np.ascontiguousarray(sq)
    return np.asarray(Image.fromarray(sq).resize((SIZE, SIZE), Image.Resampling.LANCZOS))


VIEWS = ("centre", "tiles")
SCORE_CHUNK = 32  # images scored at a time
DECODE_BATCH = 8  # network passes per decoding call (previews x symmetries averaged)


def views_of(name: str, image: np.ndarray, views: str = "centre") -> list[tuple[str, np.ndarray]]:
    """The 256x256 views of one image the evaluation scores, with their names: ``centre`` - the
    central square resized to 256 (:func:`square_256`); ``tiles`` - every whole 256x256 tile at the
    image's own resolution (the grid centred; ``name_r{row}c{col}``), or the centre view for an image
    with a side under 256."""
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")
    h, w = image.shape[:2]
    if views == "centre" or min(h, w) < SIZE:
        return [(name, square_256(image))]
    rows, cols = h // SIZE, w // SIZE
    oy, ox = (h - rows * SIZE) // 2, (w - cols * SIZE) // 2
    return [
        (
            f"{name}_r{r}c{c}",
            np.ascontiguousarray(image[oy + r * SIZE : oy + (r + 1) * SIZE, ox + c * SIZE : ox + (c + 1) * SIZE]),
        )
        for r in range(rows)
        for c in range(cols)
    ]


def blur(image: np.ndarray, times: int, radius: float = 2.0) -> np.ndarray:
    im = Image.fromarray(image)
    for _ in range(times):
        im = im.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(im)


def _previews(
    names, images, out: Path, target: int, seed: int, iterations: int, processes: int | None, views: str = "centre"
):
    """Encode (or reuse) each image's preview; returns the parsed previews and their byte counts."""

    folder = out / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"bytes": target, "seed": seed, "iterations": iterations}
    if views != "centre":  # (centre-view folders were written before views existed)
        settings["views"] = views
    meta = folder / "settings.json"
    if meta.exists() and json.loads(meta.read_text()) != settings:
        raise EvaluationError(f"{folder} holds previews made with {meta.read_text().strip()}; use another --out")
    write_file_atomic(meta, json.dumps(settings).encode())
    paths = [folder / f"{n}.tri" for n in names]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        log.info("encoding %d previews at %d bytes", len(todo), target)
        results = encode_images(
            [images[i] for i in todo], target, seed, EncoderConfig(iterations=iterations), processes
        )
        for i, r in zip(todo, results):
            write_file_atomic(paths[i], r.data)
    previews = []
    for p in paths:
        try:
            previews.append(from_bytes(p.read_bytes()))
        except PreviewFormatError as e:
            raise EvaluationError(f"{p}: {e}; delete it to re-encode") from None
    return previews, [p.stat().st_size for p in paths]


def dataset_views(root: str | Path, limit: int | None = None):
    """The crops of a ``trimesh-decode dataset`` folder with the previews stored beside them, by
    index (the first ``limit``): ``(names, originals, previews, byte counts)``. Scoring these instead
    of fresh encodings asks how a decoder does on the very bitstreams it trained on, or on a
    held-out folder built the same way (another ``--seed``, other photos)."""

    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"--dataset {root} is not a folder")
    recs = read_manifest(root)
    if not recs:
        raise EvaluationError(f"--dataset {root} has no finished crops (manifest.jsonl is missing or lists none)")
    order = sorted(recs)[:limit] if limit else sorted(recs)
    names, originals, previews, sizes = [], [], [], []
    for i in order:
        crop, tri = root / recs[i]["crop"], root / recs[i]["preview"]
        try:
            image = load_image(crop)
        except ImageError as e:
            raise EvaluationError(str(e)) from None
        if image.shape != (SIZE, SIZE, 3):
            raise EvaluationError(
                f"{crop}: the evaluation scores {SIZE}x{SIZE} RGB crops, this one is {image.shape[1]}x{image.shape[0]}"
            )
        data = tri.read_bytes()
        try:
            previews.append(from_bytes(data))
        except PreviewFormatError as e:
            raise EvaluationError(f"{tri}: {e}") from None
        names.append(crop.stem)
        originals.append(image)
        sizes.append(len(data))
    return names, np.stack(originals), previews, sizes


def _logits(originals: np.ndarray, chunk: int = SCORE_CHUNK) -> np.ndarray:
    """The classifier's logits of the originals, ``chunk`` images at a time: computed once for every
    decoder's scores."""
    return np.concatenate(
        [
            np.asarray(metrics.classify(np.asarray(originals[i : i + chunk], np.float32)))
            for i in range(0, len(originals), chunk)
        ]
    )


def _scores(
    originals: np.ndarray, recons: np.ndarray, logits: np.ndarray, chunk: int = SCORE_CHUNK
) -> dict[str, np.ndarray]:
    """Per-image PSNR, SSIM and semantic measures, ``chunk`` images at a time (memory stays flat
    however large the folder: the classifier's activations for 400 images at once took 8 GB);
    ``logits``: :func:`_logits` of the originals."""

    parts: dict[str, list] = {}
    for i in range(0, len(originals), chunk):
        x = np.asarray(originals[i : i + chunk], np.float32)
        y = np.asarray(recons[i : i + chunk], np.float32)
        sem = metrics.semantic_similarity(x, y, logits[i : i + chunk])
        got = {"psnr": metrics.psnr(x, y), "ssim": metrics.ssim(x, y), **{k: sem[k] for k in SEMANTIC}}
        for k, v in got.items():
            parts.setdefault(k, []).append(np.asarray(v, np.float64 if k in SEMANTIC else None))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _ttest(a: np.ndarray, b: np.ndarray) -> dict:
    from scipy import stats  # lazy: slow to import; only this measure needs it

    if len(a) < 2 or np.allclose(a, b):
        return {"t": None, "p": None}
    t = stats.ttest_rel(a, b)
    return {"t": float(t.statistic), "p": float(t.pvalue)}


def _mcnemar(neural: np.ndarray, interp: np.ndarray) -> dict:
    """Hit counts of a 0/1 recall per image, and the exact McNemar test (a two-sided binomial test
    on the images that only one decoder gets right)."""
    from scipy import stats  # lazy: slow to import; only this measure needs it

    n, i = np.asarray(neural) > 0.5, np.asarray(interp) > 0.5
    gained, lost = int(np.sum(n & ~i)), int(np.sum(i & ~n))
    p = float(stats.binomtest(gained, gained + lost).pvalue) if gained + lost else None
    return {"neural": int(n.sum()), "interp": int(i.sum()), "gained": gained, "lost": lost, "p": p}


def evaluate(
    images: str | Path,
    out: str | Path,
    *,
    models: Sequence[str] = ("mobile",),
    target_bytes: int = 200,
    seed: int = 0,
    iterations: int = EncoderConfig().iterations,
    processes: int | None = None,
    figures: int = 6,
    baselines: bool = True,
    limit: int | None = None,
    views: str = "centre",
    symmetries: int = 1,
    gain: float = 1.0,
    dataset: str | Path | None = None,
) -> dict:
    """Run the evaluation (see the module docstring); returns the summary. ``symmetries`` > 1 adds
    the first model's decodings averaged over that many symmetries of the square (``neural_<name>_x8``),
    scored against the single pass image by image like any further model; ``gain`` != 1 adds the first
    model with its correction of interpolation scaled by ``gain`` (``neural_<name>_g1.5``,
    :func:`trimesh_decode.amplify`) the same way. ``dataset``: score a
    ``trimesh-decode dataset`` folder's crops on its stored previews (:func:`dataset_views`) instead
    of encoding views of ``images`` (which is then ignored)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if views not in VIEWS:
        raise EvaluationError(f"--views must be one of {', '.join(VIEWS)}, got {views!r}")
    if dataset is not None:
        names, originals, previews, sizes = dataset_views(dataset, limit)
        images, views, source_images = dataset, "dataset", len(names)
    else:
        loaded = load_folder(images, limit=limit, min_side=16, what="the evaluation")
        viewed = [v for n, im in loaded for v in views_of(n, im, views)]
        names = [n for n, _ in viewed]
        originals = np.stack([v for _, v in viewed])
        source_images = len(loaded)
    decoders = []
    for m in models:
        try:
            decoders.append(load_model(m))
        except (FileNotFoundError, ValueError) as e:
            raise EvaluationError(str(e)) from None
    variants = (  # further decodings by the first model: (asked, flag, what it does, how)
        (symmetries != 1, "--symmetries", "averages", lambda d: d.averaged(symmetries)),
        (gain != 1.0, "--gain", "scales", lambda d: d.amplified(gain)),
    )
    for asked, flag, does, make in variants:
        if not asked:
            continue
        if not decoders:
            raise EvaluationError(f"{flag} {does} a neural decoder's decodings; give a --model")
        try:
            decoders.append(make(decoders[0]))
        except ValueError as e:
            raise EvaluationError(str(e)) from None
    t0 = time.perf_counter()
    if dataset is None:
        previews, sizes = _previews(names, list(originals), out, target_bytes, seed, iterations, processes, views)
    t_enc = time.perf_counter() - t0

    recons: dict[str, np.ndarray] = {}
    recons["interp"] = np.stack([raster_cpu.interpolate(p, SIZE) for p in previews])
    timing = {}
    for k, d in enumerate(decoders):
        key = "neural" if k == 0 else f"neural_{d.label}"
        per = max(1, DECODE_BATCH // d.symmetries)  # network passes per call stay DECODE_BATCH: flat memory
        chunks = [previews[i : i + per] for i in range(0, len(previews), per)]
        # compile each batch shape first (sizes and paddings vary; one chunk of each), to time decoding alone
        shapes = {}
        for c in chunks:
            m = raster.pack(c)
            shapes.setdefault((m.points.shape, m.triangles.shape), c)
        for c in shapes.values():
            d.decode(c)
        t = time.perf_counter()
        recons[key] = np.concatenate([d.decode(c) for c in chunks])
        timing[key] = (time.perf_counter() - t) / len(previews)
    recons["blur1"] = np.stack([blur(x, 1) for x in recons["interp"]])
    recons["blur5"] = np.stack([blur(x, 5) for x in recons["interp"]])
    baseline_bytes: dict[str, list] = {}
    if baselines:
        for codec in ("webp", "jpeg"):
            rs = [bl.at_bytes(x, n, codec) for x, n in zip(originals, sizes)]
            if all(r is not None for r in rs):
                recons[codec] = np.stack([r.decoded for r in rs])
                baseline_bytes[codec] = [r.num_bytes for r in rs]

    logits = _logits(originals)
    scores = {k: _scores(originals, v, logits) for k, v in recons.items()}
    per_image = []
    for i, n in enumerate(names):
        row = {"image": n, "preview_bytes": sizes[i]}
        for k, s in scores.items():
            row[k] = {m: float(v[i]) for m, v in s.items()}
        for codec, b in baseline_bytes.items():
            row[codec]["bytes"] = b[i]
        per_image.append(row)

    summary: dict = {
        "images": len(names),
        "source": str(images),
        "views": views,
        "source_images": source_images,
        "preview_bytes_mean": float(np.mean(sizes)),
        "models": [d.label for d in decoders],
        "encode_seconds": round(t_enc, 1),
        "neural_seconds_per_image": {k: round(v, 4) for k, v in timing.items()},
        "mean": {k: {m: float(np.mean(v)) for m, v in s.items()} for k, s in scores.items()},
    }
    if decoders:
        n, i = scores["neural"], scores["interp"]
        summary["improved_psnr"] = float(np.mean(n["psnr"] > i["psnr"]))
        summary["improved_ssim"] = float(np.mean(n["ssim"] > i["ssim"]))
        summary["delta_psnr"] = float(np.mean(n["psnr"] - i["psnr"]))
        summary["delta_ssim"] = float(np.mean(n["ssim"] - i["ssim"]))
        summary["ttest_psnr"] = _ttest(n["psnr"], i["psnr"])
        summary["ttest_ssim"] = _ttest(n["ssim"], i["ssim"])
        summary["recall_test"] = {k: _mcnemar(n[k], i[k]) for k in SEMANTIC[1:]}
        # ablations: every further model against the first, image by image
        summary["versus_neural"] = {
            k: {
                "delta_psnr": float(np.mean(scores[k]["psnr"] - n["psnr"])),
                "delta_ssim": float(np.mean(scores[k]["ssim"] - n["ssim"])),
                "ttest_psnr": _ttest(scores[k]["psnr"], n["psnr"]),
                "ttest_ssim": _ttest(scores[k]["ssim"], n["ssim"]),
            }
            for k in scores
            if k.startswith("neural_")
        }
        summary["model_meta"] = {
            d.name: {k: d.meta.get(k) for k in ("step", "command", "parameters", "run")} for d in decoders
        }
    result = {"summary": summary, "paper": PAPER, "images": per_image}
    write_file_atomic(out / "evaluation.json", json.dumps(result, indent=1).encode())
    write_file_atomic(out / "evaluation.md", _markdown(summary).encode())
    if decoders and figures:
        _figures(out / "figures", names, originals, recons, scores, figures)
    return summary


def _markdown(s: dict) -> str:
    rows = [
        f"# Interpolation vs neural decoding of {s['images']} previews ({s['preview_bytes_mean']:.1f} bytes mean)",
        "",
        f"Images: {s['source']}"
        + (
            " (crops of a `trimesh-decode dataset` folder, on their stored previews)"
            if s.get("views") == "dataset"
            else f" ({s['source_images']} images, {s['views']} views)"
            if s.get("views", "centre") != "centre"
            else ""
        )
        + f"; models: {', '.join(s['models']) or 'none'}.",
        "",
        "| decoder | PSNR (dB) | SSIM | logit L2 | top-1 in top-1 | in top-5 | in top-10 | paper PSNR | paper SSIM | "
        "paper top-1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, m in s["mean"].items():
        p = PAPER.get(k, {})
        rows.append(
            f"| {k} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['logit_l2']:.2f} | {m['top1_in_top1']:.2f} | "
            f"{m['top1_in_top5']:.2f} | {m['top1_in_top10']:.2f} | {p.get('psnr', '')} | {p.get('ssim', '')} | "
            f"{p.get('top1_in_top1', '')} |"
        )
    if "delta_psnr" in s:
        tp, ts = s["ttest_psnr"], s["ttest_ssim"]
        rows += [
            "",
            f"Neural minus interpolation: {s['delta_psnr']:+.2f} dB PSNR, {s['delta_ssim']:+.4f} SSIM; "
            f"images improved: {100 * s['improved_psnr']:.1f}% (PSNR), {100 * s['improved_ssim']:.1f}% (SSIM) "
            f"(paper: {100 * PAPER['improved_psnr']:.1f}%, {100 * PAPER['improved_ssim']:.1f}%).",
            f"Paired t-test (neural vs interpolation): PSNR {_t(tp)}; SSIM {_t(ts)}.",
        ]
    if s.get("versus_neural"):
        rows += ["", "Each further model minus the first (`neural`), image by image (paired t-test):", ""]
        rows += [
            f"- {k}: {v['delta_psnr']:+.3f} dB PSNR ({_t(v['ttest_psnr'])}), {v['delta_ssim']:+.4f} SSIM "
            f"({_t(v['ttest_ssim'])})"
            for k, v in s["versus_neural"].items()
        ]
        rows.append("")
    if "recall_test" in s:
        rows.append(
            "Recall of the original's top-1 class, images (interpolation -> neural; exact McNemar p): "
            + "; ".join(
                f"{k.replace('top1_in_', 'in ')}: {r['interp']} -> {r['neural']} of {s['images']} "
                f"(p = {'n/a' if r['p'] is None else format(r['p'], '.2g')})"
                for k, r in s["recall_test"].items()
            )
            + "."
        )
    return "\n".join(rows) + "\n"


def _t(test: dict) -> str:
    if test["t"] is None:
        return "n/a"
    p = "p < 1e-300" if test["p"] == 0.0 else f"p = {test['p']:.2g}"  # (below a double's range)
    return f"t = {test['t']:.2f}, {p}"


def _figures(folder: Path, names, originals, recons, scores, count: int) -> None:
    import matplotlib  # lazy: slow to import; only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

    folder.mkdir(parents=True, exist_ok=True)
    gain = scores["neural"]["psnr"] - scores["interp"]["psnr"]
    order = list(np.argsort(-gain))
    picks = order[: max(1, count // 2)] + order[::-1][: count - max(1, count // 2)]  # best and worst gains
    cols = ["interp", "neural"]
    keep = {f"compare_{names[i]}.png" for i in picks}
    for old in folder.glob("compare_*.png"):  # a rerun's picks replace the last run's, none left stale
        if old.name not in keep:
            old.unlink()
    for i in dict.fromkeys(picks):
        fig, ax = plt.subplots(1, 3, figsize=(9.6, 3.6))
        ax[0].imshow(originals[i])
        ax[0].set_title(f"original ({names[i]})", fontsize=9)
        for a, k in zip(ax[1:], cols):
            a.imshow(recons[k][i])
            a.set_title(f"{k}: {scores[k]['psnr'][i]:.2f} dB, SSIM {scores[k]['ssim'][i]:.3f}", fontsize=9)
        for a in ax:
            a.axis("off")
        fig.tight_layout()
        fig.savefig(folder / f"compare_{names[i]}.png", dpi=100)
        plt.close(fig)
