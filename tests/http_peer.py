"""``http_peer``: tests/http_double.py's server for callers with a plain (not async) handler.

::

    async with http_peer(handler) as peer:   # peer.base "http://127.0.0.1:PORT", peer.address
        ...                                  # peer.seen: every request so far

``handler(seen)`` answers ``(status, json_or_bytes)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs

from .http_double import Double, Request, http_double

Seen = Request
Handler = Callable[[Request], tuple[int, Any]]


@attrs.frozen
class Peer:
    double: Double

    @property
    def seen(self) -> list[Request]:
        return self.double.requests

    @property
    def base(self) -> str:
        return self.double.url

    @property
    def address(self) -> str:
        return self.double.url.removeprefix("http://")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


@asynccontextmanager
async def http_peer(handler: Handler) -> AsyncIterator[Peer]:
    async def answer(request: Request) -> tuple[int, Any]:
        return handler(request)

    async with http_double(answer) as double:
        yield Peer(double)
