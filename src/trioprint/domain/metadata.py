"""G-code file metadata (slicer, print time, filament, temperatures, thumbnails), without I/O.

Moonraker's file manager reports for every G-code file what its slicer wrote in it: the
``server.files.metadata`` fields. Slicers write them as comments, at the start of the file (a
header: Cura, Simplify3D, Bambu Studio, thumbnails) or at its end (statistics and the settings
block of PrusaSlicer and its forks). So, like Moonraker, this module looks only at the first
:data:`HEAD_SIZE` and the last :data:`TAIL_SIZE` bytes: the cost does not grow with the file.

:func:`read_head_tail` is the only I/O (it reads those two parts); :func:`parse` is pure, never
raises, and gives :class:`Metadata`: the fields found (an unknown or malformed file gives none,
and a logged warning) and the embedded :class:`~trioprint.domain.thumbnails.Thumbnail`\\ s.
:func:`moonraker_fields` assembles the ``server.files.metadata`` result.

Each slicer is a table: how to recognise its files, and for each field the rules to try in
order (a comment pattern, or a key of its settings block). A rule is a function of the
:class:`_Doc` and of the fields found so far (a first layer height given as a percentage of the
layer height needs the layer height). Patterns start with ``\\n`` and the two text regions are
given a leading ``\\n``, so that each search is a fast search for a literal and never matches
inside a line; settings blocks (``; key = value`` lines) are read into a dict once per region.

Units follow Moonraker: lengths in mm, times in seconds, temperatures in °C, weights in g.

Slicers: PrusaSlicer and its forks (SuperSlicer, OrcaSlicer, Slic3r PE, ...: any "generated
by NAME VERSION on DATE"), Bambu Studio, Cura (also its Griffin header), Simplify3D 4 and 5,
KISSlicer, ideaMaker, IceSL, Kiri:Moto, and Creality Print 4/5 (CXEngine), which Moonraker does
not know. Where this module knowingly differs from Moonraker 0.11 (the fidelity test in
tests/test_metadata.py runs Moonraker's extractor on the corpus and checks the rest agrees):

- a file no known slicer wrote gives no fields at all (Moonraker: slicer "Unknown" and a few
  guesses from G1/M109 lines); empty values (``[]``, ``""``) are left out rather than listed;
- OrcaSlicer's and Bambu Studio's own setting names are read (initial layer height and
  temperatures, the bed temperature of the plate in use, Bambu's total estimated time);
- KISSlicer's 0 means "not set" (the layer heights come from the other setting or the first
  layer); its nozzle diameter and material name, and ideaMaker's ``;Dimension:`` are read;
- the object height of the PrusaSlicer family prefers the slicer's ``max_z_height`` or the
  last layer's ``;Z:`` to the highest ``G1 Z`` of the end (often the end G-code's lift);
- ``gcode_end_byte`` is just after the last command line even when that line is a bare
  ``M84`` (Moonraker's pattern then also counts the comment line after it);
- when the head is unreadable, PrusaSlicer's and SuperSlicer's settings block at the end still
  names the slicer (version ``"?"``);
- no 32x32 miniature is made when the slicer wrote none (Moonraker resizes with Pillow).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import uuid as uuid_module
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Literal

import attrs

from . import strictjson
from .thumbnails import Thumbnail, extract, thumbnail_bytes, thumbnail_info, thumbnail_name

__all__ = [
    "HEAD_SIZE",
    "TAIL_SIZE",
    "Metadata",
    "Thumbnail",
    "moonraker_fields",
    "parse",
    "read_head_tail",
    "thumbnail_bytes",
    "thumbnail_info",
    "thumbnail_name",
]

log = logging.getLogger(__name__)

#: Bytes read from the start of a file: slicer headers and thumbnails (as Moonraker: 1 MiB).
HEAD_SIZE = 1024 * 1024
#: Bytes read from the end: statistics and settings blocks (as Moonraker: 1 MiB).
TAIL_SIZE = 1024 * 1024

#: Moonraker's order of the fields (its parsers' order), which the results follow.
FIELD_ORDER = (
    "slicer",
    "slicer_version",
    "gcode_start_byte",
    "gcode_end_byte",
    "layer_count",
    "object_height",
    "estimated_time",
    "nozzle_diameter",
    "layer_height",
    "first_layer_height",
    "first_layer_extr_temp",
    "first_layer_bed_temp",
    "chamber_temp",
    "filament_name",
    "filament_type",
    "filament_colors",
    "filament_change_count",
    "extruder_colors",
    "filament_temps",
    "referenced_tools",
    "mmu_print",
    "filament_total",
    "filament_weight_total",
    "filament_weights",
    "printer_vendor",
    "printer_model",
    "printer_variant",
    "profile_version",
)


@attrs.frozen
class Metadata:
    """What :func:`parse` found: Moonraker's fields (only those found), and the thumbnails."""

    fields: dict[str, Any]
    thumbnails: tuple[Thumbnail, ...] = ()


# --- I/O ------------------------------------------------------------------------------------


