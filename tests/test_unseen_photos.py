"""launch/unseen_photos.py and trimesh_decode.dataset.unseen_photos: the photos of a dataset's pool
that none of its crops came from, for choosing a decoder without the test set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launch"))


@pytest.fixture(scope="module")
def one_crop_of_three(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A dataset of one crop drawn from a pool of three photos (a fourth, in skip/, excluded)."""
    import numpy as np
    from PIL import Image

    from trimesh_decode.dataset import build_dataset

    root = tmp_path_factory.mktemp("unseen")
    pool = root / "pool"
    (pool / "skip").mkdir(parents=True)
    photos = [pool / "a.png", pool / "b.png", pool / "c.png"]
    rng = np.random.default_rng(0)
    for p in [*photos, pool / "skip" / "d.png"]:
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(p)
    out = root / "ds"
    build_dataset(pool, out, crops=1, size=256, iterations=20, exclude=["skip"], processes=1, progress=False)
    return out, photos


def test_the_unseen_photos_are_the_pool_less_the_excluded_and_the_crops_sources(one_crop_of_three):
    import json

    from trimesh_decode.dataset import unseen_photos

    ds, photos = one_crop_of_three
    used = {Path(json.loads(line)["source"]).resolve() for line in (ds / "manifest.jsonl").read_text().splitlines()}
    unseen = [Path(p).resolve() for p in unseen_photos(ds)]
    assert len(used) == 1 and len(unseen) == 2
    assert set(unseen) | used == {p.resolve() for p in photos}  # the excluded skip/d.png is in neither


def test_the_script_links_a_seeded_draw_and_refuses_a_full_folder_or_a_non_dataset(one_crop_of_three, tmp_path, capsys):
    import unseen_photos as script

    from trimesh_decode.dataset import unseen_photos

    ds, _ = one_crop_of_three
    out = tmp_path / "val"
    assert script.main([str(ds), "--count", "1", "--seed", "3", "-o", str(out)]) == 0
    links = list(out.iterdir())
    assert len(links) == 1 and links[0].is_symlink()
    assert links[0].resolve() in {Path(p).resolve() for p in unseen_photos(ds)}
    again = tmp_path / "val2"
    assert script.main([str(ds), "--count", "1", "--seed", "3", "-o", str(again)]) == 0
    assert [p.name for p in again.iterdir()] == [links[0].name]  # the draw depends only on the seed
    capsys.readouterr()
    assert script.main([str(ds), "-o", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert script.main([str(ds), "--count", "5", "-o", str(out), "--force"]) == 0
    assert len(list(out.iterdir())) == 2  # all there are
    capsys.readouterr()
    assert script.main([str(tmp_path / "nothing"), "-o", str(tmp_path / "v3")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a dataset folder" in err
    assert not (tmp_path / "v3").exists()
