"""A small HTTP/1.1 client on Trio streams, with h11 (which hypercorn already brings).

Enough for fetching a feed (:func:`http_get`), for talking to a smart plug
(:func:`http_request`: GET, and POST/PUT with a body) and for a JSON API (:func:`http_json`):
``http`` and ``https`` (certificates checked against the system's
store), a few redirects (GET only), ``Connection: close``, no compression, a bounded body and one
deadline for the whole exchange (name resolution, connection, TLS handshake, request, answer
and redirects). Every failure is an :class:`HttpError` with a one-line reason; nothing is
retried here.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
import h11
import trio

from .._version import __version__
from ..domain import strictjson

#: Largest body accepted, in bytes.
MAX_BODY = 1024 * 1024
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
RECEIVE_SIZE = 64 * 1024


class HttpError(Exception):
    """The request failed: no answer, a bad answer, too slow, too big."""


@attrs.frozen
class HttpResponse:
    status: int
    #: Header names in lower case (a repeated header: the last one).
    headers: Mapping[str, str]
    body: bytes
    url: str


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


async def http_get(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    limit: float = 10.0,
    max_body: int = MAX_BODY,
) -> HttpResponse:
    """GET ``url``, following up to :data:`MAX_REDIRECTS` redirects, all within ``limit``
    seconds (past it: an :class:`HttpError`, like every other failure)."""
    return await http_request("GET", url, headers, limit=limit, max_body=max_body)


async def http_request(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    limit: float = 10.0,
    max_body: int = MAX_BODY,
) -> HttpResponse:
    """One ``method`` request (``body`` sent with a ``Content-Length``), all within ``limit``
    seconds. A GET follows redirects as :func:`http_get`; other methods never do (their answer
    is returned as it is)."""
    try:
        with trio.fail_after(limit):
            for _ in range(MAX_REDIRECTS + 1):
                response = await _request_once(method, url, headers or {}, body, max_body)
                location = response.headers.get("location")
                if method != "GET" or response.status not in REDIRECTS or not location:
                    return response
                url = urllib.parse.urljoin(url, location)
            raise HttpError(f"more than {MAX_REDIRECTS} redirects")
    except trio.TooSlowError:
        raise HttpError(f"no complete answer within {limit:g} s") from None


async def http_json(
    method: str,
    url: str,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    limit: float = 10.0,
    max_body: int = MAX_BODY,
) -> HttpResponse:
    """``method`` ``url`` with ``json_body`` (None: no body) as JSON, within ``limit`` seconds,
    as :func:`http_request` (a JSON API: Spoolman's)."""
    body = None if json_body is None else strictjson.dumps(json_body).encode()
    extra = dict(headers or {})
    if body is not None:
        extra.setdefault("Content-Type", "application/json")
    extra.setdefault("Accept", "application/json")
    return await http_request(method, url, extra, body, limit=limit, max_body=max_body)


async def _request_once(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None, max_body: int
) -> HttpResponse:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise HttpError(f"unsupported URL scheme in {url!r}")
    host = parts.hostname
    if not host:
        raise HttpError(f"no host in {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HttpError(f"bad port in {url!r}") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    authority = parts.netloc.rpartition("@")[2]
    request_headers = [
        ("Host", authority),
        ("User-Agent", f"trioprint/{__version__}"),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
        *(() if body is None else [("Content-Length", str(len(body)))]),
        *((k, v) for k, v in headers.items()),
    ]
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        async with stream:
            if parts.scheme == "https":
                tls = trio.SSLStream(stream, _ssl_context(), server_hostname=host)
                await tls.do_handshake()
                stream = tls
            return await _exchange(stream, method, target, request_headers, body, max_body, url)
    except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
        raise HttpError(f"cannot reach {host}:{port}: {exc}") from None
    except h11.ProtocolError as exc:
        raise HttpError(f"bad HTTP answer from {host}:{port}: {exc}") from None


async def _exchange(
    stream: trio.abc.Stream,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    max_body: int,
    url: str,
) -> HttpResponse:
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    status = 0
    found: dict[str, str] = {}
    received = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.receive_some(RECEIVE_SIZE)
            conn.receive_data(bytes(chunk))  # b"" is the end of the stream
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            for name, value in event.headers:
                found[name.decode("latin-1").lower()] = value.decode("latin-1")
        elif isinstance(event, h11.Data):
            received += event.data
            if len(received) > max_body:
                raise HttpError(f"answer larger than {max_body} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return HttpResponse(status, found, bytes(received), url)
        elif isinstance(event, h11.ConnectionClosed):
            raise HttpError("the connection closed before the answer was complete")
