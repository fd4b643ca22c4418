"""Klippy's other endpoints forwarded as Moonraker forwards them.

Against the klippy double (names, skips, 503 while the link is down) and the whole server on
its simulated printer (JSON-RPC, HTTP GET and POST, klippy's errors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trioprint.components.klippy_endpoints import KlippyEndpoints, names_for
from trioprint.components.printer import Printer
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport

from .live import live_server, rpc_client
from .test_klippy_link import LIMIT, Harness, harness

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: what a real klippy lists (the simulator's list and bed_mesh/dump_mesh)
TRANSCRIPT: list[str] = json.loads(
    (SHARED / "klippy-transcripts" / "list_endpoints.json").read_text()
)["endpoints"]


def test_names_as_moonraker() -> None:
    assert names_for("bed_mesh/dump_mesh") == (
        "/printer/bed_mesh/dump_mesh",
        "printer.bed_mesh.dump_mesh",
    )


def forwarding(h: Harness) -> tuple[Registry, KlippyEndpoints]:
    registry = Registry()
    registry.add_component(Printer(h.klippy))
    return registry, KlippyEndpoints(h.klippy, registry)


async def test_listed_endpoints_are_served_and_forwarded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    made: list[tuple[Registry, KlippyEndpoints]] = []

    def prepare(h: Harness) -> None:
        h.double.endpoints = [*TRANSCRIPT, "Bad Name", "a//b"]
        made.append(forwarding(h))

    async with harness(prepare=prepare) as h:
        registry, forwarded = made[0]
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()
        # the reserved ones, the ones served already and the invalid ones are left out
        assert sorted(forwarded.forwarded) == [
            "bed_mesh/dump_mesh",
            "gcode/firmware_restart",
            "gcode/restart",
            "motion_report/dump_stepper",
            "motion_report/dump_trapq",
            "pause_resume/cancel",
            "pause_resume/pause",
            "pause_resume/resume",
        ]
        routes = registry.by_path("/printer/bed_mesh/dump_mesh")
        assert routes is not None
        assert sorted(routes) == ["GET", "POST"]
        ep = registry.by_rpc("printer.bed_mesh.dump_mesh")
        assert ep is not None
        assert ep.auth
        # the arguments reach klippy as they came (over HTTP without credentials)
        args = {"x": 1, "token": "secret"}
        result = await registry.dispatch(ep, args, Transport.WEBSOCKET)
        assert result["args"] == args
        result = await registry.dispatch(routes["GET"], args, Transport.HTTP)
        assert result["args"] == {"x": 1}
        # an empty result is "ok"
        cancel = registry.by_rpc("printer.pause_resume.cancel")
        assert cancel is not None
        assert await registry.dispatch(cancel, {}, Transport.WEBSOCKET) == "ok"
        # listed again on the next connection: nothing is added twice
        h.double.refuse = 10**6
        await h.double.drop(h.double.peers[0])
        with trio.fail_after(LIMIT):
            await h.until_state("disconnected")
        with pytest.raises(ApiError) as down:
            await registry.dispatch(ep, {}, Transport.WEBSOCKET)
        assert (down.value.status, down.value.message) == (503, "Klippy Host not connected")
        h.double.refuse = 0
        with trio.fail_after(LIMIT):
            await h.until_state("ready")
        assert len(forwarded.forwarded) == 8
        assert (await registry.dispatch(ep, {}, Transport.WEBSOCKET))["profiles"] == {}


async def test_a_klippy_that_lists_nothing(autojump_clock: trio.testing.MockClock) -> None:
    made: list[tuple[Registry, KlippyEndpoints]] = []
    async with harness(prepare=lambda h: made.append(forwarding(h))) as h:
        with trio.fail_after(LIMIT):
            await h.klippy.wait_ready()  # list_endpoints failed: the link is up all the same
        assert made[0][1].forwarded == {}


async def test_forwarded_on_the_simulated_printer(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        with trio.fail_after(LIMIT):
            await live.instance.klippy.wait_ready()
        header = ["time", "duration", "start_velocity", "acceleration", "start_position"]
        async with rpc_client(live.ws) as client, httpx.AsyncClient() as http:
            reply = await client.call("printer.motion_report.dump_trapq", {"name": "toolhead"})
            assert reply["result"]["header"][:5] == header
            bad = await client.call("printer.motion_report.dump_stepper", {"name": "nope"})
            message = "The value 'nope' is not valid for name"
            assert bad["error"] == {"code": 400, "message": message}
            url = f"{live.http}/printer/motion_report/dump_stepper"
            got = await http.get(url, params={"name": "stepper_x"})
            assert got.json() == {"result": {"header": ["interval", "count", "add"]}}
            posted = await http.post(url, json={"name": "stepper_y"})
            assert posted.json() == got.json()
            missing = await http.post(url)
            assert missing.status_code == 400
            assert missing.json()["error"]["message"] == "Missing Argument [name]"
            # JSON-RPC over HTTP reaches them too
            rpc: dict[str, Any] = {
                "jsonrpc": "2.0",
                "method": "printer.motion_report.dump_stepper",
                "params": {"name": "extruder"},
                "id": 1,
            }
            over_http = await http.post(f"{live.http}/server/jsonrpc", json=rpc)
            assert over_http.json()["result"]["header"] == ["interval", "count", "add"]
