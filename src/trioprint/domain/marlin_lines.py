"""One line of the Marlin-style serial protocol at a time, without state and without I/O.

This module holds the pieces :mod:`trioprint.domain.gcode_link` is built from:

* the host side of a line: :func:`checksum` (XOR of every byte before ``*``), :func:`frame`
  (``N<n> <command>*<checksum>\\n``), :func:`clean_command` (``;`` and ``(...)`` comments and
  surrounding blanks stripped) and :func:`command_code` (``G28``, ``M109`` ...);
* the firmware side: :func:`classify` turns one received line into a :class:`LineKind` and
  the parsers below read its fields: ``ok`` with ADVANCED_OK's ``N.. P.. B..``
  (:func:`parse_ok`), ``Resend:``/``rs`` (:func:`parse_resend`), ``Error:`` classified
  (:func:`classify_error`), temperatures in every common dialect (:func:`parse_temperatures`),
  ``X:.. Y:.. Z:.. E:.. Count ..`` (:func:`parse_position`), ``SD printing byte a/b`` and
  ``Not SD printing`` (:func:`parse_sd_status`), ``//action:`` (:func:`parse_action`), M115's
  ``FIRMWARE_NAME:`` report (:func:`parse_firmware_info`) and ``Cap:NAME:0/1``
  (:func:`parse_capability`).

Every parser takes a ``str`` already stripped of its line ending and returns ``None`` (never
raises) for a line that is not its kind, so any bytes a printer sends are safe to feed in.
"""

from __future__ import annotations

import enum
import re

import attrs

# -- host side ---------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The RepRap line checksum: the XOR of every byte (of ``N<n> <command>``)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def frame(lineno: int, command: str) -> bytes:
    """``N<lineno> <command>*<checksum>\\n``, the checksum covering everything before ``*``."""
    body = b"N%d %s" % (lineno, command.encode("ascii", "replace"))
    return b"%s*%d\n" % (body, checksum(body))


def plain(command: str) -> bytes:
    """A command without line number and checksum."""
    return command.encode("ascii", "replace") + b"\n"


#: Commands whose argument is free text, where ``(`` is not a comment (``M117 Hello (world)``).
_TEXT_COMMANDS = frozenset({"M23", "M28", "M30", "M32", "M117", "M118", "M928", "M876"})
_PAREN_COMMENT = re.compile(r"\([^)]*\)")
_CODE = re.compile(r"\s*([GMTgmt])(\d+)")


def clean_command(command: str) -> str:
    """The command without comments (``;`` to the end, ``(...)``) and surrounding blanks.

    An empty result means there is nothing to send. ``(`` is kept inside the free text of
    message and file-name commands (M117, M118, M23 ...).
    """
    semicolon = command.find(";")
    if semicolon >= 0:
        command = command[:semicolon]
    if "(" in command and command_code(command) not in _TEXT_COMMANDS:
        command = _PAREN_COMMENT.sub(" ", command)
        paren = command.find("(")
        if paren >= 0:  # an unterminated comment runs to the end of the line
            command = command[:paren]
    return command.strip()


def command_code(command: str) -> str | None:
    """``G28`` for ``G28 X Y``, ``M109`` for ``m109 S200``, ``T1`` for ``T1``; else ``None``."""
    match = _CODE.match(command)
    if match is None:
        return None
    return f"{match.group(1).upper()}{int(match.group(2))}"


# -- firmware side -----------------------------------------------------------------------------


class LineKind(enum.Enum):
    """What a received line is, before its fields are read."""

    EMPTY = "empty"
    OK = "ok"
    RESEND = "resend"
    ERROR = "error"
    BUSY = "busy"
    WAIT = "wait"
    START = "start"
    ACTION = "action"
    ECHO = "echo"
    FIRMWARE_INFO = "firmware_info"
    CAPABILITY = "capability"
    OTHER = "other"


def classify(line: str) -> LineKind:
    """The kind of one received line (already stripped), by its start as Marlin writes it."""
    if not line:
        return LineKind.EMPTY
    if line.startswith("ok"):
        if len(line) == 2 or line[2] in " :":
            return LineKind.OK
        return LineKind.OTHER
    lower = line[:8].lower()
    if lower.startswith("resend"):
        return LineKind.RESEND
    if lower.startswith("rs") and (len(line) == 2 or line[2] in " :"):
        return LineKind.RESEND
    if lower.startswith("error") or line.startswith("!!"):
        return LineKind.ERROR
    if lower.startswith(("busy:", "echo:bus")) and "busy:" in line[:12]:
        return LineKind.BUSY
    if line == "wait":
        return LineKind.WAIT
    if line == "start":
        return LineKind.START
    if line.startswith("//"):
        return LineKind.ACTION if parse_action(line) is not None else LineKind.OTHER
    if lower.startswith("echo:"):
        return LineKind.ECHO
    if line.startswith("FIRMWARE_NAME:"):
        return LineKind.FIRMWARE_INFO
    if line.startswith("Cap:"):
        return LineKind.CAPABILITY
    return LineKind.OTHER


