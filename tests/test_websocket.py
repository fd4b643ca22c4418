"""The websocket JSON-RPC transport, driven through an in-memory ASGI peer."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trioprint.bus import Bus, Notify
from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Registry, endpoint
from trioprint.transport.websocket import CLOSE_POLICY, FLUSH_TIMEOUT, WebsocketManager

from .asgi_peer import Peer


@attrs.frozen
class EchoParams:
    value: Any = None


class Fixture:
    """A tiny component with the behaviours the transport must handle."""

    def __init__(self) -> None:
        self.gate = trio.Event()

    @endpoint("/test/echo", "POST", params=EchoParams)
    async def echo(self, call: Call[EchoParams]) -> Any:
        return {"value": call.params.value}

    @endpoint("/test/wait", "POST")
    async def wait(self, call: Call[NoParams]) -> str:
        await self.gate.wait()
        return "released"

    @endpoint("/test/release", "POST")
    async def release(self, call: Call[NoParams]) -> None:
        self.gate.set()

    @endpoint("/test/missing", "GET")
    async def missing(self, call: Call[NoParams]) -> None:
        raise ApiError("Thing not found", 404)

    @endpoint("/test/unauthorized", "GET")
    async def unauthorized(self, call: Call[NoParams]) -> None:
        raise ApiError("Unauthorized", 401)

    @endpoint("/test/conflict", "GET")
    async def conflict(self, call: Call[NoParams]) -> None:
        raise ApiError("Busy", 409)

    @endpoint("/test/crash", "GET")
    async def crash(self, call: Call[NoParams]) -> None:
        raise RuntimeError("boom")

    @endpoint("/test/unencodable", "GET")
    async def unencodable(self, call: Call[NoParams]) -> Any:
        return {"x": object()}


def make_manager(**kwargs: Any) -> tuple[WebsocketManager, Fixture, Bus]:
    registry = Registry()
    fixture = Fixture()
    registry.add_component(fixture)
    bus = Bus()
    return WebsocketManager(registry, bus, **kwargs), fixture, bus


async def connect(nursery: trio.Nursery, manager: WebsocketManager, **kwargs: Any) -> Peer:
    peer = Peer(**kwargs)
    await nursery.start(peer.serve, manager)
    assert (await peer.next_message())["type"] == "websocket.accept"
    await trio.testing.wait_all_tasks_blocked()
    return peer


async def test_request_and_reply(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.request("test.echo", {"value": [1, "a"]}, id=0)
    assert await peer.next() == {"jsonrpc": "2.0", "result": {"value": [1, "a"]}, "id": 0}


async def test_errors_map_to_jsonrpc_codes(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    cases = [
        ("no.such.method", -32601),
        ("test.missing", -32601),
        ("test.unauthorized", -32602),
        ("test.conflict", 409),
        ("test.crash", 500),
        ("test.unencodable", 500),
    ]
    for i, (method, _) in enumerate(cases):
        peer.request(method, id=i)
    replies = {}
    for _ in cases:
        reply = await peer.next()
        replies[reply["id"]] = reply
    for i, (method, code) in enumerate(cases):
        assert replies[i]["error"]["code"] == code, method
        assert replies[i]["error"]["message"]
    assert "no.such.method" in replies[0]["error"]["message"]
    assert "boom" in replies[4]["error"]["message"]


async def test_params_must_be_an_object(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.send_text('{"jsonrpc":"2.0","method":"test.echo","params":[1],"id":9}')
    reply = await peer.next()
    assert reply["error"]["code"] == -32602
    assert reply["id"] == 9


async def test_parse_error_and_invalid_request(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.send_text("{nope")
    assert (await peer.next())["error"]["code"] == -32700
    peer.send_text('{"jsonrpc":"2.0","id":3}')
    reply = await peer.next()
    assert reply["error"]["code"] == -32600
    assert reply["id"] == 3


async def test_notifications_get_no_reply(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.send_text('{"jsonrpc":"2.0","method":"test.echo","params":{"value":1}}')
    peer.request("test.echo", {"value": 2}, id=2)
    assert (await peer.next())["id"] == 2


async def test_batch_answered_as_one_array_in_order(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    batch = [
        {"jsonrpc": "2.0", "method": "test.echo", "params": {"value": 1}, "id": "a"},
        {"jsonrpc": "2.0", "method": "test.echo", "params": {"value": 2}},
        {"jsonrpc": "2.0", "method": "nope", "id": "b"},
        7,
    ]
    peer.send_text(json.dumps(batch))
    reply = await peer.next()
    assert isinstance(reply, list)
    assert [r["id"] for r in reply] == ["a", "b", None]
    assert reply[0]["result"] == {"value": 1}
    assert reply[1]["error"]["code"] == -32601
    assert reply[2]["error"]["code"] == -32600


async def test_batch_of_only_notifications_gets_nothing(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.send_text(json.dumps([{"jsonrpc": "2.0", "method": "test.echo"}] * 3))
    peer.request("test.echo", {"value": "after"}, id=1)
    assert (await peer.next())["result"] == {"value": "after"}


async def test_requests_on_one_connection_run_concurrently(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.request("test.wait", id=1)
    peer.request("test.release", id=2)  # would deadlock if requests ran one after another
    with trio.fail_after(5):
        first, second = await peer.next(), await peer.next()
    assert (first["id"], first["result"]) == (2, "ok")
    assert (second["id"], second["result"]) == (1, "released")


async def test_bus_notifications_reach_every_client(nursery: trio.Nursery) -> None:
    manager, _, bus = make_manager()
    await nursery.start(manager.run)
    a = await connect(nursery, manager)
    b = await connect(nursery, manager)
    bus.publish(Notify("notify_test", ({"x": 1},)))
    bus.publish(Notify("notify_bare"))
    for peer in (a, b):
        assert await peer.next() == {
            "jsonrpc": "2.0",
            "method": "notify_test",
            "params": [{"x": 1}],
        }
        assert await peer.next() == {"jsonrpc": "2.0", "method": "notify_bare"}


async def test_slow_client_is_disconnected_and_others_keep_going(
    nursery: trio.Nursery,
) -> None:
    manager, _, _ = make_manager(queue_size=8)
    # The slow peer's transport accepts nothing after the handshake: its writer blocks.
    await connect(nursery, manager, out_capacity=0)
    fast = await connect(nursery, manager)
    assert manager.count == 2
    received = []
    for i in range(50):
        manager.broadcast("notify_flood", [i])
        received.append((await fast.next())["params"][0])
    assert received == list(range(50))
    # the slow one was cut off and is gone from the manager; the fast one is still there
    await trio.testing.wait_all_tasks_blocked()
    assert manager.count == 1
    fast.request("test.echo", {"value": "still here"}, id=1)
    assert (await fast.next())["result"] == {"value": "still here"}


async def test_slow_client_close_frame_names_the_reason(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager(queue_size=4)
    peer = await connect(nursery, manager, out_capacity=1)
    for i in range(20):
        manager.broadcast("notify_flood", [i])
    frames = []
    with trio.fail_after(5):
        while True:
            msg = await peer.next_message()
            frames.append(msg)
            if msg["type"] == "websocket.close":
                break
    assert frames[-1]["code"] == CLOSE_POLICY
    assert "too slow" in frames[-1]["reason"]
    # it got at most what fit: the bounded queue, plus what the transport held
    assert len(frames) <= 4 + 3


async def test_too_many_connections_are_refused(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager(max_connections=1)
    await connect(nursery, manager)
    peer = Peer()
    await nursery.start(peer.serve, manager)
    msg = await peer.next_message()
    assert msg["type"] == "websocket.close"


async def test_disconnect_cancels_in_flight_requests(nursery: trio.Nursery) -> None:
    manager, fixture, _ = make_manager()
    peer = await connect(nursery, manager)
    peer.request("test.wait", id=1)
    await trio.testing.wait_all_tasks_blocked()
    peer.disconnect()
    await trio.testing.wait_all_tasks_blocked()
    assert manager.count == 0
    assert not fixture.gate.is_set()


async def test_close_all_flushes_queued_replies_first(nursery: trio.Nursery) -> None:
    manager, _, _ = make_manager()
    # a transport that takes one frame at a time: replies pile up in the connection's queue
    peer = await connect(nursery, manager, out_capacity=0)
    for i in range(3):
        peer.request("test.echo", {"value": i}, id=i)
    await trio.testing.wait_all_tasks_blocked()
    manager.close_all(1012, "server restarting")
    assert sorted([(await peer.next())["id"] for _ in range(3)]) == [0, 1, 2]
    with pytest.raises(ConnectionError):
        await peer.next()
    assert peer.closed is not None
    assert peer.closed["code"] == 1012
    assert manager.count == 0


async def test_close_all_gives_up_on_a_client_that_reads_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    manager, _, _ = make_manager()
    async with trio.open_nursery() as nursery:
        peer = await connect(nursery, manager, out_capacity=0)
        for i in range(3):
            peer.request("test.echo", {"value": i}, id=i)
        await trio.testing.wait_all_tasks_blocked()
        manager.close_all(1012, "server restarting")
        await trio.sleep(FLUSH_TIMEOUT * 0.9)  # mock time: the clock jumps
        assert manager.count == 1  # still trying to flush
        await trio.sleep(FLUSH_TIMEOUT * 0.2)
        assert manager.count == 0  # given up: its flush time, no more
        nursery.cancel_scope.cancel()


frames = st.one_of(
    st.text(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["jsonrpc", "method", "params", "id", "x"]), inner, max_size=5
            )
        ),
        max_leaves=12,
    ).map(json.dumps),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(frames)
@example('{"jsonrpc":"2.0","method":"\\ud800","id":1}')  # a lone surrogate in the method name
async def test_arbitrary_frames_get_well_formed_answers(frame: str) -> None:
    manager, _, _ = make_manager()
    async with trio.open_nursery() as nursery:
        peer = await connect(nursery, manager)
        peer.send_text(frame)
        peer.request("test.echo", {"value": "sentinel"}, id="sentinel")
        with trio.fail_after(5):
            while True:
                reply = await peer.next()
                items = reply if isinstance(reply, list) else [reply]
                for item in items:
                    assert item["jsonrpc"] == "2.0"
                    assert ("result" in item) != ("error" in item)
                    if "error" in item:
                        assert isinstance(item["error"]["code"], int)
                        assert isinstance(item["error"]["message"], str)
                if not isinstance(reply, list) and reply.get("id") == "sentinel":
                    break
        nursery.cancel_scope.cancel()
