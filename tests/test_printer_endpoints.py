"""printer.* argument parsing and behaviour with no klippy, through a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from trioprint.components.printer import ObjectsParams, SubscribeParams
from trioprint.errors import ApiError
from trioprint.registry import structure_params
from trioprint.transport.outbox import Outbox

from .live import live_server, rpc_client


def test_http_object_query_syntax() -> None:
    # ?gcode=gcode_position,busy&toolhead&extruder=target
    raw = {"gcode": "gcode_position,busy", "toolhead": "", "extruder": "target", "_": "123"}
    params = structure_params(raw, ObjectsParams)
    assert params.objects == {
        "gcode": ["gcode_position", "busy"],
        "toolhead": None,
        "extruder": ["target"],
    }


def test_jsonrpc_objects_argument_wins() -> None:
    raw = {"objects": {"toolhead": ["position"], "webhooks": None}}
    assert structure_params(raw, ObjectsParams).objects == raw["objects"]


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"objects": "toolhead"}, "objects"),
        ({"objects": {"toolhead": "position"}}, "toolhead"),
        ({"objects": {"toolhead": [1, 2]}}, "toolhead"),
    ],
)
def test_bad_objects_name_the_problem(raw: dict[str, object], named: str) -> None:
    with pytest.raises(ApiError) as exc:
        structure_params(raw, ObjectsParams)
    assert exc.value.status == 400
    assert "objects" in exc.value.message
    assert named in exc.value.message


def test_http_subscribe_takes_connection_id_apart() -> None:
    params = structure_params({"connection_id": "42", "toolhead": "position"}, SubscribeParams)
    assert params.connection_id == 42
    assert params.objects == {"toolhead": ["position"]}
    with pytest.raises(ApiError, match="connection_id"):
        structure_params({"connection_id": "x"}, SubscribeParams)


async def test_outbox_order_urgent_then_queued_then_idle() -> None:
    idle = ["coalesced"]
    box: Outbox[str] = Outbox(2, idle=lambda: idle.pop() if idle else None)
    assert box.put("a")
    assert box.put("b")
    assert not box.put("c")  # full: the producer decides, nothing waits
    assert box.put_urgent("stop")
    got = [await box.get() for _ in range(4)]
    assert got == ["stop", "a", "b", "coalesced"]
    box.close()
    assert await box.get() is None


async def test_printer_methods_without_klippy_fail_at_once(tmp_path: Path) -> None:
    conf = tmp_path / "t.conf"
    conf.write_text(f"[server]\nklippy_uds_address: {tmp_path}/nothing.sock\n")
    async with live_server(tmp_path, conf) as live:
        with trio.fail_after(10):
            async with rpc_client(live.ws) as client:
                for method in ("printer.info", "printer.gcode.script", "printer.objects.list"):
                    params = {"script": "G28"} if method == "printer.gcode.script" else None
                    reply = await client.call(method, params)
                    assert reply["error"]["code"] == 503, reply
                    assert "Klippy" in reply["error"]["message"]
                reply = await client.call("printer.emergency_stop")
                assert reply["error"]["code"] == 503
                assert "emergency stop not delivered" in reply["error"]["message"]
            async with httpx.AsyncClient(base_url=live.http) as http:
                response = await http.get("/printer/objects/query?toolhead")
                assert response.status_code == 503
                assert response.json()["error"]["code"] == 503
                response = await http.post("/printer/objects/subscribe?toolhead")
                assert response.status_code == 400
                assert "connection_id" in response.json()["error"]["message"]
                info = (await http.get("/server/info")).json()["result"]
                assert info["klippy_connected"] is False
                assert info["klippy_state"] == "disconnected"
