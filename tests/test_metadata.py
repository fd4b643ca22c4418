"""G-code metadata: the corpus of tests/data/metadata, one file per slicer, and its edge cases.

The corpus is written by tests/data/metadata/make_corpus.py, whose images these tests also
rebuild to check the thumbnails' pixels. The fidelity test at the end runs Moonraker 0.11's own
extractor on the corpus (``TRIOPRINT_MOONRAKER``, set by nox) and checks that every field it
reports is ours too, except for the listed, deliberate differences.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import logging
import os
import struct
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint.domain import thumbnails
from trioprint.domain.metadata import (
    FIELD_ORDER,
    HEAD_SIZE,
    TAIL_SIZE,
    Metadata,
    moonraker_fields,
    parse,
    read_head_tail,
)
from trioprint.domain.thumbnails import (
    Thumbnail,
    qoi_decode,
    thumbnail_bytes,
    thumbnail_info,
    thumbnail_name,
)

from .klippy_real import _in_ci

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "metadata"


def _load_corpus_maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS_DIR / "make_corpus.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus_maker()

#: What each file says, byte offsets apart (see EXTENT).
EXPECTED: dict[str, dict[str, Any]] = {
    "prusaslicer.gcode": {
        "slicer": "PrusaSlicer",
        "slicer_version": "2.7.1+win64",
        "object_height": 10.1,
        "estimated_time": 1913.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.15,
        "first_layer_height": 0.2,
        "first_layer_extr_temp": 215.0,
        "first_layer_bed_temp": 60.0,
        "filament_name": "Prusament PLA",
        "filament_type": "PLA",
        "filament_colors": ["#FF8000"],
        "filament_temps": [215],
        "mmu_print": 0,
        "filament_total": 1516.71,
        "filament_weight_total": 4.52,
        "filament_weights": [4.52],
        "printer_model": "MK4",
        "printer_variant": "0.4",
    },
    "superslicer.gcode": {
        "slicer": "SuperSlicer",
        "slicer_version": "2.5.59.8",
        "object_height": 5.35,  # the last ";Z:", not the end G-code's lift to 15.35
        "estimated_time": 4329.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.15,  # 75% of 0.2
        "first_layer_extr_temp": 240.0,
        "first_layer_bed_temp": 85.0,
        "chamber_temp": 45.0,
        "filament_name": '["Generic PETG", "Generic PETG @Blue"]',
        "filament_type": '["PETG", "PETG"]',
        "filament_colors": ["#FF4040", "#4040FF"],
        "filament_change_count": 14,
        "extruder_colors": ["#FF0000", "#0000FF"],
        "filament_temps": [245, 245],
        "mmu_print": 1,
        "filament_total": 1267.48,
        "filament_weight_total": 3.82,
        "filament_weights": [2.42, 1.4],
    },
    "orcaslicer.gcode": {
        "slicer": "OrcaSlicer",
        "slicer_version": "2.1.1",
        "layer_count": 40,
        "object_height": 8.05,
        "estimated_time": 1538.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.25,
        "first_layer_extr_temp": 250.0,
        "first_layer_bed_temp": 80.0,  # the textured PEI plate's
        "chamber_temp": 0.0,
        "filament_name": "Generic PETG @System",
        "filament_type": "PETG",
        "filament_colors": ["#0080FF"],
        "filament_temps": [245],
        "filament_total": 2210.64,
        "filament_weight_total": 6.79,
        "filament_weights": [6.79],
        "printer_model": "Voron 2.4 350",
    },
    "bambustudio.gcode": {
        "slicer": "BambuStudio",
        "slicer_version": "01.09.07.52",
        "layer_count": 75,
        "object_height": 15.0,
        "estimated_time": 2920.0,  # the total, preparation included
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.2,
        "first_layer_extr_temp": 220.0,
        "first_layer_bed_temp": 35.0,  # the cool plate's
        "chamber_temp": 0.0,
        "filament_name": "Bambu PLA Basic @BBL P1P",
        "filament_type": "PLA",
        "filament_colors": ["#00AE42"],
        "filament_temps": [220],
        "filament_total": 3186.4,
        "filament_weight_total": 9.66,
        "printer_model": "Bambu Lab P1S",
    },
    "cura.gcode": {
        "slicer": "Cura",
        "slicer_version": "5.6.0",
        "layer_count": 75,
        "object_height": 15.0,
        "estimated_time": 5123.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.2,
        "first_layer_extr_temp": 200.0,
        "first_layer_bed_temp": 60.0,
        "filament_name": "Generic PLA",
        "filament_type": "PLA",
        "filament_total": 1726.58,
        "filament_weight_total": 5.15,
        "filament_weights": [5.15],
    },
    "creality_print.gcode": {
        "slicer": "Creality Print",
        "slicer_version": "5.1.7.10514",
        "layer_count": 121,
        "object_height": 24.2,
        "estimated_time": 3190.0,
        "layer_height": 0.2,
        "first_layer_height": 0.2,
        "first_layer_extr_temp": 220.0,  # START_PRINT heats: from ";Print Temperature:"
        "first_layer_bed_temp": 60.0,
        "filament_type": "PLA",
        "filament_total": 4567.89,
    },
    "simplify3d.gcode": {
        "slicer": "Simplify3D",
        "slicer_version": "4.1.2",
        "object_height": 20.1,
        "estimated_time": 4320.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.3,
        "first_layer_extr_temp": 205.0,
        "first_layer_bed_temp": 60.0,
        "filament_name": "PLA",
        "filament_total": 4732.3,
        "filament_weight_total": 14.23,
    },
    "kisslicer.gcode": {
        "slicer": "KISSlicer",
        "slicer_version": "2-a-2.0.6-Win64",
        "object_height": 12.5,
        "estimated_time": 5073.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.25,  # max_layer_thickness_mm = 0 means "not set"
        "first_layer_height": 0.25,  # from the first BEGIN_LAYER_OBJECT
        "first_layer_extr_temp": 215.0,
        "first_layer_bed_temp": 60.0,
        "chamber_temp": 0.0,
        "filament_name": "Generic PLA",
        "filament_total": 2345.67,
    },
    "ideamaker.gcode": {
        "slicer": "IdeaMaker",
        "slicer_version": "4.4.0.6542",
        "object_height": 18.4,
        "estimated_time": 4567.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.3,
        "first_layer_extr_temp": 210.0,
        "first_layer_bed_temp": 60.0,
        "filament_name": "Raise3D Premium PLA",
        "filament_type": "PLA",
        "filament_total": 3017.45,
        "filament_weight_total": 8.999694,  # pi/4 * 1.75² mm² * 3017.45 mm * 1240 kg/m³
    },
    "icesl.gcode": {
        "slicer": "IceSL",
        "slicer_version": "-",  # the settings dump carries a build date, not a version
        "layer_count": 62,
        "object_height": 12.3,
        "estimated_time": 2718.0,
        "nozzle_diameter": 0.4,
        "layer_height": 0.2,
        "first_layer_height": 0.3,
        "first_layer_extr_temp": 210.0,
        "first_layer_bed_temp": 55.0,
        "chamber_temp": 0.0,
        "filament_name": "Generic PLA",
        "filament_type": "PLA",
        "filament_total": 1834.6,
        "filament_weight_total": 5.47,
    },
    "kirimoto.gcode": {
        "slicer": "Kiri:Moto",
        "slicer_version": "4.1.8",
        "layer_count": 60,
        "object_height": 12.05,  # not the z-hop to 12.25
        "estimated_time": 3345.0,
        "layer_height": 0.2,
        "first_layer_height": 0.25,
        "first_layer_extr_temp": 215.0,
        "first_layer_bed_temp": 60.0,
        "filament_total": 1985.44,
    },
    "unknown.gcode": {},
}

#: The first and the last command line of each file (gcode_start_byte / gcode_end_byte).
EXTENT = {
    "prusaslicer.gcode": (b"M73 P0 R31", b"M73 Q100 S0"),
    "superslicer.gcode": (b"M107", b"M84"),
    "orcaslicer.gcode": (b"M73 P0 R25", b"M73 P100 R0"),
    "bambustudio.gcode": (b"M73 P0 R48", b"M73 P100 R0"),
    "cura.gcode": (b"M140 S60", b"M104 S0"),
    "creality_print.gcode": (b"G90", b"G1 F2400 E-0.6"),
    "simplify3d.gcode": (b"G90", b"M84 ; disable motors"),
    "kisslicer.gcode": (b"G21", b"M140 S0"),
    "ideamaker.gcode": (b"M140 S60", b"M84"),
    "icesl.gcode": (b"G21 ;", b"M84 ; disable motors"),
    "kirimoto.gcode": (b"G21 ;", b"M84 ; disable stepper motors"),
}

#: The embedded images: (width, height, format).
THUMBNAILS = {
    "prusaslicer.gcode": [(16, 16, "qoi"), (32, 32, "png")],
    "superslicer.gcode": [(24, 24, "png")],
    "orcaslicer.gcode": [(32, 32, "png"), (48, 48, "qoi")],
    "bambustudio.gcode": [(64, 64, "png")],
    "cura.gcode": [(32, 32, "png")],
    "creality_print.gcode": [(96, 96, "png")],
    "kirimoto.gcode": [(40, 30, "png")],
}

#: Where to cut each file when spreading it over a large one: before its last layer, so that
#: what the slicer wrote at the start stays in the head and its last layer and end in the tail.
LAST_LAYER = {
    "prusaslicer.gcode": b"\n;LAYER_CHANGE",
    "superslicer.gcode": b"\n;LAYER_CHANGE",
    "orcaslicer.gcode": b"\n;LAYER_CHANGE",
    "bambustudio.gcode": b"\n; CHANGE_LAYER",
    "cura.gcode": b"\n;LAYER:",
    "creality_print.gcode": b"\n;LAYER:",
    "simplify3d.gcode": b"\n; layer ",
    "kisslicer.gcode": b"\n; BEGIN_LAYER_OBJECT",
    "ideamaker.gcode": b"\n;LAYER:",
    "icesl.gcode": b"\n; <layer ",
    "kirimoto.gcode": b"\n;; --- layer ",
    "unknown.gcode": b"\nG1 Z10",
}

#: Moonraker's PrusaSlicer family: these list fields are [] (not absent) when a file has none.
PRUSA_FAMILY = {"PrusaSlicer", "SuperSlicer", "OrcaSlicer", "BambuStudio", "Slic3r PE", "Slic3r"}
EMPTY_LISTS = ("filament_colors", "extruder_colors", "filament_temps", "referenced_tools")


def _with_empty_lists(expected: dict[str, Any]) -> dict[str, Any]:
    if expected.get("slicer") in PRUSA_FAMILY:
        return {**{key: [] for key in EMPTY_LISTS}, **expected}
    return expected


EXPECTED = {name: _with_empty_lists(fields) for name, fields in EXPECTED.items()}
NAMES = sorted(EXPECTED)


def _data(name: str) -> bytes:
    return (CORPUS_DIR / name).read_bytes()


def _expected(name: str, data: bytes | None = None) -> dict[str, Any]:
    """EXPECTED[name] with its byte offsets, in Moonraker's key order."""
    data = _data(name) if data is None else data
    fields = dict(EXPECTED[name])
    if name in EXTENT:
        first, last = EXTENT[name]
        fields["gcode_start_byte"] = data.index(b"\n" + first)
        last_line = data.rindex(b"\n" + last) + 1
        fields["gcode_end_byte"] = data.index(b"\n", last_line) + 1
    return {key: fields[key] for key in FIELD_ORDER if key in fields}


