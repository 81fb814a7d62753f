"""Fuzz the preview parser: >= 10^6 inputs, zero crashes, zero hangs.

Three kinds of input, a third each: random bytes after the format byte (with a valid check byte,
so the parser goes past it), real previews with 1-4 random byte edits (then the check byte fixed,
so mutations reach the layout), and real previews cut short or extended. Every input must either
raise PreviewFormatError or parse to a preview whose canonical bytes are the input. Any other
exception, or an input taking over 1 s, is a failure (printed with its bytes, hex). Runs in
parallel processes; writes results/benchmarks/fuzz_preview.json (or --out).

    python benchmarks/fuzz_preview.py [--count 1000000] [--processes 2] [--out FILE.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _chunk(args):
    from preview_helpers import random_preview

    from trimesh_decode.bitstream import MAGIC, PreviewFormatError, _crc8, from_bytes, to_bytes

    start, count, seed = args
    rng = np.random.default_rng([seed, start])
    pool = [to_bytes(random_preview(rng)) for _ in range(64)]
    stats = {"inputs": 0, "refused": 0, "accepted": 0, "crashes": [], "slow": [], "max_seconds": 0.0}
    for i in range(count):
        kind = i % 3
        if kind == 0:
            body = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
            head = bytes([MAGIC]) + body
            data = head + bytes([_crc8(head)])
        elif kind == 1:
            d = bytearray(pool[int(rng.integers(len(pool)))])
            for _ in range(int(rng.integers(1, 5))):
                d[int(rng.integers(1, len(d) - 1))] = int(rng.integers(256))
            d[-1] = _crc8(bytes(d[:-1]))
            data = bytes(d)
        else:
            d = pool[int(rng.integers(len(pool)))]
            cut = int(rng.integers(-20, 20))
            data = d[:cut] if cut < 0 else d + rng.integers(0, 256, cut, dtype=np.uint8).tobytes()
        t = time.perf_counter()
        try:
            p = from_bytes(data)
            if to_bytes(p) != data:
                stats["crashes"].append(("accepted non-canonical", data.hex()))
            stats["accepted"] += 1
        except PreviewFormatError:
            stats["refused"] += 1
        except Exception as e:  # noqa: BLE001 - the point of a fuzzer
            stats["crashes"].append((repr(e), data.hex()))
        dt = time.perf_counter() - t
        stats["max_seconds"] = max(stats["max_seconds"], dt)
        if dt > 1.0:
            stats["slow"].append((dt, data.hex()))
        stats["inputs"] += 1
    return stats


def main() -> int:
    import fuzzing

    args = fuzzing.arguments(
        __doc__, 1_000_000, Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "fuzz_preview.json"
    )
    total, secs = fuzzing.run(_chunk, args.count, 20_000, args.seed, args.processes)
    fuzzing.report(
        total,
        secs,
        args.processes,
        args.out,
        slow_over_1s=len(total["slow"]),
        max_seconds_per_input=round(total["max_seconds"], 4),
    )
    return 1 if (total["crashes"] or total["slow"]) else 0


if __name__ == "__main__":
    sys.exit(main())
