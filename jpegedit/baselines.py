"""Rate-distortion curves of the JPEG encoders a user would pick instead of ours.

Every codec encodes each image at every quality of its grid; the file's bytes give the bpp, Pillow
(libjpeg-turbo) decodes it - the standard decoder - and PSNR / MS-SSIM / LPIPS (AlexNet) compare it
with the original. Codecs:

``libjpeg-444``      Pillow, 4:4:4, standard Huffman tables (the paper's baseline)
``libjpeg-444-opt``  Pillow, 4:4:4, optimised Huffman tables
``libjpeg-420``      Pillow, 4:2:0, standard Huffman tables (for reference)
``mozjpeg-444``      jpeglib's mozjpeg 4.0.3, 4:4:4, its defaults: trellis quantisation (AC and DC),
                     its tables, progressive, optimised Huffman
``jpegli-420``       pyjpegli; its Python binding encodes 4:2:0 only

Results per codec, ``OUT/<codec>.json``: every (quality, image) point and the mean curve (means
over images at each quality, as the paper plots them). A rerun skips images already measured
with the same settings. ``summary(OUT)`` adds the BD-rates against ``libjpeg-444`` (and any pair)
and the lowest bpp each codec reaches, and ``plot(OUT)`` draws PSNR, MS-SSIM and LPIPS against bpp:
both in :mod:`jpegedit.report`. The command is ``jpegedit evaluate`` (``--models none``: the
baselines only):

    jpegedit evaluate --data ../shared/data/kodak -o out/kodak --models none [--no-lpips]
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from compat.cli import write_atomic
from jpegedit import encoder, jpegfile, losses
from jpegedit.encoder import coefficients
from jpegedit.jpegfile import _LOCK
from jpegedit.models import load_model
from jpegedit.scoring import score

__all__ = [
    "CODECS",
    "LABELS",
    "QUALITIES",
    "encode",
    "rd_curves",
    "mean_curve",
    "learned_curves",
    "tool_curves",
    "family",
    "is_learned",
    "available",
]

# 1..10 in steps of 1 (the low rates the paper is about), then coarser up to 90.
QUALITIES = tuple(range(1, 11)) + tuple(range(12, 31, 2)) + tuple(range(35, 91, 5))


def _pillow(image: np.ndarray, quality: int, subsampling: int, optimize: bool) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=int(quality), subsampling=subsampling, optimize=optimize)
    return buf.getvalue()


def _mozjpeg(image: np.ndarray, quality: int) -> bytes:
    import jpeglib  # lazy: loads libjpeg builds; only mozjpeg needs it

    with _LOCK, jpeglib.version("mozjpeg403"), tempfile.TemporaryDirectory() as d:
        im = jpeglib.from_spatial(np.ascontiguousarray(image))
        im.samp_factor = "4:4:4"
        path = os.path.join(d, "m.jpg")
        im.write_spatial(path, qt=int(quality))
        return Path(path).read_bytes()


def _jpegli(image: np.ndarray, quality: int) -> bytes:
    try:
        import pyjpegli  # lazy: optional (the peers extra)
    except ImportError:
        raise ImportError("the jpegli baseline needs pyjpegli: pip install -e '.[peers]'") from None

    h, w = image.shape[:2]
    return pyjpegli.encode(np.ascontiguousarray(image).tobytes(), w, h, int(quality))


CODECS: dict[str, Callable[[np.ndarray, int], bytes]] = {
    "libjpeg-444": lambda x, q: _pillow(x, q, 0, False),
    "libjpeg-444-opt": lambda x, q: _pillow(x, q, 0, True),
    "libjpeg-420": lambda x, q: _pillow(x, q, 2, False),
    "mozjpeg-444": _mozjpeg,
    "jpegli-420": _jpegli,
}
LABELS = {
    "libjpeg-444": "libjpeg 4:4:4, standard Huffman",
    "libjpeg-444-opt": "libjpeg 4:4:4, optimised Huffman",
    "libjpeg-420": "libjpeg 4:2:0, standard Huffman",
    "mozjpeg-444": "mozjpeg 4:4:4 (trellis, progressive, optimised Huffman)",
    "jpegli-420": "jpegli 4:2:0 (its binding's only sampling)",
}


def available() -> list[str]:
    """The codecs this install can run (jpegli needs the optional ``peers`` extra)."""

    return [c for c in CODECS if c != "jpegli-420" or importlib.util.find_spec("pyjpegli") is not None]


def encode(codec: str, image: np.ndarray, quality: int) -> bytes:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    return CODECS[codec](np.asarray(image, np.uint8), quality)


def mean_curve(points: Sequence[dict], key: str = "quality") -> list[dict]:
    """Means over images at each setting (``key``: a codec's quality, or a learned model's name):
    ``[{key, bpp, psnr, ms_ssim, lpips, images}]``, in the settings' order."""
    by_q: dict = {}
    for p in points:
        by_q.setdefault(p[key], []).append(p)
    out = []
    for q in sorted(by_q):
        rows = by_q[q]
        rec = {key: q, "images": len(rows)}
        for k in ("bpp", "psnr", "ms_ssim", "lpips"):
            vals = [r[k] for r in rows if r.get(k) is not None]
            rec[k] = float(np.mean(vals)) if len(vals) == len(rows) else None
        out.append(rec)
    return out


