"""Fuzz the weight readers (compat.weights): >= 10^5 crafted files, no crash, none over 1 GiB or 2 s.

Four kinds of file, a quarter each: legacy and zip torch files with crafted tensor headers (storage
offsets, sizes, strides and element counts drawn from small, negative and huge values), real small
torch files (legacy and zip) with 1-6 random byte edits or cut short, and pickled numpy trees with
random byte edits. Every file must load into arrays within the readers' limits or raise one
``WeightsError`` line. Any other exception, an input over 2 s, or a worker whose peak memory passes
1 GiB (each worker runs under RLIMIT_AS, so a blow-up is a MemoryError, counted as a crash even
when the reader reports it as a WeightsError) is a
failure. Writes results/benchmarks/fuzz_weights.json (or --out).

    python benchmarks/fuzz_weights.py [--count 100000] [--processes 2]
"""

from __future__ import annotations

import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LIMIT_BYTES = 1 << 30
LIMIT_SECONDS = 2.0
# headroom for the interpreter, numpy and the reader's own code in each worker, above the 1 GiB
_ADDRESS_SPACE = LIMIT_BYTES + (1 << 30)


def _dim(rng) -> int:
    r = rng.random()
    if r < 0.6:
        return int(rng.integers(0, 10))
    if r < 0.8:
        return int(rng.integers(-3, 0))
    return int(rng.integers(0, 1 << 40))


def _file(rng, fake, pool) -> tuple[bytes, str]:
    from weights_helpers import legacy_file, zip_file

    kind = int(rng.integers(4))
    if kind <= 1:
        nd = int(rng.integers(0, 5))
        size = tuple(_dim(rng) for _ in range(nd))
        stride = tuple(_dim(rng) for _ in range(nd + int(rng.random() < 0.1)))
        offset = _dim(rng)
        numel = int(rng.integers(0, 64))
        maker = legacy_file if kind == 0 else zip_file
        return maker(fake, {"w": ("s0", offset, size, stride)}, {"s0": np.arange(numel, dtype=np.float32)}), "torch"
    data, loader = pool[int(rng.integers(len(pool)))]
    d = bytearray(data)
    if rng.random() < 0.3:
        d = d[: int(rng.integers(0, len(d)))]
    for _ in range(int(rng.integers(1, 7))):
        if d:
            d[int(rng.integers(len(d)))] = int(rng.integers(256))
    return bytes(d), loader


def _pool(fake) -> list[tuple[bytes, str]]:
    from weights_helpers import legacy_file, zip_file

    s = np.arange(24, dtype=np.float32)
    tensors = {"a": ("s0", 2, (2, 3), (3, 1)), "t": ("s0", 0, (3, 4), (1, 3)), "c": ("s1", 0, (), ())}
    storages = {"s0": s, "s1": np.array([7], np.int64)}
    tree = {"l": {"k": s.reshape(4, 6), "b": s[:3].astype(np.int64)}, "m": {"h": np.ones((2, 2), np.float16)}}
    return [
        (legacy_file(fake, tensors, storages), "torch"),
        (zip_file(fake, tensors, storages), "torch"),
        (pickle.dumps(tree, protocol=3), "pickle"),
        (pickle.dumps(tree, protocol=2), "pickle"),
    ]


def _chunk(args):
    from weights_helpers import fake_torch_modules

    from compat import weights as W

    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))
    start, count, seed = args
    fake = fake_torch_modules()
    sys.modules.update(fake.modules)
    rng = np.random.default_rng([seed, start])
    pool = _pool(fake)
    loaders = {"torch": W.load_torch, "pickle": W.load_pickled_numpy}
    stats = {"inputs": 0, "refused": 0, "accepted": 0, "crashes": [], "slow": [], "max_seconds": 0.0, "max_bytes": 0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.bin"
        for _ in range(count):
            data, kind = _file(rng, fake, pool)
            path.write_bytes(data)
            t = time.perf_counter()
            try:
                out = loaders[kind](path)
                leaves, stack = [], [out]
                while stack:
                    node = stack.pop()
                    for v in node.values():
                        (stack.append(v) if isinstance(v, dict) else leaves.append(v))
                stats["max_bytes"] = max(stats["max_bytes"], sum(a.nbytes for a in leaves))
                stats["accepted"] += 1
            except W.WeightsError as e:
                if "\n" in str(e) or "MemoryError" in str(e):  # a refusal that hit the memory cap is a blow-up
                    stats["crashes"].append((f"WeightsError: {str(e)[:200]}", data.hex()[:400]))
                stats["refused"] += 1
            except BaseException as e:  # noqa: BLE001 - the point of a fuzzer
                stats["crashes"].append((repr(e)[:200], data.hex()[:400]))
            dt = time.perf_counter() - t
            stats["max_seconds"] = max(stats["max_seconds"], dt)
            if dt > LIMIT_SECONDS:
                stats["slow"].append((dt, data.hex()[:400]))
            stats["inputs"] += 1
    stats["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return stats


def main() -> int:
    import fuzzing

    args = fuzzing.arguments(
        __doc__, 100_000, Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "fuzz_weights.json"
    )
    total, secs = fuzzing.run(
        _chunk,
        args.count,
        2_000,
        args.seed,
        args.processes,
        maxima=("max_seconds", "max_bytes", "peak_rss_bytes"),
        maxtasksperchild=1,
    )
    fuzzing.report(
        total,
        secs,
        args.processes,
        args.out,
        slow_over_2s=len(total["slow"]),
        max_seconds_per_input=round(total["max_seconds"], 4),
        max_materialised_bytes=total["max_bytes"],
        peak_worker_rss_mib=round(total["peak_rss_bytes"] / 2**20, 1),
    )
    big = total["max_bytes"] > LIMIT_BYTES or total["peak_rss_bytes"] > _ADDRESS_SPACE
    return 1 if (total["crashes"] or total["slow"] or big) else 0


if __name__ == "__main__":
    sys.exit(main())
