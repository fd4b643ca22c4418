"""The host's init system behind a small interface: ``systemctl`` (``systemd_cli``) or none.

Every command goes through a :data:`Runner` (``trio.run_process`` with a timeout by default),
so tests inject a double and never reach the real init system. Commands that change the host
(start/stop/restart, reboot, poweroff) run through :class:`Sudo`: directly when trioprint is
root, else ``sudo -n`` (never waits for a password prompt) or, once a client gave the password
with ``machine.sudo.password``, ``sudo -S`` with it on stdin.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import attrs
import trio

from ..domain import host
from ..errors import ApiError

#: Seconds a command may take before it is killed and reported as failed.
COMMAND_TIMEOUT = 10.0

#: The environment variable that sets ``[machine] provider``'s default (tests set ``none``).
PROVIDER_ENV = "TRIOPRINT_MACHINE_PROVIDER"


@attrs.frozen
class RunResult:
    """What a command did: its exit status (None: it could not start, or timed out)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self) -> str:
        text = (self.stderr or self.stdout).strip().splitlines()
        detail = text[-1] if text else ""
        if self.returncode is None:
            return detail or "did not run"
        return f"exit status {self.returncode}" + (f": {detail}" if detail else "")


#: ``runner(argv, time_limit, stdin)``: run argv (no shell), never longer than time_limit s.
Runner = Callable[[Sequence[str], float, bytes | None], Awaitable[RunResult]]


async def run_command(argv: Sequence[str], time_limit: float, stdin: bytes | None) -> RunResult:
    """The default :data:`Runner`: ``trio.run_process``, killed after ``time_limit`` seconds."""
    try:
        with trio.move_on_after(time_limit) as scope:
            process = await trio.run_process(
                list(argv),
                stdin=stdin if stdin is not None else b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    except OSError as exc:
        return RunResult(None, "", f"{argv[0]}: {exc.strerror or exc}")
    if scope.cancelled_caught:
        return RunResult(None, "", f"timed out after {time_limit:g} s")
    return RunResult(
        process.returncode,
        process.stdout.decode("utf-8", "replace"),
        process.stderr.decode("utf-8", "replace"),
    )


def detect_provider(configured: str | None) -> str:
    """The provider in use: ``systemd_cli`` or ``none``."""
    choice = configured or os.environ.get(PROVIDER_ENV, "").strip().lower() or None
    if choice in ("systemd_cli", "systemd_dbus"):
        return "systemd_cli"
    if choice is not None:
        return "none"  # none, supervisord_cli (warned about by the config), anything else
    has_systemd = shutil.which("systemctl") is not None and os.path.isdir("/run/systemd/system")
    return "systemd_cli" if has_systemd else "none"


class Sudo:
    """Runs a command with the host's privileges: as it is (root), ``sudo -n`` or ``sudo -S``."""

    def __init__(self, runner: Runner, *, is_root: bool | None = None) -> None:
        self._runner = runner
        self._is_root = os.geteuid() == 0 if is_root is None else is_root
        self.password: str | None = None

    def wrap(self, argv: Sequence[str]) -> tuple[list[str], bytes | None]:
        if self._is_root:
            return list(argv), None
        if self.password is not None:
            return ["sudo", "-S", "-p", "", "--", *argv], (self.password + "\n").encode()
        return ["sudo", "-n", "--", *argv], None

    async def run(self, argv: Sequence[str], time_limit: float = COMMAND_TIMEOUT) -> RunResult:
        full, stdin = self.wrap(argv)
        return await self._runner(full, time_limit, stdin)

    async def check_access(self) -> bool:
        """Whether privileged commands run (as Moonraker: ``systemctl --version``, ``ls /root``)."""
        for argv in (["systemctl", "--version"], ["ls", "/root"]):
            if not (await self.run(argv)).ok:
                return False
        return True


class InitSystem(Protocol):
    provider: str

    async def list_services(self) -> list[str]: ...

    async def service_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]: ...

    async def service_action(self, action: str, name: str) -> None: ...

    async def power(self, action: str) -> None: ...


def _unavailable(what: str) -> ApiError:
    return ApiError(
        f"{what} not available: no init system to ask ([machine] provider: none; systemd"
        " was not found: systemctl on the PATH and /run/systemd/system)",
        503,
    )


class NoInitSystem:
    """``provider: none``: no service is known, every action is a 503 naming why."""

    provider = "none"

    async def list_services(self) -> list[str]:
        return []

    async def service_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        return {}

    async def service_action(self, action: str, name: str) -> None:
        raise _unavailable("Service actions")

    async def power(self, action: str) -> None:
        raise _unavailable(f"machine.{action}")


class SystemdCli:
    """``provider: systemd_cli``: ``systemctl`` through the runner."""

    provider = "systemd_cli"

    def __init__(self, runner: Runner, sudo: Sudo, *, shutdown_action: str = "poweroff") -> None:
        self._runner = runner
        self._sudo = sudo
        self._shutdown_action = shutdown_action

    async def list_services(self) -> list[str]:
        argv = ["systemctl", "list-units", "--all", "--type=service", "--plain", "--no-legend"]
        result = await self._runner(argv, COMMAND_TIMEOUT, None)
        if not result.ok:
            raise ApiError(f"systemctl list-units failed: {result.reason()}", 500)
        return host.parse_list_units(result.stdout)

    async def service_states(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        if not names:
            return {}
        argv = ["systemctl", "show", "-p", "Id,ActiveState,SubState", "--"]
        argv += [f"{name}.service" for name in names]
        result = await self._runner(argv, COMMAND_TIMEOUT, None)
        if not result.ok:
            raise ApiError(f"systemctl show failed: {result.reason()}", 500)
        return host.parse_show_states(result.stdout)

    async def service_action(self, action: str, name: str) -> None:
        if action not in host.SERVICE_ACTIONS or not host.is_valid_service_name(name):
            raise ApiError(f"invalid service action {action!r} for {name!r}")
        result = await self._sudo.run(["systemctl", action, f"{name}.service"])
        if not result.ok:
            raise ApiError(f"systemctl {action} {name} failed: {result.reason()}", 500)

    async def power(self, action: str) -> None:
        verb = "reboot" if action == "reboot" else self._shutdown_action
        result = await self._sudo.run(["systemctl", verb])
        if not result.ok:
            raise ApiError(f"systemctl {verb} failed: {result.reason()}", 500)
