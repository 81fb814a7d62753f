"""benchmarks/preview_encoder_history.py: the verdict it draws from the two encoders' rows, and the
earlier tree it exports (the timed runs themselves are the benchmark's, not a test's)."""

import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import preview_encoder_history as history  # noqa: E402


def _row(iterations, psnr, seconds, default=False):
    return {
        "iterations": iterations,
        "default": default,
        "psnr_mean": float(sum(psnr) / len(psnr)),
        "seconds_median_one_core": seconds,
        "psnr": psnr,
    }


def test_the_verdict_compares_the_default_with_the_past_codes_largest_iteration_count():
    past = [_row(3000, [19.0, 20.0], 0.5, default=True), _row(30000, [20.0, 21.0], 5.0)]
    now = [_row(3000, [19.8, 21.0], 0.1), _row(16000, [20.5, 21.1], 0.4, default=True), _row(30000, [21, 22], 0.8)]
    v = history.verdict(past, now)
    assert v["past"] == {"iterations": 30000, "psnr_mean": 20.5, "seconds": 5.0}
    assert v["default"]["iterations"] == 16000
    assert v["default_minus_past_db"] == pytest.approx(0.3)
    assert v["default_better_on"] == 2
    assert v["speedup_default"] == 12.5
    # 3000 iterations now (20.4 dB) fall short of 20.5; the default is the cheapest that reaches it
    assert v["cheapest_at_past_quality"] == {"iterations": 16000, "seconds": 0.4, "speedup": 12.5}
    assert v["goal_met"]


def test_the_verdict_fails_a_default_that_is_slower_than_the_goal_or_worse_than_the_past():
    past = [_row(30000, [20.0, 21.0], 5.0)]
    assert not history.verdict(past, [_row(16000, [20.5, 21.0], 0.6, default=True)])["goal_met"]
    worse = history.verdict(past, [_row(16000, [20.4, 20.5], 0.3, default=True)])
    assert not worse["goal_met"] and worse["cheapest_at_past_quality"] is None


def test_the_earlier_tree_is_exported_with_both_packages(tmp_path):
    sha = history._export("HEAD", tmp_path / "past")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert sha == head
    assert (tmp_path / "past" / "trimesh_decode" / "encoder.py").is_file()
    assert (tmp_path / "past" / "compat" / "images.py").is_file()
    assert not (tmp_path / "past" / "jpegedit").exists()
