"""Timing helpers the benchmark scripts share: warm up once (compilation), then time repeats."""

from __future__ import annotations

import time

import numpy as np


def times(f, repeats: int = 3) -> list[float]:
    """Seconds of ``repeats`` calls of ``f`` after one untimed call; JAX results are waited for."""
    import jax

    jax.block_until_ready(f())
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f())
        out.append(time.perf_counter() - t)
    return out


def best(f, repeats: int = 3) -> float:
    return min(times(f, repeats))


def median_ms(f, repeats: int = 20) -> float:
    return 1e3 * float(np.median(times(f, repeats)))
