"""machine.peripherals.*: USB, serial, video and CAN against a fake sysfs and /dev tree."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from trioprint.bus import Bus
from trioprint.components import peripherals
from trioprint.components.machine import Machine
from trioprint.config import Config
from trioprint.domain import peripherals as p
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport

USB_IDS = """\
# a few lines of a usb.ids file
1d50  OpenMoko, Inc.
\t614e  Klipper 3d-Printer Firmware
\t6177  Katapult
1d6b  Linux Foundation
\t0002  2.0 root hub
\t\t0001  an interface line, ignored
C 00  (Defined at Interface level)
C 02  Communications
\t02  Abstract (modem)
\t\t01  AT-commands (v.25ter)
C 09  Hub
\t00  Unused
\t\t01  Single TT
AT 0001  an audio terminal: another list, skipped
\t0101  USB Streaming
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def usb_device(folder: Path, **values: str) -> None:
    for name, value in values.items():
        write(folder / name, value)


@pytest.fixture
def tree(tmp_path: Path) -> peripherals.Roots:
    sys_root, dev = tmp_path / "sys", tmp_path / "dev"
    devices = sys_root / "devices" / "platform" / "soc"
    drivers = sys_root / "bus" / "usb" / "drivers"
    (drivers / "cdc_acm").mkdir(parents=True)
    (drivers / "uvcvideo").mkdir(parents=True)
    (sys_root / "bus" / "platform" / "drivers" / "serial8250").mkdir(parents=True)
    hub = devices / "usb1"
    usb_device(
        hub, devnum="1", busnum="1", idVendor="1d6b", idProduct="0002",
        bDeviceClass="09", bDeviceSubClass="00", bDeviceProtocol="01",
    )  # fmt: skip
    mcu = hub / "1-1"
    usb_device(
        mcu, devnum="3", busnum="1", idVendor="1D50", idProduct="614e",
        bDeviceClass="02", bDeviceSubClass="02", bDeviceProtocol="01",
        manufacturer="Klipper", product="stm32f446xx", serial="ABC123",
    )  # fmt: skip
    acm_if = mcu / "1-1:1.0"
    link(acm_if / "driver", drivers / "cdc_acm")
    acm_tty = acm_if / "tty" / "ttyACM0"
    link(acm_tty / "device", acm_if)
    cam = hub / "1-2"
    usb_device(
        cam, devnum="4", busnum="1", idVendor="046d", idProduct="0825",
        bDeviceClass="ef", bDeviceSubClass="02", bDeviceProtocol="01",
    )  # fmt: skip
    cam_if = cam / "1-2:1.0"
    link(cam_if / "driver", drivers / "uvcvideo")
    for index in (0, 1, 2):
        node = cam_if / "video4linux" / f"video{index}"
        write(node / "name", "HD Webcam C270")
        link(node / "device", cam_if)
        link(sys_root / "class" / "video4linux" / f"video{index}", node)
    usb_devices = sys_root / "bus" / "usb" / "devices"
    for folder in (hub, mcu, acm_if, cam):
        link(usb_devices / folder.name, folder)
    uart = devices / "serial8250"
    link(uart / "driver", sys_root / "bus" / "platform" / "drivers" / "serial8250")
    for name, port in (("ttyS0", "0x0"), ("ttyS1", "0x2F8")):
        tty = uart / "tty" / name
        write(tty / "uartclk", "1843200")
        write(tty / "port", port)
        link(tty / "device", uart)
        link(sys_root / "class" / "tty" / name, tty)
    link(sys_root / "class" / "tty" / "ttyACM0", acm_tty)
    write(sys_root / "devices" / "virtual" / "tty" / "tty1" / "dev", "4:1")
    link(sys_root / "class" / "tty" / "tty1", sys_root / "devices" / "virtual" / "tty" / "tty1")
    for name, kind in (("eth0", "1"), ("can0", "280")):
        write(sys_root / "class" / "net" / name / "type", kind)
    for name in ("ttyACM0", "ttyS0", "video0", "video1", "video2"):
        write(dev / name, "")
    link(dev / "serial" / "by-id" / "usb-Klipper_stm32f446xx_ABC123-if00", Path("../../ttyACM0"))
    link(dev / "serial" / "by-path" / "platform-soc-usb-0:1:1.0", Path("../../ttyACM0"))
    link(dev / "v4l" / "by-id" / "usb-046d_C270-video-index0", Path("../../video0"))
    return peripherals.Roots(sys=sys_root, dev=dev)


def capability(card: str, caps: int) -> p.V4l2Capability:
    return p.V4l2Capability("uvcvideo", card, "usb-soc-1.2", "6.1.21", caps)


MODES = [{"format": "MJPG", "description": "Motion-JPEG", "flags": ["COMPRESSED"],
          "resolutions": ["1280x720", "640x480"]}]  # fmt: skip


