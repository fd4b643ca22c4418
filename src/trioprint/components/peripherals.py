"""Reading the host's devices: USB and serial from sysfs and /dev, V4L2 cameras, CAN nodes.

The scans are blocking (the machine component runs them in a worker thread) and take their
sysfs and /dev roots as arguments, so tests run them against a fake tree. The records are
built by the pure ``domain/peripherals.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from ..domain import peripherals as p
from ..errors import ApiError

#: Where a usb.ids file may be (the first one present is used; nothing is downloaded).
USB_IDS_CANDIDATES = ("misc/usb.ids",)  # relative to the data folder
SYSTEM_USB_IDS = (
    "/usr/share/misc/usb.ids",
    "/usr/share/hwdata/usb.ids",
    "/var/lib/usbutils/usb.ids",
)
#: ARPHRD_CAN: the ``type`` of a CAN network interface in sysfs.
ARPHRD_CAN = "280"


@attrs.frozen
class Roots:
    """The sysfs and /dev roots the scans read."""

    sys: Path = Path("/sys")
    dev: Path = Path("/dev")


HOST_ROOTS = Roots()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _entries(folder: Path) -> Iterator[Path]:
    try:
        yield from sorted(folder.iterdir())
    except OSError:
        return


def _links(folder: Path) -> dict[str, str]:
    """``{device name: link}`` for the links in a /dev/.../by-id (or by-path) folder."""
    found: dict[str, str] = {}
    for entry in _entries(folder):
        with contextlib.suppress(OSError, RuntimeError):
            found.setdefault(entry.resolve().name, str(entry))
    return found


def _usb_location(path: Path, roots: Roots) -> str | None:
    """``bus:device`` of the USB device a sysfs folder belongs to (None: not USB)."""
    top = roots.sys.resolve()
    while path != top and top in path.parents:
        busnum, devnum = _read(path / "busnum"), _read(path / "devnum")
        if busnum is not None and devnum is not None:
            try:
                return f"{int(busnum)}:{int(devnum)}"
            except ValueError:
                return None
        path = path.parent
    return None


# --- USB -------------------------------------------------------------------------------------


class UsbIdsCache:
    """A usb.ids file, parsed once per (path, mtime); empty names when there is none."""

    def __init__(self, candidates: Iterable[Path]) -> None:
        self._candidates = list(candidates)
        self._key: tuple[str, float] | None = None
        self._ids = p.UsbIds()

    def get(self) -> p.UsbIds:
        for path in self._candidates:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            key = (str(path), mtime)
            if key != self._key:
                try:
                    text = path.read_text(encoding="latin-1")
                except OSError:
                    continue
                self._ids, self._key = p.parse_usb_ids(text), key
            return self._ids
        return p.UsbIds()


_USB_FIELDS = (
    "devnum",
    "busnum",
    "idVendor",
    "idProduct",
    "bDeviceClass",
    "bDeviceSubClass",
    "bDeviceProtocol",
    *p.USB_OPTIONAL,
)


def find_usb_devices(roots: Roots, ids: p.UsbIds) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = []
    for folder in _entries(roots.sys / "bus" / "usb" / "devices"):
        if not (folder / "bDeviceClass").is_file():  # interfaces (1-1:1.0) have none
            continue
        values = {k: v for k in _USB_FIELDS if (v := _read(folder / k)) is not None}
        record = p.usb_device(values, ids)
        if record is not None:
            devices.append(record)
    return devices


# --- serial ----------------------------------------------------------------------------------


def find_serial_devices(roots: Roots) -> list[dict[str, Any]]:
    by_path = _links(roots.dev / "serial" / "by-path")
    by_id = _links(roots.dev / "serial" / "by-id")
    devices: list[dict[str, Any]] = []
    for tty in _entries(roots.sys / "class" / "tty"):
        device = tty / "device"
        if not device.is_dir():  # virtual terminals, ptys
            continue
        name = tty.name
        driver = (device / "driver").resolve().name if (device / "driver").exists() else ""
        record: dict[str, Any] = {
            "device_type": "unknown",
            "device_path": str(roots.dev / name),
            "device_name": name,
            "driver_name": driver,
            "path_by_hardware": by_path.get(name),
            "path_by_id": by_id.get(name),
            "usb_location": None,
        }
        if (tty / "uartclk").is_file() and (tty / "port").is_file():
            # a UART; the 8250 driver registers placeholder ports: only port 0 is real
            if driver == "serial8250":
                try:
                    port = int(_read(tty / "port") or "", 16)
                except ValueError:
                    continue
                if port != 0:
                    continue
            record["device_type"] = "hardware_uart"
        else:
            location = _usb_location(device.resolve(), roots)
            if location is not None:
                record["device_type"] = "usb"
                record["usb_location"] = location
        devices.append(record)
    return devices


# --- video -----------------------------------------------------------------------------------

#: ``query(device path)`` -> its capability and capture modes, or None (cannot be opened).
V4l2Query = Callable[[Path], "tuple[p.V4l2Capability, list[dict[str, Any]]] | None"]


def query_v4l2(path: Path) -> tuple[p.V4l2Capability, list[dict[str, Any]]] | None:
    """VIDIOC_QUERYCAP and the capture formats with their discrete sizes (None: no access)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        buffer = bytearray(p.CAPABILITY_SIZE)
        fcntl.ioctl(fd, p.VIDIOC_QUERYCAP, buffer)
        capability = p.decode_capability(bytes(buffer))
        modes: list[dict[str, Any]] = []
        for index in range(64):
            fmt_buffer = p.encode_fmtdesc(index)
            try:
                fcntl.ioctl(fd, p.VIDIOC_ENUM_FMT, fmt_buffer)
            except OSError:
                break
            fmt = p.decode_fmtdesc(bytes(fmt_buffer))
            sizes: list[str] = []
            for size_index in range(128):
                size_buffer = p.encode_frmsize(size_index, fmt[0])
                try:
                    fcntl.ioctl(fd, p.VIDIOC_ENUM_FRAMESIZES, size_buffer)
                except OSError:
                    break
                size = p.decode_frmsize(bytes(size_buffer))
                if size is None:
                    break
                sizes.append(size)
            if sizes:
                modes.append(p.video_mode(fmt, sizes))
        return capability, modes
    except OSError:
        return None
    finally:
        os.close(fd)


