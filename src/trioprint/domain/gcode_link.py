"""The host side of the Marlin-style serial G-code protocol, without I/O and without a clock.

:class:`GcodeLink` is the whole line protocol a host speaks to Marlin, Prusa-Firmware,
RepRapFirmware (Marlin mode) or Repetier, as a plain object in the manner of h11 and wsproto.
It never reads a clock, never sleeps and never touches a port: the transport passes ``now``
(a monotonic time in seconds) into every call and honours the deadline the link asks for.

The transport's loop::

    link = GcodeLink(LinkConfig())
    link.start_handshake()                      # M110 N0, then M115
    while True:
        port.write(link.bytes_to_send(now))     # what the credit allows, at once
        wait for data or until link.next_deadline()
        events = link.receive_data(data, now)   # or link.timeout(now) at the deadline

API (all times are ``now`` values given by the caller):

* ``send(command, *, tag=None, numbered=None, immediate=False) -> bool`` queues a command:
  comments and blanks are stripped (``False`` when nothing is left), ``M110 N<k>`` resets the
  line numbers when it is written, ``M112`` becomes an emergency stop. ``numbered`` (default:
  ``config.always_checksum`` or the firmware's quirk) frames it as ``N<n> <cmd>*<xor>`` and keeps
  it for resends. ``immediate`` lines (M108, M410, M876 for an EMERGENCY_PARSER) skip the queue
  and the credit. The command's ``tag`` comes back in :class:`CommandAcknowledged` when its
  ``ok`` arrives, or in :class:`CommandDropped` when it never will be (reset, e-stop, cleared).
* ``bytes_to_send(now) -> bytes``: the lines that may be written now. Credit: one command in
  flight (``config.max_in_flight``); once the firmware answers with ADVANCED_OK's
  ``ok N<n> P<planner> B<buffer>``, as many as its serial buffer has free slots for (``B``
  less the lines sent after line ``n``, which it had not seen yet). Resent lines go first.
* ``receive_data(data, now) -> list[Event]``: partial lines are buffered; each line gives a
  :class:`LineReceived` and what it means (the event classes below).
* ``next_deadline() -> float | None`` and ``timeout(now) -> list[Event]``: the next moment the
  link must be woken without data (a communication timeout, a poll, a resend that never came).
  A command in flight times out after ``communication_timeout`` of silence, or
  ``long_running_timeout`` when a G28, G29, M109, M190, M400, G4 ... is among them; any line
  received (``busy:``, a temperature while heating) restarts it. On a timeout the link takes the
  ``ok`` as lost (a missing line is then asked back by the firmware through its line numbers)
  and sends ``M105`` as a keepalive probe; during the handshake it starts the handshake again.
* ``emergency_stop() -> bytes``: ``M112`` as a plain line and as a numbered one, then heaters off
  (``M104 T<i> S0`` for each tool, ``M140 S0``) unless configured off; written at once,
  bypassing the queue. The link is then shut down (``send`` raises :class:`LinkShutdownError`)
  until the firmware resets (``start``) or :meth:`GcodeLink.reset`.
* ``clear_queue() -> list[CommandDropped]`` drops what is queued and not yet written (cancel).
* Events (:mod:`trioprint.domain.gcode_events`): ``LineReceived`` for every line, ``Ok``,
  ``CommandAcknowledged``, ``CommandDropped``, ``TemperatureReport``, ``PositionReport``,
  ``SdStatus``, ``ResendRequested``, ``ResendImpossible``, ``FirmwareError``, ``FirmwareInfo``,
  ``Capability``, ``HandshakeComplete``, ``ActionCommand``, ``Busy``, ``Wait``,
  ``FirmwareReset``, ``Echo``, ``Timeout``.
* ``pop_events()`` returns events produced outside ``receive_data``/``timeout`` (dropped
  commands after an e-stop); both of those also include them.

Resends: ``Resend: n`` / ``rs n`` starts a resend cycle: every line from ``n`` on is written
again from the window of the last ``config.resend_window`` numbered lines. A firmware throws
away every line after a bad one and asks for ``n`` once per line thrown away; those duplicate
requests (recognised because the ``ok`` they come with belongs to a line sent before the cycle)
are ignored, as OctoPrint does. A checksum or line-number ``Error:`` that is not followed by a
resend request within ``resend_grace`` (OctoPrint's virtual printer does that for a line that
lost its ``N``) is handled as a request for the line after the ``Last Line`` quoted.

Capabilities and autoreports: the handshake's M115 fills :attr:`GcodeLink.firmware` and
:attr:`GcodeLink.capabilities`; at its ``ok`` comes :class:`HandshakeComplete` and the link
asks for ``M155 S<n>`` (temperatures), ``M154 S<n>`` (position) and ``M27 S<n>`` (SD status)
when the firmware has AUTOREPORT_TEMP, AUTOREPORT_POS and AUTOREPORT_SD_STATUS and an interval
is configured, and polls ``M105``/``M114``/``M27`` on those intervals otherwise (through
``next_deadline``/``timeout``). The first ``busy:`` sends ``M113 S<host_keepalive_interval>``
when one is configured.
"""

