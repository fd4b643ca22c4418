"""The web frontend served by trioprint itself (``[frontend] path`` or ``--frontend DIR``):
a built Mainsail or Fluidd at ``/``, so one process does what Moonraker and nginx do together.

The API keeps its paths (see :data:`trioprint.domain.static_files.API_PREFIXES`); every other
``GET``/``HEAD`` is a file of the folder, or ``index.html`` for a route of the single-page app.
Files need no credentials (nginx asks for none; the app then logs in through the API). The
decisions (path, MIME type, caching, precompressed siblings, ranges, 304) are pure
(:mod:`trioprint.domain.static_files`); here the files are looked at and read, in worker
threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import trio
from quart import Response

from ..domain.static_files import (
    ENCODINGS,
    INDEX,
    Answer,
    FileInfo,
    is_api_path,
    plan,
    safe_relative,
    spa_fallback,
)

log = logging.getLogger(__name__)

#: Files up to this size are read in one go; bigger ones are streamed in chunks.
WHOLE_FILE = 4 * 1024 * 1024
CHUNK = 256 * 1024


def _not_found(path: str) -> Response:
    return Response(f"Not Found: {path}\n", status=404, content_type="text/plain; charset=utf-8")


class Frontend:
    """Serves the files of one folder (the frontend's ``dist``)."""

    name = "frontend"

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self._real_root = os.path.realpath(self.root)

    def problem(self) -> str | None:
        """What is wrong with the folder, for a start-up warning (None: it can be served)."""
        if not self.root.is_dir():
            return f"[frontend] path: {self.root} is not a folder; the frontend is not served"
        if not (self.root / INDEX).is_file():
            return f"[frontend] path: {self.root} has no {INDEX}"
        return None

    def serves(self, method: str, path: str) -> bool:
        """Whether a request is the frontend's (so it needs no credentials)."""
        return method in ("GET", "HEAD") and not is_api_path(path)

    def _stat(self, rel: str) -> FileInfo | None:
        full = os.path.join(self.root, rel)
        if not os.path.realpath(full).startswith(self._real_root + os.sep):
            return None  # a symbolic link out of the folder
        try:
            st = os.stat(full)
        except OSError:
            return None
        if not os.path.isfile(full):
            return None
        return FileInfo(st.st_size, st.st_mtime_ns)

    def _variants(self, rel: str) -> dict[str, FileInfo]:
        found: dict[str, FileInfo] = {}
        info = self._stat(rel) if rel else None
        if info is None:
            return found
        found[""] = info
        for coding, suffix in ENCODINGS.items():
            sibling = self._stat(rel + suffix)
            if sibling is not None:
                found[coding] = sibling
        return found

    def _locate(self, path: str) -> tuple[str, dict[str, FileInfo]] | None:
        rel = safe_relative(path)
        if rel is None:
            return None
        variants = self._variants(rel)
        if not variants and spa_fallback(rel):
            rel = INDEX
            variants = self._variants(rel)
        return (rel, variants) if variants else None

    async def respond(self, method: str, path: str, headers: Mapping[str, str]) -> Response:
        """The answer to ``GET``/``HEAD`` of ``path`` (decoded); ``headers`` in lower case."""
        found = await trio.to_thread.run_sync(self._locate, path)
        if found is None:
            return _not_found(path)
        rel, variants = found
        answer = plan(method, rel, variants, headers)
        if answer.file is None:
            return self._response(b"", answer)
        size = answer.end - answer.start
        if size <= WHOLE_FILE:
            try:
                data = await trio.to_thread.run_sync(self._read, answer)
            except OSError as exc:
                log.warning("frontend: cannot read %s: %s", answer.file, exc)
                return _not_found(path)
            return self._response(data, answer)
        return self._response(self._stream(answer), answer)

    def _read(self, answer: Answer) -> bytes:
        assert answer.file is not None
        with open(os.path.join(self.root, answer.file), "rb") as handle:
            handle.seek(answer.start)
            return handle.read(answer.end - answer.start)

    async def _stream(self, answer: Answer) -> AsyncIterator[bytes]:
        assert answer.file is not None
        handle = await trio.open_file(os.path.join(self.root, answer.file), "rb")
        async with handle:
            await handle.seek(answer.start)
            remaining = answer.end - answer.start
            while remaining > 0:
                chunk = await handle.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    @staticmethod
    def _response(body: bytes | AsyncIterator[bytes], answer: Answer) -> Response:
        headers = dict(answer.headers)
        content_type = headers.pop("Content-Type", None)
        response = Response(body, status=answer.status, content_type=content_type)
        for name, value in headers.items():
            response.headers[name] = value
        return response