@attrs.frozen
class OkInfo:
    """An ``ok``: ADVANCED_OK's line number, free planner blocks and free serial buffer slots
    (``ok N12 P15 B3``) when given, Repetier's ``ok 12`` line number, and the rest of the line
    (``T:...`` for an M105 answer, ``X:...`` for M114)."""

    lineno: int | None = None
    planner: int | None = None
    buffer: int | None = None
    rest: str = ""


_ADVANCED_FIELD = re.compile(r"([NPB])(\d+)")


def parse_ok(line: str) -> OkInfo | None:
    """The fields of an ``ok`` line; ``None`` when the line is not one."""
    if classify(line) is not LineKind.OK:
        return None
    rest = line[2:].lstrip(" :")
    if not rest:
        return OkInfo()
    lineno = planner = buffer = None
    words = rest.split()
    used = 0
    for word in words:
        match = _ADVANCED_FIELD.fullmatch(word)
        if match is not None:
            value = int(match.group(2))
            if match.group(1) == "N":
                lineno = value
            elif match.group(1) == "P":
                planner = value
            else:
                buffer = value
        elif word.isdigit() and used == 0:
            lineno = int(word)
        else:
            break
        used += 1
    return OkInfo(lineno, planner, buffer, " ".join(words[used:]))


_RESEND_NUMBER = re.compile(r"(\d+)")


def parse_resend(line: str) -> int | None:
    """The line number of ``Resend: 12``, ``Resend:12``, ``Resend: N:12``, ``rs N12``, ``rs 12``."""
    if classify(line) is not LineKind.RESEND:
        return None
    match = _RESEND_NUMBER.search(line, 2)
    return int(match.group(1)) if match else None


class ErrorKind(enum.Enum):
    """How an ``Error:`` line is handled."""

    #: The line was damaged or out of sequence; the firmware asks for a resend.
    COMMUNICATION = "communication"
    #: The firmware halted (MAXTEMP, MINTEMP, thermal runaway, ``kill()``, printer halted).
    FATAL = "fatal"
    #: Anything else (an unknown command on firmware that calls that an error, a probe failure).
    OTHER = "other"


@attrs.frozen
class ErrorInfo:
    message: str
    kind: ErrorKind
    #: The ``Last Line: n`` the firmware quoted, when it did.
    last_line: int | None = None


_COMMUNICATION_ERRORS = (
    "checksum mismatch",
    "wrong checksum",
    "missing checksum",
    "no checksum with line number",
    "no line number with checksum",
    "line number is not last line number",
    "expected line",
    "format error",
)
_FATAL_ERRORS = (
    "maxtemp",
    "mintemp",
    "thermal runaway",
    "heating failed",
    "kill()",
    "killed",
    "printer halted",
    "emergency stop",
    "emergency shutdown",
    "stopped due to errors",
)
_LAST_LINE = re.compile(r"last line:?\s*(\d+)", re.IGNORECASE)


def classify_error(line: str) -> ErrorInfo | None:
    """The message of an ``Error:...`` or ``!! ...`` line and how to handle it."""
    if classify(line) is not LineKind.ERROR:
        return None
    if line.startswith("!!"):
        message = line[2:].strip()
        kind = ErrorKind.FATAL
    else:
        message = line[5:].lstrip(" :").strip()
        lower = message.lower()
        if any(text in lower for text in _COMMUNICATION_ERRORS):
            kind = ErrorKind.COMMUNICATION
        elif any(text in lower for text in _FATAL_ERRORS):
            kind = ErrorKind.FATAL
        else:
            kind = ErrorKind.OTHER
    match = _LAST_LINE.search(message)
    return ErrorInfo(message, kind, int(match.group(1)) if match else None)


@attrs.frozen
class Reading:
    """One heater or sensor: its temperature and, when reported, its target."""

    actual: float
    target: float | None = None