def _parse_file(path: Path | str) -> Metadata:
    return parse(*read_head_tail(path))


def _parse_bytes(data: bytes) -> Metadata:
    return parse(*read_head_tail(io.BytesIO(data)))


def _decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, pixels) of a PNG of 8-bit RGB(A) rows with filter 0."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body)
        if kind == b"IDAT":
            idat += body
        chunks[kind] = body
        pos += 12 + length
    assert b"IEND" in chunks
    width, height, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8
    assert color in (2, 6)
    channels = 4 if color == 6 else 3
    raw, stride = zlib.decompress(idat), width * channels
    rows = [raw[y * (stride + 1) : (y + 1) * (stride + 1)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, channels, b"".join(row[1:] for row in rows)


def _rgba(width: int, height: int) -> bytes:
    return bytes(c for px in corpus.pixels(width, height) for c in px)


def _spread(data: bytes, size: int, path: Path, filler: bytes = b"") -> None:
    """``data`` as a file of ``size`` bytes: cut before its last layer, the middle sparse.

    ``filler`` (whole lines) goes after the first part and before the second, so that the head
    and the tail read are full of G-code like a real large file's.
    """
    cut = data.rindex(LAST_LAYER[path.name]) + 1
    # a newline ends the sparse zeros, as the middle of a real file ends in one
    first, second = data[:cut] + filler, b"\n" + filler + data[cut:]
    with open(path, "wb") as file:
        file.write(first)
        file.truncate(size - len(second))
        file.seek(0, os.SEEK_END)
        file.write(second)


@functools.cache
def _gcode_filler(size: int) -> bytes:
    lines, total, i = [], 0, 0
    while total < size:
        line = b"G1 X%.3f Y%.3f E%.5f\n" % (100 + i % 997 / 10, 100 + i % 991 / 10, i % 89 / 1e3)
        lines.append(line)
        total, i = total + len(line), i + 1
    return b"".join(lines)


@pytest.fixture(autouse=True)
def _fail_on_internal_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A rule or the parser raising is a bug, even though parse() survives it."""
    yield
    failures = [r for r in caplog.records if "failed" in r.getMessage() and r.exc_info]
    assert not failures, failures[0].getMessage()


# --- the corpus ------------------------------------------------------------------------------


def test_the_corpus_is_what_its_script_writes() -> None:
    built = corpus.build()
    assert sorted(built) == sorted(p.name for p in CORPUS_DIR.glob("*.gcode"))
    for name, content in built.items():
        assert _data(name) == content, f"{name}: run tests/data/metadata/make_corpus.py"


@pytest.mark.parametrize("name", NAMES)
def test_fields(name: str) -> None:
    meta = _parse_file(CORPUS_DIR / name)
    assert meta.fields == _expected(name)
    assert list(meta.fields) == list(_expected(name))  # Moonraker's order


@pytest.mark.parametrize("name", NAMES)
def test_thumbnails(name: str) -> None:
    meta = _parse_file(CORPUS_DIR / name)
    assert [(t.width, t.height, t.format) for t in meta.thumbnails] == THUMBNAILS.get(name, [])
    for thumb in meta.thumbnails:
        if thumb.format == "png":
            assert thumb.data == corpus.png(thumb.width, thumb.height)
            assert thumbnail_bytes(thumb) == thumb.data
        else:
            assert thumb.data == corpus.qoi_image(thumb.width, thumb.height)
        width, height, channels, pixels = _decode_png(thumbnail_bytes(thumb))
        assert (width, height, channels) == (thumb.width, thumb.height, 4)
        assert pixels == _rgba(thumb.width, thumb.height)


def test_unknown_file_gives_no_fields_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="trioprint.domain.metadata"):
        meta = _parse_file(CORPUS_DIR / "unknown.gcode")
    assert meta == Metadata({}, ())
    assert any("no known slicer" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", NAMES)
def test_crlf_line_ends_read_the_same(name: str) -> None:
    data = _data(name).replace(b"\n", b"\r\n")
    meta, plain = _parse_bytes(data), _parse_file(CORPUS_DIR / name)
    assert meta.fields == _expected(name, data)  # with the offsets in the CRLF file
    assert meta.thumbnails == plain.thumbnails


@pytest.mark.parametrize("name", NAMES)
def test_how_a_small_file_is_split_does_not_matter(name: str) -> None:
    data = _data(name)
    whole = parse(data, b"", len(data))
    for cut in (0, 1, len(data) // 3, len(data) - 1, len(data)):
        assert parse(data[:cut], data[cut:], len(data)) == whole


# --- large files: only the head and the tail count ---------------------------------------


class _CountingFile(io.FileIO):
    read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


@pytest.mark.parametrize("name", NAMES)
def test_a_sparse_gigabyte_file_reads_as_the_small_one(name: str, tmp_path: Path) -> None:
    size = 1 << 30
    path = tmp_path / name
    _spread(_data(name), size, path)
    with _CountingFile(path) as file:
        head, tail, read_size = read_head_tail(file)
        assert file.read_bytes <= HEAD_SIZE + TAIL_SIZE
    assert (len(head), len(tail), read_size) == (HEAD_SIZE, TAIL_SIZE, size)
    meta, small = parse(head, tail, read_size), _parse_file(CORPUS_DIR / name)
    expected = dict(small.fields)
    if "gcode_end_byte" in expected:
        expected["gcode_end_byte"] += size - len(_data(name))
    assert meta.fields == expected
    assert meta.thumbnails == small.thumbnails
    assert _parse_file(path) == meta


@pytest.mark.parametrize("size", [10 * 1000 * 1000, 1000 * 1000 * 1000], ids=["10MB", "1GB"])
def test_parse_time_of_a_large_file(size: int, tmp_path: Path) -> None:
    """Not a timed test: it measures (read_head_tail + parse) and prints it, asserting nothing
    about time. The head and tail read are full of G-code, the rest is sparse."""
    path = tmp_path / "prusaslicer.gcode"
    _spread(_data(path.name), size, path, filler=_gcode_filler(HEAD_SIZE + 4096))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        meta = _parse_file(path)
        times.append(time.perf_counter() - started)
    assert meta.fields["slicer"] == "PrusaSlicer"
    assert len(meta.thumbnails) == 2
    print(f"\nread_head_tail + parse, {size / 1e6:.0f} MB: best {min(times) * 1000:.1f} ms")


def _base_and_gap(name: str) -> tuple[bytes, int, int]:
    """A corpus file made large with G-code between its two parts; the bounds of the gap that
    neither the head nor the tail reaches."""
    data, margin = _data(name), 64 * 1024
    cut = data.rindex(LAST_LAYER[name]) + 1
    filler = _gcode_filler(HEAD_SIZE + margin)
    big = data[:cut] + filler + filler + data[cut:]
    return big, HEAD_SIZE + 1, len(big) - TAIL_SIZE - 1


_BASES = {name: _base_and_gap(name) for name in ("prusaslicer.gcode", "cura.gcode")}
_BASE_META = {name: _parse_bytes(big) for name, (big, _, _) in _BASES.items()}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(sorted(_BASES)),
    where=st.floats(0, 1),
    junk=st.binary(min_size=1, max_size=4096)
    | st.sampled_from([b"\n; generated by SuperSlicer 9 on", b"\nM84\n", b"; thumbnail begin"]),
)
def test_bytes_inserted_outside_the_head_and_tail_change_nothing(
    name: str, where: float, junk: bytes
) -> None:
    big, low, high = _BASES[name]
    at = low + int((high - low) * where)
    meta = _parse_bytes(big[:at] + junk + big[at:])
    expected = dict(_BASE_META[name].fields)
    expected["gcode_end_byte"] += len(junk)
    assert meta.fields == expected
    assert meta.thumbnails == _BASE_META[name].thumbnails


@pytest.mark.parametrize(
    ("name", "slicer"), [("prusaslicer.gcode", "PrusaSlicer"), ("superslicer.gcode", "SuperSlicer")]
)
def test_the_settings_block_names_the_slicer_when_the_head_is_gone(name: str, slicer: str) -> None:
    data = _data(name)
    tail = data[data.index(b"\n; filament used [mm]") :]
    fields = parse(b"", tail, 10 * HEAD_SIZE).fields
    assert (fields["slicer"], fields["slicer_version"]) == (slicer, "?")
    assert fields["estimated_time"] == EXPECTED[name]["estimated_time"]


def test_a_huge_garbage_head_leaves_the_tail_readable() -> None:
    """1.5 MB that is not text before PrusaSlicer's last layer and end: the settings block at
    the end still names the slicer (its version is only in the head) and gives the fields."""
    data = _data("prusaslicer.gcode")
    tail = data[data.rindex(b"\n;LAYER_CHANGE") + 1 :]
    garbage = bytes(b for b in range(256) if b != 0x0A) * 6000
    big = garbage + tail
    meta = _parse_bytes(big)
    expected = {
        key: value
        for key, value in _expected("prusaslicer.gcode").items()
        if key not in ("gcode_start_byte", "gcode_end_byte")
    }
    expected["slicer_version"] = "?"
    expected["gcode_end_byte"] = len(big) - (
        len(data) - _expected("prusaslicer.gcode")["gcode_end_byte"]
    )
    assert meta.fields == {key: expected[key] for key in FIELD_ORDER if key in expected}
    assert meta.thumbnails == ()


# --- read_head_tail ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, HEAD_SIZE - 1, HEAD_SIZE, HEAD_SIZE + 1, HEAD_SIZE + TAIL_SIZE + 7]
)
def test_read_head_tail_reads_the_two_ends(size: int, tmp_path: Path) -> None:
    data = bytes(i * 7 % 251 for i in range(size))
    path = tmp_path / "f.gcode"
    path.write_bytes(data)
    head, tail, got_size = read_head_tail(path)
    assert got_size == size
    assert head == data[:HEAD_SIZE]
    assert tail == data[max(HEAD_SIZE, size - TAIL_SIZE) :]
    source = io.BytesIO(data)
    source.seek(size // 2)  # a file object is read from its start
    assert read_head_tail(source) == (head, tail, size)
    assert read_head_tail(str(path)) == (head, tail, size)


# --- the result's shape ----------------------------------------------------------------------


def test_moonraker_fields_has_moonrakers_shape() -> None:
    meta = _parse_file(CORPUS_DIR / "prusaslicer.gcode")
    entries = [
        thumbnail_info("sub/prusaslicer.gcode", t, len(thumbnail_bytes(t))) for t in meta.thumbnails
    ]
    result = moonraker_fields(
        meta,
        filename="sub/prusaslicer.gcode",
        size=7672,
        modified=1.5,
        thumbnails=entries,
        uuid="u",
    )
    assert list(result) == [
        "size",
        "modified",
        "uuid",
        "file_processors",
        *meta.fields,
        "thumbnails",
        "print_start_time",
        "job_id",
        "filename",
    ]
    assert result["size"] == 7672
    assert result["modified"] == 1.5
    assert result["uuid"] == "u"
    assert result["file_processors"] == []
    assert result["print_start_time"] is None
    assert result["job_id"] is None
    assert result["filename"] == "sub/prusaslicer.gcode"
    assert result["thumbnails"] == [
        {
            "width": 16,
            "height": 16,
            "size": len(thumbnail_bytes(meta.thumbnails[0])),
            "relative_path": ".thumbs/prusaslicer-16x16.png",
        },
        {
            "width": 32,
            "height": 32,
            "size": len(meta.thumbnails[1].data),
            "relative_path": ".thumbs/prusaslicer-32x32.png",
        },
    ]
    json.dumps(result, allow_nan=False)


def test_moonraker_fields_of_an_unknown_file() -> None:
    result = moonraker_fields(Metadata({}), filename="a.gcode", size=3, modified=2.0, thumbnails=[])
    assert list(result) == [
        "size",
        "modified",
        "uuid",
        "file_processors",
        "print_start_time",
        "job_id",
        "filename",
    ]
    uuid.UUID(result["uuid"])  # a fresh one, as Moonraker makes at each extraction
    history = moonraker_fields(
        Metadata({}),
        filename="a.gcode",
        size=3,
        modified=2.0,
        thumbnails=[],
        print_start_time=10.0,
        job_id="00001A",
    )
    assert (history["print_start_time"], history["job_id"]) == (10.0, "00001A")


@pytest.mark.parametrize(
    ("gcode", "thumb", "path"),
    [
        ("cube.gcode", Thumbnail(32, 32, "png", b""), ".thumbs/cube-32x32.png"),
        ("dir/sub/cube.v2.gcode", Thumbnail(300, 300, "qoi", b""), ".thumbs/cube.v2-300x300.png"),
        ("cube.gco", Thumbnail(220, 124, "jpg", b""), ".thumbs/cube-220x124.jpg"),
    ],
)
def test_thumbnail_name(gcode: str, thumb: Thumbnail, path: str) -> None:
    assert thumbnail_name(gcode, thumb) == path


# --- thumbnails: formats and damage ---------------------------------------------------------


def _prusa_with_block(block: str) -> bytes:
    """PrusaSlicer's file with ``block`` in place of its 32x32 PNG thumbnail."""
    text = _data("prusaslicer.gcode").decode()
    start = text.index("; thumbnail begin 32x32")
    end = text.index("; thumbnail end", start) + len("; thumbnail end")
    return (text[:start] + block + text[end:]).encode()


def test_a_jpeg_thumbnail_is_kept_as_jpeg() -> None:
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
    meta = _parse_bytes(_prusa_with_block(corpus.thumbnail(220, 124, jpeg, "_JPG")))
    thumb = meta.thumbnails[1]
    assert (thumb.width, thumb.height, thumb.format, thumb.data) == (220, 124, "jpg", jpeg)
    assert thumbnail_bytes(thumb) == jpeg
    assert thumbnail_name("x.gcode", thumb) == ".thumbs/x-220x124.jpg"


def test_the_image_format_comes_from_the_data_not_the_tag() -> None:
    meta = _parse_bytes(_prusa_with_block(corpus.thumbnail(32, 32, corpus.png(32, 32), "_QOI")))
    assert [(t.width, t.format) for t in meta.thumbnails] == [(16, "qoi"), (32, "png")]


def test_a_png_and_a_qoi_of_one_size_are_stored_once() -> None:
    block = corpus.thumbnail(16, 16, corpus.png(16, 16))
    meta = _parse_bytes(_prusa_with_block(block))
    assert [(t.width, t.format) for t in meta.thumbnails] == [(16, "qoi")]


def _damaged(kind: str) -> str:
    good = corpus.thumbnail(32, 32, corpus.png(32, 32))
    lines = good.split("\n")
    if kind == "length":
        return good.replace(" 32x32 ", " 32x32 1", 1)
    if kind == "base64":
        return "\n".join([lines[0], "; " + "!" + lines[1][3:], *lines[2:]])
    if kind == "not a comment":
        return "\n".join([lines[0], "G1 X1", *lines[1:]])
    if kind == "not an image":
        return corpus.thumbnail(32, 32, b"GIF89a" + bytes(40))
    if kind == "no end":
        return "\n".join(lines[:-1])
    if kind == "size":
        return corpus.thumbnail(0, 32, corpus.png(32, 32))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["length", "base64", "not a comment", "not an image", "no end", "size"]
)
def test_a_damaged_thumbnail_is_skipped_with_a_warning(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="trioprint.domain.thumbnails"):
        meta = _parse_bytes(_prusa_with_block(_damaged(kind)))
    assert [(t.width, t.format) for t in meta.thumbnails] == [(16, "qoi")]
    assert meta.fields["slicer"] == "PrusaSlicer"
    assert any(r.name == "trioprint.domain.thumbnails" for r in caplog.records)


# --- QOI and PNG ------------------------------------------------------------------------------

_PALETTE = [(0, 0, 0, 255), (255, 255, 255, 255), (200, 30, 30, 255), (10, 200, 40, 128)]
_pixel = st.sampled_from(_PALETTE) | st.tuples(*[st.integers(0, 255)] * 4)


@given(data=st.data(), width=st.integers(1, 12), height=st.integers(1, 12))
def test_qoi_decodes_what_the_reference_encoder_writes(
    data: st.DataObject, width: int, height: int
) -> None:
    image = data.draw(st.lists(_pixel, min_size=width * height, max_size=width * height))
    rgba = bytes(c for px in image for c in px)
    assert qoi_decode(corpus.qoi(width, height, image)) == (width, height, 4, rgba)
    opaque = [(r, g, b, 255) for r, g, b, _ in image]
    rgb = bytes(c for px in opaque for c in px[:3])
    assert qoi_decode(corpus.qoi(width, height, opaque, channels=3)) == (width, height, 3, rgb)
    assert _decode_png(thumbnails.png_encode(width, height, 4, rgba)) == (width, height, 4, rgba)
    assert _decode_png(thumbnails.png_encode(width, height, 3, rgb)) == (width, height, 3, rgb)


def test_a_truncated_qoi_stream_is_padded_and_a_bad_header_refused() -> None:
    data = corpus.qoi_image(8, 8)
    width, height, channels, pixels = qoi_decode(data[:40] + b"\x00" * 7 + b"\x01")
    assert (width, height, channels, len(pixels)) == (8, 8, 4, 256)
    for bad in (
        b"qoif",
        data[:4] + struct.pack(">II", 0, 8) + data[12:],
        data.replace(b"\x04", b"\x05", 1),
    ):
        with pytest.raises(ValueError, match="QOI"):
            qoi_decode(bad)
        assert thumbnails.image_format(bad) is None


# --- robustness ------------------------------------------------------------------------------

_MARKERS = [
    b"\n; generated by PrusaSlicer 2.7.1 on 2024-01-15 at 09:41:27 UTC\n",
    b"\n; BambuStudio 01.09\n",
    b"\n;Generated with Cura_SteamEngine 5\n",
    b"\n; KISSlicer\n",
    b"\n;Sliced by ideaMaker 4, x\n",
    b"\n; <IceSL>\n",
    b"\n; Generated by Kiri:Moto 4\n",
    b"\n;Creality Print Version : \n",
    b"\nSimplify3D(R) Version \n",
    b"\n; thumbnail begin 1x1 4\n; AAAA\n; thumbnail end\n",
    b"\n; thumbnail_QOI begin 2 2 8\n; cW9pZgAA\n; thumbnail_QOI end\n",
    b"\n; first_layer_height = 50%\n",
    b'\n; filament_type = "a\\";b\n',
    b"\n;; --- layer 99999999999999999999999 (",
    b"\n; estimated printing time (normal mode) = 99999999999d\n",
]


def _chunks() -> st.SearchStrategy[bytes]:
    return st.lists(
        st.sampled_from(_MARKERS) | st.binary(max_size=64) | st.sampled_from([b"\n", b"1e999"]),
        max_size=12,
    ).map(b"".join)


def _assert_sane(meta: Metadata) -> None:
    json.dumps(meta.fields, allow_nan=False)
    assert set(meta.fields) <= set(FIELD_ORDER)
    for thumb in meta.thumbnails:
        assert thumb.format in thumbnails.FORMATS
        thumbnail_bytes(thumb)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=_chunks(), tail=_chunks(), size=st.integers(-5, 1 << 40))
