"""The simulated Marlin on a pty: a serial device that trioprint (or anything) can open.

::

    MarlinPty.run
    ├─ reader: the pty master readable -> bytes to the model (``feed``), then a kick
    └─ ticker: advance the model to now, write what it printed, sleep until its next wakeup
               (or a kick)

The slave side is put in raw mode (no echo, no line discipline), as a serial device is, and its
path (``/dev/pts/N``) is what a host opens; ``link`` adds a symlink to it (e.g.
``<data>/comms/marlin-sim``). The server keeps the slave open itself, so hosts may open and close
it as they like. The model's clock runs ``speed`` times real time. Output that nobody reads
for a second is dropped, as a USB serial device drops it with no host attached.

Standalone: ``python -m trioprint.sim.marlin_pty [--link PATH] [--speed N] [--advanced-ok]``
prints the tty path and serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Final

import trio

from .marlin import MarlinSim
from .marlin_parts import MarlinOptions

#: Real seconds a write may wait for the host to read before the output is dropped.
WRITE_TIMEOUT: Final = 1.0
CHUNK: Final = 4096


def default_link(data_dir: Path) -> Path:
    """Where trioprint's data folder exposes the simulated Marlin's tty."""
    return data_dir / "comms" / "marlin-sim"


class MarlinPty:
    """Serves :attr:`sim` on a pty; :attr:`path` is the tty once :meth:`run` has started."""

    def __init__(
        self,
        sim: MarlinSim | None = None,
        *,
        speed: float = 1.0,
        link: Path | None = None,
        boot: bool = True,
    ) -> None:
        self.sim = sim or MarlinSim()
        self.speed = speed
        self.link = link
        self.path = ""
        self.dropped = 0
        self._boot = boot
        self._kick = trio.Event()
        self._origin = (0.0, self.sim.time)

    # -- the clock -----------------------------------------------------------------------------

    def now(self) -> float:
        """The model's time now."""
        real, model = self._origin
        return model + (trio.current_time() - real) * self.speed

    def _real(self, model_time: float) -> float:
        real, model = self._origin
        return real + (model_time - model) / self.speed

    # -- control -------------------------------------------------------------------------------

    def control(self, action: Callable[[MarlinSim, float], None]) -> None:
        """Run ``action(sim, now)`` (e.g. a fault knob) and wake the server to write its output."""
        action(self.sim, self.now())
        self._kick.set()

    # -- serving -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            self.path = os.ttyname(slave)
            if self.link is not None:
                self._make_link(self.link)
            self._origin = (trio.current_time(), self.sim.time)
            if self._boot:
                self.sim.boot()
            task_status.started(self.path)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, master)
                nursery.start_soon(self._ticker, master)
        finally:
            if self.link is not None:
                with contextlib.suppress(OSError):
                    if self.link.is_symlink() and os.readlink(self.link) == self.path:
                        self.link.unlink()
            os.close(master)
            os.close(slave)

    def _make_link(self, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(self.path)

    async def _reader(self, master: int) -> None:
        while True:
            await trio.lowlevel.wait_readable(master)
            try:
                data = os.read(master, CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:  # EIO: no slave open (we hold one, so only at close)
                if exc.errno != errno.EIO:
                    raise
                await trio.sleep(0.05)
                continue
            self.sim.feed(data, self.now())
            self._kick.set()

    async def _ticker(self, master: int) -> None:
        while True:
            self.sim.advance(self.now())
            await self._write(master, self.sim.read())
            wakeup = self.sim.next_wakeup()
            deadline = math.inf if wakeup is None else self._real(wakeup)
            self._kick = trio.Event()
            with trio.move_on_at(deadline):
                await self._kick.wait()

    async def _write(self, master: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(master, view)
            except BlockingIOError:
                with trio.move_on_after(WRITE_TIMEOUT) as waited:
                    await trio.lowlevel.wait_writable(master)
                if waited.cancelled_caught:
                    self.dropped += len(view)
                    return
                continue
            view = view[written:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A simulated Marlin printer on a pty.")
    parser.add_argument("--link", type=Path, help="a symlink to create to the tty")
    parser.add_argument("--speed", type=float, default=1.0, help="model seconds per real second")
    parser.add_argument("--advanced-ok", action="store_true", help="ok N.. P.. B..")
    args = parser.parse_args(argv)
    sim = MarlinSim(MarlinOptions(advanced_ok=args.advanced_ok))
    server = MarlinPty(sim, speed=args.speed, link=args.link)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            path = await nursery.start(server.run)
            print(path, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)
    sys.exit(0)


if __name__ == "__main__":
    main()
