"""Reading and writing the images a user hands us, whatever their format.

``load_image`` returns ``uint8 (H, W, 3)`` RGB for any photo Pillow can decode:

* EXIF orientation is applied;
* palette, bilevel, grayscale images become RGB;
* images with alpha (LA, RGBA, palette with transparency) are composited on white, with a warning;
* CMYK is converted by Pillow's (profile-less) conversion;
* 16-bit grayscale (PNG/TIFF) is scaled to 8 bit by ``round(v * 255 / 65535)``; 16-bit RGB is
  reduced by Pillow's decoder, which keeps each value's high byte; 32-bit integer grayscale is
  taken as 8-bit data when its values fit in 0..255, else as 16-bit data (values above 65535 are
  refused as corrupt); float images are taken as [0, 1];
* animated / multi-page files give their first frame, with a warning.

Failures raise a subclass of :class:`ImageError` that names the file and the reason:
:class:`ImageNotFoundError`, :class:`NotAnImageError`, :class:`TruncatedImageError` (a subclass of
:class:`CorruptImageError`), :class:`EmptyImageError`, :class:`ImageTooLargeError` (more pixels than
``max_pixels``: decompression bombs are refused before any pixel is decoded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "ImageError",
    "ImageNotFoundError",
    "NotAnImageError",
    "CorruptImageError",
    "TruncatedImageError",
    "EmptyImageError",
    "ImageTooLargeError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "load_image",
    "image_size",
    "save_png",
    "write_file_atomic",
    "random_crop",
    "center_crop",
    "list_images",
    "iter_images",
]

log = logging.getLogger(__name__)

#: Default ceiling on width * height (about 9459 x 9459): Pillow's own decompression-bomb threshold,
#: so one limit holds everywhere - an image accepted here (and every file a tool writes from it) is
#: one that any later Pillow decode accepts too - and it is checked from the header, before any
#: pixel is decoded or any output written. Pass ``max_pixels`` to change it.
DEFAULT_MAX_PIXELS = 89_478_485

#: File name endings that :func:`list_images` considers (case-insensitive).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


class ImageError(ValueError):
    """An image file could not be turned into an RGB array."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    pass


class NotAnImageError(ImageError):
    pass


class CorruptImageError(ImageError):
    pass


class TruncatedImageError(CorruptImageError):
    pass


class EmptyImageError(ImageError):
    pass


class ImageTooLargeError(ImageError):
    pass


