"""The command line, run as a user runs it: subprocesses in an empty home folder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trioprint.cli import parse_args

from .live import free_port, subprocess_env, trioprint_command

pytestmark = pytest.mark.slow


def test_serve_is_the_default_command() -> None:
    args = parse_args(["-d", "/tmp/x", "--port", "8000"])
    assert (args.command, args.data_dir, args.port) == ("serve", Path("/tmp/x"), 8000)
    assert parse_args([]).command == "serve"
    call = parse_args(["call", "server.info", '{"a": 1}', "--url", "ws://h:1/websocket"])
    assert (call.method, call.params, call.url) == ("server.info", '{"a": 1}', "ws://h:1/websocket")


def test_sim_options() -> None:
    args = parse_args(["--sim", "--sim-speed", "12.5"])
    assert (args.sim, args.sim_speed) == ("config", 12.5)
    assert (parse_args([]).sim, parse_args([]).sim_speed) == (None, None)
    assert parse_args(["--sim", "marlin"]).sim == "marlin"
    with pytest.raises(SystemExit):
        parse_args(["--sim", "reprap"])
    for bad in ("0", "-1", "fast", "inf"):
        with pytest.raises(SystemExit):
            parse_args(["--sim-speed", bad])


def run(args: list[str], home: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*trioprint_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(home),
        cwd=home,
        stdin=subprocess.DEVNULL,
    )


def test_version(tmp_path: Path) -> None:
    from trioprint import __version__

    result = run(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"trioprint {__version__}"


class Started:
    def __init__(self, process: trio.Process, port: int, stderr: list[str]) -> None:
        self.process = process
        self.port = port
        self.stderr = stderr


async def start_trioprint(home: Path, *args: str) -> Started:
    """Start `trioprint` with no config; return once it says it is listening."""
    port = free_port()
    process = await trio.lowlevel.open_process(
        [*trioprint_command(), "--port", str(port), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env(home),
        cwd=home,
    )
    assert process.stderr is not None
    lines: list[str] = []
    buffer = b""
    with trio.fail_after(30):
        while not any("listening on" in line for line in lines):
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise AssertionError("trioprint exited early:\n" + "".join(lines))
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines.extend(line.decode() + "\n" for line in complete)
    return Started(process, port, lines)


async def stop(started: Started, signum: int = signal.SIGTERM) -> int:
    started.process.send_signal(signum)
    with trio.fail_after(15):
        return await started.process.wait()


async def test_fresh_start_with_no_config_and_call(tmp_path: Path) -> None:
    started = await start_trioprint(tmp_path)
    try:
        # the default data folder was created in the (empty) home folder, with the log
        assert (tmp_path / "printer_data" / "logs" / "trioprint.log").exists()
        assert (tmp_path / "printer_data" / "gcodes").is_dir()
        url = f"ws://127.0.0.1:{started.port}/websocket"
        result = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "--url", url], tmp_path)
        )
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["warnings"] == []
        # no config, no printer: the embedded simulated printer comes up
        with trio.fail_after(30):
            while info["klippy_state"] != "ready":
                await trio.sleep(0.2)
                result = await trio.to_thread.run_sync(
                    lambda: run(["call", "server.info", "--url", url], tmp_path)
                )
                info = json.loads(result.stdout)
        assert info["klippy_connected"] is True
        error = await trio.to_thread.run_sync(
            lambda: run(["call", "no.such.method", "--url", url], tmp_path)
        )
        assert error.returncode == 1
        assert "no.such.method" in error.stderr
        assert error.stdout == ""
        bad_params = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "[1]", "--url", url], tmp_path)
        )
        assert bad_params.returncode == 1
        assert "JSON object" in bad_params.stderr
    finally:
        status = await stop(started)
    assert status == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_signals_shut_down_cleanly(tmp_path: Path, signum: int) -> None:
    started = await start_trioprint(tmp_path, "-d", str(tmp_path / "data"))
    assert await stop(started, signum) == 0
    log = (tmp_path / "data" / "logs" / "trioprint.log").read_text()
    assert "shutting down" in log
    assert "Traceback" not in log
    assert log.splitlines()[-1].endswith("INFO    [trioprint.app] trioprint stopped")


def test_call_without_a_server_fails_clearly(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/websocket"
    result = run(["call", "server.info", "--url", url, "--timeout", "5"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("trioprint: error: cannot reach")
    assert "connection refused" in result.stderr
    assert "HandshakeError" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_call_timeout_options() -> None:
    # the simulator's M109 takes about 80 s: the default waits well beyond it
    assert parse_args(["call", "printer.gcode.script"]).timeout >= 300
    assert parse_args(["call", "server.info", "--timeout", "0"]).timeout == 0
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(SystemExit):
            parse_args(["call", "server.info", "--timeout", bad])


async def test_call_timeouts_are_one_line(tmp_path: Path) -> None:
    started = await start_trioprint(tmp_path)
    url = f"ws://127.0.0.1:{started.port}/websocket"
    try:
        dwell = await trio.to_thread.run_sync(
            lambda: run(
                [
                    "call",
                    "printer.gcode.script",
                    '{"script": "G4 P100000"}',
                    "--url",
                    url,
                    "--timeout",
                    "1",
                ],
                tmp_path,
            )
        )
        line = one_line_error(dwell)
        assert dwell.returncode == 3
        assert line == f"trioprint: error: no answer from {url} within 1 s"
        at_once = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "--url", url, "--timeout", "0"], tmp_path)
        )
        assert at_once.returncode == 3
        assert "within 0 s" in one_line_error(at_once)
    finally:
        assert await stop(started) == 0


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


async def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = await trio.to_thread.run_sync(
            lambda: run(["-d", str(tmp_path), "--port", str(port)], tmp_path)
        )
    line = one_line_error(result)
    assert str(port) in line
    assert "in use" in line


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[server]\nport: abc\n", ["[server]", "port", "abc"]),
        ("no section header\n", ["moonraker.conf"]),
        ("[server]\nmax_upload_size: lots\n", ["max_upload_size"]),
    ],
)
def test_bad_config_is_one_line(tmp_path: Path, text: str, words: list[str]) -> None:
    config = tmp_path / "moonraker.conf"
    config.write_text(text)
    line = one_line_error(run(["-d", str(tmp_path), "-c", str(config), "--port", "0"], tmp_path))
    assert "moonraker.conf" in line
    for word in words:
        assert word in line


async def test_typos_in_the_config_are_shown_at_start(tmp_path: Path) -> None:
    config = tmp_path / "moonraker.conf"
    config.write_text("[server]\nmax_uplod_size: 10\n[file_manger]\nenable: 1\n")
    data = tmp_path / "data"
    started = await start_trioprint(tmp_path, "-d", str(data), "-c", str(config))
    try:
        url = f"ws://127.0.0.1:{started.port}/websocket"
        result = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "--url", url], tmp_path)
        )
        warnings = json.loads(result.stdout)["warnings"]
    finally:
        assert await stop(started) == 0
    option = f"{config}:2: [server] max_uplod_size: unknown option, ignored"
    section = f"{config}:3: [file_manger]: section not supported by trioprint, ignored"
    assert warnings == [option, section]
    log = (data / "logs" / "trioprint.log").read_text()
    for where in ("".join(started.stderr), log):  # one line each
        lines = [line for line in where.splitlines() if "WARNING" in line and "ignored" in line]
        assert [line.split("] ", 1)[1] for line in lines] == [option, section]


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run(["-c", str(tmp_path / "nope.conf"), "-d", str(tmp_path)], tmp_path))
    assert "nope.conf" in line


def test_bad_port_argument_is_refused(tmp_path: Path) -> None:
    result = run(["--port", "99999"], tmp_path)
    assert result.returncode == 2
    assert "out of range" in result.stderr


def test_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trioprint", "--version"],
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("trioprint ")


def test_simulator_socket_problem_is_one_line(tmp_path: Path) -> None:
    # AF_UNIX paths are limited to 107 bytes: a data folder this deep cannot hold the socket
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    result = run(["-d", str(deep), "--port", "0"], tmp_path)
    line = one_line_error(result)
    assert "simulated printer" in line
    assert "trioprint-sim.sock" in line


async def test_call_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    started = await start_trioprint(tmp_path)
    try:
        url = f"ws://127.0.0.1:{started.port}/websocket"
        command = " ".join([*trioprint_command(), "call", "server.info", "--url", url])
        # head reads one line and exits: the rest of the output meets a closed pipe
        result = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                ["bash", "-c", f"set -o pipefail; {command} | head -c 1"],
                capture_output=True,
                text=True,
                timeout=30,
                env=subprocess_env(tmp_path),
                cwd=tmp_path,
            )
        )
        assert result.stdout == "{"
        assert "Traceback" not in result.stderr
        assert result.returncode == 0, result.stderr
    finally:
        await stop(started)


async def test_call_with_an_api_key(tmp_path: Path) -> None:
    """`trioprint call --api-key` reaches a server that does not trust the caller's address."""
    data = tmp_path / "data"
    started = await start_trioprint(tmp_path, "-d", str(data))
    url = f"ws://127.0.0.1:{started.port}/websocket"
    try:  # loopback is trusted by default: the key can be read
        got = await trio.to_thread.run_sync(
            lambda: run(["call", "access.get_api_key", "--url", url], tmp_path)
        )
        assert got.returncode == 0, got.stderr
        key = json.loads(got.stdout)
    finally:
        assert await stop(started) == 0
    conf = tmp_path / "untrusting.conf"
    conf.write_text("[authorization]\ntrust_loopback: False\n")
    started = await start_trioprint(tmp_path, "-d", str(data), "-c", str(conf))
    url = f"ws://127.0.0.1:{started.port}/websocket"
    try:
        refused = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "--url", url], tmp_path)
        )
        assert refused.returncode == 1
        assert "Unauthorized" in refused.stderr
        wrong = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "--url", url, "--api-key", "x" * 32], tmp_path)
        )
        assert wrong.returncode == 1
        allowed = await trio.to_thread.run_sync(
            lambda: run(["call", "server.info", "--url", url, "--api-key", key], tmp_path)
        )
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["moonraker_version"] == "v0.11.0"
    finally:
        assert await stop(started) == 0
