"""Status fan-out benchmark: trioprint side by side with Moonraker 0.11 (run by ``nox -s bench``).

One real kalico runs in batch mode (no MCU); trioprint and Moonraker 0.11 are both connected to
its API socket for the whole run, each with an equivalent config (fresh data folder, loopback
trusted, 200 websocket connections allowed). A driver process keeps klippy busy through a raw
connection of its own (G1 moves, fan and speed-factor changes, ~50 scripts/s), so klippy pushes
real changes (toolhead, gcode_move, fan, idle_timeout...) at its 250 ms cadence.

Phases of 1, 10 and 100 websocket clients, each client subscribed to every object (all fields),
run against one server at a time, alternating servers; the other server stays connected to
klippy, subscribed to everything too (both are primed with a client first) but has no clients.
The clients run in a separate process (this script re-invoked with ``--load``), so their work
never counts as the server's.

Latency of an update = the client's receipt time - the update's ``eventtime``. ``eventtime`` is
klippy's reactor clock, ``clock_gettime(CLOCK_MONOTONIC_RAW)`` (kalico's chelper
get_monotonic), so the clients read that clock; the clocks are checked against klippy's
``objects/query`` before the servers start. The latency therefore includes klippy's own work
for the tick; the load process also keeps a raw klippy subscription as the reference (what a
client connected to klippy directly sees: the floor), and checks every delivered update against
it: missed updates (coalesced away or lost) and content that differs from klippy's.

Figures per phase: delivered updates/s (summed over clients), latency p50/p99, missed updates,
server CPU (% of one core over the phase, and µs per delivered update, from the ns counters in
/proc/<pid>/task/*/schedstat; the 10 ms-tick utime+stime is kept in the --json details).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Klippy's reactor clock (kalico klippy/chelper/pyhelper.c get_monotonic).
KLIPPY_CLOCK = time.CLOCK_MONOTONIC_RAW
STATUS = "notify_status_update"

#: The same config for both servers (each ignores what it does not know).
SERVER_CONF = """\
[server]
host: 127.0.0.1
port: {port}
klippy_uds_address: {socket}
max_websocket_connections: 200

[machine]
provider: none

[authorization]
trusted_clients:
  127.0.0.0/8

[announcements]
enable_moonlight: False
"""

# The cfg template names these paths; they are rewritten into the run's directory.
SIM_PREFIX = "/tmp/klippy-sim/"
SIM_SERIAL = "/tmp/klippy-sim-unused-serial"


def klippy_clock() -> float:
    return time.clock_gettime(KLIPPY_CLOCK)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process's live threads, in ns resolution (/proc/<pid>/task/*/schedstat).

    utime+stime in /proc/<pid>/stat counts in 10 ms ticks: too coarse for the 1-client phases.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def cpu_ticks_seconds(pid: int) -> float:
    """utime+stime from /proc/<pid>/stat (10 ms ticks; includes threads that have exited)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def stop_process(process: subprocess.Popen[Any], sig: int, timeout: float) -> None:
    """``sig``, then SIGKILL if the process has not exited within ``timeout``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- klippy ---------------------------------------------------------------------------------


class RawKlippy:
    """A blocking connection to klippy's API socket (trioprint's sans-I/O codec)."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        from trioprint.domain.klippy import KlippyConnection

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.conn = KlippyConnection()

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        from trioprint.domain.klippy import NEED_DATA, Response

        req_id, data = self.conn.send_request(method, params)
        self.sock.sendall(data)
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("klippy closed the connection")
                self.conn.receive_data(chunk)
            elif isinstance(event, Response) and event.id == req_id:
                if not event.ok:
                    raise RuntimeError(f"klippy {method}: {event.message}")
                return event.result

    def close(self) -> None:
        self.sock.close()


