"""Training data for the neural decoder: random crops of a photo folder and their previews.

``build_dataset(images, out, crops=N)`` writes ``crops/NNNNNN.png`` (the target), and
``previews/NNNNNN.tri`` (its ~200-byte preview) for N crops, plus ``manifest.jsonl`` (one line per
finished crop: source file, crop box, scale, bytes, seed) and ``dataset.json`` (the settings).
Crop ``i`` depends only on ``(seed, i)``, so the work splits over processes in any order, and a
rerun of the same command continues where an interrupted one stopped (finished crops are read
from the manifest; a setting that differs from the folder's ``dataset.json`` is refused).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image

from compat.cli import UsageError, write_atomic
from compat.images import list_images, load_image

__all__ = ["build_dataset", "read_manifest"]


def read_manifest(out: str | os.PathLike) -> dict[int, dict]:
    """Finished entries by index (lines whose files exist; a torn last line is ignored)."""
    out = Path(out)
    done: dict[int, dict] = {}
    path = out / "manifest.jsonl"
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (out / rec["crop"]).exists() and (out / rec["preview"]).exists():
            done[int(rec["index"])] = rec
    return done


def _job(args):
    from trimesh_decode.encoder import EncoderConfig, encode_image

    index, path, out, size, target, seed, iterations = args
    rng = np.random.default_rng([seed, index])
    image = load_image(path)
    h, w = image.shape[:2]
    scale = 1.0
    if min(h, w) < size:  # small photos are enlarged to hold one crop
        scale = size / min(h, w)
        w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
        image = np.asarray(Image.fromarray(image).resize((w2, h2), Image.Resampling.LANCZOS))
        h, w = image.shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    crop = np.ascontiguousarray(image[y : y + size, x : x + size])
    res = encode_image(crop, target, seed=seed * 1_000_003 + index, config=EncoderConfig(iterations=iterations))
    name = f"{index:06d}"
    buf = Path(out) / "crops" / f"{name}.png"
    import io

    png = io.BytesIO()
    Image.fromarray(crop).save(png, "PNG")
    write_atomic(buf, png.getvalue(), force=True)
    write_atomic(Path(out) / "previews" / f"{name}.tri", res.data, force=True)
    return {
        "index": index,
        "source": str(path),
        "box": [x, y, size, size],
        "scale": scale,
        "crop": f"crops/{name}.png",
        "preview": f"previews/{name}.tri",
        "bytes": res.num_bytes,
        "seed": seed * 1_000_003 + index,
        "work_psnr": round(res.work_psnr, 3),
        "seconds": round(res.seconds, 3),
    }


def build_dataset(images, out, *, crops: int, size: int = 256, target_bytes: int = 200, seed: int = 0,
                  iterations: int = 3000, processes: int | None = None, progress: bool = True) -> str:
    from tqdm import tqdm

    root, out = Path(images), Path(out)
    if not root.is_dir():
        raise UsageError(f"--images {root} is not a folder")
    paths = list_images(root)
    if not paths:
        raise UsageError(f"no images under {root}")
    settings = {"images": str(root.resolve()), "files": len(paths), "size": size, "bytes": target_bytes,
                "seed": seed, "iterations": iterations}
    (out / "crops").mkdir(parents=True, exist_ok=True)
    (out / "previews").mkdir(parents=True, exist_ok=True)
    meta = out / "dataset.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise UsageError(f"{out} was built with other settings {diff}; use another --out")
    else:
        write_atomic(meta, json.dumps(settings, indent=1).encode(), force=True)
    done = read_manifest(out)
    order = np.random.default_rng(seed).integers(0, len(paths), size=crops)
    todo = [(i, str(paths[order[i]]), str(out), size, target_bytes, seed, iterations) for i in range(crops) if i not in done]
    processes = processes or os.cpu_count() or 1
    bar = tqdm(total=crops, initial=crops - len(todo), desc="previews", unit="crop", disable=not progress)
    with open(out / "manifest.jsonl", "a") as manifest:
        if processes <= 1:
            results = map(_job, todo)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(processes)
            results = pool.imap_unordered(_job, todo)
        try:
            for rec in results:
                manifest.write(json.dumps(rec) + "\n")
                manifest.flush()
                bar.update(1)
        finally:
            if pool is not None:
                pool.terminate()
            bar.close()
    recs = read_manifest(out)
    sizes = [r["bytes"] for r in recs.values()]
    return (f"{out}: {len(recs)} of {crops} crops encoded ({crops - len(todo)} were already there), "
            f"mean {np.mean(sizes):.1f} bytes; manifest {out / 'manifest.jsonl'}")
