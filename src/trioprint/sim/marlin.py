"""A simulated Marlin: the firmware's serial protocol and G-code as a plain object.

Pure (no trio, no I/O): time is an argument. ``feed(data, now)`` hands it bytes from the host,
``advance(now)`` lets time pass, ``read()`` takes what it wrote back, and ``next_wakeup()``
says when something is due next (a block ending, a report, a heater sample)::

    sim = MarlinSim()
    sim.feed(b"N1 M115*39\\n", now=0.0)
    sim.read()  # b"FIRMWARE_NAME:Marlin ...\\nCap:...\\nok\\n"

As Marlin: received lines wait in the receive buffer until the command queue (``BUFSIZE``
slots) has room, then are checked (line number, checksum: an error answers
``Error:<why>, Last Line: N``, ``Resend: N+1`` and ``ok`` and drops the rest of the receive
buffer) and queued; the queue runs one command at a time, each answered ``ok`` when it is done
(a move when it is in the planner, which has ``planner_depth`` blocks that run for their real
time). A command that blocks (G28, G4, M400, a move into a full planner) says
``echo:busy: processing`` every ``keepalive_interval``; M109 / M190 print the temperatures
every second instead. The emergency parser acts on M112 (kill: ``Error:Printer halted.
kill() called!`` and nothing more until :meth:`reset`) and M108 (ends a heating wait) as soon
as they are received. Autoreports: M155 S<n> (temperatures), M154 S<n> (position).

Fault injection for tests: :meth:`drop_next_ok`, :meth:`garble_next_line`,
:meth:`request_resend`, :meth:`go_silent`, :meth:`reset`, :meth:`thermal_error` (MAXTEMP ...),
and random rates in ``MarlinOptions.faults``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Generator
from typing import Final

import attrs

from .marlin_parts import (
    BED_OVERSHOOT,
    HOTEND_OVERSHOOT,
    Checked,
    LineError,
    MarlinOptions,
    Planner,
    check_line,
    heater_states,
    make_heaters,
    parse_words,
    strip_comment,
)
from .motion import Position
from .thermal import SAMPLE_TIME, Heater

KILLED: Final = "Error:Printer halted. kill() called!"
BUSY: Final = "echo:busy: processing"
#: how many accepted commands :attr:`MarlinSim.executed` keeps
HISTORY: Final = 100_000
_EMERGENCY: Final = ("M112", "M108", "M410")
_THERMAL_ERRORS: Final = {
    "MAXTEMP": "MAXTEMP triggered",
    "MINTEMP": "MINTEMP triggered",
    "RUNAWAY": "Thermal Runaway",
}


@attrs.define
class Wait:
    """What a running command waits for: ``ready()``, re-checked at every wakeup."""

    ready: Callable[[], bool]
    #: keepalive ``busy: processing`` while waiting (not for the heating waits)
    busy: bool = True
    #: a time at which ``ready`` may change without any other event
    deadline: float | None = None


Command = Generator[Wait, None, bool]
Words = dict[str, float]


class MarlinSim:
    """The firmware. ``executed`` lists the accepted commands, in the order they ran."""

    def __init__(self, options: MarlinOptions | None = None, *, now: float = 0.0) -> None:
        self.options = options or MarlinOptions()
        self.time = now
        self._out: list[str] = []
        self._fault_rng = random.Random(self.options.faults.seed)
        self._rx = bytearray()
        self._silent_until: float | None = None
        self._silent = False
        self._power_on(now)

    # -- state ---------------------------------------------------------------------------------

    def _power_on(self, now: float) -> None:
        options = self.options
        self.halted = False
        self.last_line = 0
        self._lines: deque[str] = deque()
        self._rx.clear()
        self._commands: deque[Checked] = deque()
        self._running: Command | None = None
        self._wait: Wait | None = None
        self._busy_next: float | None = None
        self._drop_oks = 0
        self._garble = 0
        self._resends = 0
        self._break_wait = False
        self.hotend, self.bed = make_heaters(options)
        self._next_sample = now
        self.planner = Planner(options)
        self.position: list[float] = [*options.carriage, 0.0]
        self.homed: set[int] = set()
        self.relative = False
        self.relative_e = False
        self.feedrate = 1500.0 / 60.0
        self.fan_speed = 0.0
        self.keepalive = options.keepalive_interval
        self.temp_interval = 0.0
        self.pos_interval = 0.0
        self._next_temp_report = math.inf
        self._next_pos_report = math.inf
        self.executed: deque[Checked] = deque(maxlen=HISTORY)
        self.message = ""

    def capabilities(self) -> dict[str, bool]:
        caps = dict(self.options.capabilities)
        caps["ADVANCED_OK"] = self.options.advanced_ok
        return caps

    def live_position(self) -> Position:
        return self.planner.live(self.time)

    # -- the host side -------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> None:
        """Bytes from the host at ``now``."""
        self.advance(now)
        if self.halted or self._silent:
            return
        for byte in data:
            if byte in (10, 13):
                if self._rx:
                    self._line_received(self._rx.decode("latin-1"))
                    self._rx.clear()
            elif len(self._rx) < self.options.rx_buffer:
                self._rx.append(byte)
        self._run()

    def read(self) -> bytes:
        """What the firmware wrote since the last call."""
        if not self._out:
            return b""
        data = "".join(f"{line}\n" for line in self._out).encode("latin-1", "replace")
        self._out.clear()
        return data

    def _emit(self, line: str) -> None:
        if not self._silent:
            self._out.append(line)

    def _line_received(self, raw: str) -> None:
        if self._emergency(raw):
            return
        if sum(len(line) + 1 for line in self._lines) + len(raw) > self.options.rx_buffer:
            return  # the receive buffer overflowed: the line is lost
        self._lines.append(raw)

    def _emergency(self, raw: str) -> bool:
        """The emergency parser: M112 and M108 act on receipt. True if the line is consumed."""
        if not self.options.capabilities.get("EMERGENCY_PARSER", False):
            return False
        words = strip_comment(raw).split("*")[0].split()
        if words and words[0].startswith("N"):
            words = words[1:]
        code = words[0].upper() if words else ""
        if code not in _EMERGENCY:
            return False
        if code == "M112":
            self.kill()
            return True
        self._break_wait = True  # M108 / M410 still run in order, answered ok
        return False

    # -- time ----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Let time pass up to ``now``: heaters, planner, waits, reports."""
        while True:
            self._run()
            due = self._next_event()
            if due is None or due > now:
                break
            self._to(max(due, self.time))
        self._to(max(now, self.time))
        self._run()

    def next_wakeup(self) -> float | None:
        """The next time :meth:`advance` has something to do (the heaters sample 3 times a s)."""
        return self._next_event()

    def _next_event(self) -> float | None:
        times = [self._next_sample, self._next_temp_report, self._next_pos_report]
        if self._silent_until is not None:
            times.append(self._silent_until)
        if not self.halted:
            if (end := self.planner.next_end(self.time)) is not None:
                times.append(end)
            if self._wait is not None:
                if self._wait.deadline is not None:
                    times.append(self._wait.deadline)
                if self._busy_next is not None:
                    times.append(self._busy_next)
        future = [t for t in times if t > self.time]
        return min(future) if future else None

    def _to(self, t: float) -> None:
        """Move the clock to ``t`` (no later than the next event), sampling the heaters."""
        if t > self.time:
            for heater in (self.hotend, self.bed):
                fan = self.fan_speed if heater is self.hotend else 0.0
                heater.integrate(t - self.time, fan)
            self.time = t
        if self.time >= self._next_sample:
            for heater in (self.hotend, self.bed):
                heater.sample(self.time)
            self._next_sample = self.time + SAMPLE_TIME
        if self._silent_until is not None and self.time >= self._silent_until:
            self._silent_until = None
            self._silent = False
        if self.halted:
            return
        if self.time >= self._next_temp_report:
            self._emit(heater_states(self.hotend, self.bed))
            self._next_temp_report = self.time + self.temp_interval
        if self.time >= self._next_pos_report:
            self._emit(self._position_report(self.live_position()))
            self._next_pos_report = self.time + self.pos_interval
        if self._busy_next is not None and self.time >= self._busy_next:
            self._emit(BUSY)
            self._busy_next = self.time + self.keepalive

    # -- the command queue ---------------------------------------------------------------------

    def _run(self) -> None:
        """Run commands until one blocks or none is left."""
        while not self.halted and not self._silent:
            if self._running is None:
                self._fill()
                if not self._commands:
                    return
                self._running = self._execute(self._commands[0].command)
                self._wait = None
            elif self._wait is not None and not self._wait.ready():
                return
            try:
                self._wait = next(self._running)
            except StopIteration as done:
                self._finish(bool(done.value))
                continue
            if self._wait.busy and self.keepalive > 0:
                if self._busy_next is None:
                    self._busy_next = self.time + self.keepalive
            else:
                self._busy_next = None

    def _finish(self, send_ok: bool) -> None:
        command = self._commands[0]
        if send_ok and not self.halted:
            self._ok(command.number)  # its slot is still taken (Marlin frees it after the ok)
        self._commands.popleft()
        self.executed.append(command)
        self._running = None
        self._wait = None
        self._busy_next = None

    def _ok(self, number: int | None, extra: str = "", *, plain: bool = False) -> None:
        if self._drop_oks or self._chance(self.options.faults.drop_ok):
            self._drop_oks = max(self._drop_oks - 1, 0)
            return
        text = "ok"
        if self.options.advanced_ok and not extra and not plain:
            if number is not None:
                text += f" N{number}"
            free = self.options.command_buffer - len(self._commands)
            text += f" P{self.planner.free(self.time)} B{max(free, 0)}"
        self._emit(text + extra)

    def _fill(self) -> None:
        """Check received lines into the command queue while it has room."""
        while self._lines and len(self._commands) < self.options.command_buffer:
            raw = strip_comment(self._lines.popleft())
            if not raw:
                continue
            if raw.startswith("N") and self._garble_now():
                raw = _garbled(raw)
            checked = check_line(raw, self.last_line)
            if isinstance(checked, Checked) and checked.number is not None and self._resend_now():
                checked = LineError("")
            if isinstance(checked, LineError):
                self._line_error(checked.message)
                continue
            if checked.number is not None:
                self.last_line = checked.number
            if checked.command:
                self._commands.append(checked)

    def _line_error(self, message: str) -> None:
        if message:
            self._emit(f"Error:{message}, Last Line: {self.last_line}")
        self._lines.clear()  # Marlin drops what the receive buffer holds
        self._rx.clear()
        self._emit(f"Resend: {self.last_line + 1}")
        self._ok(None, plain=True)

    def _chance(self, rate: float) -> bool:
        return rate > 0.0 and self._fault_rng.random() < rate

    def _garble_now(self) -> bool:
        if self._garble:
            self._garble -= 1
            return True
        return self._chance(self.options.faults.garble)

    def _resend_now(self) -> bool:
        if self._resends:
            self._resends -= 1
            return True
        return self._chance(self.options.faults.resend)

    # -- fault injection -----------------------------------------------------------------------

    def drop_next_ok(self) -> None:
        """The next ``ok`` is never sent (as if lost on the wire)."""
        self._drop_oks += 1

    def garble_next_line(self) -> None:
        """The next numbered line is corrupted as it is received (a checksum error follows)."""
        self._garble += 1

    def request_resend(self) -> None:
        """The next numbered line is refused with ``Resend: N`` (as after line noise)."""
        self._resends += 1

    def go_silent(self, now: float, duration: float | None = None) -> None:
        """Hang for ``duration`` seconds (forever if None): nothing read, run or written."""
        self.advance(now)
        self._silent = True
        self._silent_until = None if duration is None else now + duration

    def reset(self, now: float) -> None:
        """A firmware restart (reset button, DTR): all state lost, the boot banner printed."""
        self.advance(now)
        self._silent = False
        self._silent_until = None
        self._power_on(now)
        self.boot()

    def boot(self) -> None:
        """The lines Marlin prints when it starts."""
        self._emit("start")
        self._emit(f"echo:{self.options.firmware_name}")
        self._emit("echo: Last Updated: simulated | Author: trioprint")
        self._emit("echo:Hardcoded Default Settings Loaded")
        steps = self.options.steps_per_mm
        self._emit(f"echo:  M92 X{steps[0]:.2f} Y{steps[1]:.2f} Z{steps[2]:.2f} E{steps[3]:.2f}")

    def thermal_error(self, now: float, heater: int | str = 0, kind: str = "MAXTEMP") -> None:
        """A thermal fault (``MAXTEMP``, ``MINTEMP``, ``RUNAWAY``) on hotend 0 or ``"bed"``."""
        self.advance(now)
        if self.halted:
            return
        self._emit(f"Error:{_THERMAL_ERRORS[kind]}, system stopped! Heater_ID: {heater}")
        self.kill()

    def inject(self, line: str) -> None:
        """Write ``line`` as if the firmware printed it (e.g. ``//action:pause``)."""
        self._emit(line)

    def kill(self) -> None:
        """kill(): heaters and motion off, the error line, then nothing until :meth:`reset`."""
        for heater in (self.hotend, self.bed):
            heater.set_target(0.0)
            heater.shutdown()
        self.planner.stop(self.time)
        self._emit(KILLED)
        self.halted = True
        self._running = None
        self._wait = None
        self._busy_next = None

    # -- G-code --------------------------------------------------------------------------------

    def _execute(self, command: str) -> Command:
        code, words = parse_words(command)
        handler = _HANDLERS.get(code)
        if handler is None:
            if code.startswith("T"):
                return (yield from self._tool(int(code[1:])))
            self._emit(f'echo:Unknown command: "{command}"')
            return True
        return (yield from handler(self, code, words, command))

    def _tool(self, index: int) -> Command:
        if index != 0:
            self._emit(f"echo:T{index} Invalid extruder")
        return True
        yield  # pragma: no cover

    def _cap(self, name: str) -> bool:
        return bool(self.options.capabilities.get(name, False))

    def _unknown_unless(self, cap: str, command: str) -> bool:
        if self._cap(cap):
            return False
        self._emit(f'echo:Unknown command: "{command}"')
        return True

    # moves

    def _target(self, words: Words) -> list[float]:
        target = list(self.position)
        for axis, letter in enumerate("XYZE"):
            if letter in words and not math.isnan(words[letter]):
                relative = self.relative_e if letter == "E" else self.relative
                target[axis] = (target[axis] if relative else 0.0) + words[letter]
        for axis in self.homed:  # software endstops
            low, high = 0.0, self.options.volume[axis]
            target[axis] = min(max(target[axis], low), high)
        return target

    def g0(self, code: str, words: Words, command: str) -> Command:
        if "F" in words and words["F"] > 0:
            self.feedrate = words["F"] / 60.0
        target = self._target(words)
        if target[3] != self.position[3] and not self.hotend.can_extrude:
            self._emit("echo: cold extrusion prevented")
            self.position[3] = target[3]
        if target == self.position:
            return True
        if self.planner.full(self.time):
            yield Wait(lambda: not self.planner.full(self.time))
        self.planner.add(self.time, _pos(self.position), _pos(target), self.feedrate)
        self.position = target
        return True

    def g4(self, code: str, words: Words, command: str) -> Command:
        yield from self._synchronize()
        delay = words.get("P", 0.0) / 1000.0 if "P" in words else words.get("S", 0.0)
        until = self.time + max(delay, 0.0)
        yield Wait(lambda: self.time >= until, deadline=until)
        return True

    def _synchronize(self) -> Generator[Wait, None, None]:
        if not self.planner.empty(self.time):
            yield Wait(lambda: self.planner.empty(self.time))

    def g28(self, code: str, words: Words, command: str) -> Command:
        yield from self._synchronize()
        axes = [axis for axis, letter in enumerate("XYZ") if letter in words] or [0, 1, 2]
        here = list(self.planner.live(self.time))
        for axis in axes:
            speed = self.options.homing_feedrate[axis]
            bump = self.options.homing_bump[axis]
            for goal, feed in ((0.0, speed), (bump, speed), (0.0, speed / 2.0)):
                end = list(here)
                end[axis] = goal
                duration = abs(goal - here[axis]) / feed
                self.planner.append(self.time, _pos(here), _pos(end), duration)
                here = end
            self.position[axis] = 0.0
            self.homed.add(axis)
        yield from self._synchronize()
        return True

    def g90(self, code: str, words: Words, command: str) -> Command:
        self.relative = code == "G91"
        self.relative_e = self.relative
        return True
        yield  # pragma: no cover

    def m82(self, code: str, words: Words, command: str) -> Command:
        self.relative_e = code == "M83"
        return True
        yield  # pragma: no cover

    def g92(self, code: str, words: Words, command: str) -> Command:
        for axis, letter in enumerate("XYZE"):
            if letter in words:
                self.position[axis] = words[letter]
        if not words:
            self.position = [0.0, 0.0, 0.0, 0.0]
        return True
        yield  # pragma: no cover

    def m400(self, code: str, words: Words, command: str) -> Command:
        yield from self._synchronize()
        return True

    def m84(self, code: str, words: Words, command: str) -> Command:
        yield from self._synchronize()
        self.homed.clear()
        return True

    def m114(self, code: str, words: Words, command: str) -> Command:
        self._emit(self._position_report(_pos(self.position)))
        return True
        yield  # pragma: no cover

    def _position_report(self, position: Position) -> str:
        live = self.planner.live(self.time)
        steps = self.options.steps_per_mm
        counts = " ".join(f"{a}:{round(live[i] * steps[i])}" for i, a in enumerate("XYZ"))
        x, y, z, e = position
        return f"X:{x:.2f} Y:{y:.2f} Z:{z:.2f} E:{e:.2f} Count {counts}"

    # temperatures

    def m104(self, code: str, words: Words, command: str) -> Command:
        bed = code in ("M140", "M190")
        heater = self.bed if bed else self.hotend
        overshoot = BED_OVERSHOOT if bed else HOTEND_OVERSHOOT
        wait = code in ("M109", "M190")
        value = words.get("S", words.get("R"))
        if value is not None and not math.isnan(value):
            heater.set_target(min(max(value, 0.0), heater.max_temp - overshoot))
        if wait and value is not None:
            residency = self.options.bed_residency if bed else self.options.residency
            yield from self._wait_heater(heater, residency, cool_too="R" in words)
        return True

    def _wait_heater(self, heater: Heater, residency: float, *, cool_too: bool) -> Command:
        """M109 / M190: the temperatures every second until it holds the target long enough."""
        self._break_wait = False
        target = heater.target
        started: float | None = None
        next_print = self.time
        if not cool_too and heater.smoothed > target:
            return True  # M109 S / M190 S do not wait for cooling
        while not self._break_wait:
            now = self.time
            temperature = heater.smoothed
            if cool_too and target < 30.0 and temperature < self.options.min_extrude_temp / 2:
                break  # cooling down (R below 30): cool enough to touch
            diff = abs(temperature - target)
            if started is None:
                if diff < self.options.temp_window:
                    started = now
            elif diff > self.options.temp_hysteresis:
                started = now
            if started is not None and now - started >= residency:
                break
            if now >= next_print:
                left = "?" if started is None else str(int(residency - (now - started)))
                self._emit(f"{heater_states(self.hotend, self.bed)} W:{left}")
                next_print = now + 1.0
            deadline = next_print if started is None else min(next_print, started + residency)
            yield Wait(self._until(deadline), busy=False, deadline=deadline)
        self._break_wait = False
        return True

    def _until(self, deadline: float) -> Callable[[], bool]:
        return lambda: self._break_wait or self.time >= deadline

    def m105(self, code: str, words: Words, command: str) -> Command:
        self._ok(None, extra=heater_states(self.hotend, self.bed))
        return False
        yield  # pragma: no cover

    def m155(self, code: str, words: Words, command: str) -> Command:
        cap = "AUTOREPORT_TEMP" if code == "M155" else "AUTOREPORT_POS"
        if self._unknown_unless(cap, command):
            return True
        interval = max(words.get("S", 0.0), 0.0)
        next_at = self.time + interval if interval else math.inf
        if cap == "AUTOREPORT_TEMP":
            self.temp_interval, self._next_temp_report = interval, next_at
        else:
            self.pos_interval, self._next_pos_report = interval, next_at
        return True
        yield  # pragma: no cover

    def m106(self, code: str, words: Words, command: str) -> Command:
        if code == "M107":
            self.fan_speed = 0.0
        else:
            self.fan_speed = min(max(words.get("S", 255.0), 0.0), 255.0) / 255.0
        return True
        yield  # pragma: no cover

    # the rest

    def m110(self, code: str, words: Words, command: str) -> Command:
        # a numbered "N<n> M110 N<m>" set the line number when it was checked (queued);
        # setting it again here would refuse the lines queued after it
        numbered = self._commands[0].number is not None
        if "N" in words and not math.isnan(words["N"]) and not numbered:
            self.last_line = int(words["N"])
        return True
        yield  # pragma: no cover

    def m113(self, code: str, words: Words, command: str) -> Command:
        if "S" in words:
            self.keepalive = max(words["S"], 0.0)
        else:
            self._emit(f"echo:M113 S{self.keepalive:g}")
        return True
        yield  # pragma: no cover

    def m115(self, code: str, words: Words, command: str) -> Command:
        o = self.options
        self._emit(
            f"FIRMWARE_NAME:{o.firmware_name} SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin"
            f" PROTOCOL_VERSION:1.0 MACHINE_TYPE:{o.machine_type} EXTRUDER_COUNT:1"
            f" UUID:{o.uuid}"
        )
        for name, on in self.capabilities().items():
            self._emit(f"Cap:{name}:{int(on)}")
        return True
        yield  # pragma: no cover

    def m117(self, code: str, words: Words, command: str) -> Command:
        self.message = command[4:].strip()
        return True
        yield  # pragma: no cover

    def m118(self, code: str, words: Words, command: str) -> Command:
        parts = command.split()[1:]
        prefix = ""
        while parts and parts[0].upper() in ("A1", "E1", "P0", "P1", "P2"):
            flag = parts.pop(0).upper()
            prefix += {"A1": "//", "E1": "echo:"}.get(flag, "")
        self._emit(prefix + " ".join(parts))
        return True
        yield  # pragma: no cover

    def m112(self, code: str, words: Words, command: str) -> Command:
        """M112 without the emergency parser: in order."""
        self.kill()
        return False
        yield  # pragma: no cover

    def accept(self, code: str, words: Words, command: str) -> Command:
        """Commands that only answer ok here (M108, M220, M221, M300, M410, ...)."""
        return True
        yield  # pragma: no cover


