"""Dashboard benchmark: the unmodified Mainsail v2.18.2 in Chromium, against trioprint and
against Moonraker 0.11, on the same simulated printer (run by ``nox -s bench``).

For each server: trioprint's simulated printer alone (``python -m trioprint.sim``, speed 1, a
fresh one per server), the server pointed at its socket with the same loopback-trusted
config (bench_api.py's), then ``--loads`` page loads, each in a fresh browser page (empty
cache), timed from navigation until the "Initializing" dialog is gone and the dashboard shows
the extruder's temperature (tests/browser.py). trioprint serves Mainsail itself
(``[frontend] path``); for Moonraker, which needs a web server in front, this script serves
the same files from a thread (Python's ``http.server``, as nginx would; ``config.json`` points
Mainsail at Moonraker's port, and Moonraker allows that origin with ``cors_domains``).

Needs Playwright (``pip install playwright``, never ``playwright install``) and
``/usr/bin/chromium``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_api import free_port, server_conf  # noqa: E402
from bench_fanout import stop_process, wait_klippy_ready  # noqa: E402
from tests.browser import (  # noqa: E402
    MAINSAIL_DIST,
    chromium_page,
    get_json,
    load_dashboard,
    missing_browser_parts,
    wait_http,
)


class _DistHandler(SimpleHTTPRequestHandler):
    """Mainsail's files, with a ``config.json`` that names the API's port."""

    config_json = b"{}"

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/config.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.config_json)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(self.config_json)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_server(api_port: int) -> Iterator[int]:
    config = json.loads((MAINSAIL_DIST / "config.json").read_text())
    config.update({"hostname": "127.0.0.1", "port": api_port, "instancesDB": "moonraker"})
    handler = type("Handler", (_DistHandler,), {"config_json": json.dumps(config).encode()})
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(MAINSAIL_DIST))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def simulator(python: str, work: Path) -> Iterator[Path]:
    sock = work / "sim" / "klippy.sock"
    sock.parent.mkdir(parents=True)
    gcodes = work / "gcodes"
    gcodes.mkdir()
    with (work / "sim.log").open("wb") as out:
        process = subprocess.Popen(
            [python, "-m", "trioprint.sim", "--socket", str(sock), "--gcodes", str(gcodes)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_klippy_ready(str(sock), process)
        yield sock
    finally:
        stop_process(process, 15, 5)


@contextlib.contextmanager
def api_server(name: str, command: list[str], work: Path, port: int) -> Iterator[None]:
    with (work / f"{name}.log").open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/server/info", timeout=60, process=process)
        for _ in range(300):
            if get_json(f"{url}/server/info")["result"].get("klippy_state") == "ready":
                break
            threading.Event().wait(0.1)
        else:
            raise RuntimeError(f"{name}: klippy never ready")
        yield
    finally:
        stop_process(process, 2, 15)


def measure(url: str, loads: int) -> dict[str, Any]:
    times: list[float] = []
    requests: list[int] = []
    errors: list[Any] = []
    for _ in range(loads):
        with chromium_page() as (page, watch):
            times.append(load_dashboard(page, url))
            requests.append(len(watch.methods))
            errors.extend(watch.rpc_errors)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
        "rpc_requests": statistics.median(requests),
        "rpc_errors": [f"{m}: {e.get('message')}" for m, e in errors],
    }


def run_trioprint(python: str, loads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dash-tp-") as tmp:
        work = Path(tmp)
        with simulator(python, work) as sock:
            port = free_port()
            data = work / "data"
            data.mkdir()
            conf = work / "trioprint.conf"
            extra = f"\n[frontend]\npath: {MAINSAIL_DIST}\n"
            conf.write_text(server_conf(port, str(sock)) + extra)
            command = [python, "-m", "trioprint", "-d", str(data), "-c", str(conf)]
            with api_server("trioprint", command, work, port):
                return measure(f"http://127.0.0.1:{port}/", loads)


def run_moonraker(python: str, moonraker: str, loads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-dash-mr-") as tmp:
        work = Path(tmp)
        with simulator(python, work) as sock:
            port = free_port()
            data = work / "data"
            (data / "misc").mkdir(parents=True)
            (data / "misc" / "usb.ids").write_text("")
            (data / "logs").mkdir()
            conf = data / "moonraker.conf"
            text = server_conf(port, str(sock)).replace(
                "[authorization]\n", "[authorization]\ncors_domains:\n  http://127.0.0.1:*\n"
            )
            conf.write_text(text)
            command = [moonraker, "-d", str(data), "-c", str(conf)]
            with api_server("moonraker", command, work, port), static_server(port) as web:
                return measure(f"http://127.0.0.1:{web}/", loads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moonraker-bin", required=True)
    parser.add_argument("--python", default=sys.executable, help="runs trioprint and the sim")
    parser.add_argument("--loads", type=int, default=5, help="page loads per server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--seconds", type=float, help="ignored (other benches' option)")
    args = parser.parse_args()
    missing = missing_browser_parts()
    if missing:
        print("bench_dashboard: needs " + "; ".join(missing), file=sys.stderr)
        return 1
    ours = run_trioprint(args.python, args.loads)
    peer = run_moonraker(args.python, args.moonraker_bin, args.loads)
    ratio = peer["median_s"] / ours["median_s"]
    print(f"Mainsail dashboard load ({args.loads} cold loads each, median [min-max]):")
    for name, fig in (("trioprint", ours), ("Moonraker 0.11", peer)):
        print(
            f"  {name:<15} {fig['median_s']:.2f} s [{fig['min_s']:.2f}-{fig['max_s']:.2f}]"
            f"  {fig['rpc_requests']:.0f} JSON-RPC requests, {len(fig['rpc_errors'])} errors"
        )
    print(f"  ratio Moonraker / trioprint: {ratio:.2f}x")
    for name, fig in (("trioprint", ours), ("Moonraker", peer)):
        for error in sorted(set(fig["rpc_errors"])):
            print(f"  {name} error reply: {error}")
    if args.json:
        args.json.write_text(json.dumps({"trioprint": ours, "moonraker": peer, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
