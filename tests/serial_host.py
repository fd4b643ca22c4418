"""A test's end of a serial line: a tty opened with os.open in raw mode, read under Trio."""

from __future__ import annotations

import os
import termios
import tty

import trio

#: lines a firmware sends on its own while idle, left out of replies
CHATTER = ("wait", "echo:busy: processing")


class Tty:
    """The host side: the slave opened with os.open, raw, non-blocking."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)  # TCSAFLUSH would drop "start"
        self.buffer = b""

    def close(self) -> None:
        os.close(self.fd)

    def write(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    async def line(self) -> str:
        with trio.fail_after(10):
            while b"\n" not in self.buffer:
                await trio.lowlevel.wait_readable(self.fd)
                try:
                    self.buffer += os.read(self.fd, 4096)
                except BlockingIOError:
                    continue
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    async def until_ok(self, *, skip: tuple[str, ...] = ()) -> list[str]:
        """The lines up to and including the next ``ok...`` (those in ``skip`` left out)."""
        lines: list[str] = []
        while not lines or not lines[-1].startswith("ok"):
            line = await self.line()
            if line not in skip:
                lines.append(line)
        return lines

    async def command(self, line: str) -> list[str]:
        """Send ``line``; the reply up to its ok, without the idle chatter."""
        self.write(line)
        return await self.until_ok(skip=CHATTER)
