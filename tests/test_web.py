"""web/: the JavaScript decoder (tri.mjs) and its Node command against the Python decoder, through the
conformance vectors in web/conformance/ (written by web/make_conformance.py)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (apt-get install nodejs): the JavaScript decoder was not run")
    return node


def test_the_conformance_vectors_are_what_the_python_decoder_gives():
    spec = importlib.util.spec_from_file_location("make_conformance", WEB / "make_conformance.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0, "rerun python web/make_conformance.py"


def test_the_javascript_decoder_passes_node_tests_on_every_vector():
    r = subprocess.run([_node(), "--test", str(WEB / "test")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout


def test_tri2ppm_writes_what_the_python_decoder_shows_and_refuses_bad_input(tmp_path):
    from trimesh_decode import raster_cpu
    from trimesh_decode.bitstream import from_bytes

    node = _node()
    src = WEB / "conformance" / "photo_astronaut_200B.tri"
    out = tmp_path / "a.ppm"
    cmd = [node, str(WEB / "tri2ppm.mjs")]
    r = subprocess.run(cmd + [str(src), str(out), "--size", "96"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    header = b"P6\n96 96\n255\n"
    assert raw.startswith(header)
    js = np.frombuffer(raw[len(header) :], np.uint8).reshape(96, 96, 3).astype(int)
    py = raster_cpu.interpolate(from_bytes(src.read_bytes()), 96).astype(int)
    assert np.abs(js - py).max() <= 1
    again = subprocess.run(cmd + [str(src), str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr and len(again.stderr.splitlines()) == 1
    bad = subprocess.run(
        cmd + [str(WEB / "conformance" / "bad_truncated.tri"), str(tmp_path / "b.ppm")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "corrupt preview" in bad.stderr and len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "b.ppm").exists()


def test_the_page_decodes_every_inline_preview_in_chromium_as_the_python_decoder_does():
    """web/index.html served on 127.0.0.1 and opened in headless Chromium: every canvas holds the
    Python decoder's image (within 1 level), and the page states its decoding speed."""
    import base64
    import html
    import re

    from launch.check_report import dump_served, find_browser
    from trimesh_decode import raster_cpu
    from trimesh_decode.bitstream import from_bytes

    if find_browser() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page was not opened in a browser")
    dom = dump_served(WEB, "index.html?export=1")
    assert 'data-ready="yes"' in dom, dom[-2000:]
    rate = float(re.search(r'data-rate="([0-9.]+)"', dom).group(1))
    assert rate > 0 and "previews of 256x256 per second" in dom
    canvases = re.findall(r"<canvas\b[^>]*>", dom)
    assert len(canvases) == 4
    for tag in canvases:
        name = re.search(r'data-name="([^"]+)"', tag).group(1)
        rgba = np.frombuffer(base64.b64decode(html.unescape(re.search(r'data-rgba="([^"]+)"', tag).group(1))), np.uint8)
        shown = rgba.reshape(256, 256, 4)
        want = raster_cpu.interpolate(from_bytes((WEB / "conformance" / name).read_bytes()), 256)
        assert (shown[..., 3] == 255).all()
        assert np.abs(shown[..., :3].astype(int) - want.astype(int)).max() <= 1, name
