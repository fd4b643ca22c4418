"""``machine.wled.*``: the ``[wled NAME]`` strips (Moonraker 0.11's ``wled``).

Each strip is a WLED controller reached over HTTP (its JSON API: ``POST /json/state``); the
state and the JSON sent are :mod:`trioprint.domain.wled`'s. At start-up every strip is read
(``GET /json/info``) and set to its initial state, retried every 2 s for up to 2 minutes (then
a warning names the strips that never answered). Klippy's macros reach the strips through the
remote methods ``set_wled_state`` and ``set_wled`` (queued, run one after another); the
endpoints answer with the strip's info once its requests are sent. A failed request is the
strip's ``error`` and a 400 "WLED: Error ..." for the request that made it; it never ends a
task of the server. There are no notifications (Moonraker sends none either).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from ..domain import wled as dw
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from ..transport.http_client import HttpError, HttpResponse, http_json
from .power import BatchParams

log = logging.getLogger(__name__)

#: Tries of one request before the strip is in error (Moonraker: 3).
ATTEMPTS = 3
#: Seconds between two rounds of start-up tries, and how long they go on (Moonraker's).
INIT_RETRY = 2.0
INIT_TIMEOUT = 120.0
#: Remote-method requests waiting for the worker.
QUEUE_SIZE = 64

#: ``post(method, url, json_body, *, limit=...)``: :func:`http_json`.
Post = Callable[..., Awaitable[HttpResponse]]


@attrs.frozen
class StripParams:
    strip: str
    action: str | None = None
    preset: int = -1
    brightness: int = -1
    intensity: int = -1
    speed: int = -1


class _Strip:
    """A strip's state with its lock (one operation at a time)."""

    def __init__(self, opts: dw.StripOptions) -> None:
        self.state = dw.Strip(opts)
        self.lock = trio.Lock()


