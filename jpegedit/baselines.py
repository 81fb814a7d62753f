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
and the lowest bpp each codec reaches; ``plot(OUT)`` draws PSNR, MS-SSIM and LPIPS against bpp.

    python -m jpegedit.baselines --data ../shared/data/kodak --out results/kodak [--no-lpips]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

__all__ = ["CODECS", "LABELS", "QUALITIES", "encode", "decode", "measure", "rd_curves", "mean_curve", "summary", "bd_table", "plot", "learned_curves", "rate_proxy", "markdown", "family", "is_learned", "available"]

# 1..10 in steps of 1 (the low rates the paper is about), then coarser up to 90.
QUALITIES = tuple(range(1, 11)) + tuple(range(12, 31, 2)) + tuple(range(35, 91, 5))


def _pillow(image: np.ndarray, quality: int, subsampling: int, optimize: bool) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=int(quality), subsampling=subsampling, optimize=optimize)
    return buf.getvalue()


def _mozjpeg(image: np.ndarray, quality: int) -> bytes:
    import jpeglib

    from jpegedit.jpegfile import _LOCK

    with _LOCK, jpeglib.version("mozjpeg403"), tempfile.TemporaryDirectory() as d:
        im = jpeglib.from_spatial(np.ascontiguousarray(image))
        im.samp_factor = "4:4:4"
        path = os.path.join(d, "m.jpg")
        im.write_spatial(path, qt=int(quality))
        return Path(path).read_bytes()


def _jpegli(image: np.ndarray, quality: int) -> bytes:
    try:
        import pyjpegli
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
    import importlib.util

    return [c for c in CODECS if c != "jpegli-420" or importlib.util.find_spec("pyjpegli") is not None]


def encode(codec: str, image: np.ndarray, quality: int) -> bytes:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    return CODECS[codec](np.asarray(image, np.uint8), quality)


def decode(data: bytes) -> np.ndarray:
    """The standard decoder: Pillow's libjpeg-turbo."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def measure(original: np.ndarray, data: bytes, lpips: bool = True) -> dict:
    """bytes, bpp, PSNR, MS-SSIM (None below 161 px) and LPIPS (AlexNet; None when not asked)."""
    from compat import metrics

    y = decode(data)
    h, w = original.shape[:2]
    x32, y32 = original.astype(np.float32), y.astype(np.float32)
    return {
        "bytes": len(data),
        "bpp": metrics.bpp(len(data), h, w),
        "psnr": float(metrics.psnr(x32, y32)),
        "ms_ssim": float(metrics.ms_ssim(x32, y32)) if min(h, w) >= 161 else None,
        "lpips": float(metrics.lpips(x32, y32, net="alex")) if lpips else None,
    }


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


def rd_curves(images: Sequence[tuple[str, np.ndarray]], out: str | Path, codecs: Sequence[str] = tuple(CODECS),
              qualities: Sequence[int] = QUALITIES, lpips: bool = True, progress: bool = True) -> dict[str, Path]:
    """Measure every codec on every image at every quality; resumable per (codec, image)."""
    from tqdm import tqdm

    from compat.cli import write_atomic

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
            doc = {"codec": codec, "label": LABELS[codec], "settings": settings, "points": points, "mean": mean_curve(points)}
            write_atomic(path, json.dumps(doc, indent=1).encode(), force=True)

        for name, x in tqdm(todo, desc=codec, unit="image", disable=not progress):
            for q in qualities:
                points.append({"image": name, "quality": int(q), **measure(x, encode(codec, x, q), lpips)})
            save()  # after every image: resumable
        if not todo and old and len(points) != len(old["points"]):
            save()
        written[codec] = path
    return written


def _load(out: Path) -> dict[str, dict]:
    docs = {}
    for p in sorted(Path(out).glob("*.json")):
        d = json.loads(p.read_text())
        if "mean" in d and "codec" in d:
            docs[d["codec"]] = d
    return docs


def _monotone(curve: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, quality) of a mean curve, keeping points whose bpp strictly increases."""
    pts = sorted((c["bpp"], c[key]) for c in curve if c.get(key) is not None)
    r, q = [], []
    for b, v in pts:
        if not r or b > r[-1]:
            r.append(b)
            q.append(v)
    return np.asarray(r), np.asarray(q)


def summary(out: str | Path, reference: str = "libjpeg-444", below: float = 0.4) -> dict:
    """BD-rate (PSNR, MS-SSIM, LPIPS) of every codec against ``reference`` below ``below`` bpp and
    over the whole common range; the lowest mean bpp each codec reaches."""
    docs = _load(Path(out))
    if reference not in docs:
        raise FileNotFoundError(f"no {reference}.json in {out}")
    res: dict = {"reference": reference, "below_bpp": below, "codecs": {}}
    for codec, d in docs.items():
        res["codecs"][codec] = _bd_entry(docs[reference], d, below, same=codec == reference)
    return res


