"""The simulated printer's ``printer.cfg`` and what klippy makes of it.

:data:`PRINTER_CFG` is a realistic cartesian printer (based on the shared klippy-sim config).
:func:`load_config` reads it the way klippy's configfile does: ``config`` holds each section's
raw strings (option names lower-cased, multi-line values joined with ``\\n``), ``settings``
the typed values klippy reports (section names lower-cased, defaults filled in for every option
the loaded modules read, numbers as floats or ints, booleans, lists).

The macros are deliberately plain G-code (no Jinja): the simulator runs their lines as they are.
"""

from __future__ import annotations

import configparser
import glob
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

#: Replaced by the gcodes folder the machine prints from.
GCODES_DIR_TOKEN: Final = "@GCODES_DIR@"

PRINTER_CFG: Final = """\
# trioprint simulated printer: a cartesian machine with no hardware behind it.
# The pins are atmega2560 (RAMPS) names; nothing ever drives them.

[mcu]
serial: /dev/serial/by-id/usb-Klipper_atmega2560_trioprint-sim-if00
restart_method: command

[printer]
kinematics: cartesian
max_velocity: 300
max_accel: 3000
max_z_velocity: 15
max_z_accel: 200

[stepper_x]
step_pin: PC0
dir_pin: !PL0
enable_pin: !PA7
microsteps: 16
rotation_distance: 32
endstop_pin: ^PB6
position_endstop: 0
position_max: 250
homing_speed: 50

[stepper_y]
step_pin: PC1
dir_pin: PL1
enable_pin: !PA6
microsteps: 16
rotation_distance: 32
endstop_pin: ^PB5
position_endstop: 0
position_max: 210
homing_speed: 50

[stepper_z]
step_pin: PC2
dir_pin: !PL2
enable_pin: !PA5
microsteps: 16
rotation_distance: 8
endstop_pin: ^PB4
position_endstop: 0
position_min: -2
position_max: 200
homing_speed: 13

[extruder]
step_pin: PC3
dir_pin: PL6
enable_pin: !PA4
microsteps: 16
rotation_distance: 33.5
nozzle_diameter: 0.4
filament_diameter: 1.75
max_extrude_only_distance: 100
heater_pin: PE5
sensor_type: EPCOS 100K B57560G104F
sensor_pin: PF0
control: pid
pid_Kp: 22.2
pid_Ki: 1.08
pid_Kd: 114
min_temp: 0
max_temp: 260

[heater_bed]
heater_pin: PG5
sensor_type: EPCOS 100K B57560G104F
sensor_pin: PF2
control: pid
pid_Kp: 126.13
pid_Ki: 4.3
pid_Kd: 924.76
min_temp: 0
max_temp: 130

[fan]
pin: PH3

[heater_fan hotend_fan]
pin: PH4
heater: extruder
heater_temp: 50.0

[virtual_sdcard]
path: @GCODES_DIR@
on_error_gcode:
  TURN_OFF_HEATERS

[pause_resume]

[display_status]

[respond]

[exclude_object]

[idle_timeout]
timeout: 600
gcode:
  TURN_OFF_HEATERS
  M84

[gcode_macro PAUSE]
description: Pause the actual running print
rename_existing: BASE_PAUSE
gcode:
  BASE_PAUSE

[gcode_macro RESUME]
description: Resume the actual running print
rename_existing: BASE_RESUME
gcode:
  BASE_RESUME

[gcode_macro CANCEL_PRINT]
description: Cancel the actual running print
rename_existing: BASE_CANCEL_PRINT
gcode:
  TURN_OFF_HEATERS
  M106 S0
  BASE_CANCEL_PRINT
"""


class ConfigError(Exception):
    """The config is not one the simulator can run (a bug in :data:`PRINTER_CFG`)."""


@attrs.frozen
class Config:
    """``config`` (raw strings) and ``settings`` (typed), keyed as klippy's configfile."""

    config: dict[str, dict[str, str]]
    settings: dict[str, dict[str, Any]]

    def section(self, name: str) -> dict[str, Any]:
        """The typed settings of section ``name`` (any case)."""
        return self.settings[name.lower()]

    def sections(self, prefix: str) -> list[str]:
        """Raw section names starting with ``prefix`` (e.g. ``"gcode_macro "``), in order."""
        return [name for name in self.config if name.lower().startswith(prefix.lower())]