def fake_query(roots: peripherals.Roots) -> peripherals.V4l2Query:
    answers: dict[Path, Any] = {
        roots.dev / "video0": (capability("C270 HD WEBCAM", 0x04200001), MODES),
        roots.dev / "video1": (capability("C270 HD WEBCAM", 0x04A00000), []),  # metadata
        roots.dev / "video2": None,  # cannot be opened
    }
    return lambda path: answers[path]


class FakeWebsockets:
    count = 0


class FakeInstance:
    def __init__(self, data_dir: Path) -> None:
        self.bus = Bus()
        self.websockets = FakeWebsockets()
        self.config = Config(data_dir=data_dir)


class Host:
    def __init__(self, data_dir: Path, roots: peripherals.Roots) -> None:
        self.can_asked: list[str] = []

        async def can_query(interface: str) -> list[dict[str, str]]:
            self.can_asked.append(interface)
            return [{"uuid": "0a1b2c3d4e5f", "application": "Klipper"}]

        self.machine = Machine(
            FakeInstance(data_dir),  # type: ignore[arg-type]
            provider="none",
            roots=roots,
            v4l2_query=fake_query(roots),
            can_query=can_query,
        )
        self.registry = Registry()
        self.registry.add_component(self.machine)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        ep = self.registry.by_rpc(method)
        assert ep is not None, method
        return await self.registry.dispatch(ep, params or {}, Transport.HTTP)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    write(folder / "misc" / "usb.ids", USB_IDS)
    return folder


async def test_usb_devices(tree: peripherals.Roots, data_dir: Path) -> None:
    result = await Host(data_dir, tree).call("machine.peripherals.usb")
    devices = {d["usb_location"]: d for d in result["usb_devices"]}
    assert set(devices) == {"1:1", "1:3", "1:4"}  # the interface folder is not a device
    assert devices["1:3"] == {
        "device_num": 3,
        "bus_num": 1,
        "vendor_id": "1d50",
        "product_id": "614e",
        "usb_location": "1:3",
        "manufacturer": "Klipper",  # the device's own strings win over usb.ids
        "product": "stm32f446xx",
        "serial": "ABC123",
        "class": "Communications",
        "subclass": "Abstract (modem)",
        "protocol": "AT-commands (v.25ter)",
        "description": "OpenMoko, Inc. Klipper 3d-Printer Firmware",
    }
    hub = devices["1:1"]
    assert (hub["manufacturer"], hub["product"], hub["serial"]) == (
        "Linux Foundation",
        "2.0 root hub",
        None,
    )
    assert (hub["class"], hub["subclass"], hub["protocol"]) == ("Hub", None, "Single TT")
    unknown = devices["1:4"]  # neither vendor nor class "ef" in this usb.ids
    assert (unknown["description"], unknown["manufacturer"], unknown["class"]) == (None,) * 3


async def test_usb_without_a_usb_ids_file(tree: peripherals.Roots, tmp_path: Path) -> None:
    machine_ids = peripherals.UsbIdsCache([tmp_path / "none" / "usb.ids"])
    devices = peripherals.find_usb_devices(tree, machine_ids.get())
    mcu = next(d for d in devices if d["usb_location"] == "1:3")
    assert (mcu["manufacturer"], mcu["description"], mcu["class"]) == ("Klipper", None, None)


async def test_serial_devices(tree: peripherals.Roots, data_dir: Path) -> None:
    result = await Host(data_dir, tree).call("machine.peripherals.serial")
    devices = {d["device_name"]: d for d in result["serial_devices"]}
    assert set(devices) == {"ttyACM0", "ttyS0"}  # ttyS1: a placeholder port; tty1: virtual
    assert devices["ttyACM0"] == {
        "device_type": "usb",
        "device_path": str(tree.dev / "ttyACM0"),
        "device_name": "ttyACM0",
        "driver_name": "cdc_acm",
        "path_by_hardware": str(tree.dev / "serial" / "by-path" / "platform-soc-usb-0:1:1.0"),
        "path_by_id": str(tree.dev / "serial" / "by-id" / "usb-Klipper_stm32f446xx_ABC123-if00"),
        "usb_location": "1:3",
    }
    uart = devices["ttyS0"]
    assert (uart["device_type"], uart["driver_name"], uart["usb_location"]) == (
        "hardware_uart",
        "serial8250",
        None,
    )
    assert uart["path_by_id"] is None


async def test_video_devices(tree: peripherals.Roots, data_dir: Path) -> None:
    result = await Host(data_dir, tree).call("machine.peripherals.video")
    assert result["libcamera_devices"] == []
    devices = result["v4l2_devices"]
    assert [d["device_name"] for d in devices] == ["video0", "video2"]  # video1: metadata
    assert devices[0] == {
        "device_name": "video0",
        "device_path": str(tree.dev / "video0"),
        "camera_name": "C270 HD WEBCAM",
        "driver_name": "uvcvideo",
        "hardware_bus": "usb-soc-1.2",
        "capabilities": ["VIDEO_CAPTURE", "EXT_PIX_FORMAT", "STREAMING"],
        "version": "6.1.21",
        "path_by_hardware": None,
        "path_by_id": str(tree.dev / "v4l" / "by-id" / "usb-046d_C270-video-index0"),
        "alt_name": "HD Webcam C270",
        "usb_location": "1:4",
        "modes": MODES,
    }
    sysfs_only = devices[1]
    assert (sysfs_only["camera_name"], sysfs_only["driver_name"]) == ("HD Webcam C270", "uvcvideo")
    assert (sysfs_only["capabilities"], sysfs_only["modes"], sysfs_only["version"]) == (
        [],
        [],
        None,
    )


