"""Run the simulated printer alone: ``python -m trioprint.sim --socket PATH``.

For pointing another host (Moonraker, a benchmark, a test) at the same simulated klippy that
trioprint embeds. It serves klippy's API on PATH until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from .server import SimKlippy


async def serve(
    socket_path: Path, gcodes: Path, speed: float, log_file: Path | None = None
) -> None:
    sim = SimKlippy(socket_path, gcodes, speed=speed, log_file=log_file)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trioprint.sim", description=__doc__)
    parser.add_argument("--socket", type=Path, required=True, help="the API socket to serve")
    parser.add_argument("--gcodes", type=Path, required=True, help="the virtual_sdcard folder")
    parser.add_argument("--speed", type=float, default=1.0, help="time runs N times faster")
    parser.add_argument(
        "--log-file", type=Path, default=None, help="klippy's log (reported in info), as -l"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.speed > 0:
        parser.error("--speed must be greater than 0")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
    )
    args.gcodes.mkdir(parents=True, exist_ok=True)
    trio.run(serve, args.socket, args.gcodes, args.speed, args.log_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