@attrs.frozen
class Temperatures:
    """A temperature report. ``readings`` keys: ``tool0``, ``tool1`` ..., ``bed``, ``chamber``,
    ``probe`` (Prusa ``P:``), ``ambient`` (Prusa ``A:``); ``powers`` keys the same (``@``,
    ``@0`` ... and ``B@``, ``C@``), raw as the firmware prints them (0-127 on Marlin)."""

    readings: dict[str, Reading]
    powers: dict[str, float]


_NUMBER = r"-?\d+(?:\.\d*)?|-?\.\d+"
_TEMPERATURE_FIELD = re.compile(
    rf"(?:^|(?<=\s))(T\d*|B|C|P|A|@\d*|B@|C@)\s?:\s*({_NUMBER})(?:\s*/\s*({_NUMBER}))?"
)
_SENSOR_NAMES = {"B": "bed", "C": "chamber", "P": "probe", "A": "ambient"}


def _looks_like_temperatures(line: str) -> bool:
    return line.startswith(("T:", "T0:", "B:", "ok T:", "ok T0:", "ok B:")) or any(
        marker in line for marker in (" T:", " T0:", " B:")
    )


def parse_temperatures(line: str) -> Temperatures | None:
    """Temperatures from ``T:21.3 /0.0 B:21.3 /0.0 @:64 B@:0`` and its dialects.

    Handles Marlin's ``T:21.30/ 0.00``, Repetier's ``T:20.00 /0.00``, Prusa's ``ok T:20.0 /0.0
    B:... T0:... @:0 B@:0 P:... A:...``, several tools (``T0:`` ``T1:``, where a bare ``T:`` is
    the active tool and is dropped), a chamber (``C:``), lines without targets (``B:21.43``
    while M190 waits) and the heat-up wait form ``T:200.0 E:0 W:?``. A position report (whose
    ``Count A: B: C:`` would look like sensors) is not a temperature report.
    """
    if not _looks_like_temperatures(line) or _looks_like_position(line):
        return None
    tools: dict[str, Reading] = {}
    bare_tool: Reading | None = None
    readings: dict[str, Reading] = {}
    powers: dict[str, float] = {}
    tool_powers: dict[str, float] = {}
    bare_power: float | None = None
    for match in _TEMPERATURE_FIELD.finditer(line):
        name, actual_text, target_text = match.groups()
        try:
            actual = float(actual_text)
            target = float(target_text) if target_text is not None else None
        except ValueError:  # pragma: no cover - the pattern only matches numbers
            continue
        if name == "T":
            bare_tool = Reading(actual, target)
        elif name[0] == "T":
            tools[f"tool{int(name[1:])}"] = Reading(actual, target)
        elif name == "@":
            bare_power = actual
        elif name[0] == "@":
            tool_powers[f"tool{int(name[1:])}"] = actual
        elif name in ("B@", "C@"):
            powers[_SENSOR_NAMES[name[0]]] = actual
        else:
            readings[_SENSOR_NAMES[name]] = Reading(actual, target)
    if not tools and bare_tool is not None:
        tools["tool0"] = bare_tool
    if not tool_powers and bare_power is not None:
        tool_powers["tool0"] = bare_power
    if not tools and not readings:
        return None
    return Temperatures({**tools, **readings}, {**tool_powers, **powers})


@attrs.frozen
class Position:
    """A position report (M114, M154): the logical axes, each ``None`` when missing."""

    x: float | None
    y: float | None
    z: float | None
    e: float | None


_AXIS_FIELD = re.compile(rf"(?:^|(?<=\s))([XYZE])\s?:\s*({_NUMBER})")


def _looks_like_position(line: str) -> bool:
    return "X:" in line and "Y:" in line and "Z:" in line


def parse_position(line: str) -> Position | None:
    """``X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0`` (also after ``ok``); the stepper
    counts after ``Count`` are ignored."""
    if not _looks_like_position(line):
        return None
    head = line.split("Count", 1)[0]
    axes: dict[str, float] = {}
    for match in _AXIS_FIELD.finditer(head):
        try:
            axes.setdefault(match.group(1), float(match.group(2)))
        except ValueError:  # pragma: no cover - the pattern only matches numbers
            continue
    if not {"X", "Y", "Z"} <= axes.keys():
        return None
    return Position(axes["X"], axes["Y"], axes["Z"], axes.get("E"))


@attrs.frozen
class SdProgress:
    """``SD printing byte 123/456`` (``printing``, position, size) or ``Not SD printing``."""

    printing: bool
    position: int | None = None
    size: int | None = None