class Wled:
    """Moonraker's ``wled`` component."""

    name = "wled"

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, str]],
        klippy: Any = None,
        *,
        post: Post = http_json,
        warnings: list[str] | None = None,
    ) -> None:
        self._post = post
        self._warnings = warnings if warnings is not None else []
        self.strips: dict[str, _Strip] = {}
        self.initialized = trio.Event()
        #: Remote-method requests queued and not handled yet.
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()
        for name, options in sections.items():
            try:
                opts, problems = dw.strip_options(name, options)
            except dw.WledConfigError as exc:
                self._warnings.append(f"[wled {name}] {exc}; strip not loaded")
                continue
            self._warnings.extend(problems)
            self.strips[name] = _Strip(opts)
        self._send, self._receive = trio.open_memory_channel[dw.StateRequest | dw.ColorRequest](
            QUEUE_SIZE
        )
        register = getattr(klippy, "register_remote_method", None)
        if register is not None:
            register("set_wled_state", self._remote_set_wled_state)
            register("set_wled", self._remote_set_wled)

    # -- the lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._worker)
            nursery.start_soon(self._initialize)
            task_status.started()

    async def _initialize(self) -> None:
        pending = list(self.strips.values())
        deadline = trio.current_time() + INIT_TIMEOUT
        while True:
            failed = [strip for strip in pending if not await self._init_strip(strip)]
            if not failed:
                break
            if trio.current_time() + INIT_RETRY > deadline:
                names = ", ".join(strip.state.name for strip in failed)
                self._warnings.append(f"WLED strips that failed to initialize: {names}")
                break
            pending = failed
            await trio.sleep(INIT_RETRY)
        self.initialized.set()

    async def _init_strip(self, strip: _Strip) -> bool:
        async with strip.lock:
            try:
                await self._read_info(strip)
                await self._send_states(strip, strip.state.initial())
            except ApiError:
                return False
        return True

    async def _read_info(self, strip: _Strip) -> None:
        opts = strip.state.opts
        try:
            response = await self._post("GET", opts.info_url, limit=opts.timeout)
            if response.status >= 400:
                raise HttpError(f"HTTP status {response.status}")
        except HttpError as exc:
            raise self._failed(strip, str(exc)) from None
        info = _json_object(response.body)
        leds = info.get("leds")
        count = leds.get("count") if isinstance(leds, dict) else None
        log.info(
            "WLED strip %s: %s, version %s, %s LEDs",
            strip.state.name,
            info.get("name", "?"),
            info.get("ver", "?"),
            count if isinstance(count, int) else "?",
        )

    def _failed(self, strip: _Strip, reason: str) -> ApiError:
        message = f"WLED: Error {reason}"
        strip.state.error = message
        log.warning("WLED strip %s: %s", strip.state.name, reason)
        return ApiError(message, 400)

    async def _send_states(self, strip: _Strip, states: list[dw.State]) -> None:
        """POST each state to the strip's ``/json/state`` (the strip's lock is held)."""
        opts = strip.state.opts
        for state in states:
            reason = ""
            for _ in range(ATTEMPTS):
                try:
                    response = await self._post("POST", opts.state_url, state, limit=opts.timeout)
                except HttpError as exc:
                    reason = str(exc)
                    continue
                if response.status < 400:
                    strip.state.error = None
                    break
                reason = f"HTTP status {response.status}"
            else:
                raise self._failed(strip, reason)

    async def _worker(self) -> None:
        async for request in self._receive:
            try:
                await self._handle(request)
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    async def _handle(self, request: dw.StateRequest | dw.ColorRequest) -> None:
        strip = self.strips.get(request.strip)
        if strip is None:
            log.info("WLED: unknown strip %r", request.strip)
            return
        try:
            async with strip.lock:
                await self._send_states(strip, request.apply(strip.state))
        except ValueError as exc:
            log.info("WLED strip %s: %s", request.strip, exc)
        except ApiError:
            pass  # logged, and the strip's error

    async def wait_idle(self) -> None:
        """Until every queued remote-method request has been handled."""
        await self._idle.wait()

    def _queue(self, request: dw.StateRequest | dw.ColorRequest) -> None:
        try:
            self._send.send_nowait(request)
            self._pending += 1
            self._idle = trio.Event()
        except trio.WouldBlock:
            log.warning("WLED: too many queued requests; one for %s dropped", request.strip)

    def _remote_set_wled_state(self, **params: Any) -> None:
        try:
            self._queue(dw.state_request(params))
        except ValueError as exc:
            log.info("WLED: set_wled_state: %s", exc)

    def _remote_set_wled(self, **params: Any) -> None:
        try:
            self._queue(dw.color_request(params))
        except ValueError as exc:
            log.info("WLED: set_wled: %s", exc)

    # -- the requests ------------------------------------------------------------------------

    async def process(
        self,
        strip: _Strip,
        action: str,
        preset: int = -1,
        brightness: int = -1,
        intensity: int = -1,
        speed: int = -1,
    ) -> dict[str, Any]:
        """``status``, ``on``, ``off``, ``toggle`` or ``control``: the strip's info after it."""
        if action == "status":
            return strip.state.info()
        async with strip.lock:
            action = dw.wanted(action, strip.state)
            states: list[dw.State] = []
            if action == "off":
                states = strip.state.turn_off()
            else:
                if action == "on":
                    states = strip.state.turn_on(preset)
                if brightness != -1 or intensity != -1 or speed != -1:
                    states += strip.state.control(brightness, intensity, speed)
            await self._send_states(strip, states)
            return strip.state.info()

    # -- the endpoints -----------------------------------------------------------------------

    @endpoint("/machine/wled/strips", "GET")
    async def list_strips(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"strips": {name: strip.state.info() for name, strip in self.strips.items()}}

    @endpoint("/machine/wled/strip", "GET", "POST", params=StripParams)
    async def strip(self, call: Call[StripParams]) -> dict[str, Any]:
        p = call.params
        strip = self.strips.get(p.strip)
        if strip is None:
            raise ApiError(f"No valid strip named {p.strip}")
        if call.verb == "GET":
            return {p.strip: strip.state.info()}
        if p.action is None:
            raise ApiError("No data for argument: action")
        action = p.action.lower()
        if action not in dw.ACTIONS:
            raise ApiError(f"Invalid requested action '{action}'")
        info = await self.process(strip, action, p.preset, p.brightness, p.intensity, p.speed)
        return {p.strip: info}

    async def _batch(self, names: tuple[str, ...], action: str) -> dict[str, Any]:
        if not names:
            raise ApiError("No arguments provided")
        result: dict[str, Any] = {}
        for name in names:
            strip = self.strips.get(name)
            result[name] = (
                await self.process(strip, action)
                if strip is not None
                else {"error": "strip_not_found"}
            )
        return result

    @endpoint("/machine/wled/status", "GET", params=BatchParams)
    async def status(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "status")

    @endpoint("/machine/wled/on", "POST", params=BatchParams)
    async def on(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "on")

    @endpoint("/machine/wled/off", "POST", params=BatchParams)
    async def off(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "off")

    @endpoint("/machine/wled/toggle", "POST", params=BatchParams)
    async def toggle(self, call: Call[BatchParams]) -> dict[str, Any]:
        return await self._batch(call.params.names, "toggle")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