async def test_nothing_found_on_an_empty_host(tmp_path: Path) -> None:
    host = Host(tmp_path, peripherals.Roots(sys=tmp_path / "sys", dev=tmp_path / "dev"))
    assert await host.call("machine.peripherals.usb") == {"usb_devices": []}
    assert await host.call("machine.peripherals.serial") == {"serial_devices": []}
    assert (await host.call("machine.peripherals.video"))["v4l2_devices"] == []
    assert await host.call("machine.peripherals.canbus") == {"can_uuids": []}
    assert host.can_asked == []


async def test_canbus(tree: peripherals.Roots, data_dir: Path) -> None:
    host = Host(data_dir, tree)
    result = await host.call("machine.peripherals.canbus")
    assert result == {"can_uuids": [{"uuid": "0a1b2c3d4e5f", "application": "Klipper"}]}
    assert host.can_asked == ["can0"]
    with pytest.raises(ApiError) as missing:
        await host.call("machine.peripherals.canbus", {"interface": "can1"})
    assert (missing.value.status, missing.value.message) == (
        500,
        "Unable to bind socket to interface 'can1'",
    )
    for bad in ("../can0", "", "x" * 16):
        with pytest.raises(ApiError) as invalid:
            await host.call("machine.peripherals.canbus", {"interface": bad})
        assert invalid.value.status == 400
        assert "interface" in invalid.value.message
    assert host.can_asked == ["can0"]


def test_usb_ids_parsing() -> None:
    ids = p.parse_usb_ids(USB_IDS)
    assert ids.product_info("1d50", "6177") == {
        "description": "OpenMoko, Inc. Katapult",
        "manufacturer": "OpenMoko, Inc.",
        "product": "Katapult",
    }
    assert ids.product_info("1d50", "ffff")["description"] == "OpenMoko, Inc."
    assert ids.class_info("00", "00", "00") == {"class": None, "subclass": None, "protocol": None}
    assert "v:0001" not in ids.names  # the audio terminal list is not a vendor
    assert ids.names["v:1d6b:0002"] == "2.0 root hub"


def test_v4l2_structures() -> None:
    raw = struct.pack(
        "=16s32s32sIII12x", b"uvcvideo", b"Cam\0junk", b"usb-1", 0x060115, 0x84A00001, 0x04200001
    )
    cap = p.decode_capability(raw)
    assert (cap.driver, cap.card, cap.bus_info, cap.version) == (
        "uvcvideo",
        "Cam",
        "usb-1",
        "6.1.21",
    )
    assert cap.captures_video
    assert cap.capabilities == ["VIDEO_CAPTURE", "EXT_PIX_FORMAT", "STREAMING"]
    assert len(p.encode_fmtdesc(0)) == 64
    fmt = struct.pack("=III32sI16x", 0, 1, 1, b"Motion-JPEG", int.from_bytes(b"MJPG", "little"))
    decoded = p.decode_fmtdesc(fmt)
    assert decoded[1:] == (["COMPRESSED"], "Motion-JPEG", "MJPG")
    assert len(p.encode_frmsize(0, decoded[0])) == 44
    assert p.decode_frmsize(struct.pack("=III6I8x", 0, 0, 1, 640, 480, 0, 0, 0, 0)) == "640x480"
    assert p.decode_frmsize(struct.pack("=III6I8x", 0, 0, 3, 16, 1920, 8, 16, 1080, 8)) is None
    assert p.VIDIOC_QUERYCAP == 0x80685600


def test_can_frames() -> None:
    query = p.can_query_frame()
    assert query == struct.pack("<IB3x8s", 0x3F0, 1, b"\0")
    answer = struct.pack("<IB3x8s", 0x3F1, 8, bytes([0x20, 1, 2, 3, 4, 5, 6, 0x11]))
    assert p.parse_can_answer(answer) == {"uuid": "010203040506", "application": "Katapult"}
    short = struct.pack("<IB3x8s", 0x3F1, 7, bytes([0x20, 1, 2, 3, 4, 5, 6]))
    assert p.parse_can_answer(short) == {"uuid": "010203040506", "application": "Unknown"}
    assert p.parse_can_answer(struct.pack("<IB3x8s", 0x123, 8, bytes(8))) is None
    assert p.parse_can_answer(struct.pack("<IB3x8s", 0x3F1, 8, bytes(8))) is None
    assert p.parse_can_answer(b"\0" * 4) is None
