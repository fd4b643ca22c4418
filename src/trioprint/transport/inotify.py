"""A thin Trio wrapper over Linux inotify (libc through ctypes).

The descriptor is opened non-blocking and close-on-exec; :meth:`Inotify.read` waits until it
is readable (``trio.lowlevel.wait_readable``, no thread) and reads what is there. The pure part
(the event records, what they mean) is :mod:`trioprint.domain.inotify`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from types import TracebackType

import trio

from ..domain.inotify import IN_CLOEXEC, IN_NONBLOCK, InotifyEvent, parse_events

#: Bytes asked for per read (a record is at most 16 + NAME_MAX + 1 bytes, rounded up).
READ_SIZE = 64 * 1024


class InotifyUnavailable(OSError):
    """inotify cannot be used here: not Linux, no such function in libc, or no descriptor
    left (EMFILE: the user's ``max_user_instances`` is reached)."""


_libc: ctypes.CDLL | None = None


def _load() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        if not sys.platform.startswith("linux"):
            raise InotifyUnavailable(
                errno.ENOSYS, f"inotify is Linux only (this is {sys.platform})"
            )
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
                getattr(libc, name)
        except (OSError, AttributeError) as exc:
            raise InotifyUnavailable(
                errno.ENOSYS, f"inotify is not in the C library: {exc}"
            ) from None
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_init1.restype = ctypes.c_int
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_add_watch.restype = ctypes.c_int
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.inotify_rm_watch.restype = ctypes.c_int
        _libc = libc
    return _libc


def _error(what: str, path: str | None = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}", path)


class Inotify:
    """An inotify descriptor; a context manager that closes it."""

    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self.fd = fd
        self._libc = libc
        self._pending = b""
        self._closed = False

    @classmethod
    def open(cls) -> Inotify:
        """A new descriptor; :class:`InotifyUnavailable` where there can be none."""
        libc = _load()
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise InotifyUnavailable(code, f"inotify_init1: {os.strerror(code)}")
        return cls(fd, libc)

    def add_watch(self, path: str, mask: int) -> int:
        """Watch ``path``; its watch descriptor (the same one again for a folder already
        watched). OSError as the kernel says: ENOSPC when the user's ``max_user_watches`` is
        reached, ENOENT, ENOTDIR (with IN_ONLYDIR), EACCES ..."""
        wd: int = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise _error("inotify_add_watch", path)
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop watch ``wd`` (EINVAL, a watch the kernel already removed, is not an error)."""
        if self._libc.inotify_rm_watch(self.fd, wd) < 0 and ctypes.get_errno() != errno.EINVAL:
            raise _error("inotify_rm_watch")

    async def read(self) -> list[InotifyEvent]:
        """Wait for events and return the ones there are (at least one)."""
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            chunks = [self._pending]
            while True:
                try:
                    chunk = os.read(self.fd, READ_SIZE)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            events, self._pending = parse_events(b"".join(chunks))
            if events:
                return events

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.fd)
            os.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
