"""The :class:`Files` component (Moonraker's ``file_manager``): its state and endpoints.

The path checks and listings are in :mod:`.roots`, the changes in :mod:`.operations`, the
watching in :mod:`.watch`; this module runs them (file-system work in a worker thread,
changes serialized by one lock) and announces each change.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

from ...bus import Bus, Event
from ...config import Config
from ...errors import ApiError
from ...registry import Call, NoParams, Transport, endpoint
from . import operations
from .roots import (
    GCODE_EXTENSIONS,
    FileChanged,
    Root,
    Target,
    file_list,
    join,
    list_directory,
    locate,
    root_specs,
)
from .watch import Watcher

log = logging.getLogger(__name__)


class Broadcaster(Protocol):
    """What this component needs of the websocket manager."""

    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


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


class Files:
    """Moonraker's ``file_manager``: roots, listings, changes, downloads, archives, watching
    (uploads, metadata and thumbnails are in :mod:`..uploads` and :mod:`..metadata`)."""

    name = "file_manager"

    def __init__(self, config: Config, bus: Bus, websockets: Broadcaster) -> None:
        self._bus = bus
        self._websockets = websockets
        self._specs = root_specs(config)
        self._roots: dict[str, Root] | None = None
        self._lock = trio.Lock()
        #: ``is_printing(path)``: whether the file being printed is ``path`` (relative to the
        #: gcodes root) or inside the folder ``path`` (see :func:`.roots.printing_check`).
        self.is_printing: Callable[[str], bool] = lambda _: False
        #: ``extended`` listings take each G-code file's cached metadata from here.
        self.metadata_lookup: MetadataLookup | None = None
        self.warnings: list[str] = []
        self.watch_interval = config.file_manager.watch_interval
        #: Whether :meth:`run` tries inotify before falling back to scanning periodically.
        self.use_inotify = True
        self._watcher = Watcher(self.roots, self._lock, self._announce)

    @property
    def watching(self) -> str | None:
        """How :meth:`run` watches now: "inotify", "polling", or None (not, or not yet)."""
        return self._watcher.watching

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
        from ..uploads import remove_leftovers

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
        ``watch_interval`` seconds; not at all if that is 0 (see :mod:`.watch`)."""
        await self.roots()
        task_status.started()
        if self.watch_interval <= 0:
            return
        await self._watcher.run(self.watch_interval, use_inotify=self.use_inotify)

    async def scan_changes(self) -> list[dict[str, Any]]:
        """Scan the writable roots now and announce what changed since the previous scan
        (``notify_filelist_changed`` and :class:`FileChanged`, one per change); return the
        notification bodies. The first scan only records what is there."""
        return await self._watcher.scan_changes()

    async def locate(self, request: str, what: str = "path") -> str:
        """The real path of ``request`` (``root/relative``), checked as every request is."""
        roots = await self.roots()
        target = await trio.to_thread.run_sync(locate, roots, request, what)
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
                target = locate(roots, f"gcodes/{relative}", "filename")
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

    def _check_not_printing(self, target: Target) -> None:
        """403 when ``target`` is the file being printed or contains it (thread only)."""
        if target.root.name != "gcodes":
            return
        if trio.from_thread.run_sync(self.is_printing, target.relative):
            raise ApiError(f"{target.request}: file currently in use by the print", 403)

    # -- results and notifications --

    def publish(self, event: Event) -> None:
        """Publish ``event`` on the bus this component announces its changes on (the uploads
        add what the uploader asked for: :class:`~..uploads.FileUploaded`)."""
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
            self._watcher.refresh(roots, result)
            return result

        async with self._lock:
            result = await trio.to_thread.run_sync(work_and_refresh)
        self._announce(result)
        return result

    async def place_upload(self, root: str, relative: str, spooled: str) -> dict[str, Any]:
        """Move a complete upload (``spooled``) to ``root/relative``, atomically."""
        in_use = self._check_not_printing
        return await self._mutate(
            lambda roots: operations.place_upload(roots, root, relative, spooled, in_use)
        )

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

    #: The listing of a root (an attribute, so that a test can hold it up).
    _file_list = staticmethod(file_list)

    @endpoint("/server/files/directory", "GET", "POST", "DELETE", params=DirectoryParams)
    async def directory(self, call: Call[DirectoryParams]) -> dict[str, Any]:
        path, force = call.params.path, call.params.force
        if call.verb == "GET":
            roots = await self.roots()
            target, listing = await trio.to_thread.run_sync(list_directory, roots, path)
            if call.params.extended and target.root.name == "gcodes":
                await self._merge_metadata(target, listing["files"])
            return listing
        if call.verb == "POST":
            return await self._mutate(lambda roots: operations.create_dir(roots, path))
        in_use = self._check_not_printing
        return await self._mutate(lambda roots: operations.delete_dir(roots, path, force, in_use))

    async def _merge_metadata(self, folder: Target, entries: list[dict[str, Any]]) -> None:
        """``extended``: each G-code file's cached metadata merged into its entry, as Moonraker
        does (only metadata still valid for the file's size and mtime; nothing is extracted)."""
        if self.metadata_lookup is None:
            return
        wanted = {
            join(folder.relative, e["filename"]): e
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

    @endpoint("/server/files/move", "POST", params=MoveCopyParams)
    async def move(self, call: Call[MoveCopyParams]) -> dict[str, Any]:
        source, dest, in_use = call.params.source, call.params.dest, self._check_not_printing
        return await self._mutate(lambda roots: operations.move(roots, source, dest, in_use))

    @endpoint("/server/files/copy", "POST", params=MoveCopyParams)
    async def copy(self, call: Call[MoveCopyParams]) -> dict[str, Any]:
        source, dest, in_use = call.params.source, call.params.dest, self._check_not_printing
        return await self._mutate(lambda roots: operations.copy(roots, source, dest, in_use))

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
        in_use = self._check_not_printing
        return await self._mutate(lambda roots: operations.delete_file(roots, path, in_use))

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
        change = await self._mutate(
            lambda roots: operations.zip_items(roots, items, dest, store_only)
        )
        return {"destination": change["item"], "action": "zip_files"}