from __future__ import annotations

import collections
import re

import attrs

from . import gcode_events as ev
from . import marlin_lines as ml
from .marlin_lines import ErrorKind, FirmwareData, LineKind

#: Commands that may keep the firmware from answering for long: homing, probing, heating and
#: waiting, dwelling, waiting for moves, filament change, user waits.
LONG_RUNNING = frozenset(
    {"G4", "G28", "G29", "G30", "G32", "G33", "G34", "G76", "M109", "M190", "M191", "M116",
     "M400", "M226", "M600", "M0", "M1", "M303", "M48"}
)  # fmt: skip

#: A line longer than this without a newline is taken as a line (a noisy or wrong-baud port).
MAX_LINE = 4096


class LinkShutdownError(Exception):
    """The link was shut down by an emergency stop; nothing is sent until a firmware reset."""


@attrs.frozen
class LinkConfig:
    #: Silence (no line received) while commands are in flight before the ``ok`` is taken as
    #: lost, and silence while idle before a probe is sent.
    communication_timeout: float = 30.0
    #: Silence while the handshake (M110 N0, M115) is unanswered before it is started again.
    handshake_timeout: float = 5.0
    #: The same while a long-running command (:data:`LONG_RUNNING`) is in flight.
    long_running_timeout: float = 900.0
    #: Commands in flight without ADVANCED_OK.
    max_in_flight: int = 1
    #: Use ADVANCED_OK's ``B`` free-slot count when the firmware reports it.
    advanced_ok: bool = True
    #: Frame every line (``N<n> ... *<xor>``); else only lines sent with ``numbered=True``.
    always_checksum: bool = True
    #: Numbered lines kept for resends.
    resend_window: int = 256
    #: How long a checksum/line-number error waits for its ``Resend:`` before the link resends.
    resend_grace: float = 0.25
    #: Send the emergency stop on MAXTEMP, MINTEMP, thermal runaway, ``kill()``, halted.
    emergency_stop_on_fatal_error: bool = True
    #: Heaters off (M104 S0 per tool, M140 S0) after the M112 of an emergency stop.
    heaters_off_after_emergency_stop: bool = True
    #: Seconds between temperature reports (``M155 S<n>`` or polling ``M105``); ``None``: none.
    temperature_interval: float | None = 2.0
    #: Seconds between position reports (``M154 S<n>`` or polling ``M114``); ``None``: none.
    position_interval: float | None = None
    #: Seconds between SD status reports (``M27 S<n>`` or polling ``M27``); ``None``: none.
    sd_status_interval: float | None = None
    #: ``M113 S<n>`` sent once the firmware shows ``busy:`` keepalives; ``None``: leave it.
    host_keepalive_interval: int | None = None


# -- internals ---------------------------------------------------------------------------------


@attrs.frozen
class _Internal:
    """The tag of a command the link sends for itself (handshake, polls, autoreport set-up)."""

    kind: str


_HANDSHAKE = _Internal("handshake")
_POLL_TEMPERATURE = _Internal("M105")
_POLL_POSITION = _Internal("M114")
_POLL_SD = _Internal("M27")
_SETUP = _Internal("setup")


@attrs.define(slots=True)
class _Queued:
    command: str
    tag: object
    numbered: bool


