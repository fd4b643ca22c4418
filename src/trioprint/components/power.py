"""``machine.device_power.*``: the ``[power NAME]`` devices (Moonraker 0.11's ``power``).

Each device's family is in :mod:`.power_devices`; this component owns the devices, serves
the endpoints and applies the options every family shares:

- ``locked_while_printing``: while klippy prints (or has paused) a print, a request to change
  the device is refused (409, Moonraker's message); klippy's own ``set_device_power`` remote
  method may force it, as in Moonraker;
- ``on_when_job_queued``: turned on when jobs are added to the job queue;
- ``restart_klipper_when_powered`` / ``restart_delay``: once on, and once klippy has started
  (not ready), a ``FIRMWARE_RESTART`` after the delay;
- ``off_when_shutdown`` / ``off_when_shutdown_delay``: turned off when klippy shuts down
  (if it is still shut down after the delay);
- ``initial_state``: set once the device's state is first known;
- ``bound_services``: each started when the device turns on, stopped when it turns off
  (through the machine component's init system, only services it lists as available);
- ``poll_interval``, ``timer``, ``restrict_action_processing`` as Moonraker's.

Every change is announced as ``notify_power_changed`` with the device's info. A device's
failure is its state ``error`` and a logged line; it never ends a task of the server.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
import trio

from ..bus import Bus
from ..domain import power as dp
from ..domain import power_mqtt as pm
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from ..transport.http_client import http_request
from .init_system import Runner, run_command
from .klippy import KlippyStateChanged
from .power_devices import (
    Device,
    Fetch,
    GpioDevice,
    GpioOpener,
    HttpDevice,
    KlipperDevice,
    KlippyLink,
    MqttClient,
    MqttDevice,
    UhubctlDevice,
    open_gpiod_line,
)

log = logging.getLogger(__name__)

#: Seconds between two tries to read a device's first state (Moonraker: 5).
INIT_RETRY = 5.0
#: Requests waiting for the worker (from klippy's remote method and the job queue).
QUEUE_SIZE = 64

#: ``service_action(action, name)``: start or stop a bound service.
ServiceAction = Callable[[str, str], Awaitable[None]]


def machine_service_action(machine: Any) -> ServiceAction:
    """Start or stop a bound service through the machine component's init system, only one
    it lists as available (its states are polled there and announced as they change)."""

    async def act(action: str, name: str) -> None:
        if name not in machine.services:
            raise ApiError(f"Bound Service {name} is not available")
        await machine.init.service_action(action, name)

    return act


class Broadcaster(Protocol):
    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


@attrs.frozen
class DeviceParams:
    device: str
    action: str | None = None


#: Arguments that are never device names (credentials, cache busters).
_NOT_DEVICES = frozenset({"_", "token", "access_token", "connection_id"})


@attrs.frozen
class BatchParams:
    """Device names as the arguments' keys (``?printer&lights``, ``{"printer": null}``)."""

    names: tuple[str, ...]

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> BatchParams:
        return cls(tuple(str(name) for name in raw if name not in _NOT_DEVICES))


