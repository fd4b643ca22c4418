"""Thumbnails embedded in G-code comments, without I/O.

Slicers store preview images in the G-code as base64 inside comment blocks::

    ; thumbnail begin 32x32 1844          (PNG; "thumbnail_JPG" and "thumbnail_QOI" for others)
    ; iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAAA...
    ; thumbnail end

The header gives width, height and the length of the base64 text (Kiri:Moto separates width
and height with a space instead of an ``x``). :func:`extract` finds the blocks, checks the
length and the base64, and identifies the image by its magic bytes rather than by the block's
tag. Moonraker writes each image to ``.thumbs/<stem>-<width>x<height>.<ext>`` beside the G-code
file; :func:`thumbnail_name` gives that name and :func:`thumbnail_bytes` the bytes to write:
PNG and JPEG as they are, and QOI converted to PNG (as Moonraker does, but here in pure Python:
QOI decodes in one pass and PNG encodes with :mod:`zlib`) so that browsers can show it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import posixpath
import re
import struct
import zlib
from collections.abc import Iterable
from itertools import chain, islice
from typing import Any

import attrs

log = logging.getLogger(__name__)

FORMATS = ("png", "jpg", "qoi")
#: Largest image accepted (width and height, in pixels): thumbnails are a few hundred pixels.
MAX_SIDE = 4096

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPG_MAGIC = b"\xff\xd8\xff"
_QOI_MAGIC = b"qoif"
_QOI_HEADER = struct.Struct(">4sIIBB")
_QOI_END = b"\x00" * 7 + b"\x01"

#: The begin and end lines of thumbnail blocks: all found in one pass, then paired in order.
_MARKER = re.compile(rb"\n;[ \t]*thumbnail(_[A-Za-z0-9]+)?[ \t]+(begin|end)\b([^\n]*)")
_SIZES = re.compile(rb"[ \t]+(\d{1,6})[x ](\d{1,6})[ \t]+(\d{1,9})\s*")
#: Problems logged one by one per parse; more are counted.
_MAX_WARNINGS = 3
#: Markers considered per text (slicers write a few blocks; this bounds a hostile file's cost).
_MAX_MARKERS = 128
#: A line inside a thumbnail block that is not a comment: the block is not a thumbnail.
_NOT_COMMENT = re.compile(rb"\n[ \t]*[^;\s]")
_NOT_BASE64 = b" \t\r\n;"


@attrs.frozen
class Thumbnail:
    """One embedded image: its size as the slicer declared it, its format, its bytes."""

    width: int
    height: int
    format: str  # "png" | "jpg" | "qoi"
    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")


def thumbnail_name(gcode_name: str, thumb: Thumbnail) -> str:
    """Where Moonraker keeps ``thumb``, relative to the folder of ``gcode_name``.

    ``.thumbs/<stem>-<width>x<height>.png`` (``.jpg`` for JPEG; QOI is stored as PNG).
    ``gcode_name`` is a path as the API spells it (``/`` separated); only its last part counts.
    """
    stem = posixpath.splitext(posixpath.basename(gcode_name))[0]
    extension = "jpg" if thumb.format == "jpg" else "png"
    return f".thumbs/{stem}-{thumb.width}x{thumb.height}.{extension}"


def thumbnail_bytes(thumb: Thumbnail) -> bytes:
    """The file content for ``thumb``: PNG and JPEG unchanged, QOI converted to PNG.

    Raises ValueError if ``thumb`` claims to be QOI but its header is not (which
    :func:`extract` never produces).
    """
    if thumb.format != "qoi":
        return thumb.data
    width, height, channels, pixels = qoi_decode(thumb.data)
    return png_encode(width, height, channels, pixels)


def thumbnail_info(gcode_name: str, thumb: Thumbnail, size: int) -> dict[str, Any]:
    """The entry of Moonraker's ``thumbnails`` list for ``thumb``, written as ``size`` bytes."""
    return {
        "width": thumb.width,
        "height": thumb.height,
        "size": size,
        "relative_path": thumbnail_name(gcode_name, thumb),
    }


def extract(regions: Iterable[tuple[bytes, int]]) -> tuple[Thumbnail, ...]:
    """The thumbnails in ``regions``: ``(text, offset)`` pairs, each text starting with ``\\n``.

    ``offset`` is the file offset of ``text[0]``, so that a block seen in two overlapping
    regions counts once. A block that is malformed (no end before the next block, wrong length,
    bad base64, not an image) is skipped with a warning. Two images that would be stored under
    the same name (a PNG and a QOI of the same size) keep the first. Only the first
    ``_MAX_MARKERS`` block markers of each text count.
    """
    seen: set[int] = set()
    names: set[tuple[int, int, str]] = set()
    found: list[Thumbnail] = []
    problems = _Problems()
    for text, offset in regions:
        markers = list(islice(_MARKER.finditer(text), _MAX_MARKERS))
        for i, begin in enumerate(markers):
            if begin.group(2) != b"begin" or offset + begin.start() in seen:
                continue
            seen.add(offset + begin.start())
            end = markers[i + 1] if i + 1 < len(markers) else None
            thumb = _thumbnail(text, begin, end, problems)
            if thumb is None:
                continue
            key = (thumb.width, thumb.height, "jpg" if thumb.format == "jpg" else "png")
            if key not in names:
                names.add(key)
                found.append(thumb)
    problems.log()
    return tuple(found)


