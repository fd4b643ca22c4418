"""``[sensor NAME] type: mqtt``: a message on the sensor's topic, rendered by its template, is a
measurement (against a real broker); the template itself, without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from trioprint.domain.sensors import MqttSensorSpec, SensorError

from .live import live_server, rpc_client
from .mqtt_broker import Broker, broker_fixture
from .test_mqtt import watching

__all__ = ["broker_fixture"]  # the fixture used here

TEMPLATE = (
    '{set_result("power", (payload|fromjson).power)}{set_result("on", payload|fromjson|length)}'
)


def spec(**options: str) -> MqttSensorSpec:
    return MqttSensorSpec.from_options("plug", {"type": "mqtt", **options})


def test_the_template_turns_a_message_into_measurements() -> None:
    plug = spec(state_topic="plug/state", state_response_template=TEMPLATE, qos="1")
    assert plug.state_topic == "plug/state"
    assert plug.qos == 1
    assert plug.measurements(b'{"power": 12.5, "x": 1}') == {"power": 12.5, "on": 2.0}
    with pytest.raises(SensorError, match="state_response_template failed"):
        plug.measurements(b"not json")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"state_response_template": "{payload}"}, "'state_topic' is required"),
        ({"state_topic": "a"}, "'state_response_template' is required"),
        ({"state_topic": "a", "state_response_template": "{x", "qos": "1"}, "template"),
        ({"state_topic": "a", "state_response_template": "{x}", "qos": "3"}, "'qos'"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, str], problem: str) -> None:
    with pytest.raises(SensorError, match=problem):
        spec(**options)


def test_the_template_cannot_reach_outside_its_sandbox() -> None:
    sneaky = spec(state_topic="a", state_response_template="{set_result.__globals__}")
    with pytest.raises(SensorError):
        sneaky.measurements(b"1")


@pytest.mark.slow
async def test_a_message_on_the_topic_is_a_measurement(tmp_path: Path, broker: Broker) -> None:
    (tmp_path / "data").mkdir()
    config = tmp_path / "trioprint.conf"
    config.write_text(
        f"[mqtt]\naddress: {broker.host}\nport: {broker.port}\ninstance_name: printer1\n"
        f"[sensor plug]\ntype: mqtt\nstate_topic: plug/state\nqos: 1\n"
        f"state_response_template: {TEMPLATE}\n"
        "parameter_power:\n  units=W\n"
    )
    async with (
        watching(broker) as watcher,
        live_server(tmp_path / "data", config) as live,
        rpc_client(live.ws) as client,
    ):
        with trio.fail_after(15):
            await watcher.subscribe("printer1/moonraker/status")
            await watcher.json("printer1/moonraker/status", lambda v: v == {"server": "online"})
            info = (await client.call("server.info"))["result"]
            assert "sensor" in info["components"]
            assert not [w for w in info["warnings"] if "sensor" in w]
            # retained: the sensor's subscription gets it however the two race
            watcher.link.publish("plug/state", json.dumps({"power": 12.5}).encode(), 1, True)
            note = await client.notification("notify_sensor_update")
            assert note["params"][0]["plug"] == {"power": 12.5, "on": 1.0}
            result = (await client.call("server.sensors.info", {"sensor": "plug"}))["result"]
        assert result["values"] == {"power": 12.5, "on": 1.0}
        assert result["type"] == "mqtt"


async def test_without_mqtt_a_mqtt_sensor_is_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "trioprint.conf"
    config.write_text(
        "[sensor plug]\ntype: mqtt\nstate_topic: a\nstate_response_template: {payload}\n"
    )
    async with live_server(tmp_path, config) as live, rpc_client(live.ws) as client:
        info = (await client.call("server.info"))["result"]
    assert any("type mqtt needs an [mqtt] section" in w for w in info["warnings"]), info