@attrs.define(slots=True)
class _Line:
    """A numbered line in the resend window."""

    command: str
    data: bytes
    tag: object
    acknowledged: bool = False


@attrs.define(slots=True)
class _Flight:
    """A written line waiting for its ``ok``."""

    lineno: int | None
    command: str
    tag: object
    long_running: bool
    #: Written before the current resend cycle started: its ``ok`` acknowledges nothing.
    rejected: bool = False
    line: _Line | None = None


_LINE_NUMBER_PREFIX = re.compile(r"\s*N\d+\s+")
_M110_ARG = re.compile(r"N(\d+)")


class GcodeLink:
    """The state of one connection to a Marlin-style firmware (see the module docstring)."""

    def __init__(self, config: LinkConfig | None = None) -> None:
        self.config = config if config is not None else LinkConfig()
        self.firmware: FirmwareData | None = None
        self.capabilities: dict[str, bool] = {}
        self._rx = bytearray()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._urgent = bytearray()
        self._urgent_flights: list[_Flight] = []
        self._history: dict[int, _Line] = {}
        self._in_flight: collections.deque[_Flight] = collections.deque()
        self._next_lineno = 1
        self._resend_pos: int | None = None
        self._cycle_line: int | None = None
        self._expected_resend: tuple[int, float] | None = None
        self._swallow_oks = 0
        self._credit: int | None = None  # ADVANCED_OK free slots, once known
        self._started = False
        self._handshake_done = False
        self._shutdown = False
        self._keepalive_configured = False
        self._error_prefix: str | None = None
        self._last_activity: float | None = None
        self._consecutive_timeouts = 0
        self._polls: dict[_Internal, float] = {}
        self._deferred: list[ev.Event] = []

    # -- state ---------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Commands written and not yet acknowledged."""
        return len(self._in_flight)

    @property
    def queued(self) -> int:
        """Commands queued and not yet written."""
        return len(self._queue)

    @property
    def next_line_number(self) -> int:
        return self._next_lineno

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    @property
    def handshake_complete(self) -> bool:
        return self._handshake_done

    @property
    def resending(self) -> bool:
        return self._resend_pos is not None

    @property
    def uses_advanced_ok(self) -> bool:
        return self._credit is not None

    # -- commands ------------------------------------------------------------------------------

    def start_handshake(self, now: float | None = None) -> None:
        """Queue ``M110 N0`` and ``M115`` (ahead of everything else) and arm the timeouts."""
        self._started = True
        self._handshake_done = False
        if now is not None:
            self._last_activity = now
        self._queue.appendleft(_Queued("M115", _HANDSHAKE, True))
        self._queue.appendleft(_Queued("M110 N0", None, True))

    def send(
        self,
        command: str,
        *,
        tag: object = None,
        numbered: bool | None = None,
        immediate: bool = False,
    ) -> bool:
        """Queue one command; ``False`` when it was only a comment or blank (see the module)."""
        if self._shutdown:
            raise LinkShutdownError("the link is shut down after an emergency stop")
        command = ml.clean_command(_strip_framing(command))
        if not command:
            return False
        code = ml.command_code(command)
        if code == "M112":
            self._urgent += self.emergency_stop()
            return True
        if numbered is None:
            numbered = self._numbered_by_default()
        if immediate:
            self._urgent += ml.plain(command)
            self._urgent_flights.append(_Flight(None, command, tag, code in LONG_RUNNING))
            return True
        self._queue.append(_Queued(command, tag, numbered or code == "M110"))
        return True

    def clear_queue(self) -> list[ev.CommandDropped]:
        """Drop every queued command not yet written (lines in flight still complete)."""
        dropped = [
            ev.CommandDropped(item.tag, item.command, "cleared")
            for item in self._queue
            if item.tag is not None and not isinstance(item.tag, _Internal)
        ]
        self._queue.clear()
        return dropped

    def emergency_stop(self) -> bytes:
        """The bytes of an emergency stop, to write at once: ``M112``, ``N<n> M112*<xor>``, then
        heaters off. The queue is dropped and the link shut down until a firmware reset."""
        out = bytearray(b"M112\n")
        out += self._frame_now("M112")
        if self.config.heaters_off_after_emergency_stop:
            tools = self.firmware.extruder_count if self.firmware is not None else 1
            for tool in range(tools):
                out += self._frame_now(f"M104 T{tool} S0")
            out += self._frame_now("M140 S0")
        self._deferred += self._drop_everything("emergency stop")
        self._shutdown = True
        return bytes(out)

    def reset(self) -> list[ev.CommandDropped]:
        """Forget the connection (a reconnect): everything queued and in flight is dropped."""
        dropped = self._drop_everything("link reset")
        self._shutdown = False
        self._started = False
        self._handshake_done = False
        self._next_lineno = 1
        self._history.clear()
        self._rx.clear()
        self._credit = None
        self._consecutive_timeouts = 0
        self._polls.clear()
        return dropped

    def pop_events(self) -> list[ev.Event]:
        events, self._deferred = self._deferred, []
        return events

    # -- writing -------------------------------------------------------------------------------

    def bytes_to_send(self, now: float) -> bytes:
        """What may be written now: urgent lines, then resends, then queued commands."""
        out = bytearray()
        if self._urgent:
            out += self._urgent
            self._urgent.clear()
            self._in_flight.extend(self._urgent_flights)
            self._urgent_flights.clear()
        if self._shutdown:
            if out:
                self._last_activity = now
            return bytes(out)
        while self._may_send():
            if self._resend_pos is not None:
                lineno = self._resend_pos
                line = self._history[lineno]
                out += line.data
                self._in_flight.append(
                    _Flight(lineno, line.command, line.tag, _is_long(line.command), line=line)
                )
                self._resend_pos = lineno + 1
                if self._resend_pos >= self._next_lineno:
                    self._resend_pos = None
            elif self._queue:
                item = self._queue.popleft()
                out += self._write(item)
            else:
                break
            if self._credit is not None:
                self._credit -= 1
        if out:
            self._last_activity = now
        return bytes(out)

    def _may_send(self) -> bool:
        if not self._in_flight:
            return True
        if self._credit is not None:
            return self._credit > 0
        return len(self._in_flight) < self.config.max_in_flight

    def _write(self, item: _Queued) -> bytes:
        code = ml.command_code(item.command)
        long_running = code in LONG_RUNNING
        if not item.numbered:
            self._in_flight.append(_Flight(None, item.command, item.tag, long_running))
            return ml.plain(item.command)
        if code == "M110":
            match = _M110_ARG.search(item.command, 4)
            lineno = int(match.group(1)) if match else 0
            command = f"M110 N{lineno}"
            self._history.clear()
            self._resend_pos = None
            self._cycle_line = None
            self._expected_resend = None
        else:
            lineno = self._next_lineno
            command = item.command
        data = ml.frame(lineno, command)
        line = _Line(command, data, item.tag)
        self._history[lineno] = line
        self._history.pop(lineno - self.config.resend_window, None)
        self._next_lineno = lineno + 1
        self._in_flight.append(_Flight(lineno, command, item.tag, long_running, line=line))
        return data

    def _frame_now(self, command: str) -> bytes:
        data = ml.frame(self._next_lineno, command)
        self._next_lineno += 1
        return data

    def _numbered_by_default(self) -> bool:
        if self.config.always_checksum:
            return True
        return self.firmware is not None and "always_checksum" in self.firmware.quirks

    # -- reading -------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[ev.Event]:
        """Parse received bytes; complete lines give events, a partial line waits for more."""
        events = self.pop_events()
        self._rx += data
        while True:
            end = self._rx.find(b"\n")
            if end < 0:
                if len(self._rx) > MAX_LINE:
                    raw = bytes(self._rx)
                    self._rx.clear()
                    self._receive_line(raw, now, events)
                break
            raw = bytes(self._rx[:end])
            del self._rx[: end + 1]
            self._receive_line(raw, now, events)
        return events

    def _receive_line(self, raw: bytes, now: float, events: list[ev.Event]) -> None:
        line = raw.decode("utf-8", "replace").strip().replace("\x00", "")
        if not line:
            return
        kind = ml.classify(line)
        # An autoreport (a temperature or position line) says the firmware lives, not that a
        # command in flight progresses: it does not hold off the timeout of a lost ``ok``,
        # unless a long-running command (a heat-up printing temperatures) is in flight.
        if (
            kind is not LineKind.OTHER
            or not self._in_flight
            or self._current_timeout() == self.config.long_running_timeout
        ):
            self._last_activity = now
            self._consecutive_timeouts = 0
        events.append(ev.LineReceived(line))
        if self._error_prefix is not None:
            prefix, self._error_prefix = self._error_prefix, None
            if line.startswith(":"):  # old Marlin: "Error:0" then ": Extruder switched off..."
                line = f"Error:{prefix} {line[1:].strip()}"
                kind = ml.classify(line)
        if kind is LineKind.OK:
            self._on_ok(line, now, events)
        elif kind is LineKind.RESEND:
            lineno = ml.parse_resend(line)
            if lineno is not None:
                self._on_resend(lineno, events)
        elif kind is LineKind.ERROR:
            self._on_error(line, now, events)
        elif kind is LineKind.BUSY:
            events.append(ev.Busy(ml.parse_busy(line) or ""))
            interval = self.config.host_keepalive_interval
            if interval is not None and not self._keepalive_configured and not self._shutdown:
                self._keepalive_configured = True
                self._queue.append(_Queued(f"M113 S{interval}", _SETUP, True))
        elif kind is LineKind.WAIT:
            events.append(ev.Wait())
            self._lose_in_flight(events)
        elif kind is LineKind.START:
            self._on_start(events)
        elif kind is LineKind.ACTION:
            action = ml.parse_action(line)
            if action is not None:
                events.append(ev.ActionCommand(action.name, action.argument))
        elif kind is LineKind.FIRMWARE_INFO:
            info = ml.parse_firmware_info(line)
            if info is not None:
                self.firmware = info
                events.append(ev.FirmwareInfo(info))
        elif kind is LineKind.CAPABILITY:
            capability = ml.parse_capability(line)
            if capability is not None:
                self.capabilities[capability[0]] = capability[1]
                events.append(ev.Capability(*capability))
        else:
            if kind is LineKind.ECHO:
                events.append(ev.Echo(line[5:].strip()))
            self._parse_reports(line, events)

    def _parse_reports(self, text: str, events: list[ev.Event]) -> None:
        if "T" in text or "B:" in text:
            temperatures = ml.parse_temperatures(text)
            if temperatures is not None:
                events.append(ev.TemperatureReport(temperatures))
                return
        if "X:" in text:
            position = ml.parse_position(text)
            if position is not None:
                events.append(ev.PositionReport(position))
                return
        if "SD printing" in text:
            status = ml.parse_sd_status(text)
            if status is not None:
                events.append(ev.SdStatus(status))

    def _on_ok(self, line: str, now: float, events: list[ev.Event]) -> None:
        if line == "ok":
            info = _PLAIN_OK
        else:
            parsed = ml.parse_ok(line)
            info = parsed if parsed is not None else _PLAIN_OK
        events.append(ev.Ok(info.lineno, info.planner, info.buffer))
        if info.rest:
            self._parse_reports(info.rest, events)
        if self._swallow_oks:
            self._swallow_oks -= 1
            return
        if self._in_flight:
            flight = self._in_flight.popleft()
            self._acknowledge(flight, events)
        head_rejected = bool(self._in_flight) and self._in_flight[0].rejected
        if self._cycle_line is not None and not head_rejected and self._resend_pos is None:
            self._cycle_line = None
        if self.config.advanced_ok and info.buffer is not None:
            in_transit = sum(
                1
                for flight in self._in_flight
                if flight.lineno is None or info.lineno is None or flight.lineno > info.lineno
            )
            self._credit = max(0, info.buffer - in_transit)
        elif self._credit is not None:
            self._credit += 1

    def _acknowledge(self, flight: _Flight, events: list[ev.Event]) -> None:
        if flight.rejected:
            return
        if flight.line is not None:
            if flight.line.acknowledged:
                return
            flight.line.acknowledged = True
        tag = flight.tag
        if tag is None:
            return
        if isinstance(tag, _Internal):
            if tag is _HANDSHAKE:
                self._complete_handshake(events)
            return
        events.append(ev.CommandAcknowledged(tag, flight.command))

    def _on_resend(self, lineno: int, events: list[ev.Event]) -> None:
        self._expected_resend = None
        head = self._in_flight[0] if self._in_flight else None
        if lineno == self._cycle_line and head is not None and head.rejected:
            events.append(ev.ResendRequested(lineno, duplicate=True))
            return
        events.append(ev.ResendRequested(lineno))
        if self.firmware is not None and "ok_after_resend" in self.firmware.quirks:
            self._swallow_oks += 1
        if lineno >= self._next_lineno or lineno not in self._history:
            if lineno != self._next_lineno:
                if lineno < self._next_lineno:
                    events.append(ev.ResendImpossible(lineno))
                # The firmware counts differently: make it count as this side does.
                self._resync_line_numbers()
            self._resend_pos = None
            self._cycle_line = None
            return
        # The firmware has every line before ``lineno`` (its ``Last Line``): their ``ok``s are
        # still owed. It threw away the first line from ``lineno`` on and everything after it.
        thrown_away = False
        for flight in self._in_flight:
            if flight.lineno is not None and flight.lineno >= lineno:
                thrown_away = True
            flight.rejected = flight.rejected or thrown_away
        for number in range(lineno, self._next_lineno):
            line = self._history.get(number)
            if line is not None:
                line.acknowledged = False
        self._resend_pos = lineno
        self._cycle_line = lineno

    def _resync_line_numbers(self) -> None:
        last = self._next_lineno - 1
        self._queue.appendleft(_Queued(f"M110 N{last}", None, True))

    def _on_error(self, line: str, now: float, events: list[ev.Event]) -> None:
        error = ml.classify_error(line)
        if error is None:  # pragma: no cover - classify said ERROR
            return
        if error.message.isdigit():
            self._error_prefix = error.message
        estop = (
            error.kind is ErrorKind.FATAL
            and self.config.emergency_stop_on_fatal_error
            and not self._shutdown
        )
        events.append(ev.FirmwareError(error.message, error.kind, estop))
        if error.kind is ErrorKind.COMMUNICATION and error.last_line is not None:
            self._expected_resend = (error.last_line + 1, now + self.config.resend_grace)
        if estop:
            self._urgent += self.emergency_stop()
            events += self.pop_events()

    def _on_start(self, events: list[ev.Event]) -> None:
        events.append(ev.FirmwareReset())
        events += self._drop_everything("firmware reset")
        self._shutdown = False
        self._history.clear()
        self._next_lineno = 1
        self._credit = None
        self._keepalive_configured = False
        self.capabilities = {}
        if self._started:
            self.start_handshake()

    def _drop_everything(self, reason: str) -> list[ev.CommandDropped]:
        dropped: list[ev.CommandDropped] = []
        for flight in (*self._in_flight, *self._urgent_flights):
            if _user_tag(flight.tag) and not flight.rejected and not _acked(flight):
                dropped.append(ev.CommandDropped(flight.tag, flight.command, reason))
        for item in self._queue:
            if _user_tag(item.tag):
                dropped.append(ev.CommandDropped(item.tag, item.command, reason))
        if self._resend_pos is not None:  # lines waiting to be written again
            for number in range(self._resend_pos, self._next_lineno):
                line = self._history.get(number)
                if line is None or line.tag is None or isinstance(line.tag, _Internal):
                    continue
                if not line.acknowledged:
                    dropped.append(ev.CommandDropped(line.tag, line.command, reason))
        self._queue.clear()
        self._in_flight.clear()
        self._urgent_flights.clear()
        self._resend_pos = None
        self._cycle_line = None
        self._expected_resend = None
        self._swallow_oks = 0
        return dropped

    def _lose_in_flight(self, events: list[ev.Event]) -> None:
        """The firmware is idle or silent: the ``ok``s of what is in flight were lost."""
        while self._in_flight:
            self._acknowledge(self._in_flight.popleft(), events)
        self._cycle_line = None if self._resend_pos is None else self._cycle_line
        self._swallow_oks = 0
        if self._credit is not None:
            self._credit = max(self._credit, 1)

    def _complete_handshake(self, events: list[ev.Event]) -> None:
        self._handshake_done = True
        events.append(ev.HandshakeComplete(self.firmware, dict(self.capabilities)))
        self._polls.clear()
        for interval, capability, autoreport, poll in (
            (self.config.temperature_interval, "AUTOREPORT_TEMP", "M155", _POLL_TEMPERATURE),
            (self.config.position_interval, "AUTOREPORT_POS", "M154", _POLL_POSITION),
            (self.config.sd_status_interval, "AUTOREPORT_SD_STATUS", "M27", _POLL_SD),
        ):
            if interval is None:
                continue
            if self.capabilities.get(capability):
                seconds = max(1, round(interval))
                self._queue.append(_Queued(f"{autoreport} S{seconds}", _SETUP, True))
            else:
                self._polls[poll] = (self._last_activity or 0.0) + interval

    # -- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The latest time :meth:`timeout` must be called if no data arrives before."""
        deadlines: list[float] = []
        if self._expected_resend is not None:
            deadlines.append(self._expected_resend[1])
        if self._started and not self._shutdown and self._last_activity is not None:
            deadlines.append(self._last_activity + self._current_timeout())
        if not self._shutdown:
            deadlines.extend(self._polls.values())
        return min(deadlines) if deadlines else None

    def _current_timeout(self) -> float:
        if not self._handshake_done:
            return min(self.config.handshake_timeout, self.config.communication_timeout)
        for flight in self._in_flight:
            if flight.long_running:
                return self.config.long_running_timeout
        return self.config.communication_timeout

    def timeout(self, now: float) -> list[ev.Event]:
        """Act on every deadline that has passed by ``now``."""
        events = self.pop_events()
        if self._shutdown:
            return events
        if self._expected_resend is not None and now >= self._expected_resend[1]:
            lineno = self._expected_resend[0]
            self._expected_resend = None
            if self._in_flight:  # the damaged line got no ``ok``
                self._in_flight[0].rejected = True
                self._in_flight.popleft()
            self._on_resend(lineno, events)
        if (
            self._started
            and self._last_activity is not None
            and now >= self._last_activity + self._current_timeout()
        ):
            self._consecutive_timeouts += 1
            events.append(
                ev.Timeout(
                    self._consecutive_timeouts, len(self._in_flight), not self._handshake_done
                )
            )
            self._last_activity = now
            if not self._handshake_done:
                events += self._drop_everything("handshake timed out")
                self.start_handshake()
            else:
                self._lose_in_flight(events)
                if not self._outstanding(_POLL_TEMPERATURE):
                    self._queue.appendleft(_Queued("M105", _POLL_TEMPERATURE, True))
        for poll, due in list(self._polls.items()):
            if now < due:
                continue
            interval = self._poll_interval(poll)
            self._polls[poll] = max(due + interval, now)
            if not self._outstanding(poll):
                self._queue.appendleft(_Queued(poll.kind, poll, self._numbered_by_default()))
        return events

    def _outstanding(self, poll: _Internal) -> bool:
        """Whether a poll is still queued or in flight (then no second one is queued)."""
        return any(item.tag is poll for item in self._queue) or any(
            flight.tag is poll for flight in self._in_flight
        )

    def _poll_interval(self, poll: _Internal) -> float:
        interval = {
            _POLL_TEMPERATURE: self.config.temperature_interval,
            _POLL_POSITION: self.config.position_interval,
            _POLL_SD: self.config.sd_status_interval,
        }[poll]
        return interval if interval is not None else float("inf")


_PLAIN_OK = ml.OkInfo()


def _is_long(command: str) -> bool:
    return ml.command_code(command) in LONG_RUNNING


def _user_tag(tag: object) -> bool:
    return tag is not None and not isinstance(tag, _Internal)


def _acked(flight: _Flight) -> bool:
    return flight.line is not None and flight.line.acknowledged


def _strip_framing(command: str) -> str:
    """A command given with its own ``N<n>`` and ``*<checksum>`` loses both."""
    if command[:1] in "Nn":
        match = _LINE_NUMBER_PREFIX.match(command)
        if match is not None:
            command = command[match.end() :]
    star = command.find("*")
    if star >= 0 and ";" not in command[:star]:
        command = command[:star]
    return command
