"""trimesh_decode.dataset under hostile kits and interruptions: `unpack` refuses a crafted manifest
before writing anything; the builder survives a torn manifest line, takes its workers down with
it, and allows one builder per folder."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trimesh_decode.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit")
    photos = root / "photos"
    photos.mkdir()
    yy, xx = np.mgrid[0:200, 0:240]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)).save(photos / "a.png")
    assert (
        main(
            [
                "dataset",
                "--images",
                str(photos),
                "--out",
                str(root / "ds"),
                "--crops",
                "2",
                "--size",
                "64",
                "--iterations",
                "10",
                "--processes",
                "1",
            ]
        )
        == 0
    )
    assert main(["pack", str(root / "ds"), "-o", str(root / "kit")]) == 0
    return root / "kit"


def _crafted(kit: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(kit, bad)
    lines = [json.loads(x) for x in (bad / "manifest.jsonl").read_text().splitlines()]
    settings = json.loads((bad / "dataset.json").read_text())
    edit(lines[0], settings)
    (bad / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (bad / "dataset.json").write_text(json.dumps(settings))
    return bad


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda r, s: r.update(crop="../../escaped.png"), "not one plain file name under crops/"),
        (lambda r, s: r.update(preview="/tmp/abs.tri"), "not one plain file name under previews/"),
        (lambda r, s: r.update(crop="crops/sub/x.png"), "not one plain file name"),
        (lambda r, s: r.update(source="/etc/hostname"), "not a photo inside the kit"),
        (lambda r, s: r.update(source="../outside.jpg"), "not a photo inside the kit"),
        (lambda r, s: r.update(scale=200.0), "scale 200.0"),
        (lambda r, s: s.update(size=30000), "size 30000 is not a crop side"),
        (lambda r, s: r.update(box=[190, 150, 64, 64]), "does not fit"),
        (lambda r, s: r.update(box=[0, 0, 64]), "is not a square"),
        (lambda r, s: r.update(preview_bytes="!!not base64"), "not base64"),
        (lambda r, s: r.update(index=-3), "index -3"),
    ],
)
def test_a_crafted_kit_is_refused_with_one_line_before_anything_is_written(kit, tmp_path, capsys, edit, says):
    bad = _crafted(kit, tmp_path, edit)
    out = tmp_path / "out"
    assert main(["unpack", str(bad), "-o", str(out), "--processes", "1"]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "escaped.png").exists()


def test_a_kit_photo_linked_from_outside_is_refused(kit, tmp_path, capsys):
    outside = tmp_path / "secret.jpg"
    shutil.copy(next((kit / "photos").rglob("*.jpg")), outside)
    bad = _crafted(kit, tmp_path, lambda r, s: r.update(source="photos/link.jpg"))
    (bad / "photos" / "link.jpg").symlink_to(outside)
    assert main(["unpack", str(bad), "-o", str(tmp_path / "out")]) == 2
    assert "not a photo inside the kit" in capsys.readouterr().err


def test_force_does_not_write_through_a_linked_crops_folder(kit, tmp_path, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "crops").symlink_to(elsewhere)
    assert main(["unpack", str(kit), "-o", str(out), "--force", "--processes", "1"]) == 2
    assert "is a link or a file" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
    shutil.rmtree(out)
    assert main(["unpack", str(kit), "-o", str(out), "--processes", "1"]) == 0  # the kit itself is fine


def _photos(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_a_torn_last_manifest_line_is_dropped_on_resume_and_one_rerun_finishes(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "ds"
    args = [
        "dataset",
        "--images",
        str(photos),
        "--out",
        str(out),
        "--size",
        "64",
        "--iterations",
        "10",
        "--processes",
        "1",
    ]
    assert main([*args, "--crops", "2"]) == 0
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed while writing crop 1's line
    capsys.readouterr()
    assert main([*args, "--crops", "3"]) == 0
    assert "3 of 3 crops" in capsys.readouterr().out
    recs = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert sorted(r["index"] for r in recs) == [0, 1, 2]


def test_two_builders_on_one_folder_the_second_is_refused(tmp_path, capsys):
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "ds"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from compat.locks import FolderLock; "
            "l = FolderLock(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (
            main(
                [
                    "dataset",
                    "--images",
                    str(photos),
                    "--out",
                    str(out),
                    "--crops",
                    "2",
                    "--size",
                    "64",
                    "--iterations",
                    "10",
                    "--processes",
                    "1",
                ]
            )
            == 2
        )
        assert f"in use by another dataset builder (pid {holder.pid})" in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_builder_takes_its_workers_with_it(tmp_path):
    photos = _photos(tmp_path / "photos", 4)
    out = tmp_path / "ds"
    cmd = [
        sys.executable,
        "-m",
        "trimesh_decode.cli",
        "dataset",
        "--images",
        str(photos),
        "--out",
        str(out),
        "--crops",
        "40",
        "--size",
        "64",
        "--iterations",
        "400000",
        "--processes",
        "2",
    ]
    builder = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120

    def workers() -> list[int]:
        """The pool's worker processes (not multiprocessing's resource tracker, which runs no jobs)."""
        found = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                    cmdline = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == builder.pid and b"spawn_main" in cmdline:
                    found.append(int(d.name))
        return found

    def cpu_seconds(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    while len(workers()) < 2:  # the spawned pool is up
        assert builder.poll() is None and time.time() < deadline
        time.sleep(0.1)
    kids = workers()
    # Past their imports and initialiser, into a long encode: import takes about 1 s of CPU, one
    # 400000-iteration encode minutes. (A worker killed earlier still exits: its initialiser sees
    # the parent gone; but that would not test the kernel's PDEATHSIG.)
    while min(cpu_seconds(k) for k in kids) < 4.0:
        assert builder.poll() is None and time.time() < deadline
        time.sleep(0.1)
    builder.send_signal(signal.SIGKILL)
    builder.wait()
    t = time.time()
    while any(os.path.exists(f"/proc/{k}") and "zombie" not in _state(k) for k in kids):
        assert time.time() - t < 3, "the workers outlived the builder"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"
