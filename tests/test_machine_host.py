"""machine.services.*, reboot/shutdown, sudo and service_state, against a double runner.

Nothing here runs systemctl, sudo, reboot or poweroff: every command goes to FakeRunner.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from trioprint.bus import Bus, Notify
from trioprint.components import init_system
from trioprint.components.init_system import RunResult
from trioprint.components.machine import Machine
from trioprint.config import Config, MachineConfig
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport

LIST_UNITS = """\
klipper.service             loaded active   running Klipper 3D Printer Firmware SV1
crowsnest.service           loaded active   running crowsnest - Multi Webcam Daemon
moonraker-obico.service     loaded inactive dead    Obico
ssh.service                 loaded active   running OpenBSD Secure Shell server
trioprint.service           loaded active   running trioprint
"""


def show_output(states: dict[str, tuple[str, str]]) -> str:
    blocks = [
        f"SubState={sub}\nId={name}.service\nActiveState={active}\n"
        for name, (active, sub) in states.items()
    ]
    return "\n".join(blocks)


class FakeRunner:
    """Answers systemctl's questions from its fields; records every argv."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.units = LIST_UNITS
        self.states = {
            "klipper": ("active", "running"),
            "crowsnest": ("active", "running"),
            "moonraker-obico": ("inactive", "dead"),
            "trioprint": ("active", "running"),
        }
        self.password: str | None = None  # sudo -S wants this one
        self.fail: RunResult | None = None  # the answer to an action

    async def __call__(
        self, argv: Sequence[str], time_limit: float, stdin: bytes | None
    ) -> RunResult:
        argv = list(argv)
        self.calls.append((argv, stdin))
        assert time_limit > 0
        if argv[:2] == ["sudo", "-S"]:
            if self.password is None or stdin != f"{self.password}\n".encode():
                return RunResult(1, "", "Sorry, try again.")
            argv = argv[argv.index("--") + 1 :]
        elif argv[:2] == ["sudo", "-n"]:
            argv = argv[3:]
        if argv[:2] == ["systemctl", "list-units"]:
            return RunResult(0, self.units)
        if argv[:2] == ["systemctl", "show"]:
            names = [a.removesuffix(".service") for a in argv[5:]]
            return RunResult(0, show_output({n: self.states[n] for n in names}))
        if self.fail is not None:
            return self.fail
        return RunResult(0)

    def actions(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls if "list-units" not in argv and "show" not in argv]


@attrs.define
class FakeCache:
    state: dict[str, Any] = attrs.Factory(dict)


@attrs.define
class FakeKlippy:
    cache: FakeCache = attrs.Factory(FakeCache)


class FakeWebsockets:
    count = 0


class FakeInstance:
    def __init__(self, data_dir: Path, machine: MachineConfig | None = None) -> None:
        self.bus = Bus()
        self.websockets = FakeWebsockets()
        self.config = Config(data_dir=data_dir, machine=machine or MachineConfig())
        self.klippy = FakeKlippy()
        self.restarts = 0

    def request_restart(self) -> None:
        self.restarts += 1


async def static_info() -> dict[str, Any]:
    return {
        "system_info": {
            "virtualization": {"virt_type": "none", "virt_identifier": "none"},
            "instance_ids": {"moonraker": "x", "klipper": "klipper"},
        }
    }


class Host:
    def __init__(
        self,
        tmp_path: Path,
        *,
        provider: str = "systemd_cli",
        machine: MachineConfig | None = None,
        info: Any = static_info,
    ) -> None:
        self.runner = FakeRunner()
        self.instance = FakeInstance(tmp_path, machine)
        self.machine = Machine(
            self.instance,  # type: ignore[arg-type]
            read_system_info=info,
            runner=self.runner,
            provider=provider,
            is_root=False,
            own_unit="trioprint",
        )
        self.registry = Registry()
        self.registry.add_component(self.machine)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        ep = self.registry.by_rpc(method)
        assert ep is not None, method
        return await self.registry.dispatch(ep, params or {}, Transport.WEBSOCKET)

    async def fails(self, method: str, params: dict[str, Any] | None = None) -> ApiError:
        with pytest.raises(ApiError) as info:
            await self.call(method, params)
        return info.value


async def detected(tmp_path: Path, **kwargs: Any) -> Host:
    host = Host(tmp_path, **kwargs)
    await host.machine._detect_services()
    return host


