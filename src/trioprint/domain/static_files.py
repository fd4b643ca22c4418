"""Serving a built web frontend (Mainsail, Fluidd): the pure path and header logic.

What nginx does in front of Moonraker, decided here without I/O: which URL paths are the
frontend's (everything but the API's prefixes), which file a path names (never one outside the
folder: ``..``, hidden names, backslashes and NUL are refused), the MIME type, the cache policy
(content-hashed assets cached for a year and ``immutable``; ``index.html``, ``config.json`` and
every other file revalidated each time), a precompressed sibling (``.br``, ``.gz``) the client
accepts, conditional requests (``ETag``/``If-None-Match``, ``Last-Modified``/
``If-Modified-Since``: 304) and one byte range (206, 416).

:func:`plan` turns a request and the files found into an :class:`Answer`: the status, the
headers and which bytes of which file to send. ``components/frontend.py`` does the I/O.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping

import attrs

#: URL paths served by the API, never by the frontend (an unknown one there is a JSON 404).
API_PREFIXES = (
    "/server",
    "/printer",
    "/machine",
    "/access",
    "/api",
    "/websocket",
    "/debug",
)
INDEX = "index.html"
#: Files always revalidated (the frontend's entry point and its runtime settings).
NO_CACHE_FILES = frozenset({INDEX, "config.json"})
CACHE_HASHED = "public, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"

_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "application/javascript; charset=utf-8",
    "mjs": "application/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "json": "application/json; charset=utf-8",
    "map": "application/json; charset=utf-8",
    "webmanifest": "application/manifest+json; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "ico": "image/x-icon",
    "woff2": "font/woff2",
    "woff": "font/woff",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    "txt": "text/plain; charset=utf-8",
    "xml": "application/xml; charset=utf-8",
    "wasm": "application/wasm",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "webm": "video/webm",
}
#: Content-Encoding -> the sibling's suffix, in the order preferred at equal quality.
ENCODINGS = {"br": ".br", "gzip": ".gz"}

#: A bundler's content hash before the extension: ``index-CElP2RIv.js``, ``workbox-71725de1.js``
#: (Vite, Rollup, Webpack: 8 or more characters of base64url, with a digit or a capital).
_HASHED_RE = re.compile(r"[-.](?=[A-Za-z0-9_-]*[0-9A-Z])[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+$")


def is_api_path(path: str) -> bool:
    """Whether ``path`` belongs to the API (``/server``, ``/server/...``, not ``/serverless``)."""
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def safe_relative(path: str) -> str | None:
    """The file a decoded URL path names, relative to the folder; ``""`` for the folder
    itself; None if the path could leave it or names a hidden file (``..``, ``.git``,
    ``\\``, NUL, a drive letter)."""
    if "\\" in path or "\x00" in path:
        return None
    parts = [part for part in path.split("/") if part]
    for part in parts:
        if part.startswith(".") or ":" in part:
            return None
    return "/".join(parts)


def content_type(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return (
        _TYPES.get(ext.lower(), "application/octet-stream") if dot else ("application/octet-stream")
    )


def is_hashed(rel: str) -> bool:
    """Whether a file's name carries its content's hash, so it never changes (Vite puts
    every such file in ``assets/``)."""
    return rel.startswith("assets/") or bool(_HASHED_RE.search(rel.rsplit("/", 1)[-1]))


def cache_control(rel: str) -> str:
    if rel in NO_CACHE_FILES or not is_hashed(rel):
        return CACHE_REVALIDATE
    return CACHE_HASHED


def spa_fallback(rel: str) -> bool:
    """Whether a missing file is answered with ``index.html`` (a route of the single-page
    app, like ``/console``), rather than 404 (a missing asset: its HTML would not run)."""
    return not rel.startswith("assets/")


def accepted_encodings(header: str | None) -> dict[str, float]:
    """``Accept-Encoding`` as coding -> quality (``*`` kept as it is; bad entries ignored)."""
    accepted: dict[str, float] = {}
    for item in (header or "").split(","):
        coding, *params = (piece.strip() for piece in item.split(";"))
        if not coding:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        accepted[coding.lower()] = quality
    return accepted


def choose_encoding(header: str | None, available: set[str]) -> str | None:
    """The best precompressed coding in ``available`` the client accepts, else None."""
    accepted = accepted_encodings(header)
    best: tuple[float, int, str] | None = None
    for rank, coding in enumerate(ENCODINGS):
        if coding not in available:
            continue
        quality = accepted.get(coding, accepted.get("*", 0.0))
        if quality > 0 and (best is None or (quality, -rank) > (best[0], best[1])):
            best = (quality, -rank, coding)
    return best[2] if best else None


@attrs.frozen
class FileInfo:
    """What a stat says of one file."""

    size: int
    mtime_ns: int


def make_etag(info: FileInfo, encoding: str | None = None) -> str:
    tag = f"{info.size:x}-{info.mtime_ns:x}"
    return f'"{tag}-{encoding}"' if encoding else f'"{tag}"'


def http_date(mtime_ns: int) -> str:
    return email.utils.formatdate(mtime_ns // 1_000_000_000, usegmt=True)


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


def not_modified(headers: Mapping[str, str], etag: str, mtime_ns: int) -> bool:
    """RFC 9110: ``If-None-Match`` decides when present, else ``If-Modified-Since``."""
    if "if-none-match" in headers:
        return _etag_matches(headers["if-none-match"], etag)
    since = headers.get("if-modified-since")
    if since:
        try:
            parsed = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return mtime_ns // 1_000_000_000 <= int(parsed.timestamp())
    return False


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as ``(start, end)``, end exclusive; None for the whole file (no
    header, another unit, several ranges, a malformed one: ignored, RFC 9110). Raises
    :class:`RangeNotSatisfiable` for a range past the end."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = (piece.strip() for piece in spec.partition("-"))
    if not sep or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - length, 0), size
    start = int(first)
    if last != "" and int(last) < start:
        return None  # a last byte before the first: invalid, so ignored
    if start >= size:
        raise RangeNotSatisfiable
    end = size if last == "" else int(last) + 1
    return start, min(end, size)


@attrs.frozen
class Answer:
    """What to send: the status, the headers, and ``file[start:end]`` as the body (no body
    when ``file`` is None: a 304, a 416, a HEAD)."""

    status: int
    headers: dict[str, str]
    file: str | None = None
    start: int = 0
    end: int = 0


def plan(
    method: str,
    rel: str,
    variants: Mapping[str, FileInfo],
    headers: Mapping[str, str],
) -> Answer:
    """The answer to ``GET``/``HEAD`` of file ``rel``, given the files found: ``""`` the
    file itself, ``"br"``/``"gzip"`` its precompressed siblings. ``headers`` are the request's,
    names in lower case."""
    identity = variants[""]
    compressed = {coding for coding in ENCODINGS if coding in variants}
    range_header = headers.get("range")
    # a range counts bytes of the file itself: ranges are served uncompressed
    encoding = None if range_header else choose_encoding(headers.get("accept-encoding"), compressed)
    info = variants[encoding] if encoding else identity
    etag = make_etag(info, encoding)
    out = {
        "Content-Type": content_type(rel),
        "Cache-Control": cache_control(rel),
        "ETag": etag,
        "Last-Modified": http_date(info.mtime_ns),
        "Accept-Ranges": "bytes",
    }
    if compressed:
        out["Vary"] = "Accept-Encoding"
    if encoding:
        out["Content-Encoding"] = encoding
    if not_modified(headers, etag, info.mtime_ns):
        out.pop("Content-Type")
        return Answer(304, out)
    name = rel + ENCODINGS[encoding] if encoding else rel
    span = None
    if range_header and _if_range_holds(headers.get("if-range"), etag, info.mtime_ns):
        try:
            span = parse_range(range_header, info.size)
        except RangeNotSatisfiable:
            out["Content-Range"] = f"bytes */{info.size}"
            out["Content-Length"] = "0"
            return Answer(416, out)
    start, end = span if span is not None else (0, info.size)
    out["Content-Length"] = str(end - start)
    status = 200
    if span is not None:
        status = 206
        out["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
    if method == "HEAD":
        return Answer(status, out)
    return Answer(status, out, name, start, end)


def _if_range_holds(if_range: str | None, etag: str, mtime_ns: int) -> bool:
    """``If-Range``: the range applies only if the file is still the one it names."""
    if not if_range:
        return True
    if if_range.startswith(('"', "W/")):
        return if_range.strip() == etag
    return if_range.strip() == http_date(mtime_ns)
