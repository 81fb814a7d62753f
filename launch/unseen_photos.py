"""Held-out photos of the training pool's own kind: the photos a ``trimesh-decode dataset`` folder
could have drawn its crops from (its --images folders less --exclude) that none of its crops came
from, ``--count`` of them drawn with ``--seed``, linked into a new folder for ``trimesh-decode
evaluate``. A decoder can then be chosen on photos no stage trained on, without the test set.

    python launch/unseen_photos.py data/previews_4k --count 200 -o /tmp/val_unseen
    trimesh-decode evaluate --images /tmp/val_unseen -o /tmp/eval_unseen --model mobile --model OTHER.npz \\
        --no-baselines --figures 0

Run it where the dataset was built (the manifest records the photos' paths as given then). Writes
symbolic links named ``<parent folder>__<file name>``; refuses a non-empty OUT without --force.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trimesh_decode.dataset import DatasetError, _empty_or_forced, unseen_photos  # noqa: E402


def link_unseen(dataset: str, out: Path, count: int, seed: int, force: bool) -> list[Path]:
    """Link ``count`` unseen photos of ``dataset`` (all of them if fewer) into ``out``."""
    photos = unseen_photos(dataset)
    if not photos:
        raise DatasetError(f"{dataset}: every photo of its pool is in its crops")
    _empty_or_forced(out, force)
    pick = np.random.default_rng(seed).choice(len(photos), min(count, len(photos)), replace=False)
    links = []
    for i in sorted(pick):
        src = Path(photos[i]).resolve()
        dst = out / f"{src.parent.name}__{src.name}"
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        os.symlink(src, dst)
        links.append(dst)
    return links


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="a folder written by `trimesh-decode dataset`")
    ap.add_argument("--count", type=int, default=200, help="how many photos to draw (default 200)")
    ap.add_argument("--seed", type=int, default=1, help="the draw's seed (default 1)")
    ap.add_argument("-o", "--out", required=True, help="the folder of links to write")
    ap.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    args = ap.parse_args(argv)
    if args.count < 1:
        print(f"unseen_photos: --count must be positive, got {args.count}", file=sys.stderr)
        return 2
    try:
        links = link_unseen(args.dataset, Path(args.out), args.count, args.seed, args.force)
    except DatasetError as e:
        print(f"unseen_photos: {e}", file=sys.stderr)
        return 2
    print(f"{len(links)} unseen photos of {args.dataset} linked into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
