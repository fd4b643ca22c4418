"""The power devices' families: how each one reads and changes its state.

Every device has a state (``init``, ``on``, ``off``, ``error``) and a lock held for one request
at a time. :meth:`Device.refresh` reads the state and never raises (a failure is ``error``);
:meth:`Device.set_power` changes it and raises an :class:`~trioprint.errors.ApiError` on failure
(the state is then ``error``). The requests and answers of each family are pure
(:mod:`trioprint.domain.power`); here they are sent: HTTP through
:mod:`trioprint.transport.http_client`, ``uhubctl`` through an injectable runner, a GPIO line
through an injectable opener (libgpiod's ``gpiod`` by default), ``klipper_device`` through the
printer link, ``mqtt`` through the ``[mqtt]`` component (:mod:`trioprint.domain.power_mqtt`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from ..domain import power as dp
from ..domain import power_mqtt as pm
from ..errors import ApiError
from ..transport.http_client import HttpError, HttpResponse, http_request
from .init_system import Runner, run_command

log = logging.getLogger(__name__)

#: Seconds one HTTP request (or one uhubctl run) may take.
REQUEST_TIMEOUT = 10.0
#: Seconds a klipper_device waits for klippy to report the pin's new value.
KLIPPER_UPDATE_TIMEOUT = 1.0

Fetch = Callable[..., Awaitable[HttpResponse]]


class GpioLine(Protocol):
    """One requested output line."""

    def set(self, active: bool) -> None: ...

    def close(self) -> None: ...


#: ``opener(pin, initially_active)``: the line requested as an output (raises OSError, ...).
GpioOpener = Callable[[dp.GpioPin, bool], GpioLine]


class _GpiodLine:
    def __init__(self, pin: dp.GpioPin, active: bool) -> None:
        import gpiod  # libgpiod's bindings, only needed for a gpio device
        from gpiod.line import Direction, Value

        self._value = Value
        self._line = pin.line
        settings = gpiod.LineSettings(
            direction=Direction.OUTPUT,
            active_low=pin.inverted,
            output_value=Value.ACTIVE if active else Value.INACTIVE,
        )
        self._request = gpiod.request_lines(
            pin.chip_path, consumer="trioprint", config={pin.line: settings}
        )

    def set(self, active: bool) -> None:
        self._request.set_value(self._line, self._value.ACTIVE if active else self._value.INACTIVE)

    def close(self) -> None:
        self._request.release()


def open_gpiod_line(pin: dp.GpioPin, active: bool) -> GpioLine:
    """The default :data:`GpioOpener`: the kernel's GPIO character device through ``gpiod``."""
    try:
        return _GpiodLine(pin, active)
    except ImportError:
        raise ApiError(
            "gpio power devices need libgpiod's Python bindings: pip install gpiod", 500
        ) from None


