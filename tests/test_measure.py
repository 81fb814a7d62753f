"""compat-measure: the command-line convention (exit 2 with one line on bad input, -o, --force)."""

import json

import numpy as np
import pytest
from PIL import Image

from compat import measure as cli


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-10, 11, x.shape), 0, 255).astype(np.uint8)
    Image.fromarray(x).save(tmp_path / "x.png")
    Image.fromarray(y).save(tmp_path / "y.png")
    return tmp_path / "x.png", tmp_path / "y.png", x, y


def test_scores_a_pair_and_writes_json(pair, tmp_path, capsys):
    xp, yp, x, y = pair
    out = tmp_path / "s.json"
    assert cli.main([str(xp), str(yp), "-o", str(out)]) == 0
    scores = json.loads(out.read_text())
    from compat import metrics as M

    assert scores["psnr"] == pytest.approx(float(M.psnr(x, y)), abs=1e-4)
    assert "ms_ssim" not in scores  # 64x80 is below MS-SSIM's minimum size: left out, not an error
    assert scores["lpips_alex"] > 0
    # An existing output is kept unless --force.
    assert cli.main([str(xp), str(yp), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main([str(xp), str(yp), "-o", str(out), "--force"]) == 0


@pytest.mark.parametrize(
    "argv_fn,message",
    [
        (lambda d, x, y: [str(d / "missing.png"), str(y)], "no such file"),
        (lambda d, x, y: [str(x)], "both an original and a distorted"),
        (lambda d, x, y: [str(x), str(d / "notes.png")], "not an image"),
        (lambda d, x, y: [str(x), str(d / "small.png")], "differ in size"),
    ],
)
def test_bad_input_exits_2_with_one_line(pair, tmp_path, capsys, argv_fn, message):
    xp, yp, x, _ = pair
    (tmp_path / "notes.png").write_text("words")
    Image.fromarray(x[:10]).save(tmp_path / "small.png")
    assert cli.main(argv_fn(tmp_path, xp, yp)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    assert "compat-measure original.png decoded.png" in capsys.readouterr().out
