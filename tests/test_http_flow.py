"""Backpressure on streamed uploads: Quart would buffer a body without bound; the Router's
BodyFlow lets in only what the route has not consumed yet, up to its limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio
import trio.testing

from trioprint.bus import Bus
from trioprint.registry import Registry
from trioprint.transport.http import BodyFlow, Router, create_http_app
from trioprint.transport.websocket import WebsocketManager

CHUNK = 64 * 1024
LIMIT = 1 << 20  # BodyFlow's default


class FakeClient:
    """An ASGI peer sending ``count`` body messages of CHUNK bytes, counting those taken."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.taken >= self.count:
            await trio.sleep_forever()  # a client that stays connected after its body
        self.taken += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": self.taken < self.count}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-type", b"multipart/form-data; b=x")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 7125),
        "extensions": {},
    }


async def test_a_stalled_upload_stops_reading_the_body() -> None:
    consumer_may_go = trio.Event()
    received = 0

    async def upload(body: AsyncIterator[bytes], content_type: str) -> dict[str, Any]:
        nonlocal received
        async for chunk in body:
            received += len(chunk)
            await consumer_may_go.wait()  # a disk that is slower than the network
        return {"item": {"root": "gcodes", "path": "a.gcode"}, "action": "create_file"}

    registry = Registry()
    app = create_http_app(registry, upload_file=upload)
    router = Router(app, WebsocketManager(registry, Bus()))
    client = FakeClient(count=200)  # 12.5 MiB
    async with trio.open_nursery() as nursery:
        nursery.start_soon(router, scope("/server/files/upload"), client.receive, client.send)
        await trio.testing.wait_all_tasks_blocked()
        # Stalled: what was read but not consumed stays under the limit (plus one message).
        assert client.taken * CHUNK <= received + LIMIT + CHUNK
        assert client.taken < client.count
        consumer_may_go.set()
        await trio.testing.wait_all_tasks_blocked()
        assert client.taken == client.count
        assert received == client.count * CHUNK
        nursery.cancel_scope.cancel()
    assert client.sent[0]["status"] == 201


async def test_other_routes_are_not_gated() -> None:
    registry = Registry()
    app = create_http_app(registry)
    router = Router(app, WebsocketManager(registry, Bus()))
    client = FakeClient(count=40)  # 2.5 MiB for a route that never reads its body
    async with trio.open_nursery() as nursery:
        nursery.start_soon(router, scope("/server/nothing"), client.receive, client.send)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert client.sent[0]["status"] == 404


async def test_body_flow_waits_for_consumption_and_then_lets_the_rest_through() -> None:
    messages = [
        {"type": "http.request", "body": b"a" * 600, "more_body": True},
        {"type": "http.request", "body": b"b" * 600, "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    flow = BodyFlow(receive, limit=1000)
    got: list[dict[str, Any]] = []

    async def reader() -> None:
        for _ in range(3):
            got.append(await flow.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        # 1200 bytes wait unconsumed, over the limit, but the body is complete: the disconnect
        # message (which Quart waits for) is not held back
        assert [m["type"] for m in got] == ["http.request", "http.request", "http.disconnect"]
        assert flow.buffered == 1200


async def test_body_flow_blocks_at_the_limit_until_consumed() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"a" * 400, "more_body": True}

    flow = BodyFlow(receive, limit=1000)
    got = 0

    async def reader() -> None:
        nonlocal got
        while True:
            await flow.receive()
            got += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == 3  # 1200 >= 1000: the gate is shut
        flow.consumed(400)  # 800 left: one more message may come
        await trio.testing.wait_all_tasks_blocked()
        assert got == 4
        flow.consumed(10_000)
        await trio.testing.wait_all_tasks_blocked()
        assert got == 7  # from 0 buffered: three more messages before the limit
        nursery.cancel_scope.cancel()
