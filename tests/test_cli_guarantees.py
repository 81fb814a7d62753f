"""What every command-line tool promises about its output: no folder taken for a file, no missing
folder created, a non-empty results folder never written into without --force (the committed
results/ among them), files with the umask's permissions, one-line warnings, and one image-size
limit checked before anything is written."""

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(p)
    return p


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_a_folder_given_as_the_output_file_is_refused_even_with_force(png, tmp_path, capsys):
    from jpegedit.cli import main as jpegedit
    from trimesh_decode.cli import main as trimesh

    folder = tmp_path / "dir"
    folder.mkdir()
    assert jpegedit(["encode", str(png), "-o", str(folder), "--force"]) == 2
    _one_line_error(capsys, "is a folder")
    preview = tmp_path / "p.tri"
    assert trimesh(["encode", str(png), "-o", str(preview), "--bytes", "60", "--iterations", "20"]) == 0
    capsys.readouterr()
    assert trimesh(["decode", str(preview), "-o", str(folder), "--force"]) == 2
    _one_line_error(capsys, "is a folder")
    assert list(folder.iterdir()) == []


def test_compat_measure_writes_atomically_and_creates_no_folder(png, tmp_path, capsys):
    from compat.measure import main

    assert main([str(png), str(png), "-o", str(tmp_path / "missing" / "s.json")]) == 2
    _one_line_error(capsys, "does not exist")
    assert not (tmp_path / "missing").exists()
    assert main([str(png), str(png), "-o", str(tmp_path / "s.json")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "s.json"]  # no temporary file left


def test_written_files_follow_the_umask(png, tmp_path):
    from compat.cli import write_atomic
    from compat.images import save_png

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.json", b"{}", force=False)
        save_png(tmp_path / "b.png", np.zeros((2, 2, 3), np.uint8))
        os.umask(0o077)
        write_atomic(tmp_path / "c.tri", b"x", force=False)
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.tri").stat().st_mode & 0o777 == 0o600


def test_the_rgba_warning_is_one_plain_line(tmp_path):
    rgba = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 4), 128, np.uint8)).save(rgba)
    r = subprocess.run(
        [sys.executable, "-m", "jpegedit.cli", "encode", str(rgba), "-o", str(tmp_path / "a.jpg")],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"jpegedit: warning: {rgba}: has an alpha channel; composited on white\n"


def test_evaluate_needs_out_and_never_writes_into_a_non_empty_folder_without_force(tmp_path, capsys):
    from trimesh_decode.cli import main

    with pytest.raises(SystemExit) as e:  # no default folder any more (it was the committed results/previews)
        main(["evaluate", "--images", str(tmp_path)])
    assert e.value.code == 2
    capsys.readouterr()
    out = tmp_path / "res"
    out.mkdir()
    (out / "evaluation.md").write_text("committed")
    assert main(["evaluate", "--images", str(tmp_path), "-o", str(out)]) == 2
    _one_line_error(capsys, "is not empty; pass --force")
    assert (out / "evaluation.md").read_text() == "committed"


def test_no_help_example_writes_into_the_committed_results():
    from jpegedit.cli import EXAMPLE as J
    from launch.demo import EXAMPLE as D
    from trimesh_decode.cli import EXAMPLE as T

    for text in (J, T, D):
        assert "results/" not in text, text


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def test_one_image_limit_refuses_a_claimed_16000_square_before_anything_is_written(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(16000, 16000))
    assert len(bomb.read_bytes()) < 80
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for cmd in (
        ["-m", "jpegedit.cli", "encode", str(bomb), "-o", str(tmp_path / "b.jpg")],
        ["-m", "trimesh_decode.cli", "encode", str(bomb), "-o", str(tmp_path / "b.tri")],
    ):
        r = subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "exceeds the limit" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png"]
    from compat.images import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS <= Image.MAX_IMAGE_PIXELS  # no later Pillow decode can refuse what we accepted


def test_a_folder_that_is_not_a_run_is_refused_by_export_and_evaluation_with_one_line(tmp_path, capsys):
    from jpegedit.evaluate import main as evaluate
    from jpegedit.models import main as export_jpegedit
    from trimesh_decode.models import main as export_decoder

    bad = tmp_path / "bad"
    bad.mkdir()
    out = tmp_path / "out"
    for export in (export_jpegedit, export_decoder):
        assert export(["export", str(tmp_path / "absent"), "m", "--command", "x", "--dir", str(out)]) == 2
        _one_line_error(capsys, "is not a run directory of launch/train.py")
    (bad / "config.json").write_text("{")
    assert export_jpegedit(["export", str(bad), "m", "--command", "x", "--dir", str(out)]) == 2
    _one_line_error(capsys, "config.json cannot be read")
    assert evaluate([str(bad), "--images", str(tmp_path), "-o", str(tmp_path / "e.json")]) == 2
    _one_line_error(capsys, "no images under")
    assert not out.exists() and not (tmp_path / "e.json").exists()
