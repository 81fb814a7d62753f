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
``images`` may be several folders (their photos in the order given), and ``exclude`` drops the
photos whose path inside their folder matches a glob or lies under a named subfolder (e.g.
``nips17_dev``: the neural decoder's ImageNet-domain test set, which must stay out of training); a
pattern that matches no photo is refused as a likely typo. ``iterations=(lo, hi)`` encodes each
crop with its own hill-climbing budget, log-uniform in ``[lo, hi]`` (recorded in the manifest), so
a decoder can learn previews of every encoder strength.
Crop ``i`` depends only on ``(seed, i)``, so the work splits over processes in any order, and a
rerun of the same command continues where an interrupted one stopped (finished crops are read
from the manifest, whose torn last line, if the builder was killed mid-write, is dropped first; a
setting that differs from the folder's ``dataset.json`` is refused). One builder per folder (a lock);
the worker processes end with the builder, however it ends.

A packed kit (``pack_dataset``) is untrusted input to ``unpack_dataset``: every name in its
manifest must be one plain file name under ``crops/`` or ``previews/``, every source a photo inside
the kit, every number within what the builder itself writes (crop size, scale, a box that fits its
photo, preview length); otherwise the kit is refused before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import fnmatch
import io
import json
import math
import multiprocessing
import os
import re
import signal
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from compat.images import DEFAULT_MAX_PIXELS, ImageError, image_size, list_images, load_image, write_file_atomic
from compat.locks import FolderBusyError, FolderLock
from trimesh_decode.encoder import EncoderConfig, encode_image


class DatasetError(ValueError):
    """A dataset, pack or kit request this module refuses (the message says why, in one line);
    nothing has been written when it is raised before work starts."""


SIZE_RANGE = (8, 4096)  # crop sides the builder writes (and a kit may claim)
MAX_PREVIEW_BYTES = 4096  # the encoder's largest byte target

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


def _die_with_parent(parent: int) -> None:
    """Worker initialiser: the kernel kills this process when its parent dies (Linux prctl
    PR_SET_PDEATHSIG), so a killed builder leaves no worker writing on; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@contextlib.contextmanager
def _parallel(fn, jobs: list, processes: int | None):
    """``fn`` over ``jobs``, results as they finish: in spawned worker processes (default: every
    core), or in this process when one suffices; the workers stop when the block exits, and die
    with this process if it is killed."""
    processes = min(processes or os.cpu_count() or 1, max(1, len(jobs)))
    if processes <= 1:
        yield map(fn, jobs)
        return
    pool = multiprocessing.get_context("spawn").Pool(processes, initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        yield pool.imap_unordered(fn, jobs)
    finally:
        pool.terminate()


def _drop_torn_line(path: Path) -> None:
    """A manifest whose last line was cut by a kill (no newline) loses that line, so that the next
    record appended starts a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data[: data.rfind(b"\n") + 1]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(keep)
        os.replace(tmp, path)


def _roots(images) -> list[Path]:
    """The --images folders of a build (one path, or several) or of a ``dataset.json``."""
    return [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(r) for r in images]


def _excluded(rel: str, pattern: str) -> bool:
    """``rel`` (a photo's posix path inside its --images folder) matches the glob ``pattern`` or lies
    under it taken as a folder."""
    return fnmatch.fnmatchcase(rel, pattern) or rel.startswith(pattern.rstrip("/") + "/")


def _photos(roots: list[Path], exclude) -> list[Path]:
    """The photos of ``roots`` in order, less the excluded ones; a pattern matching none is refused."""
    paths, used = [], set()
    for root in roots:
        if not root.is_dir():
            raise DatasetError(f"--images {root} is not a folder")
        for path in list_images(root):
            rel = Path(path).resolve().relative_to(root.resolve()).as_posix()
            hit = [p for p in exclude if _excluded(rel, p)]
            used.update(hit)
            if not hit:
                paths.append(path)
    unused = [p for p in exclude if p not in used]
    if unused:
        raise DatasetError(f"--exclude {unused[0]!r} matches no image under {', '.join(map(str, roots))}")
    return paths


def _settings_of(folder: Path) -> dict:
    """The ``dataset.json`` of a ``trimesh-decode dataset`` folder, or a one-line DatasetError."""
    try:
        return json.loads((folder / "dataset.json").read_text())
    except (OSError, ValueError) as e:
        why = f"no readable dataset.json: {e}"
        raise DatasetError(f"{folder} is not a dataset folder of `trimesh-decode dataset` ({why})") from None


def unseen_photos(dataset: str | os.PathLike) -> list[Path]:
    """The photos a ``trimesh-decode dataset`` folder could have drawn from (its ``dataset.json``:
    the --images folders less --exclude) that none of its crops came from, in order: held-out photos
    of the training pool's own kind, for choosing between decoders without the test set."""
    folder = Path(dataset)
    settings = _settings_of(folder)
    sources = {Path(r["source"]) for r in read_manifest(folder, files=()).values()}
    if not sources or not any(p.exists() for p in sources):
        raise DatasetError(f"{folder}: no crop's source photo is found from here (run where the dataset was built)")
    used = {str(p.resolve()) for p in sources}
    photos = _photos(_roots(settings["images"]), settings.get("exclude") or [])
    return [p for p in photos if str(Path(p).resolve()) not in used]


def _iterations_of(iterations, seed: int, index: int) -> int:
    """Crop ``index``'s hill-climbing budget: ``iterations``, or log-uniform in ``(lo, hi)``."""
    if isinstance(iterations, int):
        return iterations
    lo, hi = iterations
    u = np.random.default_rng([seed, index, 1]).uniform(np.log(lo), np.log(hi))
    return int(round(float(np.exp(u))))


def _job(args):
    index, path, out, size, target, seed, iterations, max_scale = args
    iterations = _iterations_of(iterations, seed, index)
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
    write_file_atomic(Path(out) / "crops" / f"{name}.png", _png(crop))
    write_file_atomic(Path(out) / "previews" / f"{name}.tri", res.data)
    return {
        "index": index,
        "source": str(path),
        "box": box,
        "scale": scale,
        "crop": f"crops/{name}.png",
        "preview": f"previews/{name}.tri",
        "bytes": res.num_bytes,
        "seed": seed * 1_000_003 + index,
        "iterations": iterations,
        "work_psnr": round(res.work_psnr, 3),
        "seconds": round(res.seconds, 3),
    }


def build_dataset(
    images,
    out,
    *,
    crops: int,
    size: int = 256,
    target_bytes: int = 200,
    seed: int = 0,
    iterations: int | tuple[int, int] = 3000,
    max_scale: float = 1.0,
    exclude: tuple[str, ...] = (),
    processes: int | None = None,
    progress: bool = True,
) -> str:

    if not max_scale >= 1.0:
        raise DatasetError(f"--max-scale must be >= 1 (1: crops at the photos' own resolution), got {max_scale}")
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise DatasetError(f"--size must be in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {size}")
    if not 1 <= target_bytes <= MAX_PREVIEW_BYTES:
        raise DatasetError(f"--bytes must be in 1..{MAX_PREVIEW_BYTES}, got {target_bytes}")
    if not isinstance(iterations, int):
        iterations = tuple(int(v) for v in iterations)
        if len(iterations) != 2 or not 1 <= iterations[0] <= iterations[1]:
            raise DatasetError(f"--iterations LO:HI needs 1 <= LO <= HI, got {iterations}")
    roots = _roots(images)
    if not roots:
        raise DatasetError("no --images folder given")
    out = Path(out)
    paths = _photos(roots, list(exclude))
    if not paths:
        raise DatasetError(f"no images under {', '.join(map(str, roots))}")
    settings = {
        "images": str(roots[0].resolve()) if len(roots) == 1 else [str(r.resolve()) for r in roots],
        "files": len(paths),
        "size": size,
        "bytes": target_bytes,
        "seed": seed,
        "iterations": iterations if isinstance(iterations, int) else list(iterations),
        "max_scale": float(max_scale),
        "exclude": list(exclude),
    }
    # folders written before a setting existed were built with its default
    defaults = {"max_scale": 1.0, "exclude": []}
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    try:
        lock = FolderLock(out, "dataset builder")
    except FolderBusyError as e:
        raise DatasetError(str(e)) from None
    with lock:
        _check_subfolders(out)
        (out / "crops").mkdir(exist_ok=True)
        (out / "previews").mkdir(exist_ok=True)
        meta = out / "dataset.json"
        if meta.exists():
            old = json.loads(meta.read_text())
            diff = {
                k: (old.get(k, defaults.get(k)), v) for k, v in settings.items() if old.get(k, defaults.get(k)) != v
            }
            if diff:
                raise DatasetError(f"{out} was built with other settings {diff}; use another --out")
        else:
            write_file_atomic(meta, json.dumps(settings, indent=1).encode())
        _drop_torn_line(out / "manifest.jsonl")
        done = read_manifest(out)
        order = np.random.default_rng(seed).integers(0, len(paths), size=crops)
        todo = [
            (i, str(paths[order[i]]), str(out), size, target_bytes, seed, iterations, max_scale)
            for i in range(crops)
            if i not in done
        ]
        bar = tqdm(total=crops, initial=crops - len(todo), desc="previews", unit="crop", disable=not progress)
        with open(out / "manifest.jsonl", "a") as manifest, bar, _parallel(_job, todo, processes) as results:
            for rec in results:
                manifest.write(json.dumps(rec) + "\n")
                manifest.flush()
                bar.update(1)
        recs = read_manifest(out)
        sizes = [r["bytes"] for r in recs.values()]
        return (
            f"{out}: {len(recs)} of {crops} crops encoded ({crops - len(todo)} were already there), "
            f"mean {np.mean(sizes):.1f} bytes; manifest {out / 'manifest.jsonl'}"
        )


def _check_subfolders(out: Path) -> None:
    """``crops/`` and ``previews/`` of ``out``, where present, are real folders, not links that
    would carry the writes elsewhere."""
    for sub in ("crops", "previews"):
        p = out / sub
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise DatasetError(f"{p} is a link or a file, not a folder: refusing to write through it")


def _empty_or_forced(out: Path, force: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DatasetError(f"{out} is a link or a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise DatasetError(f"{out} exists and is not empty; pass --force to write into it")
        _check_subfolders(out)
    out.mkdir(parents=True, exist_ok=True)


def pack_dataset(dataset, out, *, quality: int = 95, force: bool = False, progress: bool = True) -> str:
    """A compact copy of a dataset for a machine without its photos (a lent accelerator): each
    source photo once as a JPEG (4:4:4, ``quality``) and the manifest with every preview's bytes in
    its line (base64) - no crops.
    ``unpack_dataset`` cuts the crops again from the photos. A crop then differs from the one its
    preview was encoded from only by the JPEG's error (about 45 dB at quality 95, far below the
    previews' ~21 dB): the preview bitstreams are the same bytes."""

    src, out = Path(dataset), Path(out)
    if not 50 <= quality <= 100:
        raise DatasetError(f"--quality must be in 50..100, got {quality}")
    settings = _settings_of(src)
    recs = read_manifest(src)
    if not recs:
        raise DatasetError(f"{src} has no finished crops")
    roots = _roots(settings["images"])
    names: dict[str, str] = {}
    for rec in recs.values():
        photo = Path(rec["source"]).resolve()
        if not photo.is_file():
            raise DatasetError(
                f"source photo {rec['source']} of crop {rec['index']} is missing (manifest paths are "
                f"relative to the folder the dataset was built from)"
            )
        inside = [r for r in roots if photo.is_relative_to(r)]
        rel = photo.relative_to(inside[0]) if inside else Path(photo.name)
        if inside and len(roots) > 1:  # several folders: each keeps its own subfolder in the kit
            rel = Path(f"{roots.index(inside[0])}_{inside[0].name}") / rel
        names.setdefault(rec["source"], (Path("photos") / rel).with_suffix(".jpg").as_posix())
    if len(set(names.values())) != len(names):
        raise DatasetError(f"two source photos of {src} map to one name in the pack")
    _empty_or_forced(out, force)
    for source, name in tqdm(sorted(names.items()), desc="photos", unit="photo", disable=not progress):
        buf = io.BytesIO()
        Image.fromarray(load_image(source)).save(buf, "JPEG", quality=quality, subsampling=0)
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(out / name, buf.getvalue())
    lines = []  # each preview's bytes inside its manifest line: one small file, not thousands
    for i in sorted(recs):
        data = base64.b64encode((src / recs[i]["preview"]).read_bytes()).decode()
        lines.append(json.dumps(dict(recs[i], source=names[recs[i]["source"]], preview_bytes=data)))
    packed = dict(settings, packed_from=str(src.resolve()), photo_quality=quality)
    write_file_atomic(out / "dataset.json", json.dumps(packed, indent=1).encode())
    write_file_atomic(out / "manifest.jsonl", ("\n".join(lines) + "\n").encode())
    mib = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    return f"{out}: {len(recs)} previews and {len(names)} photos (JPEG quality {quality}), {mib:.1f} MiB"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _kit_size(settings: dict, kit: Path) -> int:
    size = settings.get("size")
    if not (isinstance(size, int) and not isinstance(size, bool) and SIZE_RANGE[0] <= size <= SIZE_RANGE[1]):
        raise DatasetError(
            f"{kit}/dataset.json: size {size!r} is not a crop side the builder writes "
            f"({SIZE_RANGE[0]}..{SIZE_RANGE[1]})"
        )
    return size


def _kit_file(rec: dict, key: str, folder: str, suffix: str, where: str) -> str:
    name = rec.get(key)
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if not (
        len(parts) == 2
        and parts[0] == folder
        and _PLAIN_NAME.fullmatch(parts[1])
        and parts[1].endswith(suffix)
        and "\\" not in name
        and name == f"{parts[0]}/{parts[1]}"
    ):
        raise DatasetError(f"{where}: {key} {name!r} is not one plain file name under {folder}/ (ending {suffix})")
    return name


def _photo_size(kit: Path, source: str) -> tuple[int, int]:
    try:
        return image_size(kit / source)
    except ImageError as e:
        raise DatasetError(f"{kit}: photo {e}") from None


def _check_kit(kit: Path, recs: dict, size: int) -> None:
    """Refuse (DatasetError) a kit whose manifest names anything the builder would not have written:
    see the module doc. Reads only the photos' headers."""
    root = kit.resolve()
    names: set[str] = set()
    sizes: dict[str, tuple[int, int]] = {}
    for i, rec in recs.items():
        where = f"{kit}/manifest.jsonl, crop {i}"
        if not (isinstance(rec.get("index"), int) and rec["index"] >= 0):
            raise DatasetError(f"{where}: index {rec.get('index')!r} is not a non-negative integer")
        files = (_kit_file(rec, "crop", "crops", ".png", where), _kit_file(rec, "preview", "previews", ".tri", where))
        if names & set(files):
            raise DatasetError(f"{where}: {files[0]} or {files[1]} is named by another crop too")
        names.update(files)
        source = rec.get("source")
        parts = PurePosixPath(source).parts if isinstance(source, str) else ()
        if (
            not parts
            or PurePosixPath(source).is_absolute()
            or ".." in parts
            or not (kit / source).resolve().is_relative_to(root)
        ):
            raise DatasetError(f"{where}: source {source!r} is not a photo inside the kit")
        try:
            data = base64.b64decode(rec.get("preview_bytes", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise DatasetError(f"{where}: preview_bytes is not base64") from None
        if not 1 <= len(data) <= MAX_PREVIEW_BYTES:
            raise DatasetError(f"{where}: a preview of {len(data)} bytes (the builder writes 1..{MAX_PREVIEW_BYTES})")
    missing = sorted({r["source"] for r in recs.values() if not (kit / r["source"]).is_file()})
    if missing:
        raise DatasetError(f"{kit} lacks {len(missing)} of its photos, e.g. {missing[0]}")
    for i, rec in recs.items():
        if rec["source"] not in sizes:
            sizes[rec["source"]] = _photo_size(kit, rec["source"])
        _check_box(rec.get("box"), rec.get("scale"), sizes[rec["source"]], size, f"{kit}/manifest.jsonl, crop {i}")


def _check_box(box, scale, photo: tuple[int, int], size: int, where: str) -> None:
    """The crop a record describes is one the builder cuts from a ``photo`` (w, h): a square box
    inside the photo (enlarged to hold one crop when ``scale > 1``) whose side ``scale`` maps to ``size``."""
    ints = isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in box)
    if not ints or box[2] != box[3] or box[2] < 1 or box[0] < 0 or box[1] < 0:
        raise DatasetError(f"{where}: box {box!r} is not a square [x, y, side, side]")
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise DatasetError(f"{where}: scale {scale!r} is not a positive number")
    w, h = photo
    if scale > 1.0:  # a photo too small for one crop, enlarged so its short side is the crop's
        if box[2] != size or abs(min(w, h) * scale - size) > 1.0:
            raise DatasetError(f"{where}: scale {scale} does not enlarge a {w}x{h} photo to hold one {size}-pixel crop")
        w, h = max(size, round(w * scale)), max(size, round(h * scale))
        if w * h > DEFAULT_MAX_PIXELS:
            raise DatasetError(f"{where}: scale {scale} makes a {w}x{h} photo, over the image limit")
    elif abs(scale * box[2] - size) > 1e-6 * size:
        raise DatasetError(f"{where}: scale {scale} does not map a side of {box[2]} to the crop size {size}")
    if box[0] + box[2] > w or box[1] + box[3] > h:
        raise DatasetError(f"{where}: box {box} does not fit its {w}x{h} photo")


def _unpack_photo(args):
    kit, out, size, recs = args
    image = load_image(Path(kit) / recs[0]["source"])
    for rec in recs:
        write_file_atomic(Path(out) / rec["crop"], _png(cut(image, rec["box"], rec["scale"], size)))
        write_file_atomic(Path(out) / rec["preview"], base64.b64decode(rec["preview_bytes"]))
    return len(recs)


def unpack_dataset(kit, out, *, processes: int | None = None, force: bool = False, progress: bool = True) -> str:
    """A training folder (crops/, previews/, manifest.jsonl) from ``pack_dataset``'s output: the
    crops cut again from the packed photos, one job per photo."""

    kit, out = Path(kit), Path(out)
    meta = kit / "dataset.json"
    settings = json.loads(meta.read_text()) if meta.is_file() else {}
    if "packed_from" not in settings:
        raise DatasetError(f"{kit} is not a packed dataset (`trimesh-decode pack` writes one)")
    recs = read_manifest(kit, files=())
    if not recs:
        raise DatasetError(f"{kit} has no previews (manifest.jsonl is empty or missing)")
    size = _kit_size(settings, kit)
    _check_kit(kit, recs, size)
    _empty_or_forced(out, force)
    (out / "crops").mkdir(exist_ok=True)
    (out / "previews").mkdir(exist_ok=True)
    by_photo: dict[str, list] = {}
    for i in sorted(recs):
        by_photo.setdefault(recs[i]["source"], []).append(recs[i])
    jobs = [(str(kit), str(out), size, group) for group in by_photo.values()]
    with (
        tqdm(total=len(recs), desc="crops", unit="crop", disable=not progress) as bar,
        _parallel(_unpack_photo, jobs, processes) as results,
    ):
        for n in results:
            bar.update(n)
    write_file_atomic(
        out / "dataset.json", json.dumps(dict(settings, unpacked_from=str(kit.resolve())), indent=1).encode()
    )
    lines = [
        {k: v for k, v in recs[i].items() if k != "preview_bytes"} | {"source": str(kit / recs[i]["source"])}
        for i in sorted(recs)
    ]
    write_file_atomic(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in lines).encode())
    return f"{out}: {len(recs)} crops cut from {len(by_photo)} photos"
