"""The simulated Marlin served on a pty, opened as a plain serial device (raw mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

from trioprint.sim.marlin import MarlinSim
from trioprint.sim.marlin_parts import with_checksum
from trioprint.sim.marlin_pty import MarlinPty, default_link

from .serial_host import Tty


async def test_pty_m115_m105_g28(tmp_path: Path) -> None:
    link = default_link(tmp_path)
    server = MarlinPty(MarlinSim(), speed=50.0, link=link)
    async with trio.open_nursery() as nursery:
        path = await nursery.start(server.run)
        assert path.startswith("/dev/pts/")
        assert link.readlink() == Path(path)
        host = Tty(str(link))
        try:
            assert await host.line() == "start"
            host.write("M110 N0")
            assert (await host.until_ok())[-1] == "ok"
            host.write(with_checksum("N1 M115"))
            reply = await host.until_ok()
            firmware = [line for line in reply if line.startswith("FIRMWARE_NAME:")]
            assert firmware
            assert "Cap:EMERGENCY_PARSER:1" in reply
            host.write(with_checksum("N2 M105"))
            (temps,) = await host.until_ok()
            assert temps.startswith("ok T:")
            assert " B:" in temps
            assert " B@:" in temps
            host.write(with_checksum("N3 G28"))  # 9 model seconds: busy, then ok
            reply = await host.until_ok()
            assert "echo:busy: processing" in reply
            assert reply[-1] == "ok"
            host.write(with_checksum("N4 M114"))
            assert (await host.until_ok())[0].startswith("X:0.00 Y:0.00 Z:0.00 E:0.00 Count")
            host.write("N5 M105*0")
            assert await host.until_ok() == [
                "Error:checksum mismatch, Last Line: 4",
                "Resend: 5",
                "ok",
            ]
            server.control(lambda sim, now: sim.inject("//action:pause"))
            assert await host.line() == "//action:pause"
        finally:
            host.close()
        nursery.cancel_scope.cancel()
    assert not link.exists()


def test_standalone_prints_the_tty_path() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "trioprint.sim.marlin_pty", "--speed", "10"],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        path = process.stdout.readline().decode().strip()
        assert path.startswith("/dev/pts/")
        host = Tty(path)
        try:
            assert trio.run(host.line) == "start"
        finally:
            host.close()
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
