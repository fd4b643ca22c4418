"""What changed in a root between two scans of it, as ``notify_filelist_changed`` items.

A :data:`Snapshot` maps each path (relative to its root, ``/``-separated) to an :class:`Entry`:
whether it is a folder, and for a file its size and mtime. :func:`diff` turns two snapshots
of one root into the changes a client needs to go from the first to the second:

* ``delete_file`` / ``delete_dir`` for what is gone, ``create_file`` / ``create_dir`` for what is
  new, ``modify_file`` for a file whose size or mtime changed; a path that changed kind (a file
  became a folder) is a delete followed by a create;
* the content of a created or deleted folder is not listed item by item: the folder's change
  stands for everything under it (as Moonraker's inotify watcher reports a folder copied in or
  removed);
* deletes come first, then creates (parents before children), then modifications.

Moves are not recognised: a file renamed by another program is a delete and a create.
:func:`replace_subtree` updates a snapshot with a fresh scan of one path, so that a change
trioprint made itself is taken in without being reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs


@attrs.frozen
class Entry:
    """One item of a scan: a folder, or a file with its size and mtime (nanoseconds)."""

    is_dir: bool
    size: int = 0
    mtime_ns: int = 0


#: relative path -> entry (the root itself is not in it).
Snapshot = Mapping[str, Entry]


@attrs.frozen
class Change:
    """One ``notify_filelist_changed`` item: ``action`` on ``path`` (relative to the root)."""

    action: str
    path: str


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder + "/")


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def diff(old: Snapshot, new: Snapshot) -> list[Change]:
    """The changes that lead from ``old`` to ``new`` (see the module's description)."""
    deleted = {p for p, e in old.items() if p not in new or new[p].is_dir != e.is_dir}
    created = {p for p, e in new.items() if p not in old or old[p].is_dir != e.is_dir}
    deleted_dirs = {p for p in deleted if old[p].is_dir}
    created_dirs = {p for p in created if new[p].is_dir}
    changes: list[Change] = []
    for path in sorted(deleted):
        if any(a in deleted_dirs for a in _ancestors(path)):
            continue
        changes.append(Change("delete_dir" if old[path].is_dir else "delete_file", path))
    for path in sorted(created):
        if any(a in created_dirs for a in _ancestors(path)):
            continue
        changes.append(Change("create_dir" if new[path].is_dir else "create_file", path))
    for path in sorted(new):
        before, after = old.get(path), new[path]
        if (
            before is not None
            and not after.is_dir
            and not before.is_dir
            and (before.size, before.mtime_ns) != (after.size, after.mtime_ns)
        ):
            changes.append(Change("modify_file", path))
    return changes


def replace_subtree(snapshot: Snapshot, path: str, scanned: Snapshot) -> dict[str, Entry]:
    """``snapshot`` with ``path`` and everything under it replaced by ``scanned``.

    ``scanned`` holds what a fresh scan found at ``path`` (nothing if it is gone); its keys
    must be ``path`` or below it. ``path == ""`` stands for the whole root.
    """
    if not path:
        return dict(scanned)
    kept = {p: e for p, e in snapshot.items() if p != path and not _under(p, path)}
    kept.update(scanned)
    return kept
