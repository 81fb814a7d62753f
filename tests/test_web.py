"""web/: the JavaScript decoders (tri.mjs, neural.mjs) and the Node command against the Python decoders,
through the conformance vectors in web/conformance/ (written by web/make_conformance.py), and the page
web/index.html in headless Chromium, the neural half through onnxruntime-web (npm ci --prefix web)."""

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


def _rgba(tag: str, key: str) -> np.ndarray:
    import base64
    import html
    import re

    raw = base64.b64decode(html.unescape(re.search(rf'{key}="([^"]+)"', tag).group(1)))
    return np.frombuffer(raw, np.uint8).reshape(256, 256, 4)


def test_the_page_replaces_each_preview_by_the_neural_decoding_of_onnxruntime_web(tmp_path):
    """web/index.html with its default model, the shipped mobile_web decoder exported as the web's
    float16 ONNX file: after the plain decodings, every canvas holds onnxruntime-web's neural
    decoding, which is what onnxruntime gives from the same file in Python (within 1 level: wasm
    sums in another order), and the page states the time per preview."""
    import re

    pytest.importorskip("onnxruntime", reason="the onnx extra (pip install -e '.[onnx]') is not installed")
    from launch.check_report import evaluate_served, find_browser
    from trimesh_decode.bitstream import from_bytes
    from trimesh_decode.models import load_model
    from trimesh_decode.onnx_export import OnnxDecoder, export_onnx

    if find_browser() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page was not opened in a browser")
    if not (WEB / "node_modules" / "onnxruntime-web" / "dist").is_dir():
        pytest.skip("onnxruntime-web is not installed (npm ci --prefix web): the neural page was not opened")
    site = tmp_path / "site"  # the page as a site would serve it: web/ and the exported model
    (site / "models").mkdir(parents=True)
    for name in ("index.html", "page.mjs", "tri.mjs", "neural.mjs", "node_modules"):
        (site / name).symlink_to(WEB / name)
    model = export_onnx(load_model("mobile_web"), site / "models" / "mobile_web.onnx", float16=True)
    dom = evaluate_served(site, "index.html?export=1", "document.body.dataset.neural")
    assert 'data-neural="done"' in dom, re.search(r'<p id="neural">(.*?)</p>', dom, re.S).group(1)
    assert float(re.search(r'data-neural-ms="([0-9.]+)"', dom).group(1)) > 0
    assert "ms per preview" in dom
    tags = re.findall(r"<canvas\b[^>]*>", dom)
    names = [re.search(r'data-name="([^"]+)"', t).group(1) for t in tags]
    want = OnnxDecoder(model, threads=1).decode([from_bytes((WEB / "conformance" / n).read_bytes()) for n in names])
    for tag, name, w in zip(tags, names, want):
        shown = _rgba(tag, "data-neural-rgba")
        assert (shown[..., 3] == 255).all()
        assert np.abs(shown[..., :3].astype(int) - w.astype(int)).max() <= 1, name
        assert np.abs(shown[..., :3].astype(int) - _rgba(tag, "data-rgba")[..., :3]).max() > 1, name  # replaced