# -- typed options ----------------------------------------------------------------------------

_REQUIRED: Final = object()
Default = Any  # a value, None (not reported when absent), _REQUIRED, or a callable of settings


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError(text)


def _strlist(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ratio_list(text: str) -> list[list[float]]:
    return [[float(v) for v in pair.split(":")] for pair in text.split(",") if pair.strip()]


Parser = Callable[[str], Any]

_STEPPER: list[tuple[str, Parser, Default]] = [
    ("step_pin", str, _REQUIRED),
    ("dir_pin", str, _REQUIRED),
    ("enable_pin", str, None),
    ("rotation_distance", float, _REQUIRED),
    ("microsteps", int, _REQUIRED),
    ("full_steps_per_rotation", int, 200),
    ("gear_ratio", _ratio_list, []),
]

_RAIL: list[tuple[str, Parser, Default]] = [
    ("endstop_pin", str, _REQUIRED),
    ("position_endstop", float, _REQUIRED),
    ("position_min", float, 0.0),
    ("position_max", float, _REQUIRED),
    ("homing_speed", float, 5.0),
    ("second_homing_speed", float, lambda s: s["homing_speed"] / 2.0),
    ("homing_retract_speed", float, lambda s: s["homing_speed"]),
    ("homing_retract_dist", float, 5.0),
    ("homing_positive_dir", _boolean, False),
]

_HEATER: list[tuple[str, Parser, Default]] = [
    ("sensor_type", str, _REQUIRED),
    ("sensor_pin", str, _REQUIRED),
    ("pullup_resistor", float, 4700.0),
    ("inline_resistor", float, 0.0),
    ("min_temp", float, _REQUIRED),
    ("max_temp", float, _REQUIRED),
    ("min_extrude_temp", float, 170.0),
    ("max_power", float, 1.0),
    ("smooth_time", float, 1.0),
    ("control", str, _REQUIRED),
    ("pid_kp", float, None),
    ("pid_ki", float, None),
    ("pid_kd", float, None),
    ("max_delta", float, None),
    ("heater_pin", str, _REQUIRED),
    ("pwm_cycle_time", float, 0.1),
]

_FAN: list[tuple[str, Parser, Default]] = [
    ("max_power", float, 1.0),
    ("kick_start_time", float, 0.1),
    ("off_below", float, 0.0),
    ("cycle_time", float, 0.010),
    ("hardware_pwm", _boolean, False),
    ("shutdown_speed", float, 0.0),
    ("pin", str, _REQUIRED),
]


def _filament_area(s: Mapping[str, Any]) -> float:
    radius = float(s["filament_diameter"]) / 2.0
    return 3.141592653589793 * radius * radius


def _default_extrude_ratio(s: Mapping[str, Any]) -> float:
    return 4.0 * float(s["nozzle_diameter"]) ** 2 / _filament_area(s)


def _extruder_schema(printer: Mapping[str, Any]) -> list[tuple[str, Parser, Default]]:
    return [
        *_STEPPER,
        ("nozzle_diameter", float, _REQUIRED),
        ("filament_diameter", float, _REQUIRED),
        ("max_extrude_cross_section", float, lambda s: 4.0 * s["nozzle_diameter"] ** 2),
        (
            "max_extrude_only_velocity",
            float,
            lambda s: printer["max_velocity"] * _default_extrude_ratio(s),
        ),
        (
            "max_extrude_only_accel",
            float,
            lambda s: printer["max_accel"] * _default_extrude_ratio(s),
        ),
        ("max_extrude_only_distance", float, 50.0),
        ("instantaneous_corner_velocity", float, 1.0),
        ("pressure_advance", float, 0.0),
        ("pressure_advance_smooth_time", float, 0.040),
        *_HEATER,
    ]


_PRINTER: list[tuple[str, Parser, Default]] = [
    ("kinematics", str, _REQUIRED),
    ("max_velocity", float, _REQUIRED),
    ("max_accel", float, _REQUIRED),
    ("minimum_cruise_ratio", float, 0.5),
    ("square_corner_velocity", float, 5.0),
    ("max_z_velocity", float, lambda s: s["max_velocity"]),
    ("max_z_accel", float, lambda s: s["max_accel"]),
]

_RESPOND_PREFIXES: Final = {"echo": "echo:", "command": "//", "error": "!!"}

_FIXED: dict[str, list[tuple[str, Parser, Default]]] = {
    "mcu": [("serial", str, _REQUIRED), ("baud", int, 250000), ("restart_method", str, None)],
    "printer": _PRINTER,
    "stepper_x": [*_STEPPER, *_RAIL],
    "stepper_y": [*_STEPPER, *_RAIL],
    "stepper_z": [*_STEPPER, *_RAIL],
    "heater_bed": _HEATER,
    "fan": _FAN,
    "virtual_sdcard": [("path", str, _REQUIRED), ("on_error_gcode", str, "")],
    "pause_resume": [("recover_velocity", float, 50.0)],
    "respond": [
        ("default_type", str, "echo"),
        ("default_prefix", str, lambda s: _RESPOND_PREFIXES.get(s["default_type"], "echo:")),
    ],
    "idle_timeout": [("timeout", float, 600.0), ("gcode", str, "\nTURN_OFF_HEATERS\nM84")],
    "display_status": [],
    "exclude_object": [],
}

_HEATER_FAN: list[tuple[str, Parser, Default]] = [
    *_FAN[:-2],
    ("shutdown_speed", float, 1.0),
    ("pin", str, _REQUIRED),
    ("heater", _strlist, ["extruder"]),
    ("heater_temp", float, 50.0),
    ("fan_speed", float, 1.0),
]

_MACRO: list[tuple[str, Parser, Default]] = [
    ("gcode", str, _REQUIRED),
    ("rename_existing", str, None),
    ("description", str, "G-Code macro"),
]

_VERIFY_HEATER: dict[str, dict[str, float]] = {
    "extruder": {"check_gain_time": 20.0},
    "heater_bed": {"check_gain_time": 60.0},
}


def _typed(
    section: str, raw: Mapping[str, str], schema: list[tuple[str, Parser, Default]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for option, parse, default in schema:
        if option in raw:
            try:
                out[option] = parse(raw[option])
            except ValueError:
                raise ConfigError(
                    f"Unable to parse option '{option}' in section '{section}'"
                ) from None
            continue
        if default is _REQUIRED:
            raise ConfigError(f"Option '{option}' in section '{section}' must be specified")
        if callable(default):
            default = default(out)
        if default is not None:
            out[option] = default
    unknown = set(raw) - {option for option, _, _ in schema}
    if unknown and not section.lower().startswith("gcode_macro "):
        raise ConfigError(f"Option '{sorted(unknown)[0]}' is not valid in section '{section}'")
    return out


#: Sections the machine itself needs, added (empty, so with their defaults) to a user's config
#: that lacks them; virtual_sdcard's path is always the folder trioprint prints from.
_MACHINE_NEEDS: Final = (
    "virtual_sdcard",
    "pause_resume",
    "display_status",
    "respond",
    "idle_timeout",
)

#: The line klippy's SAVE_CONFIG writes before the settings it saved (each then behind ``#*#``).
SAVE_CONFIG_MARKER: Final = "#*# <---------------------- SAVE_CONFIG ---------------------->"


def saved_config(text: str) -> str:
    """The SAVE_CONFIG block at the end of a printer.cfg, as config text ("" if none)."""
    _, marker, block = text.partition(SAVE_CONFIG_MARKER)
    if not marker:
        return ""
    lines: list[str] = []
    for line in block.splitlines():
        if not line.startswith("#*#"):
            continue
        line = line[3:].removeprefix(" ")
        if lines or line.startswith("["):  # the header's own lines come before any section
            lines.append(line)
    return "\n".join(lines) + "\n"


def load_config(
    text: str = PRINTER_CFG,
    *,
    gcodes_dir: str = "~/printer_data/gcodes",
    user: bool = False,
    warnings: list[str] | None = None,
) -> Config:
    """Read ``text`` (a printer.cfg) as klippy would; raises :class:`ConfigError`.

    With ``user``, ``text`` is a user's own printer.cfg (its includes already joined in, its
    SAVE_CONFIG block appended): the simulator takes from it what it models (axis limits,
    velocities and accelerations, heaters and their limits, fans, macros...), reports every
    section in ``configfile.config`` as klippy does, and adds a message to ``warnings`` for
    each section or option it does not model instead of refusing it.
    """
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(text.replace(GCODES_DIR_TOKEN, gcodes_dir))
        if user:
            for name in _MACHINE_NEEDS:
                if not parser.has_section(name):
                    parser.add_section(name)
            parser.set("virtual_sdcard", "path", gcodes_dir)
    except configparser.Error as exc:
        raise ConfigError(str(exc)) from exc
    config = {name: dict(parser.items(name)) for name in parser.sections()}
    settings: dict[str, dict[str, Any]] = {}
    # [printer] first, wherever it stands: the extruder's defaults depend on it
    ordered = sorted(config.items(), key=lambda item: item[0].lower() != "printer")
    for name, raw in ordered:
        key = name.lower()
        if key == "extruder":
            if "printer" not in settings:
                raise ConfigError("Section 'printer' is required")
            schema = _extruder_schema(settings["printer"])
        elif key.startswith("heater_fan "):
            schema = _HEATER_FAN
        elif key.startswith("gcode_macro "):
            schema = _MACRO
        elif key in _FIXED:
            schema = _FIXED[key]
        elif user:
            if warnings is not None:
                warnings.append(f"[{name}]: not modelled by the simulator, only reported")
            continue
        else:
            raise ConfigError(f"Section '{name}' is not a valid config section")
        if user:
            known = {option for option, _, _ in schema}
            unknown = sorted(set(raw) - known) if not key.startswith("gcode_macro ") else []
            if unknown and warnings is not None:
                warnings.append(f"[{name}]: not modelled by the simulator: {', '.join(unknown)}")
            raw = {k: v for k, v in raw.items() if k not in unknown}
        typed = _typed(name, raw, schema)
        if key.startswith("gcode_macro "):
            typed.update({k: v for k, v in raw.items() if k.startswith("variable_")})
        if typed or schema:
            settings[key] = typed
        if key in _VERIFY_HEATER:
            settings[f"verify_heater {key}"] = {
                "hysteresis": 5.0,
                "max_error": 120.0,
                "heating_gain": 2.0,
                **_VERIFY_HEATER[key],
            }
    for needed in ("printer", "stepper_x", "stepper_y", "stepper_z", "extruder", "heater_bed"):
        if needed not in settings:
            why = " (the simulator models cartesian and corexy printers)" if user else ""
            raise ConfigError(f"Section '{needed}' is required{why}")
    kinematics = settings["printer"]["kinematics"]
    if user and kinematics not in ("cartesian", "corexy", "corexz", "hybrid_corexy"):
        raise ConfigError(
            f"[printer] kinematics: {kinematics}: the simulator models cartesian and corexy"
            " printers"
        )
    return Config(config, settings)


_INCLUDE_RE: Final = re.compile(r"^\[include\s+([^\]]+)\]\s*$", re.IGNORECASE)


def read_printer_cfg(path: Path) -> str:
    """A user's printer.cfg as one text: each ``[include GLOB]`` replaced by the files it names
    (relative to the including file, sorted, nested includes too, as klippy reads them), and
    the main file's SAVE_CONFIG block appended, so the values it saved win. The only file
    reading in the simulator's model; raises :class:`ConfigError` naming the file."""
    main = path.expanduser()
    text = _read_with_includes(main, [])
    return text + "\n" + saved_config(_read(main))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _read_with_includes(path: Path, stack: list[Path]) -> str:
    resolved = path.resolve()
    if resolved in stack:
        raise ConfigError(f"{path}: includes itself")
    text = _read(path).partition(SAVE_CONFIG_MARKER)[0]
    out: list[str] = []
    for line in text.splitlines():
        match = _INCLUDE_RE.match(line.strip())
        if match is None:
            out.append(line)
            continue
        pattern = match.group(1).strip()
        found = (
            sorted(path.parent.glob(pattern))
            if not Path(pattern).is_absolute()
            else sorted(Path(p) for p in glob.glob(pattern))
        )
        if not found and not glob.has_magic(pattern):
            raise ConfigError(f"{path}: [include {pattern}]: no such file")
        for included in found:
            out.append(_read_with_includes(included, [*stack, resolved]))
    return "\n".join(out) + "\n"
