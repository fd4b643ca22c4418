"""One data folder, one process: a second trioprint never disturbs the one that runs.

The lock and the start-up order are tested with real subprocesses, as a user starts them; the
simulator's socket handling in-process.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trioprint.errors import StartupError
from trioprint.sim.server import SimKlippy

from .live import free_port, subprocess_env
from .test_cli import one_line_error, run, start_trioprint, stop

WAIT = 30.0


def call(url: str, home: Path, method: str) -> dict[str, object]:
    result = run(["call", method, "--url", url], home)
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


async def wait_ready(url: str, home: Path) -> None:
    with trio.fail_after(WAIT):
        while True:
            info = await trio.to_thread.run_sync(call, url, home, "server.info")
            if info["klippy_state"] == "ready":
                return
            await trio.sleep(0.2)  # polling another process, bounded by WAIT


@pytest.mark.slow
async def test_a_second_start_on_the_same_data_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = await start_trioprint(tmp_path, "-d", str(data))
    url = f"ws://127.0.0.1:{first.port}/websocket"
    sim_socket = data / "comms" / "trioprint-sim.sock"
    try:
        await wait_ready(url, tmp_path)
        inode = sim_socket.stat().st_ino
        # the same port (which is in use) and another port: both refused for the data folder
        for port in (first.port, free_port()):
            args = ["-d", str(data), "--port", str(port)]
            second = await trio.to_thread.run_sync(functools.partial(run, args, tmp_path))
            line = one_line_error(second)
            assert str(data) in line
            assert f"pid {first.process.pid}" in line
            assert second.returncode == 1
        assert sim_socket.stat().st_ino == inode  # the first one's socket, untouched
        # the first server still reaches its own simulated printer after a firmware restart
        answer = await trio.to_thread.run_sync(call, url, tmp_path, "printer.firmware_restart")
        assert answer == "ok"
        await wait_ready(url, tmp_path)
        temps = await trio.to_thread.run_sync(
            lambda: run(
                ["call", "printer.gcode.script", '{"script": "M105"}', "--url", url], tmp_path
            )
        )
        assert temps.returncode == 0, temps.stderr
    finally:
        assert await stop(first) == 0
    # released on exit: the data folder can be used again
    again = await start_trioprint(tmp_path, "-d", str(data))
    assert await stop(again) == 0
    assert "Traceback" not in (data / "logs" / "trioprint.log").read_text()


def test_a_failed_start_leaves_no_socket(tmp_path: Path) -> None:
    """The HTTP port is bound before the data folder gets a socket or a database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run(["-d", str(tmp_path / "data"), "--port", str(port)], tmp_path)
    assert "in use" in one_line_error(result)
    assert not (tmp_path / "data" / "comms").exists()
    assert not (tmp_path / "data" / "database").exists()


def test_a_data_folder_that_cannot_hold_a_lock_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / ".trioprint.lock").mkdir()  # not a file: the lock cannot be taken
    line = one_line_error(run(["-d", str(data), "--port", "0"], tmp_path))
    assert ".trioprint.lock" in line


def test_a_lock_held_by_another_program_names_its_pid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'%d\\n' % os.getpid())\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(data / ".trioprint.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(tmp_path),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        line = one_line_error(run(["-d", str(data), "--port", "0"], tmp_path))
        assert f"pid {holder.pid}" in line
        assert not (data / "logs").exists()  # nothing in the data folder was touched
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()


# --- the simulator's socket -----------------------------------------------------------------


def sim(path: Path, tmp_path: Path) -> SimKlippy:
    return SimKlippy(path, tmp_path / "gcodes")


async def test_a_served_socket_is_never_unlinked(tmp_path: Path) -> None:
    path = tmp_path / "comms" / "sim.sock"
    async with trio.open_nursery() as nursery:
        await nursery.start(sim(path, tmp_path).run)
        inode = path.stat().st_ino
        with pytest.raises(StartupError, match="another process"), trio.fail_after(WAIT):
            await sim(path, tmp_path).run()
        assert path.stat().st_ino == inode
        stream = await trio.open_unix_socket(os.fspath(path))  # still served
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert not path.exists()  # its own socket is removed when it stops


async def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "sim.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(os.fspath(path))  # bound, never listening: connections are refused
    async with trio.open_nursery() as nursery:
        await nursery.start(sim(path, tmp_path).run)
        stream = await trio.open_unix_socket(os.fspath(path))
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_stopping_leaves_a_socket_that_is_not_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sim.sock"
    other = socket.socket(socket.AF_UNIX)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(sim(path, tmp_path).run)
            path.unlink()  # someone else took the path over
            other.bind(os.fspath(path))
            other.listen()
            nursery.cancel_scope.cancel()
        assert path.exists()
    finally:
        other.close()
