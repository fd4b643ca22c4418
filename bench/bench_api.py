"""API benchmark: trioprint side by side with Moonraker 0.11 (run by ``nox -s bench``).

Each server runs as a subprocess on a free loopback port with an equivalent set-up (a fresh
data folder, loopback trusted, no printer). The load runs in separate processes too (this
script re-invoked with ``--load``), so the client's own work never runs inside a server. The
same client code drives both servers. On a 2-core machine the client competes with the server
for CPU: both servers are measured under the same conditions, so the ratios are fair even where
absolute figures are client-bound.

Figures: websocket JSON-RPC round trips/s for ``server.info`` on 1 connection and on 50
concurrent connections (each sequential), with p50/p99 latency; HTTP ``GET /server/info``
requests/s on keep-alive connections; idle RSS; RSS after the load; server CPU seconds per
load phase.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiling import format_breakdown, spy

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

MOONRAKER_CONF = """\
[server]
host: 127.0.0.1
port: {port}
{server_extra}
[machine]
provider: none

[authorization]
trusted_clients:
  127.0.0.0/8

[announcements]
enable_moonlight: False
"""


def server_conf(port: int, socket: str | None, extra: str = "") -> str:
    """Moonraker's config for a bench run (trioprint reads it too): loopback, trusted, quiet.

    ``socket`` is klippy's Unix socket (``None``: no ``klippy_uds_address``, for a trioprint
    that runs its own simulated printer); ``extra`` adds ``[server]`` options, one per line.
    """
    uds = "" if socket is None else f"klippy_uds_address: {socket}\n"
    return MOONRAKER_CONF.format(port=port, server_extra=uds + extra)


def write_json(path: Path | None, data: Any) -> None:
    """``--json PATH``: the figures written there (indented), its folder made; None: nothing."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    data: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_ticks_seconds(self.pid)


def rss_kb(pid: int) -> int:
    """A process's resident memory (``VmRSS`` in /proc/<pid>/status), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ticks_seconds(pid: int) -> float:
    """utime+stime from /proc/<pid>/stat (10 ms ticks; includes threads that have exited)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server/info", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"no HTTP answer on port {port} within {timeout} s")


@contextlib.contextmanager
def run_server(name: str, command: Callable[[Path, int], list[str]]) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        data = Path(tmp)
        port = free_port()
        log = (data / "server.out").open("wb")
        process = subprocess.Popen(
            command(data, port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            wait_http(port)
            yield Server(name, port, process, data)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def trioprint_command(python: str) -> Callable[[Path, int], list[str]]:
    def command(data: Path, port: int) -> list[str]:
        return [
            python,
            "-m",
            "trioprint",
            "-d",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]

    return command


def moonraker_command(moonraker: str) -> Callable[[Path, int], list[str]]:
    def command(data: Path, port: int) -> list[str]:
        (data / "misc").mkdir(parents=True, exist_ok=True)
        (data / "misc" / "usb.ids").write_text("")
        (data / "logs").mkdir(exist_ok=True)
        conf = data / "moonraker.conf"
        conf.write_text(server_conf(port, f"{data}/klippy.sock"))
        return [moonraker, "-d", str(data), "-c", str(conf)]

    return command


# --- load generators (run in their own processes) -------------------------------------------


#: Seconds a load connection waits for one reply before it gives up (and counts a stall).
REPLY_TIMEOUT = 10.0


async def ws_worker(port: int, seconds: float, latencies: list[float], stalls: list[int]) -> int:
    """One connection sending server.info requests one after the other; returns the count."""
    import trio
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target="/websocket")))
    accepted = False
    with trio.fail_after(REPLY_TIMEOUT):
        while not accepted:
            ws.receive_data(await stream.receive_some())
            accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
    count = 0
    deadline = time.perf_counter() + seconds
    text_parts: list[str] = []
    async with stream:
        while time.perf_counter() < deadline:
            count += 1
            marker = f'"id":{count}}}'
            request = f'{{"jsonrpc":"2.0","method":"server.info","id":{count}}}'
            start = time.perf_counter()
            await stream.send_all(ws.send(TextMessage(request)))
            done = False
            answered = trio.move_on_after(REPLY_TIMEOUT)
            with answered:
                while not done:
                    done = await _read_reply(stream, ws, marker, text_parts)
            if answered.cancelled_caught:
                stalls.append(count)  # no answer: give this connection up, the others go on
                return count - 1
            latencies.append(time.perf_counter() - start)
    return count