def _bd_entry(ref: dict, d: dict, below: float, same: bool = False) -> dict:
    from compat import metrics

    entry = {"label": d.get("label", d["codec"]), "lowest_bpp": min(c["bpp"] for c in d["mean"])}
    if not same:
        for key in ("psnr", "ms_ssim", "lpips"):
            r1, q1 = _monotone(ref["mean"], key)
            r2, q2 = _monotone(d["mean"], key)
            if key == "lpips":  # lower is better: BD over -LPIPS
                q1, q2 = -q1, -q2
            for name, rr in ((f"bd_rate_{key}_below_{below}", (0.0, below)), (f"bd_rate_{key}", None)):
                try:
                    entry[name] = metrics.bd_rate(r1, q1, r2, q2, rate_range=rr) if len(r1) > 1 and len(r2) > 1 else None
                except ValueError as e:
                    entry[name] = None
                    entry.setdefault("notes", []).append(f"{name}: {e}")
    return entry


def bd_table(out: str | Path, tests: Sequence[str], references: Sequence[str], below: float = 0.4) -> list[dict]:
    """BD-rates of every ``tests`` codec (e.g. the learned variants) against every ``references``
    codec found in ``out``: one row per pair."""
    docs = _load(Path(out))
    rows = []
    for t in tests:
        for r in references:
            if t in docs and r in docs and t != r:
                rows.append({"test": t, "reference": r, **_bd_entry(docs[r], docs[t], below)})
    return rows


