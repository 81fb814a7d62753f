"""Plot a run's ``metrics.jsonl`` (one panel per logged quantity against the step).

    python -m compat.plot_metrics RUN_DIR [-o RUN_DIR/metrics.png] [--keys loss psnr mean_q_luma]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

_SKIP = {"step", "step_time_s", "images_per_s"}


def load_metrics(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def plot(rows: list[dict], out: Path, keys: list[str] | None = None, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys or sorted({k for r in rows for k in r} - _SKIP)
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run directory (or a metrics.jsonl file)")
    ap.add_argument("-o", "--out", default=None)
    ap.add_argument("--keys", nargs="*", default=None)
    args = ap.parse_args(argv)
    src = Path(args.run)
    path = src / "metrics.jsonl" if src.is_dir() else src
    if not path.exists():
        print(f"plot_metrics: error: {path} not found", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else path.with_suffix(".png")
    plot(load_metrics(path), out, args.keys, title=str(src))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
