"""Plot runs' ``metrics.jsonl``: one panel per logged quantity against the step, one line per run.

python -m compat.plot_metrics RUN_DIR [-o RUN_DIR/metrics.png] [--keys loss psnr mean_q_luma]
python -m compat.plot_metrics runs/a runs/b -o compare.png --keys psnr_gain --smooth 10
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from compat.cli import OneLineParser, UsageError, check_output_file, run

_SKIP = {"step", "step_time_s", "images_per_s"}


def load_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a last line without its newline (a write cut short) is left out."""
    text = Path(path).read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines = lines[:-1]
    rows = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{n}: not a JSON line") from None
    return rows


def _smooth(values: list[float], window: int) -> list[float]:
    """The mean of the last ``window`` values at each point (the first points: of those there are)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot(
    rows: list[dict] | dict[str, list[dict]], out: Path, keys: list[str] | None = None, title: str = "", smooth: int = 1
) -> Path:
    """``rows`` of one run, or ``{label: rows}`` of several (one line each, with a legend)."""
    import matplotlib  # lazy: slow to import; only plotting needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow to import; only plotting needs it

    runs = rows if isinstance(rows, dict) else {"": rows}
    keys = keys or sorted({k for r in runs.values() for row in r for k in row} - _SKIP)
    if not keys:
        raise ValueError("nothing to plot: the runs logged no quantities")
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, r in runs.items():
            pts = [(row["step"], row[key]) for row in r if key in row and "step" in row]
            ax.plot([p[0] for p in pts], _smooth([p[1] for p in pts], max(1, smooth)), label=label or None, lw=1)
        ax.set_title(key + (f" (mean of {smooth} logs)" if smooth > 1 else ""), fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if len(runs) > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(
        prog="python -m compat.plot_metrics",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("run", nargs="+", help="run directories (or metrics.jsonl files)")
    ap.add_argument("-o", "--out", default=None, help="the figure (default: beside the first run's metrics.jsonl)")
    ap.add_argument("--keys", nargs="*", default=None)
    ap.add_argument("--smooth", type=int, default=1, help="plot the mean of the last N logs at each step")
    ap.add_argument("--force", action="store_true", help="overwrite an existing figure")
    return run("plot_metrics", ap, _plot_command, argv, expected=(ValueError,))


def _plot_command(args: argparse.Namespace) -> str:
    paths = [Path(r) / "metrics.jsonl" if Path(r).is_dir() else Path(r) for r in args.run]
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} not found")
    out = check_output_file(Path(args.out) if args.out else paths[0].with_suffix(".png"), args.force)
    runs = {str(Path(r)): load_metrics(p) for r, p in zip(args.run, paths)}
    plot(
        runs if len(runs) > 1 else next(iter(runs.values())),
        out,
        args.keys,
        title="" if len(runs) > 1 else args.run[0],
        smooth=args.smooth,
    )
    return f"wrote {out}"


if __name__ == "__main__":
    sys.exit(main())
