"""jpegedit.jpegfile: real baseline JPEG files from coefficients, and coefficients from any JPEG."""

import io

import numpy as np
import pytest
from jpeg_helpers import photos, pillow_decode, pillow_jpeg
from PIL import Image

from jpegedit import codec, jpegfile, libjpeg
from jpegedit.jpegfile import CorruptJPEGError, UnsupportedJPEGError


@pytest.fixture(scope="module")
def encoded():
    image = photos()["chelsea"]
    tables = codec.quality_to_tables(60)
    return image, tables, libjpeg.encode(image, tables, chroma="420")


def _markers(data: bytes) -> list[int]:
    """The marker codes of the header segments, up to the first scan."""
    out, i = [], 2
    while True:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        out.append(marker)
        if marker == 0xDA:
            return out
        i += 2 + length


def test_default_file_is_baseline_with_the_standard_huffman_tables_as_libjpeg_writes_it(encoded):
    image, _, co = encoded
    data = jpegfile.write(co, codec.quality_to_tables(60))
    markers = _markers(data)
    assert 0xC0 in markers and not {0xC1, 0xC2, 0xC9} & set(markers)  # SOF0: baseline sequential Huffman
    # Same size as Pillow's file, and Pillow shows the same pixels: the same entropy coding.
    ref = pillow_jpeg(image, 60, "420")
    assert len(data) == len(ref)
    np.testing.assert_array_equal(pillow_decode(data), pillow_decode(ref))


def test_optimized_huffman_tables_shrink_the_file_and_keep_the_coefficients(encoded):
    _, tables, co = encoded
    plain = jpegfile.write(co, tables)
    optimized = jpegfile.write(co, tables, optimize_huffman=True)
    assert len(optimized) < 0.97 * len(plain)
    back, qt = jpegfile.read_coefficients(optimized)
    np.testing.assert_array_equal(qt, tables)
    for a, b in zip(back.components, co.components):
        np.testing.assert_array_equal(a, np.asarray(b))
    np.testing.assert_array_equal(pillow_decode(optimized), pillow_decode(plain))


def test_float_path_coefficients_write_a_file_that_decodes_as_our_decoder_predicts():
    image = photos()["coffee"][:120, :200]
    tables = codec.quality_to_tables(40)
    co = codec.encode(image, tables, rounding="hard")
    data = jpegfile.write(co, tables)
    np.testing.assert_array_equal(pillow_decode(data), np.asarray(libjpeg.decode(co, tables)))
    assert np.abs(pillow_decode(data) - codec.decode(co, tables, round_samples=True)).max() <= 3


def test_reads_progressive_files_as_the_same_coefficients():
    image = photos()["astronaut"]
    base, qt = jpegfile.read_coefficients(pillow_jpeg(image, 70, "420"))
    prog, qt2 = jpegfile.read_coefficients(pillow_jpeg(image, 70, "420", progressive=True))
    np.testing.assert_array_equal(qt, qt2)
    for a, b in zip(base.components, prog.components):
        np.testing.assert_array_equal(a, b)


def test_grayscale_files_have_one_component_and_one_table():
    image = photos()["astronaut"][..., :1]
    co, qt = jpegfile.read_coefficients(pillow_jpeg(image, 50))
    assert co.grayscale and qt.shape == (1, 8, 8) and co.y.shape == (64, 64, 8, 8)
    data = jpegfile.write(co, qt)
    assert Image.open(io.BytesIO(data)).mode == "L"


# --- refusals --------------------------------------------------------------------------------


def test_refuses_what_a_baseline_file_cannot_hold(encoded):
    _, tables, co = encoded
    with pytest.raises(ValueError, match="integers"):
        jpegfile.write(co.replace(y=np.asarray(co.y) + 0.5), tables)
    with pytest.raises(ValueError, match="baseline range"):
        big = np.array(co.y)
        big[0, 0, 3, 3] = 1024
        jpegfile.write(co.replace(y=big), tables)
    with pytest.raises(ValueError, match="1..255"):
        jpegfile.write(co, np.where(tables > 50, 300, tables))
    with pytest.raises(ValueError, match="round learned tables"):
        jpegfile.write(co, tables + 0.25)
    with pytest.raises(ValueError, match="block grid"):
        jpegfile.write(co.replace(cb=np.asarray(co.cb)[:-1]), tables)
    with pytest.raises(ValueError, match="one image at a time"):
        jpegfile.write(co.replace(y=np.asarray(co.y)[None]), tables)
    with pytest.raises(TypeError, match="Coefficients"):
        jpegfile.write({"y": co.y}, tables)


def test_corrupt_files_raise_a_specific_error(encoded):
    _, tables, co = encoded
    data = jpegfile.write(co, tables)
    cases = {
        "empty": b"",
        "not a jpeg": b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
        "cut in the headers": data[:100],
        "cut in the scan": data[: len(data) // 2],
        "garbage after SOI": b"\xff\xd8" + b"hello world" * 10,
    }
    for what, bad in cases.items():
        with pytest.raises(CorruptJPEGError):
            jpegfile.read_coefficients(bad)
        assert issubclass(CorruptJPEGError, ValueError), what
    with pytest.raises(TypeError, match="bytes"):
        jpegfile.read_coefficients("photo.jpg")


def test_jpegs_this_codec_cannot_represent_are_refused_by_name():
    image = photos()["noise_37x53"]
    with pytest.raises(UnsupportedJPEGError, match="4:4:4 and 4:2:0"):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=75, subsampling=1)  # 4:2:2
        jpegfile.read_coefficients(buf.getvalue())
    with pytest.raises(UnsupportedJPEGError, match="CMYK"):
        buf = io.BytesIO()
        Image.fromarray(image).convert("CMYK").save(buf, "JPEG", quality=75)
        jpegfile.read_coefficients(buf.getvalue())