def plot(out: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """PSNR, MS-SSIM and LPIPS against bpp of every codec in ``out`` (the paper's Fig. 3): the whole
    range and the low rates (where the BD-rates below 0.4 bpp are decided) side by side. Learned
    variants are solid lines with dots, baselines dashed; optimised-Huffman curves lighter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = {c: d for c, d in _load(Path(out)).items() if not names or c in names}
    colours = plt.get_cmap("tab20").colors
    files = []
    for key, label in (("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"), ("lpips", "LPIPS (AlexNet), lower is better")):
        curves = [(codec, d, *_monotone(d["mean"], key)) for codec, d in docs.items()]
        curves = [c for c in curves if len(c[2])]
        if not curves:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
        # one colour pair per learned variant (dark: standard Huffman, light: optimised), one per baseline
        groups = list(dict.fromkeys(c.rsplit("-", 1)[0] if is_learned(c) else c for c, *_ in curves))
        for codec, d, r, q in curves:
            learned = is_learned(codec)
            pair = groups.index(codec.rsplit("-", 1)[0] if learned else codec)
            colour = colours[(2 * pair + (learned and codec.endswith("-opt"))) % len(colours)]
            style = {"color": colour, "ls": "-" if learned else "--", "marker": "." if learned else None}
            for ax in axes:
                ax.plot(r, q, label=d.get("label", codec), **style)
        for ax, (lo, hi) in zip(axes, ((0.0, 1.2), (0.1, 0.6))):
            ax.set_xlim(lo, hi)
            ax.set_xlabel("bits per pixel")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if lo > 0:  # the zoom: the quality range the curves span there
                qs = np.concatenate([q[(r >= lo) & (r <= hi)] for _, _, r, q in curves])
                if len(qs):
                    pad = 0.03 * (qs.max() - qs.min() + 1e-9)
                    ax.set_ylim(qs.min() - pad, qs.max() + pad)
        axes[1].set_title(f"low rates ({0.1}-{0.6} bpp)", fontsize=9)
        axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        fig.tight_layout()
        path = Path(out) / f"rd_{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    from compat.images import list_images, load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder of test images")
    ap.add_argument("--out", required=True, help="results folder (one JSON per codec, plots, summary.json)")
    ap.add_argument("--codecs", default=None, help=f"comma-separated subset of {', '.join(CODECS)} (default: every available one)")
    ap.add_argument("--no-lpips", action="store_true", help="skip LPIPS (the slow measure on a CPU)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = ap.parse_args(argv)
    paths = list_images(args.data)[: args.limit] if args.limit else list_images(args.data)
    images = [(Path(p).stem, load_image(p)) for p in paths]
    rd_curves(images, args.out, [c for c in (args.codecs or ",".join(available())).split(",") if c], lpips=not args.no_lpips)
    s = summary(args.out)
    Path(args.out, "summary.json").write_text(json.dumps(s, indent=1))
    plot(args.out)
    key = f"bd_rate_psnr_below_{s['below_bpp']}"
    for c, e in s["codecs"].items():
        print(f"{c:16s} lowest {e['lowest_bpp']:.3f} bpp; BD-rate PSNR vs {s['reference']} below {s['below_bpp']} bpp: "
              f"{e.get(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- learned models, as one more "codec" each -----------------------------------------------------

HUFFMAN = {"std": False, "opt": True}  # learned curve suffix -> optimised Huffman tables


def family(model_name: str) -> str:
    """The variant a model belongs to: its name without the ``_lam<lambda>`` suffix
    (``attention_lam0.01`` -> ``attention``, ``qtables_lam0.1`` -> ``qtables``)."""
    return model_name.rsplit("_lam", 1)[0]


def is_learned(codec: str) -> bool:
    return codec.startswith("learned-")


def learned_curves(images: Sequence[tuple[str, np.ndarray]], out: str | Path, models: Sequence[str],
                   lpips: bool = True, progress: bool = True) -> dict[str, Path]:
    """Shipped or exported jpegedit models (one per lambda) as real files, with the standard Huffman
    tables (the paper's setting) and with optimised ones. One curve per variant (model family, see
    :func:`family`) and Huffman setting: ``learned-<family>-std.json`` / ``learned-<family>-opt.json``,
    a point per (model, image) with the rate proxy of the training loss beside the real bits (the
    paper's Fig. 5), the mean curve over the family's models. Resumable per (model, image)."""
    from tqdm import tqdm

    from compat.cli import write_atomic
    from jpegedit import jpegfile, losses
    from jpegedit.models import coefficients, load_model

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
            points[f"learned-{fam}-{suffix}"] = [p for p in keep if p["model"] in sums and p.get("sha256") == sums[p["model"]]]
    done = {(p["model"], p["image"]) for c, pts in points.items() if c.endswith("-std") for p in pts}

    def save():
        for codec, pts in points.items():
            fam, suffix = codec[len("learned-"):].rsplit("-", 1)
            names = sorted({p["model"] for p in pts})
            doc = {"codec": codec, "label": f"learned {fam} ({'optimised' if HUFFMAN[suffix] else 'standard'} Huffman)",
                   "settings": settings, "models": names, "points": pts, "mean": mean_curve(pts, key="model")}
            write_atomic(out / f"{codec}.json", json.dumps(doc, indent=1).encode(), force=True)

    for name, x in tqdm(images, desc="learned", unit="image", disable=not progress):
        todo = [m for m in loaded if (m.name, name) not in done]
        for m in todo:
            co, tables, maps = coefficients(m, x, return_attention=True)
            proxy = {"table_rate": float(losses.table_rate(np.asarray(tables, np.float32))),
                     "attention_rate": float(losses.attention_rate(*maps)) if maps is not None else 0.0,
                     # the "bits" rate term: the estimated size of the standard-Huffman file
                     "bits_estimate_bpp": float(losses.estimated_bits(co.components)) / (x.shape[0] * x.shape[1]),
                     "rate": m.rate}
            for suffix, opt in HUFFMAN.items():
                data = jpegfile.write(co, tables, optimize_huffman=opt)
                points[f"learned-{family(m.name)}-{suffix}"].append(
                    {"image": name, "model": m.name, "sha256": m.meta.get("sha256"), "lam": m.lam,
                     "attention": m.attention, **proxy, **measure(x, data, lpips)})
        if todo:
            save()  # after every image: resumable
    save()
    return {c: out / f"{c}.json" for c in points}


def rate_proxy(out: str | Path, alpha: float = 10.0, beta: float = 1.0) -> dict:
    """The paper's Fig. 5: the training loss's rate terms (``alpha ||1/Q||_1``, ``beta mean A``)
    against the real bpp of the files, per learned variant (standard Huffman tables), with a
    monotonicity check over the models: Spearman's rank correlation of the proxy with the mean bpp,
    and whether the mean bpp rises with every step down of the proxy. Writes ``rate_proxy.png``.

    Variants trained with ``loss.rate="bits"`` are checked against their own rate term instead, the
    estimated bpp (``jpegedit.losses.estimated_bits``): the same Spearman and monotonicity over the
    models plus its mean relative error per file, plotted against the real bpp in ``bits_estimate.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = {c: d for c, d in _load(Path(out)).items() if is_learned(c) and c.endswith("-std")}
    bits_docs = {c: d for c, d in docs.items() if any(p.get("rate") == "bits" for p in d["points"])}
    bits = _bits_estimate(out, bits_docs) if bits_docs else {}
    docs = {c: d for c, d in docs.items() if c not in bits_docs}
    res: dict = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for codec, d in docs.items():
        by: dict = {}
        for p in d["points"]:
            if "table_rate" in p:
                by.setdefault(p["model"], []).append(p)
        rows = []
        for name, pts in by.items():
            t = alpha * float(np.mean([p["table_rate"] for p in pts]))
            a = beta * float(np.mean([p["attention_rate"] for p in pts]))
            rows.append({"model": name, "bpp": float(np.mean([p["bpp"] for p in pts])), "table_term": t, "attention_term": a, "proxy": t + a})
        rows.sort(key=lambda r: r["proxy"])
        if len(rows) < 2:
            continue
        bpp = [r["bpp"] for r in rows]
        res[codec] = {"models": rows, **_ordering(rows)}
        rho = res[codec]["spearman"]
        line = ax.plot(bpp, [r["proxy"] for r in rows], marker="o", label=f"{d.get('label', codec)}: total (rho {rho:.2f})")[0]
        ax.plot(bpp, [r["table_term"] for r in rows], ls="--", color=line.get_color(), label="  alpha ||1/Q||")
        if any(r["attention_term"] for r in rows):
            ax.plot(bpp, [r["attention_term"] for r in rows], ls=":", color=line.get_color(), label="  beta mean A")
    _save(fig, ax, Path(out) / "rate_proxy.png", "rate term of the training loss", draw=bool(res))
    return {**res, **bits}


def _ordering(rows: list[dict]) -> dict:
    """Does a rate term order the models as their real bits do? Spearman's rho of ``proxy`` against
    ``bpp`` over ``rows`` (sorted by proxy), and whether the bpp rises with every step of the proxy."""
    from scipy.stats import spearmanr

    bpp = [r["bpp"] for r in rows]
    return {"spearman": float(spearmanr([r["proxy"] for r in rows], bpp).statistic), "monotone": bool(np.all(np.diff(bpp) > 0))}


def _save(fig, ax, path: Path, ylabel: str, draw: bool) -> None:
    """Label a rate-term figure against the real bpp and write it (when ``draw``); close it."""
    import matplotlib.pyplot as plt

    if draw:
        ax.set_xlabel("real bits per pixel (standard Huffman tables)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)


def _bits_estimate(out: str | Path, docs: dict) -> dict:
    """:func:`rate_proxy` for the variants trained on the estimated bits; writes ``bits_estimate.png``."""
    import matplotlib.pyplot as plt

    res: dict = {}
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    top = 0.0
    for codec, d in docs.items():
        pts = [p for p in d["points"] if "bits_estimate_bpp" in p]
        if not pts:
            continue
        real, est = np.array([p["bpp"] for p in pts]), np.array([p["bits_estimate_bpp"] for p in pts])
        by: dict = {}
        for p in pts:
            by.setdefault(p["model"], []).append(p)
        rows = sorted(({"model": n, "bpp": float(np.mean([p["bpp"] for p in v])),
                        "proxy": float(np.mean([p["bits_estimate_bpp"] for p in v]))} for n, v in by.items()), key=lambda r: r["proxy"])
        entry = {"models": rows, "mean_relative_error": float(np.mean(np.abs(est - real) / real)), "files": len(pts)}
        if len(rows) >= 2:
            entry.update(_ordering(rows))
        res[codec] = entry
        ax.scatter(real, est, s=6, alpha=0.5, label=f"{d.get('label', codec)}: error {100 * entry['mean_relative_error']:.1f}%")
        top = max(top, float(real.max()), float(est.max()))
    if res:
        ax.plot([0, top], [0, top], color="k", lw=0.8, label="equal")
    _save(fig, ax, Path(out) / "bits_estimate.png", "estimated bits per pixel (the training loss's rate term)", draw=bool(res))
    return res


def markdown(out: str | Path, below: float = 0.4) -> str:
    """The results table of a folder: lowest bpp per codec and BD-rates of the learned variants
    against every baseline (PSNR, MS-SSIM, LPIPS; below ``below`` bpp and over the common range)."""
    docs = _load(Path(out))
    learned = [c for c in docs if is_learned(c)]
    bases = [c for c in docs if not is_learned(c)]
    lines = ["| codec | lowest bpp | points |", "|---|---|---|"]
    for c, d in docs.items():
        lines.append(f"| {d.get('label', c)} | {min(m['bpp'] for m in d['mean']):.3f} | {len(d['mean'])} |")
    rows = bd_table(out, learned, bases, below) + bd_table(out, [b for b in bases if b != "libjpeg-444"], ["libjpeg-444"], below)

    def f(v):
        return "n/a" if v is None else f"{v:+.1f}%"

    if rows:
        lines += ["", f"BD-rate (negative: fewer bits at equal quality), below {below} bpp / whole common range:", "",
                  "| test | reference | PSNR | MS-SSIM | LPIPS |", "|---|---|---|---|---|"]
        for r in rows:
            cells = [f"{f(r.get(f'bd_rate_{k}_below_{below}'))} / {f(r.get(f'bd_rate_{k}'))}" for k in ("psnr", "ms_ssim", "lpips")]
            lines.append(f"| {r['test']} | {r['reference']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
