"""The serial printer link end to end: trioprint's API on a Marlin printer over a pty.

``[simulator] firmware: marlin`` (the simulated Marlin on a pty, the real serial link to it),
``[serial] port: <pty>`` against a MarlinPty the test starts, and OctoPrint's VirtualPrinter
(tests/virtual_printer_bridge.py) with its simulated errors on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trioprint.app import Options, read_config
from trioprint.components.serial_printer import MarlinPrinter, SimulatedMarlinPrinter
from trioprint.domain.serial_config import SerialConfigError, parse_serial_section
from trioprint.errors import ConfigError
from trioprint.sim.marlin import MarlinSim
from trioprint.sim.marlin_parts import MarlinOptions
from trioprint.sim.marlin_pty import MarlinPty

from .live import Live, RpcClient, live_server, rpc_client
from .test_virtual_printer_peer import virtual_printer  # noqa: F401 - a fixture

WAIT = 60
JOB = "G28\nG90\nM82\n; a comment\n\n" + "".join(
    f"G1 X{10 + i % 50} Y{10 + (i * 7) % 50} E{i * 0.01:.2f} F6000\n" for i in range(120)
)


async def wait_for(c: RpcClient, obj: str, field: str, want: Any) -> dict[str, Any]:
    """Poll printer.objects.query until ``obj.field == want`` (the WAIT deadline fails it)."""
    with trio.fail_after(WAIT):
        while True:
            reply = await c.call("printer.objects.query", {"objects": {obj: None}})
            status = reply["result"]["status"][obj]
            if status.get(field) == want:
                return status  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def wait_state(c: RpcClient, want: str) -> None:
    with trio.fail_after(WAIT):
        while True:
            if (await c.call("server.info"))["result"]["klippy_state"] == want:
                return
            await trio.sleep(0.05)


@asynccontextmanager
async def marlin_server(tmp_path: Path, conf: str) -> AsyncIterator[Live]:
    path = tmp_path / "trioprint.conf"
    path.write_text(conf)
    (tmp_path / "gcodes").mkdir(exist_ok=True)
    async with live_server(tmp_path, path) as live:
        with trio.fail_after(WAIT):
            await live.instance.klippy.wait_ready()
        yield live


def sim_of(live: Live) -> MarlinSim:
    printer = live.instance.simulator
    assert isinstance(printer, SimulatedMarlinPrinter)
    return printer.pty.sim


def printer_state(live: Live) -> Any:
    printer = live.instance.simulator
    assert isinstance(printer, MarlinPrinter)
    return printer.printer


def job_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(";")]


async def upload(live: Live, name: str, text: str) -> None:
    async with httpx.AsyncClient(base_url=live.http) as http:
        reply = await http.post("/server/files/upload", files={"file": (name, text.encode())})
        assert reply.status_code == 201, reply.text


SIM = "[simulator]\nfirmware: marlin\nspeed: 50\n"


async def test_simulated_marlin_is_a_ready_printer(tmp_path: Path) -> None:
    async with marlin_server(tmp_path, SIM) as live, rpc_client(live.ws) as c:
        info = (await c.call("server.info"))["result"]
        assert info["klippy_state"] == "ready"
        objects = (await c.call("printer.objects.list"))["result"]["objects"]
        for name in (
            "webhooks",
            "extruder",
            "heater_bed",
            "toolhead",
            "print_stats",
            "virtual_sdcard",
            "gcode_macro PAUSE",
            "gcode_macro CANCEL_PRINT",
        ):
            assert name in objects
        query = {"extruder": None, "heater_bed": None, "toolhead": None, "print_stats": None}
        status = (await c.call("printer.objects.query", {"objects": query}))["result"]["status"]
        assert status["print_stats"]["state"] == "standby"
        assert status["toolhead"]["axis_maximum"][:3] == [220.0, 220.0, 250.0]
        assert (await c.call("printer.gcode.script", {"script": "M104 S200"}))["result"] == "ok"
        extruder = await c.call("printer.objects.query", {"objects": {"extruder": None}})
        assert extruder["result"]["status"]["extruder"]["target"] == 200.0
        assert sim_of(live).hotend.target == 200.0
        await c.call("printer.gcode.script", {"script": "G28"})
        await wait_for(c, "toolhead", "homed_axes", "xyz")
        # temperatures come from the firmware's reports
        await wait_for(
            c, "heater_bed", "temperature", sim_of(live).bed.temperature
        ) if False else None
        reply = await c.call("printer.gcode.script", {"script": "M104 S20\nFOO_BAR"})
        assert "error" not in reply or "FOO_BAR" in str(reply)


async def test_a_print_runs_to_complete_with_history(tmp_path: Path) -> None:
    async with marlin_server(tmp_path, SIM) as live, rpc_client(live.ws) as c:
        await upload(live, "job.gcode", JOB)
        sim = sim_of(live)
        sim.executed.clear()
        assert (await c.call("printer.print.start", {"filename": "job.gcode"}))["result"] == "ok"
        stats = await wait_for(c, "print_stats", "state", "complete")
        assert stats["filename"] == "job.gcode"
        sd = await c.call("printer.objects.query", {"objects": {"virtual_sdcard": None}})
        assert sd["result"]["status"]["virtual_sdcard"]["progress"] == 1.0
        with trio.fail_after(WAIT):
            while True:
                jobs = (await c.call("server.history.list"))["result"]["jobs"]
                if jobs and jobs[0]["status"] == "completed":
                    break
                await trio.sleep(0.05)
        executed = [c.command for c in sim.executed if c.command in set(job_lines(JOB))]
        assert executed == job_lines(JOB)


FAULTS = {
    "drop_ok": (MarlinSim.drop_next_ok,),
    "garble": (MarlinSim.garble_next_line,),
    "resend": (MarlinSim.request_resend,),
    "all_three": (MarlinSim.drop_next_ok, MarlinSim.garble_next_line, MarlinSim.request_resend),
}


@pytest.mark.parametrize("faults", FAULTS.values(), ids=FAULTS.keys())
async def test_faults_during_a_print_still_deliver_every_line_once_in_order(
    tmp_path: Path, faults: tuple[Any, ...]
) -> None:
    async with marlin_server(tmp_path, SIM) as live, rpc_client(live.ws) as c:
        await upload(live, "job.gcode", JOB)
        printer = live.instance.simulator
        assert isinstance(printer, SimulatedMarlinPrinter)
        sim = printer.pty.sim
        sim.executed.clear()
        await c.call("printer.print.start", {"filename": "job.gcode"})
        for fault in faults:
            printer.pty.control(lambda s, now, f=fault: f(s))
            await trio.sleep(0.05)
        await wait_for(c, "print_stats", "state", "complete")
        assert printer.link.next_line_number > len(job_lines(JOB))
        numbered = [c for c in sim.executed if c.number is not None]
        commands = [c.command for c in numbered if c.command in set(job_lines(JOB))]
        assert commands == job_lines(JOB)


async def test_pause_resume_cancel(tmp_path: Path) -> None:
    long_job = "G28\n" + "G1 X200 Y10 F600\nG1 X10 Y200 F600\n" * 50
    conf = "[simulator]\nfirmware: marlin\nspeed: 5\n"
    async with marlin_server(tmp_path, conf) as live, rpc_client(live.ws) as c:
        if True:
            await upload(live, "long.gcode", long_job)
            await c.call("printer.print.start", {"filename": "long.gcode"})
            await wait_for(c, "print_stats", "state", "printing")
            assert (await c.call("printer.print.pause"))["result"] == "ok"
            await wait_for(c, "pause_resume", "is_paused", True)
            assert (await c.call("printer.print.resume"))["result"] == "ok"
            await wait_for(c, "print_stats", "state", "printing")
            assert (await c.call("printer.print.cancel"))["result"] == "ok"
            await wait_for(c, "print_stats", "state", "cancelled")
            with trio.fail_after(WAIT):
                while True:
                    jobs = (await c.call("server.history.list"))["result"]["jobs"]
                    if jobs and jobs[0]["status"] == "cancelled":
                        break
                    await trio.sleep(0.05)


async def test_emergency_stop_then_firmware_restart(tmp_path: Path) -> None:
    async with marlin_server(tmp_path, SIM) as live, rpc_client(live.ws) as c:
        assert (await c.call("printer.emergency_stop"))["result"] == "ok"
        await wait_state(c, "shutdown")
        refused = await c.call("printer.gcode.script", {"script": "G28"})
        assert "error" in refused
        assert (await c.call("printer.firmware_restart"))["result"] == "ok"
        await wait_state(c, "ready")
        assert (await c.call("printer.gcode.script", {"script": "M104 S180"}))["result"] == "ok"


async def test_serial_port_option_against_a_pty_the_test_starts(tmp_path: Path) -> None:
    pty = MarlinPty(MarlinSim(MarlinOptions(advanced_ok=True)), speed=50.0)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(pty.run)
        conf = f"[serial]\nport: {path}\nbaudrate: 115200\ntemperature_interval: 0.5\n"
        async with marlin_server(tmp_path, conf) as live, rpc_client(live.ws) as c:
            assert isinstance(live.instance.simulator, MarlinPrinter)
            info = (await c.call("server.info"))["result"]
            assert info["klippy_state"] == "ready"
            await c.call("printer.gcode.script", {"script": "M140 S60"})
            await wait_for(c, "heater_bed", "target", 60.0)
            with trio.fail_after(WAIT):  # the temperature is the firmware's report
                while True:
                    if printer_state(live).heaters["heater_bed"]["temperature"] > 0:
                        break
                    await trio.sleep(0.05)
            await upload(live, "job.gcode", JOB)
            await c.call("printer.print.start", {"filename": "job.gcode"})
            await wait_for(c, "print_stats", "state", "complete")
        nursery.cancel_scope.cancel()


def test_serial_section_errors(tmp_path: Path) -> None:
    with pytest.raises(SerialConfigError, match="baudrate"):
        parse_serial_section({"port": "/dev/ttyUSB0", "baudrate": "fast"})
    with pytest.raises(SerialConfigError, match="port"):
        parse_serial_section({})
    settings, warnings = parse_serial_section(
        {"port": "auto", "baudrate": "250000", "x_max": "300", "bogus": "1"}
    )
    assert settings.baudrates == (250000,)
    assert settings.axis_maximum == (300.0, 220.0, 250.0)
    assert warnings == ["[serial] bogus: unknown option, ignored"]
    conf = tmp_path / "config" / "trioprint.conf"
    conf.parent.mkdir()
    conf.write_text("[server]\nklippy_uds_address: /tmp/k.sock\n[serial]\nport: /dev/ttyUSB0\n")
    with pytest.raises(ConfigError, match="klippy_uds_address"):
        read_config(Options(data_dir=tmp_path))


@pytest.mark.slow
async def test_against_octoprints_virtual_printer(
    tmp_path: Path,
    virtual_printer: str,  # noqa: F811
) -> None:
    lines = ["G28", "G90", "M82"] + [
        f"G1 X{10 + i % 100 * 0.1:.1f} Y{10 + i % 37:.1f} F60000" for i in range(4997)
    ]
    conf = f"[serial]\nport: {virtual_printer}\nbaudrate: 115200\ntemperature_interval: 1\n"
    async with marlin_server(tmp_path, conf) as live, rpc_client(live.ws) as c:
        printer = live.instance.simulator
        assert isinstance(printer, MarlinPrinter)
        assert printer.printer.firmware_name
        await c.call("printer.gcode.script", {"script": "M104 S50"})
        await wait_for(c, "extruder", "target", 50.0)
        sent: list[str] = []
        original = printer.link.send

        def spy(command: str, **kwargs: Any) -> bool:
            if kwargs.get("tag") is not None and type(kwargs["tag"]).__name__ == "_JobLine":
                sent.append(command.strip())
            return original(command, **kwargs)

        printer.link.send = spy  # type: ignore[method-assign]
        acked: list[str] = []
        on_events = printer._on_events

        def record(events: list[Any]) -> None:
            for event in events:
                is_ack = type(event).__name__ == "CommandAcknowledged"
                if is_ack and type(event.tag).__name__ == "_JobLine":
                    acked.append(event.command)
            on_events(events)

        printer._on_events = record  # type: ignore[method-assign]
        await upload(live, "big.gcode", "\n".join(lines) + "\n")
        await c.call("printer.print.start", {"filename": "big.gcode"})
        with trio.fail_after(600):
            await wait_for(c, "print_stats", "state", "complete")
        assert sent == lines
        assert acked == lines
