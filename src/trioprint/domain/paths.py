"""Request paths checked before they reach the file system, without I/O.

A client names a file as ``root/relative/path`` (``gcodes/parts/cube.gcode``). Everything a path
may not be is refused here, by looking at the text alone: NUL bytes, backslashes, absolute
paths, ``..``, names longer than the file system allows. :func:`confined` then decides
whether a *resolved* path (symlinks followed by the caller) is still inside its root, by
comparing path components, not string prefixes: ``/data/gcodes_evil`` is not inside
``/data/gcodes`` (Moonraker's own check compares prefixes and lets that sibling through).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import attrs

#: Longest name of one path component, and of a whole relative path (Linux's NAME_MAX, PATH_MAX).
NAME_MAX = 255
PATH_MAX = 4096


#: Temporary files trioprint writes in the roots: an upload being received
#: (``.upload-<16 hex>.part``; ``tempfile.mkstemp``'s 8 characters in earlier versions) and an
#: archive being written (``.zip-<8>.part``). Never listed, served, or kept across a restart.
_TEMPORARY = re.compile(
    r"\.upload-(?:[0-9a-f]{16}|[a-z0-9_]{8})(?:\.part)?|\.zip-[a-z0-9_]{8}\.part"
)


def upload_temp_name(token: str) -> str:
    """The name of an upload's temporary file (``token``: 16 random hex digits)."""
    return f".upload-{token}.part"


def is_temporary(name: str) -> bool:
    """Whether ``name`` (one path component) is one of trioprint's temporary files."""
    return _TEMPORARY.fullmatch(name) is not None


class PathError(Exception):
    """A path that is refused: ``status`` 400 (malformed) or 403 (outside what is allowed)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@attrs.frozen
class RootPath:
    """A request path split into its root and the path relative to it (``""`` for the root)."""

    root: str
    relative: PurePosixPath

    @property
    def text(self) -> str:
        rel = str(self.relative)
        return self.root if rel == "." else f"{self.root}/{rel}"


def clean_relative(path: str, *, what: str = "path") -> PurePosixPath:
    """``path`` as a relative path with no ``.``, ``..`` or empty parts, or a PathError.

    Empty parts (``a//b``) and ``.`` are dropped, as a file system would; ``..`` anywhere is
    refused (403) rather than resolved, so a path never climbs, whatever it climbs to.
    """
    if not isinstance(path, str):
        raise PathError(f"invalid {what}: expected a string")
    if "\x00" in path:
        raise PathError(f"invalid {what} {path!r}: NUL byte")
    if "\\" in path:
        raise PathError(f"invalid {what} {path!r}: backslashes are not allowed")
    if path.startswith("/"):
        raise PathError(f"invalid {what} {path!r}: absolute paths are not allowed", 403)
    if len(path.encode("utf-8", "surrogatepass")) > PATH_MAX:
        raise PathError(f"invalid {what}: longer than {PATH_MAX} bytes")
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise PathError(f"invalid {what} {path!r}: '..' is not allowed", 403)
        if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise PathError(f"invalid {what}: the name {part[:40]!r}... is over {NAME_MAX} bytes")
        if any(ord(c) < 0x20 for c in part):
            raise PathError(f"invalid {what} {path!r}: control characters are not allowed")
        parts.append(part)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def split_root(path: str, roots: frozenset[str] | set[str], *, what: str = "path") -> RootPath:
    """``"gcodes/a/b.gcode"`` -> ``RootPath("gcodes", "a/b.gcode")``; an unknown root is a 400.

    A leading ``/`` before the root is tolerated (``/gcodes/a``), as Moonraker does.
    """
    if not isinstance(path, str):
        raise PathError(f"invalid {what}: expected a string")
    root, _, rest = path.lstrip("/").partition("/")
    if root not in roots:
        known = ", ".join(sorted(roots))
        raise PathError(f"invalid {what} {path!r}: unknown root {root!r} (roots: {known})")
    return RootPath(root, clean_relative(rest, what=what))


def confined(resolved: PurePosixPath, root: PurePosixPath) -> bool:
    """Whether ``resolved`` is ``root`` or below it, component by component.

    Both must already be resolved (absolute, symlinks followed): this function does no I/O.
    """
    return resolved == root or root in resolved.parents
