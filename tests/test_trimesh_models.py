"""The shipped neural decoders: each loads against its sha256, says how it was made and how it scored,
and decodes through the command line by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.mark.parametrize("name", ["mobile", "mobile_perceptual", "mobile_photos126", "mobile_web"])
def test_each_shipped_decoder_records_its_command_config_and_held_out_evaluation(name):
    from trimesh_decode.models import list_models, load_model
    from trimesh_decode.settings import upgrade_config

    assert name in list_models()
    decoder = load_model(name)  # checks the .npz against the sha256 in its .json
    meta = decoder.meta
    assert "launch/train.py --config configs/trimesh_decode/" in meta["command"]
    ev = meta["evaluation"]
    for where in ("kodak", "nips17_dev"):
        summary = ev[where]
        assert summary["images"] >= 24 and summary["mean"]["interp"]["psnr"] > 15
        assert "trimesh-decode evaluate" in ev[f"{where}_command"]
    config = upgrade_config(meta["config"])  # a model from before the perceptual term trained on MSE alone
    assert (config["loss"]["lpips"] > 0) == (name == "mobile_perceptual")


def test_the_perceptual_decoder_decodes_a_preview_by_name_and_differs_from_the_default(tmp_path, capsys):
    from trimesh_decode.cli import main

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    img = np.stack([xx * 2, yy * 2, (xx + yy)], -1) + rng.normal(0, 6, (96, 128, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), "-o", str(tmp_path / "p.tri"), "--iterations", "200"]) == 0
    outs = {}
    for name in ("mobile", "mobile_perceptual"):
        out = tmp_path / f"{name}.png"
        assert main(["decode", str(tmp_path / "p.tri"), "-o", str(out), "--decoder", "neural", "--model", name]) == 0
        outs[name] = np.asarray(Image.open(out), np.float32)
    assert outs["mobile"].shape == outs["mobile_perceptual"].shape and outs["mobile"].shape[-1] == 3
    assert np.abs(outs["mobile"] - outs["mobile_perceptual"]).mean() > 0.1
    capsys.readouterr()