class Power:
    """Moonraker's ``power`` component."""

    name = "power"

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, str]],
        klippy: KlippyLink,
        websockets: Broadcaster,
        bus: Bus,
        *,
        is_printing: Callable[[], bool],
        service_action: ServiceAction | None = None,
        available_services: Callable[[], list[str]] = list,
        own_service: Callable[[], str] = lambda: "trioprint",
        fetch: Fetch = http_request,
        runner: Runner = run_command,
        gpio_opener: GpioOpener = open_gpiod_line,
        which: Callable[[str], str | None] = shutil.which,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        mqtt: MqttClient | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self._klippy = klippy
        self._websockets = websockets
        self._bus = bus
        self._is_printing = is_printing
        self._service_action = service_action
        self._available_services = available_services
        self._own_service = own_service
        self._warnings = warnings if warnings is not None else []
        self._sleep = sleep
        self._mqtt = mqtt
        self.devices: dict[str, Device] = {}
        self._nursery: trio.Nursery | None = None
        self._timers: dict[str, trio.CancelScope] = {}
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, bool]](QUEUE_SIZE)
        for name, options in sections.items():
            try:
                self.devices[name] = self._make(name, options, fetch, runner, gpio_opener, which)
            except dp.PowerConfigError as exc:
                self._warnings.append(f"[power {name}]: {exc}; device not loaded")
        klippy_methods = getattr(klippy, "register_remote_method", None)
        if klippy_methods is not None:
            klippy_methods("set_device_power", self._remote_set_device_power)

    def _make(
        self,
        name: str,
        options: Mapping[str, str],
        fetch: Fetch,
        runner: Runner,
        opener: GpioOpener,
        which: Callable[[str], str | None],
    ) -> Device:
        opts = dp.device_options(name, options)
        if opts.type == "klipper_device":
            return KlipperDevice(opts, dp.klipper_spec(options), self._klippy, self._outside)
        if opts.type == "gpio":
            return GpioDevice(opts, dp.parse_gpio_pin(dp.read_str(options, "pin")), opener)
        if opts.type == "uhubctl":
            if which("uhubctl") is None:
                raise dp.PowerConfigError("'uhubctl' is not installed (not on the PATH)")
            return UhubctlDevice(opts, dp.uhubctl_spec(options), runner)
        if opts.type == "mqtt":
            spec = pm.mqtt_spec(options)
            if self._mqtt is None:
                raise dp.PowerConfigError("type mqtt needs an [mqtt] section")
            try:
                return MqttDevice(opts, spec, self._mqtt, self._outside)
            except ApiError as exc:  # a topic the broker would refuse
                raise dp.PowerConfigError(exc.message) from None
        return HttpDevice(opts, dp.http_spec(opts.type, options), fetch, self._sleep)

    # -- the lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._check_bound_services()
        try:
            with self._bus.subscribe(KlippyStateChanged, capacity=64, name="power") as events:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for device in self.devices.values():
                        nursery.start_soon(self._guarded, self._init_device, device)
                    nursery.start_soon(self._worker)
                    if self._klippy.state == "ready":  # ready before this subscribed
                        nursery.start_soon(self._guarded, self._klippy_ready)
                    task_status.started()
                    async for event in events:
                        assert isinstance(event, KlippyStateChanged)
                        self._klippy_state_changed(event)
        finally:
            self._nursery = None
            for device in self.devices.values():
                device.close()

    async def _guarded(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``fn``; a failure is logged and never ends the component."""
        try:
            await fn(*args)
        except ApiError as exc:
            log.warning("power: %s", exc.message)
        except Exception:
            log.exception("power: %s failed", getattr(fn, "__name__", fn))

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._guarded, fn, *args)

    def _check_bound_services(self) -> None:
        available = self._available_services()
        own = self._own_service()
        for device in self.devices.values():
            kept = []
            for svc in device.opts.bound_services:
                if svc in (own, "trioprint", "moonraker"):
                    self._warnings.append(
                        f"[power {device.name}]: cannot bind to the server's own service {svc}"
                    )
                elif self._service_action is None or svc not in available:
                    self._warnings.append(
                        f"[power {device.name}]: bound service {svc} is not available; ignored"
                    )
                else:
                    kept.append(svc)
            if tuple(kept) != device.opts.bound_services:
                device.opts = attrs.evolve(device.opts, bound_services=tuple(kept))

    async def _init_device(self, device: Device) -> None:
        if isinstance(device, KlipperDevice):
            return  # read when klippy is ready
        async with device.lock:
            while not await device.first_state():  # noqa: ASYNC110 (a retry, not a wait)
                await trio.sleep(INIT_RETRY)
            device.last_update = trio.current_time()
            await self._set_initial_state(device)
            self._notify(device)
            device.initialized.set()
        if device.polls:
            self._spawn(self._poll, device)

    async def _set_initial_state(self, device: Device) -> None:
        """``initial_state`` once the state is known (the device's lock is held)."""
        initial = device.opts.initial_state
        if initial is None or device.state not in ("on", "off"):
            return
        wanted = "on" if initial else "off"
        try:
            if wanted != device.state:
                log.info("power device %s: initial state %s", device.name, wanted)
                await device.set_power(wanted)
            await self._bound_services(device)
        except ApiError as exc:
            log.warning("power device %s: initial state not set: %s", device.name, exc.message)

    async def _poll(self, device: Device) -> None:
        interval = device.opts.poll_interval
        assert interval is not None
        while True:
            since = trio.current_time() - device.last_update
            if since >= interval:
                with contextlib.suppress(ApiError):
                    await self.process_request(device, "status")
                since = 0.0
            await trio.sleep(interval - since)

    async def _worker(self) -> None:
        async for name, request, force in self._receive:
            device = self.devices.get(name)
            if device is None:
                log.info("power: no device %r", name)
                continue
            try:
                await self.process_request(device, request, force=force)
            except ApiError as exc:
                log.warning("power device %s: %s: %s", name, request, exc.message)

    def set_device_power(self, name: str, state: bool | str, *, force: bool = False) -> None:
        """Queue a request for ``name`` (``True``/``"on"``, ``False``/``"off"``, ``"toggle"``)."""
        if isinstance(state, bool):
            request = "on" if state else "off"
        else:
            request = str(state).lower()
            request = {"true": "on", "false": "off"}.get(request, request)
        if request not in dp.ACTIONS:
            log.info("power: invalid state %r for %s", state, name)
            return
        try:
            self._send.send_nowait((name, request, force))
        except trio.WouldBlock:
            log.warning("power: too many queued requests; %s %s dropped", name, request)

    def _remote_set_device_power(
        self, device: str = "", state: bool | str = "", force: bool = False, **_: Any
    ) -> None:
        self.set_device_power(device, state, force=bool(force))

    def jobs_added(self, queue_info: Mapping[str, Any]) -> None:
        """The job queue's ``jobs_added``: turn on the devices with ``on_when_job_queued``."""
        queue = queue_info.get("updated_queue") or []
        filename = queue[0].get("filename", "unknown") if queue else "unknown"
        for device in self.devices.values():
            if device.opts.on_when_job_queued:
                log.info("power device %s: job %r queued, powering on", device.name, filename)
                self.set_device_power(device.name, "on")

    # -- klippy's states ---------------------------------------------------------------------

    def _klippy_state_changed(self, event: KlippyStateChanged) -> None:
        if event.state == "ready":
            self._spawn(self._klippy_ready)
        elif event.state == "disconnected":
            for device in self.devices.values():
                if isinstance(device, KlipperDevice):
                    device.disconnected()
                self._cancel_timer(device.name)
        elif event.state == "shutdown":
            for device in self.devices.values():
                if isinstance(device, KlipperDevice):
                    device.shutdown()
                    self._cancel_timer(device.name)
                    self._notify(device)
                elif device.opts.off_when_shutdown:
                    self._spawn(self._off_after_shutdown, device)
        if event.state in ("ready", "shutdown", "error") and event.previous in (
            "startup",
            "disconnected",
        ):
            for device in self.devices.values():
                self._schedule_firmware_restart(device, event.state)

    async def _klippy_ready(self) -> None:
        for device in self.devices.values():
            if not isinstance(device, KlipperDevice):
                continue
            async with device.lock:
                if device.ready():
                    await self._set_initial_state(device)
                self._notify(device)
                device.initialized.set()

    async def _off_after_shutdown(self, device: Device) -> None:
        if device.opts.off_when_shutdown_delay:
            await trio.sleep(device.opts.off_when_shutdown_delay)
        if self._klippy.state != "shutdown":
            return
        log.info("power device %s: klippy shut down, powering off", device.name)
        self.set_device_power(device.name, "off")

    def _schedule_firmware_restart(self, device: Device, state: str) -> None:
        if not device.need_restart:
            return
        device.need_restart = False
        if state == "ready":
            log.info("power device %s: klippy is ready, no FIRMWARE_RESTART", device.name)
            return
        self._spawn(self._firmware_restart, device)

    async def _firmware_restart(self, device: Device) -> None:
        await trio.sleep(device.opts.restart_delay)
        log.info("power device %s: FIRMWARE_RESTART", device.name)
        await self._klippy.run_gcode("FIRMWARE_RESTART")

    # -- a change --------------------------------------------------------------------------

    def _notify(self, device: Device) -> None:
        self._websockets.broadcast("notify_power_changed", [device.info()])

    def _outside(self, device: Device) -> None:
        """A change the device reported by itself (a klipper pin set by a macro)."""
        if device.opts.restrict_action_processing:
            self._notify(device)
        else:
            self._spawn(self._power_changed, device)

    async def _power_changed(self, device: Device) -> None:
        self._notify(device)
        await self._bound_services(device)
        if device.state == "on" and device.opts.restart_klipper_when_powered:
            device.need_restart = True
            if self._klippy.state in ("ready", "shutdown", "error"):
                self._schedule_firmware_restart(device, self._klippy.state)
        self._start_timer(device)

    async def _bound_services(self, device: Device) -> None:
        if not device.opts.bound_services or device.state not in ("on", "off"):
            return
        assert self._service_action is not None
        action = "start" if device.state == "on" else "stop"
        for svc in device.opts.bound_services:
            log.info("power device %s: %s bound service %s", device.name, action, svc)
            try:
                await self._service_action(action, svc)
            except ApiError as exc:
                log.warning("power device %s: %s %s: %s", device.name, action, svc, exc.message)
            except Exception:
                log.exception("power device %s: %s %s failed", device.name, action, svc)

    def _start_timer(self, device: Device) -> None:
        self._cancel_timer(device.name)
        if device.state == "on" and device.opts.timer is not None and self._nursery is not None:
            scope = trio.CancelScope()
            self._timers[device.name] = scope
            self._spawn(self._timer, device, scope)

    async def _timer(self, device: Device, scope: trio.CancelScope) -> None:
        assert device.opts.timer is not None
        with scope:
            await trio.sleep(device.opts.timer)
            self._timers.pop(device.name, None)
            self.set_device_power(device.name, "off")

    def _cancel_timer(self, name: str) -> None:
        scope = self._timers.pop(name, None)
        if scope is not None:
            scope.cancel()

    async def process_request(self, device: Device, request: str, *, force: bool = False) -> str:
        """``status``, ``on``, ``off`` or ``toggle``: the device's state afterwards."""
        if device.state == "init" and device.lock.locked():
            return device.state  # initializing: never wait behind it
        async with device.lock:
            try:
                before = device.state
                await device.refresh()
                current = device.state
                request = dp.wanted_state(request, current)
                if request in ("on", "off"):
                    if request == current:
                        if before != current:
                            await self._changed_to(device)
                        return current
                    if not force and device.opts.locked_while_printing and self._is_printing():
                        raise ApiError(
                            f"Unable to change power for {device.name} while printing", 409
                        )
                    if isinstance(device, (GpioDevice, KlipperDevice)):
                        self._cancel_timer(device.name)
                    try:
                        await device.set_power(request)
                    except ApiError:
                        if device.state != before:
                            self._notify(device)
                        raise
                    await self._power_changed(device)
                    return device.state
                if request != "status":
                    raise ApiError(f"Unsupported power request: {request}")
                if before != current:
                    await self._changed_to(device)
                return current
            finally:
                device.last_update = trio.current_time()

    async def _changed_to(self, device: Device) -> None:
        if device.opts.restrict_action_processing:
            self._notify(device)
        else:
            await self._power_changed(device)

    # -- the endpoints -----------------------------------------------------------------------

    @endpoint("/machine/device_power/devices", "GET")
    async def list_devices(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"devices": [device.info() for device in self.devices.values()]}

    @endpoint("/machine/device_power/device", "GET", "POST", params=DeviceParams)
    async def device(self, call: Call[DeviceParams]) -> dict[str, Any]:
        name = call.params.device
        device = self.devices.get(name)
        if device is None:
            raise ApiError(f"No valid device named {name}")
        if call.verb == "GET":
            action = "status"
        else:
            if call.params.action is None:
                raise ApiError("No data for argument: action")
            action = call.params.action.lower()
            if action not in dp.ACTIONS:
                raise ApiError(f"Invalid requested action '{action}'")
        return {name: await self.process_request(device, action)}

    async def _batch(self, names: tuple[str, ...], request: str) -> dict[str, Any]:
        if not names:
            raise ApiError("No arguments provided")
        result: dict[str, Any] = {}
        for name in names:
            device = self.devices.get(name)
            result[name] = (
                await self.process_request(device, request)
                if device is not None
                else "device_not_found"
            )
        return result

    @endpoint("/machine/device_power/status", "GET", params=BatchParams)
    async def status(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "status")

    @endpoint("/machine/device_power/on", "POST", params=BatchParams)
    async def on(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "on")

    @endpoint("/machine/device_power/off", "POST", params=BatchParams)
    async def off(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "off")