Handler = Callable[[MarlinSim, str, Words, str], Command]
_HANDLERS: Final[dict[str, Handler]] = {
    "G0": MarlinSim.g0,
    "G1": MarlinSim.g0,
    "G4": MarlinSim.g4,
    "G21": MarlinSim.accept,
    "G28": MarlinSim.g28,
    "G90": MarlinSim.g90,
    "G91": MarlinSim.g90,
    "G92": MarlinSim.g92,
    "M18": MarlinSim.m84,
    "M82": MarlinSim.m82,
    "M83": MarlinSim.m82,
    "M84": MarlinSim.m84,
    "M104": MarlinSim.m104,
    "M105": MarlinSim.m105,
    "M106": MarlinSim.m106,
    "M107": MarlinSim.m106,
    "M108": MarlinSim.accept,
    "M109": MarlinSim.m104,
    "M110": MarlinSim.m110,
    "M112": MarlinSim.m112,
    "M113": MarlinSim.m113,
    "M114": MarlinSim.m114,
    "M115": MarlinSim.m115,
    "M117": MarlinSim.m117,
    "M118": MarlinSim.m118,
    "M140": MarlinSim.m104,
    "M154": MarlinSim.m155,
    "M155": MarlinSim.m155,
    "M190": MarlinSim.m104,
    "M220": MarlinSim.accept,
    "M221": MarlinSim.accept,
    "M300": MarlinSim.accept,
    "M400": MarlinSim.m400,
    "M410": MarlinSim.accept,
}


def _pos(values: list[float]) -> Position:
    return (values[0], values[1], values[2], values[3])


def _garbled(line: str) -> str:
    """One bit flipped in the command part (after the line number, before the checksum)."""
    star = line.rfind("*")
    end = star if star > 0 else len(line)
    space = line.find(" ")
    index = (space + 1 + end) // 2 if 0 < space < end - 1 else max(end - 1, 0)
    flipped = chr(ord(line[index]) ^ 0x01)
    return line[:index] + flipped + line[index + 1 :]
