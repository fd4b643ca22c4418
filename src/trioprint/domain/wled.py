"""WLED strips as pure logic: ``[wled NAME]`` options, a strip's state and the JSON it sends.

A :class:`Strip` keeps what Moonraker 0.11's ``wled`` component keeps of a strip (on or off,
the preset, brightness, intensity, speed, the last error and one RGBW colour per LED of the
chain) and each of its operations answers with the states to send to WLED's JSON API
(``POST /json/state``), in order; nothing here does I/O (the component,
:mod:`trioprint.components.wled`, sends them). The rules are Moonraker's:

- ``on`` with a preset turns the preset on (brightness, intensity and speed become unknown,
  ``-1``); without one it goes back to the initial state (``initial_preset``, else the
  ``initial_red/green/blue/white`` colour on every LED);
- ``control`` (brightness 1-255, intensity and speed 0-255, the last two only with a preset)
  is ignored while the strip is off;
- ``set_color`` (klippy's ``SET_WLED``) changes one LED (``index``, from 1) or all of them; with
  ``transmit`` it sends the whole chain once after a preset or an ``off``, else only what
  changed, and twice when the strip was off (WLED needs it to light up again).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs

from . import power as dp

#: The strip families; ``serial`` (WLED over a USB serial port) is not served.
TYPES = ("http",)
#: Every option a ``[wled NAME]`` section may have.
OPTIONS = frozenset(
    {
        "type",
        "address",
        "port",
        "protocol",
        "timeout",
        "initial_preset",
        "initial_red",
        "initial_green",
        "initial_blue",
        "initial_white",
        "chain_count",
        "color_order",
        # the serial family's (warned about with the type)
        "serial",
        "baud",
    }
)
#: Requests of ``machine.wled.post_strip`` (``machine.wled.on/off/toggle`` are three of them).
ACTIONS = ("on", "off", "toggle", "control")
#: Colour channels per LED (always RGBW).
COLOR_SIZE = 4

State = dict[str, Any]


class WledConfigError(ValueError):
    """A ``[wled NAME]`` section that cannot be used (the message names the option)."""


@attrs.frozen
class StripOptions:
    name: str
    url: str
    timeout: float = 2.0
    initial_preset: int = -1
    initial_color: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.5)
    chain_count: int = 1

    @property
    def state_url(self) -> str:
        return f"{self.url}/json/state"

    @property
    def info_url(self) -> str:
        return f"{self.url}/json/info"


def strip_options(name: str, options: Mapping[str, str]) -> tuple[StripOptions, list[str]]:
    """The options of ``[wled name]`` and warnings about them (WledConfigError when unusable)."""
    warnings = [
        f"[wled {name}] {key}: unknown option, ignored" for key in options if key not in OPTIONS
    ]
    try:
        kind = dp.read_str(options, "type", "http").lower()
        if kind == "serial":
            raise WledConfigError(
                "type: serial strips are not supported by trioprint (use type: http)"
            )
        if kind not in TYPES:
            raise WledConfigError(f"type: Unsupported Strip Type: {kind}")
        if options.get("color_order") is not None:
            warnings.append(f"[wled {name}] color_order: deprecated (every strip is RGBW), ignored")
        address = dp.read_address(options, default_port=80)
        timeout = dp.read_float(options, "timeout", 2.0, above=0.0)
        preset = dp.read_int(options, "initial_preset", -1)
        color = tuple(
            _read_channel(options, f"initial_{channel}")
            for channel in ("red", "green", "blue", "white")
        )
        count = dp.read_int(options, "chain_count", 1)
    except dp.PowerConfigError as exc:
        raise WledConfigError(str(exc)) from None
    assert timeout is not None
    assert preset is not None
    assert count is not None
    if count < 1:
        raise WledConfigError(f"chain_count: expected at least 1, got {count}")
    r, g, b, w = color
    base = address.base
    if not options.get("port") and _has_port(address.address):  # ``address: host:port``
        base = f"{address.protocol}://{address.address}"
    opts = StripOptions(name, base, timeout, preset, (r, g, b, w), count)
    return opts, warnings


def _has_port(address: str) -> bool:
    try:
        return urllib.parse.urlsplit(f"//{address}").port is not None
    except ValueError:
        return False


def _read_channel(options: Mapping[str, str], key: str) -> float:
    value = dp.read_float(options, key, 0.5)
    assert value is not None
    if not 0.0 <= value <= 1.0:
        raise WledConfigError(f"{key}: expected a number from 0 to 1, got {value:g}")
    return value


def _byte(value: float) -> int:
    """A colour channel from 0.0-1.0 (clamped) to 0-255."""
    return int(min(max(value, 0.0), 1.0) * 255.0 + 0.5)


class Strip:
    """One strip's state; each operation returns the WLED states to send, in order."""

    def __init__(self, opts: StripOptions) -> None:
        self.opts = opts
        self.name = opts.name
        self.on = False
        self.preset = opts.initial_preset
        self.brightness = 255
        self.intensity = -1
        self.speed = -1
        self.error: str | None = None
        self.send_full_chain = True
        self._chain = [[0, 0, 0, 0] for _ in range(opts.chain_count)]

    def info(self) -> dict[str, Any]:
        """The strip as ``machine.wled.strips`` and the others answer it."""
        return {
            "strip": self.name,
            "status": "on" if self.on else "off",
            "chain_count": self.opts.chain_count,
            "preset": self.preset,
            "brightness": self.brightness,
            "intensity": self.intensity,
            "speed": self.speed,
            "error": self.error,
        }

    def pixel(self, index: int) -> list[int]:
        """LED ``index`` (from 1) as ``[r, g, b, w]``, 0-255."""
        return list(self._chain[index - 1])

    def _store(self, color: tuple[float, float, float, float], index: int | None) -> None:
        led = [_byte(c) for c in color]
        if index is None:
            self._chain = [list(led) for _ in self._chain]
        else:
            self._chain[index - 1] = led

    def initial(self) -> list[State]:
        """Back to the configured initial state (at start-up and ``on`` without a preset)."""
        self.send_full_chain = True
        self.on = True
        self.preset = self.opts.initial_preset
        self.brightness = 255
        self.intensity = -1
        self.speed = -1
        if self.opts.initial_preset >= 0:
            self._store(self.opts.initial_color, None)
            return self.turn_on(self.opts.initial_preset)
        return self.set_color(self.opts.initial_color, None, transmit=True)

    def turn_on(self, preset: int = -1) -> list[State]:
        self.on = True
        if preset < 0:
            return self.initial()
        self.send_full_chain = True
        self.preset = preset
        # what the preset sets is not read back
        self.brightness = self.intensity = self.speed = -1
        return [{"on": True, "ps": preset}]

    def turn_off(self) -> list[State]:
        self.on = False
        # the next SET_WLED of one LED sends the whole chain again
        self.send_full_chain = True
        return [{"on": False}]

    def control(self, brightness: int = -1, intensity: int = -1, speed: int = -1) -> list[State]:
        """Brightness (1-255), and intensity and speed (0-255) of a preset; out-of-range
        values and, while off, everything are ignored."""
        if not self.on:
            return []
        with_preset = self.preset != -1
        state: State = {"tt": 0}
        segment: State = {}
        changed = False
        if 0 < brightness <= 255:
            changed = True
            self.brightness = brightness
            state["bri"] = brightness
            if with_preset:
                segment["bri"] = brightness
        if with_preset and 0 <= intensity <= 255:
            changed = True
            self.intensity = intensity
            segment["ix"] = intensity
        if with_preset and 0 <= speed <= 255:
            changed = True
            self.speed = speed
            segment["sx"] = speed
        if not changed:
            return []
        if with_preset:  # an empty segment too: it keeps the preset's effect running
            state["seg"] = segment
        return [state]

    def set_color(
        self,
        color: tuple[float, float, float, float],
        index: int | None,
        *,
        transmit: bool = True,
    ) -> list[State]:
        """``SET_WLED``: LED ``index`` (from 1; None: all) to ``color`` (0.0-1.0 each)."""
        if index is not None and not 1 <= index <= self.opts.chain_count:
            raise ValueError(f"index {index} is not from 1 to {self.opts.chain_count}")
        self._store(color, index)
        if not transmit:
            self.send_full_chain = True  # everything goes with the next transmit
            return []
        self.preset = -1  # a segment sent with a preset on would go back to the preset
        if self.brightness == -1:
            self.brightness = 255
        if index is None:
            self.send_full_chain = False
            leds: list[Any] = [0, self.opts.chain_count, self.pixel(1)]
        elif self.send_full_chain:
            self.send_full_chain = False
            leds = [self.pixel(i + 1) for i in range(self.opts.chain_count)]
        else:
            leds = [index - 1, self.pixel(index)]
        state: State = {
            "on": True,
            "tt": 0,
            "bri": self.brightness,
            "seg": {"bri": self.brightness, "i": leds},
        }
        if self.on:
            return [state]
        self.on = True
        return [state, state]  # from off, WLED needs it twice


