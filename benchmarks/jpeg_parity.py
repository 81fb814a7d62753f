"""Parity of jpegedit's two JPEG paths with libjpeg-turbo (Pillow) over the Kodak set.

For every image, IJG quality in {10, 30, 50, 75, 90, 95} and chroma 4:4:4 / 4:2:0:

* exact path (``jpegedit.libjpeg``): fraction of quantised coefficients identical to Pillow's file
  (the goal is 100%); the file we write from them: its size against Pillow's, and the largest
  difference between Pillow's decoding of it and our exact JAX decoder;
* float path (``jpegedit.codec``, what the models train through): the orthonormal float32 DCT of
  rounded YCbCr, quantised with exact rounding - fraction identical per component and the largest
  difference; and the largest difference between our float decoder and Pillow's decoding;
* the quality -> table mapping for every quality 1..100 against the tables in Pillow's files.

Writes ``results/jpegedit/jpeg_parity.json`` and ``.png`` (float-path agreement per quality).

    python benchmarks/jpeg_parity.py [--kodak ../shared/data/kodak] [-o results/jpegedit/jpeg_parity.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from compat.images import list_images, load_image
from jpegedit import codec, jpegfile, libjpeg

REPO = Path(__file__).resolve().parents[1]
QUALITIES = (10, 30, 50, 75, 90, 95)
CHROMAS = ("444", "420")


def pillow(image: np.ndarray, q: int, chroma: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=q, subsampling=0 if chroma == "444" else 2)
    return buf.getvalue()


def decode_bytes(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int32)


@jax.jit
def _float_encode_444(image, tables):
    return codec.encode_ycbcr(jnp.round(codec.rgb_to_ycbcr(image)), tables, chroma="444")


@jax.jit
def _float_encode_420(image, tables):
    return codec.encode_ycbcr(jnp.round(codec.rgb_to_ycbcr(image)), tables, chroma="420")


@jax.jit
def _float_decode(co, tables):
    return codec.round_half_away(codec.decode(co, tables, round_samples=True))


def check_tables() -> int:
    bad = 0
    for q in range(1, 101):
        _, t = jpegfile.read_coefficients(pillow(np.zeros((8, 8, 3), np.uint8), q, "444"))
        bad += int(not np.array_equal(t, codec.quality_to_tables(q)))
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(REPO.parent / "shared" / "data" / "kodak"))
    ap.add_argument("-o", "--out", default=str(REPO / "results" / "jpegedit" / "jpeg_parity.json"))
    args = ap.parse_args()
    kodak = Path(args.kodak)
    if not kodak.is_dir():
        print(f"jpeg_parity: {kodak} not found (the Kodak set beside the repository)", file=sys.stderr)
        return 2
    paths = list_images(kodak)
    t0 = time.time()
    table_mismatches = check_tables()
    print(f"quality -> tables: {100 - table_mismatches}/100 qualities equal Pillow's tables")

    rows = []
    for i, path in enumerate(paths):
        image = load_image(path)
        for chroma in CHROMAS:
            fenc = _float_encode_444 if chroma == "444" else _float_encode_420
            for q in QUALITIES:
                tables = codec.quality_to_tables(q)
                ref_bytes = pillow(image, q, chroma)
                ref, _ = jpegfile.read_coefficients(ref_bytes)
                exact = libjpeg.encode(image, tables, chroma=chroma)
                flt = fenc(image, tables)
                ours_bytes = jpegfile.write(exact, tables)
                shown = decode_bytes(ours_bytes)
                row = {
                    "image": path.name,
                    "chroma": chroma,
                    "quality": q,
                    "exact_equal": [
                        float(np.mean(np.asarray(a) == b)) for a, b in zip(exact.components, ref.components)
                    ],
                    "float_equal": [float(np.mean(np.asarray(a) == b)) for a, b in zip(flt.components, ref.components)],
                    "float_max_diff": max(
                        int(np.abs(np.asarray(a) - b).max()) for a, b in zip(flt.components, ref.components)
                    ),
                    "bytes_ours": len(ours_bytes),
                    "bytes_pillow": len(ref_bytes),
                    "exact_decode_max_diff": int(np.abs(np.asarray(libjpeg.decode(exact, tables)) - shown).max()),
                    "float_decode_max_diff": int(np.abs(np.asarray(_float_decode(exact, tables)) - shown).max()),
                }
                rows.append(row)
        print(f"[{i + 1}/{len(paths)}] {path.name}  ({time.time() - t0:.0f} s)", flush=True)

    summary = {}
    print(
        f"\n{'chroma':>6} {'Q':>3} | {'exact =':>8} | {'float = Y':>10} {'Cb':>8} {'Cr':>8} {'min img':>8} "
        f"{'maxdiff':>7} | {'float dec':>9}"
    )
    for chroma in CHROMAS:
        for q in QUALITIES:
            sel = [r for r in rows if r["chroma"] == chroma and r["quality"] == q]
            exact = float(np.mean([np.mean(r["exact_equal"]) for r in sel]))
            per = np.array([r["float_equal"] for r in sel])
            s = {
                "exact_equal_fraction": exact,
                "exact_all_images_identical": all(min(r["exact_equal"]) == 1.0 for r in sel),
                "float_equal_fraction_mean": per.mean(axis=0).tolist(),
                "float_equal_fraction_min": float(per.min()),
                "float_max_diff": max(r["float_max_diff"] for r in sel),
                "file_bytes_equal_pillow": all(r["bytes_ours"] == r["bytes_pillow"] for r in sel),
                "exact_decode_max_diff": max(r["exact_decode_max_diff"] for r in sel),
                "float_decode_max_diff": max(r["float_decode_max_diff"] for r in sel),
            }
            summary[f"{chroma}_q{q}"] = s
            m = s["float_equal_fraction_mean"]
            print(
                f"{chroma:>6} {q:>3} | {100 * exact:7.3f}% | {100 * m[0]:9.3f}% {100 * m[1]:7.3f}% {100 * m[2]:7.3f}% "
                f"{100 * s['float_equal_fraction_min']:7.3f}% {s['float_max_diff']:>7} | "
                f"{s['float_decode_max_diff']:>9}"
            )
    all_exact = all(s["exact_all_images_identical"] for s in summary.values())
    print(
        f"\nexact path: every coefficient of every file identical: {all_exact}; "
        f"our files decode in Pillow exactly as our exact decoder: "
        f"{all(s['exact_decode_max_diff'] == 0 for s in summary.values())}; "
        f"same file sizes as Pillow: {all(s['file_bytes_equal_pillow'] for s in summary.values())}"
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "what": "jpegedit exact and float paths vs libjpeg-turbo (Pillow) on Kodak",
        "images": len(paths),
        "qualities": list(QUALITIES),
        "pillow": Image.__version__,
        "quality_table_mismatches_1_to_100": table_mismatches,
        "summary": summary,
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
    }
    out.write_text(json.dumps(result, indent=1))
    _plot(summary, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0 if all_exact and table_mismatches == 0 else 1


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, chroma in zip(axes, CHROMAS):
        for c, name in enumerate(("Y", "Cb", "Cr")):
            ys = [100 * summary[f"{chroma}_q{q}"]["float_equal_fraction_mean"][c] for q in QUALITIES]
            ax.plot(QUALITIES, ys, marker="o", label=f"float path, {name}")
        ax.plot(
            QUALITIES,
            [100 * summary[f"{chroma}_q{q}"]["exact_equal_fraction"] for q in QUALITIES],
            "k--",
            label="exact path (all)",
        )
        ax.set_title(f"coefficients identical to libjpeg-turbo, {chroma}")
        ax.set_xlabel("IJG quality")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of coefficients (Kodak mean)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
