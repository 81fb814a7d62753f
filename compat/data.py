"""Grain pipelines: image folders -> random crops -> batches, per process, deterministic, checkpointable.

``crop_batches(paths, ...)`` is an infinite ``grain.IterDataset`` of ``{"image": uint8 (B, S, S, 3)}``
batches of random ``S x S`` crops (optionally flipped). The order and every crop position are fixed
by ``seed``; each process reads its own share of the files (``shard_index`` of ``shard_count``); the
iterator's ``get_state()`` / ``set_state()`` (and orbax, through :mod:`compat.checkpoint`) resume it
exactly where it stopped.

Decoded images are cached in memory per process (photos are decoded once, not once per crop).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Sequence

import grain
import numpy as np

from compat.images import list_images, load_image

__all__ = ["training_images", "crop_batches", "CropTransform"]

log = logging.getLogger(__name__)


def training_images(roots: str | os.PathLike | Sequence[str | os.PathLike], min_side: int = 0) -> list[str]:
    """Every readable image under ``roots`` (sorted), skipping - with a logged reason - those whose
    shorter side is below ``min_side``."""
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    paths: list[str] = []
    for root in roots:
        if not Path(root).exists():
            raise FileNotFoundError(f"training data folder {root} does not exist")
        paths += [str(p) for p in list_images(root)]
    if min_side:
        from PIL import Image

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

    ``batch_size`` is this process's share of the global batch. The files are split over processes
    by index (``paths[shard_index::shard_count]``), so each process needs at least one file.
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in 0..{shard_count - 1}")
    mine = list(paths)[shard_index::shard_count]
    if not mine:
        raise ValueError(f"process {shard_index} of {shard_count} has no training images ({len(paths)} in all)")
    ds = (
        grain.MapDataset.source(mine)
        .seed(seed * 1_000_003 + shard_index)
        .shuffle()
        .repeat(None)
        .random_map(CropTransform(crop, flip))
        .batch(batch_size, drop_remainder=True)
    )
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
