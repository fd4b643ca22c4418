"""The host's devices as pure logic: usb.ids names, device records, V4L2 and CAN structures.

``components/peripherals.py`` reads sysfs, /dev and the devices themselves and hands the raw
values to these functions, which build ``machine.peripherals.*``'s records.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

# --- usb.ids --------------------------------------------------------------------------------

#: Descriptions in usb.ids that say "nothing" (reported as None).
_EMPTY_DESCRIPTIONS = frozenset(
    {"?", "none", "unused", "undefined", "reserved/undefined", "no subclass"}
)


@attrs.frozen
class UsbIds:
    """Names from usb.ids: ``v:VVVV``, ``v:VVVV:PPPP``, ``c:CC``, ``c:CC:SS``, ``c:CC:SS:PP``."""

    names: Mapping[str, str] = attrs.field(factory=dict)

    def _get(self, key: str, *, drop_empty: bool = False) -> str | None:
        name = self.names.get(key)
        if name is not None and drop_empty and name.lower() in _EMPTY_DESCRIPTIONS:
            return None
        return name

    def product_info(self, vendor_id: str, product_id: str) -> dict[str, str | None]:
        vendor = self._get(f"v:{vendor_id}")
        if vendor is None:
            return {"description": None, "manufacturer": None, "product": None}
        product = self._get(f"v:{vendor_id}:{product_id}")
        return {
            "description": f"{vendor} {product}" if product else vendor,
            "manufacturer": vendor,
            "product": product,
        }

    def class_info(self, cls: str, subclass: str, protocol: str) -> dict[str, str | None]:
        name = self._get(f"c:{cls}")
        if name is None or cls == "00":  # 00: the class is given per interface
            return {"class": None, "subclass": None, "protocol": None}
        return {
            "class": name,
            "subclass": self._get(f"c:{cls}:{subclass}", drop_empty=True),
            "protocol": self._get(f"c:{cls}:{subclass}:{protocol}", drop_empty=True),
        }


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def parse_usb_ids(text: str) -> UsbIds:
    """Vendors, products and device classes of a usb.ids file (other lists are skipped)."""
    names: dict[str, str] = {}
    top: str | None = None  # "v:VVVV" or "c:CC" while inside one, else None
    sub: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ident, _, name = line.strip().partition(" ")
        name = name.strip()
        if line.startswith("\t\t"):
            if sub is not None and top is not None and top.startswith("c:") and _is_hex(ident):
                names[f"{sub}:{ident.lower()}"] = name
        elif line.startswith("\t"):
            sub = None
            if top is not None and _is_hex(ident):
                sub = f"{top}:{ident.lower()}"
                names[sub] = name
        else:
            top = sub = None
            if len(ident) == 4 and _is_hex(ident):
                top = f"v:{ident.lower()}"
                names[top] = name
            elif ident == "C":
                cls, _, cls_name = name.partition(" ")
                if _is_hex(cls):
                    top = f"c:{cls.lower()}"
                    names[top] = cls_name.strip()
    return UsbIds(names)


# --- records ---------------------------------------------------------------------------------

#: sysfs attributes of a USB device that may be absent (reported as None).
USB_OPTIONAL = ("manufacturer", "product", "serial")


def usb_device(values: Mapping[str, str], ids: UsbIds) -> dict[str, Any] | None:
    """One ``machine.peripherals.usb`` record from a device's sysfs attributes (None: unusable)."""
    try:
        device_num = int(values["devnum"])
        bus_num = int(values["busnum"])
        vendor_id = values["idVendor"].lower()
        product_id = values["idProduct"].lower()
        class_ids = [
            values[key].lower() for key in ("bDeviceClass", "bDeviceSubClass", "bDeviceProtocol")
        ]
    except (KeyError, ValueError):
        return None
    record: dict[str, Any] = {
        "device_num": device_num,
        "bus_num": bus_num,
        "vendor_id": vendor_id,
        "product_id": product_id,
        "usb_location": f"{bus_num}:{device_num}",
    }
    for key in USB_OPTIONAL:
        record[key] = values.get(key)
    record.update(ids.class_info(*class_ids))
    for key, name in ids.product_info(vendor_id, product_id).items():
        if record.get(key) is None:
            record[key] = name
    return record


def video_sort_key(record: Mapping[str, Any]) -> tuple[int, str]:
    """``video2`` before ``video10``; names without a number first."""
    name = str(record["device_name"])
    digits = name[len("video") :]
    return (int(digits) if name.startswith("video") and digits.isdigit() else -1, name)


# --- V4L2 -------------------------------------------------------------------------------------

_CAPABILITY = struct.Struct("=16s32s32sIII12x")  # struct v4l2_capability
_FMTDESC = struct.Struct("=III32sI16x")  # struct v4l2_fmtdesc
_FRMSIZE = struct.Struct("=III6I8x")  # struct v4l2_frmsizeenum


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | number


VIDIOC_QUERYCAP = _ioc(2, 0, _CAPABILITY.size)
VIDIOC_ENUM_FMT = _ioc(3, 2, _FMTDESC.size)
VIDIOC_ENUM_FRAMESIZES = _ioc(3, 74, _FRMSIZE.size)
CAPABILITY_SIZE = _CAPABILITY.size
BUF_TYPE_VIDEO_CAPTURE = 1
FRMSIZE_TYPE_DISCRETE = 1