def test_parse_never_raises(head: bytes, tail: bytes, size: int) -> None:
    _assert_sane(parse(head, tail, size))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    name=st.sampled_from(NAMES),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 200), _chunks()), max_size=5),
)
def test_parse_never_raises_on_damaged_files(
    name: str, edits: list[tuple[float, int, bytes]]
) -> None:
    data = _data(name)
    for where, delete, insert in edits:
        at = int(len(data) * where)
        data = data[:at] + insert + data[at + delete :]
    _assert_sane(parse(data, b"", len(data)))


# --- variants that the corpus does not show --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "; generated by Slic3r Prusa Edition 1.41.3+linux64 on 2019-02-04 at 10:00:00\n"
            "G1 X1\n; filament used = 1234.5mm (2.9cm3)\n",
            {"slicer": "Slic3r PE", "slicer_version": "1.41.3+linux64", "filament_total": 1234.5},
            id="slic3r-pe",
        ),
        pytest.param(
            "; generated by PrusaSlicer 2.8.0 on 2024-06-01 at 10:00:00 UTC\nG1 X1\n"
            "; first_layer_height = 50%\n; chamber_temperature = 40\n",
            # no layer height, so no 50% of it
            {"slicer": "PrusaSlicer", "slicer_version": "2.8.0", "chamber_temp": 40.0},
            id="prusaslicer-percent-without-layer-height",
        ),
        pytest.param(
            ";START_OF_HEADER\n;HEADER_VERSION:0.1\n;FLAVOR:Griffin\n"
            ";GENERATOR.NAME:Cura_SteamEngine\n;GENERATOR.VERSION:5.7.1\n"
            ";EXTRUDER_TRAIN.0.INITIAL_TEMPERATURE:215\n;EXTRUDER_TRAIN.0.NOZZLE.DIAMETER:0.4\n"
            ";BUILD_PLATE.INITIAL_TEMPERATURE:60\n;PRINT.TIME:2780\n"
            ";PRINT.SIZE.MIN.Z:0.27\n;PRINT.SIZE.MAX.Z:40.07\n;END_OF_HEADER\nG1 X1\n",
            {
                "slicer": "Cura",
                "slicer_version": "5.7.1",
                "object_height": 40.07,
                "estimated_time": 2780.0,
                "nozzle_diameter": 0.4,
                "first_layer_height": 0.27,
                "first_layer_extr_temp": 215.0,
                "first_layer_bed_temp": 60.0,
            },
            id="cura-griffin",
        ),
        pytest.param(
            "; G-Code generated by Simplify3D(R) Version 5.1.2\n;   nozzleDiameter,0.6\n"
            ";   temperatureController,Extruder 1\n;   temperatureType,extruder\n"
            ";   temperatureSetpoints,0|230,3|225\n;   temperatureController,Bed\n"
            ";   temperatureType,platform\n;   temperatureSetpoints,0|70\nG1 X1\n"
            ";   Material Length: 120.5 mm\n;   Material Weight: 2.5 g\n"
            ";   Build Time: 1 hour 2 min 3 sec\n",
            {
                "slicer": "Simplify3D",
                "slicer_version": "5.1.2",
                "estimated_time": 3723.0,
                "nozzle_diameter": 0.6,
                "first_layer_extr_temp": 230.0,
                "first_layer_bed_temp": 70.0,
                "filament_total": 120.5,
                "filament_weight_total": 2.5,
            },
            id="simplify3d-5",
        ),
        pytest.param(
            "; <IceSL 2.5.1>\n; z_layer_height_mm : \t0.2\n"
            "; use_different_thickness_first_layer : \tFalse\n"
            "; z_layer_height_first_layer_mm : \t0.3\nG1 Z0.2\n; <layer 0>\n; <layer 1>\n",
            {
                "slicer": "IceSL",
                "slicer_version": "2.5.1",
                "layer_count": 2,
                "object_height": 0.2,
                "layer_height": 0.2,
                "first_layer_height": 0.2,  # the first layer is not set to differ
            },
            id="icesl-same-first-layer",
        ),
        pytest.param(
            "; Generated by Kiri:Moto (SimplyPrint) 1.2.3\nG1 Z0.2 F600\n",
            {"slicer": "SimplyPrint", "slicer_version": "1.2.3", "object_height": 0.2},
            id="kirimoto-simplyprint",
        ),
        pytest.param(
            "; HEADER_BLOCK_START\n; generated by OrcaSlicer 2.2.0 on 2024-10-01 at 08:00:00\n"
            "; model printing time: 1h 2m; total estimated time: 1h 9m 14s\n"
            "; total layer number: 12\n; HEADER_BLOCK_END\nG1 X1\n"
            "; CONFIG_BLOCK_START\n; curr_bed_type = Engineering Plate\n"
            "; eng_plate_temp_initial_layer = 90\n; CONFIG_BLOCK_END\n",
            {
                "slicer": "OrcaSlicer",
                "slicer_version": "2.2.0",
                "layer_count": 12,
                "estimated_time": 4154.0,
                "first_layer_bed_temp": 90.0,
            },
            id="orcaslicer-bambu-printer",
        ),
        pytest.param(
            ";FLAVOR:Marlin\n;TIME:100\n;Filament used:1.5m\n;MINZ:0.2\n"
            ";Creality Print GCode Generated by CXEngine\n;Material Type:PETG\n"
            ";Material Name:Hyper PETG\nM109 S240\n",
            {
                "slicer": "Creality Print",
                "slicer_version": "?",
                "estimated_time": 100.0,
                "first_layer_height": 0.2,
                "first_layer_extr_temp": 240.0,
                "filament_name": "Hyper PETG",
                "filament_type": "PETG",
                "filament_total": 1500.0,
            },
            id="creality-print-without-version",
        ),
    ],
)
def test_variants(text: str, expected: dict[str, Any]) -> None:
    expected = _with_empty_lists(expected)
    fields = parse(text.encode(), b"", len(text.encode())).fields
    assert {key: value for key, value in fields.items() if not key.startswith("gcode_")} == {
        key: expected[key] for key in FIELD_ORDER if key in expected
    }


