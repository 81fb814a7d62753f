"""Grain pipelines: image folders -> random crops -> batches, per process, deterministic, checkpointable.

``crop_batches(paths, ...)`` is an infinite ``grain.IterDataset`` of ``{"image": uint8 (B, S, S, 3)}``
batches of random ``S x S`` crops (optionally flipped). The order and every crop position are fixed
by ``seed``, and the global batches do not depend on the number of processes: each process takes
its slice of every global batch (:func:`process_batches`). The iterator's ``get_state()`` /
``set_state()`` (and orbax, through :mod:`compat.checkpoint`) resume it exactly where it stopped.

Decoded images are cached in memory per process (photos are decoded once, not once per crop).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
from pathlib import Path
from typing import Sequence

import grain
import numpy as np
from PIL import Image

from compat.images import list_images, load_image

__all__ = ["training_images", "crop_batches", "process_batches", "CropTransform"]

log = logging.getLogger(__name__)


def training_images(
    roots: str | os.PathLike | Sequence[str | os.PathLike], min_side: int = 0, include: Sequence[str] | None = None
) -> list[str]:
    """Every readable image under ``roots`` (sorted), skipping - with a logged reason - those whose
    shorter side is below ``min_side``; with ``include``, only files whose name matches one of its
    shell patterns (``kodim1[3-9].png``)."""

    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    paths: list[str] = []
    for root in roots:
        if not Path(root).exists():
            raise FileNotFoundError(f"training data folder {root} does not exist")
        paths += [str(p) for p in list_images(root)]
    if include:
        paths = [p for p in paths if any(fnmatch.fnmatch(Path(p).name, pat) for pat in include)]
    if min_side:
        kept = []
        for p in paths:
            with Image.open(p) as im:
                w, h = im.size
            if min(w, h) >= min_side:
                kept.append(p)
            else:
                log.warning("skipping %s: %dx%d is smaller than the %d-pixel crops", p, w, h, min_side)
        paths = kept
    if not paths:
        raise ValueError(f"no usable training images under {', '.join(map(str, roots))}")
    return paths


@functools.lru_cache(maxsize=512)
def _cached_image(path: str) -> np.ndarray:
    image = load_image(path)
    image.setflags(write=False)
    return image


class CropTransform(grain.transforms.RandomMap):
    """A file path -> ``{"image": uint8 (size, size, 3)}``: a uniformly random crop, optionally a
    horizontal flip (with probability 1/2), drawn from Grain's per-element generator."""

    def __init__(self, size: int, flip: bool = False):
        self.size = int(size)
        self.flip = bool(flip)

    def random_map(self, path: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        image = _cached_image(path)
        h, w = image.shape[:2]
        s = self.size
        if h < s or w < s:
            raise ValueError(f"{path}: {h}x{w} is smaller than the {s}x{s} crop")
        top = int(rng.integers(0, h - s + 1))
        left = int(rng.integers(0, w - s + 1))
        crop = image[top : top + s, left : left + s]
        if self.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return {"image": np.ascontiguousarray(crop)}


def process_batches(
    elements: grain.MapDataset,
    *,
    batch_size: int,
    shard_index: int = 0,
    shard_count: int = 1,
    threads: int = 2,
    workers: int = 0,
) -> grain.IterDataset:
    """This process's share of the global batches of an (infinite) element stream.

    ``threads`` read ahead in this process; ``workers > 0`` also spreads whole batches over that
    many worker processes (Grain's ``mp_prefetch``: for host work that holds the GIL, when an
    accelerator consumes batches faster than one process makes them). The batches and their order
    are the same either way.

    Global batch ``k`` is elements ``k G .. k G + G - 1`` of ``elements`` (``G = batch_size *
    shard_count``); process ``p`` takes its ``p``-th slice of ``batch_size`` of them. Every element -
    and the random draws of a ``random_map`` before this, which Grain derives from the element's
    index - is the same whatever the number of processes, so a run on 2 processes sees exactly the
    global batches of a run on 1 (``jax.make_array_from_process_local_data`` puts process 0's slice
    first).
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in 0..{shard_count - 1}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    ds = elements.batch(batch_size, drop_remainder=True)[shard_index::shard_count]
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
    if not workers:
        return ds
    from absl import flags  # lazy: only Grain worker processes need the flags marked

    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside absl.app they keep their defaults
        flags.FLAGS.mark_as_parsed()
    return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))


def crop_batches(
    paths: Sequence[str],
    *,
    crop: int,
    batch_size: int,
    seed: int,
    flip: bool = False,
    shard_index: int = 0,
    shard_count: int = 1,
    threads: int = 2,
) -> grain.IterDataset:
    """An infinite, reshuffled-every-epoch stream of batches of random crops for one process.

    ``batch_size`` is this process's share of the global batch; see :func:`process_batches` for
    how the global batches are split (independent of the number of processes).
    """
    if not paths:
        raise ValueError("no training images")
    elements = (
        grain.MapDataset.source(list(paths)).seed(seed).shuffle().repeat(None).random_map(CropTransform(crop, flip))
    )
    return process_batches(
        elements, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count, threads=threads
    )