_SD_BYTES = re.compile(r"SD printing byte (\d+)\s*/\s*(\d+)")


def parse_sd_status(line: str) -> SdProgress | None:
    if line.startswith("Not SD printing"):
        return SdProgress(False)
    match = _SD_BYTES.search(line)
    if match is None:
        return None
    return SdProgress(True, int(match.group(1)), int(match.group(2)))


@attrs.frozen
class Action:
    """``//action:<name> <argument>`` (pause, resume, cancel, paused, resumed, disconnect,
    prompt_begin, prompt_button, prompt_choice, prompt_show, prompt_end, notification ...)."""

    name: str
    argument: str = ""


_ACTION = re.compile(r"//\s*action:\s*([A-Za-z0-9_]+)\s*(.*)")


def parse_action(line: str) -> Action | None:
    match = _ACTION.fullmatch(line)
    if match is None:
        return None
    return Action(match.group(1).lower(), match.group(2).strip())


#: Firmware families told apart by M115's FIRMWARE_NAME, and what each needs handled.
#:
#: * ``always_checksum``: the firmware rejects lines without a line number and checksum.
#: * ``ok_after_resend``: the firmware answers a resend request with one extra ``ok`` that
#:   acknowledges nothing (swallowed).
#: * ``identical_resends``: the firmware repeats the same ``Resend:`` once per line it threw
#:   away; all but the first are ignored (done for every firmware).
_QUIRKS: dict[str, frozenset[str]] = {
    "marlin": frozenset({"identical_resends"}),
    "prusa": frozenset({"identical_resends"}),
    "repetier": frozenset({"always_checksum", "ok_after_resend", "identical_resends"}),
    "reprapfirmware": frozenset(),
    "smoothieware": frozenset(),
    "klipper": frozenset(),
    "unknown": frozenset(),
}


@attrs.frozen
class FirmwareData:
    """M115's report: every ``KEY:value`` field, the firmware family and its quirks."""

    fields: dict[str, str]
    flavor: str
    quirks: frozenset[str]

    @property
    def name(self) -> str:
        return self.fields.get("FIRMWARE_NAME", "")

    @property
    def extruder_count(self) -> int:
        try:
            return max(1, int(self.fields.get("EXTRUDER_COUNT", "1")))
        except ValueError:
            return 1


_FIELD_KEY = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*):")


def firmware_flavor(name: str) -> str:
    """The family of a FIRMWARE_NAME: marlin, prusa, repetier, reprapfirmware ... or unknown."""
    lower = name.lower()
    for needle, flavor in (
        ("prusa", "prusa"),
        ("repetier", "repetier"),
        ("reprapfirmware", "reprapfirmware"),
        ("rrf", "reprapfirmware"),
        ("smoothie", "smoothieware"),
        ("klipper", "klipper"),
        ("marlin", "marlin"),
    ):
        if needle in lower:
            return flavor
    return "unknown"


def parse_firmware_info(line: str) -> FirmwareData | None:
    """``FIRMWARE_NAME:Marlin 2.1.2 SOURCE_CODE_URL:https://... PROTOCOL_VERSION:1.0 ...``.

    A field runs from its ``KEY:`` (capitals, digits, underscores) to the next one, so values
    may hold blanks and colons (``https://``).
    """
    if not line.startswith("FIRMWARE_NAME:"):
        return None
    keys = list(_FIELD_KEY.finditer(line))
    fields: dict[str, str] = {}
    for index, match in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(line)
        fields.setdefault(match.group(1), line[match.end() : end].strip())
    flavor = firmware_flavor(fields.get("FIRMWARE_NAME", ""))
    return FirmwareData(fields, flavor, _QUIRKS[flavor])


_CAPABILITY = re.compile(r"Cap:([A-Za-z0-9_]+):\s*([01])\s*")


def parse_capability(line: str) -> tuple[str, bool] | None:
    """``Cap:AUTOREPORT_TEMP:1`` -> ``("AUTOREPORT_TEMP", True)``."""
    match = _CAPABILITY.fullmatch(line)
    if match is None:
        return None
    return match.group(1).upper(), match.group(2) == "1"


def parse_busy(line: str) -> str | None:
    """The reason of ``echo:busy: processing`` / ``busy: paused for user``."""
    index = line.find("busy:")
    if index < 0 or classify(line) is not LineKind.BUSY:
        return None
    return line[index + 5 :].strip()