class _Problems:
    """The blocks skipped: the first few are logged one by one, the others counted."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.count = 0

    def add(self, begin: re.Match[bytes], problem: str) -> None:
        self.count += 1
        if self.count <= _MAX_WARNINGS:
            header = begin.group(0)[1:].lstrip(b"; \t").decode("ascii", "replace")
            self.messages.append(f"{header.strip()}: {problem}")

    def log(self) -> None:
        for message in self.messages:
            log.warning("metadata: skipped %s", message)
        if self.count > _MAX_WARNINGS:
            log.warning("metadata: skipped %d more thumbnails", self.count - _MAX_WARNINGS)


def _thumbnail(
    text: bytes, begin: re.Match[bytes], end: re.Match[bytes] | None, problems: _Problems
) -> Thumbnail | None:
    """The block from ``begin`` to ``end``, the next marker (which must end it)."""
    tag = begin.group(1)
    if end is None or end.group(2) != b"end" or end.group(1) != tag:
        problems.add(begin, "no end (cut off by the part of the file read?)")
        return None
    sizes = _SIZES.fullmatch(begin.group(3))
    if sizes is None:
        problems.add(begin, "malformed header")
        return None
    width, height, length = (int(sizes.group(i)) for i in (1, 2, 3))
    body = text[begin.end() : end.start()]
    if _NOT_COMMENT.search(body):
        problems.add(begin, "lines that are not comments")
        return None
    encoded = body.translate(None, _NOT_BASE64)
    if len(encoded) != length:
        problems.add(begin, f"{len(encoded)} characters of base64 instead of {length}")
        return None
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        problems.add(begin, "unlikely size")
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        problems.add(begin, "not valid base64")
        return None
    kind = image_format(data)
    if kind is None:
        problems.add(begin, "not a PNG, JPEG or QOI image")
        return None
    return Thumbnail(width, height, kind, data)


def image_format(data: bytes) -> str | None:
    """``"png"``, ``"jpg"`` or ``"qoi"`` from the magic bytes (and, for QOI, a sane header)."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPG_MAGIC):
        return "jpg"
    if data.startswith(_QOI_MAGIC):
        try:
            _qoi_header(data)
        except ValueError:
            return None
        return "qoi"
    return None


# --- QOI ("Quite OK Image format", https://qoiformat.org/qoi-specification.pdf) ----------------


def _qoi_header(data: bytes) -> tuple[int, int, int]:
    if len(data) < _QOI_HEADER.size + len(_QOI_END):
        raise ValueError("QOI data too short")
    magic, width, height, channels, _colorspace = _QOI_HEADER.unpack_from(data)
    if magic != _QOI_MAGIC:
        raise ValueError("not QOI data")
    if channels not in (3, 4):
        raise ValueError(f"QOI image with {channels} channels")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"QOI image of {width}x{height} pixels")
    return width, height, channels


def qoi_decode(data: bytes) -> tuple[int, int, int, bytes]:
    """``(width, height, channels, pixels)``: 8-bit RGB or RGBA rows, top to bottom.

    Raises ValueError if the header is not QOI. Like the reference decoder, a stream that ends
    early repeats its last pixel to fill the image.
    """
    width, height, channels = _qoi_header(data)
    total = width * height
    pixels: list[tuple[int, int, int, int]] = []
    index: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)] * 64
    r, g, b, a = px = (0, 0, 0, 255)
    pos, end = _QOI_HEADER.size, len(data) - len(_QOI_END)
    try:
        while len(pixels) < total and pos < end:
            op = data[pos]
            pos += 1
            if op == 0xFE:  # QOI_OP_RGB
                r, g, b = data[pos], data[pos + 1], data[pos + 2]
                pos += 3
            elif op == 0xFF:  # QOI_OP_RGBA
                r, g, b, a = data[pos], data[pos + 1], data[pos + 2], data[pos + 3]
                pos += 4
            elif op < 0x40:  # QOI_OP_INDEX
                r, g, b, a = index[op]
            elif op < 0x80:  # QOI_OP_DIFF
                r = (r + ((op >> 4) & 3) - 2) & 0xFF
                g = (g + ((op >> 2) & 3) - 2) & 0xFF
                b = (b + (op & 3) - 2) & 0xFF
            elif op < 0xC0:  # QOI_OP_LUMA
                second = data[pos]
                pos += 1
                dg = (op & 0x3F) - 32
                r = (r + dg - 8 + (second >> 4)) & 0xFF
                g = (g + dg) & 0xFF
                b = (b + dg - 8 + (second & 0x0F)) & 0xFF
            else:  # QOI_OP_RUN: the previous pixel, 1 to 62 times
                index[(r * 3 + g * 5 + b * 7 + a * 11) % 64] = px  # as the reference decoder
                pixels.extend([px] * min((op & 0x3F) + 1, total - len(pixels)))
                continue
            px = (r, g, b, a)
            index[(r * 3 + g * 5 + b * 7 + a * 11) % 64] = px
            pixels.append(px)
    except IndexError:
        pass  # the stream stops inside an operation: treat it as ended
    pixels.extend([px] * (total - len(pixels)))
    rgba = bytes(chain.from_iterable(pixels))
    if channels == 4:
        return width, height, 4, rgba
    rgb = bytearray(total * 3)
    for channel in range(3):
        rgb[channel::3] = rgba[channel::4]
    return width, height, 3, bytes(rgb)


# --- PNG -------------------------------------------------------------------------------------


def png_encode(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    """A PNG of 8-bit RGB (``channels`` 3) or RGBA (4) ``pixels``, rows top to bottom."""
    if channels not in (3, 4) or len(pixels) != width * height * channels:
        raise ValueError("pixel data does not match the image size")
    stride = width * channels
    view = memoryview(pixels)
    raw = b"".join(b"\x00" + view[row : row + stride] for row in range(0, len(pixels), stride))
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if channels == 4 else 2, 0, 0, 0)
    return b"".join(
        (
            _PNG_MAGIC,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(raw, 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
