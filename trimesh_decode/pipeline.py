"""The neural decoder's training data: a folder written by ``trimesh-decode dataset`` (crops/,
previews/, manifest.jsonl) as an infinite Grain stream of batches - each crop's uint8 image and its
preview's padded mesh arrays (:data:`trimesh_decode.meshes.MESH_KEYS`), triangulated on the host
by the Grain workers - the same global batches on any number of processes."""

from __future__ import annotations

from pathlib import Path

import grain

from compat import data as datalib
from compat.images import load_image
from trimesh_decode import SIZE
from trimesh_decode.bitstream import from_bytes
from trimesh_decode.dataset import read_manifest
from trimesh_decode.meshes import preview_arrays

__all__ = ["dataset_records", "preview_batches"]

REPO = Path(__file__).resolve().parents[1]


class _LoadPair(grain.transforms.Map):
    def __init__(self, root: str, pad_points: int, pad_triangles: int):
        self.root, self.pad_points, self.pad_triangles = root, pad_points, pad_triangles

    def map(self, rec):
        crop_path, preview_path = rec
        image = load_image(Path(self.root) / crop_path)
        if image.shape != (SIZE, SIZE, 3):
            raise ValueError(f"{crop_path}: training crops must be {SIZE}x{SIZE} RGB, got {image.shape}")
        preview = from_bytes((Path(self.root) / preview_path).read_bytes())
        try:
            arrays = preview_arrays(preview, self.pad_points, self.pad_triangles)
        except ValueError as e:
            raise ValueError(f"{preview_path}: {e}; raise data.pad_points / data.pad_triangles") from None
        return {"image": image, **arrays}


def dataset_records(root: str) -> list[tuple[str, str]]:
    """(crop, preview) paths of a ``trimesh-decode dataset`` folder, by index."""
    if not Path(root).is_dir():
        raise FileNotFoundError(
            f"preview dataset {root} does not exist; build it with "
            f"`trimesh-decode dataset --images ../shared/data/photos --out {root} --crops 2000`"
        )
    recs = read_manifest(root)
    if not recs:
        raise ValueError(f"preview dataset {root} has no finished crops (manifest.jsonl is empty or missing)")
    return [(recs[i]["crop"], recs[i]["preview"]) for i in sorted(recs)]


def preview_batches(
    root: str,
    *,
    batch_size: int,
    seed: int,
    pad_points: int,
    pad_triangles: int,
    shard_index: int = 0,
    shard_count: int = 1,
    threads: int = 2,
    workers: int = 0,
) -> grain.IterDataset:
    """An infinite, reshuffled-every-epoch stream of this process's batches: ``image`` uint8
    (B, 256, 256, 3) and the padded mesh arrays; the same global batches on any number of processes
    (:func:`compat.data.process_batches`)."""
    records = dataset_records(root)
    if len(records) < batch_size * shard_count:
        raise ValueError(
            f"preview dataset {root} has {len(records)} crops, fewer than one global batch ({batch_size * shard_count})"
        )
    elements = (
        grain.MapDataset.source(records)
        .seed(seed)
        .shuffle()
        .repeat(None)
        .map(_LoadPair(str(root), pad_points, pad_triangles))
    )
    return datalib.process_batches(
        elements,
        batch_size=batch_size,
        shard_index=shard_index,
        shard_count=shard_count,
        threads=threads,
        workers=workers,
    )
