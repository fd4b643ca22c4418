"""The klippy link against a klippy double: lifecycle, failures, emergency stop, fan-out.

In-memory streams and Trio's MockClock (autojump): retries and timeouts run instantly, and a
stalled klippy is a double that never answers or never reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trioprint.bus import Bus
from trioprint.components.data_store import DataStore
from trioprint.components.klippy import RETRY_INTERVAL, Klippy, KlippyStateChanged
from trioprint.errors import ApiError
from trioprint.registry import Registry
from trioprint.transport.websocket import WebsocketConnection, WebsocketManager

from .klippy_double import KlippyDouble

LIMIT = 30  # mock-clock seconds: every wait in these tests is bounded by this


class Harness:
    def __init__(self, nursery: trio.Nursery, double: KlippyDouble) -> None:
        self.bus = Bus()
        self.websockets = WebsocketManager(Registry(), self.bus)
        self.double = double
        self.klippy = Klippy(self.bus, self.websockets, double.connect, address="double")
        self.store = DataStore(self.klippy)
        self.nursery = nursery
        self.seen: list[str] = []
        self.events: trio.MemoryReceiveChannel[Any] | None = None
        # a client that hears every websocket notification (nothing reads its queue)
        self.observer = self.connection(queue_size=100_000)

    async def until_state(self, state: str) -> None:
        """Wait for the link's next change to ``state``."""
        assert self.events is not None
        async for event in self.events:
            if isinstance(event, KlippyStateChanged) and event.state == state:
                return

    async def reconnected(self) -> None:
        """Wait until klippy dropped the link and it is ready again."""
        await self.until_state("disconnected")
        await self.until_state("ready")

    def connection(self, queue_size: int = 8) -> WebsocketConnection:
        """A websocket connection with no socket behind it: its frames stay in its outbox."""
        conn = WebsocketConnection(self.websockets, "127.0.0.1", queue_size)
        self.websockets._connections[conn.connection_id] = conn
        return conn


async def frames(conn: WebsocketConnection) -> list[Any]:
    """Everything the connection's writer would send now (the idle source included)."""
    out = []
    while len(conn._outbox) or (conn.idle_source and _peek_idle(conn)):
        with trio.fail_after(1):
            text = await conn._outbox.get()
        assert text is not None
        out.append(json.loads(text))
    return out


async def updates(conn: WebsocketConnection) -> list[Any]:
    """The diffs of the ``notify_status_update`` frames among :func:`frames`."""
    return [f["params"][0] for f in await frames(conn) if f["method"] == "notify_status_update"]


def _peek_idle(conn: WebsocketConnection) -> bool:
    view = conn.idle_source
    if view is None:
        return False
    text = view()
    if text is None:
        return False
    conn._outbox.put(text)
    return True


@asynccontextmanager
async def harness(
    lockstep: bool = False,
    *,
    prepare: Callable[[Harness], object] | None = None,
    run: bool = True,
) -> AsyncIterator[Harness]:
    """A link (and the data store) against a fresh double; ``prepare`` runs before they start."""
    async with trio.open_nursery() as nursery:
        double = KlippyDouble(nursery, lockstep=lockstep)
        h = Harness(nursery, double)
        if prepare is not None:
            prepare(h)
        with h.bus.subscribe(KlippyStateChanged, capacity=10000) as events:
            h.events = events
            if run:
                await nursery.start(h.klippy.run)
                await nursery.start(h.store.run)
            yield h
            nursery.cancel_scope.cancel()


def notifications(h: Harness) -> list[str]:
    """Every websocket notification sent to clients so far, in order."""
    box = h.observer._outbox
    while len(box):
        text = box._items.popleft()
        h.seen.append(json.loads(text)["method"])
    return h.seen


