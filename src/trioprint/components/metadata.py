"""``server.files.metadata``, ``metascan`` and ``thumbnails``: slicer metadata of G-code files.

The parsing is pure (:mod:`trioprint.domain.metadata`: a file's head and tail only, so its cost
does not grow with the file). This component runs it in a worker thread with a timeout, writes
the embedded thumbnails to ``.thumbs/`` beside the file (atomically), and keeps the results in the
database, namespace ``gcode_metadata``, one record per file keyed by its gcodes-relative name (as
Moonraker), each valid while the file's size and mtime stay the same; an in-memory copy answers
reads. A ``<data>/database/metadata.json`` cache left by an earlier trioprint is imported once
(then renamed ``metadata.json.imported``). At start-up a background scan extracts what is
missing, and each G-code file that is uploaded, written or moved in (a ``FileChanged``) is
analysed as it comes, one at a time; each new result is sent as ``notify_metadata_update``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import trio

from ..bus import Bus
from ..domain import strictjson
from ..domain.kv import KeyValueStore
from ..domain.octoprint_events import MetadataAnalysisFinished, MetadataAnalysisStarted
from ..errors import ApiError
from ..registry import Call, endpoint
from .files.manager import Files
from .files.roots import FileChanged

log = logging.getLogger(__name__)

#: Seconds one extraction may take before it is given up (the file keeps its basic fields).
EXTRACT_TIMEOUT = 10.0
GCODE_METADATA = "gcode_metadata"
GCODE_EXTENSIONS = (".gcode", ".g", ".gco")
#: ``notify_filelist_changed`` actions after which a G-code file has new content to analyse.
NEW_CONTENT_ACTIONS = frozenset({"create_file", "modify_file", "move_file"})


@attrs.frozen
class FilenameParams:
    filename: str


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class MetadataStore:
    name = "metadata"

    def __init__(
        self, files: Files, bus: Bus, websockets: Any, data_dir: Path, database: KeyValueStore
    ) -> None:
        self._files = files
        self._bus = bus
        self._websockets = websockets
        self._db = database
        self._legacy_path = data_dir / "database" / "metadata.json"
        self._cache: dict[str, dict[str, Any]] = {}
        self._loaded = False
        self._load_lock = trio.Lock()
        self._lock = trio.Lock()
        #: New or changed G-code files waiting for their analysis (an ordered set).
        self._pending: dict[str, None] = {}
        self._pending_added = trio.Event()

    # -- the cache ---------------------------------------------------------------------------

    def _read_legacy(self) -> dict[str, Any] | None:
        """The JSON cache of an earlier trioprint, if there is one (thread only)."""
        try:
            cache = strictjson.loads_lenient(self._legacy_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("metadata cache %s unreadable (%s): not imported", self._legacy_path, exc)
            cache = {}
        return cache if isinstance(cache, dict) else {}

    async def _import_legacy(self) -> None:
        legacy = await trio.to_thread.run_sync(self._read_legacy)
        if legacy is None:
            return
        count = 0
        for filename, entry in legacy.items():
            if isinstance(filename, str) and filename and isinstance(entry, dict):
                try:
                    await self._db.insert_item(GCODE_METADATA, [filename], entry)
                    count += 1
                except ApiError as exc:
                    log.warning("metadata import: %r skipped: %s", filename, exc.message)
        done = self._legacy_path.with_name(self._legacy_path.name + ".imported")
        await trio.to_thread.run_sync(os.replace, self._legacy_path, done)
        log.info("metadata: %d entries imported from %s", count, self._legacy_path)

    async def _ensure_loaded(self) -> None:
        async with self._load_lock:
            if self._loaded:
                return
            await self._import_legacy()
            stored = await self._db.get_item(GCODE_METADATA, None, default={})
            self._cache = {k: v for k, v in stored.items() if isinstance(v, dict)}
            self._loaded = True

    # -- extraction --------------------------------------------------------------------------

    def _extract(self, filename: str, full: str, force: bool) -> dict[str, Any] | None:
        """The metadata of ``full`` (thread only); None if the cached result is still valid."""
        # the parsers (slicer tables, thumbnails) load with the first file that needs them
        from ..domain import metadata as md
        from ..domain.thumbnails import thumbnail_bytes, thumbnail_info, thumbnail_name

        stat = os.stat(full)
        cached = self._cache.get(filename)
        if (
            not force
            and cached is not None
            and cached.get("size") == stat.st_size
            and cached.get("modified") == stat.st_mtime
        ):
            return None
        head, tail, size = md.read_head_tail(full)
        meta = md.parse(head, tail, size)
        thumbs = []
        if meta.thumbnails:
            folder = os.path.join(os.path.dirname(full), ".thumbs")
            os.makedirs(folder, exist_ok=True)
            for thumb in meta.thumbnails:
                try:
                    data = thumbnail_bytes(thumb)
                except ValueError as exc:
                    log.warning(
                        "%s: thumbnail %dx%d skipped: %s", filename, thumb.width, thumb.height, exc
                    )
                    continue
                relative = thumbnail_name(filename, thumb)
                _atomic_write(os.path.join(os.path.dirname(full), relative), data)
                thumbs.append(thumbnail_info(filename, thumb, len(data)))
        return md.moonraker_fields(
            meta, filename=filename, size=stat.st_size, modified=stat.st_mtime, thumbnails=thumbs
        )

    async def get(self, filename: str, *, force: bool = False) -> dict[str, Any]:
        """The metadata of ``gcodes/<filename>``, extracted if the cache has none that fits."""
        filename = filename.lstrip("/")
        target = await self._files.locate(f"gcodes/{filename}", "filename")
        if not await trio.to_thread.run_sync(os.path.isfile, target):
            raise ApiError(f"file does not exist (gcodes/{filename})", 404)
        await self._ensure_loaded()
        async with self._lock:
            result: dict[str, Any] | None = None
            # OctoPrint's analysis events: started before a certain extraction, else once one ran
            started = force or filename not in self._cache
            if started:
                self._bus.publish(MetadataAnalysisStarted(filename))
            with trio.move_on_after(EXTRACT_TIMEOUT) as scope:
                try:
                    result = await trio.to_thread.run_sync(
                        self._extract, filename, target, force, abandon_on_cancel=True
                    )
                except OSError as exc:
                    if started:
                        self._bus.publish(MetadataAnalysisFinished(filename))
                    raise ApiError(f"cannot read gcodes/{filename}: {exc.strerror}", 500) from None
            if scope.cancelled_caught:
                log.warning("metadata of %s: no result within %g s", filename, EXTRACT_TIMEOUT)
                if started:
                    self._bus.publish(MetadataAnalysisFinished(filename))
                raise ApiError(f"Metadata not available for {filename}", 404)
            if result is None:
                return self._cache[filename]
            await self._db.insert_item(GCODE_METADATA, [filename], result)
            self._cache[filename] = result
        self._websockets.broadcast("notify_metadata_update", [result])
        if not started:
            self._bus.publish(MetadataAnalysisStarted(filename))
        self._bus.publish(MetadataAnalysisFinished(filename, result))
        return result

    async def cached(self, filenames: list[str]) -> dict[str, dict[str, Any]]:
        """The cached metadata of those of ``filenames`` (gcodes-relative) that have some,
        without extracting anything (``get_directory`` with ``extended=true``)."""
        await self._ensure_loaded()
        return {name: self._cache[name] for name in filenames if name in self._cache}

    # -- the API -----------------------------------------------------------------------------

    @endpoint("/server/files/metadata", "GET", params=FilenameParams)
    async def metadata(self, call: Call[FilenameParams]) -> dict[str, Any]:
        return await self.get(call.params.filename)

    @endpoint("/server/files/metascan", "POST", params=FilenameParams)
    async def metascan(self, call: Call[FilenameParams]) -> dict[str, Any]:
        return await self.get(call.params.filename, force=True)

    @endpoint("/server/files/thumbnails", "GET", params=FilenameParams)
    async def thumbnails(self, call: Call[FilenameParams]) -> list[dict[str, Any]]:
        result = await self.get(call.params.filename)
        # Moonraker's thumbnail_path is relative to the gcodes root, not to the file's folder
        folder = os.path.dirname(result["filename"])
        return [
            {
                "width": t["width"],
                "height": t["height"],
                "size": t["size"],
                "thumbnail_path": os.path.join(folder, t["relative_path"]),
            }
            for t in result.get("thumbnails", [])
        ]

    # -- background work ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._bus.subscribe(FileChanged, capacity=1024, name="metadata") as changes:
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._scan)
                nursery.start_soon(self._analyse_new_files)
                async for change in changes:
                    assert isinstance(change, FileChanged)
                    await self._forget(change)
                    if (
                        change.root == "gcodes"
                        and change.action in NEW_CONTENT_ACTIONS
                        and change.path.lower().endswith(GCODE_EXTENSIONS)
                    ):
                        self._pending[change.path] = None
                        self._pending_added.set()

    async def _analyse_new_files(self) -> None:
        """Extract the metadata of each uploaded, written or moved G-code file as it comes (as
        Moonraker and OctoPrint do after an upload), one at a time, in the order they came."""
        while True:
            await self._pending_added.wait()
            self._pending_added = trio.Event()
            while self._pending:
                name = next(iter(self._pending))
                del self._pending[name]
                try:
                    await self.get(name)
                except ApiError as exc:  # gone again, or unreadable: asked for, it says so
                    log.debug("metadata of new file %s: %s", name, exc.message)

    async def _forget(self, change: FileChanged) -> None:
        """A moved, changed or deleted file's entry goes (a new one is queued by :meth:`run`)."""
        await self._ensure_loaded()
        for root, path in ((change.root, change.path), (change.source_root, change.source_path)):
            if root == "gcodes" and path is not None:
                gone = [k for k in self._cache if k == path or k.startswith(path + "/")]
                for key in gone:
                    del self._cache[key]
                    with contextlib.suppress(ApiError):
                        await self._db.delete_item(GCODE_METADATA, [key])

    async def _scan(self) -> None:
        """Extract the metadata of every G-code file that has none yet (one at a time)."""
        await self._ensure_loaded()
        for name in await self._files.gcode_files():
            if not name.lower().endswith(GCODE_EXTENSIONS):
                continue
            try:
                await self.get(name)
            except ApiError as exc:
                log.warning("metadata scan: %s: %s", name, exc.message)
            await trio.lowlevel.checkpoint()
