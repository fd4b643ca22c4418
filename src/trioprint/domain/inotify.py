"""Linux inotify without the I/O: constants, the kernel's event buffer, and what calls for a rescan.

A read from an inotify descriptor returns whole ``struct inotify_event`` records laid end to
end: ``int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[len]``, the name padded
with NULs (``len`` counts the padding; it is 0 when the event is about the watched folder
itself). :func:`parse_events` takes any bytes and returns the complete events plus what is
left over; :func:`encode_event` builds a record as the kernel does (for tests).

The file watcher does not act on single events: any relevant one leads to a rescan of the
roots (:mod:`trioprint.domain.snapshots` computes the changes). :func:`calls_for_rescan`
decides which ones are relevant: hidden names are not (uploads are written to
``.upload-*.part`` files, thumbnails live in ``.thumbs``), a queue overflow always is.
:class:`WatchTable` keeps which folder is watched under which watch descriptor.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import attrs

# -- constants (linux/inotify.h) --

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
#: Events the kernel sends without being asked.
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
#: Flags of ``inotify_add_watch``.
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_ADD = 0x20000000
#: Set in an event's mask when its subject is a folder.
IN_ISDIR = 0x40000000
#: Flags of ``inotify_init1`` (O_NONBLOCK, O_CLOEXEC on Linux).
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

#: What the file watcher asks for: creations, deletions, moves, a file closed after writing
#: (not IN_MODIFY: a big copy would fire thousands of times, IN_CLOSE_WRITE fires once at its
#: end), metadata (a ``touch``), and the folder itself going away; only folders, never through
#: a symlink (a symlinked folder would share its target's watch descriptor).
WATCH_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CLOSE_WRITE
    | IN_ATTRIB
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
    | IN_EXCL_UNLINK
)
#: Event bits about a name in a watched folder that may change a scan.
_NAMED_CHANGES = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB
#: Event bits about the watched folder itself that may change a scan.
_SELF_CHANGES = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT

_HEADER = struct.Struct("=iIII")
HEADER_SIZE = _HEADER.size  # 16


@attrs.frozen
class InotifyEvent:
    """One event: ``name`` is the item's name in the watched folder ("" for the folder itself),
    decoded as the file system's names are (UTF-8, undecodable bytes kept as surrogates)."""

    wd: int
    mask: int
    cookie: int = 0
    name: str = ""


def _encode_name(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def encode_event(event: InotifyEvent) -> bytes:
    """``event`` as the kernel writes it: the name NUL-terminated and padded to a multiple of
    the header's size, or no name at all."""
    raw = _encode_name(event.name)
    if raw:
        length = -(-(len(raw) + 1) // HEADER_SIZE) * HEADER_SIZE
        raw = raw.ljust(length, b"\0")
    return _HEADER.pack(event.wd, event.mask, event.cookie, len(raw)) + raw


def parse_events(buffer: bytes) -> tuple[list[InotifyEvent], bytes]:
    """The complete events at the start of ``buffer``, and the bytes after them (the start of
    an incomplete event, to be prefixed to the next read)."""
    events: list[InotifyEvent] = []
    view = memoryview(buffer)
    offset = 0
    while len(view) - offset >= HEADER_SIZE:
        wd, mask, cookie, length = _HEADER.unpack_from(view, offset)
        end = offset + HEADER_SIZE + length
        if end > len(view):
            break
        raw = bytes(view[offset + HEADER_SIZE : end]).split(b"\0", 1)[0]
        events.append(InotifyEvent(wd, mask, cookie, raw.decode("utf-8", "surrogateescape")))
        offset = end
    return events, bytes(view[offset:])


def calls_for_rescan(event: InotifyEvent) -> bool:
    """Whether ``event`` may change what a scan of the roots finds."""
    if event.mask & IN_Q_OVERFLOW:
        return True  # events were lost: only a scan can tell what happened
    if event.mask & IN_IGNORED:
        return False  # the watch is gone; the event that removed it was reported before
    if event.name:
        return not event.name.startswith(".") and bool(event.mask & _NAMED_CHANGES)
    return bool(event.mask & _SELF_CHANGES)


#: A watched folder: its root's name and its path relative to the root ("" for the root).
WatchKey = tuple[str, str]


@attrs.define
class WatchTable:
    """Which folder (``(root name, path relative to the root)``) is watched under which watch
    descriptor. Two keys may share a descriptor (a folder moved within the roots keeps
    its watch; the kernel answers ``add_watch`` with the same descriptor for the same folder)."""

    by_key: dict[WatchKey, int] = attrs.field(factory=dict)

    def missing(self, wanted: Iterable[WatchKey]) -> list[WatchKey]:
        """The keys of ``wanted`` not watched yet, in order."""
        return [key for key in wanted if key not in self.by_key]

    def added(self, key: WatchKey, wd: int) -> None:
        self.by_key[key] = wd

    def drop_unwanted(self, wanted: Iterable[WatchKey]) -> list[int]:
        """Forget the keys not in ``wanted``; return the descriptors no key uses any more
        (to be removed with ``inotify_rm_watch``)."""
        keep = set(wanted)
        gone = {key: wd for key, wd in self.by_key.items() if key not in keep}
        for key in gone:
            del self.by_key[key]
        used = set(self.by_key.values())
        return sorted({wd for wd in gone.values() if wd not in used})

    def ignored(self, wd: int) -> bool:
        """The kernel removed watch ``wd`` (IN_IGNORED: its folder was deleted, or unmounted,
        or the watch was removed); whether a key still used it."""
        keys = [key for key, value in self.by_key.items() if value == wd]
        for key in keys:
            del self.by_key[key]
        return bool(keys)

    def __len__(self) -> int:
        return len(self.by_key)