async def test_system_info_lists_the_allowed_services_with_their_state(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    info = (await host.call("machine.system_info"))["system_info"]
    assert info["provider"] == "systemd_cli"
    assert info["available_services"] == ["klipper", "crowsnest", "moonraker-obico", "trioprint"]
    assert info["service_state"]["crowsnest"] == {"active_state": "active", "sub_state": "running"}
    assert info["service_state"]["moonraker-obico"] == {
        "active_state": "inactive",
        "sub_state": "dead",
    }
    assert "ssh" not in info["service_state"]
    assert info["instance_ids"] == {"moonraker": "trioprint", "klipper": "klipper"}


async def test_the_asvc_file_is_the_allow_list(tmp_path: Path) -> None:
    (tmp_path / "moonraker.asvc").write_text("# mine\ncrowsnest.service\n\n")
    host = await detected(tmp_path)
    info = (await host.call("machine.system_info"))["system_info"]
    assert info["available_services"] == ["klipper", "crowsnest", "trioprint"]
    error = await host.fails("machine.services.restart", {"service": "moonraker-obico"})
    assert (error.status, error.message) == (400, "Service 'moonraker-obico' not allowed")


@pytest.mark.parametrize("action", ["restart", "start", "stop"])
async def test_an_allowed_service_is_controlled_with_sudo_n(tmp_path: Path, action: str) -> None:
    host = await detected(tmp_path)
    assert await host.call(f"machine.services.{action}", {"service": "crowsnest"}) == "ok"
    assert host.runner.actions() == [["sudo", "-n", "--", "systemctl", action, "crowsnest.service"]]


@pytest.mark.parametrize(
    "name", ["ssh", "klipper; reboot", "-H", "--now", "klipper service", "../klipper", ""]
)
async def test_services_not_allowed_are_refused_before_any_command(
    tmp_path: Path, name: str
) -> None:
    host = await detected(tmp_path)
    error = await host.fails("machine.services.restart", {"service": name})
    assert (error.status, error.message) == (400, f"Service '{name}' not allowed")
    assert host.runner.actions() == []


async def test_an_allowed_service_that_is_not_installed(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    error = await host.fails("machine.services.start", {"service": "KlipperScreen"})
    assert (error.status, error.message) == (400, "Service 'KlipperScreen' not installed")
    assert host.runner.actions() == []


async def test_a_missing_service_param_is_a_400(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    error = await host.fails("machine.services.restart")
    assert error.status == 400
    assert "service" in error.message


async def test_restarting_trioprints_own_service_restarts_in_process(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    assert await host.call("machine.services.restart", {"service": "trioprint"}) == "ok"
    assert host.instance.restarts == 1
    error = await host.fails("machine.services.stop", {"service": "trioprint"})
    assert (error.status, error.message) == (
        400,
        "Service action 'stop' not available for trioprint",
    )
    assert host.runner.actions() == []


async def test_a_failing_systemctl_is_a_500_naming_it(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    host.runner.fail = RunResult(1, "", "Failed to restart crowsnest.service: Access denied\n")
    error = await host.fails("machine.services.restart", {"service": "crowsnest"})
    assert error.status == 500
    assert error.message == (
        "systemctl restart crowsnest failed: exit status 1: "
        "Failed to restart crowsnest.service: Access denied"
    )
    host.runner.fail = RunResult(None, "", "timed out after 10 s")
    error = await host.fails("machine.services.restart", {"service": "crowsnest"})
    assert error.message == "systemctl restart crowsnest failed: timed out after 10 s"


async def test_without_systemd_actions_are_503_and_provider_is_none(tmp_path: Path) -> None:
    host = await detected(tmp_path, provider="none")
    info = (await host.call("machine.system_info"))["system_info"]
    assert (info["provider"], info["available_services"], info["service_state"]) == (
        "none",
        [],
        {},
    )
    for method, params in [
        ("machine.services.restart", {"service": "crowsnest"}),
        ("machine.reboot", {}),
        ("machine.shutdown", {}),
    ]:
        error = await host.fails(method, params)
        assert error.status == 503
        assert "provider: none" in error.message
        assert "systemd" in error.message
    error = await host.fails("machine.services.restart", {"service": "ssh"})
    assert error.status == 400
    assert host.runner.calls == []


async def test_reboot_and_shutdown_run_systemctl(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    assert await host.call("machine.reboot") == "ok"
    assert await host.call("machine.shutdown") == "ok"
    assert host.runner.actions() == [
        ["sudo", "-n", "--", "systemctl", "reboot"],
        ["sudo", "-n", "--", "systemctl", "poweroff"],
    ]


async def test_shutdown_action_halt(tmp_path: Path) -> None:
    host = await detected(tmp_path, machine=MachineConfig(shutdown_action="halt"))
    await host.call("machine.shutdown")
    assert host.runner.actions() == [["sudo", "-n", "--", "systemctl", "halt"]]


@pytest.mark.parametrize("state", ["printing", "paused"])
async def test_reboot_and_shutdown_are_refused_during_a_print(tmp_path: Path, state: str) -> None:
    host = await detected(tmp_path)
    host.instance.klippy.cache.state["print_stats"] = {"state": state, "filename": "a.gcode"}
    for method in ("machine.reboot", "machine.shutdown"):
        error = await host.fails(method)
        assert error.status == 409
        assert f"print_stats state '{state}'" in error.message
    assert host.runner.actions() == []
    host.instance.klippy.cache.state["print_stats"] = {"state": "complete"}
    assert await host.call("machine.reboot") == "ok"


async def test_power_is_refused_inside_a_container(tmp_path: Path) -> None:
    async def in_docker() -> dict[str, Any]:
        return {
            "system_info": {
                "virtualization": {"virt_type": "container", "virt_identifier": "docker"}
            }
        }

    host = await detected(tmp_path, info=in_docker)
    error = await host.fails("machine.reboot")
    assert (error.status, error.message) == (400, "Cannot reboot from within a docker container")
    assert host.runner.actions() == []


async def test_sudo_info_and_password(tmp_path: Path) -> None:
    host = await detected(tmp_path)
    info = await host.call("machine.sudo.info")
    assert info["sudo_access"] is None
    assert (info["sudo_requested"], info["request_messages"]) == (False, [])
    assert isinstance(info["linux_user"], str)
    assert host.runner.calls[-1][0][:2] == ["systemctl", "show"]  # nothing asked of sudo
    assert (await host.call("machine.sudo.info", {"check_access": True}))["sudo_access"] is True

    host.runner.password = "secret"
    error = await host.fails("machine.sudo.password", {"password": "wrong"})
    assert (error.status, error.message) == (400, "Invalid password, sudo access was denied")
    assert host.machine.sudo.password is None
    result = await host.call("machine.sudo.password", {"password": "secret"})
    assert result == {"sudo_responses": ["Sudo password successfully set."], "is_restarting": False}
    await host.call("machine.services.restart", {"service": "klipper"})
    argv, stdin = host.runner.calls[-2]  # the last one is the refresh of the states
    assert argv == ["sudo", "-S", "-p", "", "--", "systemctl", "restart", "klipper.service"]
    assert stdin == b"secret\n"


async def test_state_changes_are_notified(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    host = Host(tmp_path)
    received: list[Notify] = []
    with host.instance.bus.subscribe(Notify) as events:
        async with trio.open_nursery() as nursery:
            await nursery.start(host.machine.run)
            host.runner.states["crowsnest"] = ("failed", "failed")
            with trio.move_on_after(5):
                async for event in events:
                    assert isinstance(event, Notify)
                    if event.method == "notify_service_state_changed":
                        received.append(event)
            nursery.cancel_scope.cancel()
    assert [event.params for event in received] == [
        ({"crowsnest": {"active_state": "failed", "sub_state": "failed"}},)
    ]
    info = (await host.call("machine.system_info"))["system_info"]
    assert info["service_state"]["crowsnest"]["active_state"] == "failed"


def test_the_provider_choice() -> None:
    assert init_system.detect_provider("systemd_cli") == "systemd_cli"
    assert init_system.detect_provider("systemd_dbus") == "systemd_cli"
    assert init_system.detect_provider("supervisord_cli") == "none"
    assert init_system.detect_provider("none") == "none"
    assert init_system.detect_provider(None) == "none"  # conftest: TRIOPRINT_MACHINE_PROVIDER


async def test_the_default_runner_times_out_and_reports_missing_programs() -> None:
    # not an init system: the Python running the tests, and a program that does not exist
    echo = [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read())"]
    result = await init_system.run_command(echo, 30, b"hello")
    assert (result.returncode, result.stdout) == (0, "hello")
    result = await init_system.run_command(["/nonexistent/trioprint-x"], 30, None)
    assert result.returncode is None
    assert "trioprint-x" in result.reason()
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    with trio.fail_after(20):
        result = await init_system.run_command(hang, 0.2, None)
    assert (result.returncode, result.reason()) == (None, "timed out after 0.2 s")
