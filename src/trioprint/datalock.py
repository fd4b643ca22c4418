"""One data folder, one process: an advisory lock on ``<data>/.trioprint.lock``.

The lock (``flock``) is taken before anything else in the data folder is touched and held for
the life of the process; the kernel releases it when the process ends, however it ends, so a
lock file left behind by a crash never blocks a start. The file holds the owner's pid, for the
error message a second start prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from .errors import StartupError

LOCK_NAME = ".trioprint.lock"


class DataFolderLock:
    """The lock on one data folder, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StartupError` naming the process that holds it."""
        try:
            # not inherited by the commands event hooks start (PEP 446), so none of them can
            # keep the folder locked after trioprint has ended
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            who = f"pid {owner}" if owner is not None else "another process"
            raise StartupError(
                f"data folder {self.path.parent} is in use by another trioprint ({who}; "
                f"lock {self.path})"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StartupError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # no pid of a process that has ended is left behind
        os.close(self._fd)  # closing the descriptor releases the lock
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