def find_video_devices(roots: Roots, query: V4l2Query = query_v4l2) -> list[dict[str, Any]]:
    """V4L2 capture devices; one that cannot be opened is listed with what sysfs tells."""
    by_path = _links(roots.dev / "v4l" / "by-path")
    by_id = _links(roots.dev / "v4l" / "by-id")
    devices: list[dict[str, Any]] = []
    for node in _entries(roots.sys / "class" / "video4linux"):
        name = node.name
        path = roots.dev / name
        answer = query(path)
        if answer is not None and not answer[0].captures_video:
            continue  # metadata and output nodes
        sysfs_name = _read(node / "name")
        device = node / "device"
        driver = (device / "driver").resolve().name if (device / "driver").exists() else None
        capability, modes = answer if answer is not None else (None, [])
        devices.append(
            {
                "device_name": name,
                "device_path": str(path),
                "camera_name": capability.card if capability else sysfs_name,
                "driver_name": capability.driver if capability else driver,
                "hardware_bus": capability.bus_info if capability else None,
                "capabilities": capability.capabilities if capability else [],
                "version": capability.version if capability else None,
                "path_by_hardware": by_path.get(name),
                "path_by_id": by_id.get(name),
                "alt_name": sysfs_name,
                "usb_location": _usb_location(device.resolve(), roots) if device.is_dir() else None,
                "modes": modes,
            }
        )
    devices.sort(key=p.video_sort_key)
    return devices


# --- CAN -------------------------------------------------------------------------------------


def can_interfaces(roots: Roots) -> list[str]:
    """The host's CAN network interfaces (sysfs ``type`` 280)."""
    return [
        entry.name
        for entry in _entries(roots.sys / "class" / "net")
        if _read(entry / "type") == ARPHRD_CAN
    ]


def interface_exists(roots: Roots, name: str) -> bool:
    return (roots.sys / "class" / "net" / name).exists()


async def query_can_uuids(interface: str) -> list[dict[str, str]]:
    """Ask the nodes on ``interface`` without an id for their UUIDs, for 2 s."""
    try:
        sock = trio.socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
    except (OSError, AttributeError) as exc:
        raise ApiError(f"CAN sockets are not available: {exc}", 500) from None
    found: list[dict[str, str]] = []
    with sock:
        try:
            await sock.bind((interface,))
            await sock.send(p.can_query_frame())
        except OSError:
            raise ApiError(f"Unable to bind socket to interface '{interface}'", 500) from None
        with trio.move_on_after(p.CAN_QUERY_TIME):
            while True:
                try:
                    frame = await sock.recv(p.CAN_FRAME_SIZE)
                except OSError:
                    break
                node = p.parse_can_answer(frame)
                if node is not None and node not in found:
                    found.append(node)
    return found
