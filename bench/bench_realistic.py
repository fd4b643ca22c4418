"""The realistic workload, the headline figure: trioprint beside Moonraker 0.11 while a print runs.

Each server sits in front of a simulated printer of its own (trioprint's
``trioprint.sim.server.SimKlippy``, ``python -m trioprint.sim --speed 1``, one per server),
both printing the same generated G-code file (bench_fanout's ``write_print_file``), long
enough to last the whole window. Against each server, at the same time, a load process (this
script re-invoked with ``--load``) runs:

* three Mainsail-like websocket clients. Each does what Mainsail 2.18 does on start-up
  (``server.connection.identify``, ``server.info``, ``printer.info``, ``printer.objects.list``,
  ``printer.objects.subscribe`` to every object but ``menu *`` with all fields, as its
  ``printer/initSubscripts`` does, ``server.temperature_store``, ``server.gcode_store``,
  ``server.files.metadata`` of the file being printed), then reads whatever the server
  pushes (status diffs, proc stats, ...) and answers pings;
* a script polling ``GET /printer/objects/query`` (print_stats, virtual_sdcard, extruder,
  heater_bed, toolhead) once a second on a fresh connection, as a shell loop with curl would.

Once every client has subscribed and a settle time has passed, both servers' CPU (utime+stime
from /proc/<pid>/stat) is read at the start and the end of the window (``--seconds``, 60 by
default): CPU seconds of each server, side by side, and the ratio trioprint / Moonraker (lower
is better; aim: <= 0.5). Both run through the same window, so whatever else the machine does
weighs on both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench_api import cpu_ticks_seconds, free_port, rss_kb, write_json
from bench_fanout import (
    Closed,
    Lines,
    PrintRun,
    Server,
    WsClient,
    cpu_seconds,
    log_problems,
    pipes,
    run_server,
    start_klippy,
    stop_process,
    write_conf,
    write_print_file,
)

SERVERS = ("trioprint", "moonraker")
#: What the polling script asks for each second.
POLL_QUERY = "print_stats&virtual_sdcard&extruder&heater_bed&toolhead=position,homed_axes"
#: Objects Mainsail leaves out of its subscription (first word of the object's name).
MAINSAIL_SKIPS = ("menu",)


def children_ticks_seconds(pid: int) -> float:
    """cutime+cstime from /proc/<pid>/stat: CPU of children the process has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


# --- the load (its own process) ---------------------------------------------------------------


async def mainsail_client(port: int, index: int, state: dict[str, Any], all_set: Any) -> None:
    """Mainsail's start-up calls and subscription, then every pushed message counted."""
    try:
        client = await WsClient.connect(port)
        await client.call(
            "server.connection.identify",
            {
                "client_name": "mainsail",
                "version": "2.18.2",
                "type": "web",
                "url": "http://127.0.0.1/bench",
            },
        )
        await client.call("server.info")
        await client.call("printer.info")
        objects = (await client.call("printer.objects.list"))["objects"]
        wanted = {o: None for o in objects if o.split(" ")[0] not in MAINSAIL_SKIPS}
        status = (await client.call("printer.objects.subscribe", {"objects": wanted}))["status"]
        await client.call("server.temperature_store", {"include_monitors": True})
        await client.call("server.gcode_store")
        filename = status.get("print_stats", {}).get("filename")
        if filename:
            await client.call("server.files.metadata", {"filename": filename})
    except (OSError, Closed, RuntimeError) as exc:
        state["lost"].append(f"client {index} during start-up: {exc}")
        state["failed"] += 1
        if state["subscribed"] + state["failed"] == state["clients"]:
            all_set.set()
        return
    state["subscribed_objects"] = len(wanted)
    state["subscribed"] += 1
    if state["subscribed"] + state["failed"] == state["clients"]:
        all_set.set()
    methods: dict[str, int] = state["methods"]
    async with client.stream:
        try:
            while True:
                _, text = await client.message()
                if state["recording"]:
                    state["messages"] += 1
                    state["bytes"] += len(text)
                    method = json.loads(text).get("method", "reply")
                    methods[method] = methods.get(method, 0) + 1
        except (OSError, Closed) as exc:
            state["lost"].append(f"client {index}: {exc}")