# --- fidelity: Moonraker 0.11's own extractor on the corpus ----------------------------------

MOONRAKER = os.environ.get("TRIOPRINT_MOONRAKER", "")

#: Fields where we knowingly differ from Moonraker 0.11, and why.
DIFFERENCES: dict[str, dict[str, str]] = {
    "bambustudio.gcode": {
        "estimated_time": "Moonraker looks for PrusaSlicer's line, Bambu writes its own",
        "first_layer_bed_temp": "the plate in use (Moonraker: always the high-temperature one)",
    },
    "ideamaker.gcode": {
        "gcode_end_byte": "Moonraker counts the comment after a bare last command (M84)",
    },
    "kisslicer.gcode": {
        "layer_height": "KISSlicer 2 writes 0 for max_layer_thickness_mm when unused",
        "first_layer_height": "and 0 for first_layer_thickness_mm: the first layer gives it",
        "nozzle_diameter": "Moonraker does not read nozzle_dia_1",
        "filament_name": "Moonraker does not read material_name",
    },
    "orcaslicer.gcode": {
        "first_layer_height": "Orca's initial_layer_print_height",
        "first_layer_extr_temp": "Orca's nozzle_temperature_initial_layer",
        "first_layer_bed_temp": "Orca's per-plate temperature",
    },
    "superslicer.gcode": {
        "object_height": "the last layer's ;Z:, not the end G-code's lift (G1 Z15.35 F600)",
    },
}
#: Files Moonraker 0.11 cannot read: it says "Unknown" where we know the slicer.
NOT_MOONRAKERS = {"creality_print.gcode", "unknown.gcode"}

