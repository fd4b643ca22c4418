"""``server.files.metadata``, ``metascan`` and ``thumbnails``: slicer metadata of G-code files.

The parsing is pure (:mod:`trioprint.domain.metadata`: a file's head and tail only, so its cost
does not grow with the file). This component runs it in a worker thread with a timeout, writes
the embedded thumbnails to ``.thumbs/`` beside the file (atomically), and keeps the results in a
JSON cache at ``<data>/database/metadata.json`` (written atomically; the database replaces it
later), each entry valid while the file's size and mtime stay the same. At start-up a
background scan extracts what is missing; each new result is sent as ``notify_metadata_update``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import trio

from ..bus import Bus
from ..domain import metadata as md
from ..domain.thumbnails import thumbnail_bytes, thumbnail_info, thumbnail_name
from ..errors import ApiError
from ..registry import Call, endpoint
from .files import FileChanged, Files

log = logging.getLogger(__name__)

#: Seconds one extraction may take before it is given up (the file keeps its basic fields).
EXTRACT_TIMEOUT = 10.0
GCODE_EXTENSIONS = (".gcode", ".g", ".gco")


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

    def __init__(self, files: Files, bus: Bus, websockets: Any, data_dir: Path) -> None:
        self._files = files
        self._bus = bus
        self._websockets = websockets
        self._cache_path = data_dir / "database" / "metadata.json"
        self._cache: dict[str, dict[str, Any]] = {}
        self._loaded = False
        self._lock = trio.Lock()

    # -- the cache ---------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            cache = json.loads(self._cache_path.read_bytes())
        except FileNotFoundError:
            cache = {}
        except (OSError, ValueError) as exc:
            log.warning("metadata cache %s unreadable (%s): starting afresh", self._cache_path, exc)
            cache = {}
        self._cache = cache if isinstance(cache, dict) else {}

    def _save(self) -> None:
        self._cache_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(str(self._cache_path), json.dumps(self._cache).encode())

    async def _ensure_loaded(self) -> None:
        if not self._loaded:
            await trio.to_thread.run_sync(self._load)
            self._loaded = True

    # -- extraction --------------------------------------------------------------------------

    def _extract(self, filename: str, full: str, force: bool) -> dict[str, Any] | None:
        """The metadata of ``full`` (thread only); None if the cached result is still valid."""
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
            with trio.move_on_after(EXTRACT_TIMEOUT) as scope:
                try:
                    result = await trio.to_thread.run_sync(
                        self._extract, filename, target, force, abandon_on_cancel=True
                    )
                except OSError as exc:
                    raise ApiError(f"cannot read gcodes/{filename}: {exc.strerror}", 500) from None
            if scope.cancelled_caught:
                log.warning("metadata of %s: no result within %g s", filename, EXTRACT_TIMEOUT)
                raise ApiError(f"Metadata not available for {filename}", 404)
            if result is None:
                return self._cache[filename]
            self._cache[filename] = result
            await trio.to_thread.run_sync(self._save)
        self._websockets.broadcast("notify_metadata_update", [result])
        return result

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
                async for change in changes:
                    assert isinstance(change, FileChanged)
                    self._forget(change)

    def _forget(self, change: FileChanged) -> None:
        """A moved or deleted file's entry goes (a new file is extracted when asked for)."""
        for root, path in ((change.root, change.path), (change.source_root, change.source_path)):
            if root == "gcodes" and path is not None:
                gone = [k for k in self._cache if k == path or k.startswith(path + "/")]
                for key in gone:
                    del self._cache[key]

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