def wait_klippy_ready(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            klippy = RawKlippy(path)
        except OSError:
            time.sleep(0.05)
            continue
        try:
            while time.monotonic() < deadline:
                if klippy.request("info").get("state") == "ready":
                    return
                time.sleep(0.1)
        finally:
            klippy.close()
    raise RuntimeError(f"klippy at {path} not ready within {timeout} s")


@contextlib.contextmanager
def run_klippy(kalico: str, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    sim = sim_dir()
    workdir.mkdir(parents=True)
    (workdir / "printer_data" / "gcodes").mkdir(parents=True)
    cfg = (sim / "printer-kalico.cfg").read_text()
    cfg = cfg.replace(SIM_SERIAL, str(workdir / "unused-serial"))
    cfg = cfg.replace(SIM_PREFIX, f"{workdir}/")
    if "/tmp/klippy-sim" in cfg:
        raise RuntimeError("a klippy-sim path in printer-kalico.cfg was not rewritten")
    (workdir / "printer.cfg").write_text(cfg)
    shutil.copy(sim / "klipper.dict", workdir / "klipper.dict")
    sock = workdir / "klippy.sock"
    with (workdir / "klippy.out").open("wb") as out:
        process = subprocess.Popen(
            [
                kalico,
                str(workdir / "printer.cfg"),
                "-o",
                "/dev/null",
                "-d",
                str(workdir / "klipper.dict"),
                "-a",
                str(sock),
                "-l",
                str(workdir / "klippy.log"),
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_klippy_ready(str(sock))
        yield process
    finally:
        stop_process(process, signal.SIGTERM, 5)


def sim_dir() -> Path:
    """../shared/klippy-sim beside the clone (else $TRIOPRINT_SHARED/klippy-sim)."""
    beside = HERE.parents[1] / "shared" / "klippy-sim"
    if beside.is_dir():
        return beside
    return Path(os.environ.get("TRIOPRINT_SHARED", str(HERE.parents[1] / "shared"))) / "klippy-sim"


def check_clock(path: str, rounds: int = 10) -> dict[str, Any]:
    """``objects/query`` eventtimes against CLOCK_MONOTONIC_RAW and CLOCK_MONOTONIC.

    Run while nobody is subscribed, so klippy answers at once (a query otherwise waits for the
    next 250 ms tick): each eventtime must fall between the local readings around the request.
    Klippy's query timer stays registered for one more tick after a query, hence the sleeps.
    """
    klippy = RawKlippy(path)
    inside = 0
    offsets: list[float] = []
    other: list[float] = []
    widths: list[float] = []
    try:
        for _ in range(rounds):
            before, before_mono = klippy_clock(), time.monotonic()
            eventtime = klippy.request("objects/query", {"objects": {"webhooks": None}})[
                "eventtime"
            ]
            after, after_mono = klippy_clock(), time.monotonic()
            inside += before <= eventtime <= after
            offsets.append(eventtime - (before + after) / 2)
            other.append(eventtime - (before_mono + after_mono) / 2)
            widths.append(after - before)
            time.sleep(0.3)
    finally:
        klippy.close()
    return {
        "rounds": rounds,
        "inside_bracket": inside,
        "max_abs_offset_ms": 1000 * max(abs(o) for o in offsets),
        "max_bracket_ms": 1000 * max(widths),
        "monotonic_offset_ms": 1000 * statistics.median(other),
    }


# --- the driver (its own process): keeps klippy busy ----------------------------------------


def run_driver(path: str, interval: float) -> int:
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    klippy = RawKlippy(path)
    klippy.request("gcode/script", {"script": "G28\nG90\nM83"})
    rng = random.Random(1)
    scripts = errors = 0
    started = time.monotonic()
    print("driving", flush=True)
    while not stop:
        if select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
            break  # the parent closed our stdin (or died)
        lines = [
            f"G1 X{rng.uniform(10, 240):.2f} Y{rng.uniform(10, 200):.2f} "
            f"Z{rng.uniform(1, 5):.2f} E0.2 F{rng.choice((3000, 6000, 9000))}",
            f"M106 S{rng.randint(0, 255)}",
        ]
        if scripts % 5 == 0:
            lines.append(f"M220 S{rng.randint(90, 110)}")
        try:
            klippy.request("gcode/script", {"script": "\n".join(lines)})
        except RuntimeError as exc:
            errors += 1
            if errors <= 3:
                print(f"driver: {exc}", file=sys.stderr, flush=True)
        scripts += 1
        time.sleep(interval)
    klippy.close()
    elapsed = time.monotonic() - started
    print(json.dumps({"scripts": scripts, "errors": errors, "elapsed": elapsed}), flush=True)
    return 0


# --- the load (its own process): N websocket clients and a raw klippy reference -------------


class Closed(Exception):
    pass


class WsClient:
    """A JSON-RPC websocket client on wsproto over Trio; answers pings (Moonraker sends them)."""

    def __init__(self, stream: Any, ws: Any) -> None:
        self.stream = stream
        self.ws = ws
        self.parts: list[str] = []
        self.ready: list[tuple[float, str]] = []
        self.next_id = 0

    @classmethod
    async def connect(cls, port: int) -> WsClient:
        import trio
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, RejectConnection, Request

        stream = await trio.open_tcp_stream("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target="/websocket")))
        client = cls(stream, ws)
        while True:
            data = await stream.receive_some()
            if not data:
                raise Closed("closed during the handshake")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    raise Closed(f"handshake rejected: HTTP {event.status_code}")
                if isinstance(event, AcceptConnection):
                    return client

    async def message(self) -> tuple[float, str]:
        """The next complete text message and the clock reading when its last bytes came."""
        from wsproto.events import CloseConnection, Ping, TextMessage

        while not self.ready:
            data = await self.stream.receive_some()
            now = klippy_clock()
            if not data:
                raise Closed("the server closed the connection")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    self.parts.append(event.data)
                    if event.message_finished:
                        self.ready.append((now, "".join(self.parts)))
                        self.parts.clear()
                elif isinstance(event, Ping):
                    await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    raise Closed(f"the server closed the websocket: {event.code} {event.reason}")
        return self.ready.pop(0)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        from wsproto.events import TextMessage

        self.next_id += 1
        request = {"jsonrpc": "2.0", "method": method, "id": self.next_id}
        if params is not None:
            request["params"] = params
        await self.stream.send_all(self.ws.send(TextMessage(json.dumps(request))))
        while True:
            _, text = await self.message()
            reply = json.loads(text)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


@dataclass
class LoadState:
    recording: bool = False
    subscribed: int = 0
    failed: int = 0
    #: Per client: (receipt clock, raw message) while recording.
    records: list[list[tuple[float, str]]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    #: The reference: (receipt clock, eventtime, status) of klippy's own pushes.
    reference: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)


async def ws_client(port: int, index: int, state: LoadState, all_set: Any) -> None:
    records = state.records[index]
    try:
        client = await WsClient.connect(port)
        objects = (await client.call("printer.objects.list"))["objects"]
        await client.call("printer.objects.subscribe", {"objects": dict.fromkeys(objects)})
    except (OSError, Closed, RuntimeError) as exc:
        state.failed += 1
        state.lost.append(f"client {index} before subscribing: {exc}")
        if state.subscribed + state.failed == len(state.records):
            all_set.set()
        return
    state.subscribed += 1
    if state.subscribed + state.failed == len(state.records):
        all_set.set()
    async with client.stream:
        try:
            while True:
                received = await client.message()
                if state.recording:
                    records.append(received)
        except (OSError, Closed) as exc:
            state.lost.append(f"client {index}: {exc}")


async def reference_client(path: str, state: LoadState, subscribed: Any) -> None:
    """A raw klippy subscription to every object: klippy's updates as klippy sends them."""
    import trio

    from trioprint.domain.klippy import NEED_DATA, KlippyConnection, Notification, Response

    stream = await trio.open_unix_socket(path)
    conn = KlippyConnection()
    async with stream:

        async def request(method: str, params: dict[str, Any]) -> Any:
            req_id, data = conn.send_request(method, params)
            await stream.send_all(data)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    data = await stream.receive_some()
                    if not data:
                        raise Closed("klippy closed the reference connection")
                    conn.receive_data(data)
                elif isinstance(event, Response) and event.id == req_id:
                    return event.result

        objects = (await request("objects/list", {}))["objects"]
        spec = dict.fromkeys(objects)
        await request("objects/subscribe", {"objects": spec, "response_template": {"method": "r"}})
        subscribed.set()
        now = klippy_clock()
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                data = await stream.receive_some()
                if not data:
                    raise Closed("klippy closed the reference connection")
                now = klippy_clock()
                conn.receive_data(data)
            elif isinstance(event, Notification) and state.recording:
                state.reference.append((now, event.params["eventtime"], event.params["status"]))


def merge(into: dict[str, dict[str, Any]], diff: dict[str, dict[str, Any]]) -> None:
    for name, fields in diff.items():
        into.setdefault(name, {}).update(fields)


def differences(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> str:
    """The first few fields where a delivered diff differs from klippy's (merged) one."""
    missing, extra, values = [], [], []
    for name in sorted(set(got) | set(want)):
        ours, theirs = got.get(name, {}), want.get(name, {})
        for key in sorted(set(ours) | set(theirs)):
            if key not in ours:
                missing.append(f"{name}.{key}")
            elif key not in theirs:
                extra.append(f"{name}.{key}")
            elif ours[key] != theirs[key]:
                values.append(f"{name}.{key}: {ours[key]!r:.60} != {theirs[key]!r:.60}")
    return f"missing {missing[:5]}, extra {extra[:5]}, other values {values[:3]}"


def analyse(state: LoadState, started: float, stopped: float, margin: float) -> dict[str, Any]:
    """Latencies, and every client's updates checked against klippy's (the reference)."""
    ref_latency = [1000 * (t - e) for t, e, _ in state.reference]
    ref_by_time = {e: status for _, e, status in state.reference}
    ref_times = sorted(ref_by_time)
    window = [e for e in ref_times if started + margin <= e <= stopped - margin]
    latencies: list[float] = []
    delivered = missed = unknown = mismatched = 0
    example = ""
    for records in state.records:
        seen: list[float] = []
        for received, text in records:
            message = json.loads(text)
            if message.get("method") != STATUS:
                continue
            diff, eventtime = message["params"]
            latencies.append(1000 * (received - eventtime))
            delivered += 1
            if seen and eventtime not in ref_by_time:
                unknown += 1
            elif seen:  # expected: klippy's updates since the previous delivered one, merged
                expected: dict[str, dict[str, Any]] = {}
                for e in ref_times:
                    if seen[-1] < e <= eventtime:
                        merge(expected, ref_by_time[e])
                if diff != expected:
                    mismatched += 1
                    if not example:
                        example = f"eventtime {eventtime}: {differences(diff, expected)}"
            seen.append(eventtime)
        got = set(seen)
        missed += sum(1 for e in window if e not in got)
    expected_total = len(window) * len(state.records)
    return {
        "clients": len(state.records),
        "subscribed": state.subscribed,
        "lost": state.lost,
        "elapsed": stopped - started,
        "updates": delivered,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "klippy_updates": len(state.reference),
        "ref_p50_ms": percentile(ref_latency, 0.5),
        "ref_p99_ms": percentile(ref_latency, 0.99),
        "missed": missed,
        "missed_of": expected_total,
        "unknown_eventtimes": unknown,
        "mismatched": mismatched,
        "mismatch_example": example,
    }


def run_load(port: int, klippy_socket: str, connections: int, seconds: float) -> int:
    """Line protocol with the parent: we print ``ready``, it answers ``go``, we print ``stop``
    after ``seconds`` of recording, then the figures as one JSON line."""
    import trio

    state = LoadState(records=[[] for _ in range(connections)])

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            reference_set = trio.Event()
            nursery.start_soon(reference_client, klippy_socket, state, reference_set)
            all_set = trio.Event()
            for index in range(connections):
                nursery.start_soon(ws_client, port, index, state, all_set)
            with trio.fail_after(60):
                await reference_set.wait()
                await all_set.wait()
            print("ready", flush=True)
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() != "go":
                raise RuntimeError(f"expected go from the parent, got {line!r}")
            started = klippy_clock()
            state.recording = True
            await trio.sleep(seconds)
            state.recording = False
            stopped = klippy_clock()
            print("stop", flush=True)
            nursery.cancel_scope.cancel()
        return analyse(state, started, stopped, margin=0.5)

    print(json.dumps(trio.run(main)), flush=True)
    return 0


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    data: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_klippy_connected(server: Server, timeout: float = 30.0) -> None:
    """Until the server answers HTTP and reports klippy ``ready``."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{server.port}/server/info"
    state = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                state = json.load(response)["result"]["klippy_state"]
                if state == "ready":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: klippy not ready within {timeout} s (last: {state})")


@contextlib.contextmanager
def run_server(name: str, command: list[str], data: Path, port: int, log: Path) -> Iterator[Server]:
    with (data / "server.out").open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        server = Server(name, port, process, data, log)
        wait_klippy_connected(server)
        yield server
    finally:
        stop_process(process, signal.SIGTERM, 15)


def write_conf(data: Path, port: int, klippy_socket: Path) -> Path:
    for sub in ("logs", "gcodes", "config", "misc"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    (data / "misc" / "usb.ids").write_text("")  # or Moonraker fetches it from the internet
    conf = data / "config" / "server.conf"
    conf.write_text(SERVER_CONF.format(port=port, socket=klippy_socket))
    return conf


def log_problems(path: Path, limit: int = 6) -> tuple[int, list[str]]:
    """Lines of a server log that look like warnings, errors or tracebacks."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return 0, []
    markers = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Exception")
    hits = [line for line in lines if any(m in line for m in markers)]
    return len(hits), hits[:limit]


# --- phases and the table ---------------------------------------------------------------------


def pipes(process: subprocess.Popen[str]) -> tuple[TextIO, TextIO]:
    """The stdin and stdout pipes of a child started with both."""
    if process.stdin is None or process.stdout is None:
        raise RuntimeError("child started without pipes")
    return process.stdin, process.stdout


class Lines:
    """A child's stdout read by a thread, so that the parent can wait with a timeout."""

    def __init__(self, stream: TextIO) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put("")

    def next(self, timeout: float) -> str:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output within {timeout:.0f} s") from None
        if not line:
            raise EOFError("the process ended")
        return line.strip()


@dataclass
class Bench:
    python: str
    klippy_pid: int
    klippy_socket: str
    seconds: float
    workdir: Path
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def phase(self, server: Server, peer: Server, connections: int, seconds: float) -> dict:
        errors = self.workdir / f"load-{server.name}-{connections}.err"
        with errors.open("w") as err:
            load = subprocess.Popen(
                [
                    self.python,
                    __file__,
                    "--load",
                    "--port",
                    str(server.port),
                    "--klippy-socket",
                    self.klippy_socket,
                    "--connections",
                    str(connections),
                    "--seconds",
                    str(seconds),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        stdin, stdout = pipes(load)
        try:
            lines = Lines(stdout)
            if (line := lines.next(90)) != "ready":
                raise RuntimeError(f"load: expected ready, got {line!r}")
            time.sleep(1.0)  # warm-up: the clients receive, nothing is recorded
            ticks = cpu_ticks_seconds(server.pid)
            before = (server.cpu_seconds(), peer.cpu_seconds(), cpu_seconds(self.klippy_pid))
            stdin.write("go\n")
            stdin.flush()
            if (line := lines.next(seconds + 30)) != "stop":
                raise RuntimeError(f"load: expected stop, got {line!r}")
            after = (server.cpu_seconds(), peer.cpu_seconds(), cpu_seconds(self.klippy_pid))
            ticks = cpu_ticks_seconds(server.pid) - ticks
            result: dict[str, Any] = json.loads(lines.next(60))
            load.wait(timeout=30)
        except (RuntimeError, TimeoutError, EOFError, ValueError) as exc:
            stop_process(load, signal.SIGKILL, 5)
            tail = errors.read_text()[-3000:]
            raise RuntimeError(
                f"{connections}-client load on {server.name}: {exc}\n{tail}"
            ) from None
        finally:
            stop_process(load, signal.SIGKILL, 5)
        elapsed = result["elapsed"]
        result["server_cpu_s"] = after[0] - before[0]
        result["server_cpu_ticks_s"] = ticks
        result["peer_cpu_pct"] = 100 * (after[1] - before[1]) / elapsed
        result["klippy_cpu_pct"] = 100 * (after[2] - before[2]) / elapsed
        return result

    def measure(self, server: Server, peer: Server, connections: int) -> None:
        result = self.phase(server, peer, connections, self.seconds)
        self.details.setdefault(server.name, []).append(result)
        label = f"{connections} client{'s' if connections > 1 else ''}"
        updates = max(result["updates"], 1)
        missed_of = max(result["missed_of"], 1)
        self.values.setdefault(server.name, {}).update(
            {
                f"{label}: updates/s": result["updates"] / result["elapsed"],
                f"{label}: latency p50 ms": result["p50_ms"],
                f"{label}: latency p99 ms": result["p99_ms"],
                f"{label}: missed %": 100 * result["missed"] / missed_of,
                f"{label}: server CPU %": 100 * result["server_cpu_s"] / result["elapsed"],
                f"{label}: server CPU us/update": 1e6 * result["server_cpu_s"] / updates,
            }
        )


#: Not judged: klippy's cadence sets the rate (``missed %`` says whether a server kept up).
NOT_JUDGED = ("updates/s",)


def print_table(ours: dict[str, float], peer: dict[str, float]) -> None:
    width = max(len(k) for k in ours) + 2
    print()
    print(f"{'metric':<{width}}{'trioprint':>12}{'moonraker':>12}{'ratio':>9}  better")
    for key, value in ours.items():
        other = peer.get(key, float("nan"))
        ratio = 1.0 if value == other else value / other if other else float("inf")
        better = "trioprint" if ratio < 1 else "moonraker"
        if abs(ratio - 1) < 0.02:
            better = "even"
        if any(key.endswith(s) for s in NOT_JUDGED):
            better = "-"
        print(f"{key:<{width}}{value:>12.2f}{other:>12.2f}{ratio:>9.2f}  {better}")
    print(
        "\nratio = trioprint / moonraker, lower is better (updates/s: delivered, summed over "
        "clients; set by klippy's 250 ms cadence, not judged)"
    )


def print_notes(bench: Bench, clock: dict[str, Any], driver: str) -> None:
    print(
        f"\nclock: {clock['inside_bracket']}/{clock['rounds']} objects/query eventtimes inside "
        f"the local CLOCK_MONOTONIC_RAW readings around the request (bracket <= "
        f"{clock['max_bracket_ms']:.2f} ms, |offset| <= {clock['max_abs_offset_ms']:.2f} ms); "
        f"eventtime - CLOCK_MONOTONIC = {clock['monotonic_offset_ms']:.1f} ms"
    )
    print(f"driver: {driver}")
    print("one server measured at a time, the other connected to klippy with no clients")
    for name, results in bench.details.items():
        for r in results:
            notes = [
                f"{r['klippy_updates'] / r['elapsed']:.1f} klippy updates/s",
                f"direct p50/p99 {r['ref_p50_ms']:.1f}/{r['ref_p99_ms']:.1f} ms",
                f"klippy CPU {r['klippy_cpu_pct']:.0f}%",
                f"idle peer CPU {r['peer_cpu_pct']:.1f}%",
                f"max {r['max_ms']:.1f} ms",
            ]
            if r["subscribed"] != r["clients"] or r["lost"]:
                notes.append(f"subscribed {r['subscribed']}, lost: {r['lost'][:3]}")
            if r["mismatched"] or r["unknown_eventtimes"]:
                notes.append(
                    f"{r['mismatched']} updates differ from klippy's, "
                    f"{r['unknown_eventtimes']} unknown eventtimes; {r['mismatch_example']}"
                )
            print(f"  {name:<9} {r['clients']:>3} clients: " + "; ".join(notes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument(
        "--kalico-bin", default=os.environ.get("TRIOPRINT_KALICO"), help="kalico executable"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--clients", default="1,10,100", help="client counts, comma-separated")
    parser.add_argument("--interval", type=float, default=0.02, help="driver sleep per script")
    parser.add_argument("--timeout", type=int, default=600, help="stop everything after this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="copy the servers' and klippy's logs here")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--klippy-socket", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load:
        return run_load(args.port, args.klippy_socket, args.connections, args.seconds)
    if args.drive:
        return run_driver(args.klippy_socket, args.interval)

    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    if not args.kalico_bin:
        parser.error("kalico not found: pass --kalico-bin or set TRIOPRINT_KALICO")
    counts = [int(c) for c in args.clients.split(",")]
    # Absolute: klippy runs in its own directory.
    moonraker, kalico = os.path.abspath(moonraker), os.path.abspath(args.kalico_bin)

    def on_alarm(*_: Any) -> None:
        raise TimeoutError(f"fan-out bench did not finish within {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    started = time.monotonic()
    print(f"trioprint: {args.python} -m trioprint; moonraker: {moonraker}; kalico: {kalico}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        klippy = stack.enter_context(run_klippy(kalico, workdir / "klippy"))
        klippy_socket = str(workdir / "klippy" / "klippy.sock")
        clock = check_clock(klippy_socket)

        driver = subprocess.Popen(
            [
                args.python,
                __file__,
                "--drive",
                "--klippy-socket",
                klippy_socket,
                "--interval",
                str(args.interval),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(stop_process, driver, signal.SIGTERM, 5)
        driver_stdin, driver_stdout = pipes(driver)
        driver_lines = Lines(driver_stdout)
        if (line := driver_lines.next(30)) != "driving":
            raise RuntimeError(f"driver: expected driving, got {line!r}")

        servers: dict[str, Server] = {}
        for name in ("trioprint", "moonraker"):
            data = workdir / name
            port = free_port()
            conf = write_conf(data, port, Path(klippy_socket))
            if name == "trioprint":
                command = [args.python, "-m", "trioprint", "-d", str(data), "-c", str(conf)]
                log = data / "logs" / "trioprint.log"
            else:
                command = [moonraker, "-d", str(data), "-c", str(conf)]
                log = data / "logs" / "moonraker.log"
            servers[name] = stack.enter_context(run_server(name, command, data, port, log))
        ours, peer = servers["trioprint"], servers["moonraker"]
        bench = Bench(args.python, klippy.pid, klippy_socket, args.seconds, workdir)
        # Prime both: each then holds a klippy subscription to everything, as in every phase.
        bench.phase(ours, peer, 1, 1.0)
        bench.phase(peer, ours, 1, 1.0)
        for n in counts:
            bench.measure(ours, peer, n)
            bench.measure(peer, ours, n)

        driver_stdin.close()
        driver_report = json.loads(driver_lines.next(10))
        driver_text = (
            f"{driver_report['scripts']} gcode/script calls "
            f"({driver_report['scripts'] / driver_report['elapsed']:.0f}/s), "
            f"{driver_report['errors']} errors"
        )
        stack.close()  # stop the servers and klippy before reading their logs
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for path in workdir.glob("*/*.log*"):
                shutil.copy(path, args.logs / f"{path.parent.name}-{path.name}")
            for path in [*workdir.glob("*/logs/*.log*"), *workdir.glob("*/server.out")]:
                shutil.copy(path, args.logs / f"{path.parts[len(workdir.parts)]}-{path.name}")
            for path in workdir.glob("*.err"):
                shutil.copy(path, args.logs / path.name)
        print_table(bench.values["trioprint"], bench.values["moonraker"])
        print_notes(bench, clock, driver_text)
        for server in (ours, peer):
            count, lines = log_problems(server.log)
            out_count, out_lines = log_problems(server.data / "server.out")
            print(f"{server.name} log: {count} warning/error lines; stdout/err: {out_count}")
            for line in dict.fromkeys(lines + out_lines):
                print(f"    {line[:200]}")
    signal.alarm(0)
    print(f"\nfan-out bench took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"figures": bench.values, "details": bench.details, "clock": clock}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
