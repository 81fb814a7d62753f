"""`jpegedit encode`: ordinary JPEG files with libjpeg's coefficients, and the CLI convention."""

import subprocess
import sys

import numpy as np
import pytest
from jpeg_helpers import photos, pillow_jpeg
from PIL import Image

from jpegedit import cli, codec, encoder, jpegfile, scoring


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(photos()["chelsea"]).save(path)
    return path


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_encode_writes_the_coefficients_and_bytes_libjpeg_writes(png, tmp_path, capsys, chroma):
    out = tmp_path / "out.jpg"
    assert cli.main(["encode", str(png), "-o", str(out), "--quality", "35", "--chroma", chroma]) == 0
    ref = pillow_jpeg(photos()["chelsea"], 35, chroma)
    ours, qt = jpegfile.read_coefficients(out.read_bytes())
    theirs, qt_ref = jpegfile.read_coefficients(ref)
    np.testing.assert_array_equal(qt, qt_ref)
    for a, b in zip(ours.components, theirs.components):
        np.testing.assert_array_equal(a, b)
    assert out.stat().st_size == len(ref)
    assert "libjpeg-turbo writes the same coefficients: yes" in capsys.readouterr().out


def test_encode_optimize_and_grayscale(png, tmp_path):
    plain, opt, gray = tmp_path / "p.jpg", tmp_path / "o.jpg", tmp_path / "g.jpg"
    assert cli.main(["encode", str(png), "-o", str(plain)]) == 0
    assert cli.main(["encode", str(png), "-o", str(opt), "--optimize"]) == 0
    assert cli.main(["encode", str(png), "-o", str(gray), "--grayscale"]) == 0
    assert opt.stat().st_size < plain.stat().st_size
    assert np.array_equal(np.asarray(Image.open(opt)), np.asarray(Image.open(plain)))
    assert Image.open(gray).mode == "L"


def test_encode_without_input_uses_the_embedded_photo(tmp_path, capsys):
    out = tmp_path / "a.jpg"
    assert cli.main(["encode", "-o", str(out), "-q", "50"]) == 0
    assert Image.open(out).size == (512, 512)
    assert "embedded photo" in capsys.readouterr().out


