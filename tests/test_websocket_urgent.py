"""Urgent methods on a busy websocket: an emergency stop is read and run whatever else is in
flight on its connection, and a flooding connection stays bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioprint.bus import Bus
from trioprint.registry import Call, NoParams, Registry, endpoint
from trioprint.transport.websocket import WebsocketManager

from .asgi_peer import Peer
from .test_sim import WAIT, collector, sim_server


class Machine:
    """Ordinary requests that hang until released, and an urgent stop."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.stopped = 0
        self.started = 0

    @endpoint("/test/wait", "POST")
    async def wait(self, call: Call[NoParams]) -> str:
        self.started += 1
        await self.gate.wait()
        return "released"

    @endpoint("/test/stop", "POST", urgent=True)
    async def stop(self, call: Call[NoParams]) -> str:
        self.stopped += 1
        return "stopped"


def make_manager(**kwargs: Any) -> tuple[WebsocketManager, Machine]:
    registry = Registry()
    machine = Machine()
    registry.add_component(machine)
    return WebsocketManager(registry, Bus(), **kwargs), machine


async def connect(nursery: trio.Nursery, manager: WebsocketManager) -> Peer:
    peer = Peer()
    await nursery.start(peer.serve, manager)
    assert (await peer.next_message())["type"] == "websocket.accept"
    return peer


async def test_urgent_request_runs_while_the_in_flight_limit_is_reached(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    manager, machine = make_manager(max_in_flight=4)
    peer = await connect(nursery, manager)
    for i in range(50):
        peer.request("test.wait", id=i)
    peer.request("test.stop", id="stop")
    with trio.fail_after(5):
        reply = await peer.next()
    assert reply == {"jsonrpc": "2.0", "result": "stopped", "id": "stop"}
    assert machine.started == 4  # the limit held for the ordinary requests


async def test_urgent_request_inside_a_batch_runs_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    manager, machine = make_manager(max_in_flight=2)
    peer = await connect(nursery, manager)
    for i in range(5):
        peer.request("test.wait", id=i)
    batch = [
        {"jsonrpc": "2.0", "method": "test.wait", "id": "w"},
        {"jsonrpc": "2.0", "method": "test.stop", "id": "s"},
    ]
    peer.send_text(json.dumps(batch))
    await trio.testing.wait_all_tasks_blocked()
    assert machine.stopped == 1  # while its batch waits for a slot
    machine.gate.set()
    with trio.fail_after(5):
        replies = [await peer.next() for _ in range(6)]
    batch_reply = next(r for r in replies if isinstance(r, list))
    assert batch_reply == [
        {"jsonrpc": "2.0", "result": "released", "id": "w"},
        {"jsonrpc": "2.0", "result": "stopped", "id": "s"},
    ]


async def test_ordinary_requests_past_the_limit_wait_then_all_run(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    manager, machine = make_manager(max_in_flight=2, max_waiting=10)
    peer = await connect(nursery, manager)
    for i in range(12):
        peer.request("test.wait", id=i)
    await trio.testing.wait_all_tasks_blocked()
    assert machine.started == 2
    machine.gate.set()
    with trio.fail_after(5):
        replies = [await peer.next() for _ in range(12)]
    assert sorted(r["id"] for r in replies) == list(range(12))
    assert all(r["result"] == "released" for r in replies)


async def test_requests_past_the_waiting_bound_are_refused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    manager, machine = make_manager(max_in_flight=2, max_waiting=3)
    peer = await connect(nursery, manager)
    for i in range(8):
        peer.request("test.wait", id=i)
    with trio.fail_after(5):
        refused = [await peer.next() for _ in range(3)]
    assert sorted(r["id"] for r in refused) == [5, 6, 7]
    for r in refused:
        assert r["error"]["code"] == 429
        assert "in flight" in r["error"]["message"]
    peer.request("test.stop", id="stop")  # still read and run
    with trio.fail_after(5):
        assert (await peer.next())["id"] == "stop"
    machine.gate.set()
    with trio.fail_after(5):
        done = [await peer.next() for _ in range(5)]
    assert sorted(r["id"] for r in done) == [0, 1, 2, 3, 4]


async def test_urgent_requests_are_bounded_too(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    registry = Registry()
    gate = trio.Event()

    class Stuck:
        @endpoint("/test/stop", "POST", urgent=True)
        async def stop(self, call: Call[NoParams]) -> str:
            await gate.wait()
            return "stopped"

    registry.add_component(Stuck())
    manager = WebsocketManager(registry, Bus(), max_urgent=3)
    peer = await connect(nursery, manager)
    for i in range(5):
        peer.request("test.stop", id=i)
    with trio.fail_after(5):
        refused = [await peer.next() for _ in range(2)]
    assert sorted(r["id"] for r in refused) == [3, 4]
    assert all(r["error"]["code"] == 429 for r in refused)
    gate.set()
    with trio.fail_after(5):
        assert sorted([(await peer.next())["id"] for _ in range(3)]) == [0, 1, 2]


def test_emergency_stop_and_restarts_are_urgent() -> None:
    from trioprint.components.printer import Printer

    registry = Registry()
    registry.add_component(Printer(None))  # type: ignore[arg-type]
    urgent = {ep.rpc_name for ep in registry.endpoints() if ep.urgent}
    assert urgent == {"printer.emergency_stop", "printer.restart", "printer.firmware_restart"}


@pytest.mark.slow
async def test_emergency_stop_with_50_dwells_in_flight_on_the_simulator(tmp_path: Path) -> None:
    async with sim_server(tmp_path, speed=1.0) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": {"webhooks": None}})
        for i in range(50):
            await c.ws.send_message(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "method": "printer.gcode.script",
                        "params": {"script": "G4 P100000"},
                        "id": f"dwell-{i}",
                    }
                )
            )
        with trio.fail_after(6):
            assert await c.result("printer.emergency_stop") == "ok"
            await c.wait(lambda m: m.get("method") == "notify_klippy_shutdown")
        assert live.instance.klippy.state == "shutdown"
