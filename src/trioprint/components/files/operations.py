"""The changes the file manager makes: folders created and deleted, files moved, copied,
deleted, archived, uploads put in place (each run in a worker thread, under the component's
lock; each returns Moonraker's result/notification body, see :func:`.roots.change`).

``in_use(target)`` raises the 403 for a target that is the file being printed or contains it.
Where this differs from Moonraker on purpose: a folder cannot be moved or copied into itself;
copying a folder skips the links inside it that lead out of the root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

from ...domain.paths import is_temporary
from ...errors import ApiError
from .roots import Root, Target, change, check_writable, inside, join, locate, os_error

#: Raises the 403 when a target is the file being printed or contains it.
InUse = Callable[[Target], None]


def place_upload(
    roots: Mapping[str, Root], root: str, relative: str, spooled: str, in_use: InUse
) -> dict[str, Any]:
    """Move a complete upload (``spooled``) to ``root/relative``, atomically."""
    from ..uploads import move_into_place

    target = locate(roots, f"{root}/{relative}", "path")
    check_writable(target, "cannot upload")
    if os.path.isdir(target.full):
        raise ApiError(f"{target.request}: is a directory", 400)
    try:
        in_use(target)
    except ApiError:
        raise ApiError("File is loaded, upload not permitted", 403) from None
    existed = os.path.exists(target.full)
    try:
        os.makedirs(os.path.dirname(target.full), exist_ok=True)
        move_into_place(spooled, target.full)
    except OSError as exc:
        raise os_error(exc, target.request) from None
    return change("modify_file" if existed else "create_file", target)


def create_dir(roots: Mapping[str, Root], path: str) -> dict[str, Any]:
    target = locate(roots, path, "path")
    check_writable(target, "cannot create directory")
    if not target.relative:
        raise ApiError(f"{path}: already exists", 400)
    try:
        os.mkdir(target.full)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise ApiError(f"{path}: the parent directory does not exist", 404) from None
        raise os_error(exc, path) from None
    return change("create_dir", target)


def delete_dir(roots: Mapping[str, Root], path: str, force: bool, in_use: InUse) -> dict[str, Any]:
    target = locate(roots, path, "path")
    check_writable(target, "cannot delete directory")
    if not target.relative:
        raise ApiError(f"{path}: cannot delete a root directory", 403)
    if os.path.islink(target.full) or not os.path.isdir(target.full):
        if os.path.lexists(target.full):
            raise ApiError(f"{path}: not a directory", 400)
        raise ApiError(f"directory does not exist ({path})", 404)
    try:
        if force:
            in_use(target)
            shutil.rmtree(target.full)
        else:
            os.rmdir(target.full)
    except OSError as exc:
        raise os_error(exc, path) from None
    return change("delete_dir", target)


def _endpoints(roots: Mapping[str, Root], source: str, dest: str) -> tuple[Target, Target]:
    src = locate(roots, source, "source")
    dst = locate(roots, dest, "dest")
    check_writable(dst, "destination")
    if not src.relative:
        raise ApiError(f"source {source!r}: a root directory cannot be moved or copied", 403)
    if not os.path.lexists(src.full):
        raise ApiError(f"source {source!r} does not exist", 404)
    return src, dst


def _final(src: Target, dst: Target, into_dir: bool) -> Target:
    """Where ``src`` lands: inside ``dst`` when it is a folder and ``into_dir``."""
    if into_dir and os.path.isdir(dst.full):
        name = os.path.basename(src.full)
        full = os.path.join(os.path.realpath(dst.full), name)
        if not inside(os.path.realpath(full), dst.root.real):
            raise ApiError(f"dest {dst.request!r} leads outside the {dst.root.name} root", 403)
        return Target(dst.root, join(dst.relative, name), full, join(dst.request, name))
    return dst


def _check_not_into_itself(src: Target, final: Target, verb: str) -> None:
    if os.path.isdir(src.full) and not os.path.islink(src.full):
        real_src = os.path.realpath(src.full)
        real_final = os.path.realpath(final.full)
        if inside(real_final, real_src):
            raise ApiError(f"cannot {verb} {src.request!r} into itself ({final.request!r})", 400)


def move(roots: Mapping[str, Root], source: str, dest: str, in_use: InUse) -> dict[str, Any]:
    src, dst = _endpoints(roots, source, dest)
    check_writable(src, "source")
    final = _final(src, dst, into_dir=True)
    _check_not_into_itself(src, final, "move")
    is_dir = os.path.isdir(src.full) and not os.path.islink(src.full)
    if os.path.lexists(final.full):
        if is_dir or os.path.isdir(final.full):
            raise ApiError(f"dest {final.request!r}: already exists", 400)
        in_use(final)
    in_use(src)
    try:
        shutil.move(src.full, final.full)
    except OSError as exc:
        raise os_error(exc, f"move {source!r} to {dest!r}") from None
    except shutil.Error as exc:
        raise ApiError(f"cannot move {source!r} to {dest!r}: {exc}", 400) from None
    return change("move_dir" if is_dir else "move_file", final, src)


def copy(roots: Mapping[str, Root], source: str, dest: str, in_use: InUse) -> dict[str, Any]:
    src, dst = _endpoints(roots, source, dest)
    is_dir = os.path.isdir(src.full)
    final = _final(src, dst, into_dir=not is_dir)
    _check_not_into_itself(src, final, "copy")
    action = "create_dir" if is_dir else "create_file"
    if os.path.lexists(final.full):
        if is_dir or os.path.isdir(final.full):
            raise ApiError(f"dest {final.request!r}: already exists", 400)
        action = "modify_file"
        in_use(final)
    try:
        if is_dir:
            shutil.copytree(src.full, final.full, ignore=_outside_of(src.root))
        else:
            shutil.copy2(src.full, final.full)
    except OSError as exc:
        raise os_error(exc, f"copy {source!r} to {dest!r}") from None
    except shutil.Error as exc:
        raise ApiError(f"cannot copy {source!r} to {dest!r}: {exc}", 400) from None
    return change(action, final)


def _outside_of(root: Root) -> Callable[[str, list[str]], set[str]]:
    """copytree's ``ignore``: the entries leading out of ``root``, and ``.git``."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {
            n
            for n in names
            if n == ".git"
            or is_temporary(n)
            or not inside(os.path.realpath(os.path.join(folder, n)), root.real)
        }

    return ignore


