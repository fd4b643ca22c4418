"""``server.files.*``: the file roots (gcodes, config, logs, ...) and the operations on them.

Every request path is ``root/relative/path``. It is checked as text first
(:mod:`trioprint.domain.paths`: no ``..``, NUL, backslash, absolute path, over-long name), then
on the file system: the real path of the item's folder and of the item itself (symlinks
followed) must both be inside the root's real path, compared component by component, so a
symlink leading out of a root is refused (403) for reading and writing alike, and a sibling
folder sharing the root's name as a prefix (``gcodes_evil``) is never inside ``gcodes``. An
operation acts on ``<real folder>/<name>``, so it never goes through a link that leaves the root.

Results and notifications have Moonraker 0.11's shapes. Where this component differs from
Moonraker on purpose:

* statuses: a missing file or folder is a 404 (Moonraker: 400); writing to a read-only root,
  deleting a root and touching the file being printed are 403 (Moonraker: 400 or 405); an item
  that already exists is a 400, as in Moonraker;
* a symlink whose target is outside the root is not listed, and cannot be read, moved, deleted
  or copied; copying a folder skips the links inside it that lead out of the root;
* a folder cannot be moved or copied into itself.

All file-system work runs in a worker thread (:func:`trio.to_thread.run_sync`); operations
that change something are serialized by one lock.

Changes other programs make in the writable roots (``config``, ``gcodes``, the ones Moonraker
watches) are found by scanning them in a worker thread and comparing the scan with the
previous one (:mod:`trioprint.domain.snapshots`); they are announced as trioprint's own changes
are. On Linux a scan is triggered by inotify (:mod:`trioprint.transport.inotify`): every folder
of the writable roots is watched, and an event that may matter
(:func:`trioprint.domain.inotify.calls_for_rescan`) is followed by :data:`DEBOUNCE` seconds of
gathering the events after it, one rescan, and watches for the folders that appeared (then one
more rescan, for what happened in them before they were watched). Where inotify cannot be used
(not Linux, no descriptor or watch left, a failure of the watcher) the roots are scanned every
``[file_manager] watch_interval`` seconds instead; ``0`` turns watching off. After each of its
own changes this component rescans the paths it touched, under the same lock, so those are
never announced twice (what another program changed at such a path since the last scan is
taken in with it, unannounced). Hidden names (``.thumbs``, ``.git``, temporary files) are not
watched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any, Protocol

import attrs
import trio
from quart import Response

from ..bus import Bus, Event
from ..config import Config
from ..domain.inotify import IN_IGNORED, WATCH_MASK, InotifyEvent, WatchTable, calls_for_rescan
from ..domain.paths import PathError, confined, is_temporary, split_root
from ..domain.snapshots import Entry, Snapshot, diff, replace_subtree
from ..errors import ApiError
from ..registry import Call, NoParams, Transport, endpoint
from ..transport.inotify import Inotify

log = logging.getLogger(__name__)

#: Files the ``gcodes`` root lists (Moonraker's ``VALID_GCODE_EXTS``).
GCODE_EXTENSIONS = frozenset({".gcode", ".g", ".gco", ".ufp", ".nc"})
#: Bytes read at a time when a file is served.
CHUNK_SIZE = 64 * 1024
#: Seconds the inotify watcher gathers events after the first one before it rescans.
DEBOUNCE = 0.2


class Broadcaster(Protocol):
    """What this component needs of the websocket manager."""

    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


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


# --- parameters -----------------------------------------------------------------------------


@attrs.frozen
class ListParams:
    root: str = "gcodes"


@attrs.frozen
class DirectoryParams:
    path: str = "gcodes"
    extended: bool = False
    force: bool = False


@attrs.frozen
class MoveCopyParams:
    source: str
    dest: str


@attrs.frozen
class DeleteFileParams:
    path: str


@attrs.frozen
class ZipParams:
    #: request paths of files and folders; a comma-separated string is accepted too
    items: str | list[str] | None = None
    #: default: ``config/collection-<local time>.zip``
    dest: str | None = None
    store_only: bool = False


#: ``extended`` listings: ``gcodes``-relative paths -> their cached metadata (only those known).
MetadataLookup = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]
#: Metadata keys an ``extended`` listing never takes from the cache: the entry's own.
_ENTRY_KEYS = frozenset({"filename", "size", "modified", "permissions"})


# --- file-system helpers (run in a worker thread) --------------------------------------------


def _inside(path: str, root: str) -> bool:
    return confined(PurePosixPath(path), PurePosixPath(root))


def _os_error(exc: OSError, what: str) -> ApiError:
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


def _path_info(full: str, root: Root) -> dict[str, Any]:
    """Moonraker's ``{modified, size, permissions}`` of an item (zeros when it is gone)."""
    try:
        st = os.stat(full)
    except OSError:
        return {"modified": 0, "size": 0, "permissions": ""}
    permissions = root.permissions
    if stat.S_ISREG(st.st_mode) and os.path.islink(full):
        permissions = "r"
    return {"modified": st.st_mtime, "size": st.st_size, "permissions": permissions}


