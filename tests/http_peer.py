"""A small HTTP/1.1 server for tests (Trio + h11): each request is recorded and answered by a
handler ``(method, target, headers, body) -> (status, body)``."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio


@attrs.define
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Seen], tuple[int, Any]]


@attrs.define
class Peer:
    port: int
    seen: list[Seen] = attrs.Factory(list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _serve_one(stream: trio.SocketStream, peer: Peer, handler: Handler) -> None:
    conn = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    body = bytearray()
    async with stream:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                seen = Seen(
                    request.method.decode(),
                    request.target.decode(),
                    {k.decode().lower(): v.decode() for k, v in request.headers},
                    bytes(body),
                )
                peer.seen.append(seen)
                status, answer = handler(seen)
                raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                headers = [("Content-Length", str(len(raw))), ("Connection", "close")]
                out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
                out += conn.send(h11.Data(data=raw)) or b""
                out += conn.send(h11.EndOfMessage()) or b""
                await stream.send_all(out)
                return
            else:
                return


@asynccontextmanager
async def http_peer(handler: Handler) -> AsyncIterator[Peer]:
    peer = Peer(0)

    async def serve(stream: trio.SocketStream) -> None:
        await _serve_one(stream, peer, handler)

    async with trio.open_nursery() as nursery:
        start = functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1")
        listeners = await nursery.start(start)
        peer.port = listeners[0].socket.getsockname()[1]
        yield peer
        nursery.cancel_scope.cancel()
