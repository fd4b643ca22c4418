"""domain/host.py: allow-lists, systemctl output, the cgroup's unit, power refusals."""

from __future__ import annotations

import pytest

from trioprint.domain import host


def test_the_allow_list_file() -> None:
    text = "crowsnest.service\n  KlipperScreen  \n\n# comment\ncrowsnest\nsonar.service\n"
    assert host.parse_allowed_services(text) == ("crowsnest", "KlipperScreen", "sonar")
    assert host.parse_allowed_services("") == ()


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("crowsnest", True),
        ("klipper", True),
        ("klipper-2", True),
        ("klipper_1", True),
        ("moonraker", True),
        ("moonraker2", True),
        ("trioprint", True),
        ("klipperscreen", False),  # names are case-sensitive, as systemd's
        ("klipper-foo", False),
        ("klipper;reboot", False),
        ("ssh", False),
        ("-crowsnest", False),
        ("", False),
    ],
)
def test_is_service_allowed(name: str, allowed: bool) -> None:
    assert host.is_service_allowed(name, ("crowsnest",)) is allowed


def test_list_units() -> None:
    output = (
        "klipper.service loaded active running Klipper\n"
        "● broken.service not-found inactive dead broken.service\n"
        "dev-sda.device loaded active plugged disk\n"
        "\n"
        "getty@tty1.service loaded active running Getty on tty1\n"
    )
    assert host.parse_list_units(output) == ["klipper", "broken", "getty@tty1"]


def test_show_states_in_any_order() -> None:
    output = (
        "ActiveState=active\nSubState=running\nId=klipper.service\n\n"
        "Id=crowsnest.service\nSubState=auto-restart\nActiveState=activating\n\n"
        "Id=gone.service\n"
    )
    assert host.parse_show_states(output) == {
        "klipper": {"active_state": "active", "sub_state": "running"},
        "crowsnest": {"active_state": "activating", "sub_state": "auto-restart"},
        "gone": {"active_state": "unknown", "sub_state": "unknown"},
    }
    assert host.parse_show_states("") == {}


def test_changed_states() -> None:
    running = {"active_state": "active", "sub_state": "running"}
    dead = {"active_state": "inactive", "sub_state": "dead"}
    assert host.changed_states({"a": running, "b": running}, {"a": running, "b": dead}) == {
        "b": dead
    }


def test_own_unit_from_cgroup() -> None:
    assert host.own_unit_from_cgroup("0::/system.slice/trioprint.service\n") == "trioprint"
    v1 = "12:pids:/system.slice/moonraker.service\n1:name=systemd:/system.slice/moonraker.service"
    assert host.own_unit_from_cgroup(v1) == "moonraker"
    assert host.own_unit_from_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert host.own_unit_from_cgroup("0::/\n") is None


def test_power_refusal() -> None:
    idle = {"virt_type": "none", "virt_identifier": "none"}
    assert host.power_refusal("reboot", print_state="standby", **idle) is None
    assert host.power_refusal("reboot", print_state=None, **idle) is None
    message, status = host.power_refusal("shutdown", print_state="printing", **idle) or ("", 0)
    assert status == 409
    assert "shutdown" in message
    assert host.power_refusal(
        "reboot", print_state=None, virt_type="container", virt_identifier="lxc"
    ) == ("Cannot reboot from within a lxc container", 400)
