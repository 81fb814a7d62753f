"""trimesh_decode.onnx_export: the neural decoder as an ONNX model, run by onnxruntime, against JAX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install -e '.[onnx]') is not installed")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_the_shipped_decoder_exported_to_onnx_decodes_as_the_jax_decoder(tmp_path):
    import onnx

    from trimesh_decode.bitstream import from_bytes
    from trimesh_decode.models import load_model
    from trimesh_decode.onnx_export import OPSET, OnnxDecoder, export_onnx

    decoder = load_model("mobile")
    path = export_onnx(decoder, tmp_path / "mobile.onnx")
    model = onnx.load(path)
    assert model.opset_import[0].version == OPSET
    assert [i.name for i in model.graph.input] == ["channels"] and [o.name for o in model.graph.output] == ["image"]
    names = ["photo_astronaut_200B.tri", "photo_chelsea_400B.tri", "photo_rocket_24B.tri"]
    previews = [from_bytes((REPO / "web" / "conformance" / n).read_bytes()) for n in names]
    ours = OnnxDecoder(path, threads=1).decode(previews)
    jax_images = decoder.decode(previews)
    assert ours.shape == jax_images.shape == (3, 256, 256, 3) and ours.dtype == np.uint8
    assert _psnr(ours, jax_images) >= 50.0
    assert model.ir_version == 8  # what onnxruntime-web reads
    # the web's file: float16 weights (half the bytes), float32 arithmetic
    half = export_onnx(decoder, tmp_path / "mobile16.onnx", float16=True)
    assert half.stat().st_size < 0.55 * path.stat().st_size
    assert _psnr(OnnxDecoder(half, threads=1).decode(previews), jax_images) >= 50.0


def test_an_image_output_model_with_fewer_channels_exports_the_same_function(tmp_path):
    """The paper's output (tanh mapped to [0, 1]) and the no-interpolation ablation: a random
    network, so every layer's weights and statistics matter."""
    import jax

    from trimesh_decode.bitstream import from_bytes
    from trimesh_decode.hourglass import StackedHourglass
    from trimesh_decode.models import NeuralDecoder
    from trimesh_decode.onnx_export import OnnxDecoder, export_onnx

    settings = {"width": 16, "stacks": 2, "depth": 2, "channels": "no_interp", "output": "image"}
    m = StackedHourglass(width=16, stacks=2, depth=2, output="image")
    v = jax.jit(lambda r: m.init(r, np.zeros((1, 256, 256, 5), np.float32)))(jax.random.key(0))
    rng = np.random.default_rng(0)
    v = jax.tree.map(lambda a: np.asarray(a) + 0.05 * rng.standard_normal(a.shape).astype(np.float32), v)
    v["batch_stats"] = jax.tree.map(lambda a: np.abs(a) + 0.5, v["batch_stats"])
    decoder = NeuralDecoder("random", {"params": v["params"], "batch_stats": v["batch_stats"]}, settings, {})
    previews = [from_bytes((REPO / "web" / "conformance" / "photo_coffee_60B.tri").read_bytes())]
    ours = OnnxDecoder(export_onnx(decoder, tmp_path / "r.onnx")).decode(previews)
    assert _psnr(ours, decoder.decode(previews)) >= 50.0


def test_export_onnx_and_decode_with_the_onnx_backend_from_the_command_line(tmp_path, capsys):
    from PIL import Image

    from trimesh_decode.cli import main as trimesh
    from trimesh_decode.models import main as models

    onnx_file = tmp_path / "mobile.onnx"
    assert models(["export-onnx", "mobile", "-o", str(onnx_file)]) == 0
    assert "opset 17" in capsys.readouterr().out
    assert models(["export-onnx", "mobile", "-o", str(onnx_file)]) == 2  # no overwrite without --force
    assert "--force" in capsys.readouterr().err
    assert models(["export-onnx", "no_such_model", "-o", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists() and len(capsys.readouterr().err.strip().splitlines()) == 1
    tri = str(REPO / "web" / "conformance" / "photo_chelsea_400B.tri")
    outs = {}
    for name, extra in (("onnx", ["--backend", "onnx", "--model", str(onnx_file)]), ("jax", [])):
        out = tmp_path / f"{name}.png"
        assert trimesh(["decode", tri, "-o", str(out), "--decoder", "neural", *extra]) == 0
        outs[name] = np.asarray(Image.open(out))
    assert "onnxruntime" in capsys.readouterr().out
    assert _psnr(outs["onnx"], outs["jax"]) >= 50.0
    # averaged over the 8 symmetries of the square: the same average on both back ends
    for name, extra in (("onnx8", ["--backend", "onnx", "--model", str(onnx_file)]), ("jax8", [])):
        out = tmp_path / f"{name}.png"
        assert trimesh(["decode", tri, "-o", str(out), "--decoder", "neural", "--symmetries", "8", *extra]) == 0
        outs[name] = np.asarray(Image.open(out))
    assert "mobile_x8 (onnxruntime)" in capsys.readouterr().out
    assert _psnr(outs["onnx8"], outs["jax8"]) >= 50.0
    assert _psnr(outs["onnx8"], outs["onnx"]) < 50.0  # the average is not the single decoding
    # the correction scaled by --gain: the same on both back ends
    for name, extra in (("onnxg", ["--backend", "onnx", "--model", str(onnx_file)]), ("jaxg", [])):
        out = tmp_path / f"{name}.png"
        assert trimesh(["decode", tri, "-o", str(out), "--decoder", "neural", "--gain", "1.5", *extra]) == 0
        outs[name] = np.asarray(Image.open(out))
    assert "mobile_g1.5 (onnxruntime)" in capsys.readouterr().out
    assert _psnr(outs["onnxg"], outs["jaxg"]) >= 50.0 and _psnr(outs["onnxg"], outs["onnx"]) < 50.0
    assert trimesh(["decode", tri, "-o", str(tmp_path / "c.png"), "--backend", "onnx"]) == 2
    assert "--backend is for --decoder neural" in capsys.readouterr().err