def test_encode_refuses_to_overwrite_without_force(png, tmp_path, capsys):
    out = tmp_path / "out.jpg"
    out.write_bytes(b"precious")
    assert cli.main(["encode", str(png), "-o", str(out)]) == 2
    assert out.read_bytes() == b"precious"
    assert "--force" in capsys.readouterr().err
    assert cli.main(["encode", str(png), "-o", str(out), "--force"]) == 0
    assert out.read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    "args, message",
    [
        (["encode", "{missing}", "-o", "{out}"], "no such file"),
        (["encode", "{text}", "-o", "{out}"], "not an image"),
        (["encode", "{png}", "-o", "{out}", "--quality", "0"], "1..100"),
        (["encode", "{png}", "-o", "{out}", "--chroma", "422"], "invalid choice"),
        (["encode", "{png}", "-o", "{nodir}"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(png, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not an image")
    paths = {
        "missing": tmp_path / "nope.png",
        "text": tmp_path / "notes.txt",
        "png": png,
        "out": tmp_path / "o.jpg",
        "nodir": tmp_path / "no" / "o.jpg",
    }
    argv = [a.format(**paths) for a in args]
    r = subprocess.run([sys.executable, "-m", "jpegedit.cli", *argv], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "o.jpg").exists()


def test_help_shows_an_example():
    r = subprocess.run([sys.executable, "-m", "jpegedit.cli", "encode", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "jpegedit encode photo.png -o photo.jpg" in r.stdout


def test_quality_table_of_the_file_is_the_ijg_table(png, tmp_path):
    out = tmp_path / "o.jpg"
    assert cli.main(["encode", str(png), "-o", str(out), "-q", "88"]) == 0
    _, qt = jpegfile.read_coefficients(out.read_bytes())
    np.testing.assert_array_equal(qt, codec.quality_to_tables(88))


@pytest.mark.parametrize("name", ["qtables_lam0.01", "attention_lam0.01"])
def test_encode_with_a_shipped_learned_model_writes_a_standard_jpeg(png, tmp_path, capsys, name):
    from jpegedit.models import load_model

    model = load_model(name)
    out = tmp_path / "m.jpg"
    assert cli.main(["encode", str(png), "-o", str(out), "--model", name]) == 0
    co, qt = jpegfile.read_coefficients(out.read_bytes())
    np.testing.assert_array_equal(qt, model.tables)  # the learned tables are in the file
    assert np.asarray(Image.open(out)).shape == photos()["chelsea"].shape  # any decoder reads it
    assert f"learned model {name}" in capsys.readouterr().out
    assert (
        model.meta["command"].startswith("python launch/train.py")
        and model.meta["config"]["loss"]["lam"] == model.lam == 0.01
    )


def test_a_learned_model_refuses_quality_chroma_and_altered_files(png, tmp_path):
    import shutil

    from jpegedit.models import MODELS_DIR, load_model

    assert cli.main(["encode", str(png), "-o", str(tmp_path / "a.jpg"), "--model", "qtables_lam0.01", "-q", "50"]) == 2
    assert (
        cli.main(["encode", str(png), "-o", str(tmp_path / "a.jpg"), "--model", "qtables_lam0.01", "--chroma", "420"])
        == 2
    )
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "a.jpg"), "--model", "no_such_model"]) == 2
    bad = tmp_path / "qtables_lam0.01.npz"
    shutil.copy(MODELS_DIR / "qtables_lam0.01.json", tmp_path / "qtables_lam0.01.json")
    data = bytearray((MODELS_DIR / "qtables_lam0.01.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_model(str(bad))


def test_lambda_and_target_bpp_pick_a_shipped_model_and_files_are_progressive_by_default(png, tmp_path, capsys):
    prog, opt, std = tmp_path / "prog.jpg", tmp_path / "o.jpg", tmp_path / "s.jpg"
    assert cli.main(["encode", str(png), "-o", str(prog), "--lambda", "0.001"]) == 0
    out = capsys.readouterr().out
    # the attention model of that lambda, bits family, on the default (Lite0) backbone
    assert "attention_lite0_lam0.001" in out and "progressive" in out
    vgg = tmp_path / "vgg.jpg"
    assert cli.main(["encode", str(png), "-o", str(vgg), "--lambda", "0.001", "--backbone", "vgg16"]) == 0
    assert "attention_bits_lam0.001" in capsys.readouterr().out  # the paper's VGG16 family
    with pytest.raises(SystemExit) as e:  # argparse's choices: exit 2, one line
        cli.main(["encode", str(png), "-o", str(tmp_path / "v.jpg"), "--lambda", "0.001", "--backbone", "x"])
    assert e.value.code == 2 and "invalid choice: 'x'" in capsys.readouterr().err
    assert b"\xff\xc2" in prog.read_bytes()[:1000]  # SOF2
    assert cli.main(["encode", str(png), "-o", str(opt), "--lambda", "0.001", "--baseline"]) == 0
    assert "baseline, optimised Huffman" in capsys.readouterr().out
    assert b"\xff\xc0" in opt.read_bytes()[:1000]  # SOF0
    assert (
        cli.main(["encode", str(png), "-o", str(tmp_path / "p.jpg"), "--lambda", "0.001", "--rate-term", "paper"]) == 0
    )
    assert "attention_lam0.001" in capsys.readouterr().out  # the paper's rate proxies
    assert cli.main(["encode", str(png), "-o", str(std), "--lambda", "0.001", "--standard-huffman"]) == 0
    out = capsys.readouterr().out
    assert "; rounding;" in out and "baseline, standard Huffman" in out
    rounded = tmp_path / "r.jpg"
    assert cli.main(["encode", str(png), "-o", str(rounded), "--lambda", "0.001", "--no-trellis"]) == 0
    assert "; rounding;" in capsys.readouterr().out

    def same(p, q):
        a, _ = jpegfile.read_coefficients(p.read_bytes())
        b, _ = jpegfile.read_coefficients(q.read_bytes())
        return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.components, b.components))

    # the trellis' coefficients in a baseline and in a progressive file; the paper's rounding in its
    # standard-Huffman baseline file and in a progressive one
    assert same(prog, opt) and same(std, rounded) and not same(prog, rounded)
    assert prog.stat().st_size < opt.stat().st_size and rounded.stat().st_size < std.stat().st_size
    # --target-bpp: the largest file within the target; an unreachable target is a clear error
    h, w = photos()["chelsea"].shape[:2]
    big = tmp_path / "t.jpg"
    assert cli.main(["encode", str(png), "-o", str(big), "--target-bpp", "8"]) == 0
    assert 8 * big.stat().st_size / (h * w) <= 8
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "--target-bpp", "0.001"]) == 2
    assert "the smallest is" in capsys.readouterr().err
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "--lambda", "0.5"]) == 2
    assert "no shipped model for lambda 0.5 (rate term bits); its lambdas: 0.0003, 0.0006" in capsys.readouterr().err
    assert (
        cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "--lambda", "0.0003", "--rate-term", "paper"]) == 2
    )
    assert "its lambdas: 0.001, 0.003" in capsys.readouterr().err
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "--lambda", "0.01", "-q", "5"]) == 2
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "-q", "5", "--standard-huffman"]) == 2
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "-q", "5", "--baseline"]) == 2


