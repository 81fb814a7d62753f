"""``compat-measure``: every quality measure of compat.metrics for an image pair.

Without images it measures an embedded default - scikit-image's astronaut photo against its own
libjpeg (Pillow) JPEG at quality 20 - so that a fresh install can be checked with one command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np

EXAMPLE = """examples:
  compat-measure                                   # astronaut vs its JPEG at quality 20
  compat-measure original.png decoded.png --lpips vgg -o scores.json
"""


class UsageError(Exception):
    """Bad input to a command-line tool: reported as one line, exit status 2."""


def check_output_file(path, force: bool) -> Path:
    """``path`` as a file this command may write: not a folder, in a folder that exists, and not
    already there unless ``force`` (each a UsageError); nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give the name of the file to write")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UsageError(f"output directory {path.parent} does not exist")
    return path


def check_output_folder(path, force: bool, *, resumable: bool = False) -> Path:
    """``path`` as a folder this command may write into: not a file, and - unless ``force`` - absent
    or empty, so that results already there (committed ones in ``results/`` among them) are never
    replaced by accident. ``resumable``: the error says that --force continues the work in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        then = "pass --force to continue in it (work already done there is reused) or choose another -o" if resumable \
            else "pass --force to write into it or choose another -o"
        raise UsageError(f"{path} is not empty; {then}")
    return path


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so an interrupted
    write never leaves a partial file; refuses a folder, a missing folder, and an existing file
    unless ``force`` (UsageError). The file's mode follows the umask."""
    from compat.images import write_file_atomic

    write_file_atomic(check_output_file(path, force), data)


def load_folder(folder, *, limit: int | None = None, min_side: int = 1, what: str = "this command") -> list:
    """``[(file stem, uint8 RGB image)]`` of the images under ``folder`` (sorted, the first ``limit``);
    an unreadable folder or image, none at all, or one smaller than ``min_side`` is a UsageError."""
    from compat.images import ImageError, list_images, load_image

    try:
        paths = list_images(folder)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise UsageError(str(e)) from None
    if limit:
        paths = paths[:limit]
    if not paths:
        raise UsageError(f"no images under {folder}")
    out = []
    for p in paths:
        try:
            im = load_image(p)
        except ImageError as e:
            raise UsageError(str(e)) from None
        if min(im.shape[:2]) < min_side:
            raise UsageError(f"{p}: {im.shape[1]}x{im.shape[0]} is too small for {what} ({min_side} pixels a side at least)")
        out.append((Path(p).stem, im))
    return out


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``prog: error: ...``, exit status 2), the
    convention of every command-line tool in this project."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@contextlib.contextmanager
def one_line_warnings(prog: str):
    """Within it, warnings print as ``prog: warning: message`` lines (no file name, line number or
    source line)."""
    saved = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"{prog}: warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = saved


def run_subcommand(prog: str, parser: argparse.ArgumentParser, commands: dict, argv: list[str] | None = None) -> int:
    """Parse ``argv``, run ``commands[args.command](args)`` and print what it returns. A
    :class:`UsageError` becomes one line on stderr and exit status 2; no command prints the help."""
    args = parser.parse_args(argv)
    if getattr(args, "command", None) is None:
        parser.print_help()
        return 2
    try:
        with one_line_warnings(prog):
            print(commands[args.command](args))
    except UsageError as e:
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="compat-measure",
        description="PSNR, SSIM, MS-SSIM, LPIPS and classifier agreement of a distorted image against its original.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("original", nargs="?", help="reference image (any format compat.images reads)")
    p.add_argument("distorted", nargs="?", help="image to score, same size as the reference")
    p.add_argument("--lpips", choices=("alex", "vgg"), default="alex", help="LPIPS backbone (default alex)")
    p.add_argument("-o", "--out", help="also write the scores as JSON to this file")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return p


def _default_pair() -> tuple[np.ndarray, np.ndarray, str]:
    from PIL import Image
    from skimage import data

    x = data.astronaut()
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG", quality=20)
    y = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return x, y, f"skimage astronaut vs its libjpeg JPEG, quality 20 ({len(buf.getvalue())} bytes)"


def measure(x: np.ndarray, y: np.ndarray, lpips_net: str = "alex") -> dict[str, float | bool]:
    from compat import metrics as M

    scores: dict[str, float | bool] = {
        "psnr": float(M.psnr(x, y)),
        "ssim": float(M.ssim(x, y)),
        f"lpips_{lpips_net}": float(M.lpips(x, y, lpips_net)),
    }
    if min(x.shape[:2]) >= 161:
        scores["ms_ssim"] = float(M.ms_ssim(x, y))
        scores["ms_ssim_db"] = float(M.ms_ssim_db(x, y))
    sem = M.semantic_similarity(x, y)
    scores.update({k: (bool(v) if v.dtype == bool else float(v)) for k, v in sem.items()})
    return scores


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with one_line_warnings("compat-measure"):
        return _measure_main(args)


def _measure_main(args) -> int:

    def fail(msg: str) -> int:
        print(f"compat-measure: error: {msg}", file=sys.stderr)
        return 2

    from compat.images import ImageError, load_image

    if (args.original is None) != (args.distorted is None):
        return fail("give both an original and a distorted image, or neither (for the embedded example)")
    try:
        out = check_output_file(args.out, args.force) if args.out else None
    except UsageError as e:
        return fail(str(e))
    if args.original is None:
        x, y, what = _default_pair()
    else:
        try:
            x, y = load_image(args.original), load_image(args.distorted)
        except ImageError as e:
            return fail(str(e))
        what = f"{args.original} vs {args.distorted}"
        if x.shape != y.shape:
            return fail(f"the images differ in size: {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}")
    try:
        scores = measure(x, y, args.lpips)
    except ValueError as e:
        return fail(str(e))
    print(what)
    for k, v in scores.items():
        print(f"  {k:>14}: {v:.6f}" if isinstance(v, float) else f"  {k:>14}: {v}")
    if out is not None:
        write_atomic(out, (json.dumps({"pair": what, **scores}, indent=2) + "\n").encode(), args.force)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