#: The device_caps bits of videodev2.h, by name.
V4L2_CAPABILITIES: tuple[tuple[int, str], ...] = (
    (0x00000001, "VIDEO_CAPTURE"),
    (0x00000002, "VIDEO_OUTPUT"),
    (0x00000004, "VIDEO_OVERLAY"),
    (0x00000010, "VBI_CAPTURE"),
    (0x00000020, "VBI_OUTPUT"),
    (0x00000040, "SLICED_VBI_CAPTURE"),
    (0x00000080, "SLICED_VBI_OUTPUT"),
    (0x00000100, "RDS_CAPTURE"),
    (0x00000200, "VIDEO_OUTPUT_OVERLAY"),
    (0x00000400, "HW_FREQ_SEEK"),
    (0x00000800, "RDS_OUTPUT"),
    (0x00001000, "VIDEO_CAPTURE_MPLANE"),
    (0x00002000, "VIDEO_OUTPUT_MPLANE"),
    (0x00004000, "VIDEO_M2M_MPLANE"),
    (0x00008000, "VIDEO_M2M"),
    (0x00010000, "TUNER"),
    (0x00020000, "AUDIO"),
    (0x00040000, "RADIO"),
    (0x00080000, "MODULATOR"),
    (0x00100000, "SDR_CAPTURE"),
    (0x00200000, "EXT_PIX_FORMAT"),
    (0x00400000, "SDR_OUTPUT"),
    (0x00800000, "META_CAPTURE"),
    (0x01000000, "READWRITE"),
    (0x04000000, "STREAMING"),
    (0x08000000, "META_OUTPUT"),
    (0x10000000, "TOUCH"),
    (0x20000000, "IO_MC"),
)
CAP_VIDEO_CAPTURE = 0x00000001
_FORMAT_FLAGS = ((0x0001, "COMPRESSED"), (0x0002, "EMULATED"))


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@attrs.frozen
class V4l2Capability:
    driver: str
    card: str
    bus_info: str
    version: str
    device_caps: int

    @property
    def capabilities(self) -> list[str]:
        return [name for bit, name in V4L2_CAPABILITIES if self.device_caps & bit]

    @property
    def captures_video(self) -> bool:
        return bool(self.device_caps & CAP_VIDEO_CAPTURE)


def decode_capability(buffer: bytes) -> V4l2Capability:
    driver, card, bus_info, version, _caps, device_caps = _CAPABILITY.unpack(buffer)
    return V4l2Capability(
        _text(driver),
        _text(card),
        _text(bus_info),
        f"{(version >> 16) & 0xFF}.{(version >> 8) & 0xFF}.{version & 0xFF}",
        device_caps,
    )


def encode_fmtdesc(index: int) -> bytearray:
    return bytearray(_FMTDESC.pack(index, BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0))


def decode_fmtdesc(buffer: bytes) -> tuple[int, list[str], str, str]:
    """(pixel format code, flags, description, fourcc) of one VIDIOC_ENUM_FMT answer."""
    _index, _type, flags, description, pixelformat = _FMTDESC.unpack(buffer)
    names = [name for bit, name in _FORMAT_FLAGS if flags & bit]
    fourcc = bytes((pixelformat >> (8 * i)) & 0xFF for i in range(4))
    return pixelformat, names, _text(description), fourcc.decode("ascii", "ignore")


def encode_frmsize(index: int, pixelformat: int) -> bytearray:
    return bytearray(_FRMSIZE.pack(index, pixelformat, 0, 0, 0, 0, 0, 0, 0))


def decode_frmsize(buffer: bytes) -> str | None:
    """``"WxH"`` of a discrete frame size, else None (stepwise sizes are not listed)."""
    _index, _fmt, kind, width, height, *_rest = _FRMSIZE.unpack(buffer)
    return f"{width}x{height}" if kind == FRMSIZE_TYPE_DISCRETE else None


def video_mode(fmt: tuple[int, list[str], str, str], resolutions: Sequence[str]) -> dict[str, Any]:
    _code, flags, description, fourcc = fmt
    return {
        "format": fourcc,
        "description": description,
        "flags": flags,
        "resolutions": list(resolutions),
    }


# --- CAN ---------------------------------------------------------------------------------------

_CAN_FRAME = struct.Struct("<IB3x8s")  # struct can_frame
CAN_FRAME_SIZE = _CAN_FRAME.size
_CAN_EFF_MASK = 0x1FFFFFFF
#: Klipper's CAN admin id; nodes answer on the next id.
CAN_ADMIN_ID = 0x3F0
_QUERY_UNASSIGNED = 0x00
_NEED_NODE_ID = 0x20
_APPLICATIONS = {0x01: "Klipper", 0x11: "Katapult"}
#: Seconds the nodes are given to answer a query.
CAN_QUERY_TIME = 2.0


def can_query_frame() -> bytes:
    """The frame asking every node without an id for its UUID."""
    return _CAN_FRAME.pack(CAN_ADMIN_ID, 1, bytes([_QUERY_UNASSIGNED]))


def parse_can_answer(frame: bytes) -> dict[str, str] | None:
    """A node's ``{"uuid", "application"}`` from one answer frame, else None."""
    if len(frame) < CAN_FRAME_SIZE:
        return None
    can_id, length, data = _CAN_FRAME.unpack(frame[:CAN_FRAME_SIZE])
    payload = data[: min(length, 8)]
    if (can_id & _CAN_EFF_MASK) != CAN_ADMIN_ID + 1 or len(payload) < 7:
        return None
    if payload[0] != _NEED_NODE_ID:
        return None
    app = _APPLICATIONS.get(payload[7], "Unknown") if len(payload) > 7 else "Unknown"
    return {"uuid": payload[1:7].hex(), "application": app}