def read_head_tail(source: str | os.PathLike[str] | BinaryIO) -> tuple[bytes, bytes, int]:
    """``(head, tail, size)`` of a file given by path or as an open binary file object.

    ``head`` is the first :data:`HEAD_SIZE` bytes, ``tail`` the last :data:`TAIL_SIZE` bytes
    after those (empty for a file no longer than the head), ``size`` the file's size; so
    ``head + tail`` is the whole file when ``len(head) + len(tail) == size``. Reads at most
    ``HEAD_SIZE + TAIL_SIZE`` bytes. A file object is read from its start and not closed.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb", buffering=0) as file:
            return _read_head_tail(file)
    return _read_head_tail(source)


def _read_head_tail(file: BinaryIO) -> tuple[bytes, bytes, int]:
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    head = _read(file, min(size, HEAD_SIZE))
    if size <= len(head):
        return head, b"", len(head)
    start = max(len(head), size - TAIL_SIZE)
    file.seek(start)
    tail = _read(file, size - start)
    return head, tail, start + len(tail)


def _read(file: BinaryIO, count: int) -> bytes:
    parts: list[bytes] = []
    while count > 0:
        part = file.read(count)
        if not part:
            break
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


# --- the result -----------------------------------------------------------------------------


def moonraker_fields(
    meta: Metadata,
    *,
    filename: str,
    size: int,
    modified: float,
    thumbnails: list[dict[str, Any]],
    uuid: str | None = None,
    print_start_time: float | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """The ``server.files.metadata`` result, in Moonraker 0.11's shape and key order.

    ``thumbnails`` are the entries of the images written (see
    :func:`~trioprint.domain.thumbnails.thumbnail_info`); ``uuid`` identifies this extraction
    (a new one if not given: Moonraker makes one each time it parses a file);
    ``print_start_time`` and ``job_id`` are the history's (``None`` until the file is printed).
    ``file_processors`` is always empty: no G-code processors are run.
    """
    result: dict[str, Any] = {
        "size": size,
        "modified": modified,
        "uuid": uuid if uuid is not None else str(uuid_module.uuid4()),
        "file_processors": [],
    }
    result.update(meta.fields)
    if thumbnails:
        result["thumbnails"] = [dict(entry) for entry in thumbnails]
    result["print_start_time"] = print_start_time
    result["job_id"] = job_id
    result["filename"] = filename
    return result


# --- parsing --------------------------------------------------------------------------------


def parse(head: bytes, tail: bytes, size: int) -> Metadata:
    """The metadata of a file of ``size`` bytes from its :func:`read_head_tail` parts.

    Pure, and never raises: a file no known slicer wrote gives no fields (and a warning), a
    field that cannot be read is left out.
    """
    try:
        return _parse(bytes(head), bytes(tail), int(size))
    except Exception:  # a bug here must not cost the caller its file listing
        log.warning("metadata: parsing failed", exc_info=True)
        return Metadata({})


def _parse(head: bytes, tail: bytes, size: int) -> Metadata:
    doc = _Doc(head, tail, size)
    thumbnails = extract(((doc.head, -1), (doc.tail, doc.tail_start - 1)))
    for slicer in _SLICERS:
        identity = slicer.identify(doc)
        if identity is not None:
            break
    else:
        log.warning("metadata: no known slicer wrote this file; only its size and date are known")
        return Metadata({}, thumbnails)
    found: dict[str, Any] = {"slicer": identity[0], "slicer_version": identity[1]}
    found.update(_gcode_bytes(doc))
    for name, rules in slicer.fields.items():
        for rule in rules:
            try:
                value = rule(doc, found)
            except Exception:  # a bug in one rule must not cost the other fields
                log.warning("metadata: reading %s failed", name, exc_info=True)
                value = None
            if value is not None:
                found[name] = value
                break
    return Metadata({key: found[key] for key in FIELD_ORDER if key in found}, thumbnails)


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


class _Doc:
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

_NUM = rb"(\d+(?:\.\d*)?|\.\d+)"
_INT = rb"(\d{1,18})"
_LEADING_NUMBER = re.compile(rb'[\s"]*' + _NUM)
_NUMBERS = re.compile(_NUM)
_LEADING_INT = re.compile(rb'[\s"]*' + _INT + rb"(?![\d.])")
_TOKEN = re.compile(rb'\s*"((?:\\"|[^"])*)"\s*|([^,;]+)')
_DURATION = re.compile(rb"(\d{1,9})\s*([dhms])")
_SECONDS = {b"d": 86400, b"h": 3600, b"m": 60, b"s": 1}

Convert = Callable[[bytes], Any]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _num(raw: bytes) -> float | None:
    """The number a value starts with (``0.4`` of ``0.4,0.4``, ``50`` of ``50%``)."""
    match = _LEADING_NUMBER.match(raw)
    return _finite(float(match.group(1))) if match else None


def _int(raw: bytes) -> int | None:
    match = _LEADING_INT.match(raw)
    return int(match.group(1)) if match else None


def _text(raw: bytes) -> str | None:
    text = raw.decode("utf-8", "replace").strip().strip('"').strip()
    return text or None


def _numbers(raw: bytes) -> list[float]:
    return [float(number) for number in _NUMBERS.findall(raw)]


def _floats(raw: bytes) -> list[float] | None:
    values = [value for value in _numbers(raw) if math.isfinite(value)]
    return values or None


def _sum(raw: bytes) -> float | None:
    values = _numbers(raw)
    return _finite(round(sum(values), 6)) if values else None


def _scaled(convert: Callable[[bytes], float | None], factor: float) -> Convert:
    def scaled(raw: bytes) -> float | None:
        value = convert(raw)
        return None if value is None else _finite(round(value * factor, 6))

    return scaled


def _tokens(raw: bytes) -> list[str]:
    """The items of a ``,`` or ``;`` separated list; items may be quoted (``"a";"b"``)."""
    items = []
    for match in _TOKEN.finditer(raw):
        quoted, bare = match.groups()
        item = quoted.replace(b'\\"', b'"') if quoted is not None else bare
        text = item.decode("utf-8", "replace").strip()
        if text:
            items.append(text)
    return items


def _names(raw: bytes) -> str | None:
    """One name as it is; several as a JSON list in a string (Moonraker's convention)."""
    items = _tokens(raw)
    if not items:
        return None
    return items[0] if len(items) == 1 else strictjson.dumps(items, compact=False)


def _strings(raw: bytes) -> list[str] | None:
    return _tokens(raw) or None


def _ints(raw: bytes) -> list[int] | None:
    items = _tokens(raw)
    if not items or not all(re.fullmatch(r"\d{1,18}", item) for item in items):
        return None
    return [int(item) for item in items]


def _duration(raw: bytes) -> float | None:
    """Seconds in ``1d 2h 3m 4s`` (any of the parts)."""
    parts = _DURATION.findall(raw)
    if not parts:
        return None
    return float(sum(int(count) * _SECONDS[unit] for count, unit in parts))


def _long_duration(raw: bytes) -> float | None:
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


def _positive(convert: Convert) -> Convert:
    """A number that is not 0 (KISSlicer writes 0 for "not set")."""

    def positive(raw: bytes) -> Any:
        value = convert(raw)
        return value if value else None

    return positive


# --- rules ----------------------------------------------------------------------------------

Found = dict[str, Any]
Rule = Callable[[_Doc, Found], Any]
Fields = dict[str, tuple[Rule, ...]]


def _first(where: Where, pattern: bytes, convert: Convert = _num) -> Rule:
    """The first match of ``pattern`` (its group 1, converted), in the first region that has it."""
    regex = re.compile(pattern)

    def rule(doc: _Doc, found: Found) -> Any:
        for region in where:
            match = regex.search(doc.text(region))
            if match is not None:
                value = convert(match.group(1))
                if value is not None:
                    return value
        return None

    return rule


def _all(
    where: Where,
    pattern: bytes,
    combine: Callable[[list[Any]], Any],
    convert: Callable[[bytes], Any] = float,
) -> Rule:
    """``combine`` of all the matches of ``pattern`` in the first region that has some.

    Group 1 of ``pattern`` is a number (``_NUM`` with ``float``, ``_INT`` with ``int``), so
    converting it cannot fail; infinities (``1e999`` is not a ``_NUM``) cannot occur.
    """
    regex = re.compile(pattern)

    def rule(doc: _Doc, found: Found) -> Any:
        for region in where:
            values = [convert(value) for value in regex.findall(doc.text(region))]
            if values:
                return _finite_or_none(combine(values))
        return None

    return rule


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _total(values: list[float]) -> float | None:
    return _finite(round(sum(values), 6))


def _last(values: list[Any]) -> Any:
    return values[-1]


def _setting(where: Where, key: bytes, convert: Convert = _num, sep: bytes = b"=") -> Rule:
    """The value of ``; key = value`` (``sep`` ``:`` or ``,``), converted."""

    def rule(doc: _Doc, found: Found) -> Any:
        raw = doc.setting(where, key, sep)
        return None if raw is None else convert(raw)

    return rule


def _derived(compute: Callable[[Found], Any]) -> Rule:
    """A value computed from the fields found before it."""
    return lambda doc, found: compute(found)


# --- G-code extent --------------------------------------------------------------------------

#: A line that is a G or M command (what Moonraker counts for the G-code's extent); the last one
#: by a greedy match from the start, which backtracks from the end (in C, without copying).
_COMMAND = re.compile(rb"\n[GM]\d+\s")
_LAST_COMMAND = re.compile(rb"(?s:.*)\n([GM]\d+\s)")


def _gcode_bytes(doc: _Doc) -> dict[str, int]:
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

Identify = Callable[[_Doc], "tuple[str, str] | None"]


@attrs.frozen
class _Slicer:
    identify: Identify
    fields: Fields


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()


def _identified_by(pattern: bytes, name: str) -> Identify:
    """Files whose head matches ``pattern``, its group 1 being the version."""
    regex = re.compile(pattern)

    def identify(doc: _Doc) -> tuple[str, str] | None:
        match = regex.search(doc.head)
        return None if match is None else (name, _decode(match.group(1)) or "?")

    return identify


# PrusaSlicer and its forks (SuperSlicer, OrcaSlicer, ...): "; generated by NAME VERSION on DATE
# at TIME"; statistics ("; filament used [mm] = ...") and settings at the end. Bambu Studio has
# the same settings, in a CONFIG_BLOCK at the start, and its own header. OrcaSlicer has both
# kinds of names (first_layer_height / initial_layer_print_height ...): the rules try each.

_GENERATED_BY = re.compile(rb"\n; generated by ([^\n]+?) on \d{4}-\d\d-\d\d at \d\d:\d\d:\d\d")
_GENERATED_BY_KNOWN = re.compile(
    rb"\n; generated by (PrusaSlicer|SuperSlicer|OrcaSlicer|SliCR-3D|QIDISlicer)[ \t]+(\S+)"
)
#: The settings block's first line: "; prusaslicer_config = begin", "; SuperSlicer_config ...".
_CONFIG_BLOCK = re.compile(rb"\n; ((?i:prusaslicer|superslicer|qidislicer))_config = begin")
_CONFIG_NAMES = {b"prusaslicer": "PrusaSlicer", b"superslicer": "SuperSlicer"}
_CONFIG_NAMES[b"qidislicer"] = "QIDISlicer"
_ALIASES = {"Slic3r Prusa Edition": "Slic3r PE"}


def _identify_prusa(doc: _Doc) -> tuple[str, str] | None:
    match = _GENERATED_BY.search(doc.head)
    if match is not None:
        name, _, version = _decode(match.group(1)).rpartition(" ")
        if not name:
            name, version = version, "?"
        return _ALIASES.get(name, name), version
    match = _GENERATED_BY_KNOWN.search(doc.head)
    if match is not None:
        return _decode(match.group(1)), _decode(match.group(2))
    # The head is not there (or garbage), but the settings block at the end names the slicer.
    match = _CONFIG_BLOCK.search(doc.tail)
    if match is not None:
        return _CONFIG_NAMES[match.group(1).lower()], "?"
    return None


def _first_layer_height_prusa(where: Where) -> Rule:
    """``first_layer_height``, which may be a percentage of the layer height."""

    def rule(doc: _Doc, found: Found) -> float | None:
        raw = doc.setting(where, b"first_layer_height")
        if raw is None:
            return None
        if not raw.endswith(b"%"):
            return _num(raw)
        percent, layer_height = _num(raw), found.get("layer_height")
        if percent is None or not isinstance(layer_height, float):
            return None
        return round(percent / 100 * layer_height, 6)

    return rule


#: Bambu Studio / OrcaSlicer: the first layer's bed temperature is per plate type.
_PLATES = (
    (b"supertack", b"supertack_plate_temp_initial_layer"),
    (b"textured cool", b"textured_cool_plate_temp_initial_layer"),
    (b"cool", b"cool_plate_temp_initial_layer"),
    (b"engineering", b"eng_plate_temp_initial_layer"),
    (b"textured pei", b"textured_plate_temp_initial_layer"),
    (b"high temp", b"hot_plate_temp_initial_layer"),
    (b"smooth pei", b"hot_plate_temp_initial_layer"),
)


def _plate_bed_temp(where: Where) -> Rule:
    def rule(doc: _Doc, found: Found) -> float | None:
        plate = (doc.setting(where, b"curr_bed_type") or b"").lower()
        for name, key in _PLATES:
            if name in plate:
                raw = doc.setting(where, key)
                return None if raw is None else _num(raw)
        return None

    return rule


def _none_found(doc: _Doc, found: dict[str, Any]) -> list[Any]:
    """The last rule of a list field that is ``[]`` (not absent) when no rule found it."""
    return []


def _prusa_like(config: Where, *, header_first: bool) -> Fields:
    """The fields of PrusaSlicer's family, its settings read from ``config`` first.

    With ``header_first`` (Bambu Studio), the statistics of the header block are preferred to
    those that PrusaSlicer writes at the end, and Bambu's setting names to PrusaSlicer's.
    """
    setting = functools.partial(_setting, config)

    def ordered(prusa: Rule, bambu: Rule, *more: Rule) -> tuple[Rule, ...]:
        return (bambu, prusa, *more) if header_first else (prusa, bambu, *more)

    return {
        "layer_count": ordered(
            setting(b"total layers count", _int),
            _first(HEAD, rb"\n; total layer number: " + _INT, _int),
        ),
        "object_height": (
            _first(HEAD, rb"\n; max_z_height: " + _NUM),
            _all(TAIL, rb"\n;BEFORE_LAYER_CHANGE\r?\n(?:[^\n]*\n)?;" + _NUM, max),
            _all(TAIL, rb"\n;Z:" + _NUM, max),
            _all(TAIL, rb"\nG1 Z" + _NUM + rb" F", max),
        ),
        "estimated_time": ordered(
            setting(b"estimated printing time (normal mode)", _duration),
            _first(HEAD, rb"total estimated time: ([^\n;]*)", _duration),
            setting(b"estimated printing time (silent mode)", _duration),
        ),
        "nozzle_diameter": (setting(b"nozzle_diameter"),),
        "layer_height": (setting(b"layer_height"),),
        "first_layer_height": ordered(
            _first_layer_height_prusa(config),
            setting(b"initial_layer_print_height"),
        ),
        "first_layer_extr_temp": ordered(
            setting(b"first_layer_temperature"),
            setting(b"nozzle_temperature_initial_layer"),
        ),
        "first_layer_bed_temp": (
            setting(b"first_layer_bed_temperature"),
            _plate_bed_temp(config),
            setting(b"hot_plate_temp_initial_layer"),
        ),
        "chamber_temp": ordered(setting(b"chamber_temperature"), setting(b"chamber_temperatures")),
        "filament_name": (setting(b"filament_settings_id", _names),),
        "filament_type": (setting(b"filament_type", _names),),
        # Moonraker's PrusaSlicer family reports these lists empty when the file has none
        "filament_colors": (setting(b"filament_colour", _strings), _none_found),
        "filament_change_count": (
            setting(b"total toolchanges", _int),
            setting(b"total filament change", _int),
        ),
        "extruder_colors": (setting(b"extruder_colour", _strings), _none_found),
        "filament_temps": (
            setting(b"temperature", _ints),
            setting(b"nozzle_temperature", _ints),
            _none_found,
        ),
        "referenced_tools": (setting(b"referenced_tools", _ints), _none_found),
        "mmu_print": (setting(b"single_extruder_multi_material", _int),),
        "filament_total": ordered(
            setting(b"filament used [mm]", _sum),
            _first(HEAD, rb"\n; total filament length \[mm\] : " + _NUM),
            setting(b"filament used", _num),  # Slic3r PE: "1234.5mm (2.9cm3)"
        ),
        "filament_weight_total": ordered(
            setting(b"total filament used [g]"),
            _first(HEAD, rb"\n; total filament weight \[g\] : " + _NUM),
        ),
        "filament_weights": (setting(b"filament used [g]", _floats),),
        "printer_vendor": (setting(b"printer_vendor", _text),),
        "printer_model": (setting(b"printer_model", _text),),
        "printer_variant": (setting(b"printer_variant", _text),),
        "profile_version": (setting(b"profile_version", _text),),
    }


_PRUSA = _Slicer(_identify_prusa, _prusa_like(TAIL_HEAD, header_first=False))
_BAMBU = _Slicer(
    _identified_by(rb"\n; BambuStudio[ \t]+(\S+)", "BambuStudio"),
    _prusa_like(HEAD_TAIL, header_first=True),
)


# Cura (CuraEngine): a header of ";KEY:value" lines. Griffin (UltiMaker) flavour has its own.
# Filament type/name/weight and nozzle diameter are only there if the start G-code writes them
# (";Filament type = {material_type}" ..., as Moonraker's documentation suggests).

_CURA_FILAMENT_USED = rb"\n;Filament used: ?([^\n]*)"


def _metres_total(raw: bytes) -> float | None:
    """The sum of ``1.23m, 0.5m`` in mm (not for volumetric ``mm3`` values)."""
    return None if b"mm3" in raw else _scaled(_sum, 1000)(raw)


def _identify_cura(doc: _Doc) -> tuple[str, str] | None:
    match = re.search(rb"Cura_SteamEngine[ \t]+([^\s]+)", doc.head)
    if match is not None:
        return "Cura", _decode(match.group(1))
    if re.search(rb"\n;GENERATOR\.NAME:Cura_SteamEngine", doc.head) is not None:
        version = re.search(rb"\n;GENERATOR\.VERSION:([^\s]+)", doc.head)
        return "Cura", _decode(version.group(1)) if version is not None else "?"
    return None


def _total_weight(found: Found) -> float | None:
    weights = found.get("filament_weights")
    return _total(weights) if weights else None


_CURA_FIELDS: Fields = {
    "layer_count": (_first(HEAD, rb"\n;LAYER_COUNT:" + _INT, _int),),
    "object_height": (
        _first(HEAD, rb"\n;MAXZ:" + _NUM),
        _first(HEAD, rb"\n;PRINT\.SIZE\.MAX\.Z:" + _NUM),
    ),
    "estimated_time": (
        _all(HEAD, rb"\n;TIME:" + _NUM, max),
        _first(HEAD, rb"\n;PRINT\.TIME:" + _NUM),
    ),
    "nozzle_diameter": (
        _first(HEAD, rb"\n;Nozzle diameter = " + _NUM),
        _first(HEAD, rb"\n;EXTRUDER_TRAIN\.0\.NOZZLE\.DIAMETER:" + _NUM),
    ),
    "layer_height": (_first(HEAD, rb"\n;Layer height: " + _NUM),),
    "first_layer_height": (
        _first(HEAD, rb"\n;MINZ:" + _NUM),
        _first(HEAD, rb"\n;PRINT\.SIZE\.MIN\.Z:" + _NUM),
    ),
    "first_layer_extr_temp": (
        _first(HEAD, rb"\nM109 S" + _NUM),
        _first(HEAD, rb"\n;EXTRUDER_TRAIN\.0\.INITIAL_TEMPERATURE:" + _NUM),
    ),
    "first_layer_bed_temp": (
        _first(HEAD, rb"\nM190 S" + _NUM),
        _first(HEAD, rb"\n;BUILD_PLATE\.INITIAL_TEMPERATURE:" + _NUM),
    ),
    "chamber_temp": (
        _first(HEAD, rb"\nM191 S" + _NUM),
        _first(HEAD, rb"\n;BUILD_VOLUME\.TEMPERATURE:" + _NUM),
    ),
    "filament_name": (_first(HEAD, rb"\n;Filament name = ([^\n]*)", _text),),
    "filament_type": (_first(HEAD, rb"\n;Filament type = ([^\n]*)", _text),),
    "filament_total": (_first(HEAD, _CURA_FILAMENT_USED, _metres_total),),
    "filament_weights": (_first(HEAD, rb"\n;Filament weight = \[([^\]\n]*)\]", _floats),),
    "filament_weight_total": (_derived(_total_weight),),
}
_CURA = _Slicer(_identify_cura, _CURA_FIELDS)


# Creality Print 4.x/5.x (CXEngine, a CuraEngine fork; Moonraker does not know it): Cura's
# header, then ";Creality Print GCode Generated by CXEngine", ";Creality Print Version : V",
# and the profile as ";Key:value" lines. Its K1-series start G-code may heat with a macro, so
# the profile temperatures back up M109/M190.


def _identify_creality(doc: _Doc) -> tuple[str, str] | None:
    version = re.search(rb"\n;Creality Print Version ?: ?[Vv]?([^\s]+)", doc.head)
    if version is not None:
        return "Creality Print", _decode(version.group(1))
    if re.search(rb"\n;Creality Print GCode Generated by CXEngine", doc.head) is not None:
        return "Creality Print", "?"
    return None


_CREALITY_FIELDS: Fields = {
    "layer_count": (_first(HEAD, rb"\n;LAYER_COUNT:" + _INT, _int),),
    "object_height": (_first(HEAD, rb"\n;MAXZ:" + _NUM),),
    "estimated_time": (_all(HEAD, rb"\n;TIME:" + _NUM, max),),
    "nozzle_diameter": (_first(HEAD, rb"\n;Nozzle diameter = " + _NUM),),
    "layer_height": (
        _first(HEAD, rb"\n;Layer height: ?" + _NUM),
        _first(HEAD, rb"\n;Layer Height: ?" + _NUM),
    ),
    "first_layer_height": (_first(HEAD, rb"\n;MINZ:" + _NUM),),
    "first_layer_extr_temp": (
        _first(HEAD, rb"\nM109 S" + _NUM),
        _first(HEAD, rb"\n;Print Temperature: ?" + _NUM),
    ),
    "first_layer_bed_temp": (
        _first(HEAD, rb"\nM190 S" + _NUM),
        _first(HEAD, rb"\n;Bed Temperature: ?" + _NUM),
    ),
    "chamber_temp": (_first(HEAD, rb"\nM191 S" + _NUM),),
    "filament_name": (_first(HEAD, rb"\n;Material Name: ?([^\n]*)", _text),),
    "filament_type": (
        _first(HEAD, rb"\n;Material Type: ?([^\n]*)", _text),
        _first(HEAD, rb"\n;Material name: ?([^\n]*)", _text),  # CXEngine's spelling of the type
    ),
    "filament_total": (_first(HEAD, _CURA_FILAMENT_USED, _metres_total),),
}
_CREALITY = _Slicer(_identify_creality, _CREALITY_FIELDS)


# Simplify3D: "; G-Code generated by Simplify3D(R) Version 4.1.2", a settings summary of
# ";   key,value" lines, a build summary at the end. Version 5 renamed some of it.


def _s3d_temp_v4(heater: str) -> Rule:
    def rule(doc: _Doc, found: Found) -> float | None:
        names = doc.setting(HEAD, b"temperatureName", sep=b",")
        temps = doc.setting(HEAD, b"temperatureSetpointTemperatures", sep=b",")
        if names is None or temps is None:
            return None
        for name, temp in zip(names.split(b","), temps.split(b","), strict=False):
            if _decode(name) == heater:
                return _num(temp)
        return None

    return rule


_S3D_V5_TEMPS = re.compile(rb"\n;[ \t]+temperature(Controller|Type|Setpoints),([^\n]*)")


def _s3d_temp_v5(kind: bytes) -> Rule:
    """The first setpoint of the first controller of ``kind`` (``extruder``, ``platform``)."""

    def rule(doc: _Doc, found: Found) -> float | None:
        current = None
        for match in _S3D_V5_TEMPS.finditer(doc.head):
            what, value = match.group(1), match.group(2).strip()
            if what == b"Controller":
                current = None
            elif what == b"Type":
                current = value
            elif current == kind:
                _layer, _, temp = value.partition(b",")[0].partition(b"|")
                return _num(temp)
        return None

    return rule


_S3D_FIELDS: Fields = {
    "object_height": (_all(TAIL, rb"\nG1 Z" + _NUM + rb"\s", max),),
    "estimated_time": (_first(TAIL, rb"\n;[ \t]+Build [tT]ime:([^\n]*)", _long_duration),),
    "nozzle_diameter": (
        _setting(HEAD, b"extruderDiameter", sep=b","),
        _setting(HEAD, b"nozzleDiameter", sep=b","),
    ),
    "layer_height": (_setting(HEAD, b"layerHeight", sep=b","),),
    "first_layer_height": (_all(HEAD, rb"\nG1 Z" + _NUM + rb"\s", min),),
    "first_layer_extr_temp": (_s3d_temp_v4("Extruder 1"), _s3d_temp_v5(b"extruder")),
    "first_layer_bed_temp": (_s3d_temp_v4("Heated Bed"), _s3d_temp_v5(b"platform")),
    "filament_name": (_setting(HEAD, b"printMaterial", _text, sep=b","),),
    "filament_type": (_setting(HEAD_TAIL, b"makerBotModelMaterial", _text, sep=b","),),
    "filament_total": (
        _first(TAIL, rb"\n;[ \t]+(?:Filament length|Material Length): " + _NUM + rb" mm"),
    ),
    "filament_weight_total": (
        _first(TAIL, rb"\n;[ \t]+(?:Plastic weight|Material Weight): " + _NUM + rb" g"),
    ),
}
_S3D = _Slicer(_identified_by(rb"Simplify3D\(R\) Version[ \t]+(\S+)", "Simplify3D"), _S3D_FIELDS)


# KISSlicer: "; KISSlicer - PRO", "; version 2 a 2.0.6 Linux64", its settings as "; key = value"
# (0 meaning "not set"), per-layer "; BEGIN_LAYER_OBJECT z=..." and a summary at the end.


def _identify_kisslicer(doc: _Doc) -> tuple[str, str] | None:
    if re.search(rb"\n; KISSlicer", doc.head) is None:
        return None
    version = re.search(rb"\n; version ([^\n]+)", doc.head)
    return "KISSlicer", _decode(version.group(1)).replace(" ", "-") if version else "?"


_KISSLICER_FIELDS: Fields = {
    "object_height": (_all(TAIL, rb"\n; END_LAYER_OBJECT z=" + _NUM, max),),
    "estimated_time": (
        _first(TAIL, rb"\n; Calculated[^\n]*?Build Time: *" + _NUM + rb" *min", _scaled(_num, 60)),
    ),
    "nozzle_diameter": (_setting(HEAD, b"nozzle_dia_1"),),
    "layer_height": (
        _setting(HEAD, b"max_layer_thickness_mm", _positive(_num)),
        _setting(HEAD, b"layer_thickness_mm", _positive(_num)),
    ),
    "first_layer_height": (
        _setting(HEAD, b"first_layer_thickness_mm", _positive(_num)),
        _first(HEAD, rb"\n; BEGIN_LAYER_OBJECT z=" + _NUM),
    ),
    "first_layer_extr_temp": (_setting(HEAD, b"first_layer_C"),),
    "first_layer_bed_temp": (_setting(HEAD, b"bed_C"),),
    "chamber_temp": (_setting(HEAD, b"chamber_C"),),
    "filament_name": (_setting(HEAD, b"material_name", _text),),
    "filament_total": (_all(TAIL, rb"\n;[ \t]+Ext #\d+[ \t]+= +" + _NUM + rb" *mm", _total),),
}
_KISSLICER = _Slicer(_identify_kisslicer, _KISSLICER_FIELDS)


# ideaMaker (Raise3D): ";Sliced by ideaMaker 4.4.0.6542, ...", header lines ";Key #n: value",
# ";LAYER:n" / ";HEIGHT:h" per layer, the material used and print time at the end.


def _nth_number(position: int) -> Convert:
    def nth(raw: bytes) -> float | None:
        values = _numbers(raw)
        return _finite(values[position]) if len(values) > abs(position) else None

    return nth


def _ideamaker_weight(doc: _Doc, found: Found) -> float | None:
    """The sum over the extruders of length * filament section * density (kg/m3)."""
    lengths = [float(v) for v in re.findall(rb"\n;Material#\d+ Used: " + _NUM, doc.tail)]
    diameters = [float(v) for v in re.findall(rb"\n;Filament Diameter #\d+: " + _NUM, doc.head)]
    densities = [float(v) for v in re.findall(rb"\n;Filament Density #\d+: " + _NUM, doc.head)]
    if not lengths or not len(lengths) == len(diameters) == len(densities):
        return None
    grams = sum(
        math.pi / 4 * diameter**2 * length * density / 1e6
        for length, diameter, density in zip(lengths, diameters, densities, strict=True)
    )
    return _finite(round(grams, 6))


_IDEAMAKER_FIELDS: Fields = {
    "object_height": (_first(HEAD, rb"\n;Bounding Box:([^\n]*)", _nth_number(-1)),),
    "estimated_time": (_first(TAIL, rb"\n;Print Time: " + _NUM),),
    "nozzle_diameter": (_first(HEAD, rb"\n;Dimension:([^\n]*)", _nth_number(3)),),
    "layer_height": (_first(HEAD, rb"\n;LAYER:1\r?\n(?:[^\n]*\n)?;HEIGHT:" + _NUM),),
    "first_layer_height": (_first(HEAD, rb"\n;LAYER:0\r?\n(?:[^\n]*\n)?;HEIGHT:" + _NUM),),
    "first_layer_extr_temp": (_first(HEAD, rb"\nM109 T0 S" + _NUM),),
    "first_layer_bed_temp": (_first(HEAD, rb"\nM190 S" + _NUM),),
    "chamber_temp": (_first(HEAD, rb"\nM191 S" + _NUM),),
    "filament_name": (
        _first(HEAD, rb"\n;Filament Name #\d+: ([^\n]*)", _text),
        _first(HEAD, rb"\n;Filament name = ([^\n]*)", _text),
    ),
    "filament_type": (
        _first(HEAD, rb"\n;Filament Type #\d+: ([^\n]*)", _text),
        _first(HEAD, rb"\n;Filament type = ([^\n]*)", _text),
    ),
    "filament_total": (_all(TAIL, rb"\n;Material#\d+ Used: " + _NUM, _total),),
    "filament_weight_total": (_ideamaker_weight,),
}
_IDEAMAKER = _Slicer(_identified_by(rb"ideaMaker[ \t]+([^,\s]+),", "IdeaMaker"), _IDEAMAKER_FIELDS)


# IceSL: its settings as "; key : \tvalue" after "; <IceSL build-date>" (a version if the profile
# writes one); its profiles add the print statistics in the same form.


def _identify_icesl(doc: _Doc) -> tuple[str, str] | None:
    match = re.search(rb"\n; ?<IceSL ?([^>\n]*)>", doc.head)
    if match is None:
        return None
    version = _decode(match.group(1))
    return "IceSL", version if version[:1].isdigit() else "-"


def _icesl_first_layer(doc: _Doc, found: Found) -> float | None:
    """The first layer's height, which is the layer height unless set to differ."""
    different = doc.setting(HEAD, b"use_different_thickness_first_layer", sep=b":")
    if different is not None and different.lower() == b"false":
        return found.get("layer_height")
    return None


def _icesl(key: bytes, convert: Convert = _num) -> Rule:
    return _setting(HEAD, key, convert, sep=b":")


_ICESL_FIELDS: Fields = {
    "layer_count": (
        _icesl(b"layer_count", _int),
        _all(TAIL, rb"\n; <layer " + _INT + rb">", lambda layers: max(layers) + 1, int),
    ),
    "object_height": (_icesl(b"print_height_mm"), _all(TAIL, rb"\nG1 Z" + _NUM, max)),
    "estimated_time": (_icesl(b"estimated_print_time_s"),),
    "nozzle_diameter": (_icesl(b"nozzle_diameter_mm_0"),),
    "layer_height": (_icesl(b"z_layer_height_mm"),),
    "first_layer_height": (_icesl_first_layer, _icesl(b"z_layer_height_first_layer_mm")),
    "first_layer_extr_temp": (_icesl(b"extruder_temp_degree_c_0"),),
    "first_layer_bed_temp": (_icesl(b"bed_temp_degree_c"),),
    "chamber_temp": (_icesl(b"chamber_temp_degree_c"),),
    "filament_name": (_icesl(b"filament_name", _text),),
    "filament_type": (_icesl(b"filament_type", _text),),
    "filament_total": (_icesl(b"filament_used_mm"),),
    "filament_weight_total": (_icesl(b"filament_used_g"),),
}
_ICESL = _Slicer(_identify_icesl, _ICESL_FIELDS)


# Kiri:Moto: "; Generated by Kiri:Moto 4.1.8", its process settings as "; key = value",
# ";; --- layer n (height @ z) ---" per layer, filament and time at the end.


def _identify_kiri(doc: _Doc) -> tuple[str, str] | None:
    match = re.search(rb"\n; Generated by Kiri:Moto \(SimplyPrint\) (\S+)", doc.head)
    if match is not None:
        return "SimplyPrint", _decode(match.group(1))
    match = re.search(rb"\n; Generated by Kiri:Moto (\d\S*)", doc.head)
    if match is not None:
        return "Kiri:Moto", _decode(match.group(1))
    return None


_KIRI_FIELDS: Fields = {
    "layer_count": (
        _all(TAIL, rb"\n;; --- layer " + _INT + rb" \(", lambda layers: _last(layers) + 1, int),
    ),
    "object_height": (_all(TAIL, rb"\nG1 Z" + _NUM + rb" (?:; z-hop end|F\d+\r?\n)", max),),
    "estimated_time": (_first(TAIL, rb"\n; --- print time: " + _NUM + rb"s"),),
    "layer_height": (_setting(HEAD, b"sliceHeight"),),
    "first_layer_height": (_setting(HEAD, b"firstSliceHeight"),),
    "first_layer_extr_temp": (_setting(HEAD, b"firstLayerNozzleTemp"),),
    "first_layer_bed_temp": (_setting(HEAD, b"firstLayerBedTemp"),),
    "filament_total": (_first(TAIL, rb"\n; --- filament used: " + _NUM + rb" mm"),),
}
_KIRI = _Slicer(_identify_kiri, _KIRI_FIELDS)


#: In the order they are tried: the most specific marks first.
_SLICERS: Sequence[_Slicer] = (
    _CREALITY,
    _BAMBU,
    _PRUSA,
    _CURA,
    _S3D,
    _KISSLICER,
    _IDEAMAKER,
    _ICESL,
    _KIRI,
)