def wanted(action: str, strip: Strip) -> str:
    """``toggle`` as ``on`` or ``off`` for ``strip``; other actions as they are."""
    if action == "toggle":
        return "off" if strip.on else "on"
    return action


# --- klippy's remote methods ----------------------------------------------------------------


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return number


def _integer(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise ValueError(f"{what}: expected an integer, got {value!r}")
    return int(number)


@attrs.frozen
class StateRequest:
    """``set_wled_state``: ``state`` None (unchanged), True (on) or False (off)."""

    strip: str
    state: bool | None = None
    preset: int = -1
    brightness: int = -1
    intensity: int = -1
    speed: int = -1

    def apply(self, strip: Strip) -> list[State]:
        sent: list[State] = []
        if self.state is False:
            sent += strip.turn_off()
        if self.state is True or self.preset != -1:
            sent += strip.turn_on(self.preset)
        if self.brightness != -1 or self.intensity != -1 or self.speed != -1:
            sent += strip.control(self.brightness, self.intensity, self.speed)
        return sent


def state_request(params: Mapping[str, Any]) -> StateRequest:
    """``set_wled_state``'s arguments (``strip``, ``state``: true/false/"on"/"off",
    ``preset``, ``brightness``, ``intensity``, ``speed``); ValueError naming the bad one."""
    state: bool | None = None
    raw = params.get("state")
    if isinstance(raw, bool):
        state = raw
    elif isinstance(raw, str) and raw.lower() in ("on", "true", "off", "false"):
        state = raw.lower() in ("on", "true")
    elif raw is not None:
        raise ValueError(f"state: expected on or off, got {raw!r}")
    values = {
        key: _integer(params[key], key) if params.get(key) is not None else -1
        for key in ("preset", "brightness", "intensity", "speed")
    }
    request = StateRequest(str(params.get("strip", "")), state, **values)
    if state is None and all(v == -1 for v in values.values()):
        raise ValueError("no state, preset or control given")
    return request


@attrs.frozen
class ColorRequest:
    """``set_wled``: ``index`` None for every LED."""

    strip: str
    color: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    index: int | None = None
    transmit: bool = True

    def apply(self, strip: Strip) -> list[State]:
        return strip.set_color(self.color, self.index, transmit=self.transmit)


def color_request(params: Mapping[str, Any]) -> ColorRequest:
    """``set_wled``'s arguments (``strip``, ``red``/``green``/``blue``/``white`` 0.0-1.0,
    ``index`` from 1 (none or negative: all), ``transmit`` 1 or 0); ValueError naming the bad
    one."""
    r, g, b, w = (
        _number(params[key], key) if params.get(key) is not None else 0.0
        for key in ("red", "green", "blue", "white")
    )
    index: int | None = None
    if params.get("index") is not None:
        index = _integer(params["index"], "index")
        if index < 0:
            index = None
    transmit = params.get("transmit", 1)
    return ColorRequest(
        str(params.get("strip", "")),
        (r, g, b, w),
        index,
        bool(transmit == 1),
    )