async def _read_reply(stream: Any, ws: Any, marker: str, text_parts: list[str]) -> bool:
    """Read one chunk; True once the reply ending with ``marker`` is complete."""
    from wsproto.events import Ping, TextMessage

    done = False
    data = await stream.receive_some()
    if not data:
        raise RuntimeError("server closed the connection")
    ws.receive_data(data)
    for event in ws.events():
        if isinstance(event, Ping):  # Moonraker (Tornado) pings, and drops the mute
            await stream.send_all(ws.send(event.response()))
        elif isinstance(event, TextMessage):
            text_parts.append(event.data)
            if event.message_finished:
                message = "".join(text_parts)
                text_parts.clear()
                done = done or message.endswith(marker)
    return done


def run_ws_load(port: int, connections: int, seconds: float) -> dict[str, Any]:
    import trio

    latencies: list[float] = []
    counts: list[int] = []
    stalls: list[int] = []

    async def main() -> None:
        async def one() -> None:
            counts.append(await ws_worker(port, seconds, latencies, stalls))

        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one)

    start = time.perf_counter()
    trio.run(main)
    # a stalled connection waited REPLY_TIMEOUT past the end: count the phase's length only
    elapsed = min(time.perf_counter() - start, seconds + 0.5)
    latencies.sort()
    return {
        "requests": sum(counts),
        "elapsed": elapsed,
        "stalled connections": len(stalls),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "mean_ms": 1000 * statistics.fmean(latencies),
    }


def run_http_load(port: int, connections: int, seconds: float) -> dict[str, Any]:
    import h11
    import trio

    counts: list[int] = []
    latencies: list[float] = []

    async def one() -> None:
        count = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:  # a new connection if the server closed one
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                while time.perf_counter() < deadline and conn.our_state is h11.IDLE:
                    start = time.perf_counter()
                    request = h11.Request(
                        method="GET",
                        target="/server/info",
                        headers=[("Host", "127.0.0.1"), ("Connection", "keep-alive")],
                    )
                    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some())
                            continue
                        if isinstance(event, h11.EndOfMessage):
                            break
                        if isinstance(event, h11.Response) and event.status_code != 200:
                            raise RuntimeError(f"HTTP {event.status_code}")
                    count += 1
                    latencies.append(time.perf_counter() - start)
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
        counts.append(count)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one)

    start = time.perf_counter()
    trio.run(main)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": sum(counts),
        "elapsed": elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "mean_ms": 1000 * statistics.fmean(latencies),
    }


def load_in_subprocess(kind: str, port: int, connections: int, seconds: float) -> dict[str, Any]:
    """Run one load phase in a separate process; returns its figures."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            kind,
            "--port",
            str(port),
            "--connections",
            str(connections),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} load against port {port} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# --- measurement and table ------------------------------------------------------------------


@dataclass
class Figures:
    values: dict[str, float] = field(default_factory=dict)
    #: Where each phase's py-spy stacks go (``--profile``): ``DIR/api-<server>-<phase>.txt``.
    profile: Path | None = None
    profiles: list[Path] = field(default_factory=list)

    def phase(
        self, server: Server, label: str, kind: str, connections: int, seconds: float
    ) -> None:
        load_in_subprocess(kind, server.port, connections, min(1.0, seconds))  # warm-up
        out = None
        if self.profile is not None:
            out = self.profile / f"api-{server.name}-{label.replace(' ', '-')}.txt"
            self.profiles.append(out)
        with spy(server.pid, out):
            cpu0 = server.cpu_seconds()
            result = load_in_subprocess(kind, server.port, connections, seconds)
            cpu = server.cpu_seconds() - cpu0
        rate = result["requests"] / result["elapsed"]
        self.values[f"{label} req/s"] = rate
        self.values[f"{label} p50 ms"] = result["p50_ms"]
        self.values[f"{label} p99 ms"] = result["p99_ms"]
        self.values[f"{label} server CPU ms/req"] = 1000 * cpu / max(result["requests"], 1)
        if result.get("stalled connections"):
            self.values[f"{label} stalled conns"] = result["stalled connections"]


#: For these metrics a higher value is better (the rest: lower is better).
HIGHER_IS_BETTER = ("req/s",)


def measure(server: Server, seconds: float, profile: Path | None = None) -> Figures:
    figures = Figures(profile=profile)
    time.sleep(3)  # idle
    figures.values["idle RSS kB"] = server.rss_kb()
    figures.phase(server, "ws 1 conn", "ws", 1, seconds)
    figures.phase(server, "ws 50 conns", "ws", 50, seconds)
    figures.phase(server, "http 8 conns", "http", 8, seconds)
    figures.values["RSS after load kB"] = server.rss_kb()
    return figures


#: What each optional component adds to a server's memory when it is loaded: its modules.
COMPONENTS = {
    "simulator (--sim)": "trioprint.sim.server",
    "update manager ([update_manager])": "trioprint.components.update_manager",
    "metadata parsers (first G-code file)": "trioprint.domain.metadata,trioprint.domain.thumbnails",
}

_RSS_SCRIPT = """
import importlib, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
import trioprint.app
base = rss()
for name in sys.argv[1].split(',') if sys.argv[1] else []:
    importlib.import_module(name)
