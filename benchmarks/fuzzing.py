"""What the fuzz benchmarks share: chunks of inputs run in spawned worker processes, their counts
summed and their worst cases kept, a progress line, and the result JSON."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from pathlib import Path
from typing import Callable

COUNTS = ("inputs", "refused", "accepted")
LISTS = ("crashes", "slow")


def arguments(doc: str, count: int, out: Path) -> argparse.Namespace:
    """``--count`` (default ``count``), ``--processes`` (every core), ``--seed``, ``--out`` (``out``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=count)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=out)
    return ap.parse_args()


def run(
    chunk: Callable,
    count: int,
    step: int,
    seed: int,
    processes: int,
    maxima: tuple[str, ...] = ("max_seconds",),
    **pool_options,
) -> tuple[dict, float]:
    """``chunk((start, n, seed)) -> stats`` over ``count`` inputs in chunks of ``step``; returns the
    summed stats (counts added, lists joined, ``maxima`` the largest) and the seconds taken."""
    jobs = [(s, min(step, count - s), seed) for s in range(0, count, step)]
    total: dict = {**{k: 0 for k in COUNTS}, **{k: [] for k in LISTS}, **{k: 0 for k in maxima}}
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes, **pool_options) as pool:
        for st in pool.imap_unordered(chunk, jobs):
            for k in COUNTS:
                total[k] += st[k]
            for k in LISTS:
                total[k] += st[k]
            for k in maxima:
                total[k] = max(total[k], st[k])
            print(
                f"\r{total['inputs']:,} inputs, {len(total['crashes'])} crashes, {len(total['slow'])} slow",
                end="",
                flush=True,
            )
    print()
    return total, time.perf_counter() - t0


def report(total: dict, seconds: float, processes: int, out: Path, **figures) -> dict:
    """Print the figures and write them, with the first few crashes and slow inputs, to ``out``."""
    result = {
        "inputs": total["inputs"],
        "refused": total["refused"],
        "accepted": total["accepted"],
        "crashes": len(total["crashes"]),
        **figures,
        "seconds": round(seconds, 1),
        "inputs_per_second": round(total["inputs"] / seconds),
        "processes": processes,
        "machine": platform.machine(),
        "first_crashes": total["crashes"][:5],
        "first_slow": total["slow"][:5],
    }
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("first")}, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result