def _join(relative: str, name: str) -> str:
    return f"{relative}/{name}" if relative else name


def _walk_files(root: Root) -> Iterator[tuple[str, str]]:
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
            if name == ".git" or not _inside(os.path.realpath(full), root.real):
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
            if not _inside(os.path.realpath(full), root.real) or not os.path.exists(full):
                continue
            yield (name if rel_folder == "." else f"{rel_folder}/{name}"), full


def _entry(st: os.stat_result) -> Entry:
    if stat.S_ISDIR(st.st_mode):
        return Entry(True)
    return Entry(False, st.st_size, st.st_mtime_ns)


def _scan_tree(root: Root, relative: str = "") -> dict[str, Entry]:
    """The watched items at ``relative`` and below it in ``root``, as found now (thread only).

    Hidden names are skipped, and so are symlinks leading out of the root; a symlinked folder
    inside the root is an entry, but is not descended into.
    """
    found: dict[str, Entry] = {}
    if relative:
        if any(part.startswith(".") for part in relative.split("/")):
            return found
        start = os.path.join(root.real, relative)
        try:
            if not _inside(os.path.realpath(start), root.real):
                return found
            st = os.stat(start)
        except OSError:
            return found
        found[relative] = _entry(st)
        if not stat.S_ISDIR(st.st_mode) or os.path.islink(start):
            return found
        pending = [(start, relative + "/")]
    else:
        pending = [(root.real, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for item in entries:
            if item.name.startswith("."):
                continue
            try:
                link = item.is_symlink()
                if link and not _inside(os.path.realpath(item.path), root.real):
                    continue
                st = item.stat()
            except OSError:
                continue  # vanished meanwhile, or a broken link
            found[prefix + item.name] = _entry(st)
            if stat.S_ISDIR(st.st_mode) and not link:
                pending.append((item.path, prefix + item.name + "/"))
    return found


class _WatchLimit(OSError):
    """inotify_add_watch failed with ENOSPC: no watch left for this user."""


class Files:
    """Moonraker's ``file_manager``: roots, listings, changes, downloads, archives, watching
    (uploads, metadata and thumbnails are in :mod:`.uploads` and :mod:`.metadata`)."""

    name = "file_manager"

    def __init__(self, config: Config, bus: Bus, websockets: Broadcaster) -> None:
        self._bus = bus
        self._websockets = websockets
        self._specs = root_specs(config)
        self._roots: dict[str, Root] | None = None
        self._lock = trio.Lock()
        #: ``is_printing(path)``: whether the file being printed is ``path`` (relative to the
        #: gcodes root) or inside the folder ``path`` (see :func:`printing_check`).
        self.is_printing: Callable[[str], bool] = lambda _: False
        #: ``extended`` listings take each G-code file's cached metadata from here.
        self.metadata_lookup: MetadataLookup | None = None
        self.warnings: list[str] = []
        self.watch_interval = config.file_manager.watch_interval
        #: Whether :meth:`run` tries inotify before falling back to scanning periodically.
        self.use_inotify = True
        #: How :meth:`run` watches now: "inotify", "polling", or None (not, or not yet).
        self.watching: str | None = None
        #: root name -> its last scan; None until the first scan (see :meth:`scan_changes`).
        self._snapshots: dict[str, dict[str, Entry]] | None = None

    # -- set-up --

    def _setup(self) -> dict[str, Root]:
        roots: dict[str, Root] = {}
        for spec in self._specs:
            if spec.create and not os.path.isdir(spec.path):
                try:
                    os.makedirs(spec.path, exist_ok=True)
                except OSError as exc:
                    self.warnings.append(
                        f"file_manager: cannot create the {spec.name} folder {spec.path}: "
                        f"{exc.strerror or exc}"
                    )
                    continue
            real = os.path.realpath(spec.path)
            if not os.path.isdir(real) or real == "/":
                if spec.create:
                    self.warnings.append(
                        f"file_manager: the {spec.name} folder {spec.path} is not a directory"
                    )
                continue
            roots[spec.name] = Root(spec.name, real, spec.writable)
        from .uploads import remove_leftovers

        for root in roots.values():
            for path in remove_leftovers(root.real):
                log.info("file_manager: removed %s, left by an upload that did not finish", path)
        return roots

    async def roots(self) -> dict[str, Root]:
        """The roots in service (created on first use)."""
        if self._roots is None:
            roots = await trio.to_thread.run_sync(self._setup)
            if self._roots is None:
                self._roots = roots
                for warning in self.warnings:
                    log.warning("%s", warning)
        return self._roots

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Create the missing root folders, then watch the writable roots for changes other
        programs make: with inotify where it can be used, else by scanning them every
        ``watch_interval`` seconds; not at all if that is 0."""
        await self.roots()
        task_status.started()
        if self.watch_interval <= 0:
            return
        await self._scan_logged()  # the first one records what is there at start-up
        notify = self._open_inotify() if self.use_inotify else None
        if notify is not None:
            self.watching = "inotify"
            with notify:
                try:
                    await self._watch_with_inotify(notify)
                except _WatchLimit as exc:
                    log.warning(
                        "file_manager: cannot watch %s with inotify (%s: raise "
                        "fs.inotify.max_user_watches); scanning every %g s instead",
                        exc.filename,
                        exc.strerror,
                        self.watch_interval,
                    )
                except Exception:  # the watcher must not take the server down
                    log.exception(
                        "file_manager: the inotify watcher failed; scanning every %g s instead",
                        self.watch_interval,
                    )
        else:
            log.info(
                "file_manager: watching the writable roots by scanning them every %g s",
                self.watch_interval,
            )
        self.watching = "polling"
        while True:
            await trio.sleep(self.watch_interval)
            await self._scan_logged()

    # -- watching --

    async def _scan_logged(self) -> None:
        try:
            await self.scan_changes()
        except Exception:  # the watcher must not take the server down: it tries again
            log.exception("file_manager: scanning the roots for changes failed")

    def _open_inotify(self) -> Inotify | None:
        try:
            notify = Inotify.open()
        except OSError as exc:
            log.info("file_manager: inotify is not available (%s)", exc.strerror or exc)
            return None
        except Exception:  # whatever ctypes does, the watcher can still poll
            log.exception("file_manager: inotify could not be opened")
            return None
        log.info("file_manager: watching the writable roots with inotify")
        return notify

    async def _watch_with_inotify(self, notify: Inotify) -> None:
        """Watch every folder of the writable roots; on an event that may matter, gather what
        follows for :data:`DEBOUNCE` seconds, then rescan (which announces), then watch the
        folders that appeared. Returns only by raising (then the caller polls)."""
        watches = WatchTable()
        while await self._sync_watches(notify, watches):
            # folders got watches: what happened in them before is found by scanning again
            await self._scan_logged()
        while True:
            if not self._take_events(await notify.read(), watches):
                continue
            with trio.move_on_after(DEBOUNCE):
                while True:
                    self._take_events(await notify.read(), watches)
            await self._scan_logged()
            while await self._sync_watches(notify, watches):
                await self._scan_logged()

    @staticmethod
    def _take_events(events: list[InotifyEvent], watches: WatchTable) -> bool:
        """Forget the watches the kernel dropped; whether any event calls for a rescan."""
        rescan = False
        for event in events:
            if event.mask & IN_IGNORED and watches.ignored(event.wd):
                rescan = True  # a watched folder went: a new one may have its path now
            rescan = rescan or calls_for_rescan(event)
        return rescan

    async def _sync_watches(self, notify: Inotify, watches: WatchTable) -> bool:
        """Watch the roots and every folder of the last scan, stop watching folders no longer
        in it; whether a watch was added."""
        roots = await self.roots()
        async with self._lock:
            return await trio.to_thread.run_sync(self._sync_watches_now, roots, notify, watches)

    def _sync_watches_now(
        self, roots: Mapping[str, Root], notify: Inotify, watches: WatchTable
    ) -> bool:  # thread, locked
        snapshots = self._snapshots or {}
        wanted: list[tuple[str, str]] = []
        for name, root in roots.items():
            if root.writable:  # watched even before a scan succeeded: its events lead to one
                wanted.append((name, ""))
                snapshot = snapshots.get(name, {})
                wanted.extend((name, path) for path, entry in snapshot.items() if entry.is_dir)
        for wd in watches.drop_unwanted(wanted):
            notify.rm_watch(wd)
        added = False
        for key in watches.missing(wanted):
            name, path = key
            full = os.path.join(roots[name].real, path) if path else roots[name].real
            try:
                wd = notify.add_watch(full, WATCH_MASK)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise _WatchLimit(exc.errno, exc.strerror, full) from exc
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
                    continue  # gone or replaced since the scan (an event tells), a symlink
                raise
            watches.added(key, wd)
            added = True
        return added

    async def scan_changes(self) -> list[dict[str, Any]]:
        """Scan the writable roots now and announce what changed since the previous scan
        (``notify_filelist_changed`` and :class:`FileChanged`, one per change); return the
        notification bodies. The first scan only records what is there."""
        roots = await self.roots()
        async with self._lock:
            results = await trio.to_thread.run_sync(self._rescan, roots)
        for result in results:
            self._announce(result)
        return results

    def _rescan(self, roots: Mapping[str, Root]) -> list[dict[str, Any]]:  # thread, locked
        previous = self._snapshots
        snapshots: dict[str, dict[str, Entry]] = {}
        results: list[dict[str, Any]] = []
        for root in roots.values():
            if not root.writable:
                continue
            snapshots[root.name] = new = _scan_tree(root)
            old: Snapshot | None = None if previous is None else previous.get(root.name)
            if old is None:
                continue
            for change in diff(old, new):
                full = os.path.join(root.real, change.path)
                target = Target(root, change.path, full, f"{root.name}/{change.path}")
                results.append(self._change(change.action, target))
        self._snapshots = snapshots
        return results

    def _refresh(self, roots: Mapping[str, Root], result: dict[str, Any]) -> None:
        """Take a change of trioprint's own into the snapshots, so that the next scan does
        not announce it again (thread, locked)."""
        if self._snapshots is None:
            return
        for item in (result.get("item"), result.get("source_item")):
            if item is None:
                continue
            root, snapshot = roots.get(item["root"]), self._snapshots.get(item["root"])
            if root is None or snapshot is None:
                continue
            path: str = item["path"]
            parts = path.split("/")
            for i in range(1, len(parts)):  # folders the change created on the way
                if "/".join(parts[:i]) not in snapshot:
                    path = "/".join(parts[:i])
                    break
            self._snapshots[root.name] = replace_subtree(snapshot, path, _scan_tree(root, path))

    async def locate(self, request: str, what: str = "path") -> str:
        """The real path of ``request`` (``root/relative``), checked as every request is."""
        roots = await self.roots()
        target = await trio.to_thread.run_sync(self._locate, roots, request, what)
        return target.full

    async def gcode_files(self) -> list[str]:
        """Every G-code file in the gcodes root, relative to it."""
        root = (await self.roots()).get("gcodes")
        if root is None:
            return []
        return [entry["path"] for entry in await trio.to_thread.run_sync(self._file_list, root)]

    async def gcode_file_exists(self, relative: str) -> bool:
        """Whether klippy's virtual_sdcard would find ``relative`` in the gcodes root: the
        file itself, else a G-code file whose path differs only in case (klippy's fallback)."""
        roots = await self.roots()
        root = roots.get("gcodes")
        if root is None:
            return False

        def check() -> bool:
            try:
                target = self._locate(roots, f"gcodes/{relative}", "filename")
            except ApiError:
                return False
            if os.path.isfile(target.full):
                return True
            wanted = relative.lower()
            return any(entry["path"].lower() == wanted for entry in self._file_list(root))

        return await trio.to_thread.run_sync(check)

    def registered_directories(self) -> list[str]:
        """The root names (``server.info``'s ``registered_directories``)."""
        return list(self._roots or {})

    # -- path checks --

    def _locate(self, roots: Mapping[str, Root], request: str, what: str) -> Target:
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
        if not _inside(folder, root.real) or not _inside(os.path.realpath(full), root.real):
            raise ApiError(f"{what} {request!r} leads outside the {root.name} root", 403)
        return Target(root, text, full, request)

    def _check_not_printing(self, target: Target) -> None:
        """403 when ``target`` is the file being printed or contains it (thread only)."""
        if target.root.name != "gcodes":
            return
        if trio.from_thread.run_sync(self.is_printing, target.relative):
            raise ApiError(f"{target.request}: file currently in use by the print", 403)

    @staticmethod
    def _check_writable(target: Target, what: str) -> None:
        if not target.root.writable:
            raise ApiError(
                f"{what} {target.request!r}: the {target.root.name} root is read-only", 403
            )

    # -- results and notifications --

    def _change(self, action: str, target: Target, source: Target | None = None) -> dict[str, Any]:
        """Moonraker's result/notification body for a change (thread only)."""
        item = _path_info(target.full, target.root)
        item.update({"path": target.relative, "root": target.root.name})
        result: dict[str, Any] = {"item": item, "action": action}
        if source is not None:
            result["source_item"] = {"path": source.relative, "root": source.root.name}
        return result

    def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus this component announces its changes on (the uploads
        add what the uploader asked for: :class:`~.uploads.FileUploaded`)."""
        self._bus.publish(event)

    def _announce(self, result: dict[str, Any]) -> None:
        self._websockets.broadcast("notify_filelist_changed", [result])
        source = result.get("source_item")
        self._bus.publish(
            FileChanged(
                result["action"],
                result["item"]["root"],
                result["item"]["path"],
                None if source is None else source["root"],
                None if source is None else source["path"],
            )
        )

    async def _mutate(self, work: Callable[[dict[str, Root]], dict[str, Any]]) -> dict[str, Any]:
        roots = await self.roots()

        def work_and_refresh() -> dict[str, Any]:
            result = work(roots)
            self._refresh(roots, result)
            return result

        async with self._lock:
            result = await trio.to_thread.run_sync(work_and_refresh)
        self._announce(result)
        return result

    async def place_upload(self, root: str, relative: str, spooled: str) -> dict[str, Any]:
        """Move a complete upload (``spooled``) to ``root/relative``, atomically."""
        from .uploads import move_into_place

        def work(roots: dict[str, Root]) -> dict[str, Any]:
            target = self._locate(roots, f"{root}/{relative}", "path")
            self._check_writable(target, "cannot upload")
            if os.path.isdir(target.full):
                raise ApiError(f"{target.request}: is a directory", 400)
            try:
                self._check_not_printing(target)
            except ApiError:
                raise ApiError("File is loaded, upload not permitted", 403) from None
            existed = os.path.exists(target.full)
            try:
                os.makedirs(os.path.dirname(target.full), exist_ok=True)
                move_into_place(spooled, target.full)
            except OSError as exc:
                raise _os_error(exc, target.request) from None
            return self._change("modify_file" if existed else "create_file", target)

        return await self._mutate(work)

    # -- endpoints --

    @endpoint("/server/files/roots", "GET", params=NoParams)
    async def list_roots(self, call: Call[NoParams]) -> list[dict[str, Any]]:
        roots = await self.roots()
        return [
            {"name": r.name, "path": r.real, "permissions": r.permissions} for r in roots.values()
        ]

    @endpoint("/server/files/list", "GET", params=ListParams)
    async def list_files(self, call: Call[ListParams]) -> list[dict[str, Any]]:
        roots = await self.roots()
        name = call.params.root
        root = roots.get(name)
        if root is None:
            known = ", ".join(roots)
            raise ApiError(f"invalid argument 'root': unknown root {name!r} (roots: {known})")
        return await trio.to_thread.run_sync(self._file_list, root)

    @staticmethod
    def _file_list(root: Root) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        try:
            for relative, full in _walk_files(root):
                ext = os.path.splitext(relative)[1].lower()
                if root.name == "gcodes" and ext not in GCODE_EXTENSIONS:
                    continue
                info = _path_info(full, root)
                if info["permissions"] == "":  # vanished meanwhile
                    continue
                found[relative] = info
        except OSError as exc:
            raise _os_error(exc, root.name) from None
        return [{"path": p, **found[p]} for p in sorted(found, key=str.lower)]

    @endpoint("/server/files/directory", "GET", "POST", "DELETE", params=DirectoryParams)
    async def directory(self, call: Call[DirectoryParams]) -> dict[str, Any]:
        path, force = call.params.path, call.params.force
        if call.verb == "GET":
            roots = await self.roots()
            target, listing = await trio.to_thread.run_sync(self._list_directory, roots, path)
            if call.params.extended and target.root.name == "gcodes":
                await self._merge_metadata(target, listing["files"])
            return listing
        if call.verb == "POST":
            return await self._mutate(lambda roots: self._create_dir(roots, path))
        return await self._mutate(lambda roots: self._delete_dir(roots, path, force))

    async def _merge_metadata(self, folder: Target, entries: list[dict[str, Any]]) -> None:
        """``extended``: each G-code file's cached metadata merged into its entry, as Moonraker
        does (only metadata still valid for the file's size and mtime; nothing is extracted)."""
        if self.metadata_lookup is None:
            return
        wanted = {
            _join(folder.relative, e["filename"]): e
            for e in entries
            if os.path.splitext(e["filename"])[1].lower() in GCODE_EXTENSIONS
        }
        if not wanted:
            return
        known = await self.metadata_lookup(list(wanted))
        for path, meta in known.items():
            entry = wanted.get(path)
            if entry is None:
                continue
            if (meta.get("size"), meta.get("modified")) != (entry["size"], entry["modified"]):
                continue
            entry.update({k: v for k, v in meta.items() if k not in _ENTRY_KEYS})

    def _list_directory(
        self, roots: Mapping[str, Root], path: str
    ) -> tuple[Target, dict[str, Any]]:
        target = self._locate(roots, path, "path")
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
                if is_temporary(name) or not _inside(os.path.realpath(full), target.root.real):
                    continue
                info = _path_info(full, target.root)
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
            raise _os_error(exc, path) from None
        return target, {
            "dirs": dirs,
            "files": files,
            "disk_usage": {"total": usage.total, "used": usage.used, "free": usage.free},
            "root_info": {"name": target.root.name, "permissions": target.root.permissions},
        }

    def _create_dir(self, roots: Mapping[str, Root], path: str) -> dict[str, Any]:
        target = self._locate(roots, path, "path")
        self._check_writable(target, "cannot create directory")
        if not target.relative:
            raise ApiError(f"{path}: already exists", 400)
        try:
            os.mkdir(target.full)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise ApiError(f"{path}: the parent directory does not exist", 404) from None
            raise _os_error(exc, path) from None
        return self._change("create_dir", target)

    def _delete_dir(self, roots: Mapping[str, Root], path: str, force: bool) -> dict[str, Any]:
        target = self._locate(roots, path, "path")
        self._check_writable(target, "cannot delete directory")
        if not target.relative:
            raise ApiError(f"{path}: cannot delete a root directory", 403)
        if os.path.islink(target.full) or not os.path.isdir(target.full):
            if os.path.lexists(target.full):
                raise ApiError(f"{path}: not a directory", 400)
            raise ApiError(f"directory does not exist ({path})", 404)
        try:
            if force:
                self._check_not_printing(target)
                shutil.rmtree(target.full)
            else:
                os.rmdir(target.full)
        except OSError as exc:
            raise _os_error(exc, path) from None
        return self._change("delete_dir", target)

    @endpoint("/server/files/move", "POST", params=MoveCopyParams)
    async def move(self, call: Call[MoveCopyParams]) -> dict[str, Any]:
        source, dest = call.params.source, call.params.dest
        return await self._mutate(lambda roots: self._move(roots, source, dest))

    @endpoint("/server/files/copy", "POST", params=MoveCopyParams)
    async def copy(self, call: Call[MoveCopyParams]) -> dict[str, Any]:
        source, dest = call.params.source, call.params.dest
        return await self._mutate(lambda roots: self._copy(roots, source, dest))

    def _endpoints(
        self, roots: Mapping[str, Root], source: str, dest: str
    ) -> tuple[Target, Target]:
        src = self._locate(roots, source, "source")
        dst = self._locate(roots, dest, "dest")
        self._check_writable(dst, "destination")
        if not src.relative:
            raise ApiError(f"source {source!r}: a root directory cannot be moved or copied", 403)
        if not os.path.lexists(src.full):
            raise ApiError(f"source {source!r} does not exist", 404)
        return src, dst

    def _final(self, src: Target, dst: Target, into_dir: bool) -> Target:
        """Where ``src`` lands: inside ``dst`` when it is a folder and ``into_dir``."""
        if into_dir and os.path.isdir(dst.full):
            name = os.path.basename(src.full)
            full = os.path.join(os.path.realpath(dst.full), name)
            if not _inside(os.path.realpath(full), dst.root.real):
                raise ApiError(f"dest {dst.request!r} leads outside the {dst.root.name} root", 403)
            return Target(dst.root, _join(dst.relative, name), full, _join(dst.request, name))
        return dst

    @staticmethod
    def _check_not_into_itself(src: Target, final: Target, verb: str) -> None:
        if os.path.isdir(src.full) and not os.path.islink(src.full):
            real_src = os.path.realpath(src.full)
            real_final = os.path.realpath(final.full)
            if _inside(real_final, real_src):
                raise ApiError(
                    f"cannot {verb} {src.request!r} into itself ({final.request!r})", 400
                )

    def _move(self, roots: Mapping[str, Root], source: str, dest: str) -> dict[str, Any]:
        src, dst = self._endpoints(roots, source, dest)
        self._check_writable(src, "source")
        final = self._final(src, dst, into_dir=True)
        self._check_not_into_itself(src, final, "move")
        is_dir = os.path.isdir(src.full) and not os.path.islink(src.full)
        if os.path.lexists(final.full):
            if is_dir or os.path.isdir(final.full):
                raise ApiError(f"dest {final.request!r}: already exists", 400)
            self._check_not_printing(final)
        self._check_not_printing(src)
        try:
            shutil.move(src.full, final.full)
        except OSError as exc:
            raise _os_error(exc, f"move {source!r} to {dest!r}") from None
        except shutil.Error as exc:
            raise ApiError(f"cannot move {source!r} to {dest!r}: {exc}", 400) from None
        return self._change("move_dir" if is_dir else "move_file", final, src)

    def _copy(self, roots: Mapping[str, Root], source: str, dest: str) -> dict[str, Any]:
        src, dst = self._endpoints(roots, source, dest)
        is_dir = os.path.isdir(src.full)
        final = self._final(src, dst, into_dir=not is_dir)
        self._check_not_into_itself(src, final, "copy")
        action = "create_dir" if is_dir else "create_file"
        if os.path.lexists(final.full):
            if is_dir or os.path.isdir(final.full):
                raise ApiError(f"dest {final.request!r}: already exists", 400)
            action = "modify_file"
            self._check_not_printing(final)
        try:
            if is_dir:
                shutil.copytree(src.full, final.full, ignore=self._outside_of(src.root))
            else:
                shutil.copy2(src.full, final.full)
        except OSError as exc:
            raise _os_error(exc, f"copy {source!r} to {dest!r}") from None
        except shutil.Error as exc:
            raise ApiError(f"cannot copy {source!r} to {dest!r}: {exc}", 400) from None
        return self._change(action, final)

    @staticmethod
    def _outside_of(root: Root) -> Callable[[str, list[str]], set[str]]:
        """copytree's ``ignore``: the entries leading out of ``root``, and ``.git``."""

        def ignore(folder: str, names: list[str]) -> set[str]:
            return {
                n
                for n in names
                if n == ".git"
                or is_temporary(n)
                or not _inside(os.path.realpath(os.path.join(folder, n)), root.real)
            }

        return ignore

    @endpoint(
        "/server/files/delete_file",
        "DELETE",
        params=DeleteFileParams,
        transports=Transport.WEBSOCKET,
        rpc="server.files.delete_file",
    )
    async def delete_file(self, call: Call[DeleteFileParams]) -> dict[str, Any]:
        return await self.remove_file(call.params.path)

    async def remove_file(self, path: str) -> dict[str, Any]:
        """Delete one file (for ``DELETE /server/files/{root}/{path}`` as well)."""
        return await self._mutate(lambda roots: self._delete_file(roots, path))

    def _delete_file(self, roots: Mapping[str, Root], path: str) -> dict[str, Any]:
        target = self._locate(roots, path, "path")
        self._check_writable(target, "cannot delete file")
        if not os.path.lexists(target.full):
            # 400, not 404: Moonraker 0.11 answers a delete of a missing file so
            raise ApiError(f"invalid file path: file does not exist ({path})", 400)
        if os.path.isdir(target.full) and not os.path.islink(target.full):
            raise ApiError(f"{path}: is a directory (use DELETE /server/files/directory)", 400)
        self._check_not_printing(target)
        try:
            os.remove(target.full)
        except OSError as exc:
            raise _os_error(exc, path) from None
        return self._change("delete_file", target)

    # -- archives --

    @endpoint("/server/files/zip", "POST", params=ZipParams)
    async def zip(self, call: Call[ZipParams]) -> dict[str, Any]:
        """Moonraker's ``server.files.zip``: the given files, and the files directly inside
        the given folders, in one archive written to ``dest`` (atomically)."""
        items = call.params.items
        if isinstance(items, str):
            items = [i.strip() for i in items.split(",") if i.strip()]
        if not items:
            raise ApiError("At least one file or directory must be specified")
        dest = call.params.dest or time.strftime("config/collection-%Y%m%d-%H%M%S.zip")
        store_only = call.params.store_only
        change = await self._mutate(lambda roots: self._zip(roots, items, dest, store_only))
        return {"destination": change["item"], "action": "zip_files"}

    def _zip(
        self, roots: Mapping[str, Root], items: list[str], dest: str, store_only: bool
    ) -> dict[str, Any]:
        target = self._locate(roots, dest, "dest")
        self._check_writable(target, "cannot create archive")
        if not target.relative or os.path.isdir(target.full):
            raise ApiError(f"cannot create archive at {dest!r}: it is a directory", 400)
        folder = os.path.dirname(target.full)
        if not os.path.isdir(folder):
            raise ApiError(
                f"cannot create archive at {dest!r}: the parent directory does not exist", 404
            )
        sources = [self._locate(roots, item, "item") for item in items]
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
            base = _join(source.root.name, source.relative)
            if os.path.isfile(source.full):
                add(source.full, base)
            elif os.path.isdir(source.full):
                for name in sorted(os.listdir(source.full)):
                    full = os.path.join(source.full, name)
                    if (
                        name == ".git"
                        or is_temporary(name)
                        or not os.path.isfile(full)
                        or not _inside(os.path.realpath(full), source.root.real)
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
            raise _os_error(exc, dest) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return self._change("create_file", target)


# --- downloads ------------------------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A ``Range: bytes=...`` header as ``(start, end)`` (end exclusive), or None for the
    whole file. An unsatisfiable range raises a 416 ApiError; a malformed or multi-part
    header is ignored (RFC 9110), as Tornado does for Moonraker."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first.strip() == "":
            length = int(last)
            if length <= 0:
                raise ApiError(f"range not satisfiable: {header!r}", 416)
            return max(size - length, 0), size
        start = int(first)
        end = max(size, start + 1) if last.strip() == "" else int(last) + 1
    except ValueError:
        return None
    if start < 0 or end <= start:
        return None  # includes a last byte before the first: invalid, so ignored
    if start >= size:
        raise ApiError(f"range not satisfiable: {header!r} (size {size})", 416)
    return start, min(end, size)


async def serve_file(files: Files, root: str, path: str, range_header: str | None) -> Response:
    """``GET /server/files/{root}/{path}``: the file as a streamed Quart response.

    Raises ApiError (400/403/404, 416 for an unsatisfiable range) for the caller to answer.
    The file is opened and read in worker threads, 64 KiB at a time.
    """
    roots = await files.roots()
    request = f"{root}/{path}"

    def open_file() -> tuple[Any, int]:
        target = files._locate(roots, request, "path")
        if not os.path.isfile(target.full):
            if os.path.isdir(target.full):
                raise ApiError(f"{request}: is a directory", 400)
            raise ApiError(f"file does not exist ({request})", 404)
        try:
            handle = open(target.full, "rb")  # noqa: SIM115 (closed by the body generator)
            return handle, os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise _os_error(exc, request) from None

    handle, size = await trio.to_thread.run_sync(open_file)
    try:
        span = parse_range(range_header, size)
    except ApiError:
        await trio.to_thread.run_sync(handle.close)
        raise
    start, end = span if span is not None else (0, size)

    async def body() -> Any:
        try:
            await trio.to_thread.run_sync(handle.seek, start)
            remaining = end - start
            while remaining > 0:
                chunk: bytes = await trio.to_thread.run_sync(
                    handle.read, min(CHUNK_SIZE, remaining)
                )
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            await trio.to_thread.run_sync(handle.close)

    name = os.path.basename(path)
    ascii_name = name.encode("ascii", "replace").decode().replace('"', '\\"')
    headers = {
        "Content-Disposition": (
            f'attachment; filename="{ascii_name}"; '
            f"filename*=UTF-8''{urllib.parse.quote(name, encoding='utf-8')}"
        ),
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
    }
    status = 200
    if span is not None and (start, end) != (0, size):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return Response(body(), status=status, headers=headers, content_type="application/octet-stream")
