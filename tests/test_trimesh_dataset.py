"""trimesh_decode.dataset: crops of random scale, pack and unpack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def test_scaled_crops_are_resized_windows_and_an_old_folder_keeps_its_settings(tmp_path):
    """--max-scale cuts squares larger than the crop (in the photo's pixels) and resizes them down;
    a folder built before the setting existed continues with its default, another value is refused."""
    from trimesh_decode.dataset import DatasetError, build_dataset, read_manifest

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (600, 700, 3), dtype=np.uint8)).save(photos / "big.png")
    out = tmp_path / "scaled"
    build_dataset(photos, out, crops=6, size=64, iterations=20, max_scale=4.0, processes=1, progress=False)
    recs = read_manifest(out)
    assert len(recs) == 6
    for r in recs.values():
        x, y, w, h = r["box"]
        assert w == h and 64 <= w <= 256 and x + w <= 700 and y + h <= 600
        assert r["scale"] == pytest.approx(64 / w)
        assert np.asarray(Image.open(out / r["crop"])).shape == (64, 64, 3)
    assert len({r["box"][2] for r in recs.values()}) > 1  # random sides
    with pytest.raises(DatasetError, match="max_scale"):
        build_dataset(photos, out, crops=6, size=64, iterations=20, max_scale=2.0, processes=1, progress=False)
    with pytest.raises(DatasetError, match="max-scale"):
        build_dataset(photos, tmp_path / "x", crops=1, size=64, max_scale=0.5, processes=1, progress=False)

    native = tmp_path / "native"
    build_dataset(photos, native, crops=2, size=64, iterations=20, processes=1, progress=False)
    meta = json.loads((native / "dataset.json").read_text())
    del meta["max_scale"]  # as written before the option existed
    (native / "dataset.json").write_text(json.dumps(meta))
    assert "3 of 3 crops encoded (2 were already there)" in build_dataset(
        photos, native, crops=3, size=64, iterations=20, processes=1, progress=False
    )
    assert all(r["box"][2] == 64 and r["scale"] == 1.0 for r in read_manifest(native).values())


def test_pack_then_unpack_gives_the_same_previews_and_crops_within_the_jpeg_error(tmp_path, capsys):
    """`pack` keeps each photo once (JPEG) and every preview, without crops; `unpack` cuts the crops
    again - resized windows and crops of photos enlarged to hold one - from the packed photos."""
    from trimesh_decode.cli import main
    from trimesh_decode.dataset import read_manifest

    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    yy, xx = np.mgrid[0:300, 0:340]
    smooth = np.stack([xx % 256, (yy * 3 // 4) % 256, ((xx + yy) // 3) % 256], -1).astype(np.uint8)
    Image.fromarray(smooth).save(photos / "big.png")
    Image.fromarray(smooth[:50, :60]).save(photos / "small.png")  # enlarged to hold a 64 crop
    ds = tmp_path / "ds"
    assert (
        main(
            [
                "dataset",
                "--images",
                str(tmp_path / "photos"),
                "--out",
                str(ds),
                "--crops",
                "6",
                "--size",
                "64",
                "--iterations",
                "20",
                "--max-scale",
                "3",
                "--processes",
                "1",
            ]
        )
        == 0
    )
    recs = read_manifest(ds)
    assert {r["scale"] > 1 for r in recs.values()} == {True, False}  # both kinds of crop
    kit, back = tmp_path / "kit", tmp_path / "back"
    assert main(["pack", str(ds), "-o", str(kit)]) == 0
    assert sorted(p.relative_to(kit).as_posix() for p in (kit / "photos").rglob("*.jpg")) == [
        "photos/sub/big.jpg",
        "photos/sub/small.jpg",
    ]
    assert not (kit / "crops").exists() and not (kit / "previews").exists()  # previews ride in the manifest
    assert main(["pack", str(ds), "-o", str(kit)]) == 2  # no overwrite without --force
    assert "not empty; pass --force" in capsys.readouterr().err
    assert main(["unpack", str(kit), "-o", str(back), "--processes", "1"]) == 0
    again = read_manifest(back)
    assert sorted(again) == sorted(recs)
    for i, r in recs.items():
        assert (back / again[i]["preview"]).read_bytes() == (ds / r["preview"]).read_bytes()
        a = np.asarray(Image.open(ds / r["crop"]), np.float64)
        b = np.asarray(Image.open(back / again[i]["crop"]), np.float64)
        assert a.shape == b.shape == (64, 64, 3)
        assert 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12)) > 35  # only the JPEG's error
    assert main(["unpack", str(ds), "-o", str(tmp_path / "x")]) == 2  # an unpacked folder is no pack
    assert "is not a packed dataset" in capsys.readouterr().err
    (kit / "photos" / "sub" / "small.jpg").unlink()
    assert main(["unpack", str(kit), "-o", str(tmp_path / "y")]) == 2
    assert "lacks 1 of its photos, e.g. photos/sub/small.jpg" in capsys.readouterr().err


def test_several_folders_an_excluded_test_set_and_a_range_of_encoder_strengths(tmp_path, capsys):
    """--images twice takes both folders' photos, --exclude keeps a subfolder (the ImageNet-domain test
    set) out of every crop, --iterations LO:HI gives each crop its own budget (in the manifest, within
    the range), and the pack keeps the two folders apart; a pattern matching nothing and LO > HI are
    refused in one line with nothing written."""
    from trimesh_decode.cli import main
    from trimesh_decode.dataset import read_manifest

    rng = np.random.default_rng(2)
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, names in ((a / "train", ["x.png", "y.png"]), (a / "nips17_dev", ["t.png"]), (b, ["x.png"])):
        folder.mkdir(parents=True)
        for n in names:
            Image.fromarray(rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)).save(folder / n)
    ds = tmp_path / "ds"
    common = ["--crops", "12", "--size", "64", "--processes", "1"]
    args = ["dataset", "--images", str(a), "--exclude", "nips17_dev", "--images", str(b), "-o", str(ds)]
    assert main([*args, *common, "--iterations", "5:50"]) == 0
    recs = read_manifest(ds)
    assert len(recs) == 12
    sources = {Path(r["source"]).relative_to(tmp_path).as_posix() for r in recs.values()}
    assert sources <= {"a/train/x.png", "a/train/y.png", "b/x.png"} and "b/x.png" in sources
    its = [r["iterations"] for r in recs.values()]
    assert all(5 <= i <= 50 for i in its) and len(set(its)) > 3
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["exclude"] == ["nips17_dev"] and meta["iterations"] == [5, 50] and meta["files"] == 3
    assert main([*args, *common, "--iterations", "5:60"]) == 2  # another range: another folder
    assert "other settings" in capsys.readouterr().err
    kit = tmp_path / "kit"
    assert main(["pack", str(ds), "-o", str(kit)]) == 0
    capsys.readouterr()
    packed = {p.relative_to(kit / "photos").as_posix() for p in (kit / "photos").rglob("*.jpg")}
    assert packed <= {"0_a/train/x.jpg", "0_a/train/y.jpg", "1_b/x.jpg"} and "1_b/x.jpg" in packed

    for bad, message in (
        (["--exclude", "nips17_dv"], "--exclude 'nips17_dv' matches no image under"),
        (["--iterations", "50:5"], "LO <= HI"),
    ):
        fresh = tmp_path / "fresh"
        try:
            status = main(["dataset", "--images", str(a), "-o", str(fresh), *common, *bad])
        except SystemExit as e:  # argparse's own refusal (usage line + error line)
            status = e.code
        assert status == 2
        err = capsys.readouterr().err
        assert message in err.splitlines()[-1] and not fresh.exists()
