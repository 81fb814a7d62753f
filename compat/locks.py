"""One writer per folder: an exclusive, non-blocking ``flock`` on ``FOLDER/.lock``.

The lock is the kernel's, so it goes when its process does, however it ends (SIGKILL included): a
stale lock file never blocks anyone. The file holds the holder's pid, for the message a second
writer gets.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["FolderBusyError", "FolderLock"]


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


class FolderLock:
    """``with FolderLock(folder, "trainer"):`` - or ``release()`` - holds ``folder/.lock``; a second
    holder gets ``error`` (a :class:`FolderBusyError` subclass) naming the first one's pid."""

    def __init__(self, folder: str | os.PathLike, what: str = "process", error: type = FolderBusyError):
        folder = Path(folder)
        self.path = folder / ".lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise error(f"{folder} is in use by another {what} (pid {holder}); one folder, one {what}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