class Device:
    """What every family shares; a family overrides :meth:`refresh` and :meth:`set_power`."""

    def __init__(self, opts: dp.DeviceOptions) -> None:
        self.opts = opts
        self.name = opts.name
        self.state = "init"
        self.lock = trio.Lock()
        self.last_update = 0.0
        #: Set once its state was first read (or its reading given up).
        self.initialized = trio.Event()
        #: True while a FIRMWARE_RESTART is due once klippy has started.
        self.need_restart = False
        #: Polls its state every ``poll_interval`` seconds.
        self.polls = opts.poll_interval is not None

    def info(self) -> dict[str, Any]:
        return dp.device_info(self.opts, self.state)

    async def first_state(self) -> bool:
        """Read the state once at start; False: try again later (the state stays ``init``,
        so that requests meanwhile answer at once instead of waiting)."""
        await self.refresh()
        if self.state in ("on", "off"):
            return True
        self.state = "init"
        return False

    async def refresh(self) -> None:
        raise NotImplementedError

    async def set_power(self, state: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the device holds (a GPIO line)."""

    def _failed(self, action: str, reason: object) -> ApiError:
        self.state = "error"
        message = f"Error Setting Device Status: {self.name} to {action}"
        log.warning("power device %s: %s failed: %s", self.name, action, reason)
        return ApiError(message, 500)


class HttpDevice(Device):
    """tasmota, shelly, homeassistant, hue, http: one request per command."""

    def __init__(
        self,
        opts: dp.DeviceOptions,
        spec: dp.HttpSpec,
        fetch: Fetch = http_request,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        super().__init__(opts)
        self.spec = spec
        self._fetch = fetch
        self._sleep = sleep

    async def _send(self, command: str) -> str:
        call = self.spec.request(command)
        try:
            response = await self._fetch(
                call.method, call.url, call.headers, call.body, limit=REQUEST_TIMEOUT
            )
        except HttpError as exc:
            raise dp.PowerResponseError(str(exc)) from None
        answer = dp.HttpAnswer(response.status, response.body, response.headers, response.url)
        return self.spec.parse(command, answer)

    async def refresh(self) -> None:
        try:
            state = await self._send("status")
        except dp.PowerResponseError as exc:
            if self.state != "error":
                log.warning("power device %s: status unknown: %s", self.name, exc)
            self.state = "error"
            return
        self.state = state

    async def set_power(self, state: str) -> None:
        try:
            new = await self._send(state)
            if self.spec.status_after_set:
                delay = getattr(self.spec, "status_delay", 0.0)
                if delay:
                    await self._sleep(delay)
                new = await self._send("status")
        except dp.PowerResponseError as exc:
            raise self._failed(state, exc) from None
        self.state = new


class UhubctlDevice(Device):
    """A USB hub's port through ``uhubctl`` (run without a shell, with a timeout)."""

    def __init__(
        self, opts: dp.DeviceOptions, spec: dp.UhubctlSpec, runner: Runner = run_command
    ) -> None:
        super().__init__(opts)
        self.spec = spec
        self._runner = runner
        self.last_result: dict[str, Any] = {}

    async def _run(self, command: str) -> str:
        result = await self._runner(self.spec.argv(command), REQUEST_TIMEOUT, None)
        if not result.ok:
            raise dp.PowerResponseError(f"uhubctl: {result.reason()}")
        self.last_result = self.spec.parse(command, result.stdout)
        return str(self.last_result["state"])

    async def refresh(self) -> None:
        try:
            self.state = await self._run("status")
        except dp.PowerResponseError as exc:
            if self.state != "error":
                log.warning("power device %s: %s", self.name, exc)
            self.state = "error"

    async def set_power(self, state: str) -> None:
        try:
            self.state = await self._run(state)
        except dp.PowerResponseError as exc:
            raise self._failed(state, exc) from None


class GpioDevice(Device):
    """An output line of a GPIO chip; its state is what was last written."""

    def __init__(self, opts: dp.DeviceOptions, pin: dp.GpioPin, opener: GpioOpener) -> None:
        super().__init__(opts)
        self.pin = pin
        self._opener = opener
        self._line: GpioLine | None = None

    async def first_state(self) -> bool:
        initial = bool(self.opts.initial_state)
        try:
            self._line = self._opener(self.pin, initial)
        except ApiError as exc:
            log.warning("power device %s: %s", self.name, exc.message)
            self.state = "error"
            return True  # nothing more to try
        except Exception as exc:
            log.warning("power device %s: cannot request %s: %s", self.name, self.pin, exc)
            self.state = "error"
            return True
        self.state = "on" if initial else "off"
        return True

    async def refresh(self) -> None:
        return None  # an output's state is what was written

    async def set_power(self, state: str) -> None:
        if self._line is None:
            raise self._failed(state, f"{self.pin.full_name} is not requested")
        try:
            self._line.set(state == "on")
        except Exception as exc:
            raise self._failed(state, exc) from None
        self.state = state

    def close(self) -> None:
        if self._line is not None:
            line, self._line = self._line, None
            try:
                line.close()
            except Exception:
                log.exception("power device %s: releasing the line failed", self.name)


class KlippyLink(Protocol):
    state: str

    @property
    def cache(self) -> Any: ...

    def set_internal_subscription(
        self,
        name: str,
        spec: dict[str, list[str] | None],
        callback: Callable[[dict[str, dict[str, Any]], float], None],
    ) -> None: ...

    async def run_gcode(self, script: str) -> Any: ...


class KlipperDevice(Device):
    """An ``output_pin`` or a ``gcode_macro`` of the printer: changed with ``SET_PIN`` (or the
    macro), its state the object's ``value`` from the printer link's subscription."""

    def __init__(
        self,
        opts: dp.DeviceOptions,
        spec: dp.KlipperSpec,
        klippy: KlippyLink,
        changed_outside: Callable[[Device], None],
    ) -> None:
        super().__init__(opts)
        self.spec = spec
        self._klippy = klippy
        self._changed_outside = changed_outside
        self.is_shutdown = False
        self._update: trio.Event | None = None
        klippy.set_internal_subscription(
            f"power {opts.name}", {spec.object_name: None}, self._on_status
        )

    def info(self) -> dict[str, Any]:
        return dp.device_info(self.opts, self.state, is_shutdown=self.is_shutdown)

    def _on_status(self, diff: dict[str, dict[str, Any]], eventtime: float) -> None:
        state = self.spec.state_from(diff)
        if state is None:
            return
        previous, self.state = self.state, state
        self.last_update = trio.current_time()
        if self._update is not None:
            self._update.set()
        if previous not in (state, "init") and not self.lock.locked():
            self._changed_outside(self)

    async def first_state(self) -> bool:
        return False  # read when klippy is ready (see ready)

    def ready(self) -> bool:
        """Klippy is ready: the state from the subscribed object; False if it has none."""
        self.is_shutdown = False
        state = self.spec.state_from(self._klippy.cache.state)
        if state is None:
            log.warning(
                "power device %s: klippy has no %r with a value", self.name, self.spec.object_name
            )
            self.state = "error"
            return False
        self.state = state
        return True

    def disconnected(self) -> None:
        self.is_shutdown = False
        self.state = "init"

    def shutdown(self) -> None:
        self.is_shutdown = True
        self.state = "error"

    async def refresh(self) -> None:
        if self.is_shutdown or self.state in ("on", "off", "init"):
            return
        if self._klippy.state == "ready":
            state = self.spec.state_from(self._klippy.cache.state)
            self.state = state or "error"

    async def set_power(self, state: str) -> None:
        if self.is_shutdown:
            raise ApiError(
                f"Power Device {self.name}: Cannot set power for device when Klipper is shutdown"
            )
        self._update = trio.Event()
        try:
            await self._klippy.run_gcode(self.spec.script(state))
            with trio.move_on_after(KLIPPER_UPDATE_TIMEOUT):
                await self._update.wait()
            if not self._update.is_set():
                self.state = "error"
                raise ApiError(f"Power device {self.name}: Timeout waiting for device state update")
        except ApiError as exc:
            if exc.message.startswith(f"Power device {self.name}: Timeout"):
                raise
            raise self._failed(state, exc.message) from None
        finally:
            self._update = None


class MqttClient(Protocol):
    """What an MQTT device needs of the ``[mqtt]`` component (components/mqtt.py)."""

    @property
    def connected(self) -> bool: ...

    async def wait_connected(self) -> None: ...

    def subscribe(
        self, topic: str, callback: Callable[[bytes], None], qos: int | None = None
    ) -> Any: ...

    def unsubscribe(self, handle: Any) -> None: ...

    def publish(
        self, topic: str, payload: Any = None, qos: int | None = None, retain: bool = False
    ) -> Any: ...


class MqttDevice(Device):
    """A device behind an MQTT broker: a command published on ``command_topic``, its state
    every message on ``state_topic`` (a change while no request runs is the device's own)."""

    def __init__(
        self,
        opts: dp.DeviceOptions,
        spec: pm.MqttPowerSpec,
        mqtt: MqttClient,
        changed_outside: Callable[[Device], None],
    ) -> None:
        super().__init__(opts)
        self.spec = spec
        self._mqtt = mqtt
        self._changed_outside = changed_outside
        self._last_request = ""
        self._responses = 0
        self._update: trio.Event | None = None
        self._handle: Any = mqtt.subscribe(spec.state_topic, self._on_state, spec.qos)

    def _on_state(self, payload: bytes) -> None:
        self._responses += 1
        try:
            state = self.spec.state(payload, self._last_request, self._responses)
        except pm.StateTemplateError as exc:
            log.warning("power device %s: %s", self.name, exc)
            state = "error"
        if state == pm.DISCARD:
            return
        previous, self.state = self.state, state
        self.last_update = trio.current_time()
        if self._update is not None:
            self._update.set()
        elif previous not in (state, "init") and not self.lock.locked():
            log.info("power device %s: now %s (reported by the device)", self.name, state)
            self._changed_outside(self)

    async def _wait_for_state(
        self, request: str, query: bool, command: tuple[str, bool] | None = None
    ) -> bool:
        """Publish ``command`` (its payload and retain flag) and a query (when it has a topic
        and ``query``), then wait up to ``state_timeout`` for a state message; False if none
        came."""
        update = self._update = trio.Event()
        self._last_request = request
        self._responses = 0
        try:
            if command is not None:
                payload, retain = command
                self._mqtt.publish(self.spec.command_topic, payload, self.spec.qos, retain)
            if query and self.spec.query_topic is not None:
                self._mqtt.publish(self.spec.query_topic, self.spec.query(), self.spec.qos)
            with trio.move_on_after(self.spec.state_timeout):
                await update.wait()
            return update.is_set()
        finally:
            self._update = None
            self._last_request = ""
            self._responses = 0

    async def first_state(self) -> bool:
        if self.state in ("on", "off"):
            return True  # a retained state came with the subscription
        await self._mqtt.wait_connected()
        try:
            got = await self._wait_for_state("", query=True)
        except dp.PowerConfigError as exc:  # the query's template
            log.warning("power device %s: %s", self.name, exc)
            self.state = "error"
            return True
        if got and self.state in ("on", "off"):
            return True
        if self.spec.query_topic is None:
            # nothing to ask: a device that keeps its state retained has answered by now
            log.warning(
                "power device %s: no state on %s within %g s",
                self.name,
                self.spec.state_topic,
                self.spec.state_timeout,
            )
            self.state = "error"
            return True
        self.state = "init"
        return False

    async def refresh(self) -> None:
        if not self._mqtt.connected:
            if self.state != "error":
                log.warning("power device %s: not connected to the MQTT broker", self.name)
            self.state = "error"
            return
        if self.spec.query_topic is None:
            return
        if not self.spec.query_after_command and self.state in ("on", "off"):
            return
        try:
            got = await self._wait_for_state("refresh", query=True)
        except dp.PowerConfigError as exc:
            log.warning("power device %s: %s", self.name, exc)
            got = False
        if not got:
            self.state = "error"

    async def set_power(self, state: str) -> None:
        if not self._mqtt.connected:
            raise ApiError(f"MQTT Power Device {self.name}: MQTT Not Connected", 503)
        try:
            payload = self.spec.command(state)
        except dp.PowerConfigError as exc:
            raise self._failed(state, exc) from None
        try:
            got = await self._wait_for_state(
                f"power_{state}",
                query=self.spec.query_after_command,
                command=(payload, self.spec.retain_command_state),
            )
        except (ApiError, dp.PowerConfigError) as exc:
            raise self._failed(state, getattr(exc, "message", exc)) from None
        if not got:
            self.state = "error"
            message = (
                f"MQTT Power Device {self.name}: no state on {self.spec.state_topic} "
                f"within {self.spec.state_timeout:g} s after '{state}'"
            )
            log.warning("power device %s: %s", self.name, message)
            raise ApiError(message, 500)
        if self.state not in ("on", "off"):
            raise self._failed(state, "the state message was not understood")

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._mqtt.unsubscribe(handle)
