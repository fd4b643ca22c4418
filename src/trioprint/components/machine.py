"""``machine.*``: system info, proc stats and the 1 Hz heartbeat; the host's services, power,
sudo and peripherals.

The proc-stat notification doubles as the websocket heartbeat: Mainsail drops a socket that
hears nothing for 10 s. The /proc figures and the device scans are read in worker threads, so a
slow filesystem never blocks the event loop. Services and power go through an
:class:`~.init_system.InitSystem` (``systemctl``, or none), whose states are polled every 2 s
and announced as ``notify_service_state_changed``.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..bus import Notify
from ..domain import host, procstats
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from . import init_system, peripherals

if TYPE_CHECKING:
    from ..app import Instance

log = logging.getLogger(__name__)

#: Seconds between two samples (and two heartbeats).
INTERVAL = 1.0
#: Seconds between two polls of the services' states (Moonraker: every other proc sample).
SERVICE_INTERVAL = 2.0
#: Seconds start-up waits for the service list before serving without it.
DETECT_TIMEOUT = 5.0
#: The name trioprint's own service has when /proc/self/cgroup names none.
OWN_SERVICE = "trioprint"


async def read_sources_in_thread() -> procstats.Sources:
    return await trio.to_thread.run_sync(procstats.read_sources)


async def read_system_info_in_thread() -> dict[str, Any]:
    return await trio.to_thread.run_sync(procstats.read_system_info)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@attrs.frozen
class ServiceParams:
    service: str


@attrs.frozen
class SudoInfoParams:
    check_access: bool = False


@attrs.frozen
class SudoPasswordParams:
    password: str


@attrs.frozen
class CanbusParams:
    interface: str = "can0"


class Machine:
    name = "machine"

    def __init__(
        self,
        instance: Instance,
        *,
        read_sources: Callable[[], Awaitable[procstats.Sources]] = read_sources_in_thread,
        read_system_info: Callable[[], Awaitable[dict[str, Any]]] = read_system_info_in_thread,
        runner: init_system.Runner = init_system.run_command,
        provider: str | None = None,
        is_root: bool | None = None,
        roots: peripherals.Roots = peripherals.HOST_ROOTS,
        v4l2_query: peripherals.V4l2Query = peripherals.query_v4l2,
        can_query: Callable[[str], Awaitable[list[dict[str, str]]]] = peripherals.query_can_uuids,
        own_unit: str | None = None,
    ) -> None:
        self._instance = instance
        self._read_sources = read_sources
        self._read_system_info = read_system_info
        self._tracker = procstats.ProcStatsTracker()
        self._system_info: dict[str, Any] | None = None
        self._uptime = 0.0
        config = instance.config
        self.sudo = init_system.Sudo(runner, is_root=is_root)
        chosen = init_system.detect_provider(provider or config.machine.provider)
        self.init: init_system.InitSystem = init_system.NoInitSystem()
        if chosen == "systemd_cli":
            action = config.machine.shutdown_action
            self.init = init_system.SystemdCli(runner, self.sudo, shutdown_action=action)
        self._asvc = config.data_dir / "moonraker.asvc"
        self.allowed: tuple[str, ...] = host.DEFAULT_ALLOWED_SERVICES
        #: The services found on the host that clients may control, with their states.
        self.services: dict[str, dict[str, str]] = {}
        self._own_unit = own_unit
        self._states_lock = trio.Lock()
        self._roots = roots
        self._v4l2_query = v4l2_query
        self._can_query = can_query
        self._devices_lock = trio.Lock()
        data = config.data_dir
        self._usb_ids = peripherals.UsbIdsCache(
            [data / name for name in peripherals.USB_IDS_CANDIDATES]
            + [Path(name) for name in peripherals.SYSTEM_USB_IDS]
        )

    @property
    def own_unit(self) -> str:
        return self._own_unit or OWN_SERVICE

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._sample()
        await self._read_allow_list()
        with trio.move_on_after(DETECT_TIMEOUT):  # the init system's answers, not the files
            await self._list_services()
        task_status.started()
        async with trio.open_nursery() as nursery:
            if self.init.provider != "none":
                nursery.start_soon(self._poll_services)
            deadline = trio.current_time()
            while True:
                deadline += INTERVAL
                await trio.sleep_until(deadline)
                payload = await self._sample()
                self._instance.bus.publish(Notify("notify_proc_stat_update", (payload,)))

    async def _sample(self) -> dict[str, Any]:
        src = await self._read_sources()
        self._uptime = procstats.parse_uptime(src.proc_uptime)
        return self._tracker.sample(
            src,
            now=time.time(),
            monotonic=trio.current_time(),
            websocket_connections=self._instance.websockets.count,
        )

    # --- services ---------------------------------------------------------------------------

    async def _detect_services(self) -> None:
        """Read the allow-list and ask the init system which allowed services exist."""
        await self._read_allow_list()
        await self._list_services()

    async def _read_allow_list(self) -> None:
        text = await trio.to_thread.run_sync(_read_text, self._asvc)
        self.allowed = (
            host.parse_allowed_services(text) if text is not None else host.DEFAULT_ALLOWED_SERVICES
        )
        if self._own_unit is None:
            cgroup = await trio.to_thread.run_sync(_read_text, Path("/proc/self/cgroup"))
            self._own_unit = host.own_unit_from_cgroup(cgroup or "")

    async def _list_services(self) -> None:
        try:
            names = await self.init.list_services()
        except ApiError as exc:
            log.warning("cannot list the host's services: %s", exc.message)
            return
        for name in names:
            if host.is_service_allowed(name, self.allowed):
                self.services.setdefault(name, dict(host.UNKNOWN_STATE))
        await self._refresh_states(notify=False)

    async def _refresh_states(self, *, notify: bool = True) -> None:
        async with self._states_lock:
            if not self.services:
                return
            try:
                states = await self.init.service_states(list(self.services))
            except ApiError as exc:
                log.warning("cannot read the services' states: %s", exc.message)
                return
            states = {name: state for name, state in states.items() if name in self.services}
            changed = host.changed_states(self.services, states)
            self.services.update(changed)
        if notify:
            for name, state in changed.items():
                self._instance.bus.publish(Notify("notify_service_state_changed", ({name: state},)))

    async def _poll_services(self) -> None:
        while True:
            await trio.sleep(SERVICE_INTERVAL)
            await self._refresh_states()

    async def _service_request(self, action: str, name: str) -> None:
        if name in (self.own_unit, OWN_SERVICE):
            if action != "restart":
                raise ApiError(f"Service action '{action}' not available for {name}")
            self._instance.request_restart()
            return
        if not host.is_service_allowed(name, self.allowed):
            raise ApiError(f"Service '{name}' not allowed")
        if name not in self.services and self.init.provider != "none":
            await self._detect_services()  # installed since start-up?
            if name not in self.services:
                raise ApiError(f"Service '{name}' not installed")
        await self.init.service_action(action, name)
        await self._refresh_states()

    @endpoint("/machine/services/restart", "POST", params=ServiceParams)
    async def service_restart(self, call: Call[ServiceParams]) -> str:
        await self._service_request("restart", call.params.service)
        return "ok"

    @endpoint("/machine/services/start", "POST", params=ServiceParams)
    async def service_start(self, call: Call[ServiceParams]) -> str:
        await self._service_request("start", call.params.service)
        return "ok"

    @endpoint("/machine/services/stop", "POST", params=ServiceParams)
    async def service_stop(self, call: Call[ServiceParams]) -> str:
        await self._service_request("stop", call.params.service)
        return "ok"

    # --- power ------------------------------------------------------------------------------

    def _print_state(self) -> str | None:
        klippy = getattr(self._instance, "klippy", None)
        if klippy is None:
            return None
        state = klippy.cache.state.get("print_stats", {}).get("state")
        return str(state) if state is not None else None

    async def _power(self, action: str) -> str:
        info = (await self._static_info())["system_info"].get("virtualization", {})
        refusal = host.power_refusal(
            action,
            print_state=self._print_state(),
            virt_type=str(info.get("virt_type", "none")),
            virt_identifier=str(info.get("virt_identifier", "none")),
        )
        if refusal is not None:
            raise ApiError(*refusal)
        await self.init.power(action)
        return "ok"

    @endpoint("/machine/reboot", "POST")
    async def reboot(self, call: Call[NoParams]) -> str:
        return await self._power("reboot")

    @endpoint("/machine/shutdown", "POST")
    async def shutdown(self, call: Call[NoParams]) -> str:
        return await self._power("shutdown")

    # --- sudo -------------------------------------------------------------------------------

    def _sudo_state(self) -> dict[str, Any]:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = str(os.getuid())
        return {"linux_user": user, "sudo_requested": False, "request_messages": []}

    @endpoint("/machine/sudo/info", "GET", params=SudoInfoParams)
    async def sudo_info(self, call: Call[SudoInfoParams]) -> dict[str, Any]:
        access = await self.sudo.check_access() if call.params.check_access else None
        return {"sudo_access": access, **self._sudo_state()}

    @endpoint("/machine/sudo/password", "POST", params=SudoPasswordParams)
    async def sudo_password(self, call: Call[SudoPasswordParams]) -> dict[str, Any]:
        self.sudo.password = call.params.password
        if not await self.sudo.check_access():
            self.sudo.password = None
            raise ApiError("Invalid password, sudo access was denied")
        return {"sudo_responses": ["Sudo password successfully set."], "is_restarting": False}

    # --- info -------------------------------------------------------------------------------

    async def _static_info(self) -> dict[str, Any]:
        if self._system_info is None:
            self._system_info = await self._read_system_info()
        return self._system_info

    @endpoint("/machine/system_info", "GET")
    async def system_info(self, call: Call[NoParams]) -> dict[str, Any]:
        info = dict((await self._static_info())["system_info"])
        info["provider"] = self.init.provider
        info["available_services"] = list(self.services)
        info["service_state"] = {name: dict(state) for name, state in self.services.items()}
        ids = dict(info.get("instance_ids", {}))
        ids["moonraker"] = self.own_unit
        info["instance_ids"] = ids
        return {"system_info": info}

    @endpoint("/machine/proc_stats", "GET")
    async def proc_stats(self, call: Call[NoParams]) -> dict[str, Any]:
        return self._tracker.proc_stats(
            system_uptime=self._uptime, websocket_connections=self._instance.websockets.count
        )

    # --- peripherals ------------------------------------------------------------------------

    @endpoint("/machine/peripherals/usb", "GET")
    async def peripherals_usb(self, call: Call[NoParams]) -> dict[str, Any]:
        def scan() -> list[dict[str, Any]]:
            return peripherals.find_usb_devices(self._roots, self._usb_ids.get())

        async with self._devices_lock:
            return {"usb_devices": await trio.to_thread.run_sync(scan)}

    @endpoint("/machine/peripherals/serial", "GET")
    async def peripherals_serial(self, call: Call[NoParams]) -> dict[str, Any]:
        async with self._devices_lock:
            found = await trio.to_thread.run_sync(peripherals.find_serial_devices, self._roots)
        return {"serial_devices": found}

    @endpoint("/machine/peripherals/video", "GET")
    async def peripherals_video(self, call: Call[NoParams]) -> dict[str, Any]:
        async with self._devices_lock:
            found = await trio.to_thread.run_sync(
                peripherals.find_video_devices, self._roots, self._v4l2_query
            )
        return {"v4l2_devices": found, "libcamera_devices": []}

    @endpoint("/machine/peripherals/canbus", "GET", params=CanbusParams)
    async def peripherals_canbus(self, call: Call[CanbusParams]) -> dict[str, Any]:
        name = call.params.interface
        if not name or len(name) > 15 or "/" in name or name in (".", "..") or "\0" in name:
            raise ApiError(f"invalid argument 'interface': not a network interface name: {name!r}")

        def look() -> tuple[bool, bool]:
            present = peripherals.can_interfaces(self._roots)
            return bool(present), name in present or peripherals.interface_exists(self._roots, name)

        async with self._devices_lock:
            any_can, exists = await trio.to_thread.run_sync(look)
            if not any_can:  # no CAN interface on this host: nothing to ask
                return {"can_uuids": []}
            if not exists:
                raise ApiError(f"Unable to bind socket to interface '{name}'", 500)
            return {"can_uuids": await self._can_query(name)}
