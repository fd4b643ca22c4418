"""The pure MQTT logic: the [mqtt] section, payloads, status topics, discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioprint.components.mqtt import load_mqtt_config
from trioprint.config import load_config
from trioprint.domain import mqtt_discovery
from trioprint.domain.mqtt import (
    MqttConfigError,
    StatusBatch,
    check_topic,
    decode_payload,
    encode_payload,
    parse_section,
    status_messages,
)
from trioprint.errors import ConfigError


def test_defaults_are_moonrakers() -> None:
    config, warnings = parse_section({"address": "broker.lan"}, "host1")
    assert (config.port, config.protocol, config.instance_name) == (1883, "v3.1.1", "host1")
    assert (config.default_qos, config.api_qos, config.status_interval) == (0, 0, 0.0)
    assert config.enable_moonraker_api
    assert not config.publish_split_status
    assert not config.discovery
    assert config.discovery_prefix == "homeassistant"
    assert not config.persistent_session
    assert config.session_client_id == ""  # paho's random one
    assert warnings == []


def test_persistent_session_has_a_fixed_client_id() -> None:
    options = {"address": "b", "instance_name": "p7", "persistent_session": "true"}
    config, _ = parse_section(options, "h")
    assert config.persistent_session
    assert config.session_client_id == "trioprint-p7"
    config, _ = parse_section({**options, "client_id": "mine"}, "h")
    assert config.session_client_id == "mine"


def test_options_parsed() -> None:
    config, warnings = parse_section(
        {
            "address": "b",
            "port": "1884",
            "mqtt_protocol": "v5",
            "default_qos": "1",
            "status_objects": "\nwebhooks\ntoolhead=position, homed_axes\n",
            "status_interval": "0.5",
            "nonsense": "1",
        },
        "h",
    )
    assert config.api_qos == 1  # follows default_qos
    assert config.status_objects == {"webhooks": None, "toolhead": ["position", "homed_axes"]}
    assert config.status_interval == 0.5
    assert warnings == ["[mqtt] nonsense: unknown option, ignored"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({}, "address"),
        ({"address": "b", "mqtt_protocol": "v4"}, "mqtt_protocol"),
        ({"address": "b", "default_qos": "3"}, "default_qos"),
        ({"address": "b", "port": "x"}, "port"),
        ({"address": "b", "instance_name": "a/#"}, "instance_name"),
        ({"address": "b", "status_interval": "0.1"}, "status_interval"),
        ({"address": "b", "discovery": "maybe"}, "discovery"),
        ({"address": "b", "persistent_session": "2"}, "persistent_session"),
    ],
)
def test_bad_options_named(options: dict[str, str], named: str) -> None:
    with pytest.raises(MqttConfigError, match=rf"\[mqtt\] {named}:"):
        parse_section(options, "h")


def test_payloads() -> None:
    assert encode_payload({"a": [1, None]}) == b'{"a":[1,null]}'
    assert encode_payload(True) == b"true"
    assert encode_payload(None) == b""
    assert encode_payload(2.5) == b"2.5"
    assert encode_payload("text") == b"text"
    with pytest.raises(ValueError, match="JSON"):
        encode_payload(float("nan"))
    assert decode_payload(b'{"x": 1}') == {"x": 1}
    assert decode_payload(b"plain") == "plain"
    assert check_topic("a/+") == "wildcards (+ or #) may not be used"
    assert check_topic("a/b") is None
    assert check_topic("") is not None


def test_status_topics() -> None:
    config, _ = parse_section({"address": "b", "instance_name": "p"}, "h")
    status = {"extruder": {"target": 40.0, "temperature": 21.0}}
    [(topic, payload, retain)] = status_messages(config.topics, status, 1.5, split=False)
    assert (topic, retain) == ("p/klipper/status", False)
    assert decode_payload(payload) == {"eventtime": 1.5, "status": status}
    split = status_messages(config.topics, status, 1.5, split=True)
    assert [(t, decode_payload(p), r) for t, p, r in split] == [
        ("p/klipper/state/extruder/target", {"eventtime": 1.5, "value": 40.0}, True),
        ("p/klipper/state/extruder/temperature", {"eventtime": 1.5, "value": 21.0}, True),
    ]


def test_status_batch_merges_fields() -> None:
    batch = StatusBatch()
    assert batch.take() is None
    batch.add({"a": {"x": 1, "y": 1}}, 1.0)
    batch.add({"a": {"y": 2}, "b": {"z": 3}}, 2.0)
    assert batch.take() == ({"a": {"x": 1, "y": 2}, "b": {"z": 3}}, 2.0)
    assert batch.take() is None


def test_discovery_state_and_commands() -> None:
    config, _ = parse_section({"address": "b", "instance_name": "my printer"}, "h")
    discovery = mqtt_discovery.Discovery(config.topics, "ha", "1.0")
    assert discovery.node == "my_printer"
    topics = [topic for topic, _ in discovery.configs()]
    assert "ha/button/my_printer/pause/config" in topics
    status = {
        "extruder": {"temperature": 200.04, "target": 200.0},
        "print_stats": {"state": "printing", "filename": "a.gcode", "print_duration": 100.0},
        "display_status": {"progress": 0.25},
    }
    state = mqtt_discovery.state(status)
    assert state["progress"] == 25.0
    assert state["time_left"] == 300
    assert state["extruder_temperature"] == 200.0
    assert state["bed_temperature"] is None
    assert state["current_file"] == "a.gcode"
    pause = discovery.command(discovery.command_topic("pause"), b"PRESS")
    assert pause.gcode == "PAUSE"
    assert discovery.command(discovery.command_topic("emergency_stop"), b"PRESS").gcode is None
    heat = discovery.command(discovery.command_topic("bed_target_set"), b"60.5")
    assert heat.gcode == "M140 S60.5"
    for object_id, payload in [("bed_target_set", b"151"), ("pause", b"x"), ("nope", b"1")]:
        with pytest.raises(mqtt_discovery.CommandError):
            discovery.command(discovery.command_topic(object_id), payload)


def test_bad_section_is_a_config_error(tmp_path: Path) -> None:
    conf = tmp_path / "trioprint.conf"
    conf.write_text("[mqtt]\naddress: b\ndefault_qos: 5\n")
    config = load_config(conf, tmp_path)
    assert not any("[mqtt]" in w for w in config.warnings)  # a known section
    with pytest.raises(ConfigError, match=r"trioprint.conf: \[mqtt\] default_qos: expected"):
        load_mqtt_config(config)
    conf.write_text(f"[mqtt]\naddress: b\npassword_file: {tmp_path}/missing\n")
    with pytest.raises(ConfigError, match="password_file: cannot read"):
        load_mqtt_config(load_config(conf, tmp_path))
