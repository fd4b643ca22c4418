"""``server.files.*``: the file roots (gcodes, config, logs, ...) and the operations on them.

The package's parts:

* :mod:`.roots`: the roots, request paths checked against them (no way out of a root, not
  even through a symlink), the listings;
* :mod:`.operations`: the changes (folders, move, copy, delete, zip, an upload put in place);
* :mod:`.watch`: the changes other programs make, found by inotify or periodic scans;
* :mod:`.manager`: the :class:`Files` component, which runs those in worker threads (changes
  serialized by one lock) and announces every change;
* :mod:`.download`: serving a file, with byte ranges.

Results and notifications have Moonraker 0.11's shapes. Where this component differs from
Moonraker on purpose:

* statuses: a missing file or folder is a 404 (Moonraker: 400); writing to a read-only root,
  deleting a root and touching the file being printed are 403 (Moonraker: 400 or 405); an item
  that already exists is a 400, as in Moonraker;
* a symlink whose target is outside the root is not listed, and cannot be read, moved, deleted
  or copied; copying a folder skips the links inside it that lead out of the root;
* a folder cannot be moved or copied into itself.
"""

from __future__ import annotations

from .download import parse_range, serve_file
from .manager import Files
from .roots import GCODE_EXTENSIONS, FileChanged, printing_check

__all__ = [
    "GCODE_EXTENSIONS",
    "FileChanged",
    "Files",
    "parse_range",
    "printing_check",
    "serve_file",
]
