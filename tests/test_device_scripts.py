"""launch/device_kit.sh and launch/device_paper.sh: pack here, train on a lent machine, return the weights."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_device_script_unpacks_trains_and_returns_the_exported_weights_in_pieces(tiny_dataset, tmp_path):
    """launch/device_paper.sh (what a lent accelerator runs) on a packed dataset: it cuts the crops,
    trains at a constant rate until phase 1's time is up (SIGTERM, a checkpoint), decays from those
    weights, exports, and leaves the weights in pieces that join into a model the decoder loads."""
    import os
    import subprocess
    import sys

    from trimesh_decode.cli import main
    from trimesh_decode.models import load_model

    kit = tmp_path / "kit"
    assert main(["pack", str(tiny_dataset), "-o", str(kit / "previews")]) == 0
    out = tmp_path / "out"
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        KIT=str(kit),
        WHEELS="",
        PREVIEWS=str(tmp_path / "previews"),
        RUN=str(tmp_path / "run"),
        OUT=str(out),
        EXPORT=str(tmp_path / "export"),
        MINUTES="5",
        P1_SECONDS="6",  # start-up is held: the first step is saved whatever the limit
        P1_GRACE="400",  # a loaded CI machine compiles and saves that first step slowly
        STEPS2="3",
        WORKERS="0",
        EXTRA=",model.width=16,model.stacks=1,model.depth=2,batch_size=8,checkpoint_every=1,log_every=1,optim.warmup=1,data.crop=64",
    )
    r = subprocess.run(
        ["bash", str(REPO / "launch" / "device_paper.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "8 crops cut from 2 photos" in r.stdout
    assert "phase 1: exit status 75" in r.stdout and "phase 2: exit status 0" in r.stdout
    parts = sorted(out.glob("paper_gpu.npz.part*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    joined = tmp_path / "paper_gpu.npz"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    (tmp_path / "paper_gpu.json").write_bytes((out / "paper_gpu.json").read_bytes())
    decoder = load_model(joined)  # checks the sha256 the json records
    meta = json.loads((out / "paper_gpu.json").read_text())
    assert meta["step"] == 3 and meta["config"]["model"]["init"] == str(tmp_path / "run")
    assert meta["config"]["optim"]["decay_steps"] == 3
    preview = (tiny_dataset / "previews" / "000000.tri").read_bytes()
    from trimesh_decode.bitstream import from_bytes

    assert decoder.decode([from_bytes(preview)]).shape == (1, 256, 256, 3)
