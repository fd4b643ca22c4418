"""A simulated Klipper printer, as a pure model: klippy's objects, G-code and print jobs.

:class:`SimMachine` is what klippy's API shows of a printer (``objects/query`` statuses,
``info``, G-code output) and what its G-code does, without I/O or an event loop (the only
I/O is reading the G-code files it prints). Time is passed in: :meth:`SimMachine.advance`
moves the simulation to a given time; G-code that would wait in klippy yields
:data:`Step` values that say what for (:class:`Sleep`, :class:`WaitFor`), and a print job
yields :class:`LineDone` between file lines. A driver (the simulator's server) runs those
generators, sleeping and advancing the machine as they ask.

What is modelled: homing and cartesian moves (planned ahead as klippy does, each at a
constant velocity limited by the feed rate, ``max_velocity``, the Z and extruder limits),
klippy's move checks and messages, G-code coordinate state (G90/G91, G92, M82/M83, M220,
M221, SET_GCODE_OFFSET, SAVE/RESTORE_GCODE_STATE), heaters with a thermal plant and PID,
fans, M109/M190/TEMPERATURE_WAIT, prints from the gcodes folder through virtual_sdcard,
print_stats, pause/resume/cancel (the macros are plain G-code run by the model),
display_status, idle_timeout, exclude_object, M112 / emergency stop and restarts.
Not modelled: acceleration, bed meshes, probes, input shaping, Jinja in macros.
"""

from __future__ import annotations

import copy
import math
import os
import random
import sys
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, TypeAlias

import attrs

from .._version import __version__
from . import config as sim_config
from .exclude_object import ExcludeObject
from .gcode import GcodeError, GcodeLine, GcodeParseError, parse_line
from .gcode_move import GcodeMove
from .stats import IdleTimeout, PrintStats
from .thermal import BED, HOTEND, MAX_STEP, SAMPLE_TIME, Heater
from .toolhead import Toolhead

__all__ = ["GcodeError", "LineDone", "SimMachine", "Sleep", "Step", "WaitFor"]


@attrs.frozen
class Sleep:
    """Wait until sim time ``until`` (seconds)."""

    until: float


@attrs.frozen
class WaitFor:
    """Wait until ``predicate()`` is true; re-checked after each ``advance()``."""

    predicate: Callable[[], bool]
    what: str


@attrs.frozen
class LineDone:
    """A print job finished one file line: the driver may let API scripts run here."""


Step: TypeAlias = Sleep | WaitFor | LineDone
Handler: TypeAlias = Callable[[GcodeLine], "Iterator[Step] | None"]

SOFTWARE_VERSION: Final = f"trioprint-sim-{__version__}"

MESSAGE_READY: Final = "Printer is ready"
MESSAGE_STARTUP: Final = """
Printer is not ready
The klippy host software is attempting to connect.  Please
retry in a few moments.
"""
MESSAGE_SHUTDOWN: Final = """
Once the underlying issue is corrected, use the
"FIRMWARE_RESTART" command to reset the firmware, reload the
config, and restart the host software.
Printer is shutdown
"""

#: planned motion ahead of now beyond which G-code waits (klippy's toolhead does the same)
BUFFER_TIME_HIGH: Final = 2.0
DISABLE_STALL_TIME: Final = 0.1
M73_TIMEOUT: Final = 5.0
VALID_GCODE_EXTS: Final = ("gcode", "g", "gco")

_MCU_CONSTANTS: Final = {
    "ADC_MAX": 1023,
    "BUS_PINS_spi": "PB3,PB2,PB1",
    "BUS_PINS_twi": "PD0,PD1",
    "CLOCK_FREQ": 16000000,
    "MCU": "atmega2560",
    "PWM_MAX": 255,
    "RECEIVE_WINDOW": 192,
    "RESERVE_PINS_serial": "PE0,PE1",
    "SERIAL_BAUD": 250000,
    "STATS_SUMSQ_BASE": 256,
    "STEPPER_OPTIMIZED_UNSTEP": 40,
    "STEPPER_STEP_BOTH_EDGE": 1,
}

_RESPOND_TYPES: Final = {"echo": "echo:", "command": "//", "error": "!!"}


@attrs.frozen
class _Command:
    func: Handler
    help: str | None = None
    when_not_ready: bool = False


def _discard(line: str) -> None:
    pass


def _no_fields() -> dict[str, Any]:
    return {}


def _next_report(last: float, now: float) -> float:
    """Once a second, on a steady beat (klippy's waits report M105 lines so)."""
    return last + 1.0 if last + 1.0 > now else now + 1.0


