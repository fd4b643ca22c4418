"""The embedded simulated printer, end to end: trioprint with no config serves a live machine.

The simulator speaks klippy's protocol on a Unix socket and the real link code drives it, so
these tests go through every layer: websocket client -> trioprint -> link -> simulated klippy.
The machine runs fast (``[simulator] speed``) so heating and printing take real-world seconds.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from .live import Live, live_server, rpc_client

WAIT = 30.0  # real seconds: every wait in these tests is bounded by this

PRINT = """\
; a small print: two layers of a square
SET_PRINT_STATS_INFO TOTAL_LAYER=2
M140 S60
M109 S200
G28
M83
G1 Z0.2 F600
SET_PRINT_STATS_INFO CURRENT_LAYER=1
G1 X20 Y10 E1.5 F3000
G1 X20 Y20 E1.5
G1 X10 Y20 E1.5
G1 X10 Y10 E1.5
G1 Z0.4 F600
SET_PRINT_STATS_INFO CURRENT_LAYER=2
G1 X20 Y10 E1.5 F3000
G1 X20 Y20 E1.5
G1 X10 Y20 E1.5
G1 X10 Y10 E1.5
"""


@contextlib.asynccontextmanager
async def sim_server(tmp_path: Path, speed: float = 20.0) -> AsyncIterator[Live]:
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[simulator]\nspeed: {speed}\n")
    (tmp_path / "gcodes").mkdir(exist_ok=True)
    (tmp_path / "gcodes" / "square.gcode").write_text(PRINT)
    async with live_server(tmp_path, conf) as live:
        with trio.fail_after(WAIT):
            await live.instance.klippy.wait_ready()
        yield live


class Collector:
    """A websocket client that keeps every message, and answers by id."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.arrived = trio.Event()
        self.next_id = 0

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                self.messages.append(json.loads(await self.ws.get_message()))
                self.arrived.set()
                self.arrived = trio.Event()

    async def wait(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if match(message):
                    return message
            seen = len(self.messages)
            await self.arrived.wait()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        req_id = self.next_id
        await self.ws.send_message(
            json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}, "id": req_id})
        )
        return await self.wait(lambda m: m.get("id") == req_id)

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]

    def status(self, name: str, field: str) -> list[Any]:
        """Every value of ``name.field`` this client was sent, in order."""
        values = []
        for m in self.messages:
            if m.get("method") == "notify_status_update":
                obj = m["params"][0].get(name, {})
                if field in obj:
                    values.append(obj[field])
            elif "result" in m and isinstance(m["result"], dict) and "status" in m["result"]:
                obj = m["result"]["status"].get(name, {})
                if field in obj:
                    values.append(obj[field])
        return values


@contextlib.asynccontextmanager
async def collector(live: Live) -> AsyncIterator[Collector]:
    async with rpc_client(live.ws) as client, trio.open_nursery() as nursery:
        c = Collector(client.ws)
        nursery.start_soon(c.read)
        yield c
        nursery.cancel_scope.cancel()


