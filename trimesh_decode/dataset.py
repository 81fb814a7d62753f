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

import base64
import contextlib
import io
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image

from compat.cli import UsageError, write_atomic
from compat.images import list_images, load_image

__all__ = ["build_dataset", "cut", "pack_dataset", "read_manifest", "unpack_dataset"]


def read_manifest(out: str | os.PathLike, files: tuple[str, ...] = ("crop", "preview")) -> dict[int, dict]:
    """Finished entries by index (lines whose ``files`` exist; a torn last line is ignored)."""
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
        if all((out / rec[f]).exists() for f in files):
            done[int(rec["index"])] = rec
    return done


def cut(image: np.ndarray, box, scale: float, size: int) -> np.ndarray:
    """The crop a manifest entry describes: ``box`` (x, y, side, side) of the photo, resized to
    ``size`` (Lanczos) when ``side`` differs; a photo too small for one crop (``scale > 1``) is first
    enlarged by ``scale``, and ``box`` is in the enlarged photo's pixels."""
    if scale > 1.0:  # small photos are enlarged to hold one crop
        h, w = image.shape[:2]
        w2, h2 = max(size, round(w * scale)), max(size, round(h * scale))
        image = np.asarray(Image.fromarray(image).resize((w2, h2), Image.Resampling.LANCZOS))
    x, y, side = int(box[0]), int(box[1]), int(box[2])
    if y + side > image.shape[0] or x + side > image.shape[1]:
        raise ValueError(f"crop box {list(box)} does not fit a {image.shape[1]}x{image.shape[0]} photo")
    window = image[y : y + side, x : x + side]
    if side != size:
        window = np.asarray(Image.fromarray(window).resize((size, size), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(window)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


@contextlib.contextmanager
def _parallel(fn, jobs: list, processes: int | None):
    """``fn`` over ``jobs``, results as they finish: in spawned worker processes (default: every
    core), or in this process when one suffices; the workers stop when the block exits."""
    processes = min(processes or os.cpu_count() or 1, max(1, len(jobs)))
    if processes <= 1:
        yield map(fn, jobs)
        return
    pool = multiprocessing.get_context("spawn").Pool(processes)
    try:
        yield pool.imap_unordered(fn, jobs)
    finally:
        pool.terminate()


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
        box, scale = [x, y, side, side], size / side
    else:
        if min(h, w) < size:
            scale = size / min(h, w)
            h, w = max(size, round(h * scale)), max(size, round(w * scale))
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        box = [x, y, size, size]
    crop = cut(image, box, scale, size)
    res = encode_image(crop, target, seed=seed * 1_000_003 + index, config=EncoderConfig(iterations=iterations))
    name = f"{index:06d}"
    write_atomic(Path(out) / "crops" / f"{name}.png", _png(crop), force=True)
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
    bar = tqdm(total=crops, initial=crops - len(todo), desc="previews", unit="crop", disable=not progress)
    with open(out / "manifest.jsonl", "a") as manifest, bar, _parallel(_job, todo, processes) as results:
        for rec in results:
            manifest.write(json.dumps(rec) + "\n")
            manifest.flush()
            bar.update(1)
    recs = read_manifest(out)
    sizes = [r["bytes"] for r in recs.values()]
    return (f"{out}: {len(recs)} of {crops} crops encoded ({crops - len(todo)} were already there), "
            f"mean {np.mean(sizes):.1f} bytes; manifest {out / 'manifest.jsonl'}")


def _empty_or_forced(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise UsageError(f"{out} exists and is not empty; pass --force to write into it")
    out.mkdir(parents=True, exist_ok=True)


def pack_dataset(dataset, out, *, quality: int = 95, force: bool = False, progress: bool = True) -> str:
    """A compact copy of a dataset for a machine without its photos (a lent accelerator): each
    source photo once as a JPEG (4:4:4, ``quality``) and the manifest with every preview's bytes in
    its line (base64) - no crops.
    ``unpack_dataset`` cuts the crops again from the photos. A crop then differs from the one its
    preview was encoded from only by the JPEG's error (about 45 dB at quality 95, far below the
    previews' ~21 dB): the preview bitstreams are the same bytes."""
    from tqdm import tqdm

    src, out = Path(dataset), Path(out)
    if not 50 <= quality <= 100:
        raise UsageError(f"--quality must be in 50..100, got {quality}")
    if not (src / "dataset.json").is_file():
        raise UsageError(f"{src} is not a `trimesh-decode dataset` folder (no dataset.json)")
    settings = json.loads((src / "dataset.json").read_text())
    recs = read_manifest(src)
    if not recs:
        raise UsageError(f"{src} has no finished crops")
    root = Path(settings["images"])
    names: dict[str, str] = {}
    for rec in recs.values():
        photo = Path(rec["source"]).resolve()
        if not photo.is_file():
            raise UsageError(f"source photo {rec['source']} of crop {rec['index']} is missing (manifest paths are "
                             f"relative to the folder the dataset was built from)")
        rel = photo.relative_to(root) if photo.is_relative_to(root) else Path(photo.name)
        names.setdefault(rec["source"], (Path("photos") / rel).with_suffix(".jpg").as_posix())
    if len(set(names.values())) != len(names):
        raise UsageError(f"two source photos of {src} map to one name in the pack")
    _empty_or_forced(out, force)
    for source, name in tqdm(sorted(names.items()), desc="photos", unit="photo", disable=not progress):
        buf = io.BytesIO()
        Image.fromarray(load_image(source)).save(buf, "JPEG", quality=quality, subsampling=0)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out / name, buf.getvalue(), force=True)
    lines = []  # each preview's bytes inside its manifest line: one small file, not thousands
    for i in sorted(recs):
        data = base64.b64encode((src / recs[i]["preview"]).read_bytes()).decode()
        lines.append(json.dumps(dict(recs[i], source=names[recs[i]["source"]], preview_bytes=data)))
    packed = dict(settings, packed_from=str(src.resolve()), photo_quality=quality)
    write_atomic(out / "dataset.json", json.dumps(packed, indent=1).encode(), force=True)
    write_atomic(out / "manifest.jsonl", ("\n".join(lines) + "\n").encode(), force=True)
    mib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    return f"{out}: {len(recs)} previews and {len(names)} photos (JPEG quality {quality}), {mib:.1f} MiB"


def _unpack_photo(args):
    kit, out, size, recs = args
    image = load_image(Path(kit) / recs[0]["source"])
    for rec in recs:
        write_atomic(Path(out) / rec["crop"], _png(cut(image, rec["box"], rec["scale"], size)), force=True)
        write_atomic(Path(out) / rec["preview"], base64.b64decode(rec["preview_bytes"]), force=True)
    return len(recs)


def unpack_dataset(kit, out, *, processes: int | None = None, force: bool = False, progress: bool = True) -> str:
    """A training folder (crops/, previews/, manifest.jsonl) from ``pack_dataset``'s output: the
    crops cut again from the packed photos, one job per photo."""
    from tqdm import tqdm

    kit, out = Path(kit), Path(out)
    meta = kit / "dataset.json"
    settings = json.loads(meta.read_text()) if meta.is_file() else {}
    if "packed_from" not in settings:
        raise UsageError(f"{kit} is not a packed dataset (`trimesh-decode pack` writes one)")
    recs = read_manifest(kit, files=())
    if not recs:
        raise UsageError(f"{kit} has no previews (manifest.jsonl is empty or missing)")
    missing = sorted({r["source"] for r in recs.values() if not (kit / r["source"]).is_file()})
    if missing:
        raise UsageError(f"{kit} lacks {len(missing)} of its photos, e.g. {missing[0]}")
    _empty_or_forced(out, force)
    (out / "crops").mkdir(exist_ok=True)
    (out / "previews").mkdir(exist_ok=True)
    by_photo: dict[str, list] = {}
    for i in sorted(recs):
        by_photo.setdefault(recs[i]["source"], []).append(recs[i])
    jobs = [(str(kit), str(out), int(settings["size"]), group) for group in by_photo.values()]
    with tqdm(total=len(recs), desc="crops", unit="crop", disable=not progress) as bar, \
            _parallel(_unpack_photo, jobs, processes) as results:
        for n in results:
            bar.update(n)
    write_atomic(out / "dataset.json", json.dumps(dict(settings, unpacked_from=str(kit.resolve())), indent=1).encode(), force=True)
    lines = [{k: v for k, v in recs[i].items() if k != "preview_bytes"} | {"source": str(kit / recs[i]["source"])}
             for i in sorted(recs)]
    write_atomic(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in lines).encode(), force=True)
    return f"{out}: {len(recs)} crops cut from {len(by_photo)} photos"
