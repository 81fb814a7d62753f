"""compat.images: every odd format a user may hand us loads correctly; every bad file raises its error."""

import logging
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from compat import images as I


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (21, 34, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, depth: int, color_type: int, raw_rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB or zero-sized ones)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw_rows)) + _chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------------------------
# Formats that load


def test_rgb_png_and_jpeg(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = I.load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, rgb)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    assert I.load_image(tmp_path / "a.jpg").shape == rgb.shape


@pytest.mark.parametrize(
    "orientation,transform",
    [(3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))],
)
def test_exif_orientation_is_applied(tmp_path, rgb, orientation, transform):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o.png", exif=exif)
    np.testing.assert_array_equal(I.load_image(tmp_path / "o.png"), transform(rgb))


def test_grayscale_and_bilevel(tmp_path, rgb):
    g = rgb[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    out = I.load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, -1))
    Image.fromarray(g > 127).save(tmp_path / "b.png")
    out = I.load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[..., 1], np.where(g > 127, 255, 0))


def test_palette(tmp_path, rgb):
    p = Image.fromarray(rgb).quantize(16)
    p.save(tmp_path / "p.png")
    np.testing.assert_array_equal(I.load_image(tmp_path / "p.png"), np.asarray(p.convert("RGB")))
    p.save(tmp_path / "p.gif")
    np.testing.assert_array_equal(I.load_image(tmp_path / "p.gif"), np.asarray(p.convert("RGB")))


def test_alpha_is_composited_on_white_with_a_warning(tmp_path, rgb):
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 10:20] = 128
    alpha[:, 20:] = 255
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha"):
        out = I.load_image(tmp_path / "a.png")
    assert np.all(out[:, :10] == 255)
    np.testing.assert_array_equal(out[:, 20:], rgb[:, 20:])
    half = out[:, 10:20].astype(int)
    expected = (rgb[:, 10:20].astype(int) * 128 + 255 * 127) / 255
    assert np.max(np.abs(half - expected)) <= 1
    Image.fromarray(np.dstack([rgb[..., 0], alpha])).save(tmp_path / "la.png")
    with pytest.warns(UserWarning, match="alpha"):
        out = I.load_image(tmp_path / "la.png")
    assert np.all(out[:, :10] == 255) and np.array_equal(out[:, 20:, 0], rgb[:, 20:, 0])


def test_palette_with_transparency(tmp_path, rgb):
    p = Image.fromarray(rgb).quantize(8)
    p.save(tmp_path / "t.png", transparency=0)
    with pytest.warns(UserWarning, match="alpha"):
        out = I.load_image(tmp_path / "t.png")
    transparent = np.asarray(p) == 0
    assert transparent.any() and np.all(out[transparent] == 255)


@pytest.mark.parametrize("fmt", ["jpg", "tif"])
def test_cmyk(tmp_path, rgb, fmt):
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / f"c.{fmt}", **({"quality": 100} if fmt == "jpg" else {}))
    out = I.load_image(tmp_path / f"c.{fmt}")
    tol = 0 if fmt == "tif" else 12
    assert np.max(np.abs(out.astype(int) - np.asarray(cmyk.convert("RGB")).astype(int))) <= tol


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_16_bit_grayscale_is_scaled_to_8_bit(tmp_path, fmt):
    g16 = np.linspace(0, 65535, 24 * 40).reshape(24, 40).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / f"g.{fmt}")
    out = I.load_image(tmp_path / f"g.{fmt}")
    expected = np.round(g16 * 255.0 / 65535.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert out[0, 0, 0] == 0 and out[-1, -1, 2] == 255


def test_16_bit_rgb_png_and_tiff(tmp_path):
    import tifffile

    rng = np.random.default_rng(1)
    rgb16 = rng.integers(0, 65536, (13, 17, 3)).astype(np.uint16)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    (tmp_path / "c16.png").write_bytes(_png(17, 13, 16, 2, rows))
    tifffile.imwrite(tmp_path / "c16.tif", rgb16)
    for name in ("c16.png", "c16.tif"):
        out = I.load_image(tmp_path / name).astype(int)
        assert np.max(np.abs(out - rgb16 / 257.0)) <= 1.0, name


def test_float_tiff_is_taken_as_unit_range(tmp_path):
    f = np.linspace(0, 1, 12 * 12, dtype=np.float32).reshape(12, 12)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    out = I.load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[..., 0], np.round(f * 255).astype(np.uint8))


def test_animated_gif_gives_first_frame(tmp_path, rgb):
    frames = [Image.fromarray(rgb).quantize(8), Image.fromarray(255 - rgb).quantize(8)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="frames"):
        out = I.load_image(tmp_path / "anim.gif")
    np.testing.assert_array_equal(out, np.asarray(frames[0].convert("RGB")))


