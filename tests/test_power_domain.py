"""The power devices' pure logic: options, and each family's requests and answers."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from trioprint.domain import power as dp


def answer(value: object, status: int = 200) -> dp.HttpAnswer:
    return dp.HttpAnswer(status, json.dumps(value).encode())


def test_shared_options_defaults_and_moonraker_names() -> None:
    opts = dp.device_options("printer", {"type": "tasmota"})
    assert opts == dp.DeviceOptions(name="printer", type="tasmota")
    assert dp.device_info(opts, "off") == {
        "device": "printer",
        "status": "off",
        "locked_while_printing": False,
        "type": "tasmota",
    }
    opts = dp.device_options(
        "p",
        {
            "type": "shelly",
            "locked_while_printing": "True",
            "off_when_shutdown": "yes",
            "off_when_shutdown_delay": "30",
            "restart_klipper_when_powered": "true",
            "restart_delay": "2.5",
            "on_when_upload_queued": "true",  # the deprecated name
            "initial_state": "on",
            "bound_services": "klipper.service\nklipper, crowsnest",
            "bound_service": "moonraker-obico",
            "poll_interval": "5",
        },
    )
    assert opts.locked_while_printing
    assert opts.off_when_shutdown
    assert opts.on_when_job_queued
    assert opts.off_when_shutdown_delay == 30.0
    assert opts.restart_delay == 2.5
    assert opts.initial_state is True
    assert opts.bound_services == ("klipper", "crowsnest", "moonraker-obico")
    assert opts.poll_interval == 5.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "type: required"),
        ({"type": "zigbee"}, "unsupported device type 'zigbee'"),
        ({"type": "gpio", "locked_while_printing": "maybe"}, "locked_while_printing: expected"),
        ({"type": "tasmota", "poll_interval": "0.5"}, "poll_interval: expected a number of at"),
        ({"type": "klipper_device", "off_when_shutdown": "true"}, "not supported for a klipper"),
        ({"type": "gpio", "timer": "0"}, "timer: expected a number above"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, str], message: str) -> None:
    with pytest.raises(dp.PowerConfigError, match=None) as info:
        dp.device_options("x", options)
    assert message in str(info.value)


def test_klipper_spec() -> None:
    pin = dp.klipper_spec({"object_name": "output_pin psu"})
    assert pin.script("on") == "SET_PIN PIN=psu VALUE=1"
    assert pin.state_from({"output_pin psu": {"value": 0.0}}) == "off"
    assert pin.state_from({"output_pin psu": {"value": 1.0}}) == "on"
    assert pin.state_from({"other": {}}) is None
    macro = dp.klipper_spec({"object_name": "gcode_macro POWER"})
    assert macro.script("off") == "POWER VALUE=0"
    with pytest.raises(dp.PowerConfigError, match="object_name"):
        dp.klipper_spec({"object_name": "fan"})


def test_gpio_pin_format() -> None:
    assert dp.parse_gpio_pin("gpio26") == dp.GpioPin("gpiochip0", 26, False)
    pin = dp.parse_gpio_pin("!gpiochip1/gpio5")
    assert pin == dp.GpioPin("gpiochip1", 5, True)
    assert pin.chip_path == "/dev/gpiochip1"
    for bad in ("^gpio3", "pin26", "gpiochip0/26", "gpio"):
        with pytest.raises(dp.PowerConfigError, match="pin"):
            dp.parse_gpio_pin(bad)


def test_tasmota() -> None:
    spec = dp.http_spec("tasmota", {"address": "plug.local", "password": "pw", "output_id": "2"})
    call = spec.request("on")
    parts = urllib.parse.urlsplit(call.url)
    assert (call.method, parts.netloc, parts.path) == ("GET", "plug.local", "/cm")
    assert urllib.parse.parse_qs(parts.query) == {
        "user": ["admin"],
        "password": ["pw"],
        "cmnd": ["Power2 on"],
    }
    assert spec.parse("on", answer({"POWER2": "ON"})) == "on"
    with pytest.raises(dp.PowerResponseError):
        spec.parse("status", answer({"POWER": "ON"}))  # POWER alone is output 1's
    one = dp.http_spec("tasmota", {"address": "plug", "timer": "5"})
    assert one.parse("status", answer({"POWER": "OFF"})) == "off"
    query = urllib.parse.urlsplit(one.request("off").url).query
    assert urllib.parse.parse_qs(query)["cmnd"] == ["Backlog Delay 50; Power1 off"]
    with pytest.raises(dp.PowerResponseError, match="HTTP status 401"):
        one.parse("status", answer({}, 401))


def test_shelly() -> None:
    spec = dp.http_spec("shelly", {"address": "10.0.0.2", "password": "s3cret"})
    call = spec.request("off")
    assert call.url == "http://10.0.0.2/relay/0?turn=off"
    assert call.headers["Authorization"].startswith("Basic ")
    assert spec.parse("off", answer({"ison": False})) == "off"
    assert spec.parse("status", answer({"ison": True})) == "on"
    timed = dp.http_spec("shelly", {"address": "s", "timer": "10"})
    assert timed.request("off").url == "http://s/relay/0?turn=on&timer=10"
    assert timed.parse("off", answer({"ison": True, "timer_remaining": 9})) == "off"
    with pytest.raises(dp.PowerResponseError, match="ison"):
        spec.parse("status", answer({"state": 1}))


def test_homeassistant() -> None:
    spec = dp.http_spec(
        "homeassistant", {"address": "ha", "device": "switch.printer", "token": "T"}
    )
    on = spec.request("on")
    assert (on.method, on.url) == ("POST", "http://ha:8123/api/services/switch/turn_on")
    assert on.headers["Authorization"] == "Bearer T"
    assert json.loads(on.body or b"") == {"entity_id": "switch.printer"}
    status = spec.request("status")
    assert (status.method, status.url) == ("GET", "http://ha:8123/api/states/switch.printer")
    assert spec.parse("status", answer({"state": "on"})) == "on"
    assert spec.status_after_set
    with pytest.raises(dp.PowerConfigError, match="token: required"):
        dp.http_spec("homeassistant", {"address": "ha", "device": "d"})


def test_hue() -> None:
    spec = dp.http_spec("hue", {"address": "bridge", "user": "u", "device_id": "3"})
    call = spec.request("on")
    assert (call.method, call.url) == ("PUT", "http://bridge:80/api/u/lights/3/state")
    assert json.loads(call.body or b"") == {"on": True}
    assert spec.parse("on", answer([{"success": {"/lights/3/state/on": True}}])) == "on"
    assert spec.parse("status", answer({"state": {"on": False}})) == "off"
    group = dp.http_spec(
        "hue", {"address": "b", "user": "u", "device_id": "1", "device_type": "group"}
    )
    assert group.request("off").url.endswith("/groups/1/action")
    assert group.parse("status", answer({"state": {"all_on": True}})) == "on"


def test_generic_http_template() -> None:
    template = '{% set resp = http_request.last_response().json() %}{resp["POWER"]}'
    spec = dp.http_spec(
        "http",
        {
            "on_url": "http://x/on",
            "off_url": "http://x/off",
            "status_url": "http://x/status",
            "response_template": template,
        },
    )
    assert spec.request("status").url == "http://x/status"
    assert spec.parse("status", answer({"POWER": "ON"})) == "on"
    with pytest.raises(dp.PowerResponseError, match="not on/off"):
        spec.parse("status", answer({"POWER": "maybe"}))
    with pytest.raises(dp.PowerResponseError, match="response_template"):
        spec.parse("status", answer({"other": 1}))
    with pytest.raises(dp.PowerConfigError, match="bad template"):
        dp.http_spec(
            "http",
            {"on_url": "http://x", "off_url": "http://x", "status_url": "http://x",
             "response_template": "{% if %}"},
        )  # fmt: skip
    with pytest.raises(dp.PowerConfigError, match="request_template"):
        dp.http_spec("http", {"request_template": "{% do x %}"})


UHUBCTL = """\
Current status for hub 1-1 [2109:3431 USB2.0 Hub, USB 2.10, 4 ports, ppps]
  Port 1: 0503 power highspeed enable connect [0bda:8179 Realtek 802.11n NIC]
  Port 2: 0100 power
  Port 3: 0000 off
