"""The klippy-shaped printer objects of a Marlin printer, kept from what goes over the serial line.

Pure (no trio, no I/O): :class:`SerialPrinterState` is told what the host sent and the firmware
acknowledged (``acknowledged``), what the firmware reported (``temperatures``, ``position``) and
what the job does (``job_*``), with ``now`` (seconds) in every call that needs a clock, and
answers ``objects/list`` and ``objects/query`` as klippy does (``object_names``, ``query``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import marlin_lines as ml
from .serial_config import SerialSettings

HOST_MACROS = ("PAUSE", "RESUME", "CANCEL_PRINT")
_WORD = re.compile(r"([A-Z])\s*(-?\d*\.?\d+)")
#: Marlin fan speed is 0-255, heater power 0-127 (``@:``).
_POWER_SCALE = 127.0


def words(command: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for letter, number in _WORD.findall(command.upper()[len(command.split(None, 1)[0]) :]):
        out.setdefault(letter, float(number))
    return out


class SerialPrinterState:
    """What the printer objects show (see the module docstring)."""

    def __init__(self, settings: SerialSettings, *, firmware: str = "") -> None:
        self.settings = settings
        self.state = "startup"
        self.state_message = "Connecting to the printer"
        self.firmware_name = firmware
        self.capabilities: dict[str, bool] = {}
        self.heaters: dict[str, dict[str, float]] = {
            "extruder": {"temperature": 0.0, "target": 0.0, "power": 0.0},
            "heater_bed": {"temperature": 0.0, "target": 0.0, "power": 0.0},
        }
        self.position = [0.0, 0.0, 0.0, 0.0]
        self.homed = ""
        self.absolute = True
        self.absolute_e = True
        self.speed = 1500.0
        self.fan = 0.0
        self.message = ""
        self.m73: float | None = None
        self.paused = False
        self.filament_used = 0.0
        # the job
        self.job_state = "standby"
        self.job_message = ""
        self.filename = ""
        self.file_path: str | None = None
        self.file_size = 0
        self.file_position = 0
        self.active = False
        self._start: float | None = None
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._end: float | None = None
        self._idle_since = 0.0

    # -- the link ------------------------------------------------------------------------------

    def set_state(self, state: str, message: str) -> None:
        self.state, self.state_message = state, message

    def acknowledged(self, command: str) -> None:
        """The firmware acknowledged ``command``: what it did to the machine."""
        code = ml.command_code(command)
        if code is None:
            return
        w = words(command) if len(command) > len(code) else {}
        if code in ("G0", "G1", "G2", "G3"):
            if "F" in w:
                self.speed = w["F"]
            for index, axis in enumerate("XYZ"):
                if axis in w:
                    self.position[index] = (
                        w[axis] if self.absolute else self.position[index] + w[axis]
                    )
            if "E" in w:
                delta = w["E"] - self.position[3] if self.absolute_e else w["E"]
                self.position[3] += delta
                if self.active and delta > 0:
                    self.filament_used += delta
        elif code == "G28":
            axes = "".join(a for a in "XYZ" if a in command.upper()[3:]) or "XYZ"
            for axis in axes:
                self.position["XYZ".index(axis)] = 0.0
            self.homed = "".join(a.lower() for a in "XYZ" if a in axes or a.lower() in self.homed)
        elif code == "G90":
            self.absolute = self.absolute_e = True
        elif code == "G91":
            self.absolute = self.absolute_e = False
        elif code == "M82":
            self.absolute_e = True
        elif code == "M83":
            self.absolute_e = False
        elif code == "G92":
            for index, axis in enumerate("XYZE"):
                if axis in w:
                    self.position[index] = w[axis]
        elif code in ("M104", "M109") and ("S" in w or "R" in w):
            self.heaters["extruder"]["target"] = w.get("S", w.get("R", 0.0))
        elif code in ("M140", "M190") and ("S" in w or "R" in w):
            self.heaters["heater_bed"]["target"] = w.get("S", w.get("R", 0.0))
        elif code == "M106":
            self.fan = min(max(w.get("S", 255.0) / 255.0, 0.0), 1.0)
        elif code == "M107":
            self.fan = 0.0
        elif code == "M117":
            self.message = command[4:].strip()
        elif code == "M73" and "P" in w:
            self.m73 = min(max(w["P"] / 100.0, 0.0), 1.0)
        elif code in ("M84", "M18"):
            self.homed = ""

    def temperatures(self, report: ml.Temperatures) -> None:
        for key, name in (("tool0", "extruder"), ("bed", "heater_bed")):
            reading = report.readings.get(key)
            heater = self.heaters[name]
            if reading is not None:
                heater["temperature"] = round(reading.actual, 2)
                if reading.target is not None:
                    heater["target"] = reading.target
            power = report.powers.get(key)
            if power is not None:
                heater["power"] = round(min(max(power / _POWER_SCALE, 0.0), 1.0), 3)

    def reported_position(self, position: ml.Position) -> None:
        for index, value in enumerate((position.x, position.y, position.z, position.e)):
            if value is not None:
                self.position[index] = value

    def firmware_reset(self) -> None:
        """The firmware restarted: nothing is homed, heaters and fan are off."""
        self.homed = ""
        self.fan = 0.0
        for heater in self.heaters.values():
            heater["target"] = 0.0
            heater["power"] = 0.0

    # -- the job -------------------------------------------------------------------------------

    def job_started(self, filename: str, path: str, size: int, now: float) -> None:
        self.filename, self.file_path, self.file_size = filename, path, size
        self.file_position = 0
        self.job_state, self.job_message = "printing", ""
        self.active, self.paused = True, False
        self.filament_used = 0.0
        self.m73 = None
        self._start, self._end = now, None
        self._paused_since, self._paused_total = None, 0.0

    def job_paused(self, now: float) -> None:
        if self.job_state == "printing":
            self.job_state, self.paused, self._paused_since = "paused", True, now

    def job_resumed(self, now: float) -> None:
        if self.job_state == "paused":
            if self._paused_since is not None:
                self._paused_total += now - self._paused_since
            self.job_state, self.paused, self._paused_since = "printing", False, None

    def job_ended(self, state: str, now: float, message: str = "") -> None:
        """``complete``, ``cancelled`` or ``error``."""
        if self._paused_since is not None:
            self._paused_total += now - self._paused_since
            self._paused_since = None
        self.job_state, self.job_message = state, message
        self.active = self.paused = False
        self._end = now
        self._idle_since = now

    def job_reset(self) -> None:
        """SDCARD_RESET_FILE: back to standby."""
        if not self.active:
            self.job_state, self.job_message, self.filename = "standby", "", ""
            self.file_path, self.file_size, self.file_position = None, 0, 0
            self._start = self._end = None

    def _durations(self, now: float) -> tuple[float, float]:
        if self._start is None:
            return 0.0, 0.0
        end = self._end if self._end is not None else now
        paused = self._paused_total + (now - self._paused_since if self._paused_since else 0.0)
        total = max(end - self._start, 0.0)
        return total, max(total - paused, 0.0)

    # -- objects -------------------------------------------------------------------------------

    def _builders(self, now: float) -> dict[str, Callable[[], dict[str, Any]]]:
        progress = self.file_position / self.file_size if self.file_size else 0.0
        total, printing = self._durations(now)
        s = self.settings
        limits_min = [*s.axis_minimum, -99999.0]
        limits_max = [*s.axis_maximum, 99999.0]
        velocity = self.speed / 60.0 if self.active and not self.paused else 0.0
        return {
            "webhooks": lambda: {"state": self.state, "state_message": self.state_message},
            "configfile": self._configfile,
            "heaters": lambda: {
                "available_heaters": ["extruder", "heater_bed"],
                "available_sensors": ["extruder", "heater_bed"],
                "available_monitors": [],
            },
            "extruder": lambda: {
                **self.heaters["extruder"],
                "can_extrude": self.heaters["extruder"]["temperature"] >= 170.0,
                "pressure_advance": 0.0,
                "smooth_time": 0.04,
                "motion_queue": None,
            },
            "heater_bed": lambda: dict(self.heaters["heater_bed"]),
            "fan": lambda: {"speed": self.fan, "rpm": None},
            "display_status": lambda: {
                "progress": self.m73 if self.m73 is not None else progress,
                "message": self.message,
            },
            "pause_resume": lambda: {"is_paused": self.paused},
            "gcode_move": lambda: {
                "speed_factor": 1.0,
                "speed": self.speed,
                "extrude_factor": 1.0,
                "absolute_coordinates": self.absolute,
                "absolute_extrude": self.absolute_e,
                "homing_origin": [0.0, 0.0, 0.0, 0.0],
                "position": list(self.position),
                "gcode_position": list(self.position),
            },
            "print_stats": lambda: {
                "filename": self.filename,
                "total_duration": total,
                "print_duration": printing,
                "filament_used": self.filament_used,
                "state": self.job_state,
                "message": self.job_message,
                "info": {"total_layer": None, "current_layer": None},
            },
            "virtual_sdcard": lambda: {
                "file_path": self.file_path,
                "progress": progress,
                "is_active": self.active and not self.paused,
                "file_position": self.file_position,
                "file_size": self.file_size,
            },
            "idle_timeout": lambda: {
                "state": "Printing" if self.active else ("Ready" if self.homed else "Idle"),
                "printing_time": printing if self.active else 0.0,
            },
            **{f"gcode_macro {name}": dict for name in HOST_MACROS},
            "motion_report": lambda: {
                "live_position": list(self.position),
                "live_velocity": velocity,
                "live_extruder_velocity": 0.0,
                "steppers": [],
                "trapq": [],
            },
            "toolhead": lambda: {
                "homed_axes": self.homed,
                "axis_minimum": limits_min,
                "axis_maximum": limits_max,
                "print_time": printing,
                "stalls": 0,
                "estimated_print_time": printing,
                "extruder": "extruder",
                "position": list(self.position),
                "max_velocity": s.max_velocity,
                "max_accel": s.max_accel,
                "minimum_cruise_ratio": 0.5,
                "square_corner_velocity": 5.0,
            },
        }

    def _configfile(self) -> dict[str, Any]:
        s = self.settings
        config: dict[str, dict[str, str]] = {
            "printer": {
                "kinematics": "cartesian",
                "max_velocity": f"{s.max_velocity:g}",
                "max_accel": f"{s.max_accel:g}",
            },
            "virtual_sdcard": {"path": "~/printer_data/gcodes"},
            "pause_resume": {},
            "display_status": {},
            "extruder": {"min_temp": "0", "max_temp": "275", "min_extrude_temp": "170"},
            "heater_bed": {"min_temp": "0", "max_temp": "120"},
        }
        for index, axis in enumerate("xyz"):
            config[f"stepper_{axis}"] = {
                "position_min": f"{s.axis_minimum[index]:g}",
                "position_max": f"{s.axis_maximum[index]:g}",
            }
        for name in HOST_MACROS:
            config[f"gcode_macro {name}"] = {"gcode": f"# trioprint host action: {name.lower()}"}
        settings: dict[str, dict[str, Any]] = {}
        for section, options in config.items():
            settings[section.lower()] = (
                {
                    k: _typed(v)
                    for k, v in options.items()
                    if section.startswith(("printer", "stepper", "extruder", "heater"))
                }
                if not section.startswith("gcode_macro")
                else {"gcode": options["gcode"], "description": "G-Code macro"}
            )
        return {
            "config": config,
            "settings": settings,
            "save_config_pending": False,
            "save_config_pending_items": {},
            "warnings": [],
        }

    def object_names(self) -> list[str]:
        return list(self._builders(0.0))

    def query(
        self, objects: Mapping[str, list[str] | None], now: float
    ) -> dict[str, dict[str, Any]]:
        builders = self._builders(now)
        result: dict[str, dict[str, Any]] = {}
        for name, fields in objects.items():
            builder = builders.get(name)
            if builder is None:
                result[name] = {}
                continue
            status = builder()
            result[name] = (
                status if fields is None else {k: status[k] for k in fields if k in status}
            )
        return result


def _typed(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value