async def test_init_sequence_as_moonraker(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        first = h.double.received[0][1]
        assert first["method"] == "info"
        assert first["params"]["client_info"]["program"] == "trioprint"
        methods = h.double.methods()
        # objects/list before the subscription; webhooks always in it; gcode output subscribed
        assert methods.index("objects/list") < methods.index("objects/subscribe")
        assert methods.index("objects/subscribe") < methods.index("gcode/subscribe_output")
        subscribe = [m for _, m in h.double.received if m["method"] == "objects/subscribe"]
        assert "webhooks" in subscribe[0]["params"]["objects"]
        assert subscribe[0]["params"]["response_template"] == {"method": "process_status_update"}
        # the temperature store subscribed to the sensors heaters lists
        assert "extruder" in subscribe[-1]["params"]["objects"]
        assert h.klippy.state == "ready"
        assert h.klippy.objects == list(h.double.status)
        assert "notify_klippy_ready" in notifications(h)


async def test_startup_is_polled_until_klippy_leaves_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(prepare=lambda h: setattr(h.double, "startup_polls", 4)) as h:
        double = h.double
        with trio.fail_after(LIMIT):
            while double.methods().count("info") < 2:
                await double.wait_for("info", 2)
        assert h.klippy.state == "startup"
        assert h.klippy.connected
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        assert double.methods().count("info") == 5


async def test_connect_is_retried_every_quarter_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(prepare=lambda h: setattr(h.double, "refuse", 4)) as h:
        double = h.double
        assert h.klippy.state == "disconnected"
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        gaps = [b - a for a, b in zip(double.attempts, double.attempts[1:], strict=False)]
        assert gaps == pytest.approx([RETRY_INTERVAL] * 4)


async def test_requests_while_disconnected_fail_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(prepare=lambda h: setattr(h.double, "refuse", 10**6)) as h:
        with trio.fail_after(1), pytest.raises(ApiError) as exc:
            await h.klippy.request("objects/list")
        assert exc.value.status == 503
        assert "not connected" in exc.value.message


async def test_klippy_errors_carry_klippys_message(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            h.double.state = "shutdown"
            with pytest.raises(ApiError) as exc:
                await h.klippy.run_gcode("G28")
        assert exc.value.status == 400
        assert exc.value.message == "Printer is shutdown"


async def test_a_drop_fails_waiting_requests_and_the_link_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        h.double.stall.add("gcode/script")
        outcome: list[Any] = []

        async def long_script() -> None:
            try:
                await h.klippy.run_gcode("M109 S200")
            except ApiError as exc:
                outcome.append(exc)

        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as waiters:
                waiters.start_soon(long_script)
                await h.double.wait_for("gcode/script")
                assert outcome == []
                await h.double.drop(h.double.peers[0])
            assert outcome[0].status == 503
            # klippy restarting: the link reconnects and initializes again
            await h.reconnected()
        assert len(h.double.peers) == 2
        names = notifications(h)
        assert names.index("notify_klippy_disconnected") < len(names) - 1
        assert names.count("notify_klippy_ready") == 2


async def test_oversized_frame_drops_the_link_not_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.double.push_raw(h.double.peers[0], b"x" * (5 * 1024 * 1024))
            await h.reconnected()
        assert h.klippy.connected
        assert len(h.double.peers) == 2


async def test_garbage_frame_drops_the_link(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.double.push_raw(h.double.peers[0], b"{not json\x03")
            await h.reconnected()
        assert "notify_klippy_disconnected" in notifications(h)


# -- emergency stop --------------------------------------------------------------------------


async def test_emergency_stop_jumps_the_queue_and_fails_every_waiting_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        h.double.stall.update({"gcode/script", "objects/query"})
        failures: list[ApiError] = []

        async def waiting(method: str) -> None:
            try:
                if method == "gcode/script":
                    await h.klippy.run_gcode("G4 P100000")
                else:
                    await h.klippy.request(method, {"objects": {"toolhead": None}})
            except ApiError as exc:
                failures.append(exc)

        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as waiters:
                for method in ["gcode/script"] * 5 + ["objects/query"] * 3:
                    waiters.start_soon(waiting, method)
                await h.double.wait_for("objects/query", 3)
                start = trio.current_time()
                result = await h.klippy.emergency_stop()
                took = trio.current_time() - start
        assert result == {}
        assert took < 0.1  # no timeout was waited for: klippy answered at once
        assert len(failures) == 8
        assert {f.status for f in failures} == {503}
        assert all("emergency stop" in f.message for f in failures)
        with trio.fail_after(LIMIT):
            await h.until_state("shutdown")
        assert "notify_klippy_shutdown" in notifications(h)
        assert h.klippy.session is not None
        assert h.klippy.session.in_flight == 0


async def test_emergency_stop_goes_ahead_of_queued_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # lockstep streams have no buffer: a double that stops reading blocks the writer, so the
    # requests queue up in the outbox behind the frame being written.
    async with harness(lockstep=True) as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        main = h.double.peers[0]
        h.double.pause_reading(main)

        failed: list[ApiError] = []

        async def queued(i: int) -> None:
            try:
                await h.klippy.run_gcode(f"G1 X{i}")
            except ApiError as exc:
                failed.append(exc)

        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as waiters:
                for i in range(5):
                    waiters.start_soon(queued, i)
                await trio.testing.wait_all_tasks_blocked()
                # the writer is stuck in the middle of a frame klippy does not take
                result = await h.klippy.emergency_stop()
        assert result == {}
        # (the double may have taken the first request before it stopped reading)
        assert len(failed) >= 4
        assert {f.status for f in failed} == {503}
        # it went out on a second connection of its own, as the first request there
        side = h.double.peers[1]
        assert h.double.methods(side.number) == ["emergency_stop"]
        assert h.double.state == "shutdown"


async def test_emergency_stop_while_disconnected_uses_a_fresh_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(run=False) as h:
        # no link running at all (e.g. still retrying): the stop still gets through
        with trio.fail_after(LIMIT):
            assert await h.klippy.emergency_stop() == {}
        assert h.double.methods() == ["emergency_stop"]


# -- status fan-out --------------------------------------------------------------------------


async def test_each_client_gets_exactly_its_objects_and_fields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            a, b = h.connection(), h.connection()
            snap_a = await h.klippy.subscribe(a, {"toolhead": ["position"]})
            snap_b = await h.klippy.subscribe(b, {"gcode_move": None, "nonexistent": None})
        assert snap_a["status"] == {"toolhead": {"position": [0.0, 0.0, 0.0, 0.0]}}
        assert snap_b["status"] == {
            "gcode_move": {"speed": 1500.0, "speed_factor": 1.0},
            "nonexistent": {},
        }
        # klippy holds one subscription: the union of both (and the internal ones)
        merged = h.double.peers[0].subscription
        assert merged is not None
        assert merged["toolhead"] == ["position"]
        assert merged["gcode_move"] is None
        assert merged["webhooks"] is None
        await h.double.push_status({"toolhead": {"position": [1.0, 2.0, 0.0, 0.0]}})
        await h.double.push_status({"toolhead": {"print_time": 5.0}})
        await h.double.push_status({"gcode_move": {"speed": 3000.0}})
        with trio.fail_after(LIMIT):
            await trio.testing.wait_all_tasks_blocked()
            got_a, got_b = await frames(a), await frames(b)
        assert [f["params"][0] for f in got_a] == [{"toolhead": {"position": [1.0, 2.0, 0.0, 0.0]}}]
        assert [f["params"][0] for f in got_b] == [{"gcode_move": {"speed": 3000.0}}]
        assert all(f["method"] == "notify_status_update" for f in got_a + got_b)


async def test_a_slow_client_gets_one_merged_diff_not_a_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            slow = h.connection(queue_size=4)
            await h.klippy.subscribe(slow, {"toolhead": None, "gcode_move": ["speed"]})
            for i in range(200):  # far more updates than its queue holds
                await h.double.push_status({"toolhead": {"position": [float(i), 0.0, 0.0, 0.0]}})
                if i % 3 == 0:
                    await h.double.push_status({"gcode_move": {"speed": float(i)}})
            await trio.testing.wait_all_tasks_blocked()
        assert len(slow._outbox) == 0  # nothing queued per update
        got = await frames(slow)
        assert len(got) == 1
        diff, eventtime = got[0]["params"]
        assert diff == {
            "toolhead": {"position": [199.0, 0.0, 0.0, 0.0]},
            "gcode_move": {"speed": 198.0},
        }
        assert eventtime == h.double.eventtime
        assert not slow.close_reason  # kept, not disconnected


async def test_empty_objects_unsubscribes(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            conn = h.connection()
            await h.klippy.subscribe(conn, {"toolhead": None})
            result = await h.klippy.subscribe(conn, {})
            assert result["status"] == {}
            await h.double.push_status({"toolhead": {"position": [9.0, 0.0, 0.0, 0.0]}})
            await trio.testing.wait_all_tasks_blocked()
        assert await frames(conn) == []


async def test_subscriptions_survive_a_klippy_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            a, b = h.connection(), h.connection()
            await h.klippy.subscribe(a, {"toolhead": ["position"]})
            await h.klippy.subscribe(b, {"gcode_move": ["speed"]})
            h.double.status["toolhead"]["position"] = [5.0, 5.0, 5.0, 0.0]
            await h.double.drop(h.double.peers[0])
            await h.reconnected()
            await trio.testing.wait_all_tasks_blocked()
        # the new connection's subscription covers both clients again ...
        merged = h.double.peers[1].subscription
        assert merged is not None
        assert merged["toolhead"] == ["position"]
        assert merged["gcode_move"] == ["speed"]
        # ... and each got its full snapshot again, filtered to its own spec
        assert await updates(a) == [{"toolhead": {"position": [5.0, 5.0, 5.0, 0.0]}}]
        assert await updates(b) == [{"gcode_move": {"speed": 1500.0}}]


async def test_a_closed_connection_leaves_the_merged_subscription(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            conn = h.connection()
            await h.klippy.subscribe(conn, {"gcode_move": None})
            assert "gcode_move" in (h.double.peers[0].subscription or {})
            del h.websockets._connections[conn.connection_id]
            for listener in h.websockets._close_listeners:
                listener(conn)
            other = h.connection()
            await h.klippy.subscribe(other, {"toolhead": ["position"]})
        assert "gcode_move" not in (h.double.peers[0].subscription or {})


# -- stores ----------------------------------------------------------------------------------


async def test_gcode_store_and_responses(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            notifications(h)
            assert await h.klippy.run_gcode("M115") == {}
            await trio.testing.wait_all_tasks_blocked()
        entries = h.store.gcodes.get()
        assert [(e["type"], e["message"]) for e in entries] == [
            ("command", "M115"),
            ("response", "// ran M115"),
        ]
        assert "notify_gcode_response" in notifications(h)


async def test_temperature_store_samples_once_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await trio.sleep(3)
            await h.double.push_status({"extruder": {"temperature": 180.0, "target": 200.0}})
            await trio.sleep(2)
        result = h.store.temperatures.result()
        extruder = result["extruder"]
        assert set(extruder) == {"temperatures", "targets", "powers"}
        assert extruder["temperatures"][-1] == 180.0
        assert extruder["targets"][-1] == 200.0
        assert 5 <= len(extruder["temperatures"]) <= 7


async def test_remote_methods_are_registered_when_ready_and_called(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[dict[str, Any]] = []

    def prepare(h: Harness) -> None:
        h.klippy.register_remote_method("trioprint_test", lambda **kw: calls.append(kw))

    async with harness(prepare=prepare) as h:
        double = h.double
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        registered = [m for _, m in double.received if m["method"] == "register_remote_method"]
        assert [m["params"] for m in registered] == [
            {"response_template": {"method": "trioprint_test"}, "remote_method": "trioprint_test"}
        ]
        # a macro calling it: klippy pushes the template with the macro's arguments
        peer = double.peers[0]
        await double._send(peer, {"method": "trioprint_test", "params": {"speed": 5}})
        await trio.testing.wait_all_tasks_blocked()
        assert calls == [{"speed": 5}]


async def test_agent_methods_register_at_once_when_ready_and_again_after_a_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[dict[str, Any]] = []
    async with harness() as h:
        double = h.double
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
            await h.klippy.register_agent_method("agent_m", lambda **kw: calls.append(kw))
        registered = [m for _, m in double.received if m["method"] == "register_remote_method"]
        assert [m["params"]["remote_method"] for m in registered] == ["agent_m"]
        with pytest.raises(ApiError, match="already registered"):
            await h.klippy.register_agent_method("agent_m", lambda **kw: None)
        with pytest.raises(ApiError, match="already registered"):
            await h.klippy.register_agent_method("process_status_update", lambda **kw: None)
        # a new klippy connection registers it again
        await double.drop(double.peers[0])
        with trio.fail_after(LIMIT):
            await h.reconnected()
        registered = [m for p, m in double.received if m["method"] == "register_remote_method"]
        assert len(registered) == 2
        await double._send(double.peers[-1], {"method": "agent_m", "params": {"x": 1}})
        await trio.testing.wait_all_tasks_blocked()
        assert calls == [{"x": 1}]
        # unregistered: klippy's calls are dropped
        h.klippy.unregister_remote_method("agent_m")
        await double._send(double.peers[-1], {"method": "agent_m", "params": {"x": 2}})
        await trio.testing.wait_all_tasks_blocked()
        assert calls == [{"x": 1}]