async def test_no_config_means_a_ready_simulated_printer(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            info = await c.result("server.info")
            assert info["klippy_connected"] is True
            assert info["klippy_state"] == "ready"
            objects = (await c.result("printer.objects.list"))["objects"]
            printer = await c.result("printer.info")
        for name in (
            "webhooks",
            "configfile",
            "toolhead",
            "gcode_move",
            "extruder",
            "heater_bed",
            "print_stats",
            "virtual_sdcard",
            "pause_resume",
            "display_status",
            "gcode_macro PAUSE",
            "gcode_macro RESUME",
            "gcode_macro CANCEL_PRINT",
        ):
            assert name in objects
        assert printer["state"] == "ready"
        # klippy's log, as klippy reports it: the simulator's own, in the logs root
        assert printer["log_file"] == str(tmp_path / "logs" / "klippy.log")
        assert "Starting Klippy" in await trio.Path(printer["log_file"]).read_text()
        # it is not klippy's default socket: a real klippy there is never disturbed
        assert not (tmp_path / "comms" / "klippy.sock").exists()


async def test_heating_waits_and_the_temperature_settles(tmp_path: Path) -> None:
    async with sim_server(tmp_path, speed=50.0) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result(
                "printer.objects.subscribe", {"objects": {"extruder": ["temperature", "target"]}}
            )
            assert await c.result("printer.gcode.script", {"script": "M109 S200"}) == "ok"
            status = await c.result("printer.objects.query", {"objects": {"extruder": None}})
        extruder = status["status"]["extruder"]
        assert extruder["target"] == 200.0
        assert abs(extruder["temperature"] - 200.0) < 3
        assert 0.0 <= extruder["power"] <= 1.0
        temperatures = c.status("extruder", "temperature")
        # the client saw it heat up on the way (not a jump to 200)
        assert any(60 < t < 190 for t in temperatures)
        store = (await c.result("server.temperature_store"))["extruder"]
        assert store["targets"][-1] == 200.0


async def test_a_print_runs_to_complete(tmp_path: Path) -> None:
    async with sim_server(tmp_path, speed=50.0) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result(
                "printer.objects.subscribe",
                {"objects": {"print_stats": None, "virtual_sdcard": ["progress", "file_position"]}},
            )
            assert await c.result("printer.print.start", {"filename": "square.gcode"}) == "ok"
            await c.wait(
                lambda m: (
                    m.get("method") == "notify_status_update"
                    and m["params"][0].get("print_stats", {}).get("state") == "complete"
                )
            )
            status = (
                await c.result(
                    "printer.objects.query",
                    {"objects": {"print_stats": None, "virtual_sdcard": None}},
                )
            )["status"]
        states = c.status("print_stats", "state")
        assert states[0] == "standby"
        assert "printing" in states
        assert states[-1] == "complete"
        assert status["virtual_sdcard"]["progress"] == pytest.approx(1.0)
        assert status["virtual_sdcard"]["file_position"] == len(PRINT.encode())
        assert status["print_stats"]["filament_used"] == pytest.approx(12.0)
        assert status["print_stats"]["print_duration"] > 0
        assert status["print_stats"]["info"]["current_layer"] == 2
        assert status["print_stats"]["info"]["total_layer"] == 2


async def test_emergency_stop_then_firmware_restart(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": {"webhooks": None}})
            assert await c.result("printer.emergency_stop") == "ok"
            await c.wait(lambda m: m.get("method") == "notify_klippy_shutdown")
            refused = await c.call("printer.gcode.script", {"script": "G28"})
            assert refused["error"]["code"] == 400
            assert await c.result("printer.firmware_restart") == "ok"
            await c.wait(lambda m: m.get("method") == "notify_klippy_disconnected")
            await c.wait(lambda m: m.get("method") == "notify_klippy_ready")
            assert (await c.result("server.info"))["klippy_state"] == "ready"
            assert await c.result("printer.gcode.script", {"script": "G28"}) == "ok"
        assert c.status("webhooks", "state")[-1] == "ready"
    # what happened is in the simulator's klippy.log, written by the time it has stopped
    lines = (tmp_path / "logs" / "klippy.log").read_text().splitlines()
    assert any("Shutdown due to webhooks request" in line for line in lines)
    assert any("FIRMWARE_RESTART" in line for line in lines)
    assert sum("Klipper state: Ready" in line for line in lines) == 2
    assert "Stopped" in lines[-1]


async def test_unknown_commands_answer_as_klippy(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            assert await c.result("printer.gcode.script", {"script": "NOT_A_COMMAND"}) == "ok"
            line = await c.wait(lambda m: m.get("method") == "notify_gcode_response")
        assert line["params"] == ['// Unknown command:"NOT_A_COMMAND"']


async def test_http_query_on_the_simulator(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        with trio.fail_after(WAIT):
            response = await http.get("/printer/objects/query?toolhead=position,homed_axes")
        assert response.status_code == 200
        assert set(response.json()["result"]["status"]["toolhead"]) == {"position", "homed_axes"}


async def test_sim_flag_wins_over_a_configured_klippy(tmp_path: Path) -> None:
    from trioprint.app import Instance, make_simulator
    from trioprint.config import load_config

    await trio.lowlevel.checkpoint()
    conf = tmp_path / "t.conf"
    conf.write_text("[server]\nklippy_uds_address: /tmp/elsewhere.sock\n")
    config = load_config(conf, tmp_path)
    assert make_simulator(config) is None
    assert Instance(config).klippy.address == "/tmp/elsewhere.sock"
    simulator = make_simulator(config, force=True, speed=3.0)
    assert simulator is not None
    assert simulator.speed == 3.0
    assert simulator.gcodes_dir == tmp_path / "gcodes"
    conf.write_text("[file_manager]\ngcodes_path: /tmp/my-gcodes\n")
    elsewhere = make_simulator(load_config(conf, tmp_path))
    assert elsewhere is not None
    assert elsewhere.gcodes_dir == Path("/tmp/my-gcodes")
    instance = Instance(config, simulator=simulator)
    assert instance.klippy.address == str(tmp_path / "comms" / "trioprint-sim.sock")
    assert "simulator" in instance.component_names()


async def test_server_restart_keeps_the_simulated_machine(tmp_path: Path) -> None:
    # over HTTP: a websocket client would see its socket closed by the restart
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        with trio.fail_after(WAIT):
            reply = await http.post("/printer/gcode/script", json={"script": "M104 S150"})
            assert reply.json() == {"result": "ok"}
            assert (await http.post("/server/restart")).json() == {"result": "ok"}
            new = await live.server.wait_serving(other_than=live.instance)
            await new.klippy.wait_ready()
            result = await new.klippy.request("objects/query", {"objects": {"extruder": None}})
        # the host restarted; the printer did not: its heater is still on
        assert result["status"]["extruder"]["target"] == 150.0
        assert new.simulator is live.instance.simulator


async def test_a_client_reset_does_not_take_the_simulator_down(tmp_path: Path) -> None:
    import socket as stdlib_socket
    import struct

    from trioprint.domain.klippy import KlippyConnection
    from trioprint.sim.server import SimKlippy

    sock_path = Path(tempfile.mkdtemp(dir="/tmp")) / "s.sock"
    sim = SimKlippy(sock_path, tmp_path / "gcodes", speed=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        with trio.fail_after(WAIT):
            for _ in range(3):
                stream = await trio.open_unix_socket(str(sock_path))
                codec = KlippyConnection()
                _, data = codec.send_request(
                    "objects/subscribe",
                    {"objects": {"extruder": None}, "response_template": {"method": "s"}},
                )
                await stream.send_all(data)
                await stream.receive_some()
                await trio.sleep(0.6)  # pushes pile up unread: closing now resets the link
                stream.socket.setsockopt(
                    stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                stream.socket.close()
                await trio.sleep(0.3)
            async with await trio.open_unix_socket(str(sock_path)) as stream:
                codec = KlippyConnection()
                _, data = codec.send_request("info")
                await stream.send_all(data)
                codec.receive_data(await stream.receive_some())
                answer = codec.next_event()
        assert getattr(answer, "result", {}).get("state") == "ready"
        nursery.cancel_scope.cancel()
    sock_path.parent.rmdir()
