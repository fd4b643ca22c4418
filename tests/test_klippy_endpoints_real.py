"""Klippy's other endpoints, forwarded through trioprint to a REAL klippy (Kalico, Klipper),
and an agent's remote method called by a real klippy macro.

trioprint learns them from klippy's ``list_endpoints`` and serves them as Moonraker does:
``motion_report/dump_stepper`` is ``printer.motion_report.dump_stepper`` and
``/printer/motion_report/dump_stepper`` (GET and POST), with klippy's own errors.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from .klippy_real import KLIPPY_PARAMS, KlippyFlavour, run_klippy
from .test_printer_real import WAIT, client, printer, trioprint_for, wait_klippy_state

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_forwarded_endpoints(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with printer(flavour, tmp_path) as rig, client(rig.live) as c:
        with trio.fail_after(WAIT):
            forwarded = rig.live.instance.klippy_endpoints.forwarded
            assert "motion_report/dump_stepper" in forwarded
            assert forwarded["pause_resume/cancel"] == "printer.pause_resume.cancel"
            dump = await c.result("printer.motion_report.dump_stepper", {"name": "stepper_x"})
            assert dump["header"] == ["interval", "count", "add"]
            bad = await c.error("printer.motion_report.dump_trapq", {"name": "nope"})
            assert bad["code"] == 400
            assert "nope" in bad["message"]
            # nothing printing: klippy's empty answer is "ok"
            assert await c.result("printer.pause_resume.cancel") == "ok"
            async with httpx.AsyncClient() as http:
                url = f"{rig.live.http}/printer/motion_report/dump_stepper"
                got = await http.get(url, params={"name": "stepper_y"})
                assert got.json()["result"]["header"] == ["interval", "count", "add"]
                missing = await http.post(url, json={})
                assert missing.status_code == 400
                assert "name" in missing.json()["error"]["message"]
            # klippy still answers: the dumps it now streams to the link broke nothing
            assert (await c.result("printer.info"))["state"] == "ready"


CALLING_MACRO = """
[gcode_macro CALL_AGENT]
gcode:
  {action_call_remote_method("agent_hello", greeting="hi", count=2)}
"""


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_a_macro_calls_an_agents_remote_method(
    flavour: KlippyFlavour | None, tmp_path: Path
) -> None:
    identity = {"client_name": "a", "version": "1", "type": "agent", "url": "x"}
    extra = CALLING_MACRO
    async with (
        trioprint_for(tmp_path) as live,
        run_klippy(flavour, tmp_path, extra_cfg=extra),
        client(live) as c,
    ):
        await wait_klippy_state(c, "ready")
        async with client(live) as agent:
            with trio.fail_after(WAIT):
                await agent.result("server.connection.identify", identity)
                method = {"method_name": "agent_hello"}
                assert await agent.result("connection.register_remote_method", method) == "ok"
                assert await c.result("printer.gcode.script", {"script": "CALL_AGENT"}) == "ok"
                index = await agent.notification("agent_hello")
            assert agent.messages[index]["params"] == {"greeting": "hi", "count": 2}
