"""Finding the changes other programs make in the writable roots.

Changes in the writable roots (``config``, ``gcodes``, the ones Moonraker watches) are found by
scanning them in a worker thread and comparing the scan with the previous one
(:mod:`trioprint.domain.snapshots`); they are announced as the file manager's own changes are.
On Linux a scan is triggered by inotify (:mod:`trioprint.transport.inotify`): every folder of
the writable roots is watched, and an event that may matter
(:func:`trioprint.domain.inotify.calls_for_rescan`) is followed by :data:`DEBOUNCE` seconds of
gathering the events after it, one rescan, and watches for the folders that appeared (then one
more rescan, for what happened in them before they were watched). Where inotify cannot be used
(not Linux, no descriptor or watch left, a failure of the watcher) the roots are scanned every
``[file_manager] watch_interval`` seconds instead. After each of its own changes the file
manager rescans the paths it touched (:meth:`Watcher.refresh`), under the same lock, so those
are never announced twice (what another program changed at such a path since the last scan is
taken in with it, unannounced). Hidden names (``.thumbs``, ``.git``, temporary files) are not
watched.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from ...domain.inotify import IN_IGNORED, WATCH_MASK, InotifyEvent, WatchTable, calls_for_rescan
from ...domain.snapshots import Entry, Snapshot, diff, replace_subtree
from ...transport.inotify import Inotify
from .roots import Root, Target, change, inside

log = logging.getLogger(__name__)

#: Seconds the inotify watcher gathers events after the first one before it rescans.
DEBOUNCE = 0.2


def _entry(st: os.stat_result) -> Entry:
    if stat.S_ISDIR(st.st_mode):
        return Entry(True)
    return Entry(False, st.st_size, st.st_mtime_ns)


def scan_tree(root: Root, relative: str = "") -> dict[str, Entry]:
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
            if not inside(os.path.realpath(start), root.real):
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
                if link and not inside(os.path.realpath(item.path), root.real):
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


def _take_events(events: list[InotifyEvent], watches: WatchTable) -> bool:
    """Forget the watches the kernel dropped; whether any event calls for a rescan."""
    rescan = False
    for event in events:
        if event.mask & IN_IGNORED and watches.ignored(event.wd):
            rescan = True  # a watched folder went: a new one may have its path now
        rescan = rescan or calls_for_rescan(event)
    return rescan


class Watcher:
    """The last scan of each writable root, and the loop that rescans them.

    ``roots`` gives the roots in service, ``lock`` serializes the scans with the file manager's
    own changes, ``announce`` publishes one change (a ``notify_filelist_changed`` body).
    """

    def __init__(
        self,
        roots: Callable[[], Awaitable[dict[str, Root]]],
        lock: trio.Lock,
        announce: Callable[[dict[str, Any]], None],
    ) -> None:
        self._roots = roots
        self._lock = lock
        self._announce = announce
        #: How :meth:`run` watches now: "inotify", "polling", or None (not, or not yet).
        self.watching: str | None = None
        #: root name -> its last scan; None until the first scan (see :meth:`scan_changes`).
        self._snapshots: dict[str, dict[str, Entry]] | None = None

    async def run(self, interval: float, *, use_inotify: bool) -> None:
        """Watch with inotify if ``use_inotify`` and it can be used, else scan every
        ``interval`` seconds (never returns)."""
        await self._scan_logged()  # the first one records what is there at start-up
        notify = self._open_inotify() if use_inotify else None
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
                        interval,
                    )
                except Exception:  # the watcher must not take the server down
                    log.exception(
                        "file_manager: the inotify watcher failed; scanning every %g s instead",
                        interval,
                    )
        else:
            log.info(
                "file_manager: watching the writable roots by scanning them every %g s",
                interval,
            )
        self.watching = "polling"
        while True:
            await trio.sleep(interval)
            await self._scan_logged()

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
            if not _take_events(await notify.read(), watches):
                continue
            with trio.move_on_after(DEBOUNCE):
                while True:
                    _take_events(await notify.read(), watches)
            await self._scan_logged()
            while await self._sync_watches(notify, watches):
                await self._scan_logged()

    async def _sync_watches(self, notify: Inotify, watches: WatchTable) -> bool:
        """Watch the roots and every folder of the last scan, stop watching folders no longer
        in it; whether a watch was added."""
        roots = await self._roots()
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
        (one announcement per change); return the notification bodies. The first scan only
        records what is there."""
        roots = await self._roots()
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
            snapshots[root.name] = new = scan_tree(root)
            old: Snapshot | None = None if previous is None else previous.get(root.name)
            if old is None:
                continue
            for found in diff(old, new):
                full = os.path.join(root.real, found.path)
                target = Target(root, found.path, full, f"{root.name}/{found.path}")
                results.append(change(found.action, target))
        self._snapshots = snapshots
        return results

    def refresh(self, roots: Mapping[str, Root], result: dict[str, Any]) -> None:
        """Take a change of the file manager's own into the snapshots, so that the next scan
        does not announce it again (thread, locked)."""
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
            self._snapshots[root.name] = replace_subtree(snapshot, path, scan_tree(root, path))
