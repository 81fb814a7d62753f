"""Reporting of rate-distortion results that :mod:`jpegedit.baselines` measured: BD-rate tables
against any reference (:func:`summary`, :func:`bd_table`), the plots of PSNR / MS-SSIM / LPIPS
against bpp (:func:`plot`), the rate-proxy study of the paper's Fig. 5 (:func:`rate_proxy`) and
the markdown table of a results folder (:func:`markdown`), all of them at once (:func:`write_all`).
Reads only the JSON files in OUT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from compat import metrics
from compat.cli import write_atomic
from jpegedit.baselines import is_learned


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


def _ranges(below: float) -> list[tuple[str, tuple[float, float] | None]]:
    return [(f"_below_{below}", (0.0, below)), (f"_{below}_1.0", (below, 1.0)), ("_1.0_2.0", (1.0, 2.0)), ("", None)]


def _bd(r1, q1, r2, q2, rate_range) -> tuple[float | None, str | None]:
    if len(r1) < 2 or len(r2) < 2:
        return None, None
    try:
        return metrics.bd_rate(r1, q1, r2, q2, rate_range=rate_range), None
    except ValueError as e:
        return None, str(e)


def _image_curves(d: dict, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each image's own (bpp, quality) curve in a codec's points (for the per-image median)."""
    names = sorted({p["image"] for p in d.get("points", []) if "image" in p})
    return {n: _monotone([p for p in d["points"] if p.get("image") == n], key) for n in names}


