"""How slicer metadata is read from a G-code file's text: the pieces :mod:`.slicers` is made of.

:class:`Doc` is a file's first :data:`HEAD_SIZE` and last :data:`TAIL_SIZE` bytes (the two
regions :func:`~trioprint.domain.metadata.read_head_tail` reads). Each slicer is a table (a
:class:`Slicer`): how to recognise its files, and for each field the rules to try in
order (a comment pattern, or a key of its settings block). A rule is a function of the
:class:`Doc` and of the fields found so far (a first layer height given as a percentage of the
layer height needs the layer height). Patterns start with ``\\n`` and the two text regions are
given a leading ``\\n``, so that each search is a fast search for a literal and never matches
inside a line; settings blocks (``; key = value`` lines) are read into a dict once per region.

The value converters (:func:`num`, :func:`duration`, ...) turn a matched ``bytes`` value into
a field's value, or None when it cannot be read; :func:`gcode_bytes` finds where the G-code
commands start and end. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal

import attrs

from . import strictjson

#: Bytes read from the start of a file: slicer headers and thumbnails (as Moonraker: 1 MiB).
HEAD_SIZE = 1024 * 1024
#: Bytes read from the end: statistics and settings blocks (as Moonraker: 1 MiB).
TAIL_SIZE = 1024 * 1024

Region = Literal["head", "tail"]
Where = tuple[Region, ...]
HEAD: Where = ("head",)
TAIL: Where = ("tail",)
HEAD_TAIL: Where = ("head", "tail")
TAIL_HEAD: Where = ("tail", "head")

#: Setting lines; the key (stripped) is all before the first separator. The quantifier is
#: possessive: a comment line without the separator (base64, G-code notes) fails at its end
#: at once instead of backtracking through it.
_KEY_VALUE = {
    b"=": re.compile(rb"\n;([^\n=]*+)=([^\n]*)"),  # "; key = value"
    b":": re.compile(rb"\n;([^\n:]*+):([^\n]*)"),  # "; key : value"
    b",": re.compile(rb"\n;([^\n,]*+),([^\n]*)"),  # ";   key,value"
}


class Doc:
    """The two parts of a file as whole lines, each with a ``\\n`` in front.

    When ``head + tail`` is the whole file, the regions are its first :data:`HEAD_SIZE` and
    last :data:`TAIL_SIZE` bytes (both the whole file when it is small, as Moonraker reads it).
    A region that starts or ends inside the file loses its partial line there.
    ``head[i]`` is at file offset ``i - 1``, ``tail[i]`` at ``tail_start + i - 1``.
    """

    __slots__ = ("_settings", "head", "size", "tail", "tail_start")

    def __init__(self, head: bytes, tail: bytes, size: int) -> None:
        size = max(size, len(head) + len(tail))
        if len(head) + len(tail) == size:
            data = head + tail
            head, tail_start = data[:HEAD_SIZE], max(0, size - TAIL_SIZE)
            tail = data[tail_start:]
            partial_first_line = tail_start > 0 and data[tail_start - 1] != 0x0A
        else:
            tail_start = size - len(tail)
            partial_first_line = True
        if len(head) < size:
            head = head[: head.rfind(b"\n") + 1]
        if partial_first_line:
            cut = tail.find(b"\n") + 1 if b"\n" in tail else len(tail)
            tail, tail_start = tail[cut:], tail_start + cut
        self.head = b"\n" + head
        self.tail = b"\n" + tail
        self.tail_start = tail_start
        self.size = size
        self._settings: dict[tuple[Region, bytes], dict[bytes, bytes]] = {}

    def text(self, region: Region) -> bytes:
        return self.head if region == "head" else self.tail

    def setting(self, where: Where, key: bytes, sep: bytes = b"=") -> bytes | None:
        """The value of the first ``; key = value`` comment (``sep`` may be ``:`` or ``,``)."""
        for region in where:
            value = self._settings_of(region, sep).get(key)
            if value is not None:
                return value
        return None

    def _settings_of(self, region: Region, sep: bytes) -> dict[bytes, bytes]:
        settings = self._settings.get((region, sep))
        if settings is None:
            settings = {}
            for match in _KEY_VALUE[sep].finditer(self.text(region)):
                settings.setdefault(match.group(1).strip(), match.group(2).strip())
            self._settings[region, sep] = settings
        return settings


# --- values ---------------------------------------------------------------------------------

NUM = rb"(\d+(?:\.\d*)?|\.\d+)"
INT = rb"(\d{1,18})"
_LEADING_NUMBER = re.compile(rb'[\s"]*' + NUM)
_NUMBERS = re.compile(NUM)
_LEADING_INT = re.compile(rb'[\s"]*' + INT + rb"(?![\d.])")
_TOKEN = re.compile(rb'\s*"((?:\\"|[^"])*)"\s*|([^,;]+)')
_DURATION = re.compile(rb"(\d{1,9})\s*([dhms])")
_SECONDS = {b"d": 86400, b"h": 3600, b"m": 60, b"s": 1}

Convert = Callable[[bytes], Any]


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def num(raw: bytes) -> float | None:
    """The number a value starts with (``0.4`` of ``0.4,0.4``, ``50`` of ``50%``)."""
    match = _LEADING_NUMBER.match(raw)
    return finite(float(match.group(1))) if match else None


def integer(raw: bytes) -> int | None:
    match = _LEADING_INT.match(raw)
    return int(match.group(1)) if match else None


def text_value(raw: bytes) -> str | None:
    text = raw.decode("utf-8", "replace").strip().strip('"').strip()
    return text or None


def numbers(raw: bytes) -> list[float]:
    return [float(number) for number in _NUMBERS.findall(raw)]


def floats(raw: bytes) -> list[float] | None:
    values = [value for value in numbers(raw) if math.isfinite(value)]
    return values or None


def summed(raw: bytes) -> float | None:
    values = numbers(raw)
    return finite(round(sum(values), 6)) if values else None


def scaled_by(convert: Callable[[bytes], float | None], factor: float) -> Convert:
    def scaled(raw: bytes) -> float | None:
        value = convert(raw)
        return None if value is None else finite(round(value * factor, 6))

    return scaled


def tokens(raw: bytes) -> list[str]:
    """The items of a ``,`` or ``;`` separated list; items may be quoted (``"a";"b"``)."""
    items = []
    for match in _TOKEN.finditer(raw):
        quoted, bare = match.groups()
        item = quoted.replace(b'\\"', b'"') if quoted is not None else bare
        text = item.decode("utf-8", "replace").strip()
        if text:
            items.append(text)
    return items


def name_or_list(raw: bytes) -> str | None:
    """One name as it is; several as a JSON list in a string (Moonraker's convention)."""
    items = tokens(raw)
    if not items:
        return None
    return items[0] if len(items) == 1 else strictjson.dumps(items, compact=False)


def strings(raw: bytes) -> list[str] | None:
    return tokens(raw) or None


def ints(raw: bytes) -> list[int] | None:
    items = tokens(raw)
    if not items or not all(re.fullmatch(r"\d{1,18}", item) for item in items):
        return None
    return [int(item) for item in items]


def duration(raw: bytes) -> float | None:
    """Seconds in ``1d 2h 3m 4s`` (any of the parts)."""
    parts = _DURATION.findall(raw)
    if not parts:
        return None
    return float(sum(int(count) * _SECONDS[unit] for count, unit in parts))


def long_duration(raw: bytes) -> float | None:
    """Seconds in ``1 hours 4 minutes`` / ``1 hour 2 min 3 sec`` (Simplify3D)."""
    total, found = 0, False
    for pattern, seconds in ((rb"(\d{1,9})\s*hour", 3600), (rb"(\d{1,9})\s*min", 60)):
        match = re.search(pattern, raw)
        if match:
            total, found = total + int(match.group(1)) * seconds, True
    match = re.search(rb"(\d{1,9})\s*sec", raw)
    if match:
        total, found = total + int(match.group(1)), True
    return float(total) if found else None


def nonzero(convert: Convert) -> Convert:
    """A number that is not 0 (KISSlicer writes 0 for "not set")."""

    def positive(raw: bytes) -> Any:
        value = convert(raw)
        return value if value else None

    return positive


# --- rules ----------------------------------------------------------------------------------

Found = dict[str, Any]
Rule = Callable[[Doc, Found], Any]
Fields = dict[str, tuple[Rule, ...]]


def first_match(where: Where, pattern: bytes, convert: Convert = num) -> Rule:
    """The first match of ``pattern`` (its group 1, converted), in the first region that has it."""
    regex = re.compile(pattern)

    def rule(doc: Doc, found: Found) -> Any:
        for region in where:
            match = regex.search(doc.text(region))
            if match is not None:
                value = convert(match.group(1))
                if value is not None:
                    return value
        return None

    return rule


def all_matches(
    where: Where,
    pattern: bytes,
    combine: Callable[[list[Any]], Any],
    convert: Callable[[bytes], Any] = float,
) -> Rule:
    """``combine`` of all the matches of ``pattern`` in the first region that has some.

    Group 1 of ``pattern`` is a number (`NUM`` with ``float``, `INT`` with ``int``), so
    converting it cannot fail; infinities (``1e999`` is not a `NUM``) cannot occur.
    """
    regex = re.compile(pattern)

    def rule(doc: Doc, found: Found) -> Any:
        for region in where:
            values = [convert(value) for value in regex.findall(doc.text(region))]
            if values:
                return _finite_or_none(combine(values))
        return None

    return rule


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def rounded_sum(values: list[float]) -> float | None:
    return finite(round(sum(values), 6))


def last_value(values: list[Any]) -> Any:
    return values[-1]


def setting_rule(where: Where, key: bytes, convert: Convert = num, sep: bytes = b"=") -> Rule:
    """The value of ``; key = value`` (``sep`` ``:`` or ``,``), converted."""

    def rule(doc: Doc, found: Found) -> Any:
        raw = doc.setting(where, key, sep)
        return None if raw is None else convert(raw)

    return rule


def derived(compute: Callable[[Found], Any]) -> Rule:
    """A value computed from the fields found before it."""
    return lambda doc, found: compute(found)


# --- G-code extent --------------------------------------------------------------------------

#: A line that is a G or M command (what Moonraker counts for the G-code's extent); the last one
#: by a greedy match from the start, which backtracks from the end (in C, without copying).
_COMMAND = re.compile(rb"\n[GM]\d+\s")
_LAST_COMMAND = re.compile(rb"(?s:.*)\n([GM]\d+\s)")


def gcode_bytes(doc: Doc) -> dict[str, int]:
    """``gcode_start_byte`` and ``gcode_end_byte``, with Moonraker's conventions.

    The start is the offset of the newline before the first command line (0 if the file starts
    with one); the end is the offset just after the last command line.
    """
    extent: dict[str, int] = {}
    first = _COMMAND.search(doc.head)
    if first is not None:
        extent["gcode_start_byte"] = max(first.start() - 1, 0)
    last = _LAST_COMMAND.match(doc.tail)
    if last is not None:
        line_end = doc.tail.find(b"\n", last.start(1))
        extent["gcode_end_byte"] = doc.tail_start + line_end if line_end >= 0 else doc.size
    return extent


# --- slicers --------------------------------------------------------------------------------

Identify = Callable[[Doc], "tuple[str, str] | None"]


@attrs.frozen
class Slicer:
    identify: Identify
    fields: Fields


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


def identified_by(pattern: bytes, name: str) -> Identify:
    """Files whose head matches ``pattern``, its group 1 being the version."""
    regex = re.compile(pattern)

    def identify(doc: Doc) -> tuple[str, str] | None:
        match = regex.search(doc.head)
        return None if match is None else (name, decode(match.group(1)) or "?")

    return identify