"""


def test_uhubctl() -> None:
    spec = dp.uhubctl_spec({"location": "1-1", "port": "3"})
    assert spec.argv("on") == ["uhubctl", "-l", "1-1", "-p", "3", "-a", "on"]
    assert spec.argv("status") == ["uhubctl", "-l", "1-1", "-p", "3"]
    assert spec.parse("status", UHUBCTL) == {
        "port": 3,
        "status_bits": 0,
        "state": "off",
        "flags": [],
        "desc": None,
    }
    first = dp.uhubctl_spec({"location": "1-1", "port": "1"}).parse("status", UHUBCTL)
    assert first["flags"] == ["highspeed", "enable", "connect"]
    assert first["desc"] == "0bda:8179 Realtek 802.11n NIC"
    with pytest.raises(dp.PowerResponseError):
        spec.parse("on", UHUBCTL)  # an "on" answers with "New status for hub"
    with pytest.raises(dp.PowerConfigError, match="location"):
        dp.uhubctl_spec({"location": "1-1; reboot"})


def test_toggle() -> None:
    assert dp.wanted_state("toggle", "off") == "on"
    assert dp.wanted_state("toggle", "on") == "off"
    assert dp.wanted_state("toggle", "error") == "off"
    assert dp.wanted_state("on", "on") == "on"
