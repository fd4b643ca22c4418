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

The extraction is in three modules: this one (the I/O, :func:`parse`, the result),
:mod:`.metadata_rules` (how a file's text is read: the regions, the value converters, the
rules a slicer's table is made of) and :mod:`.slicers` (the tables, one per slicer, and
what this extraction knowingly does differently from Moonraker 0.11).

Units follow Moonraker: lengths in mm, times in seconds, temperatures in °C, weights in g.
"""

from __future__ import annotations

import logging
import os
import uuid as uuid_module
from typing import Any, BinaryIO

import attrs

from .metadata_rules import HEAD_SIZE, TAIL_SIZE, Doc, gcode_bytes
from .slicers import SLICERS
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
    doc = Doc(head, tail, size)
    thumbnails = extract(((doc.head, -1), (doc.tail, doc.tail_start - 1)))
    for slicer in SLICERS:
        identity = slicer.identify(doc)
        if identity is not None:
            break
    else:
        log.warning("metadata: no known slicer wrote this file; only its size and date are known")
        return Metadata({}, thumbnails)
    found: dict[str, Any] = {"slicer": identity[0], "slicer_version": identity[1]}
    found.update(gcode_bytes(doc))
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
