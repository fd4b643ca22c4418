"""Farm benchmark: N printers on one host (run by ``nox -s bench``).

Idle cost of serving N (default 4) simulated printers, each ready and connected, nobody
asking anything:

* trioprint, one process with N instances (``trioprint serve --instance DIR ...``), each on
  a simulated printer of its own process (``python -m trioprint.sim``);
* the same farm with the simulated printers embedded (no ``klippy_uds_address``: each
  instance runs its own in the process, as a farm on a small board runs it);
* trioprint, N processes (one ``-d DIR`` each), on simulated printers of their own processes;
* Moonraker 0.11, N processes, on simulated printers of their own processes.

The simulated printers' own processes are not counted. For each set-up, once every server
reports ``klippy_state: ready`` and a settling time has passed: CPU (utime + stime from
``/proc/<pid>/stat``) over an idle window (default 30 s), as a percentage of one core, and
resident memory (``VmRSS`` from ``/proc/<pid>/status``) at its end, summed over the servers'
processes.
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
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_api import cpu_ticks_seconds, free_port, rss_kb, server_conf, write_json
from bench_fanout import run_sim, stop_process

#: Seconds between every server being ready and the idle window's start.
SETTLE = 5.0
#: Seconds every server has to answer ``klippy_state: ready``.
READY_TIMEOUT = 60.0


def klippy_state(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server/info", timeout=2) as r:
            return str(json.load(r)["result"]["klippy_state"])
    except (OSError, ValueError, KeyError):
        return None


def wait_ready(ports: list[int], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = list(ports)
    while waiting:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"pid {process.pid} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"ports {waiting} not ready within {READY_TIMEOUT:g} s")
        waiting = [p for p in waiting if klippy_state(p) != "ready"]
        time.sleep(0.2)


@contextlib.contextmanager
def started(
    commands: list[list[str]], ports: list[int], workdir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start the servers' ``commands``; yield them once every port reports klippy ready."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for i, command in enumerate(commands):
            with (workdir / f"server-{i}.out").open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        wait_ready(ports, processes)
        yield processes
    finally:
        for process in processes:
            stop_process(process, signal.SIGINT, 15)


@contextlib.contextmanager
def sims(python: str, workdir: Path, count: int) -> Iterator[list[Path]]:
    """``count`` simulated printers in processes of their own; yields their sockets."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for i in range(count):
            where = workdir / f"sim-{i}"
            stack.enter_context(run_sim(python, where, workdir / f"data-{i}" / "gcodes"))
            sockets.append(where / "klippy.sock")
        yield sockets


def instance_dir(workdir: Path, i: int, conf: str, name: str = "trioprint.conf") -> Path:
    data = workdir / f"data-{i}"
    for sub in ("config", "logs", "misc", "gcodes"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    (data / "misc" / "usb.ids").write_text("")  # else Moonraker downloads it at start-up
    (data / "config" / name).write_text(conf)
    return data


Setup = Callable[[str, str, Path, int], contextlib.AbstractContextManager[list[int]]]


@contextlib.contextmanager
def trioprint_farm(python: str, _: str, workdir: Path, count: int) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(count)]
    with sims(python, workdir, count) as sockets:
        args = []
        for i, (port, sock) in enumerate(zip(ports, sockets, strict=True)):
            data = instance_dir(workdir, i, server_conf(port, str(sock)))
            args += ["--instance", f"p{i}={data}"]
        with started([[python, "-m", "trioprint", *args]], ports, workdir) as processes:
            yield [p.pid for p in processes]


@contextlib.contextmanager
def trioprint_farm_embedded(python: str, _: str, workdir: Path, count: int) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(count)]
    args = []
    for i, port in enumerate(ports):
        data = instance_dir(workdir, i, server_conf(port, None))
        args += ["--instance", f"p{i}={data}"]
    with started([[python, "-m", "trioprint", *args]], ports, workdir) as processes:
        yield [p.pid for p in processes]


