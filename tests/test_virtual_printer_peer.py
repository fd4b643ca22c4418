"""OctoPrint 1.11.8's VirtualPrinter on a pty (tests/virtual_printer_bridge.py), and a differential
of it against the simulated Marlin: the same commands, the same shapes of reply.

The bridge runs in the venv nox provisions (``TRIOPRINT_OCTOPRINT_PYTHON``); without it the
tests skip, and under CI they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from trioprint.sim.marlin import MarlinSim
from trioprint.sim.marlin_parts import with_checksum
from trioprint.sim.marlin_pty import MarlinPty

from .klippy_real import _in_ci
from .serial_host import Tty

BRIDGE = Path(__file__).with_name("virtual_printer_bridge.py")
#: both dialects: Marlin's "T:25.00 /0.00", the VirtualPrinter's "T:21.30/ 0.00"
TEMPS = re.compile(r"^ok T:(\d+\.\d+) ?/ ?(\d+\.\d+) B:(\d+\.\d+) ?/ ?(\d+\.\d+) @:\d+")
POSITION = re.compile(r"^(?:ok )?X:(-?[\d.]+) Y:(-?[\d.]+) Z:(-?[\d.]+) E:(-?[\d.]+) Count")
CAP = re.compile(r"^Cap:([A-Z0-9_]+):([01])$")
RESEND = re.compile(r"^Resend: ?(\d+)$")


def octoprint_python() -> str:
    python = os.environ.get("TRIOPRINT_OCTOPRINT_PYTHON", "")
    if python and Path(python).exists():
        return python
    if _in_ci():
        pytest.fail("OctoPrint's VirtualPrinter not provisioned, and CI must not skip it: use nox")
    pytest.skip("OctoPrint's VirtualPrinter not installed: run the tests through nox")


@pytest.fixture
def virtual_printer() -> Iterator[str]:
    """The bridge's tty path; the bridge ends when its stdin closes."""
    process = subprocess.Popen(
        [octoprint_python(), "-W", "ignore", str(BRIDGE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        path = process.stdout.readline().decode().strip()
        assert path.startswith("/dev/"), "the bridge printed no tty path"
        yield path
    finally:
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture
async def simulated_marlin() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        path = await nursery.start(MarlinPty(MarlinSim(), speed=20.0).run)
        yield path
        nursery.cancel_scope.cancel()


async def handshake(host: Tty) -> None:
    """What OctoPrint does first: M110 N0 until an ok comes back (the banner may precede it)."""
    with trio.fail_after(10):
        while True:
            host.write("M110 N0")
            with trio.move_on_after(1):
                if (await host.until_ok())[-1] == "ok":
                    return


async def test_virtual_printer_answers_m115_and_m105(virtual_printer: str) -> None:
    host = Tty(virtual_printer)
    try:
        await handshake(host)
        reply = await host.command(with_checksum("N1 M115"))
        assert reply[0] == "FIRMWARE_NAME:Virtual Marlin 1.0 PROTOCOL_VERSION:1.0"
        assert "Cap:AUTOREPORT_TEMP:1" in reply
        (temps,) = await host.command(with_checksum("N2 M105"))
        assert TEMPS.match(temps), temps
    finally:
        host.close()


async def shapes(path: str) -> dict[str, object]:
    """Run the same commands on a firmware; the shapes of its replies."""
    host = Tty(path)
    try:
        await handshake(host)
        m115 = await host.command(with_checksum("N1 M115"))
        m105 = await host.command(with_checksum("N2 M105"))
        g28 = await host.command(with_checksum("N3 G28"))
        m114 = await host.command(with_checksum("N4 M114"))
        bad = await host.command("N5 M105*0")  # a wrong checksum
        again = await host.command(with_checksum("N5 M105"))
    finally:
        host.close()
    caps = dict(match.groups() for line in m115 if (match := CAP.match(line)))
    temps = TEMPS.match(m105[0])
    position = [POSITION.match(line) for line in m114]
    resends = [int(match[1]) for line in bad if (match := RESEND.match(line))]
    return {
        "m115": (m115[0].startswith("FIRMWARE_NAME:"), "PROTOCOL_VERSION:1.0" in m115[0]),
        "m115 ends": m115[-1],
        "caps": {"AUTOREPORT_TEMP", "EMERGENCY_PARSER", "EXTENDED_M20"} <= caps.keys(),
        "m105": (len(m105), temps is not None),
        "g28": g28[-1],
        "m114": [tuple(map(float, m.groups())) for m in position if m][:1],
        "m114 ends": m114[-1].startswith("ok"),
        "bad": (bad[0].startswith("Error:"), resends, bad[-1]),
        "again": TEMPS.match(again[0]) is not None,
    }


async def test_simulated_marlin_replies_in_the_virtual_printers_shapes(
    virtual_printer: str, simulated_marlin: str
) -> None:
    octoprint = await shapes(virtual_printer)
    ours = await shapes(simulated_marlin)
    expected = {
        "m115": (True, True),
        "m115 ends": "ok",
        "caps": True,
        "m105": (1, True),
        "g28": "ok",
        "m114": [(0.0, 0.0, 0.0, 0.0)],
        "m114 ends": True,
        "bad": (True, [5], "ok"),
        "again": True,
    }
    assert octoprint == expected
    assert ours == expected