def delete_file(roots: Mapping[str, Root], path: str, in_use: InUse) -> dict[str, Any]:
    target = locate(roots, path, "path")
    check_writable(target, "cannot delete file")
    if not os.path.lexists(target.full):
        # 400, not 404: Moonraker 0.11 answers a delete of a missing file so
        raise ApiError(f"invalid file path: file does not exist ({path})", 400)
    if os.path.isdir(target.full) and not os.path.islink(target.full):
        raise ApiError(f"{path}: is a directory (use DELETE /server/files/directory)", 400)
    in_use(target)
    try:
        os.remove(target.full)
    except OSError as exc:
        raise os_error(exc, path) from None
    return change("delete_file", target)


# --- archives ---------------------------------------------------------------------------------


def zip_items(
    roots: Mapping[str, Root], items: list[str], dest: str, store_only: bool
) -> dict[str, Any]:
    """The files in ``items`` and those directly in its folders, archived at ``dest``."""
    target = locate(roots, dest, "dest")
    check_writable(target, "cannot create archive")
    if not target.relative or os.path.isdir(target.full):
        raise ApiError(f"cannot create archive at {dest!r}: it is a directory", 400)
    folder = os.path.dirname(target.full)
    if not os.path.isdir(folder):
        raise ApiError(
            f"cannot create archive at {dest!r}: the parent directory does not exist", 404
        )
    sources = [locate(roots, item, "item") for item in items]
    members: list[tuple[str, str]] = []  # (full path, name in the archive)
    seen: set[tuple[int, int]] = set()

    def add(full: str, arcname: str) -> None:
        try:
            st = os.stat(full)
        except OSError:
            return
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            members.append((full, arcname))

    for source in sources:
        base = join(source.root.name, source.relative)
        if os.path.isfile(source.full):
            add(source.full, base)
        elif os.path.isdir(source.full):
            for name in sorted(os.listdir(source.full)):
                full = os.path.join(source.full, name)
                if (
                    name == ".git"
                    or is_temporary(name)
                    or not os.path.isfile(full)
                    or not inside(os.path.realpath(full), source.root.real)
                ):
                    continue
                add(full, f"{base}/{name}")
        elif os.path.lexists(source.full):
            raise ApiError(f"item {source.request!r} is not a file or directory", 400)
        else:
            raise ApiError(f"item {source.request!r} does not exist", 404)
    method = zipfile.ZIP_STORED if store_only else zipfile.ZIP_DEFLATED
    fd, tmp = tempfile.mkstemp(prefix=".zip-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", compression=method, strict_timestamps=False) as zf:
                for full, arcname in members:
                    try:
                        zf.write(full, arcname=arcname)
                    except PermissionError:
                        continue  # unreadable: left out, as Moonraker does
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target.full)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(exc, dest) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return change("create_file", target)