@contextlib.contextmanager
def trioprint_processes(python: str, _: str, workdir: Path, count: int) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(count)]
    with sims(python, workdir, count) as sockets:
        commands = []
        for i, (port, sock) in enumerate(zip(ports, sockets, strict=True)):
            data = instance_dir(workdir, i, server_conf(port, str(sock)))
            commands.append([python, "-m", "trioprint", "-d", str(data)])
        with started(commands, ports, workdir) as processes:
            yield [p.pid for p in processes]


@contextlib.contextmanager
def moonraker_processes(
    python: str, moonraker: str, workdir: Path, count: int
) -> Iterator[list[int]]:
    ports = [free_port() for _ in range(count)]
    with sims(python, workdir, count) as sockets:
        commands = []
        for i, (port, sock) in enumerate(zip(ports, sockets, strict=True)):
            data = instance_dir(workdir, i, server_conf(port, str(sock)), "moonraker.conf")
            conf = data / "config" / "moonraker.conf"
            commands.append([moonraker, "-d", str(data), "-c", str(conf)])
        with started(commands, ports, workdir) as processes:
            yield [p.pid for p in processes]


SETUPS: dict[str, tuple[str, Setup]] = {
    "farm": ("trioprint, 1 process (--instance x N)", trioprint_farm),
    "farm-embedded": ("trioprint, 1 process, simulators inside", trioprint_farm_embedded),
    "trioprint": ("trioprint, N processes", trioprint_processes),
    "moonraker": ("Moonraker 0.11, N processes", moonraker_processes),
}


def measure(pids: list[int], window: float) -> dict[str, Any]:
    time.sleep(SETTLE)
    before, t0 = sum(cpu_ticks_seconds(p) for p in pids), time.monotonic()
    time.sleep(window)
    after, t1 = sum(cpu_ticks_seconds(p) for p in pids), time.monotonic()
    rss = sum(rss_kb(p) for p in pids)
    return {
        "processes": len(pids),
        "rss_mb": round(rss / 1024, 1),
        "cpu_percent": round(100 * (after - before) / (t1 - t0), 2),
        "cpu_seconds": round(after - before, 2),
        "window_s": round(t1 - t0, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moonraker-bin", help="Moonraker 0.11's moonraker script")
    parser.add_argument("--python", default=sys.executable, help="interpreter with trioprint")
    parser.add_argument(
        "--window", "--seconds", type=float, default=30.0, help="idle window in seconds"
    )
    parser.add_argument("--printers", type=int, default=4, help="printers per set-up")
    parser.add_argument(
        "--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    moonraker = args.moonraker_bin or shutil.which("moonraker") or ""
    chosen = [s.strip() for s in args.setups.split(",") if s.strip()]
    for name in chosen:
        if name not in SETUPS:
            parser.error(f"unknown set-up {name!r}: expected some of {', '.join(SETUPS)}")
    if "moonraker" in chosen and not moonraker:
        parser.error("Moonraker not found: pass --moonraker-bin")
    began = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        label, setup = SETUPS[name]
        with (
            tempfile.TemporaryDirectory(prefix=f"bench-farm-{name}-") as tmp,
            setup(args.python, moonraker, Path(tmp), args.printers) as pids,
        ):
            results[name] = {"label": label, **measure(pids, args.window)}
        print(f"{name}: {results[name]}", flush=True)
    n = args.printers
    print(f"\n{n} printers, idle {args.window:g} s window, after {SETTLE:g} s settling")
    print(f"{'set-up':<42}{'procs':>6}{'RSS MB':>9}{'MB/printer':>12}{'CPU %':>8}")
    for result in results.values():
        print(
            f"{result['label'].replace('N', str(n)):<42}{result['processes']:>6}"
            f"{result['rss_mb']:>9.1f}{result['rss_mb'] / n:>12.1f}{result['cpu_percent']:>8.2f}"
        )
    if "farm" in results and "moonraker" in results:
        ours, peer = results["farm"], results["moonraker"]
        print(
            f"\nMoonraker / trioprint farm: RSS {peer['rss_mb'] / ours['rss_mb']:.2f}x, "
            f"CPU {peer['cpu_percent'] / max(ours['cpu_percent'], 0.01):.2f}x"
        )
    print(f"bench took {time.monotonic() - began:.0f} s on {os.cpu_count()} cores")
    write_json(args.json, {"printers": n, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
