"""The file roots, request paths checked against them, and listings (thread-side helpers).

Every request path is ``root/relative/path``. It is checked as text first
(:mod:`trioprint.domain.paths`: no ``..``, NUL, backslash, absolute path, over-long name), then
on the file system by :func:`locate`: the real path of the item's folder and of the item itself
(symlinks followed) must both be inside the root's real path, compared component by component,
so a symlink leading out of a root is refused (403) for reading and writing alike, and a sibling
folder sharing the root's name as a prefix (``gcodes_evil``) is never inside ``gcodes``. An
operation acts on ``<real folder>/<name>``, so it never goes through a link that leaves the root.

The functions that touch the file system run in a worker thread (the component calls them
through :func:`trio.to_thread.run_sync`).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any

import attrs

from ...bus import Event
from ...config import Config
from ...domain.paths import PathError, confined, is_temporary, split_root
from ...errors import ApiError

#: Files the ``gcodes`` root lists (Moonraker's ``VALID_GCODE_EXTS``).
GCODE_EXTENSIONS = frozenset({".gcode", ".g", ".gco", ".ufp", ".nc"})


@attrs.frozen
class FileChanged(Event):
    """Something in a root changed (``action`` as in ``notify_filelist_changed``).

    ``path`` is relative to ``root``; ``source_root``/``source_path`` are set for moves.
    """

    action: str
    root: str
    path: str
    source_root: str | None = None
    source_path: str | None = None


@attrs.frozen
class RootSpec:
    """A root as configured: ``path`` as written (it may not exist yet)."""

    name: str
    path: str
    writable: bool
    create: bool


@attrs.frozen
class Root:
    """A root in service: ``real`` is its path with symlinks resolved."""

    name: str
    real: str
    writable: bool

    @property
    def permissions(self) -> str:
        return "rw" if self.writable else "r"


@attrs.frozen
class Target:
    """A checked request path: ``full`` is ``<real folder>/<name>`` (the root's real path for
    the root itself); ``relative`` is the path as requested, relative to the root."""

    root: Root
    relative: str
    full: str
    request: str


def root_specs(config: Config) -> list[RootSpec]:
    """The roots in Moonraker's order: config, logs, gcodes, config_examples, docs."""
    fm = config.file_manager
    data = str(config.data_dir)

    def where(configured: str | None, name: str) -> str:
        return os.path.abspath(configured or os.path.join(data, name))

    return [
        RootSpec("config", where(fm.config_path, "config"), fm.enable_config_write_access, True),
        RootSpec("logs", where(fm.log_path, "logs"), False, True),
        RootSpec("gcodes", where(fm.gcodes_path, "gcodes"), True, True),
        RootSpec("config_examples", where(None, "config_examples"), False, False),
        RootSpec("docs", where(None, "docs"), False, False),
    ]


def printing_check(current: Callable[[], str | None]) -> Callable[[str], bool]:
    """An ``is_printing`` hook from a function giving the printed file (relative to gcodes)
    or None: true for that file and for every folder containing it."""

    def is_printing(path: str) -> bool:
        printed = current()
        if not printed:
            return False
        printed = printed.strip("/")
        path = path.strip("/")
        return path == "" or printed == path or printed.startswith(path + "/")

    return is_printing


# --- file-system helpers (run in a worker thread) --------------------------------------------


def inside(path: str, root: str) -> bool:
    return confined(PurePosixPath(path), PurePosixPath(root))


def os_error(exc: OSError, what: str) -> ApiError:
    """An OSError as an ApiError naming ``what`` (a request path)."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError):
        return ApiError(f"{what}: no such file or directory", 404)
    if isinstance(exc, FileExistsError):
        return ApiError(f"{what}: already exists", 400)
    if isinstance(exc, PermissionError):
        return ApiError(f"{what}: permission denied", 403)
    if exc.errno == errno.ENOTEMPTY:
        return ApiError(f"{what}: the directory is not empty (use force to delete it)", 400)
    return ApiError(f"{what}: {reason}", 400)


def path_info(full: str, root: Root) -> dict[str, Any]:
    """Moonraker's ``{modified, size, permissions}`` of an item (zeros when it is gone)."""
    try:
        st = os.stat(full)
    except OSError:
        return {"modified": 0, "size": 0, "permissions": ""}
    permissions = root.permissions
    if stat.S_ISREG(st.st_mode) and os.path.islink(full):
        permissions = "r"
    return {"modified": st.st_mtime, "size": st.st_size, "permissions": permissions}


def join(relative: str, name: str) -> str:
    return f"{relative}/{name}" if relative else name


# --- path checks ------------------------------------------------------------------------------