def test_target_bpp_between_two_trained_lambdas_finds_a_better_file_than_the_model_below(png, tmp_path, capsys):
    from jpegedit import encoder
    from jpegedit.scoring import decode

    h, w = photos()["chelsea"].shape[:2]
    image = np.asarray(Image.open(png).convert("RGB"))
    models = encoder.choose_models()
    quantise = encoder.Quantiser(image, models)
    files = sorted((jpegfile.write(*quantise(m), progressive=True), m.name) for m in models)  # as trained
    files.sort(key=lambda f: len(f[0]))
    (lo, lo_name), (hi, _) = files[len(files) // 2 - 1], files[len(files) // 2]
    target = 8 * (len(lo) + len(hi)) / 2 / (h * w)
    out = tmp_path / "t.jpg"
    assert cli.main(["encode", str(png), "-o", str(out), "--target-bpp", f"{target:.6f}"]) == 0
    assert "tables x" in capsys.readouterr().out  # a scaled step of the ladder, between the two models
    data = out.read_bytes()
    assert len(lo) < len(data) <= target * h * w / 8

    def psnr(d):
        return -np.mean((image.astype(float) - decode(d).reshape(image.shape)) ** 2)

    assert psnr(data) > psnr(lo), lo_name


def test_tune_ms_ssim_encodes_with_the_tables_trained_on_ms_ssim(png, tmp_path, capsys):
    out = tmp_path / "m.jpg"
    assert cli.main(["encode", str(png), "-o", str(out), "--tune", "ms-ssim", "--lambda", "0.004"]) == 0
    said = capsys.readouterr().out
    assert "learned model qtables_msssim_lam0.004: Q-tables" in said
    ms = scoring.score(np.asarray(Image.open(png).convert("RGB")), out.read_bytes())["ms_ssim"]
    assert f"MS-SSIM {ms:.4f}" in said  # the metric it was tuned for, beside PSNR
    ms_tables = jpegfile.read_coefficients(out.read_bytes())[1]
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "p.jpg"), "--lambda", "0.004"]) == 0
    assert "attention_lite0_lam0.004" in capsys.readouterr().out
    assert not np.array_equal(ms_tables, jpegfile.read_coefficients((tmp_path / "p.jpg").read_bytes())[1])
    assert cli.main(["encode", str(png), "-o", str(tmp_path / "x.jpg"), "-q", "50", "--tune", "ms-ssim"]) == 2
    assert "--tune is for learned models" in capsys.readouterr().err


def test_tune_lpips_encodes_with_the_tables_trained_on_lpips_and_picks_the_lowest_lpips_under_the_target(
    png, tmp_path, capsys
):
    out = tmp_path / "l.jpg"
    assert cli.main(["encode", str(png), "-o", str(out), "--tune", "lpips", "--lambda", "0.004"]) == 0
    assert "learned model qtables_lpips_lam0.004: Q-tables" in capsys.readouterr().out
    assert {m.name.rsplit("_lam", 1)[0] for m in encoder.choose_models(tune="lpips")} == {"qtables_lpips"}
    x = photos()["chelsea"][:176, :192]
    models = encoder.choose_models(tune="lpips")
    got = encoder.encode_learned(x, models, target_bpp=1.0, trellis=encoder.TRELLIS_BY_TUNE["lpips"], tune="lpips")
    limit = int(1.0 * x.shape[0] * x.shape[1] / 8)
    assert len(got.data) <= limit
    # no ladder step that fits (as the encoder measures it: the quick scans) has a lower LPIPS
    best = scoring.score(x, got.data, lpips=True, ms_ssim=False)["lpips"]
    quantise = encoder.Quantiser(x, models, None)
    for m, scale in encoder.ladder(models)[::3]:
        co, tables = quantise(m, scale)
        if len(jpegfile.write(co, tables, progressive=True, quick=True)) <= limit:
            data = jpegfile.write(co, tables, progressive=True, quick=True)
            assert scoring.score(x, data, lpips=True, ms_ssim=False)["lpips"] >= best - 1e-6


def test_tune_ms_ssim_target_bpp_refuses_an_image_too_small_for_ms_ssim_in_one_line(tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(photos()["chelsea"][:64, :80]).save(small)
    out = tmp_path / "s.jpg"
    assert cli.main(["encode", str(small), "-o", str(out), "--tune", "ms-ssim", "--target-bpp", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 161 pixels on its short side, got 80x64" in err[0] and not out.exists()