print(base, rss())
"""


def component_rss(python: str) -> dict[str, float]:
    """RSS (kB) of a fresh interpreter with trioprint's app imported, and what each optional
    component's modules add to it (they are loaded only when configured)."""

    def run(modules: str) -> tuple[int, int]:
        out = subprocess.run(
            [python, "-c", _RSS_SCRIPT, modules], capture_output=True, text=True, check=True
        )
        base, after = out.stdout.split()
        return int(base), int(after)

    values: dict[str, float] = {"app imported, RSS kB": run("")[0]}
    for label, modules in COMPONENTS.items():
        base, after = run(modules)
        values[f"+ {label} kB"] = after - base
    return values


def bare_command(python: str, result_file: Path) -> Callable[[Path, int], list[str]]:
    """hypercorn with a raw ASGI app answering trioprint's server.info JSON: the floor."""

    def command(data: Path, port: int) -> list[str]:
        return [python, str(HERE / "bare_asgi.py"), str(port), str(result_file)]

    return command


def print_table(ours: Figures, peer: Figures) -> None:
    width = max(len(k) for k in ours.values) + 2
    print()
    print(f"{'metric':<{width}}{'trioprint':>12}{'moonraker':>12}{'ratio':>9}  better")
    for key, value in ours.values.items():
        other = peer.values.get(key)
        ratio = value / other if other else float("nan")
        higher = any(key.endswith(s) for s in HIGHER_IS_BETTER)
        better = "trioprint" if (ratio > 1) == higher else "moonraker"
        if abs(ratio - 1) < 0.02:
            better = "even"
        print(f"{key:<{width}}{value:>12.2f}{other or 0:>12.2f}{ratio:>9.2f}  {better}")
    print("\nratio = trioprint / moonraker (req/s: higher is better; ms, kB: lower is better)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, help="record each phase with py-spy into this folder"
    )
    parser.add_argument("--load", choices=["ws", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load:  # a load process
        run = run_ws_load if args.load == "ws" else run_http_load
        print(json.dumps(run(args.port, args.connections, args.seconds)))
        return 0

    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    started = time.monotonic()
    print(f"trioprint: {args.python} -m trioprint; moonraker: {moonraker}")
    with run_server("trioprint", trioprint_command(args.python)) as server:
        ours = measure(server, args.seconds, args.profile)
        url = f"http://127.0.0.1:{server.port}/server/info"
        with urllib.request.urlopen(url, timeout=5) as response:
            info = json.load(response)["result"]
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        result_file = Path(tmp) / "result.json"
        result_file.write_text(json.dumps(info))
        with run_server("bare-hypercorn", bare_command(args.python, result_file)) as server:
            floor = measure(server, args.seconds, args.profile)
    with run_server("moonraker", moonraker_command(moonraker)) as server:
        peer = measure(server, args.seconds, args.profile)
    print_table(ours, peer)
    print(
        "\nthe floor: hypercorn's Trio server with a raw ASGI app answering the same JSON "
        "(ratio = trioprint / floor)"
    )
    for key, value in floor.values.items():
        if "CPU" in key or "req/s" in key:
            ratio = ours.values[key] / value if value else float("nan")
            print(f"  {key:<34}{ours.values[key]:>10.2f}{value:>10.2f}{ratio:>8.2f}")
    print("\nmemory of trioprint's optional components (fresh interpreter, RSS kB):")
    for key, value in component_rss(args.python).items():
        print(f"  {key:<48}{value:>10.0f}")
    if args.profile is not None:
        print("\nprofiles (py-spy, share of busy samples by innermost frame's package):")
        for path in ours.profiles + peer.profiles:
            print(format_breakdown(path))
    print(f"\nbench took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores")
    write_json(
        args.json, {"trioprint": ours.values, "moonraker": peer.values, "floor": floor.values}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