# Pillow's own decompression-bomb guard is process-global; we apply our (per-call) limit instead and
# switch Pillow's off only while we open a file, under a lock.
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _header_size(head: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from a PNG, GIF, BMP or PNM header, without Pillow."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24 and head[12:16] == b"IHDR":
        w, h = struct.unpack(">II", head[16:24])
        return "PNG", w, h
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        w, h = struct.unpack("<HH", head[6:10])
        return "GIF", w, h
    if head.startswith(b"BM") and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return "BMP", abs(w), abs(h)
    if len(head) >= 2 and head[0:1] == b"P" and head[1:2] in b"123456":
        fields = head[2:].split(None, 3)
        with contextlib.suppress(ValueError, IndexError):
            return "PNM", int(fields[0]), int(fields[1])
    return None


_MAGICS = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def _to_rgb(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        warnings.warn(f"{path}: has an alpha channel; composited on white", stacklevel=3)
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        if mode == "I" and (a.min() < 0 or a.max() > 65535):
            raise CorruptImageError(f"{path}: 32-bit integer image with values outside 0..65535")
        if mode == "I" and a.max() <= 255:
            scaled = a  # 8-bit data stored as 32-bit
        else:
            scaled = a * (255.0 / 65535.0)
        g = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if mode == "F":
        a = np.asarray(img).astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise CorruptImageError(f"{path}: float image holds NaN or infinite values")
        if a.min() < 0 or a.max() > 1:
            warnings.warn(f"{path}: float image outside [0, 1]; values clipped", stacklevel=3)
        g = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image at ``path`` as a C-contiguous ``uint8`` array ``(H, W, 3)`` (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise ImageNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise NotAnImageError(f"{path}: is a directory, not an image file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise ImageError(f"{path}: cannot be read ({e.strerror or e})") from e
    if not head:
        raise EmptyImageError(f"{path}: the file is empty (0 bytes)")
    sniffed = _header_size(head)
    if sniffed is not None and (sniffed[1] == 0 or sniffed[2] == 0):
        raise EmptyImageError(f"{path}: {sniffed[0]} image of zero size ({sniffed[1]}x{sniffed[2]})")
    try:
        with _own_pixel_limit():
            img = Image.open(path)
    except Image.UnidentifiedImageError as e:
        if head.startswith(_MAGICS):
            raise CorruptImageError(f"{path}: looks like an image but its header is damaged or cut short") from e
        raise NotAnImageError(f"{path}: not an image file Pillow can read") from e
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise CorruptImageError(f"{path}: unreadable image header ({e})") from e
    with img:
        w, h = _checked_size(img, path, max_pixels)
        if getattr(img, "n_frames", 1) > 1:
            warnings.warn(f"{path}: has {img.n_frames} frames; using the first", stacklevel=2)
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img, path)
        except ImageError:
            raise
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            msg = str(e)
            if "truncat" in msg.lower() or isinstance(e, EOFError):
                raise TruncatedImageError(f"{path}: the file is truncated ({msg})") from e
            raise CorruptImageError(f"{path}: corrupt image data ({msg})") from e
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise CorruptImageError(f"{path}: decoded to an unexpected array {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def _checked_size(img: Image.Image, path: Path, max_pixels: int) -> tuple[int, int]:
    w, h = img.size
    if w == 0 or h == 0:
        raise EmptyImageError(f"{path}: image of zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
            "(possible decompression bomb; raise max_pixels to allow it)"
        )
    return w, h


def image_size(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (no pixel is decoded), under the same limit
    as :func:`load_image`; failures are :class:`ImageError`s naming the file. EXIF orientation is
    not applied."""
    path = Path(path)
    try:
        with _own_pixel_limit(), Image.open(path) as img:
            return _checked_size(img, path, max_pixels)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageNotFoundError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError, struct.error, Image.UnidentifiedImageError) as e:
        raise CorruptImageError(f"{path}: unreadable image header ({e})") from None


def _as_uint8_image(image: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"{what}: expected (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: empty image {a.shape}")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: image holds NaN or infinite values")
        a = np.round(a)
        if a.min() < 0 or a.max() > 255:
            raise ValueError(f"{what}: values outside 0..255 (dtype {image.dtype}); scale or clip first")
        a = a.astype(np.uint8)
    return a


def write_file_atomic(path: str | os.PathLike, write) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file beside ``path`` (or ``write`` is
    the bytes), which then replaces ``path``; an interrupted write leaves no partial file. The file
    gets the permissions of any new file (0666 less the umask, 0644 under umask 022), not the
    temporary file's 0600. ``path`` must not be a folder (IsADirectoryError)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, (bytes, bytearray, memoryview)):
                f.write(write)
            else:
                write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def save_png(path: str | os.PathLike, image: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``image`` (uint8, or numbers in 0..255, rounded) as PNG, atomically.

    The file appears complete or not at all (written beside it, then renamed); an existing file is
    kept unless ``overwrite`` is true (:class:`FileExistsError`).
    """
    path = Path(path)
    a = _as_uint8_image(image, f"save_png({path})")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_file_atomic(path, lambda f: Image.fromarray(a).save(f, format="PNG"))


def _crop_size(size: int | tuple[int, int]) -> tuple[int, int]:
    ch, cw = (size, size) if isinstance(size, (int, np.integer)) else size
    if ch <= 0 or cw <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return int(ch), int(cw)


def random_crop(
    image: np.ndarray, size: int | tuple[int, int], rng: int | np.random.Generator
) -> tuple[np.ndarray, tuple[int, int]]:
    """A ``size`` crop at a uniformly random position; returns ``(crop, (top, left))``.

    Deterministic for an integer seed (or a seeded ``numpy.random.Generator``).
    """
    ch, cw = _crop_size(size)
    h, w = image.shape[:2]
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} from an image of {h}x{w}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    top = int(gen.integers(0, h - ch + 1))
    left = int(gen.integers(0, w - cw + 1))
    return image[top : top + ch, left : left + cw], (top, left)


def center_crop(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """The central ``size`` crop (the extra pixel of an odd margin goes to the bottom/right)."""
    ch, cw = _crop_size(size)
    h, w = image.shape[:2]
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} from an image of {h}x{w}")
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


def list_images(root: str | os.PathLike, *, check: bool = True) -> list[Path]:
    """Image files below ``root``, recursively, sorted by path.

    Files whose ending is not an image format's are skipped and logged; with ``check`` every file is
    also opened (header only) and one Pillow cannot identify is skipped with the reason logged.
    Hidden files and folders (names starting with '.') are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                log.info("skipping %s: %r is not an image file ending", p, p.suffix or "(none)")
                continue
            if check:
                try:
                    with _own_pixel_limit(), Image.open(p) as im:
                        w, h = im.size
                    if w == 0 or h == 0:
                        raise ValueError("zero-sized image")
                except Exception as e:  # noqa: BLE001 - every reason is logged and the file skipped
                    log.warning("skipping %s: not a readable image (%s)", p, e)
                    continue
            found.append(p)
    return sorted(found)


def load_folder(folder, *, limit: int | None = None, min_side: int = 1, what: str = "this command") -> list:
    """``[(file stem, uint8 RGB image)]`` of the images under ``folder`` (sorted, the first ``limit``);
    an unreadable folder or image, none at all, or one smaller than ``min_side`` is an
    :class:`ImageError`."""
    try:
        paths = list_images(folder)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise ImageNotFoundError(str(e)) from None
    if limit:
        paths = paths[:limit]
    if not paths:
        raise ImageNotFoundError(f"no images under {folder}")
    out = []
    for p in paths:
        im = load_image(p)
        if min(im.shape[:2]) < min_side:
            raise ImageError(
                f"{p}: {im.shape[1]}x{im.shape[0]} is too small for {what} ({min_side} pixels a side at least)"
            )
        out.append((Path(p).stem, im))
    return out


def iter_images(root: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[tuple[Path, np.ndarray]]:
    """``(path, uint8 RGB)`` for every image below ``root`` (sorted); unreadable ones are logged and skipped."""
    for p in list_images(root, check=False):
        try:
            yield p, load_image(p, max_pixels=max_pixels)
        except ImageError as e:
            log.warning("skipping %s", e)