class SimMachine:
    """A simulated printer; see the module docstring. Starts in state "startup"."""

    def __init__(
        self,
        gcodes_dir: Path,
        *,
        now: float = 0.0,
        seed: int = 0,
        printer_cfg: str | None = None,
    ) -> None:
        """``printer_cfg``: a user's printer.cfg text (see :func:`sim_config.read_printer_cfg`)
        to simulate instead of the built-in machine; what it has that the simulator does not
        model is listed in ``config_warnings``."""
        self.gcodes_dir = Path(gcodes_dir)
        self.now = float(now)
        #: klippy's log file, reported in ``info`` (None: klippy started without ``-l``)
        self.log_file: str | None = None
        self.last_restart = ""  # the command of the last restart, for klippy's log
        self.output: Callable[[str], None] = _discard
        self._rng = random.Random(seed)
        self.config_warnings: list[str] = []
        if printer_cfg is None:
            self._config = sim_config.load_config(gcodes_dir=str(self.gcodes_dir))
        else:
            self._config = sim_config.load_config(
                printer_cfg,
                gcodes_dir=str(self.gcodes_dir),
                user=True,
                warnings=self.config_warnings,
            )
        self._configfile: dict[str, Any] | None = None
        self._builders: dict[str, Callable[[], dict[str, Any]]] | None = None
        self._rails = [self._config.section(f"stepper_{a}") for a in "xyz"]
        self._extruder_cfg = self._config.section("extruder")
        self._macros = {
            name.split(None, 1)[1].upper(): self._config.config[name]
            for name in self._config.sections("gcode_macro ")
        }
        self._heater_fans = [
            name.split(None, 1)[1] for name in self._config.sections("heater_fan ")
        ]
        # the physical world outlives restarts: temperatures and where the carriage is
        self._temperatures = {"heater_bed": 25.0, "extruder": 25.0}
        self._carriage = [
            self._rails[0]["position_max"] / 2.0,
            self._rails[1]["position_max"] / 2.0,
            min(20.0, self._rails[2]["position_max"]),
        ]
        self._generation = 0
        self._job_token = 0
        self._commands = self._build_commands()
        self._boot()

    # ------------------------------------------------------------------------------------------
    # boot, restart, shutdown
    # ------------------------------------------------------------------------------------------

    def _boot(self) -> None:
        """A fresh klippy process (the physical world stays as it is)."""
        self._builders = None  # they close over the parts rebuilt here
        self._generation += 1
        self._job_token += 1
        self.state = "startup"
        self.state_message = MESSAGE_STARTUP
        self._epoch = self.now
        self._next_sample = self.now + SAMPLE_TIME
        self._active: set[object] = set()
        # toolhead
        self._toolhead = Toolhead(
            self._config,
            clock=self._est,
            on_sync=lambda: self._idle.note_busy(self.now),
            carriage=self._carriage,
        )
        self._last_endstops: dict[str, str] = {}
        self._gcode = GcodeMove(self._move, self._toolhead_position)
        # heaters and fans
        self._heaters = {
            "heater_bed": Heater(
                "heater_bed",
                self._config.section("heater_bed"),
                BED,
                self._rng,
                temperature=self._temperatures["heater_bed"],
            ),
            "extruder": Heater(
                "extruder",
                self._extruder_cfg,
                HOTEND,
                self._rng,
                temperature=self._temperatures["extruder"],
            ),
        }
        self._fan_speed = 0.0
        # virtual_sdcard, print_stats, pause_resume, display_status, exclude_object
        self._print_stats = PrintStats()
        self._sd_path: str | None = None
        self._file_position = 0
        self._file_size = 0
        self._sd_active = False
        self._must_pause = False
        self._job_pending = False
        self._cmd_from_sd = False
        self._is_paused = False
        self._sd_paused = False
        self._pause_command_sent = False
        self._display_message: str | None = None
        self._m73_progress: float | None = None
        self._m73_expire = 0.0
        self._objects = ExcludeObject(self._respond_info)
        self._e_offset = 0.0
        self._idle = IdleTimeout(float(self._config.section("idle_timeout")["timeout"]))

    def finish_startup(self) -> None:
        """klippy is up: state "ready"."""
        if self.state != "startup":
            return
        self.state = "ready"
        self.state_message = MESSAGE_READY
        self._respond_info("Klipper state: Ready")

    def restart(self, firmware: bool) -> None:
        """RESTART / FIRMWARE_RESTART: a fresh machine in state "startup"."""
        self.last_restart = "FIRMWARE_RESTART" if firmware else "RESTART"
        for name, heater in self._heaters.items():
            self._temperatures[name] = heater.temperature
        self._carriage = self._toolhead.live_carriage()
        self._boot()

    def emergency_stop(self) -> None:
        """klippy's emergency_stop endpoint."""
        self._invoke_shutdown("Shutdown due to webhooks request")

    def _invoke_shutdown(self, message: str) -> None:
        if self.state == "shutdown":
            return
        was_ready = self.state == "ready"
        self.state = "shutdown"
        self.state_message = message + MESSAGE_SHUTDOWN
        for heater in self._heaters.values():
            heater.shutdown()
        self._toolhead.stop()
        if self._sd_active:
            # klippy's work handler stops after the line in progress: the print shows "paused"
            self._sd_active = False
            self._job_token += 1
            self._print_stats.note_pause(
                self.now, self._gcode.last_position[3], self._gcode.extrude_factor
            )
        self._job_pending = False
        if was_ready:
            self._respond_info("Klipper state: Shutdown")

    # ------------------------------------------------------------------------------------------
    # time
    # ------------------------------------------------------------------------------------------

    def _est(self) -> float:
        """estimated_print_time: now on the MCU's print-time clock."""
        return self.now - self._epoch

    def advance(self, now: float) -> None:
        """Integrate everything from ``self.now`` to ``now`` (never backwards)."""
        if not now > self.now:
            return
        t = self.now
        if self._next_sample <= t:
            self._next_sample = t + SAMPLE_TIME
        while t < now:
            end = min(now, t + MAX_STEP, self._next_sample)
            dt = end - t
            for name, heater in self._heaters.items():
                heater.integrate(dt, self._fan_speed if name == "extruder" else 0.0)
            t = end
            self.now = t
            if t >= self._next_sample:
                for heater in self._heaters.values():
                    heater.sample(t)
                self._next_sample = t + SAMPLE_TIME
            self._timers()
        self.now = now
        self._toolhead.queue.expire(self._est())

    def _timers(self) -> None:
        if self.state != "ready":
            return
        motion_end = self._epoch + self._toolhead.print_time
        if self._idle.update(self.now, motion_end, busy=bool(self._active)):
            self._run_now(self._config.section("idle_timeout")["gcode"])
            self._idle.state = "Idle"
            self._idle.ready_since = None
        if (
            self._m73_progress is not None
            and self.now > self._m73_expire
            and self._idle.state != "Printing"
        ):
            self._m73_progress = None

    def _throttle(self) -> Iterator[Step]:
        """Wait while more than BUFFER_TIME_HIGH of motion is planned."""
        if self._toolhead.buffered() > BUFFER_TIME_HIGH:
            yield Sleep(self._epoch + self._toolhead.print_time - BUFFER_TIME_HIGH)

    def _wait_moves(self) -> Iterator[Step]:
        end = self._epoch + self._toolhead.print_time
        if end > self.now:
            yield Sleep(end)

    # ------------------------------------------------------------------------------------------
    # G-code execution
    # ------------------------------------------------------------------------------------------

    def execute(self, script: str) -> Iterator[Step]:
        """Run ``script`` (lines separated by ``\\n``) as klippy's gcode/script does.

        Output goes to :attr:`output`; a failing line is reported as klippy does (``!! ...``)
        and raises :class:`GcodeError`, which stops the script."""
        generation = self._generation
        for text in script.split("\n"):
            if self._generation != generation:
                return  # the machine restarted under the script: klippy's process is gone
            yield from self._run_line(text)

    def _run_now(self, script: str) -> bool:
        """Run ``script`` without waiting (internal G-code: idle timeout, on_error_gcode)."""
        try:
            for _ in self.execute(script):
                pass
        except GcodeError:
            return False
        return True

    def _run_line(self, text: str) -> Generator[Step, None, None]:
        token = object()
        generation = self._generation
        command = ""
        try:
            try:
                line = parse_line(text)
            except GcodeParseError as exc:
                if self._handler(exc.command) is not None:
                    raise
                line = GcodeLine(exc.command, {}, text.strip())
            command = line.command
            handler = self._handler(command)
            if handler is None:
                self._cmd_default(line)
                return
            result = handler(line)
            if result is None:
                return
            self._active.add(token)
            for step in result:
                yield step
                if self._generation != generation:
                    raise GcodeError(self.state_message)
        except GcodeError as exc:
            if not exc.reported:
                exc.reported = True
                self._respond_error(str(exc))
            self._reset_last_position()
            raise
        except Exception as exc:  # a bug in the model: klippy shuts down, so do we
            message = f'Internal error on command:"{command}"'
            self._invoke_shutdown(message)
            self._respond_error(message)
            error = GcodeError(message)
            error.reported = True
            raise error from exc
        finally:
            self._active.discard(token)

    def _handler(self, command: str) -> Handler | None:
        entry = self._commands.get(command)
        if entry is None or (self.state != "ready" and not entry.when_not_ready):
            return None
        return entry.func

    def _cmd_default(self, line: GcodeLine) -> None:
        command = line.command
        if command == "M21":
            return
        if self.state != "ready":
            raise GcodeError(self.state_message)
        if not command:
            return
        self._respond_info(f'Unknown command:"{command}"')

    # -- output ----------------------------------------------------------------------------------

    def _respond_info(self, message: str) -> None:
        lines = [line.strip() for line in message.strip().split("\n")]
        self.output("// " + "\n// ".join(lines))

    def _respond_error(self, message: str) -> None:
        lines = message.strip().split("\n")
        if len(lines) > 1:
            self._respond_info("\n".join(lines))
        self.output(f"!! {lines[0].strip()}")

    # -- the command table ------------------------------------------------------------------
    # (built once; the handlers look the per-boot objects up when they run)

    def _build_commands(self) -> dict[str, _Command]:
        c: dict[str, _Command] = {}

        def add(
            name: str, func: Handler, help: str | None = None, *, anytime: bool = False
        ) -> None:
            c[name] = _Command(func, help, anytime)

        # gcode.py
        add("M110", lambda line: None, anytime=True)
        add("M112", self._cmd_M112, anytime=True)
        add("M115", self._cmd_M115, anytime=True)
        add(
            "RESTART",
            lambda line: self._request_restart(False),
            "Reload config file and restart host software",
            anytime=True,
        )
        add(
            "FIRMWARE_RESTART",
            lambda line: self._request_restart(True),
            "Restart firmware, host, and reload config",
            anytime=True,
        )
        add("ECHO", lambda line: self._respond_info(line.raw), anytime=True)
        add("STATUS", self._cmd_STATUS, "Report the printer status", anytime=True)
        add(
            "HELP",
            self._cmd_HELP,
            "Report the list of available extended G-Code commands",
            anytime=True,
        )
        # heaters
        add("TURN_OFF_HEATERS", self._cmd_TURN_OFF_HEATERS, "Turn off all heaters")
        add("M105", self._cmd_M105, anytime=True)
        add("TEMPERATURE_WAIT", self._cmd_TEMPERATURE_WAIT, "Wait for a temperature on a sensor")
        add(
            "SET_HEATER_TEMPERATURE",
            self._cmd_SET_HEATER_TEMPERATURE,
            "Sets a heater temperature",
        )
        add("M104", lambda line: self._cmd_M104(line, wait=False))
        add("M109", lambda line: self._cmd_M104(line, wait=True))
        add("M140", lambda line: self._cmd_M140(line, wait=False))
        add("M190", lambda line: self._cmd_M140(line, wait=True))
        # gcode_move
        for name in ("G0", "G1"):
            add(name, self._moving(lambda line: self._gcode.G1(line)))
        add("G20", self._cmd_G20)
        add("G21", lambda line: None)
        add("M82", lambda line: self._set_absolute_extrude(True))
        add("M83", lambda line: self._set_absolute_extrude(False))
        add("G90", lambda line: self._set_absolute_coord(True))
        add("G91", lambda line: self._set_absolute_coord(False))
        add("G92", lambda line: self._gcode.G92(line))
        add("M220", lambda line: self._gcode.M220(line))
        add("M221", lambda line: self._gcode.M221(line))
        add(
            "SET_GCODE_OFFSET",
            self._moving(lambda line: self._gcode.SET_GCODE_OFFSET(line)),
            "Set a virtual offset to g-code positions",
        )
        add(
            "SAVE_GCODE_STATE",
            lambda line: self._gcode.SAVE_GCODE_STATE(line),
            "Save G-Code coordinate state",
        )
        add(
            "RESTORE_GCODE_STATE",
            self._moving(lambda line: self._gcode.RESTORE_GCODE_STATE(line)),
            "Restore a previously saved G-Code state",
        )
        add("M114", lambda line: self.output(self._gcode.M114()), anytime=True)
        add(
            "GET_POSITION",
            self._cmd_GET_POSITION,
            "Return information on the current location of the toolhead",
            anytime=True,
        )
        # toolhead, homing, steppers, endstops
        add("G4", self._cmd_G4)
        add("M400", lambda line: self._wait_moves())
        add("SET_VELOCITY_LIMIT", self._cmd_SET_VELOCITY_LIMIT, "Set printer velocity limits")
        add("M204", self._cmd_M204)
        add("G28", self._cmd_G28)
        add("M18", self._cmd_M84)
        add("M84", self._cmd_M84)
        add("QUERY_ENDSTOPS", self._cmd_QUERY_ENDSTOPS, "Report on the status of each endstop")
        add("M119", self._cmd_QUERY_ENDSTOPS)
        # fan
        add("M106", self._cmd_M106)
        add("M107", lambda line: self._set_fan(0.0))
        # virtual_sdcard, print_stats
        add("M20", self._cmd_M20)
        add("M21", lambda line: self.output("SD card ok"))
        add("M23", self._cmd_M23)
        add("M24", lambda line: self._do_resume())
        add("M25", lambda line: self._do_pause())
        add("M26", self._cmd_M26)
        add("M27", self._cmd_M27)
        for name in ("M28", "M29", "M30"):
            add(name, self._cmd_sd_write)
        add(
            "SDCARD_RESET_FILE",
            self._cmd_SDCARD_RESET_FILE,
            "Clears a loaded SD File. Stops the print if necessary",
        )
        add(
            "SDCARD_PRINT_FILE",
            self._cmd_SDCARD_PRINT_FILE,
            "Loads a SD file and starts the print.  May include files in subdirectories.",
        )
        add(
            "SET_PRINT_STATS_INFO",
            self._cmd_SET_PRINT_STATS_INFO,
            "Pass slicer info like layer act and total to klipper",
        )
        # pause_resume
        add("PAUSE", self._cmd_PAUSE, "Pauses the current print")
        add("RESUME", self._cmd_RESUME, "Resumes the print from a pause")
        add(
            "CLEAR_PAUSE",
            self._cmd_CLEAR_PAUSE,
            "Clears the current paused state without resuming the print",
        )
        add("CANCEL_PRINT", self._cmd_CANCEL_PRINT, "Cancel the current print")
        # display_status, respond, idle_timeout
        add("M73", self._cmd_M73)
        add("M117", self._cmd_M117)
        add("SET_DISPLAY_TEXT", self._cmd_SET_DISPLAY_TEXT, "Set or clear the display message")
        add("M118", self._cmd_M118, anytime=True)
        add(
            "RESPOND",
            self._cmd_RESPOND,
            "Echo the message prepended with a prefix",
            anytime=True,
        )
        add("SET_IDLE_TIMEOUT", self._cmd_SET_IDLE_TIMEOUT, "Set the idle timeout in seconds")
        # exclude_object
        add(
            "EXCLUDE_OBJECT",
            lambda line: self._objects.EXCLUDE(line),
            "Cancel moves inside a specified objects",
        )
        add(
            "EXCLUDE_OBJECT_DEFINE",
            lambda line: self._objects.DEFINE(line),
            "Provides a summary of an object",
        )
        add(
            "EXCLUDE_OBJECT_START",
            lambda line: self._objects.START(line),
            "Marks the beginning the current object as labeled",
        )
        add(
            "EXCLUDE_OBJECT_END",
            lambda line: self._objects.END(line),
            "Marks the end the current object",
        )
        # gcode_macro: plain G-code bodies; rename_existing keeps the builtin as BASE_...
        for name, section in self._macros.items():
            renamed = section.get("rename_existing")
            if renamed and name in c:
                c[renamed.upper()] = attrs.evolve(c[name], help=f"Renamed builtin of '{name}'")
            body = section.get("gcode", "")
            c[name] = _Command(self._macro(body), section.get("description", "G-Code macro"))
        return c

    def _macro(self, body: str) -> Handler:
        def run(line: GcodeLine) -> Iterator[Step]:
            for text in body.split("\n"):
                yield from self._run_line(text)

        return run

    def gcode_help(self) -> dict[str, str]:
        """gcode/help: every command with a help text."""
        return {name: cmd.help for name, cmd in self._commands.items() if cmd.help is not None}

    # ------------------------------------------------------------------------------------------
    # gcode.py builtins
    # ------------------------------------------------------------------------------------------

    def _cmd_M112(self, line: GcodeLine) -> None:
        self._invoke_shutdown("Shutdown due to M112 command")

    def _cmd_M115(self, line: GcodeLine) -> None:
        self._respond_info(f"FIRMWARE_NAME:Klipper FIRMWARE_VERSION:{SOFTWARE_VERSION}")

    def _request_restart(self, firmware: bool) -> Iterator[Step]:
        if self.state == "ready":
            self._turn_off_heaters()
            self._motor_off()
            self._toolhead.dwell(0.5)
            yield from self._wait_moves()
        self.restart(firmware)

    def _cmd_STATUS(self, line: GcodeLine) -> None:
        if self.state == "ready":
            self._respond_info("Klipper state: Ready")
            return
        raise GcodeError(self.state_message.rstrip() + "\nKlipper state: Not ready")

    def _cmd_HELP(self, line: GcodeLine) -> None:
        lines = []
        if self.state != "ready":
            lines.append("Printer is not ready - not all commands available.")
        lines.append("Available extended commands:")
        for name in sorted(self._commands):
            entry = self._commands[name]
            if entry.help is not None and (self.state == "ready" or entry.when_not_ready):
                lines.append(f"{name:<10}: {entry.help}")
        self._respond_info("\n".join(lines))

    # ------------------------------------------------------------------------------------------
    # heaters
    # ------------------------------------------------------------------------------------------

    def _temperature_line(self) -> str:
        bed = self._heaters["heater_bed"]
        hotend = self._heaters["extruder"]
        return (
            f"B:{bed.smoothed:.1f} /{bed.target:.1f} T0:{hotend.smoothed:.1f} /{hotend.target:.1f}"
        )

    def _cmd_M105(self, line: GcodeLine) -> None:
        self.output(self._temperature_line())

    def _turn_off_heaters(self) -> None:
        for heater in self._heaters.values():
            heater.set_target(0.0)

    def _cmd_TURN_OFF_HEATERS(self, line: GcodeLine) -> None:
        self._turn_off_heaters()

    def _set_temperature(self, heater: Heater, degrees: float, wait: bool) -> Iterator[Step] | None:
        error = heater.check_target(degrees)
        if error is not None:
            raise GcodeError(error)
        self._toolhead.sync()
        heater.set_target(degrees)
        if wait and degrees:
            return self._wait_heater(heater)
        return None

    def _wait_heater(self, heater: Heater) -> Iterator[Step]:
        def settled(report_at: float) -> Callable[[], bool]:
            return lambda: self.state != "ready" or not heater.check_busy() or self.now >= report_at

        report_at = self.now
        while self.state == "ready" and heater.check_busy():
            if self.now >= report_at:
                self.output(self._temperature_line())
                report_at = _next_report(report_at, self.now)
            yield WaitFor(settled(report_at), f"{heater.name} temperature")

    def _cmd_M104(self, line: GcodeLine, *, wait: bool) -> Iterator[Step] | None:
        degrees = line.get_float("S", 0.0)
        index = line.get_int("T", None, minval=0)
        if index is not None and index != 0:
            if degrees <= 0.0:
                return None
            raise GcodeError("Extruder not configured")
        return self._set_temperature(self._heaters["extruder"], degrees, wait)

    def _cmd_M140(self, line: GcodeLine, *, wait: bool) -> Iterator[Step] | None:
        return self._set_temperature(self._heaters["heater_bed"], line.get_float("S", 0.0), wait)

    def _cmd_SET_HEATER_TEMPERATURE(self, line: GcodeLine) -> Iterator[Step] | None:
        name = line.get("HEATER")
        heater = self._heaters.get(name)
        if heater is None:
            raise GcodeError(f"The value '{name}' is not valid for HEATER")
        return self._set_temperature(heater, line.get_float("TARGET", 0.0), False)

    def _cmd_TEMPERATURE_WAIT(self, line: GcodeLine) -> Iterator[Step]:
        name = line.get("SENSOR")
        heater = self._heaters.get(name)
        if heater is None:
            raise GcodeError(f"Unknown sensor '{name}'")
        low = line.get_float("MINIMUM", -math.inf)
        high = line.get_float("MAXIMUM", math.inf, above=low)
        if low == -math.inf and high == math.inf:
            raise GcodeError("Error on 'TEMPERATURE_WAIT': missing MINIMUM or MAXIMUM.")

        def reached() -> bool:
            return low <= heater.smoothed <= high

        def done(report_at: float) -> Callable[[], bool]:
            return lambda: self.state != "ready" or reached() or self.now >= report_at

        report_at = self.now
        while self.state == "ready" and not reached():
            if self.now >= report_at:
                self.output(self._temperature_line())
                report_at = _next_report(report_at, self.now)
            yield WaitFor(done(report_at), f"{name} temperature")

    # ------------------------------------------------------------------------------------------
    # fans
    # ------------------------------------------------------------------------------------------

    def _set_fan(self, value: float) -> None:
        cfg = self._config.section("fan")
        if value < cfg["off_below"]:
            value = 0.0
        self._toolhead.sync()
        self._fan_speed = max(0.0, min(cfg["max_power"], value * cfg["max_power"]))

    def _cmd_M106(self, line: GcodeLine) -> None:
        self._set_fan(line.get_float("S", 255.0, minval=0.0) / 255.0)

    def _heater_fan_status(self, name: str) -> Callable[[], dict[str, Any]]:
        return lambda: {"speed": self._heater_fan_speed(name), "rpm": None}

    def _heater_fan_speed(self, name: str) -> float:
        cfg = self._config.section(f"heater_fan {name}")
        for heater_name in cfg["heater"]:
            heater = self._heaters.get(heater_name)
            if heater is not None and (heater.target or heater.smoothed > cfg["heater_temp"]):
                return float(cfg["fan_speed"])
        return 0.0

    # ------------------------------------------------------------------------------------------
    # gcode_move
    # ------------------------------------------------------------------------------------------

    def _reset_last_position(self) -> None:
        if self.state == "ready":
            self._gcode.reset_last_position()

    def _toolhead_position(self) -> list[float]:
        """The toolhead's position in gcode_move's terms (skipped extrusion added back)."""
        position = list(self._toolhead.pos)
        position[3] += self._e_offset
        return position

    def _move(self, newpos: list[float], speed: float, previous_e: float) -> None:
        """Where G-code moves go: the toolhead, unless the current object is excluded."""
        if self._objects.skipping:
            self._e_offset += newpos[3] - previous_e
        else:
            target = list(newpos)
            target[3] -= self._e_offset
            self._toolhead.move(target, speed, can_extrude=self._heaters["extruder"].can_extrude)
        self._print_stats.note_extrusion(self.now, newpos[3], self._gcode.extrude_factor)

    def _moving(self, command: Callable[[GcodeLine], None]) -> Handler:
        """A gcode_move command that may move: then it waits for room in the buffer."""

        def run(line: GcodeLine) -> Iterator[Step]:
            command(line)
            return self._throttle()

        return run

    def _cmd_G20(self, line: GcodeLine) -> None:
        raise GcodeError("Machine does not support G20 (inches) command")

    def _set_absolute_coord(self, value: bool) -> None:
        self._gcode.absolute_coord = value

    def _set_absolute_extrude(self, value: bool) -> None:
        self._gcode.absolute_extrude = value

    def _cmd_GET_POSITION(self, line: GcodeLine) -> None:
        names = ("stepper_x", "stepper_y", "stepper_z")
        steps = []
        pos = self._toolhead.pos
        for rail, name, value in zip(self._rails, names, pos, strict=False):
            step_distance = rail["rotation_distance"] / (
                rail["full_steps_per_rotation"] * rail["microsteps"]
            )
            steps.append(f"{name}:{round(value / step_distance)}")

        def fmt(axes: str, values: list[float]) -> str:
            return " ".join(f"{a}:{v:.6f}" for a, v in zip(axes, values, strict=False))

        stepper = " ".join(f"{n}:{v:.6f}" for n, v in zip(names, pos, strict=False))
        self._respond_info(
            f"mcu: {' '.join(steps)}\n"
            f"stepper: {stepper}\n"
            f"kinematic: {fmt('XYZ', pos)}\n"
            f"toolhead: {fmt('XYZE', pos)}\n"
            f"gcode: {fmt('XYZE', self._gcode.last_position)}\n"
            f"gcode base: {fmt('XYZE', self._gcode.base_position)}\n"
            f"gcode homing: {fmt('XYZ', self._gcode.homing_position)}"
        )

    # ------------------------------------------------------------------------------------------
    # toolhead: moves, homing, limits
    # ------------------------------------------------------------------------------------------

    def _cmd_G4(self, line: GcodeLine) -> Iterator[Step]:
        self._toolhead.dwell(line.get_float("P", 0.0, minval=0.0) / 1000.0)
        return self._throttle()

    def _cmd_SET_VELOCITY_LIMIT(self, line: GcodeLine) -> None:
        velocity = line.get_float("VELOCITY", None, above=0.0)
        accel = line.get_float("ACCEL", None, above=0.0)
        corner = line.get_float("SQUARE_CORNER_VELOCITY", None, minval=0.0)
        cruise = line.get_float("MINIMUM_CRUISE_RATIO", None, minval=0.0, below=1.0)
        to_decel = line.get_float("ACCEL_TO_DECEL", None, above=0.0)
        th = self._toolhead
        if velocity is not None:
            th.max_velocity = velocity
        if accel is not None:
            th.max_accel = accel
        if corner is not None:
            th.square_corner_velocity = corner
        if cruise is not None:
            th.min_cruise_ratio = cruise
        elif to_decel is not None:
            th.min_cruise_ratio = max(0.0, 1.0 - min(1.0, to_decel / th.max_accel))
        if all(v is None for v in (velocity, accel, corner, cruise, to_decel)):
            self._respond_info(
                f"max_velocity: {th.max_velocity:.6f}\n"
                f"max_accel: {th.max_accel:.6f}\n"
                f"minimum_cruise_ratio: {th.min_cruise_ratio:.6f}\n"
                f"square_corner_velocity: {th.square_corner_velocity:.6f}"
            )

    def _cmd_M204(self, line: GcodeLine) -> None:
        accel = line.get_float("S", None, above=0.0)
        if accel is None:
            p = line.get_float("P", None, above=0.0)
            t = line.get_float("T", None, above=0.0)
            if p is None or t is None:
                self._respond_info(f'Invalid M204 command "{line.raw}"')
                return
            accel = min(p, t)
        self._toolhead.max_accel = accel

    def _cmd_G28(self, line: GcodeLine) -> Iterator[Step]:
        axes = [index for index, axis in enumerate("XYZ") if line.get(axis, None) is not None]
        return self._home(axes or [0, 1, 2])

    def _home(self, axes: list[int]) -> Iterator[Step]:
        self._toolhead.home(axes)
        self._gcode.homed(axes)
        yield from self._wait_moves()  # homing is done when the carriages touched

    def _motor_off(self) -> None:
        self._toolhead.motor_off(DISABLE_STALL_TIME)

    def _cmd_M84(self, line: GcodeLine) -> None:
        self._motor_off()

    def query_endstops(self) -> dict[str, str]:
        """query_endstops/status: an endstop triggers with its carriage on it."""
        self._last_endstops = self._toolhead.endstops()
        return dict(self._last_endstops)

    def _cmd_QUERY_ENDSTOPS(self, line: GcodeLine) -> None:
        self._toolhead.sync()
        self.output(" ".join(f"{name}:{state}" for name, state in self.query_endstops().items()))

    # ------------------------------------------------------------------------------------------
    # virtual_sdcard and print jobs
    # ------------------------------------------------------------------------------------------

    def _file_list(self, subdirs: bool) -> list[tuple[str, int]]:
        root = self.gcodes_dir
        found: list[tuple[str, int]] = []
        try:
            if subdirs:
                for dirpath, _, files in os.walk(root, followlinks=True):
                    for name in files:
                        if name.rpartition(".")[2] not in VALID_GCODE_EXTS:
                            continue
                        full = Path(dirpath) / name
                        found.append((str(full.relative_to(root)), full.stat().st_size))
            else:
                for entry in root.iterdir():
                    if not entry.name.startswith(".") and entry.is_file():
                        found.append((entry.name, entry.stat().st_size))
        except OSError:
            if not subdirs:
                raise GcodeError("Unable to get file list") from None
        return sorted(found, key=lambda f: f[0].lower())

    def _load_file(self, filename: str, subdirs: bool) -> None:
        files = dict(self._file_list(subdirs))
        name = filename
        if name not in files:
            by_lower = {f.lower(): f for f in files}
            if name.lower() not in by_lower:
                raise GcodeError(f'Unable to open file "{filename}"')
            name = by_lower[name.lower()]
        path = self.gcodes_dir / name
        try:
            size = path.stat().st_size
        except OSError:
            raise GcodeError(f'Unable to open file "{filename}"') from None
        self.output(f"File opened:{filename} Size:{size}")
        self.output("File selected")
        self._sd_path = os.path.join(os.path.normpath(self.gcodes_dir), name)
        self._file_position = 0
        self._file_size = size
        self._print_stats.set_current_file(filename)

    def _stop_job(self) -> None:
        """Whatever job generator is out there stops at its next step."""
        self._job_token += 1
        self._sd_active = False
        self._job_pending = False
        self._must_pause = False

    def _reset_file(self) -> None:
        if self._sd_path is not None:
            self._stop_job()
            self._sd_path = None
        self._file_position = self._file_size = 0
        self._print_stats.reset()
        self._objects.reset()

    def _do_pause(self) -> None:
        if self._sd_active:
            self._must_pause = True  # the job stops (and notes the pause) after its line

    def _do_resume(self) -> None:
        if self._sd_active:
            if self._must_pause:
                self._must_pause = False  # a pause that had not taken effect yet: withdrawn
                return
            raise GcodeError("SD busy")
        if self._sd_path is None:
            return
        self._must_pause = False
        self._sd_active = True
        self._job_pending = True
        self._job_token += 1
        self._print_stats.note_start(self.now, self._gcode.last_position[3])

    def _do_cancel(self) -> None:
        if self._sd_path is not None:
            self._stop_job()
            self._sd_path = None
            self._print_stats.note_finish(self.now, "cancelled")
        self._file_position = self._file_size = 0

    def _cmd_sd_write(self, line: GcodeLine) -> None:
        raise GcodeError("SD write not supported")

    def _cmd_SDCARD_RESET_FILE(self, line: GcodeLine) -> None:
        if self._cmd_from_sd:
            raise GcodeError("SDCARD_RESET_FILE cannot be run from the sdcard")
        self._reset_file()

    def _cmd_SDCARD_PRINT_FILE(self, line: GcodeLine) -> None:
        if self._sd_active:
            raise GcodeError("SD busy")
        self._reset_file()
        filename = line.get("FILENAME")
        if filename.startswith("/"):
            filename = filename[1:]
        self._load_file(filename, subdirs=True)
        self._do_resume()

    def _cmd_M20(self, line: GcodeLine) -> None:
        files = self._file_list(subdirs=False)
        self.output("Begin file list")
        for name, size in files:
            self.output(f"{name} {size}")
        self.output("End file list")

    def _cmd_M23(self, line: GcodeLine) -> None:
        if self._sd_active:
            raise GcodeError("SD busy")
        self._reset_file()
        filename = line.raw_params().strip()
        if filename.startswith("/"):
            filename = filename[1:]
        self._load_file(filename, subdirs=False)

    def _cmd_M26(self, line: GcodeLine) -> None:
        if self._sd_active:
            raise GcodeError("SD busy")
        self._file_position = line.get_int("S", minval=0)

    def _cmd_M27(self, line: GcodeLine) -> None:
        if self._sd_path is None:
            self.output("Not SD printing.")
            return
        self.output(f"SD printing byte {self._file_position}/{self._file_size}")

    def _cmd_SET_PRINT_STATS_INFO(self, line: GcodeLine) -> None:
        stats = self._print_stats
        total = line.get_int("TOTAL_LAYER", stats.total_layer, minval=0)
        current = line.get_int("CURRENT_LAYER", stats.current_layer, minval=0)
        stats.set_info(total, current)

    def job(self) -> Iterator[Step] | None:
        """The running print's driver: a new generator the first time it is asked after a
        print starts or resumes, else None."""
        if not self._job_pending or self.state != "ready":
            return None
        self._job_pending = False
        return self._work(self._job_token)

    def _work(self, token: int) -> Iterator[Step]:
        """virtual_sdcard's work handler: the file's lines from ``file_position`` on."""
        if token != self._job_token or self._sd_path is None:
            return
        try:
            handle = open(self._sd_path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            self._job_failed(token, f'Unable to open file "{self._sd_path}"')
            return
        with handle:
            handle.seek(self._file_position)
            while token == self._job_token:
                if self._must_pause:
                    self._sd_active = False
                    self._print_stats.note_pause(
                        self.now, self._gcode.last_position[3], self._gcode.extrude_factor
                    )
                    return
                try:
                    data = handle.readline()
                except OSError:
                    self._job_failed(token, "Unable to read file")
                    return
                if not data:
                    self._sd_path = None
                    self._sd_active = False
                    self.output("Done printing file")
                    self._print_stats.note_finish(self.now, "complete")
                    return
                next_position = self._file_position + len(data)
                self._cmd_from_sd = True
                steps = self._run_line(data.decode("utf-8", "replace").rstrip("\n"))
                try:
                    for step in steps:
                        yield step
                        if token != self._job_token:
                            return  # cancelled, reset, shut down or restarted meanwhile
                except GcodeError as exc:
                    if token == self._job_token:
                        self._cmd_from_sd = False
                        self._job_failed(token, str(exc))
                    return
                finally:
                    steps.close()
                    self._cmd_from_sd = False
                if token != self._job_token:
                    return  # the line itself ended the job (CANCEL_PRINT, M112, RESTART)
                self._file_position = next_position
                yield LineDone()

    def _job_failed(self, token: int, message: str) -> None:
        if token != self._job_token:
            return
        self._run_now(self._config.section("virtual_sdcard").get("on_error_gcode", ""))
        self._sd_active = False
        self._print_stats.note_finish(self.now, "error", message)

    # ------------------------------------------------------------------------------------------
    # pause_resume
    # ------------------------------------------------------------------------------------------

    def _cmd_PAUSE(self, line: GcodeLine) -> None:
        if self._is_paused:
            self._respond_info("Print already paused")
            return
        if not self._pause_command_sent:
            if self._sd_active:
                self._sd_paused = True
                self._do_pause()
            else:
                self._sd_paused = False
                self._respond_info("action:paused")
            self._pause_command_sent = True
        self._gcode.save_state("PAUSE_STATE")
        self._is_paused = True

    def _cmd_RESUME(self, line: GcodeLine) -> Iterator[Step]:
        if not self._is_paused:
            self._respond_info("Print is not paused, resume aborted")
            return
        recover = float(self._config.section("pause_resume")["recover_velocity"])
        velocity = line.get_float("VELOCITY", recover)
        yield from self._run_line(
            f"RESTORE_GCODE_STATE NAME=PAUSE_STATE MOVE=1 MOVE_SPEED={velocity:.4f}"
        )
        if self._sd_paused:
            self._do_resume()
            self._sd_paused = False
        else:
            self._respond_info("action:resumed")
        self._pause_command_sent = False
        self._is_paused = False

    def _cmd_CLEAR_PAUSE(self, line: GcodeLine) -> None:
        self._is_paused = self._pause_command_sent = False

    def _cmd_CANCEL_PRINT(self, line: GcodeLine) -> None:
        if self._sd_active or self._sd_paused:
            self._do_cancel()
        else:
            self._respond_info("action:cancel")
        self._cmd_CLEAR_PAUSE(line)

    def _endpoint(self, script: str) -> None:
        for _ in self.execute(script):
            pass  # the endpoints run their macro at once; waits inside it are not honoured

    def pause(self) -> None:
        """pause_resume/pause: runs PAUSE. Raises GcodeError where klippy errors."""
        self._endpoint("PAUSE")

    def resume(self) -> None:
        """pause_resume/resume: runs RESUME."""
        self._endpoint("RESUME")

    def cancel(self) -> None:
        """pause_resume/cancel: runs CANCEL_PRINT."""
        self._endpoint("CANCEL_PRINT")

    # ------------------------------------------------------------------------------------------
    # display_status, respond, idle_timeout, exclude_object
    # ------------------------------------------------------------------------------------------

    def _cmd_M73(self, line: GcodeLine) -> None:
        progress = line.get_float("P", None)
        if progress is not None:
            self._m73_progress = min(1.0, max(0.0, progress / 100.0))
            self._m73_expire = self.now + M73_TIMEOUT

    def _cmd_M117(self, line: GcodeLine) -> None:
        self._display_message = line.raw_params() or None

    def _cmd_SET_DISPLAY_TEXT(self, line: GcodeLine) -> None:
        self._display_message = line.get("MSG", None)

    def _cmd_M118(self, line: GcodeLine) -> None:
        prefix = self._config.section("respond")["default_prefix"]
        self.output(f"{prefix} {line.raw_params()}")

    def _cmd_RESPOND(self, line: GcodeLine) -> None:
        prefix = str(self._config.section("respond")["default_prefix"])
        respond_type = line.get("TYPE", None)
        no_space = False
        if respond_type is not None:
            kind = respond_type.lower()
            if kind in _RESPOND_TYPES:
                prefix = _RESPOND_TYPES[kind]
            elif kind == "echo_no_space":
                prefix = "echo:"
                no_space = True
            else:
                raise GcodeError(
                    f"RESPOND TYPE '{kind}' is invalid. Must be one of 'echo', 'command', or "
                    "'error'"
                )
        prefix = line.get("PREFIX", prefix)
        message = line.get("MSG", "")
        self.output(f"{prefix}{message}" if no_space else f"{prefix} {message}")

    def _cmd_SET_IDLE_TIMEOUT(self, line: GcodeLine) -> None:
        timeout = line.get_float("TIMEOUT", self._idle.timeout, above=0.0)
        self._idle.timeout = timeout
        self._respond_info(f"idle_timeout: Timeout set to {timeout:.2f} s")
        if self._idle.state == "Ready":
            self._idle.ready_since = self.now

    # ------------------------------------------------------------------------------------------
    # the API: info, objects
    # ------------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """klippy's ``info`` result."""
        data_dir = self.gcodes_dir.parent
        return {
            "state": self.state,
            "state_message": self.state_message,
            "hostname": "trioprint-sim",
            "klipper_path": str(Path(__file__).resolve().parent),
            "python_path": sys.executable,
            "process_id": os.getpid(),
            "user_id": os.getuid(),
            "group_id": os.getgid(),
            "log_file": self.log_file,
            "config_file": str(data_dir / "config" / "printer.cfg"),
            "software_version": SOFTWARE_VERSION,
            "cpu_info": "1 core trioprint simulated CPU",
        }

    def _status_builders(self) -> dict[str, Callable[[], dict[str, Any]]]:
        """One status function per object (built once per boot: they close over its parts)."""
        if self._builders is None:
            self._builders = self._make_status_builders()
        return self._builders

    def _make_status_builders(self) -> dict[str, Callable[[], dict[str, Any]]]:
        builders: dict[str, Callable[[], dict[str, Any]]] = {
            "gcode": self._status_gcode,
            "webhooks": lambda: {"state": self.state, "state_message": self.state_message},
            "configfile": self._status_configfile,
            "mcu": self._status_mcu,
            "heaters": lambda: {
                "available_heaters": ["heater_bed", "extruder"],
                "available_sensors": ["heater_bed", "extruder"],
                "available_monitors": [],
            },
            "heater_bed": self._heaters["heater_bed"].status,
        }
        for name in self._heater_fans:
            builders[f"heater_fan {name}"] = self._heater_fan_status(name)
        builders.update(
            {
                "fan": lambda: {"speed": float(self._fan_speed), "rpm": None},
                "display_status": self._status_display,
                "pause_resume": lambda: {"is_paused": self._is_paused},
                "gcode_move": self._gcode.status,
                "print_stats": lambda: self._print_stats.status(self.now),
                "virtual_sdcard": self._status_virtual_sdcard,
                "idle_timeout": lambda: self._idle.status(self.now),
            }
        )
        for name in self._macros:
            builders[f"gcode_macro {name}"] = _no_fields
        builders.update(
            {
                "exclude_object": self._objects.status,
                "query_endstops": lambda: {"last_query": dict(self._last_endstops)},
                "stepper_enable": lambda: {"steppers": dict(self._toolhead.steppers)},
                "motion_report": self._status_motion_report,
                "toolhead": self._toolhead.status,
                "extruder": self._status_extruder,
                "system_stats": self._status_system_stats,
                "manual_probe": lambda: {
                    "is_active": False,
                    "z_position": None,
                    "z_position_lower": None,
                    "z_position_upper": None,
                },
            }
        )
        return builders

    def object_names(self) -> list[str]:
        """``objects/list``."""
        return list(self._status_builders())

    def query(self, objects: Mapping[str, list[str] | None]) -> dict[str, dict[str, Any]]:
        """``objects/query`` at ``self.now``: an unknown object is ``{}``, None means all."""
        builders = self._status_builders()
        result: dict[str, dict[str, Any]] = {}
        for name, fields in objects.items():
            builder = builders.get(name)
            if builder is None:
                result[name] = {}
                continue
            status = builder()
            if fields is None:
                result[name] = status
            else:
                result[name] = {key: status[key] for key in fields if key in status}
        return result

    def _status_gcode(self) -> dict[str, Any]:
        commands: dict[str, dict[str, str]] = {}
        for name, entry in self._commands.items():
            if self.state == "ready" or entry.when_not_ready:
                commands[name] = {"help": entry.help} if entry.help is not None else {}
        return {"commands": commands}

    def _status_configfile(self) -> dict[str, Any]:
        # The config never changes: it is copied once, and shared by every query result
        # (results are encoded or compared, never changed in place).
        if self._configfile is None:
            self._configfile = {
                "config": copy.deepcopy(self._config.config),
                "settings": copy.deepcopy(self._config.settings),
                "save_config_pending": False,
                "save_config_pending_items": {},
                "warnings": [],
            }
        return self._configfile

    def _status_mcu(self) -> dict[str, Any]:
        uptime = max(self.now - self._epoch, 0.0)
        sent = int(uptime * 40)
        return {
            "mcu_build_versions": "gcc: (GCC) 5.4.0 binutils: (GNU Binutils) 2.26.20160125",
            "mcu_constants": dict(_MCU_CONSTANTS),
            "mcu_version": SOFTWARE_VERSION,
            "last_stats": {
                "bytes_invalid": 0,
                "bytes_read": 2000 + sent * 6,
                "bytes_retransmit": 0,
                "bytes_write": 500 + sent * 3,
                "freq": 16000000,
                "mcu_awake": 0.004,
                "mcu_task_avg": 0.000012,
                "mcu_task_stddev": 0.000009,
                "ready_bytes": 0,
                "receive_seq": 30 + sent,
                "retransmit_seq": 0,
                "rto": 0.025,
                "rttvar": 0.000125,
                "send_seq": 30 + sent,
                "srtt": 0.0005,
                "upcoming_bytes": 0,
            },
        }

    def _status_display(self) -> dict[str, Any]:
        progress = self._m73_progress
        if progress is None:
            progress = self._sd_progress()
        return {"progress": float(progress), "message": self._display_message}

    def _sd_progress(self) -> float:
        return self._file_position / self._file_size if self._file_size else 0.0

    def _status_virtual_sdcard(self) -> dict[str, Any]:
        return {
            "file_path": self._sd_path,
            "progress": float(self._sd_progress()),
            "is_active": self._sd_active,
            "file_position": self._file_position,
            "file_size": self._file_size,
        }

    def _status_motion_report(self) -> dict[str, Any]:
        position, velocity, e_velocity = self._toolhead.live()
        return {
            "live_position": list(position),
            "live_velocity": float(velocity),
            "live_extruder_velocity": float(e_velocity),
            "steppers": ["extruder", "stepper_x", "stepper_y", "stepper_z"],
            "trapq": ["extruder", "toolhead"],
        }

    def _status_extruder(self) -> dict[str, Any]:
        heater = self._heaters["extruder"]
        return {
            **heater.status(),
            "can_extrude": heater.can_extrude,
            "pressure_advance": float(self._extruder_cfg["pressure_advance"]),
            "smooth_time": float(self._extruder_cfg["pressure_advance_smooth_time"]),
            "motion_queue": None,
        }

    def _status_system_stats(self) -> dict[str, Any]:
        uptime = max(self.now - self._epoch, 0.0)
        busy = 0.3 if self._sd_active else 0.05
        return {
            "sysload": round(busy + 0.02 * math.sin(uptime / 60.0), 2),
            "cputime": round(1.0 + uptime * 0.02, 3),
            "memavail": 1_843_200,
        }