def poll_once(port: int) -> float:
    """One query on a fresh connection; its round trip in seconds."""
    started = time.perf_counter()
    url = f"http://127.0.0.1:{port}/printer/objects/query?{POLL_QUERY}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if "print_stats" not in body["result"]["status"]:
        raise RuntimeError(f"query answered without print_stats: {body}")
    return time.perf_counter() - started


async def poller(port: int, state: dict[str, Any]) -> None:
    """``printer.objects.query`` once a second (on the second, not a second after the answer)."""
    import trio

    next_at = trio.current_time()
    while True:
        try:
            latency = await trio.to_thread.run_sync(poll_once, port)
            if state["recording"]:
                state["poll_ms"].append(1000 * latency)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            if state["recording"]:
                state["poll_errors"].append(str(exc)[:200])
        next_at += 1.0
        await trio.sleep_until(max(next_at, trio.current_time()))


def run_load(port: int, clients: int) -> int:
    """Line protocol with the parent: ``ready`` once subscribed; ``go`` starts counting;
    ``stop`` ends it, and the figures come back as one JSON line."""
    import trio

    state: dict[str, Any] = {
        "clients": clients,
        "subscribed": 0,
        "failed": 0,
        "recording": False,
        "messages": 0,
        "bytes": 0,
        "methods": {},
        "poll_ms": [],
        "poll_errors": [],
        "lost": [],
    }

    async def expect(word: str) -> None:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        if line.strip() != word:
            raise RuntimeError(f"expected {word} from the parent, got {line!r}")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            all_set = trio.Event()
            for index in range(clients):
                nursery.start_soon(mainsail_client, port, index, state, all_set)
            with trio.fail_after(60):
                await all_set.wait()
            nursery.start_soon(poller, port, state)
            print("ready", flush=True)
            await expect("go")
            started = time.monotonic()
            state["recording"] = True
            await expect("stop")
            state["recording"] = False
            state["elapsed"] = time.monotonic() - started
            nursery.cancel_scope.cancel()

    trio.run(main)
    polls = sorted(state.pop("poll_ms"))
    state["polls"] = len(polls)
    state["poll_p50_ms"] = polls[len(polls) // 2] if polls else float("nan")
    state["poll_max_ms"] = polls[-1] if polls else float("nan")
    print(json.dumps(state), flush=True)
    return 0


# --- the run ----------------------------------------------------------------------------------


def start_side(
    stack: contextlib.ExitStack, name: str, args: argparse.Namespace, workdir: Path, needed: float
) -> tuple[Server, subprocess.Popen[bytes], str, dict[str, Any]]:
    """One server in front of a simulator of its own: (server, simulator, its socket, print)."""
    side = workdir / name
    info: dict[str, Any] = {}

    def prepare(gcodes: Path) -> None:
        info.update(write_print_file(gcodes, needed))

    sim, socket_path, gcodes = start_klippy(stack, "sim", args.python, "", side, prepare)
    assert gcodes is not None
    data = side / name
    if gcodes.parent != data:  # trioprint's data folder: the gcodes the simulator prints from
        data.mkdir(parents=True, exist_ok=True)
        (data / "gcodes").symlink_to(gcodes, target_is_directory=True)
    port = free_port()
    conf = write_conf(data, port, Path(socket_path))
    if name == "trioprint":
        command = [args.python, "-m", "trioprint", "-d", str(data), "-c", str(conf)]
    else:
        command = [args.moonraker, "-d", str(data), "-c", str(conf)]
    log = data / "logs" / f"{name}.log"
    server = stack.enter_context(run_server(name, command, data, port, log))
    return server, sim, socket_path, info


def start_load(
    stack: contextlib.ExitStack, args: argparse.Namespace, server: Server, workdir: Path
) -> tuple[subprocess.Popen[str], Lines, Path]:
    errors = workdir / f"load-{server.name}.err"
    with errors.open("w") as err:
        load = subprocess.Popen(
            [
                args.python,
                __file__,
                "--load",
                "--port",
                str(server.port),
                "--clients",
                str(args.clients),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    stack.callback(stop_process, load, signal.SIGKILL, 5)
    return load, Lines(pipes(load)[1]), errors


def say(load: subprocess.Popen[str], word: str) -> None:
    stdin = pipes(load)[0]
    stdin.write(word + "\n")
    stdin.flush()


def run(args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {"seconds": args.seconds, "clients": args.clients}
    with (
        tempfile.TemporaryDirectory(prefix="bench-real-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        # the print outlasts set-up, settling and the window (the estimate ignores accelerations)
        needed = args.seconds + args.settle + 120
        sides = {name: start_side(stack, name, args, workdir, needed) for name in SERVERS}
        record["print"] = sides["trioprint"][3]
        prints = {name: PrintRun(side[2]) for name, side in sides.items()}
        for printing in prints.values():
            stack.callback(printing.close)
        threads = [threading.Thread(target=p.heat_and_start) for p in prints.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        record["setup_s"] = {name: p.setup_s for name, p in prints.items()}
        loads = {name: start_load(stack, args, side[0], workdir) for name, side in sides.items()}
        for name, (_load, lines, errors) in loads.items():
            try:
                if (line := lines.next(90)) != "ready":
                    raise RuntimeError(f"expected ready, got {line!r}")
            except (RuntimeError, TimeoutError, EOFError) as exc:
                raise RuntimeError(f"load on {name}: {exc}\n{errors.read_text()[-3000:]}") from None
        time.sleep(args.settle)  # start-up requests answered, subscriptions streaming
        servers = {name: side[0] for name, side in sides.items()}
        sims = {name: side[1] for name, side in sides.items()}

        def cpu() -> dict[str, tuple[float, float, float, float]]:
            return {
                name: (
                    cpu_ticks_seconds(servers[name].pid),
                    children_ticks_seconds(servers[name].pid),
                    cpu_ticks_seconds(sims[name].pid),
                    cpu_seconds(servers[name].pid),
                )
                for name in SERVERS
            }

        for load, _, _ in loads.values():
            say(load, "go")
        started, before = time.monotonic(), cpu()
        time.sleep(args.seconds)
        after, elapsed = cpu(), time.monotonic() - started
        for load, _, _ in loads.values():
            say(load, "stop")
        figures: dict[str, dict[str, Any]] = {}
        for name, (_load, lines, errors) in loads.items():
            try:
                result: dict[str, Any] = json.loads(lines.next(30))
            except (TimeoutError, EOFError, ValueError) as exc:
                raise RuntimeError(f"load on {name}: {exc}\n{errors.read_text()[-3000:]}") from None
            b, a = before[name], after[name]
            figures[name] = {
                "server CPU s": a[0] - b[0],
                "server CPU %": 100 * (a[0] - b[0]) / elapsed,
                "server CPU s (schedstat, ns)": a[3] - b[3],
                "server children CPU s": a[1] - b[1],
                "simulator CPU s": a[2] - b[2],
                "server RSS MB": rss_kb(servers[name].pid) / 1024,
                "pushed messages/s (3 clients)": result["messages"] / result["elapsed"],
                "pushed kB/s (3 clients)": result["bytes"] / 1024 / result["elapsed"],
                "query p50 ms": result["poll_p50_ms"],
                "query max ms": result["poll_max_ms"],
                "load": result,
            }
            figures[name]["print"] = prints[name].status()
        record["elapsed_s"] = elapsed
        stack.close()  # servers and simulators stopped before their logs are read
        record["figures"] = figures
        record["log_problems"] = {
            name: log_problems(workdir / name / name / "logs" / f"{name}.log")[1]
            + log_problems(workdir / name / name / "server.out")[1]
            for name in SERVERS
        }
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for path in [*workdir.glob("*/*/logs/*.log*"), *workdir.glob("*/*/server.out")]:
                shutil.copy(path, args.logs / f"{path.parts[len(workdir.parts)]}-{path.name}")
            for path in workdir.glob("*/sim/sim.log"):
                shutil.copy(path, args.logs / f"{path.parts[len(workdir.parts)]}-{path.name}")
            for path in workdir.glob("load-*.err"):
                shutil.copy(path, args.logs / path.name)
    return record


#: Rows judged in the table (CPU: the headline); the rest are context.
JUDGED = (
    "server CPU s",
    "server CPU %",
    "server CPU s (schedstat, ns)",
    "server RSS MB",
    "query p50 ms",
    "query max ms",
)


def print_table(record: dict[str, Any]) -> None:
    ours, peer = record["figures"]["trioprint"], record["figures"]["moonraker"]
    rows = [k for k, v in ours.items() if isinstance(v, int | float)]
    width = max(len(k) for k in rows) + 2
    print(
        f"\nrealistic workload: a print running, {record['clients']} Mainsail-like clients and "
        f"printer.objects.query once a second, {record['elapsed_s']:.1f} s window"
    )
    print(f"{'metric':<{width}}{'trioprint':>12}{'moonraker':>12}{'ratio':>9}")
    for key in rows:
        value, other = ours[key], peer[key]
        ratio = 1.0 if value == other else value / other if other else float("inf")
        mark = "" if key in JUDGED else "  (context)"
        print(f"{key:<{width}}{value:>12.2f}{other:>12.2f}{ratio:>9.2f}{mark}")
    cpu_ratio = ours["server CPU s"] / peer["server CPU s"] if peer["server CPU s"] else 0.0
    verdict = "met" if cpu_ratio <= 0.5 else "not met"
    print(
        f"\nheadline: server CPU trioprint / moonraker = {cpu_ratio:.2f} "
        f"(aim <= 0.50: {verdict}); lower is better"
    )
    for name in SERVERS:
        fig = record["figures"][name]
        load = fig["load"]
        methods = ", ".join(f"{m} {n}" for m, n in sorted(load["methods"].items()))
        print(
            f"  {name}: subscribed {load['subscribed']}/{load['clients']} clients to "
            f"{load.get('subscribed_objects', 0)} objects; {load['polls']} queries, "
            f"{len(load['poll_errors'])} errors; pushed: {methods}; print at the end: "
            f"{fig['print']['state']} {100 * fig['print']['progress']:.1f}%; "
            f"set-up {record['setup_s'][name]:.1f} s"
        )
        for problem in load["lost"][:3] + load["poll_errors"][:3]:
            print(f"    {problem}")
        for line in record["log_problems"][name][:4]:
            print(f"    log: {line[:200]}")
    print(
        f"print file: {record['print']['moves']} G1 moves, >= {record['print']['estimate_s']:.0f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the window")
    parser.add_argument("--settle", type=float, default=5.0, help="wait after start-up")
    parser.add_argument("--clients", type=int, default=3, help="Mainsail-like clients each")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="copy the servers' and simulators' logs here")
    parser.add_argument("--timeout", type=int, default=600, help="give up after this")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        return run_load(args.port, args.clients)
    moonraker = args.moonraker_bin or shutil.which("moonraker")
    if not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    args.moonraker = os.path.abspath(moonraker)

    def on_alarm(*_: Any) -> None:
        raise TimeoutError(f"the realistic bench did not finish within {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    started = time.monotonic()
    print(f"trioprint: {args.python} -m trioprint; moonraker: {args.moonraker}")
    record = run(args)
    signal.alarm(0)
    print_table(record)
    print(f"\nrealistic bench took {time.monotonic() - started:.0f} s on {os.cpu_count()} cores")
    write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