def rd_curves(
    images: Sequence[tuple[str, np.ndarray]],
    out: str | Path,
    codecs: Sequence[str] = tuple(CODECS),
    qualities: Sequence[int] = QUALITIES,
    lpips: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Measure every codec on every image at every quality; resumable per (codec, image)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"qualities": list(qualities), "lpips": bool(lpips)}
    written = {}
    for codec in codecs:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
        path = out / f"{codec}.json"
        old = json.loads(path.read_text()) if path.exists() else None
        names = {n for n, _ in images}
        # only this run's images count: a file measured on a larger set serves a subset of it
        points = [p for p in old["points"] if p["image"] in names] if old and old.get("settings") == settings else []
        done = {p["image"] for p in points}
        todo = [(n, x) for n, x in images if n not in done]

        def save():
            doc = {
                "codec": codec,
                "label": LABELS[codec],
                "settings": settings,
                "points": points,
                "mean": mean_curve(points),
            }
            write_atomic(path, json.dumps(doc, indent=1).encode(), force=True)

        for name, x in tqdm(todo, desc=codec, unit="image", disable=not progress):
            for q in qualities:
                points.append({"image": name, "quality": int(q), **score(x, encode(codec, x, q), lpips=lpips)})
            save()  # after every image: resumable
        if not todo and old and len(points) != len(old["points"]):
            save()
        written[codec] = path
    return written


# -- learned models, as one more "codec" each -----------------------------------------------------

# learned curve suffix -> how its files are written (jpegfile.write's options) and its label
HUFFMAN = {
    "std": ({"optimize_huffman": False}, "standard Huffman"),
    "opt": ({"optimize_huffman": True}, "optimised Huffman"),
    "prog": ({"progressive": True}, "progressive"),
}


def family(model_name: str) -> str:
    """The variant a model belongs to: its name without the ``_lam<lambda>`` suffix
    (``attention_lam0.01`` -> ``attention``, ``qtables_lam0.1`` -> ``qtables``) or the ``_q<quality>``
    suffix of fitted tables (``qtables_msssim_q40`` -> ``qtables_msssim``)."""
    return re.sub(r"_(lam[0-9.e+-]+|q[0-9]+)$", "", model_name)


def is_learned(codec: str) -> bool:
    return codec.startswith("learned-")


