"""``[serial]``: a Marlin-style printer on a serial line, read from the section's raw options.

Pure: :func:`parse_serial_section` turns the options into :class:`SerialSettings` or raises
:class:`SerialConfigError` naming the option and what it should be.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

#: ``baudrate: auto`` tries these, in this order.
AUTO_BAUDRATES = (250000, 115200, 57600)
#: ``port: auto`` tries what matches these, in this order.
AUTO_PORT_PATTERNS = ("/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*")

_DEFAULT_MIN = (0.0, 0.0, 0.0)
_DEFAULT_MAX = (220.0, 220.0, 250.0)


class SerialConfigError(Exception):
    pass


@attrs.frozen
class SerialSettings:
    #: A device path, or ``auto``.
    port: str
    #: The baud rates to try, in order (one unless ``auto``).
    baudrates: tuple[int, ...] = AUTO_BAUDRATES
    communication_timeout: float = 30.0
    long_running_timeout: float = 900.0
    always_checksum: bool = True
    max_in_flight: int = 1
    axis_minimum: tuple[float, float, float] = _DEFAULT_MIN
    axis_maximum: tuple[float, float, float] = _DEFAULT_MAX
    max_velocity: float = 300.0
    max_accel: float = 3000.0
    temperature_interval: float = 2.0
    start_gcode: str = ""
    end_gcode: str = "M104 S0\nM140 S0\nM107\nM84"
    pause_gcode: str = "M400\nG91\nG1 Z5 F600\nG90"
    resume_gcode: str = "G91\nG1 Z-5 F600\nG90"
    cancel_gcode: str = "M104 S0\nM140 S0\nM107\nM84"
    #: Real seconds between two reconnection attempts (doubling up to ``reconnect_max``).
    reconnect_interval: float = 1.0
    reconnect_max: float = 30.0


_FLOATS = {
    "communication_timeout",
    "long_running_timeout",
    "max_velocity",
    "max_accel",
    "temperature_interval",
    "reconnect_interval",
    "reconnect_max",
}
_SCRIPTS = {"start_gcode", "end_gcode", "pause_gcode", "resume_gcode", "cancel_gcode"}
_LIMITS = {f"{axis}_{end}" for axis in "xyz" for end in ("min", "max")}
KNOWN = {
    "port",
    "baudrate",
    "always_checksum",
    "max_in_flight",
    "axis_min",
    "axis_max",
    *_FLOATS,
    *_SCRIPTS,
    *_LIMITS,
}


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SerialConfigError(f"[serial] {name}: {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SerialConfigError(f"[serial] {name}: {text!r} is not a finite number")
    return value


def _triple(name: str, text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(",", " ").split() if p]
    if len(parts) != 3:
        raise SerialConfigError(f"[serial] {name}: three numbers (x, y, z) expected, got {text!r}")
    x, y, z = (_number(name, p) for p in parts)
    return (x, y, z)


def parse_serial_section(options: Mapping[str, str]) -> tuple[SerialSettings, list[str]]:
    """The settings and warnings (unknown options) of a ``[serial]`` section."""
    warnings = [
        f"[serial] {name}: unknown option, ignored" for name in options if name not in KNOWN
    ]
    port = options.get("port", "").strip()
    if not port:
        raise SerialConfigError("[serial] port: a device path (e.g. /dev/ttyUSB0) or auto")
    values: dict[str, object] = {"port": port}
    rate = options.get("baudrate", "auto").strip().lower()
    if rate != "auto":
        try:
            baud = int(rate)
        except ValueError:
            baud = 0
        if baud <= 0:
            raise SerialConfigError(f"[serial] baudrate: {rate!r} is not a baud rate (or auto)")
        values["baudrates"] = (baud,)
    for name in _FLOATS & options.keys():
        value = _number(name, options[name])
        if value <= 0:
            raise SerialConfigError(f"[serial] {name}: a number greater than 0")
        values[name] = value
    if "always_checksum" in options:
        text = options["always_checksum"].strip().lower()
        if text not in ("true", "false"):
            raise SerialConfigError("[serial] always_checksum: true or false")
        values["always_checksum"] = text == "true"
    if "max_in_flight" in options:
        text = options["max_in_flight"].strip()
        if not text.isdigit() or int(text) < 1:
            raise SerialConfigError("[serial] max_in_flight: a whole number of at least 1")
        values["max_in_flight"] = int(text)
    minimum = list(
        _triple("axis_min", options["axis_min"]) if "axis_min" in options else _DEFAULT_MIN
    )
    maximum = list(
        _triple("axis_max", options["axis_max"]) if "axis_max" in options else _DEFAULT_MAX
    )
    for index, axis in enumerate("xyz"):
        for end, target in (("min", minimum), ("max", maximum)):
            name = f"{axis}_{end}"
            if name in options:
                target[index] = _number(name, options[name])
    for index, axis in enumerate("xyz"):
        if minimum[index] >= maximum[index]:
            raise SerialConfigError(
                f"[serial] {axis} limits: the minimum must be below the maximum"
            )
    values["axis_minimum"] = (minimum[0], minimum[1], minimum[2])
    values["axis_maximum"] = (maximum[0], maximum[1], maximum[2])
    for name in _SCRIPTS & options.keys():
        values[name] = options[name].strip()
    return SerialSettings(**values), warnings  # type: ignore[arg-type]