def test_webp_and_bmp(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.webp", lossless=True)
    np.testing.assert_array_equal(I.load_image(tmp_path / "a.webp"), rgb)
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    np.testing.assert_array_equal(I.load_image(tmp_path / "a.bmp"), rgb)


# ----------------------------------------------------------------------------------------------
# Bad files


def test_missing_file(tmp_path):
    with pytest.raises(I.ImageNotFoundError, match="no such file"):
        I.load_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError
        I.load_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are words, not pixels\n" * 5)
    with pytest.raises(I.NotAnImageError, match="not an image"):
        I.load_image(tmp_path / "notes.png")
    with pytest.raises(I.NotAnImageError, match="directory"):
        I.load_image(tmp_path)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_file(tmp_path, rgb, fmt):
    Image.fromarray(rgb).save(tmp_path / f"full.{fmt}")
    data = (tmp_path / f"full.{fmt}").read_bytes()
    (tmp_path / f"cut.{fmt}").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(I.TruncatedImageError, match="truncated"):
        I.load_image(tmp_path / f"cut.{fmt}")


def test_damaged_header(tmp_path):
    (tmp_path / "h.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(I.CorruptImageError, match="damaged"):
        I.load_image(tmp_path / "h.png")


def test_zero_sized_images(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(I.EmptyImageError, match="0 bytes"):
        I.load_image(tmp_path / "empty.png")
    (tmp_path / "w0.png").write_bytes(_png(0, 10, 8, 2, b""))
    with pytest.raises(I.EmptyImageError, match="zero size"):
        I.load_image(tmp_path / "w0.png")
    (tmp_path / "h0.ppm").write_bytes(b"P6\n5 0\n255\n")
    with pytest.raises(I.EmptyImageError, match="zero size"):
        I.load_image(tmp_path / "h0.ppm")


def test_too_many_pixels(tmp_path, rgb):
    # A 100000 x 100000 header over a few bytes of data: refused before decoding anything.
    (tmp_path / "bomb.png").write_bytes(_png(100_000, 100_000, 8, 2, b""))
    with pytest.raises(I.ImageTooLargeError, match="decompression bomb"):
        I.load_image(tmp_path / "bomb.png")
    Image.fromarray(rgb).save(tmp_path / "small.png")
    with pytest.raises(I.ImageTooLargeError, match="exceeds the limit of 100"):
        I.load_image(tmp_path / "small.png", max_pixels=100)
    assert I.load_image(tmp_path / "small.png", max_pixels=rgb.shape[0] * rgb.shape[1]).shape == rgb.shape


def test_limit_can_be_raised_past_pillows_own(tmp_path):
    # Pillow refuses > 2 * 89M pixels by itself; our configurable limit must be the one in force.
    big = tmp_path / "big.png"
    big.write_bytes(_png(20_000, 10_000, 8, 0, b""))  # 200M pixels, no data: truncated, not a bomb
    with pytest.raises(I.TruncatedImageError):
        I.load_image(big, max_pixels=300_000_000)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's global guard is restored


def test_errors_are_image_errors_and_value_errors(tmp_path):
    for cls in (
        I.ImageNotFoundError,
        I.NotAnImageError,
        I.TruncatedImageError,
        I.EmptyImageError,
        I.ImageTooLargeError,
    ):
        assert issubclass(cls, I.ImageError) and issubclass(cls, ValueError)


# ----------------------------------------------------------------------------------------------
# Writing, crops, folders


def test_save_png_round_trip_and_no_overwrite(tmp_path, rgb):
    p = I.save_png(tmp_path / "sub" / "x.png", rgb)
    np.testing.assert_array_equal(I.load_image(p), rgb)
    with pytest.raises(FileExistsError):
        I.save_png(p, 255 - rgb)
    np.testing.assert_array_equal(I.load_image(p), rgb)  # untouched
    I.save_png(p, 255 - rgb, overwrite=True)
    np.testing.assert_array_equal(I.load_image(p), 255 - rgb)
    assert sorted(os.listdir(tmp_path / "sub")) == ["x.png"]  # no temporary files left


def test_save_png_accepts_floats_and_refuses_bad_values(tmp_path, rgb):
    I.save_png(tmp_path / "f.png", rgb.astype(np.float32) + 0.2)
    np.testing.assert_array_equal(I.load_image(tmp_path / "f.png"), rgb)
    with pytest.raises(ValueError, match="outside 0..255"):
        I.save_png(tmp_path / "bad.png", rgb.astype(np.float32) * 2)
    with pytest.raises(ValueError, match="NaN"):
        I.save_png(tmp_path / "nan.png", np.full((4, 4, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        I.save_png(tmp_path / "s.png", np.zeros((4, 4, 2)))
    assert not (tmp_path / "bad.png").exists()


def test_random_crop_is_deterministic(rgb):
    a, pos_a = I.random_crop(rgb, 8, 123)
    b, pos_b = I.random_crop(rgb, 8, 123)
    assert pos_a == pos_b and np.array_equal(a, b) and a.shape == (8, 8, 3)
    positions = {I.random_crop(rgb, (8, 10), s)[1] for s in range(50)}
    assert len(positions) > 10
    top, left = pos_a
    np.testing.assert_array_equal(a, rgb[top : top + 8, left : left + 8])
    with pytest.raises(ValueError, match="cannot crop"):
        I.random_crop(rgb, 40, 0)


def test_center_crop(rgb):
    c = I.center_crop(rgb, (11, 20))
    np.testing.assert_array_equal(c, rgb[5:16, 7:27])
    assert I.center_crop(rgb, rgb.shape[:2]).shape == rgb.shape
    with pytest.raises(ValueError):
        I.center_crop(rgb, 0)


def test_image_folder_is_sorted_recursive_and_skips_with_reasons(tmp_path, rgb, caplog):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "b" / "deep" / "z.png")
    Image.fromarray(rgb).save(tmp_path / "b" / "a.jpg")
    Image.fromarray(rgb).save(tmp_path / "c.TIF")
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "fake.png").write_text("not an image either")
    (tmp_path / ".hidden.png").write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="compat.images"):
        found = I.list_images(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["b/a.jpg", "b/deep/z.png", "c.TIF"]
    assert "readme.txt" in caplog.text and "fake.png" in caplog.text
    loaded = list(I.iter_images(tmp_path))
    assert [p.name for p, _ in loaded] == ["a.jpg", "z.png", "c.TIF"]
    assert all(img.shape == rgb.shape for _, img in loaded)
    with pytest.raises(NotADirectoryError):
        I.list_images(tmp_path / "c.TIF")
