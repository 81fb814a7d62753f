"""launch/: the real multi-process path (2 processes on localhost, CPU collectives), preemption by
SIGTERM, and the cluster scripts' commands."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compat.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("launch_photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        yy, xx = np.mgrid[0 : 48 + 5 * i, 0:60]
        im = np.stack([(yy * (i + 2)) % 256, (xx * 3) % 256, (yy + xx) % 256], -1) + rng.integers(
            -9, 10, (48 + 5 * i, 60, 3)
        )
        Image.fromarray(np.clip(im, 0, 255).astype(np.uint8)).save(d / f"p{i}.png")
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_"))
    }
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)
    return env


def _train(workdir: Path, photos: Path, env: dict, steps: int = 6, **over) -> subprocess.Popen:
    # the jpegedit smoke config on tiny crops
    arg = f"data.roots={photos},data.crop=32,steps={steps},log_every=1,checkpoint_every=3,async_checkpoints=false"
    arg += (
        ",model.attention=false"  # the learned tables alone: the harness under test, not the VGG16 (test_jpegedit_task)
    )
    arg += "".join(f",{k}={v}" for k, v in over.items())
    cmd = [
        sys.executable,
        str(REPO / "launch" / "train.py"),
        f"--config={REPO}/configs/jpegedit/smoke.py:{arg}",
        f"--workdir={workdir}",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _params(workdir: Path, step: int):
    ck = Checkpointer(workdir / "checkpoints", async_save=False)
    try:
        return ck.read(step)["params"]
    finally:
        ck.close()


def _leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_two_processes_on_localhost_train_like_one_process(tmp_path, photos):
    """jax.distributed on 2 local processes x 4 CPU devices (gloo collectives) vs 1 process x 8
    devices, the same global batch of 8: same parameters after 6 steps; the checkpoints are written
    once and a single process restores them."""
    port = _free_port()
    runs = []
    for pid in range(2):
        env = _env(
            4,
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(pid),
            JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        )
        runs.append(_train(tmp_path / "multi", photos, env))
    single = _train(tmp_path / "single", photos, _env(8))
    outs = [r.communicate(timeout=600)[0] for r in runs + [single]]
    for r, out in zip(runs + [single], outs):
        assert r.returncode == 0, out[-3000:]
    assert "process 0 of 2" in outs[0] and "process 1 of 2" in outs[1]
    steps = sorted(int(p.name) for p in (tmp_path / "multi" / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]
    multi, one = _params(tmp_path / "multi", 6), _params(tmp_path / "single", 6)
    for a, b in zip(_leaves(multi), _leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # one metrics log, written by process 0 only
    lines = (tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4, 5, 6]


def test_sigterm_saves_a_checkpoint_exits_75_and_the_rerun_continues_identically(tmp_path, photos):
    steps = 80  # 25 ms or more each: seconds left when the signal comes after the third
    ref = _train(tmp_path / "ref", photos, _env(8), steps=steps, checkpoint_every=1000)
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:]

    run = _train(tmp_path / "run", photos, _env(8), steps=steps, checkpoint_every=1000)
    log = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert run.poll() is None and time.time() < deadline, "the run ended before it could be preempted"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 75, out[-3000:]
    assert "preempted" in out and "Traceback" not in out
    saved = [int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and 3 <= saved[0] < steps  # the preemption checkpoint; checkpoint_every is 1000

    again = _train(tmp_path / "run", photos, _env(8), steps=steps, checkpoint_every=1000)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    assert f"resumed from step {saved[0]}" in out
    for a, b in zip(_leaves(_params(tmp_path / "run", steps)), _leaves(_params(tmp_path / "ref", steps))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "script", ["launch/slurm.sbatch", "launch/tpu_vm.sh", "launch/local_gpus.sh", "launch/device_paper.sh"]
)
def test_cluster_scripts_are_documented_and_parse(script):
    path = REPO / script
    text = path.read_text()
    assert "launch/train.py" in text
    subprocess.run(["bash", "-n", str(path)], check=True)  # syntax
    guide = (REPO / "docs" / "distributed.md").read_text()
    assert script in guide, f"docs/distributed.md does not show how to run {script}"


def test_demo_writes_a_report_that_chromium_shows_and_refuses_to_overwrite(tmp_path, capsys):
    from launch import check_report, demo

    photos = tmp_path / "photos"
    photos.mkdir()
    yy, xx = np.mgrid[0:96, 0:128]
    im = np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1).astype(np.uint8)
    Image.fromarray(im).save(photos / "ramp.png")
    out = tmp_path / "report"
    assert demo.main(["--images", str(photos), "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    (row,) = report["images"]
    assert row["jpeg"]["learned"]["bytes"] > 0 and row["jpeg"]["libjpeg"]["quality"] >= 1
    assert 150 <= row["preview"]["bytes"] <= 200 and "interpolation" in row["preview"]
    page = (out / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) >= 3 and all((out / s).is_file() for s in srcs)
    # a second run refuses to overwrite; bad input is one line, exit 2
    assert demo.main(["--images", str(photos), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert demo.main(["--images", str(tmp_path / "absent"), "--out", str(tmp_path / "x")]) == 2
    if check_report.find_browser() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page was not opened in a browser")
    n, ok, missing = check_report.check(out / "index.html")
    assert n == len(srcs) and ok == n, missing


def test_sigterm_to_one_of_two_processes_stops_both_at_the_same_step(tmp_path, photos):
    """JAX's preemption service carries the notice to every process; orbax's reached_preemption
    makes them all save at one step and exit 75; the same 2-process command then finishes."""

    def launch(port):
        return [
            _train(
                tmp_path / "mp",
                photos,
                _env(
                    4,
                    JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                    JAX_NUM_PROCESSES="2",
                    JAX_PROCESS_ID=str(pid),
                    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                ),
                steps=60,  # 50 ms or more each (gloo): seconds left when the signal comes after the second
                checkpoint_every=1000,
            )
            for pid in range(2)
        ]

    runs = launch(_free_port())
    log = tmp_path / "mp" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert all(r.poll() is None for r in runs) and time.time() < deadline, "the runs ended before the signal"
        time.sleep(0.05)
    runs[1].send_signal(signal.SIGTERM)  # only the second process hears it
    outs = [r.communicate(timeout=300)[0] for r in runs]
    assert [r.returncode for r in runs] == [75, 75], outs[0][-2000:] + outs[1][-2000:]
    saved = [int(p.name) for p in (tmp_path / "mp" / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and 2 <= saved[0] < 60
    again = launch(_free_port())
    outs = [r.communicate(timeout=600)[0] for r in again]
    assert [r.returncode for r in again] == [0, 0], outs[0][-2000:]
    assert f"resumed from step {saved[0]}" in outs[0]


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").glob("*/*.py")))
def test_every_config_builds_and_its_docstring_gives_the_launch_command_and_the_expectation(path):
    """Each config file's ``get_config()`` builds a config of its package, and its docstring says how
    to launch it (launch/train.py) and what to expect."""
    import ast

    from compat.config import config_module

    text = (REPO / path).read_text()
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "launch/train.py" in doc and "expected" in doc.lower(), (
        f"{path}: docstring lacks the launch command or the expectation"
    )
    c = config_module(REPO / path).get_config()
    assert c.package == Path(path).parent.name and c.steps > 0 and c.batch_size > 0


def test_the_mobile_stages_are_configs_each_starting_from_the_run_before():
    from compat.config import ConfigError, config_module

    mod = config_module(REPO / "configs" / "trimesh_decode" / "mobile_scaled.py")
    inits = {n: mod.get_config(f"stage={n}").model.init for n in mod.STAGES}
    assert mod.get_config().to_dict() == mod.get_config("stage=2").to_dict()
    assert Path(inits[3]).name == "trimesh_mobile_scaled" and Path(inits[6]).name == "trimesh_mobile_scaled4"
    six = mod.get_config("stage=6,optim.lr=0.001")
    assert (six.steps, six.optim.decay_steps, six.data.crop, six.data.dihedral, six.optim.lr) == (
        600,
        600,
        256,
        True,
        1e-3,
    )
    with pytest.raises(ConfigError, match="stage=7: the stages are 2, 3, 4, 5, 6"):
        mod.get_config("stage=7")


@pytest.mark.parametrize(
    "mistake, says",
    [
        (":stpes=10", "config has no field 'stpes'"),
        (":steps=ten", "steps='ten': expected int"),
        (":loss.rate=bitz", "loss.rate='bitz': expected one of 'paper', 'bits'"),
        (":steps=-5", "steps=-5: expected at least 1"),
        (" --config.data.crop=12", "data.crop=12: expected a multiple of 8"),
        (":batch_size=12", "batch_size=12: global batch 12 does not split over 8 devices"),
        ("-is-a-file", "exists and is not a directory"),
    ],
)
def test_config_mistakes_exit_2_with_one_line_and_create_nothing(tmp_path, mistake, says):
    workdir = tmp_path / "run"
    if mistake == "-is-a-file":
        workdir.write_text("not a folder")
        mistake = ""
    config, *extra = f"{REPO}/configs/jpegedit/smoke.py{mistake}".split(" ")
    cmd = [sys.executable, str(REPO / "launch" / "train.py"), f"--config={config}", f"--workdir={workdir}", *extra]
    r = subprocess.run(cmd, env=_env(8), capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error: ") and says in lines[0], r.stderr
    assert workdir.is_file() or not workdir.exists()
