"""Database benchmark: trioprint beside Moonraker 0.11 (run by ``nox -s bench``).

Both servers run as subprocesses started as in bench_api.py; the same client code drives both
over the websocket. Figures: ``server.database.post_item`` and ``server.database.get_item``
round trips/s, on 1 connection and on 10 concurrent ones (each sequential: a request, its
answer, the next), with p50/p99 latency. Each phase writes (or reads) small settings-like
values under 100 keys of the ``bench`` namespace, as a frontend's settings would be. A server
that answers ``server.database.*`` with "method not found" gets n/a.

The load runs in a separate process (this script re-invoked with ``--load``) so that its CPU
is never counted as a server's; on this 2-core machine it still competes with the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# this script runs from bench/, so its siblings are on sys.path
from bench_api import (
    REPLY_TIMEOUT,
    Server,
    moonraker_command,
    run_server,
    trioprint_command,
    write_json,
)
from bench_files import print_table

NAMESPACE = "bench"
KEYS = 100
CONCURRENT = 10


class MethodNotFound(Exception):
    """The server does not serve the method."""


class Client:
    """One websocket JSON-RPC connection (wsproto over a trio stream)."""

    def __init__(self, stream: Any, ws: Any) -> None:
        self.stream, self.ws = stream, ws
        self.next_id = 0
        self._parts: list[str] = []

    @classmethod
    async def connect(cls, port: int) -> Client:
        import trio
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        stream = await trio.open_tcp_stream("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target="/websocket")))
        with trio.fail_after(REPLY_TIMEOUT):
            accepted = False
            while not accepted:
                ws.receive_data(await stream.receive_some())
                accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
        return cls(stream, ws)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """The result of one request; raises on an error answer."""
        import trio
        from wsproto.events import TextMessage

        self.next_id += 1
        request = {"jsonrpc": "2.0", "method": method, "params": params, "id": self.next_id}
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(request))))
        with trio.fail_after(REPLY_TIMEOUT):
            while True:
                for message in await self._messages():
                    if message.get("id") != self.next_id:
                        continue  # a notification
                    if "error" in message:
                        error = message["error"]
                        if error.get("code") == -32601:
                            raise MethodNotFound(method)
                        raise RuntimeError(f"{method}: {error}")
                    return message["result"]

    async def _messages(self) -> list[dict[str, Any]]:
        from wsproto.events import Ping, TextMessage

        data = await self.stream.receive_some()
        if not data:
            raise RuntimeError("server closed the connection")
        self.ws.receive_data(data)
        messages = []
        for event in self.ws.events():
            if isinstance(event, Ping):  # Moonraker (Tornado) pings, and drops the mute
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    messages.append(json.loads("".join(self._parts)))
                    self._parts.clear()
        return messages


def params_for(kind: str, worker: int, i: int) -> dict[str, Any]:
    key = f"client{worker}.setting{i % KEYS}"
    if kind == "get":
        return {"namespace": NAMESPACE, "key": key}
    value = {"count": i, "name": f"preset {i % 7}", "enabled": i % 2 == 0, "temps": [210, 60]}
    return {"namespace": NAMESPACE, "key": key, "value": value}


def run_load(port: int, kind: str, connections: int, seconds: float) -> dict[str, Any]:
    """``connections`` sequential clients for ``seconds``; their counts and latencies."""
    import trio

    method = f"server.database.{kind}_item"
    latencies: list[float] = []
    spans: list[tuple[float, float]] = []  # each worker's timed loop
    missing: list[str] = []

    async def worker(n: int) -> None:
        client = await Client.connect(port)
        async with client.stream:
            if kind == "get":  # the keys read must exist
                for i in range(KEYS):
                    await client.call("server.database.post_item", params_for("post", n, i))
            begun = time.perf_counter()
            deadline = begun + seconds
            i = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await client.call(method, params_for(kind, n, i))
                latencies.append(time.perf_counter() - started)
                i += 1
            spans.append((begun, time.perf_counter()))

    async def main() -> None:
        try:
            async with trio.open_nursery() as nursery:
                for n in range(connections):
                    nursery.start_soon(worker, n)
        except* MethodNotFound as group:
            missing.extend(str(e) for e in group.exceptions)

    trio.run(main)
    if missing:
        return {"missing": missing[0]}
    latencies.sort()
    return {
        "requests": len(latencies),
        "elapsed": max(end for _, end in spans) - min(begun for begun, _ in spans),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


def load_in_subprocess(port: int, kind: str, connections: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, __file__, "--load", kind, "--port", str(port)),
            *("--connections", str(connections), "--seconds", str(seconds)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} load against port {port} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(server: Server, seconds: float, notes: list[str]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for connections in (1, CONCURRENT):
        for kind in ("post", "get"):
            label = f"{kind}_item {connections} conn{'s' if connections > 1 else ''}"
            # a short run first, to warm up (and to find out whether the method exists)
            result = load_in_subprocess(server.port, kind, connections, min(0.5, seconds))
            if "missing" not in result:
                result = load_in_subprocess(server.port, kind, connections, seconds)
            if "missing" in result:
                notes.append(f"{server.name}: {result['missing']}: method not found")
                for suffix in ("req/s", "p50 ms", "p99 ms"):
                    figures[f"{label} {suffix}"] = None
                continue
            figures[f"{label} req/s"] = result["requests"] / result["elapsed"]
            figures[f"{label} p50 ms"] = result["p50_ms"]
            figures[f"{label} p99 ms"] = result["p99_ms"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each load phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--load", choices=["post", "get"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load:  # a load process
        print(json.dumps(run_load(args.port, args.load, args.connections, args.seconds)))
        return 0

    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    started = time.monotonic()
    print(f"database bench: trioprint: {args.python} -m trioprint; moonraker: {moonraker}")
    notes: list[str] = []
    with run_server("trioprint", trioprint_command(args.python)) as server:
        ours = measure(server, args.seconds, notes)
    with run_server("moonraker", moonraker_command(moonraker)) as server:
        peer = measure(server, args.seconds, notes)
    print_table(ours, peer, ("req/s",))
    print("\nratio = trioprint / moonraker (req/s: higher is better; ms: lower is better)")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    print(f"database bench took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores")
    write_json(args.json, {"trioprint": ours, "moonraker": peer})
    return 0


if __name__ == "__main__":
    sys.exit(main())
