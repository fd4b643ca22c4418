"""Opening a serial device for the Marlin link: trio-serial, ``auto`` port discovery.

trio-serial's :class:`~trio_serial.SerialStream` opens a real device and a pty alike (tested
against the simulated Marlin's pty); ``open_serial`` falls back to a raw ``os.open`` +
:class:`trio.lowlevel.FdStream` only when trio-serial cannot configure the device (a tty
without baud rate support).
"""

from __future__ import annotations

import glob
import os
import termios
import tty

import trio
import trio_serial

from ..domain.serial_config import AUTO_PORT_PATTERNS


def candidate_ports(port: str) -> list[str]:
    """``port`` itself, or for ``auto`` every device matching /dev/serial/by-id/*, ttyUSB*,
    ttyACM* (the by-id links resolved, each device once)."""
    if port != "auto":
        return [port]
    seen: list[str] = []
    for pattern in AUTO_PORT_PATTERNS:
        for path in sorted(glob.glob(pattern)):
            real = os.path.realpath(path)
            if real not in seen:
                seen.append(real)
    return seen


async def open_serial(path: str, baudrate: int) -> trio.abc.Stream:
    """The device at ``path`` opened at ``baudrate`` (OSError when it cannot be opened)."""
    stream = trio_serial.SerialStream(path, baudrate=baudrate)
    try:
        await stream.aopen()
    except (ValueError, termios.error):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd, termios.TCSANOW)
        except termios.error:
            os.close(fd)
            raise OSError(f"{path} is not a serial device") from None
        return trio.lowlevel.FdStream(fd)
    return stream
