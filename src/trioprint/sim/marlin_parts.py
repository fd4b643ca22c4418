"""The simulated Marlin's machine: its options, a 4-deep planner, the heaters, the line checks.

Pure (no trio, no I/O, time passed in). The planner reuses :class:`~.motion.MotionQueue` (each
block a constant-velocity segment, queued after the previous one) and the heaters reuse
:class:`~.thermal.Heater` (the same plants as the simulated Klipper, with Marlin's stock PID
gains for a 40 W hotend and a 250 W bed).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import attrs

from .motion import MotionQueue, Position
from .thermal import BED, HOTEND, Heater

#: The Cap: lines of M115, in order (the simulated build: no SD card, no LCD, no probe).
DEFAULT_CAPABILITIES: Final[Mapping[str, bool]] = MappingProxyType(
    {
        "SERIAL_XON_XOFF": False,
        "BINARY_FILE_TRANSFER": False,
        "EEPROM": False,
        "VOLUMETRIC": True,
        "AUTOREPORT_POS": True,
        "AUTOREPORT_TEMP": True,
        "PROGRESS": False,
        "PRINT_JOB": True,
        "AUTOLEVEL": False,
        "RUNOUT": False,
        "Z_PROBE": False,
        "LEVELING_DATA": False,
        "SOFTWARE_POWER": False,
        "TOGGLE_LIGHTS": False,
        "EMERGENCY_PARSER": True,
        "HOST_ACTION_COMMANDS": True,
        "PROMPT_SUPPORT": False,
        "SDCARD": False,
        "AUTOREPORT_SD_STATUS": False,
        "LONG_FILENAME": False,
        "EXTENDED_M20": False,
        "THERMAL_PROTECTION": True,
        "ARCS": False,
        "CHAMBER_TEMPERATURE": False,
    }
)


@attrs.frozen
class FaultRates:
    """Random faults, each a probability per received line (``drop_ok``: per ok sent)."""

    drop_ok: float = 0.0
    garble: float = 0.0
    resend: float = 0.0
    seed: int = 0


@attrs.frozen
class MarlinOptions:
    """What the simulated firmware is built with (Marlin's Configuration.h, in short)."""

    firmware_name: str = "Marlin 2.1.2.4 (trioprint simulator)"
    machine_type: str = "trioprint simulated Marlin"
    uuid: str = "5f1c7e3a-9b2d-4c11-8e6f-2a7d3b9c0e14"
    capabilities: Mapping[str, bool] = DEFAULT_CAPABILITIES
    #: ``ok N<line> P<planner free> B<buffer free>`` (and ``Cap:ADVANCED_OK:1``)
    advanced_ok: bool = False
    #: planner blocks (BLOCK_BUFFER_SIZE) and command slots (BUFSIZE)
    planner_depth: int = 4
    command_buffer: int = 4
    #: bytes of received, not yet parsed input kept; more is lost (RX_BUFFER_SIZE)
    rx_buffer: int = 1024
    #: seconds between two ``busy: processing`` while a command blocks (M113)
    keepalive_interval: float = 2.0
    #: bed size (mm): software endstops for homed axes
    volume: tuple[float, float, float] = (220.0, 220.0, 250.0)
    #: mm/s per axis (X, Y, Z, E) and for homing (X, Y, Z)
    max_feedrate: tuple[float, float, float, float] = (300.0, 300.0, 5.0, 25.0)
    homing_feedrate: tuple[float, float, float] = (50.0, 50.0, 4.0)
    homing_bump: tuple[float, float, float] = (5.0, 5.0, 2.0)
    steps_per_mm: tuple[float, float, float, float] = (80.0, 80.0, 400.0, 93.0)
    #: where the carriage is at power-on (G28 travels from there)
    carriage: tuple[float, float, float] = (110.0, 110.0, 10.0)
    #: M109 / M190: seconds within ``temp_window`` before the wait ends, and the hysteresis
    residency: float = 10.0
    bed_residency: float = 10.0
    temp_window: float = 1.0
    temp_hysteresis: float = 3.0
    hotend_max_temp: float = 275.0
    bed_max_temp: float = 150.0
    min_extrude_temp: float = 170.0
    seed: int = 0
    faults: FaultRates = FaultRates()


# -- the line checks ---------------------------------------------------------------------------


def checksum(text: str) -> int:
    """Marlin's checksum: the XOR of the bytes before ``*``."""
    value = 0
    for byte in text.encode("latin-1", "replace"):
        value ^= byte
    return value


def with_checksum(line: str) -> str:
    """``line*<checksum>`` (for tests and hosts)."""
    return f"{line}*{checksum(line)}"


def strip_comment(raw: str) -> str:
    """The command part of a received line: no ``;`` comment, no surrounding blanks."""
    index = raw.find(";")
    if index >= 0:
        raw = raw[:index]
    return raw.strip()


@attrs.frozen
class Checked:
    """A received line after the serial checks: its line number (or None) and its command."""

    number: int | None
    command: str


@attrs.frozen
class LineError:
    """A failed check: Marlin's message (``Last Line`` follows it) and the line it wants next."""

    message: str


ERR_LINE_NO: Final = "Line Number is not Last Line Number+1"
ERR_CHECKSUM: Final = "checksum mismatch"
ERR_NO_CHECKSUM: Final = "No Checksum with line number"


def check_line(line: str, last: int) -> Checked | LineError:
    """Marlin's checks of a numbered line (``N<n> <command>*<checksum>``) given the last N."""
    star = line.rfind("*")
    if not line.startswith("N"):
        return Checked(None, line if star < 0 else line[:star].strip())
    body = line if star < 0 else line[:star]
    number_at = 0
    m110 = "M110" in body
    if m110:  # "N5 M110 N0": the line number is M110's own
        second = body.find("N", body.find("M110") + 4)
        if second >= 0:
            number_at = second
    digits = _leading_int(body[number_at + 1 :])
    if digits is None:
        return LineError(ERR_LINE_NO)
    number = digits
    if number != last + 1 and not m110:
        return LineError(ERR_LINE_NO)
    if star < 0:
        return LineError(ERR_NO_CHECKSUM)
    given = _leading_int(line[star + 1 :].strip())
    if given != checksum(body):
        return LineError(ERR_CHECKSUM)
    command = body[1:].lstrip("-0123456789").strip()
    return Checked(number, command)


def _leading_int(text: str) -> int | None:
    end = 0
    if text[:1] in ("-", "+"):
        end = 1
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[:end]
    if not digits or digits in ("-", "+"):
        return None
    return int(digits)


_CODE: Final = re.compile(r"\s*([GMT])\s*(\d+)", re.IGNORECASE)
_WORD: Final = re.compile(r"([A-Za-z])\s*([-+]?(?:\d+\.?\d*|\.\d+)?)")


def parse_words(command: str) -> tuple[str, dict[str, float]]:
    """``G1 X10 Y-2.5`` -> ("G1", {"X": 10.0, "Y": -2.5}); a flag word (``G28 X``) is 0.0.

    The code is normalised (``g01`` -> ``G1``); "" if the command has none.
    """
    match = _CODE.match(command)
    if match is None:
        return "", {}
    code = f"{match[1].upper()}{int(match[2])}"
    words = {
        letter.upper(): float(value) if value else 0.0
        for letter, value in _WORD.findall(command[match.end() :])
    }
    return code, words


# -- the heaters -------------------------------------------------------------------------------

HOTEND_SETTINGS: Final = {
    "min_temp": 0.0,
    "max_temp": 275.0,
    "control": "pid",
    "pid_kp": 22.2,
    "pid_ki": 1.08,
    "pid_kd": 114.0,
}
BED_SETTINGS: Final = {
    "min_temp": 0.0,
    "max_temp": 150.0,
    "control": "pid",
    "pid_kp": 54.027,
    "pid_ki": 0.770,
    "pid_kd": 948.182,
    "min_extrude_temp": 0.0,
}
#: Marlin keeps a target this far under MAXTEMP (HOTEND_OVERSHOOT, BED_OVERSHOOT)
HOTEND_OVERSHOOT: Final = 15.0
BED_OVERSHOOT: Final = 10.0


def make_heaters(options: MarlinOptions) -> tuple[Heater, Heater]:
    rng = random.Random(options.seed)
    hotend = Heater(
        "extruder",
        {
            **HOTEND_SETTINGS,
            "max_temp": options.hotend_max_temp,
            "min_extrude_temp": options.min_extrude_temp,
        },
        HOTEND,
        rng,
    )
    bed = Heater("heater_bed", {**BED_SETTINGS, "max_temp": options.bed_max_temp}, BED, rng)
    return hotend, bed


def heater_states(hotend: Heater, bed: Heater) -> str:
    """Marlin's temperature report (print_heater_states), with its leading space."""
    return (
        f" T:{hotend.smoothed:.2f} /{hotend.target:.2f}"
        f" B:{bed.smoothed:.2f} /{bed.target:.2f}"
        f" @:{_power(hotend)} B@:{_power(bed)}"
    )


def _power(heater: Heater) -> int:
    return round(heater.pwm * 127) if heater.target > 0 else 0


# -- the planner -------------------------------------------------------------------------------


class Planner:
    """Planned blocks, each run after the previous one at a constant velocity."""

    def __init__(self, options: MarlinOptions) -> None:
        self.options = options
        self.depth = options.planner_depth
        self.queue = MotionQueue((*options.carriage, 0.0))
        #: print time at which the last planned block ends
        self.end = 0.0

    def planned(self, now: float) -> int:
        self.queue.expire(now)
        return len(self.queue.segments)

    def free(self, now: float) -> int:
        return max(self.depth - self.planned(now), 0)

    def full(self, now: float) -> bool:
        return self.planned(now) >= self.depth

    def empty(self, now: float) -> bool:
        return self.planned(now) == 0

    def next_end(self, now: float) -> float | None:
        """When the running block ends (a slot frees)."""
        self.queue.expire(now)
        return self.queue.segments[0].end if self.queue.segments else None

    def add(self, now: float, start: Position, end: Position, feedrate: float) -> float:
        """Plan a straight move at ``feedrate`` mm/s (limited per axis); its duration."""
        delta = [b - a for a, b in zip(start, end, strict=True)]
        distance = math.sqrt(delta[0] ** 2 + delta[1] ** 2 + delta[2] ** 2) or abs(delta[3])
        if distance <= 0.0:
            return 0.0
        velocity = feedrate
        for axis, limit in enumerate(self.options.max_feedrate):
            if delta[axis]:
                velocity = min(velocity, limit * distance / abs(delta[axis]))
        duration = distance / max(velocity, 1e-6)
        self.append(now, start, end, duration)
        return duration

    def append(self, now: float, start: Position, end: Position, duration: float) -> None:
        begin = max(now, self.end)
        self.queue.add(begin, duration, start, end)
        self.end = begin + duration

    def live(self, now: float) -> Position:
        position, _, _ = self.queue.sample(now)
        return position

    def stop(self, now: float) -> Position:
        self.end = now
        return self.queue.stop(now)
