"""A small HTTP/1.1 server on Trio (h11) for tests: each request goes to a handler function.

::

    async with http_double(handler) as server:   # server.url: "http://127.0.0.1:PORT"
        ...                                      # server.requests: every request so far

``handler(request)`` answers ``(status, json_or_bytes)``; a handler may also await (to stall).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio


@attrs.frozen
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Request], Awaitable[tuple[int, Any]]]


@attrs.define
class Double:
    url: str = ""
    requests: list[Request] = attrs.Factory(list)
    arrived: trio.Event = attrs.Factory(trio.Event)

    async def wait_requests(self, count: int) -> list[Request]:
        while len(self.requests) < count:
            await self.arrived.wait()
        return self.requests


async def _serve_one(stream: trio.SocketStream, handler: Handler, double: Double) -> None:
    # the client may go away at any time
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
        await _serve(stream, handler, double)


async def _serve(stream: trio.SocketStream, handler: Handler, double: Double) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        while True:
            request: h11.Request | None = None
            body = bytearray()
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
                    break
                else:
                    return
            assert request is not None
            req = Request(
                request.method.decode(),
                request.target.decode(),
                {k.decode().lower(): v.decode() for k, v in request.headers},
                bytes(body),
            )
            double.requests.append(req)
            double.arrived.set()
            double.arrived = trio.Event()
            status, answer = await handler(req)
            payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            out = conn.send(h11.Response(status_code=status, headers=headers))
            out += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
            await stream.send_all(out)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()


@asynccontextmanager
async def http_double(handler: Handler) -> AsyncIterator[Double]:
    double = Double()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(
                trio.serve_tcp,
                functools.partial(_serve_one, handler=handler, double=double),
                0,
                host="127.0.0.1",
            )
        )
        port = listeners[0].socket.getsockname()[1]
        double.url = f"http://127.0.0.1:{port}"
        yield double
        nursery.cancel_scope.cancel()
