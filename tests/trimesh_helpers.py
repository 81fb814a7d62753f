"""The tiny preview dataset and the smoke config the neural decoder's tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from compat.config import config_module
from trimesh_decode.dataset import build_dataset
from trimesh_decode.task import make_task

REPO = Path(__file__).resolve().parents[1]


def build_tiny_dataset(root: Path) -> Path:
    """8 crops of 2 synthetic photos, encoded quickly (50 iterations)."""
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:320]
    for k in range(2):
        img = np.stack([(xx * (k + 1)) % 256, (yy * 2) % 256, ((xx + yy) // 2) % 256], -1).astype(np.float64)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(photos / f"p{k}.png")
    out = root / "ds"
    build_dataset(photos, out, crops=8, size=256, iterations=50, processes=1, progress=False)
    return out


def smoke_config(dataset, **over):
    """configs/trimesh_decode/smoke.py on ``dataset``, with dotted-key overrides."""
    c = config_module(REPO / "configs" / "trimesh_decode" / "smoke.py").get_config(f"data.dataset={dataset}")
    for k, v in over.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def first_batch(config):
    task = make_task(config)
    return task, next(iter(task.dataset(0, 1, config.batch_size)))
