"""G-code lines read the way klippy reads them, without I/O.

klippy's rules, which :func:`parse_line` follows:

- Surrounding white space goes; a ``;`` starts a comment. The comment is still part of the
  line's text (:attr:`GcodeLine.raw`), which is what error messages quote and what ``M117`` /
  ``M118`` show.
- The line is read upper-cased, as alternating *keys* (runs of letters and ``_``, or a ``*``)
  and the text up to the next key (its *value*). The command is the first key with its value
  (``G1``, ``M104``, ``T0``, ``SET_HEATER_TEMPERATURE``); a leading line number ``N12`` is
  skipped, and a checksum ``*34`` is just another parameter.
- A *traditional* command is a letter and a number (``G1``, ``M117``): its parameters are the
  keys and values above (``X`` -> ``"10"``), upper-cased. Any other command is *extended*: its
  parameters are ``NAME=value`` words after the command, split like a shell line (quotes group,
  ``#`` and ``;`` start a comment), names upper-cased and values kept as written. A word
  without ``=`` or an open quote makes the line malformed.

Nothing here raises anything but :class:`GcodeError` (or its :class:`GcodeParseError`).
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Final, overload

import attrs

__all__ = [
    "GcodeError",
    "GcodeLine",
    "GcodeParseError",
    "is_traditional",
    "parse_line",
]


class GcodeError(Exception):
    """A G-code command failed: ``str(exc)`` is klippy's message for the failure."""

    #: set once the failure is on the G-code output (``!! ...``): a failure inside a macro
    #: is reported once, not once per level
    reported: bool = False


class GcodeParseError(GcodeError):
    """A line or a parameter that cannot be read; ``command`` is the line's command."""

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: "No default": the parameter is required.
MISSING: Final = _Missing()

_KEYS = re.compile(r"([A-Z_]+|\*)")

#: Traditional commands whose whole rest of line is their text, digits and all.
_TEXT_COMMANDS = frozenset({"M117", "M118", "M23"})


def is_traditional(command: str) -> bool:
    """``G1``, ``M104 ...``, ``T0``: a letter and then a number (klippy's definition)."""
    words = command.upper().split()
    if not words:
        return False
    word = words[0]
    if len(word) < 2 or not ("A" <= word[0] <= "Z") or not word[1].isdigit():
        return False
    try:
        float(word[1:])
    except ValueError:
        return False
    return True


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


@attrs.frozen
class GcodeLine:
    """One parsed line: ``command`` ("" for a blank or comment-only line), its parameters
    (names upper-cased) and ``raw``, the stripped line as written (comment included)."""

    command: str
    params: dict[str, str] = attrs.field(hash=False)
    raw: str

    @property
    def extended(self) -> bool:
        return bool(self.command) and not is_traditional(self.command)

    def raw_params(self) -> str:
        """The text after the command (``M117 Hello world`` -> ``Hello world``), without a
        leading line number or a trailing checksum."""
        line = self.raw
        command = self.command.split()[0] if self.command else ""
        start, end = len(command), len(line)
        if line[:start].upper() != command:
            # a line number comes first: find the command, and drop a checksum at the end
            start += max(line.upper().find(command), 0)
            star = line.rfind("*")
            if star >= 0 and line[star + 1 :].isdigit():
                end = star
        if line[start : start + 1].isspace():
            start += 1
        return line[start:end]

    # -- parameters, with klippy's error messages --------------------------------------------

    def _error(self, what: str) -> GcodeParseError:
        return GcodeParseError(f"Error on '{self.raw}': {what}", self.command)

    @overload
    def get(self, name: str, default: str | _Missing = MISSING) -> str: ...
    @overload
    def get(self, name: str, default: None) -> str | None: ...
    def get(self, name: str, default: str | _Missing | None = MISSING) -> str | None:
        value = self.params.get(name)
        if value is None:
            if isinstance(default, _Missing):
                raise self._error(f"missing {name}")
            return default
        return value

    @overload
    def get_float(
        self,
        name: str,
        default: float | _Missing = MISSING,
        *,
        minval: float | None = None,
        maxval: float | None = None,
        above: float | None = None,
        below: float | None = None,
    ) -> float: ...
    @overload
    def get_float(
        self,
        name: str,
        default: None,
        *,
        minval: float | None = None,
        maxval: float | None = None,
        above: float | None = None,
        below: float | None = None,
    ) -> float | None: ...
    def get_float(
        self,
        name: str,
        default: float | _Missing | None = MISSING,
        *,
        minval: float | None = None,
        maxval: float | None = None,
        above: float | None = None,
        below: float | None = None,
    ) -> float | None:
        text = self.params.get(name)
        if text is None:
            if isinstance(default, _Missing):
                raise self._error(f"missing {name}")
            return default
        try:
            value = _number(text)
        except ValueError:
            raise self._error(f"unable to parse {text}") from None
        self._check_range(name, value, minval, maxval, above, below)
        return value

    @overload
    def get_int(
        self,
        name: str,
        default: int | _Missing = MISSING,
        *,
        minval: int | None = None,
        maxval: int | None = None,
    ) -> int: ...
    @overload
    def get_int(
        self, name: str, default: None, *, minval: int | None = None, maxval: int | None = None
    ) -> int | None: ...
    def get_int(
        self,
        name: str,
        default: int | _Missing | None = MISSING,
        *,
        minval: int | None = None,
        maxval: int | None = None,
    ) -> int | None:
        text = self.params.get(name)
        if text is None:
            if isinstance(default, _Missing):
                raise self._error(f"missing {name}")
            return default
        try:
            value = int(text)
        except ValueError:
            raise self._error(f"unable to parse {text}") from None
        self._check_range(name, value, minval, maxval, None, None)
        return value

    def _check_range(
        self,
        name: str,
        value: float,
        minval: float | None,
        maxval: float | None,
        above: float | None,
        below: float | None,
    ) -> None:
        if minval is not None and value < minval:
            raise self._error(f"{name} must have minimum of {minval}")
        if maxval is not None and value > maxval:
            raise self._error(f"{name} must have maximum of {maxval}")
        if above is not None and value <= above:
            raise self._error(f"{name} must be above {above}")
        if below is not None and value >= below:
            raise self._error(f"{name} must be below {below}")


def _extended_params(line: GcodeLine) -> dict[str, str]:
    lexer = shlex.shlex(line.raw_params(), posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#;"
    params: dict[str, str] = {}
    try:
        for word in lexer:
            name, equals, value = word.partition("=")
            if not equals:
                raise ValueError(word)
            params[name.upper()] = value
    except ValueError:
        raise GcodeParseError(f"Malformed command '{line.raw}'", line.command) from None
    return params


def parse_line(text: str) -> GcodeLine:
    """Parse one line (no ``\\n`` in it) as klippy does; see the module docstring."""
    raw = text.strip()
    code = raw.split(";", 1)[0]
    parts = _KEYS.split(code.upper())
    if len(parts) > 1 and parts[0] == "" and parts[1] == "N":
        command = "".join(parts[3:5]).strip()
    else:
        command = "".join(parts[:3]).strip()
    params = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if " " in command and command.split()[0] in _TEXT_COMMANDS:
        command = command.split()[0]
    line = GcodeLine(command, params, raw)
    if line.extended:
        line = GcodeLine(command, _extended_params(line), raw)
    return line
