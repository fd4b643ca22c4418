"""A real MQTT broker (Debian's mosquitto) for the tests, started by the tests themselves.

``nox -s tests`` installs mosquitto with apt (only the binary is used: the package's own
service never needs to run). :func:`run_broker` writes a config on a free loopback port
(anonymous, or with a password file made by ``mosquitto_passwd``), starts the broker, waits
until it accepts a TCP connection and kills it at the end; :meth:`Broker.restart` stops and
starts it again on the same port. Without mosquitto the tests are skipped, and fail under CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from .klippy_real import _in_ci

MOSQUITTO = (
    os.environ.get("TRIOPRINT_MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
)
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT = 10.0


def mosquitto_available() -> bool:
    return Path(MOSQUITTO).is_file() and os.access(MOSQUITTO, os.X_OK)


def require_mosquitto() -> None:
    if mosquitto_available():
        return
    message = f"mosquitto not installed ({MOSQUITTO}): run the tests through nox"
    if _in_ci():
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    def __init__(
        self, directory: Path, port: int, users: dict[str, str] | None, persistent: bool = False
    ) -> None:
        self.directory = directory
        self.port = port
        self.host = "127.0.0.1"
        self.config = directory / "mosquitto.conf"
        # persistent: sessions and their queued QoS 1 messages survive a restart (saved at exit)
        persistence = ["persistence true", f"persistence_location {directory}/"]
        lines = [
            f"listener {port} 127.0.0.1",
            *(persistence if persistent else ["persistence false"]),
            "log_dest stderr",
        ]
        if os.geteuid() == 0:  # else mosquitto becomes user mosquitto, who cannot read tmp_path
            lines.append("user root")
        if users:
            passwd = directory / "passwd"
            for i, (user, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run([PASSWD, "-b", *create, str(passwd), user, password], check=True)
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.config.write_text("\n".join(lines) + "\n")
        self._process: trio.Process | None = None
        self.log = directory / "mosquitto.log"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = await trio.lowlevel.open_process(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log
            )
        with trio.fail_after(START_TIMEOUT):
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
                try:
                    stream = await trio.open_tcp_stream(self.host, self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await stream.aclose()
                return

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()  # mosquitto saves its persistence file on SIGTERM
        with trio.CancelScope(shield=True):
            with trio.move_on_after(5):
                await process.wait()
                return
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@asynccontextmanager
async def run_broker(
    directory: Path, users: dict[str, str] | None = None, *, persistent: bool = False
) -> AsyncIterator[Broker]:
    """A running mosquitto in ``directory`` (``users``: name -> password, else anonymous)."""
    require_mosquitto()
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before the broker)
    broker = Broker(directory, free_port(), users, persistent)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture(name="broker")
async def broker_fixture(tmp_path: Path) -> AsyncIterator[Broker]:
    async with run_broker(tmp_path / "broker") as running:
        yield running


@pytest.fixture(name="auth_broker")
async def auth_broker_fixture(tmp_path: Path) -> AsyncIterator[Broker]:
    async with run_broker(tmp_path / "broker", {"printer": "s3cret"}) as running:
        yield running
