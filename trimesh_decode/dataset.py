"""Training data for the neural decoder: random crops of a photo folder and their previews.

``build_dataset(images, out, crops=N)`` writes ``crops/NNNNNN.png`` (the target), and
``previews/NNNNNN.tri`` (its ~200-byte preview) for N crops, plus ``manifest.jsonl`` (one line per
finished crop: source file, crop box, scale, bytes, seed) and ``dataset.json`` (the settings).

``max_scale=1`` (the default) cuts windows of ``size`` pixels at the photo's own resolution: zoomed-in
views. A preview of a whole photo (what a viewer shows, and what the evaluation encodes) is the photo
downscaled 2-3x, with far more detail per pixel. ``max_scale=S`` cuts a square of side ``size * s``
with ``s`` log-uniform in ``[1, min(S, short side / size)]`` and resizes it to ``size`` (Lanczos), so
the training set spans both. ``box`` in the manifest is in the photo's pixels; ``scale`` is the
resize factor (``size / side``).
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

    index, path, out, size, target, seed, iterations, max_scale = args
    rng = np.random.default_rng([seed, index])
    image = load_image(path)
    h, w = image.shape[:2]
    scale = 1.0
    top = min(max_scale, min(h, w) / size)
    if top > 1.0:  # a square of random side (log-uniform), resized to the crop size
        side = min(min(h, w), round(size * float(np.exp(rng.uniform(0.0, np.log(top))))))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        window = Image.fromarray(image[y : y + side, x : x + side])
        crop = np.asarray(window.resize((size, size), Image.Resampling.LANCZOS)) if side != size else image[y : y + side, x : x + side]
        crop, box, scale = np.ascontiguousarray(crop), [x, y, side, side], size / side
    else:
        if min(h, w) < size:  # small photos are enlarged to hold one crop
            scale = size / min(h, w)
            w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
            image = np.asarray(Image.fromarray(image).resize((w2, h2), Image.Resampling.LANCZOS))
            h, w = image.shape[:2]
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        crop = np.ascontiguousarray(image[y : y + size, x : x + size])
        box = [x, y, size, size]
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
        "box": box,
        "scale": scale,
        "crop": f"crops/{name}.png",
        "preview": f"previews/{name}.tri",
        "bytes": res.num_bytes,
        "seed": seed * 1_000_003 + index,
        "work_psnr": round(res.work_psnr, 3),
        "seconds": round(res.seconds, 3),
    }


def build_dataset(images, out, *, crops: int, size: int = 256, target_bytes: int = 200, seed: int = 0,
                  iterations: int = 3000, max_scale: float = 1.0, processes: int | None = None,
                  progress: bool = True) -> str:
    from tqdm import tqdm

    if not max_scale >= 1.0:
        raise UsageError(f"--max-scale must be >= 1 (1: crops at the photos' own resolution), got {max_scale}")
    root, out = Path(images), Path(out)
    if not root.is_dir():
        raise UsageError(f"--images {root} is not a folder")
    paths = list_images(root)
    if not paths:
        raise UsageError(f"no images under {root}")
    settings = {"images": str(root.resolve()), "files": len(paths), "size": size, "bytes": target_bytes,
                "seed": seed, "iterations": iterations, "max_scale": float(max_scale)}
    defaults = {"max_scale": 1.0}  # folders written before a setting existed were built with its default
    (out / "crops").mkdir(parents=True, exist_ok=True)
    (out / "previews").mkdir(parents=True, exist_ok=True)
    meta = out / "dataset.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        diff = {k: (old.get(k, defaults.get(k)), v) for k, v in settings.items() if old.get(k, defaults.get(k)) != v}
        if diff:
            raise UsageError(f"{out} was built with other settings {diff}; use another --out")
    else:
        write_atomic(meta, json.dumps(settings, indent=1).encode(), force=True)
    done = read_manifest(out)
    order = np.random.default_rng(seed).integers(0, len(paths), size=crops)
    todo = [(i, str(paths[order[i]]), str(out), size, target_bytes, seed, iterations, max_scale)
            for i in range(crops) if i not in done]
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