def learned_curves(
    images: Sequence[tuple[str, np.ndarray]],
    out: str | Path,
    models: Sequence[str],
    lpips: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Shipped or exported jpegedit models (one per lambda) as real files: baseline with the standard
    Huffman tables (the paper's setting), baseline with optimised ones, and progressive (the tool's
    default). One curve per variant (model family, see :func:`family`) and file kind:
    ``learned-<family>-std.json`` / ``-opt.json`` / ``-prog.json``,
    a point per (model, image) with the rate proxy of the training loss beside the real bits (the
    paper's Fig. 5), the mean curve over the family's models. Resumable per (model, image)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [load_model(m) for m in models]
    fams = sorted({family(m.name) for m in loaded})
    sums = {m.name: m.meta.get("sha256") for m in loaded}
    settings = {"lpips": bool(lpips)}
    points: dict[str, list] = {}
    for fam in fams:
        for suffix in HUFFMAN:
            path = out / f"learned-{fam}-{suffix}.json"
            old = json.loads(path.read_text()) if path.exists() else None
            keep = old["points"] if old and old.get("settings") == settings else []
            # only the models asked for; one re-exported under the same name is measured again
            points[f"learned-{fam}-{suffix}"] = [
                p for p in keep if p["model"] in sums and p.get("sha256") == sums[p["model"]]
            ]
    # a (model, image) is done when every file kind has its point (a folder from before "prog" lacks it)
    done = set.intersection(*({(p["model"], p["image"]) for p in pts} for pts in points.values()))
    for codec in points:  # the rest are measured again, so no kind holds them twice
        points[codec] = [p for p in points[codec] if (p["model"], p["image"]) in done]

    def save():
        for codec, pts in points.items():
            fam, suffix = codec[len("learned-") :].rsplit("-", 1)
            names = sorted({p["model"] for p in pts})
            doc = {
                "codec": codec,
                "label": f"learned {fam} ({HUFFMAN[suffix][1]})",
                "settings": settings,
                "models": names,
                "points": pts,
                "mean": mean_curve(pts, key="model"),
            }
            write_atomic(out / f"{codec}.json", json.dumps(doc, indent=1).encode(), force=True)

    for name, x in tqdm(images, desc="learned", unit="image", disable=not progress):
        todo = [m for m in loaded if (m.name, name) not in done]
        for m in todo:
            co, tables, maps = coefficients(m, x, return_attention=True)
            proxy = {
                "table_rate": float(losses.table_rate(np.asarray(tables, np.float32))),
                "attention_rate": float(losses.attention_rate(*maps)) if maps is not None else 0.0,
                # the "bits" rate term: the estimated size of the standard-Huffman file
                "bits_estimate_bpp": float(losses.estimated_bits(co.components)) / (x.shape[0] * x.shape[1]),
                "rate": m.rate,
            }
            for suffix, (how, _) in HUFFMAN.items():
                data = jpegfile.write(co, tables, **how)
                points[f"learned-{family(m.name)}-{suffix}"].append(
                    {
                        "image": name,
                        "model": m.name,
                        "sha256": m.meta.get("sha256"),
                        "lam": m.lam,
                        "attention": m.attention,
                        **proxy,
                        **score(x, data, lpips=lpips),
                    }
                )
        if todo:
            save()  # after every image: resumable
    save()
    return {c: out / f"{c}.json" for c in points}


# bpp targets of the --target-bpp curve (tool_curves)
TARGETS = (0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 2.5)


def tool_curves(
    images: Sequence[tuple[str, np.ndarray]],
    out: str | Path,
    models: Sequence[str],
    lpips: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """What ``jpegedit encode`` writes with a family of models (``models``: one family's names):
    every step of its rate ladder (:func:`jpegedit.encoder.ladder`: trellis quantisation,
    progressive files), i.e. the ``--quality`` dial, as ``learned-<family>-tool.json`` (the mean
    curve per step), and the ``--target-bpp`` choice at each of :data:`TARGETS` - per image the
    highest-PSNR step (highest MS-SSIM, lowest LPIPS for a family trained on it) whose quick-scan
    file fits, as the encoder decides - as ``learned-<family>-target.json``. Resumable per image."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [load_model(m) for m in models]
    fams = {family(m.name) for m in loaded}
    if len(fams) != 1:
        raise ValueError(f"tool_curves takes one family of models, got {', '.join(sorted(fams))}")
    (fam,) = fams
    steps = encoder.ladder(loaded)
    tune = encoder.tune_of(loaded[0])
    key = tune.replace("-", "_")  # the score --target-bpp optimises, as the points name it
    lpips = lpips or key == "lpips"  # --tune lpips picks by it
    trellis = encoder.TRELLIS_BY_TUNE[tune]
    settings = {
        "lpips": bool(lpips),
        # the plain trellis as its alpha alone: what results written before the step weighting recorded
        "trellis": None if trellis is None else (trellis.alpha if not trellis.step_power else list(trellis)),
        "steps": [f"{m.name}x{s:g}" for m, s in steps],
        "sha256": sorted(m.meta.get("sha256") or "" for m in loaded),
    }
    how = "rounding" if trellis is None else "trellis" + (", step-weighted" if trellis.step_power else "")
    path = out / f"learned-{fam}-tool.json"
    old = json.loads(path.read_text()) if path.exists() else None
    points = old["points"] if old and old.get("settings") == settings else []
    done = {p["image"] for p in points}

    def save():
        doc = {
            "codec": f"learned-{fam}-tool",
            "label": f"jpegedit encode --quality ({fam}: {how}, progressive)",
            "settings": settings,
            "points": points,
            "mean": mean_curve(points, key="step"),
        }
        write_atomic(path, json.dumps(doc, indent=1).encode(), force=True)
        picks = []
        for name in sorted({p["image"] for p in points}):
            mine = [p for p in points if p["image"] == name]
            for t in TARGETS:
                limit = int(t * mine[0]["pixels"] / 8)
                fit = [p for p in mine if p["bytes_quick"] <= limit]
                if fit:
                    picks.append({**max(fit, key=lambda p: encoder.tuned_value(tune, p)), "target": t})
        # a target counts only where every image reaches it (a mean over fewer images would mislead)
        n = len({p["image"] for p in points})
        full = {t for t in TARGETS if sum(p["target"] == t for p in picks) == n}
        picks = [p for p in picks if p["target"] in full]
        doc = {
            "codec": f"learned-{fam}-target",
            "label": f"jpegedit encode --target-bpp ({fam}: best {key.upper().replace('_', '-')} under the target)",
            "settings": settings,
            "points": picks,
            "mean": mean_curve(picks, key="target"),
        }
        write_atomic(out / f"learned-{fam}-target.json", json.dumps(doc, indent=1).encode(), force=True)

    for name, x in tqdm(images, desc="tool", unit="image", disable=not progress):
        if name in done:
            continue
        quantise = encoder.Quantiser(x, loaded, trellis)
        for i, (m, scale) in enumerate(steps):
            co, tables = quantise(m, scale)
            data = jpegfile.write(co, tables, progressive=True)
            quick = jpegfile.write(co, tables, progressive=True, quick=True)
            points.append(
                {
                    "image": name,
                    "step": i,
                    "model": m.name,
                    "scale": scale,
                    "pixels": int(x.shape[0] * x.shape[1]),
                    "bytes_quick": len(quick),
                    **score(x, data, lpips=lpips),
                }
            )
        save()  # after every image: resumable
    save()
    return {c: out / f"learned-{fam}-{c}.json" for c in ("tool", "target")}