def _bd_entry(ref: dict, d: dict, below: float, same: bool = False) -> dict:
    """BD-rates of ``d`` against ``ref``: of the mean curves (``bd_rate_<metric><range>``) and the
    median over images of each image's own BD-rate (``median_bd_rate_<metric><range>``, with the
    number of images whose curves overlap there in ``median_images_<metric><range>``)."""
    entry = {"label": d.get("label", d["codec"]), "lowest_bpp": min(c["bpp"] for c in d["mean"])}
    if same:
        return entry
    for key in ("psnr", "ms_ssim", "lpips"):
        sign = -1.0 if key == "lpips" else 1.0  # lower is better: BD over -LPIPS
        r1, q1 = _monotone(ref["mean"], key)
        r2, q2 = _monotone(d["mean"], key)
        c1, c2 = _image_curves(ref, key), _image_curves(d, key)
        common = sorted(set(c1) & set(c2))
        for suffix, rr in _ranges(below):
            name = f"bd_rate_{key}{suffix}"
            entry[name], note = _bd(r1, sign * q1, r2, sign * q2, rr)
            if note:
                entry.setdefault("notes", []).append(f"{name}: {note}")
            per = [_bd(c1[n][0], sign * c1[n][1], c2[n][0], sign * c2[n][1], rr)[0] for n in common]
            per = [v for v in per if v is not None]
            entry[f"median_{name}"] = float(np.median(per)) if per else None
            entry[f"median_images_{key}{suffix}"] = len(per)
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
    variants are solid lines with dots (progressive files dash-dotted), baselines dashed; optimised-Huffman
    and progressive curves lighter."""
    import matplotlib  # lazy: slow to import; only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

    docs = {c: d for c, d in _load(Path(out)).items() if not names or c in names}
    colours = plt.get_cmap("tab20").colors
    files = []
    for key, label in (("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"), ("lpips", "LPIPS (AlexNet), lower is better")):
        curves = [(codec, d, *_monotone(d["mean"], key)) for codec, d in docs.items()]
        curves = [c for c in curves if len(c[2])]
        if not curves:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
        # one colour pair per learned variant (dark: standard Huffman, light: optimised and
        # progressive), one per baseline; what the tool writes (-tool, -target) in black and red, bold
        groups = list(dict.fromkeys(c.rsplit("-", 1)[0] if is_learned(c) else c for c, *_ in curves))
        for codec, d, r, q in curves:
            learned = is_learned(codec)
            pair = groups.index(codec.rsplit("-", 1)[0] if learned else codec)
            lighter = learned and not codec.endswith("-std")
            colour = colours[(2 * pair + lighter) % len(colours)]
            ls = ("-." if codec.endswith("-prog") else "-") if learned else "--"
            style = {"color": colour, "ls": ls, "marker": "." if learned else None}
            if codec.endswith(("-tool", "-target")):
                style = {
                    "color": "black" if codec.endswith("-tool") else "tab:red",
                    "ls": "-",
                    "lw": 2.2,
                    "marker": ".",
                }
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


def rate_proxy(out: str | Path, alpha: float = 10.0, beta: float = 1.0) -> dict:
    """The paper's Fig. 5: the training loss's rate terms (``alpha ||1/Q||_1``, ``beta mean A``)
    against the real bpp of the files, per learned variant (standard Huffman tables), with a
    monotonicity check over the models: Spearman's rank correlation of the proxy with the mean bpp,
    and whether the mean bpp rises with every step down of the proxy. Writes ``rate_proxy.png``.

    Variants trained with ``loss.rate="bits"`` are checked against their own rate term instead, the
    estimated bpp (``jpegedit.losses.estimated_bits``): the same Spearman and monotonicity over the
    models plus its mean relative error per file, plotted against the real bpp in ``bits_estimate.png``."""
    import matplotlib  # lazy: slow to import; only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

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
            rows.append(
                {
                    "model": name,
                    "bpp": float(np.mean([p["bpp"] for p in pts])),
                    "table_term": t,
                    "attention_term": a,
                    "proxy": t + a,
                }
            )
        rows.sort(key=lambda r: r["proxy"])
        if len(rows) < 2:
            continue
        bpp = [r["bpp"] for r in rows]
        res[codec] = {"models": rows, **_ordering(rows)}
        rho = res[codec]["spearman"]
        line = ax.plot(
            bpp, [r["proxy"] for r in rows], marker="o", label=f"{d.get('label', codec)}: total (rho {rho:.2f})"
        )[0]
        ax.plot(bpp, [r["table_term"] for r in rows], ls="--", color=line.get_color(), label="  alpha ||1/Q||")
        if any(r["attention_term"] for r in rows):
            ax.plot(bpp, [r["attention_term"] for r in rows], ls=":", color=line.get_color(), label="  beta mean A")
    _save(fig, ax, Path(out) / "rate_proxy.png", "rate term of the training loss", draw=bool(res))
    return {**res, **bits}


def _ordering(rows: list[dict]) -> dict:
    """Does a rate term order the models as their real bits do? Spearman's rho of ``proxy`` against
    ``bpp`` over ``rows`` (sorted by proxy), and whether the bpp rises with every step of the proxy."""
    from scipy.stats import spearmanr  # lazy: slow to import; only this measure needs it

    bpp = [r["bpp"] for r in rows]
    return {
        "spearman": float(spearmanr([r["proxy"] for r in rows], bpp).statistic),
        "monotone": bool(np.all(np.diff(bpp) > 0)),
    }


def _save(fig, ax, path: Path, ylabel: str, draw: bool) -> None:
    """Label a rate-term figure against the real bpp and write it (when ``draw``); close it."""
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

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
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

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
        rows = sorted(
            (
                {
                    "model": n,
                    "bpp": float(np.mean([p["bpp"] for p in v])),
                    "proxy": float(np.mean([p["bits_estimate_bpp"] for p in v])),
                }
                for n, v in by.items()
            ),
            key=lambda r: r["proxy"],
        )
        entry = {"models": rows, "mean_relative_error": float(np.mean(np.abs(est - real) / real)), "files": len(pts)}
        if len(rows) >= 2:
            entry.update(_ordering(rows))
        res[codec] = entry
        ax.scatter(
            real, est, s=6, alpha=0.5, label=f"{d.get('label', codec)}: error {100 * entry['mean_relative_error']:.1f}%"
        )
        top = max(top, float(real.max()), float(est.max()))
    if res:
        ax.plot([0, top], [0, top], color="k", lw=0.8, label="equal")
    _save(
        fig,
        ax,
        Path(out) / "bits_estimate.png",
        "estimated bits per pixel (the training loss's rate term)",
        draw=bool(res),
    )
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
    rows = bd_table(out, learned, bases, below) + bd_table(
        out, [b for b in bases if b != "libjpeg-444"], ["libjpeg-444"], below
    )

    def f(v):
        return "n/a" if v is None else f"{v:+.1f}%"

    def row(r: dict, cell) -> str:  # one table row: per metric, the ranges' cells joined by " / "
        cells = [" / ".join(cell(r, k, sfx) for sfx, _ in _ranges(below)) for k in ("psnr", "ms_ssim", "lpips")]
        return f"| {r['test']} | {r['reference']} | " + " | ".join(cells) + " |"

    head = ["", "| test | reference | PSNR | MS-SSIM | LPIPS |", "|---|---|---|---|---|"]
    if rows:
        lines += [
            "",
            f"BD-rate (negative: fewer bits at equal quality), below {below} bpp / {below}-1.0 bpp / 1.0-2.0 bpp / "
            "whole common range (n/a: the curves do not overlap there):",
            *head,
        ]
        lines += [row(r, lambda r, k, sfx: f(r.get(f"bd_rate_{k}{sfx}"))) for r in rows]
    tool = [r for r in rows if r["test"].endswith(("-tool", "-target"))]
    if tool:
        lines += [
            "",
            "The encoder's rows, as the median over images of each image's own BD-rate (same ranges; in "
            "brackets the number of images whose curves overlap there):",
            *head,
        ]
        lines += [
            row(r, lambda r, k, sfx: f"{f(r.get(f'median_bd_rate_{k}{sfx}'))} ({r.get(f'median_images_{k}{sfx}', 0)})")
            for r in tool
        ]
    return "\n".join(lines) + "\n"


def write_all(out: str | Path, below: float, title: str) -> list[Path]:
    """``summary.json`` (BD-rates of every codec against libjpeg 4:4:4, of every learned curve
    against every baseline, the rate-proxy study), ``README.md`` (the tables) and the plots of a
    results folder, from the per-codec JSON files in it; the plots' paths."""
    out = Path(out)
    docs = _load(out)
    learned = [c for c in docs if is_learned(c)]
    bases = [c for c in docs if not is_learned(c)]
    doc = {
        "summary": summary(out, below=below) if "libjpeg-444" in docs else None,
        "learned_vs_baselines": bd_table(out, learned, bases, below),
        "rate_proxy": rate_proxy(out),
    }
    write_atomic(out / "summary.json", json.dumps(doc, indent=1).encode(), force=True)
    write_atomic(out / "README.md", (f"# {title}\n\n" + markdown(out, below)).encode(), force=True)
    return plot(out)
