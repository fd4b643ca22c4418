"""Status fan-out benchmark: trioprint side by side with Moonraker 0.11 (run by ``nox -s bench``).

One klippy runs for a pass (``--klippy kalico,sim``: one pass per kind, one after the other):

* ``kalico``: a real kalico in batch mode (no MCU). A driver process keeps it busy through a raw
  connection of its own (G1 moves, fan and speed-factor changes, ~50 scripts/s), so klippy
  pushes real changes (toolhead, gcode_move, fan, idle_timeout...) at its 250 ms cadence.
* ``sim``: trioprint's simulated printer alone (``python -m trioprint.sim --speed 1``). Set-up
  heats the extruder through a raw connection, then starts (``SDCARD_PRINT_FILE``) a generated
  print (thousands of extruding G1 moves) that outlasts the phases (restarted if it completes),
  so the phases run while a print runs.

trioprint and Moonraker 0.11 are both connected to klippy's API socket for the whole pass, each
with an equivalent config (fresh data folder, loopback trusted, 200 websocket connections
allowed; for ``sim`` the gcodes folder the simulator prints from is Moonraker's data folder's
``gcodes``, which trioprint's links to).

Phases of 1, 10 and 100 websocket clients, each client subscribed to every object (all fields),
run against one server at a time, alternating servers; the other server stays connected to
klippy, subscribed to everything too (both are primed with a client first) but has no clients.
Before them, two quiet windows with no clients measure both servers' and klippy's CPU: idle (no
driver, no print) and busy (driver running / printing).
The clients run in a separate process (this script re-invoked with ``--load``), so their work
never counts as the server's.

Latency of an update = the client's receipt time - the update's ``eventtime``, read on the
clock that klippy's ``eventtime`` is on (:data:`CLOCKS`): kalico's reactor clock is
``clock_gettime(CLOCK_MONOTONIC_RAW)`` (chelper get_monotonic); the simulator's is
``time.monotonic()`` at its start plus trio's clock (``perf_counter``, CLOCK_MONOTONIC on
Linux) times ``speed``, i.e. CLOCK_MONOTONIC at speed 1. The clock is checked against klippy's
``objects/query`` before the servers start. The latency therefore includes klippy's own work
for the tick; the load process also keeps a raw klippy subscription as the reference (what a
client connected to klippy directly sees: the floor), and checks every delivered update against
it: missed updates (coalesced away or lost) and content that differs from klippy's.

Figures per phase: delivered updates/s (summed over clients), latency p50/p99, missed updates,
server CPU (% of one core over the phase, and µs per delivered update, from the ns counters in
/proc/<pid>/task/*/schedstat; the 10 ms-tick utime+stime is kept in the --json details);
klippy's own CPU (same counters) idle, busy and per phase.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

# The same config for both servers (each ignores what it does not know), as bench_api writes
# it; this script runs from bench/, so bench_api is beside it on sys.path.
from bench_api import cpu_ticks_seconds, free_port, server_conf, write_json
from profiling import format_breakdown, spy

HERE = Path(__file__).resolve().parent
#: The local clock each klippy kind's ``eventtime`` is on: kalico's reactor clock
#: (klippy/chelper/pyhelper.c get_monotonic); the simulator's (trioprint/sim/server.py
#: ``SimKlippy.now``: time.monotonic() plus trio's perf_counter offsets, at speed 1).
CLOCKS = {"kalico": "CLOCK_MONOTONIC_RAW", "sim": "CLOCK_MONOTONIC"}
#: The clock of the pass being run (:func:`use_clock`).
KLIPPY_CLOCK = time.CLOCK_MONOTONIC_RAW
STATUS = "notify_status_update"

# The cfg template names these paths; they are rewritten into the run's directory.
SIM_PREFIX = "/tmp/klippy-sim/"
SIM_SERIAL = "/tmp/klippy-sim-unused-serial"


def use_clock(kind: str) -> None:
    global KLIPPY_CLOCK
    KLIPPY_CLOCK = getattr(time, CLOCKS[kind])


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


def wait_klippy_ready(
    path: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"klippy exited with {process.returncode} before it was ready")
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
    """A real kalico in batch mode, its API socket at ``workdir/klippy.sock``."""
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
    command = [
        kalico,
        str(workdir / "printer.cfg"),
        "-o",
        "/dev/null",
        "-d",
        str(workdir / "klipper.dict"),
        "-a",
        str(workdir / "klippy.sock"),
        "-l",
        str(workdir / "klippy.log"),
    ]
    with serve_klippy_api(command, workdir, "klippy.out") as process:
        yield process


@contextlib.contextmanager
def serve_klippy_api(
    command: list[str], workdir: Path, log_name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (a klippy, or the simulator) until its API at ``workdir/klippy.sock``
    is ready; stop it on exit. Its output goes to ``workdir/log_name``."""
    with (workdir / log_name).open("wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_klippy_ready(str(workdir / "klippy.sock"), process)
        yield process
    finally:
        stop_process(process, signal.SIGTERM, 5)


@contextlib.contextmanager
def run_sim(python: str, workdir: Path, gcodes: Path) -> Iterator[subprocess.Popen[bytes]]:
    """trioprint's simulated printer alone at speed 1, its API socket at ``workdir/klippy.sock``.

    Speed 1: its eventtime must be on a real clock for the latencies to mean anything.
    """
    workdir.mkdir(parents=True)
    sock = workdir / "klippy.sock"
    command = [python, "-m", "trioprint.sim", "--socket", str(sock), "--gcodes", str(gcodes)]
    with serve_klippy_api([*command, "--speed", "1"], workdir, "sim.log") as process:
        yield process


def sim_dir() -> Path:
    """../shared/klippy-sim beside the clone (else $TRIOPRINT_SHARED/klippy-sim)."""
    beside = HERE.parents[1] / "shared" / "klippy-sim"
    if beside.is_dir():
        return beside
    return Path(os.environ.get("TRIOPRINT_SHARED", str(HERE.parents[1] / "shared"))) / "klippy-sim"


def check_clock(path: str, kind: str, rounds: int = 10) -> dict[str, Any]:
    """``objects/query`` eventtimes against the kind's clock (:data:`CLOCKS`) and the other one.

    Run while nobody is subscribed, so klippy answers at once (kalico's query otherwise waits
    for the next 250 ms tick): each eventtime must fall between the local readings around the
    request. Kalico's query timer stays registered for one more tick after a query, hence the
    sleeps.
    """
    name = CLOCKS[kind]
    other_name = next(c for c in ("CLOCK_MONOTONIC_RAW", "CLOCK_MONOTONIC") if c != name)
    clock, other_clock = getattr(time, name), getattr(time, other_name)
    klippy = RawKlippy(path)
    inside = 0
    offsets: list[float] = []
    other: list[float] = []
    widths: list[float] = []
    try:
        for _ in range(rounds):
            before, before_other = time.clock_gettime(clock), time.clock_gettime(other_clock)
            eventtime = klippy.request("objects/query", {"objects": {"webhooks": None}})[
                "eventtime"
            ]
            after_other, after = time.clock_gettime(other_clock), time.clock_gettime(clock)
            inside += before <= eventtime <= after
            offsets.append(eventtime - (before + after) / 2)
            other.append(eventtime - (before_other + after_other) / 2)
            widths.append(after - before)
            time.sleep(0.3)
    finally:
        klippy.close()
    return {
        "clock": name,
        "rounds": rounds,
        "inside_bracket": inside,
        "max_abs_offset_ms": 1000 * max(abs(o) for o in offsets),
        "max_bracket_ms": 1000 * max(widths),
        "other_clock": other_name,
        "other_offset_ms": 1000 * statistics.median(other),
    }


# --- the print (sim): a generated G-code file, started and kept running -------------------

#: Filament per mm of a 0.4 x 0.2 mm line with 1.75 mm filament.
E_PER_MM = 0.4 * 0.2 / (math.pi * 0.875**2)
PRINT_FILE = "bench-print.gcode"
#: The extruder's target, and the temperature set-up waits for (min_extrude_temp is 170).
PRINT_TEMP, START_TEMP = 200, 180


def print_layer(z: float) -> tuple[list[str], float]:
    """One layer like a slicer's: two circular perimeters in 1.6 mm segments at 50 mm/s, then
    a sparse zig-zag infill at 100 mm/s; the lines and their time (accelerations ignored)."""
    lines, seconds = [f"G1 Z{z:.2f} F600"], 0.0
    cx, cy = 125.0, 105.0
    for radius in (30.0, 29.55):
        lines.append(f"G1 X{cx + radius:.3f} Y{cy:.3f} F9000")
        segments = 120
        step = 2 * math.pi * radius / segments
        for i in range(1, segments + 1):
            angle = 2 * math.pi * i / segments
            x, y = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
            lines.append(f"G1 X{x:.3f} Y{y:.3f} E{step * E_PER_MM:.5f} F3000")
        seconds += 2 * math.pi * radius / 50
    half = 20.0
    lines.append(f"G1 X{cx - half:.3f} Y{cy - half:.3f} F9000")
    for row in range(15):
        y = cy - half + row * 2 * half / 14
        x0, x1 = (cx - half, cx + half) if row % 2 == 0 else (cx + half, cx - half)
        if row:
            lines.append(f"G1 X{x0:.3f} Y{y:.3f} E{(2 * half / 14) * E_PER_MM:.5f} F6000")
        lines.append(f"G1 X{x1:.3f} Y{y:.3f} E{2 * half * E_PER_MM:.5f} F6000")
        seconds += (2 * half + 2 * half / 14) / 100
    return lines, seconds + 1.0  # travels and the layer change


def write_print_file(gcodes: Path, seconds: float) -> dict[str, Any]:
    """A print lasting at least ``seconds`` (more: accelerations are not counted)."""
    _, layer_seconds = print_layer(0.3)
    layers = max(1, math.ceil(seconds / layer_seconds))
    lines = [
        "; generated by trioprint's bench/bench_fanout.py",
        "G90",
        "M83",
        f"M104 S{PRINT_TEMP}",
        f"SET_PRINT_STATS_INFO TOTAL_LAYER={layers}",
    ]
    for layer in range(1, layers + 1):
        lines.append(f"SET_PRINT_STATS_INFO CURRENT_LAYER={layer}")
        lines.append(f"M73 P{100 * (layer - 1) // layers}")
        if layer == 2:
            lines.append("M106 S160")
        lines += print_layer(0.3 + 0.2 * (layer - 1))[0]
    lines += ["M106 S0", "M104 S0", "M84"]
    (gcodes / PRINT_FILE).write_text("\n".join(lines) + "\n")
    moves = sum(1 for line in lines if line.startswith("G1 "))
    return {
        "file": PRINT_FILE,
        "lines": len(lines),
        "moves": moves,
        "layers": layers,
        "estimate_s": layers * layer_seconds,
    }


class PrintRun:
    """The sim pass's print, through a raw klippy connection of the bench's own."""

    def __init__(self, path: str) -> None:
        self.klippy = RawKlippy(path, timeout=300)
        self.starts = 0
        self.problems: list[str] = []
        self.setup_s = 0.0

    def heat_and_start(self) -> None:
        """Home, heat the extruder to START_TEMP (M104 and TEMPERATURE_WAIT), start the print."""
        started = time.monotonic()
        self.klippy.request(
            "gcode/script",
            {
                "script": f"G28\nM104 S{PRINT_TEMP}\n"
                f"TEMPERATURE_WAIT SENSOR=extruder MINIMUM={START_TEMP}"
            },
        )
        self.start()
        self.setup_s = time.monotonic() - started

    def start(self) -> None:
        self.klippy.request("gcode/script", {"script": f"SDCARD_PRINT_FILE FILENAME={PRINT_FILE}"})
        self.starts += 1

    def status(self) -> dict[str, Any]:
        objects = {"print_stats": ["state", "message"], "virtual_sdcard": ["progress"]}
        status = self.klippy.request("objects/query", {"objects": objects})["status"]
        return {
            "state": status["print_stats"]["state"],
            "message": status["print_stats"]["message"],
            "progress": status["virtual_sdcard"]["progress"],
        }

    def keep_printing(self) -> None:
        """Between phases: restart the print if it completed; note it if it stopped otherwise."""
        status = self.status()
        if status["state"] == "printing":
            return
        if status["state"] != "complete":
            self.problems.append(f"print {status['state']}: {status['message']!r}")
        self.start()

    def close(self) -> None:
        self.klippy.close()


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
    # both default to 50 websockets, too few for the 100-client phase
    conf.write_text(server_conf(port, klippy_socket, "max_websocket_connections: 200\n"))
    return conf


def log_problems(path: Path, limit: int = 6) -> tuple[int, list[str]]:
    """Lines of a server log that look like warnings, errors or tracebacks."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return 0, []
    markers = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Exception", "add_warning")
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
    kind: str
    klippy_pid: int
    klippy_socket: str
    seconds: float
    workdir: Path
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Klippy's own CPU (% of one core) in the quiet windows, by label.
    klippy_cpu: dict[str, float] = field(default_factory=dict)
    #: Where each measured phase's py-spy stacks of the server go (``--profile``).
    profile: Path | None = None
    profiles: list[Path] = field(default_factory=list)

    def phase(self, server: Server, peer: Server, connections: int, seconds: float) -> dict:
        errors = self.workdir / f"load-{server.name}-{connections}.err"
        with errors.open("w") as err:
            load = subprocess.Popen(
                [
                    self.python,
                    __file__,
                    "--load",
                    "--klippy",
                    self.kind,
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
        out = None
        if self.profile is not None:
            out = self.profile / f"fanout-{self.kind}-{server.name}-{connections}.txt"
            self.profiles.append(out)
        with spy(server.pid, out):
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

    def quiet(self, label: str, servers: list[Server], seconds: float) -> None:
        """Both servers connected and subscribed, no clients: their CPU and klippy's."""
        started = time.monotonic()
        before = [s.cpu_seconds() for s in servers], cpu_seconds(self.klippy_pid)
        time.sleep(seconds)
        after = [s.cpu_seconds() for s in servers], cpu_seconds(self.klippy_pid)
        elapsed = time.monotonic() - started
        for server, b, a in zip(servers, before[0], after[0], strict=True):
            self.values.setdefault(server.name, {})[f"{label}, no clients: server CPU %"] = (
                100 * (a - b) / elapsed
            )
        self.klippy_cpu[label] = 100 * (after[1] - before[1]) / elapsed


#: Not judged: klippy's cadence sets the rate (``missed %`` says whether a server kept up).
NOT_JUDGED = ("updates/s",)


def print_table(ours: dict[str, float], peer: dict[str, float], klippy: dict[str, float]) -> None:
    """The side-by-side figures, then klippy's own CPU rows (one value: not per server)."""
    width = max(len(k) for k in [*ours, *klippy]) + 2
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
    for key, value in klippy.items():
        print(f"{key:<{width}}{value:>12.2f}{'':>12}{'':>9}  (both servers connected)")
    print(
        "\nratio = trioprint / moonraker, lower is better (updates/s: delivered, summed over "
        "clients; set by klippy's 250 ms cadence, not judged)"
    )


def print_notes(bench: Bench, clock: dict[str, Any], work: str) -> None:
    print(
        f"\nclock: {clock['inside_bracket']}/{clock['rounds']} objects/query eventtimes inside "
        f"the local {clock['clock']} readings around the request (bracket <= "
        f"{clock['max_bracket_ms']:.2f} ms, |offset| <= {clock['max_abs_offset_ms']:.2f} ms); "
        f"eventtime - {clock['other_clock']} = {clock['other_offset_ms']:.1f} ms"
    )
    if clock["inside_bracket"] < clock["rounds"]:
        print(f"  WARNING: {bench.kind}'s eventtime is not on {clock['clock']}: latencies are off")
    print(work)
    print("one server measured at a time, the other connected to klippy with no clients")
    for name, results in bench.details.items():
        for r in results:
            notes = [
                f"{r['klippy_updates'] / r['elapsed']:.1f} klippy updates/s",
                f"direct p50/p99 {r['ref_p50_ms']:.1f}/{r['ref_p99_ms']:.1f} ms",
                f"klippy CPU {r['klippy_cpu_pct']:.1f}%",
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


# --- py-spy on klippy (--py-spy) ----------------------------------------------------------------


def start_py_spy(exe: str | None, pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    if not exe:
        return None
    command = [exe, "record", "--pid", str(pid), "--nonblocking", "--nolineno"]
    return subprocess.Popen(
        [*command, "--format", "raw", "--output", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def py_spy_top(process: subprocess.Popen[bytes], out: Path, n: int = 5) -> list[str]:
    """Stop the recording; the ``n`` functions with the most samples of their own (and the
    share of busy samples they take)."""
    stop_process(process, signal.SIGINT, 20)
    own: dict[str, int] = {}
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            total += int(count)
            frame = stack.rsplit(";", 1)[-1]
            own[frame] = own.get(frame, 0) + int(count)
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:n]
    return [f"{100 * c / total:4.1f}% {frame}" for frame, c in ranked] if total else []


# --- a pass: one klippy, both servers -----------------------------------------------------------


def start_klippy(
    stack: contextlib.ExitStack,
    kind: str,
    python: str,
    kalico: str,
    workdir: Path,
    prepare: Callable[[Path], None] | None = None,
) -> tuple[subprocess.Popen[bytes], str, Path | None]:
    """A pass's klippy, kalico or the simulator (``kind``), in ``workdir``: its process, its API
    socket and, for the simulator, the G-code folder it prints from (Moonraker's data folder's;
    ``prepare`` writes into it before the simulator starts)."""
    if kind == "kalico":
        klippy = stack.enter_context(run_klippy(kalico, workdir / "klippy"))
        return klippy, str(workdir / "klippy" / "klippy.sock"), None
    gcodes = workdir / "moonraker" / "gcodes"
    gcodes.mkdir(parents=True)
    if prepare is not None:
        prepare(gcodes)
    klippy = stack.enter_context(run_sim(python, workdir / "sim", gcodes))
    return klippy, str(workdir / "sim" / "klippy.sock"), gcodes


def start_servers(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    moonraker: str,
    workdir: Path,
    klippy_socket: str,
    gcodes: Path | None,
) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    for name in ("trioprint", "moonraker"):
        data = workdir / name
        if gcodes is not None and gcodes.parent != data:  # one folder: the one klippy prints from
            data.mkdir(parents=True, exist_ok=True)
            (data / "gcodes").symlink_to(gcodes, target_is_directory=True)
        port = free_port()
        conf = write_conf(data, port, Path(klippy_socket))
        if name == "trioprint":
            command = [args.python, "-m", "trioprint", "-d", str(data), "-c", str(conf)]
            log = data / "logs" / "trioprint.log"
        else:
            command = [moonraker, "-d", str(data), "-c", str(conf)]
            log = data / "logs" / "moonraker.log"
        servers[name] = stack.enter_context(run_server(name, command, data, port, log))
    return servers


def start_driver(
    stack: contextlib.ExitStack, args: argparse.Namespace, klippy_socket: str
) -> tuple[TextIO, Lines]:
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
    return driver_stdin, driver_lines


def run_pass(
    kind: str, args: argparse.Namespace, moonraker: str, kalico: str, counts: list[int]
) -> dict[str, Any]:
    """One klippy of ``kind``, both servers on it: the phases, the table and the notes."""
    use_clock(kind)
    started = time.monotonic()
    signal.alarm(args.timeout)
    name = {"kalico": "kalico", "sim": "simulator"}[kind]
    busy = {"kalico": "driven", "sim": "printing"}[kind]
    print(f"\n=== klippy: {name}")
    record: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)

        def write_print(gcodes: Path) -> None:
            # Long enough for the quiet windows, the priming and the phases (twice over).
            needed = 2 * (args.quiet + sum(2 * (args.seconds + 6) for _ in counts)) + 60
            record["print"] = write_print_file(gcodes, needed)

        klippy, klippy_socket, gcodes = start_klippy(
            stack, kind, args.python, kalico, workdir, write_print
        )
        clock = check_clock(klippy_socket, kind)
        servers = start_servers(stack, args, moonraker, workdir, klippy_socket, gcodes)
        ours, peer = servers["trioprint"], servers["moonraker"]
        bench = Bench(args.python, kind, klippy.pid, klippy_socket, args.seconds, workdir)
        bench.profile = args.profile
        # Prime both: each then holds a klippy subscription to everything, as in every phase.
        bench.phase(ours, peer, 1, 1.0)
        bench.phase(peer, ours, 1, 1.0)
        bench.quiet("idle", [ours, peer], args.quiet)

        printing: PrintRun | None = None
        if kind == "kalico":
            driver_stdin, driver_lines = start_driver(stack, args, klippy_socket)
        else:
            printing = PrintRun(klippy_socket)
            stack.callback(printing.close)
            printing.heat_and_start()
            record["setup_s"] = printing.setup_s
        bench.quiet(busy, [ours, peer], args.quiet)
        spy_out = workdir / f"py-spy-{kind}.txt"
        spy = start_py_spy(args.py_spy, klippy.pid, spy_out)
        for n in counts:
            for server, other in ((ours, peer), (peer, ours)):
                bench.measure(server, other, n)
                if printing is not None:
                    printing.keep_printing()
        spy_top = py_spy_top(spy, spy_out) if spy is not None else []

        if printing is None:
            driver_stdin.close()
            driver_report = json.loads(driver_lines.next(10))
            record["driver"] = driver_report
            work = (
                f"driver: {driver_report['scripts']} gcode/script calls "
                f"({driver_report['scripts'] / driver_report['elapsed']:.0f}/s), "
                f"{driver_report['errors']} errors"
            )
        else:
            status = printing.status()
            info = record["print"]
            record["print"].update(starts=printing.starts, problems=printing.problems, end=status)
            work = (
                f"print: {info['file']}, {info['moves']} G1 moves in {info['layers']} layers "
                f"(>= {info['estimate_s']:.0f} s); set-up (G28, M104 S{PRINT_TEMP}, wait for "
                f"{START_TEMP} C, start) took {printing.setup_s:.1f} s; started "
                f"{printing.starts}x; at the end {status['state']} at "
                f"{100 * status['progress']:.1f}%"
            )
            if printing.problems:
                work += f"; problems: {printing.problems}"
        stack.close()  # stop the servers and klippy before reading their logs
        if args.logs:
            logs = args.logs / kind
            logs.mkdir(parents=True, exist_ok=True)
            for path in workdir.glob("*/*.log*"):
                shutil.copy(path, logs / f"{path.parent.name}-{path.name}")
            for path in [*workdir.glob("*/logs/*.log*"), *workdir.glob("*/server.out")]:
                shutil.copy(path, logs / f"{path.parts[len(workdir.parts)]}-{path.name}")
            for path in [*workdir.glob("*.err"), *workdir.glob("py-spy-*.txt")]:
                shutil.copy(path, logs / path.name)
        klippy_rows = {f"{name} CPU % {label}": v for label, v in bench.klippy_cpu.items()}
        print_table(bench.values["trioprint"], bench.values["moonraker"], klippy_rows)
        print_notes(bench, clock, work)
        for server in (ours, peer):
            count, lines = log_problems(server.log)
            out_count, out_lines = log_problems(server.data / "server.out")
            print(f"{server.name} log: {count} warning/error lines; stdout/err: {out_count}")
            # the same line in the log and on stdout, the latter without the timestamp
            unique: dict[str, str] = {}
            for line in lines + out_lines:
                unique.setdefault(line[line.find("[") :], line)
            for line in unique.values():
                print(f"    {line[:200]}")
        if kind == "sim":
            count, lines = log_problems(workdir / "sim" / "sim.log")
            print(f"simulator log: {count} warning/error lines")
            for line in dict.fromkeys(lines):
                print(f"    {line[:200]}")
        if bench.profiles:
            print("server profiles (py-spy, share of busy samples by innermost frame's package):")
            for path in bench.profiles:
                print(format_breakdown(path))
        if spy_top:
            print(f"py-spy, {name}'s functions with the most samples of their own (phases):")
            for line in spy_top:
                print(f"    {line[:200]}")
    signal.alarm(0)
    elapsed = time.monotonic() - started
    print(f"\nfan-out bench on {name} took {elapsed:.0f} s on {os.cpu_count()} cores")
    record.update(
        figures=bench.values,
        details=bench.details,
        clock=clock,
        klippy_cpu=bench.klippy_cpu,
        py_spy_top=spy_top,
        elapsed_s=elapsed,
    )
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument(
        "--kalico-bin", default=os.environ.get("TRIOPRINT_KALICO"), help="kalico executable"
    )
    parser.add_argument(
        "--klippy",
        default="kalico",
        help="klippy kinds to run a pass on, comma-separated: kalico (real), sim (trioprint's)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument(
        "--quiet", type=float, default=5.0, help="length of the idle and busy no-client windows"
    )
    parser.add_argument("--clients", default="1,10,100", help="client counts, comma-separated")
    parser.add_argument("--interval", type=float, default=0.02, help="driver sleep per script")
    parser.add_argument("--timeout", type=int, default=600, help="stop a pass after this")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="copy the servers' and klippy's logs here")
    parser.add_argument("--py-spy", help="py-spy executable: profile klippy during the phases")
    parser.add_argument(
        "--profile", type=Path, help="record each server's phases with py-spy into this folder"
    )
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--klippy-socket", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    kinds = [k.strip() for k in args.klippy.split(",") if k.strip()]
    if not kinds or any(k not in CLOCKS for k in kinds):
        parser.error(f"--klippy: comma-separated kinds out of {', '.join(CLOCKS)}")
    if args.load:
        use_clock(kinds[0])
        return run_load(args.port, args.klippy_socket, args.connections, args.seconds)
    if args.drive:
        return run_driver(args.klippy_socket, args.interval)

    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    if "kalico" in kinds and not args.kalico_bin:
        parser.error("kalico not found: pass --kalico-bin or set TRIOPRINT_KALICO")
    counts = [int(c) for c in args.clients.split(",")]
    # Absolute: klippy runs in its own directory.
    moonraker = os.path.abspath(moonraker)
    kalico = os.path.abspath(args.kalico_bin) if args.kalico_bin else ""

    def on_alarm(*_: Any) -> None:
        raise TimeoutError(f"a fan-out bench pass did not finish within {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    print(
        f"trioprint: {args.python} -m trioprint; moonraker: {moonraker}; "
        f"klippy: {', '.join(kalico if k == 'kalico' else 'trioprint.sim' for k in kinds)}"
    )
    results = {kind: run_pass(kind, args, moonraker, kalico, counts) for kind in kinds}
    print(f"\nfan-out bench took {time.monotonic() - started:.0f} s")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
