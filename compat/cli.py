"""The command-line kit every tool of this project is built with (``jpegedit``, ``trimesh-decode``,
``compat-measure`` and each ``python -m`` main): a parser whose errors are one line, the output
checks (``-o OUT`` refused when it exists, unless ``--force``), atomic writes, and :func:`run`,
which turns the errors a tool expects - :class:`UsageError` from the tool itself, the libraries'
own exceptions it names - into one line on stderr and exit status 2. Libraries never raise
:class:`UsageError`; they raise their own errors and the tool names them."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path
from typing import Callable

from compat.images import ImageError, write_file_atomic


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
        then = (
            "pass --force to continue in it (work already done there is reused) or choose another -o"
            if resumable
            else "pass --force to write into it or choose another -o"
        )
        raise UsageError(f"{path} is not empty; {then}")
    return path


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so an interrupted
    write never leaves a partial file; refuses a folder, a missing folder, and an existing file
    unless ``force`` (UsageError). The file's mode follows the umask."""
    write_file_atomic(check_output_file(path, force), data)


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


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    command: Callable,
    argv: list[str] | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> int:
    """Parse ``argv``, run ``command(args)`` and print what it returns (a line; None prints nothing;
    an int is the exit status). :class:`UsageError`, :class:`compat.images.ImageError` and the
    ``expected`` exception types become one line on stderr, ``prog: error: ...``, and exit status 2;
    warnings print as ``prog: warning: ...``, one line each."""
    return _run(prog, prog, command, parser.parse_args(argv), expected)


def run_subcommand(
    prog: str,
    parser: argparse.ArgumentParser,
    commands: dict,
    argv: list[str] | None = None,
    expected: tuple[type[BaseException], ...] = (),
    dest: str = "command",
) -> int:
    """:func:`run` for a tool of subcommands: ``commands[args.<dest>](args)`` (``dest``: the
    subparsers' ``dest``); errors read ``prog COMMAND: error: ...``, warnings ``prog: warning: ...``;
    no command prints the help (exit status 2)."""
    args = parser.parse_args(argv)
    name = getattr(args, dest, None)
    if name is None:
        parser.print_help()
        return 2
    return _run(f"{prog} {name}", prog, commands[name], args, expected)


def _run(who: str, prog: str, command: Callable, args: argparse.Namespace, expected: tuple) -> int:
    try:
        with one_line_warnings(prog):
            result = command(args)
    except (UsageError, ImageError, *expected) as e:
        print(f"{who}: error: {e}", file=sys.stderr)
        return 2
    if isinstance(result, int):
        return result
    if result is not None:
        print(result)
    return 0