def locate(roots: Mapping[str, Root], request: str, what: str) -> Target:
    """Check ``request`` as text, then its real path against its root (thread only)."""
    try:
        parsed = split_root(request, frozenset(roots), what=what)
    except PathError as exc:
        raise ApiError(exc.message, exc.status) from None
    root = roots[parsed.root]
    relative = parsed.relative
    if ".git" in relative.parts:
        raise ApiError(f"{what} {request!r}: access to .git folders is forbidden", 403)
    if any(is_temporary(part) for part in relative.parts):
        raise ApiError(f"file does not exist ({request}): a temporary file in progress", 404)
    text = str(relative)
    if text == ".":
        return Target(root, "", root.real, request)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(f"invalid {what} {request!r}: not valid UTF-8") from None
    joined = os.path.join(root.real, text)
    folder = os.path.realpath(os.path.dirname(joined))
    full = os.path.join(folder, relative.name)
    if not inside(folder, root.real) or not inside(os.path.realpath(full), root.real):
        raise ApiError(f"{what} {request!r} leads outside the {root.name} root", 403)
    return Target(root, text, full, request)


def check_writable(target: Target, what: str) -> None:
    if not target.root.writable:
        raise ApiError(f"{what} {target.request!r}: the {target.root.name} root is read-only", 403)


def change(action: str, target: Target, source: Target | None = None) -> dict[str, Any]:
    """Moonraker's result/notification body for a change (thread only)."""
    item = path_info(target.full, target.root)
    item.update({"path": target.relative, "root": target.root.name})
    result: dict[str, Any] = {"item": item, "action": action}
    if source is not None:
        result["source_item"] = {"path": source.relative, "root": source.root.name}
    return result


# --- listings ---------------------------------------------------------------------------------


def walk_files(root: Root) -> Iterator[tuple[str, str]]:
    """(relative path, full path) of every file under ``root`` that stays inside it.

    Symlinked folders inside the root are followed once each (like Moonraker); ``.git`` and
    anything whose real path is outside the root are skipped.
    """
    st = os.stat(root.real)
    visited = {(st.st_dev, st.st_ino)}
    for folder, dirs, files in os.walk(root.real, followlinks=True):
        keep = []
        for name in dirs:
            full = os.path.join(folder, name)
            if name == ".git" or not inside(os.path.realpath(full), root.real):
                continue
            try:
                dst = os.stat(full)
            except OSError:
                continue
            key = (dst.st_dev, dst.st_ino)
            if key not in visited:
                visited.add(key)
                keep.append(name)
        dirs[:] = keep
        rel_folder = os.path.relpath(folder, root.real)
        for name in files:
            full = os.path.join(folder, name)
            if is_temporary(name):
                continue
            if not inside(os.path.realpath(full), root.real) or not os.path.exists(full):
                continue
            yield (name if rel_folder == "." else f"{rel_folder}/{name}"), full


def file_list(root: Root) -> list[dict[str, Any]]:
    """``server.files.list`` of ``root``: every file (only G-code files in ``gcodes``)."""
    found: dict[str, dict[str, Any]] = {}
    try:
        for relative, full in walk_files(root):
            ext = os.path.splitext(relative)[1].lower()
            if root.name == "gcodes" and ext not in GCODE_EXTENSIONS:
                continue
            info = path_info(full, root)
            if info["permissions"] == "":  # vanished meanwhile
                continue
            found[relative] = info
    except OSError as exc:
        raise os_error(exc, root.name) from None
    return [{"path": p, **found[p]} for p in sorted(found, key=str.lower)]


def list_directory(roots: Mapping[str, Root], path: str) -> tuple[Target, dict[str, Any]]:
    """``GET server.files.directory``: the folders and files directly in ``path``."""
    target = locate(roots, path, "path")
    if not os.path.isdir(target.full):
        if os.path.exists(target.full):
            raise ApiError(f"{path}: not a directory", 400)
        raise ApiError(f"directory does not exist ({path})", 404)
    dirs: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    try:
        names = os.listdir(target.full)
        for name in names:
            full = os.path.join(target.full, name)
            if is_temporary(name) or not inside(os.path.realpath(full), target.root.real):
                continue
            info = path_info(full, target.root)
            if info["permissions"] == "":
                continue
            if name == ".git":
                info["permissions"] = ""
            if os.path.isdir(full):
                dirs.append({**info, "dirname": name})
            elif os.path.isfile(full):
                files.append({**info, "filename": name})
        usage = shutil.disk_usage(target.full)
    except OSError as exc:
        raise os_error(exc, path) from None
    return target, {
        "dirs": dirs,
        "files": files,
        "disk_usage": {"total": usage.total, "used": usage.used, "free": usage.free},
        "root_info": {"name": target.root.name, "permissions": target.root.permissions},
    }
