"""``GET /server/files/{root}/{path}``: a file of a root, streamed, with byte ranges."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

import trio
from quart import Response

from ...errors import ApiError
from .manager import Files
from .roots import locate, os_error

#: Bytes read at a time when a file is served.
CHUNK_SIZE = 64 * 1024


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
        target = locate(roots, request, "path")
        if not os.path.isfile(target.full):
            if os.path.isdir(target.full):
                raise ApiError(f"{request}: is a directory", 400)
            raise ApiError(f"file does not exist ({request})", 404)
        try:
            handle = open(target.full, "rb")  # noqa: SIM115 (closed by the body generator)
            return handle, os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise os_error(exc, request) from None

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