_MOONRAKER_DRIVER = """
import importlib.util, json, logging, os, sys
logging.disable(logging.CRITICAL)
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("metadata", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({name: module.extract_metadata(os.path.join(sys.argv[2], name), [])
                  for name in sys.argv[3:]}))
"""


def _moonraker_metadata(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    if not MOONRAKER:
        if _in_ci():
            pytest.fail("Moonraker not installed: run the tests through nox")
        pytest.skip("Moonraker 0.11 not installed: run the tests through nox")
    python = Path(MOONRAKER).with_name("python")
    scripts = list(python.parent.parent.glob("lib/python*/site-packages/moonraker/components"))
    assert scripts, f"no Moonraker package beside {MOONRAKER}"
    script = scripts[0] / "file_manager" / "metadata.py"
    run = [str(python), "-c", _MOONRAKER_DRIVER, str(script), str(directory), *names]
    done = subprocess.run(run, capture_output=True, timeout=120, check=True)
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


def _same(ours: Any, theirs: Any) -> bool:
    """Equal, numbers within rounding (Moonraker does not round, and its times may be ints)."""
    if isinstance(theirs, int | float) and not isinstance(theirs, bool):
        return isinstance(ours, int | float) and ours == pytest.approx(theirs)
    if isinstance(theirs, list) and isinstance(ours, list) and len(ours) == len(theirs):
        return all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
    return bool(ours == theirs)


@pytest.mark.slow
def test_fields_agree_with_moonraker(tmp_path: Path) -> None:
    for name in NAMES:
        (tmp_path / name).write_bytes(_data(name))
    reference = _moonraker_metadata(tmp_path, NAMES)
    for name in NAMES:
        theirs = reference[name]
        ours = _parse_file(tmp_path / name)
        if name in NOT_MOONRAKERS:
            assert theirs["slicer"] == "Unknown"
            continue
        differ = DIFFERENCES.get(name, {})
        for key, value in theirs.items():
            if (
                key in ("size", "modified", "uuid", "file_processors", "thumbnails")
                or key in differ
            ):
                continue
            if value == "":  # we leave out what is empty ([] we give as Moonraker does)
                assert key not in ours.fields, (name, key)
                continue
            assert _same(ours.fields.get(key), value), (name, key, ours.fields.get(key), value)
        for key in differ:
            assert ours.fields.get(key) != theirs.get(key), f"{name}: {key} agrees now"
        # Moonraker adds a 32x32 miniature (with Pillow) when there is none; we do not.
        our_thumbs = [(t.width, t.height, thumbnail_name(name, t)) for t in ours.thumbnails]
        their_thumbs = [
            (t["width"], t["height"], t["relative_path"]) for t in theirs.get("thumbnails", [])
        ]
        extra = [thumb for thumb in their_thumbs if thumb not in our_thumbs]
        assert all(path.endswith("-32x32.png") for _, _, path in extra), (name, extra)
        assert [thumb for thumb in their_thumbs if thumb in our_thumbs] == our_thumbs, name
