"""``[power NAME] type: mqtt``: the options and templates (pure), the device against an
in-memory broker double (virtual time), and against a real mosquitto with a fake plug."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.domain import power as dp
from trioprint.domain.power_mqtt import DISCARD, StateTemplateError, mqtt_spec
from trioprint.errors import ApiError

from .live import live_server, rpc_client
from .mqtt_broker import Broker, broker_fixture
from .test_mqtt import watching
from .test_power import rig

__all__ = ["broker_fixture"]  # the fixture used here

PLUG = {
    "type": "mqtt",
    "command_topic": "plug/set",
    "command_payload": "{command|upper}",
    "state_topic": "plug/state",
    "state_response_template": "{(payload|fromjson).POWER|lower}",
}


# --- the options and templates --------------------------------------------------------------


def test_options_and_defaults() -> None:
    spec = mqtt_spec({"command_topic": "a/set", "command_payload": "{command}", "state_topic": "a"})
    assert (spec.command_topic, spec.state_topic) == ("a/set", "a")
    assert spec.qos is None
    assert spec.state_timeout == 2.0
    assert spec.retain_command_state is False
    assert spec.query_topic is None
    assert spec.query() is None
    assert spec.command("on") == "on"
    assert spec.state(b"OFF") == "off"  # the default template: the payload itself
    assert dp.device_options("a", {"type": "mqtt"}).poll_interval is None


def test_all_options() -> None:
    spec = mqtt_spec(
        {
            **PLUG,
            "qos": "1",
            "retain_command_state": "true",
            "state_timeout": "0.5",
            "query_topic": "plug/get",
            "query_payload": "{'ask'|upper}",
            "query_after_command": "true",
        }
    )
    assert spec.qos == 1
    assert spec.retain_command_state is True
    assert spec.state_timeout == 0.5
    assert spec.query_topic == "plug/get"
    assert spec.query() == "ASK"
    assert spec.query_after_command is True
    assert spec.command("off") == "OFF"
    assert spec.state(json.dumps({"POWER": "ON"}).encode()) == "on"


def test_query_after_command_needs_a_query_topic() -> None:
    assert mqtt_spec({**PLUG, "query_after_command": "true"}).query_after_command is False


def test_the_state_template_sees_the_request_and_may_discard() -> None:
    template = (
        "{% if response_count > 1 %}discard{% else %}{payload}{% endif %}"
        "{% if last_request == 'power_on' %}{% endif %}"
    )
    spec = mqtt_spec({**PLUG, "state_response_template": template})
    assert spec.state(b"on", "power_on", 1) == "on"
    assert spec.state(b"on", "power_on", 2) == DISCARD


@pytest.mark.parametrize("payload", [b"not json", b'{"POWER": "maybe"}', b"{}"])
def test_a_state_that_is_not_on_or_off_is_an_error(payload: bytes) -> None:
    with pytest.raises(StateTemplateError):
        mqtt_spec(PLUG).state(payload)


def test_the_templates_stay_in_their_sandbox() -> None:
    spec = mqtt_spec({**PLUG, "state_response_template": "{payload.__class__.__mro__}"})
    with pytest.raises(StateTemplateError):
        spec.state(b"on")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"command_topic": ""}, "command_topic: required"),
        ({"state_topic": ""}, "state_topic: required"),
        ({"command_payload": ""}, "command_payload: required"),
        ({"command_payload": "{command"}, "command_payload: bad template"),
        ({"state_response_template": "{% if %}"}, "state_response_template: bad template"),
        ({"qos": "3"}, "qos: expected 0, 1 or 2"),
        ({"qos": "x"}, "qos: expected an integer"),
        ({"state_topic": "plug/#"}, "state_topic: wildcards"),
        ({"state_timeout": "0"}, "state_timeout: expected a number above 0"),
        ({"retain_command_state": "perhaps"}, "retain_command_state: expected a boolean"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, str], problem: str) -> None:
    with pytest.raises(dp.PowerConfigError) as info:
        mqtt_spec({**PLUG, **options})
    assert problem in str(info.value)


# --- the device, against an in-memory broker ------------------------------------------------


class FakeMqtt:
    """The ``[mqtt]`` component's interface; ``plug`` answers a command (or not)."""

    def __init__(self) -> None:
        self.connected = True
        self.subs: dict[str, list[Callable[[bytes], None]]] = {}
        self.published: list[tuple[str, Any, int | None, bool]] = []
        self.answers = True

    async def wait_connected(self) -> None:
        return None

    def subscribe(
        self, topic: str, callback: Callable[[bytes], None], qos: int | None = None
    ) -> Any:
        self.subs.setdefault(topic, []).append(callback)
        return (topic, callback)

    def unsubscribe(self, handle: Any) -> None:
        self.subs[handle[0]].remove(handle[1])

    def deliver(self, topic: str, payload: bytes) -> None:
        for callback in self.subs.get(topic, []):
            callback(payload)

    def publish(
        self, topic: str, payload: Any = None, qos: int | None = None, retain: bool = False
    ) -> Any:
        self.published.append((topic, payload, qos, retain))
        if topic == "plug/set" and self.answers:  # the plug answers at once
            self.deliver("plug/state", json.dumps({"POWER": payload}).encode())


async def test_a_command_waits_for_the_state_and_a_silent_plug_is_an_error(
    autojump_clock: Any,
) -> None:
    mqtt = FakeMqtt()
    mqtt.answers = False
    sections = {"plug": {**PLUG, "retain_command_state": "true", "qos": "1"}}
    async with rig(sections, mqtt=mqtt) as r:
        mqtt.deliver("plug/state", b'{"POWER": "OFF"}')  # as a retained state would come
        await r.ready()
        assert [d["status"] for d in await r.listed()] == ["off"]
        mqtt.answers = True
        assert await r.post("plug", "on") == {"plug": "on"}
        assert mqtt.published[-1] == ("plug/set", "ON", 1, True)
        await r.notes.until("plug", "on")
        mqtt.answers = False
        before = trio.current_time()
        with pytest.raises(ApiError) as info:
            await r.post("plug", "off")
        assert trio.current_time() - before == pytest.approx(2.0)
        assert info.value.status == 500
        assert "no state on plug/state within 2 s" in info.value.message
        assert [d["status"] for d in await r.listed()] == ["error"]
        # the plug reports by itself: announced
        mqtt.deliver("plug/state", b'{"POWER": "OFF"}')
        await r.notes.until("plug", "off")


async def test_without_a_state_at_start_the_device_is_an_error(autojump_clock: Any) -> None:
    mqtt = FakeMqtt()
    async with rig({"plug": {**PLUG, "state_timeout": "1"}}, mqtt=mqtt) as r:
        await r.ready()
        assert [d["status"] for d in await r.listed()] == ["error"]
        assert await r.post("plug", "on") == {"plug": "on"}  # it answers commands


async def test_a_query_topic_asks_for_the_state(autojump_clock: Any) -> None:
    mqtt = FakeMqtt()
    original = mqtt.publish

    def publish(
        topic: str, payload: Any = None, qos: int | None = None, retain: bool = False
    ) -> Any:
        original(topic, payload, qos, retain)
        if topic == "plug/get":
            mqtt.deliver("plug/state", b'{"POWER": "ON"}')

    mqtt.publish = publish  # type: ignore[method-assign]
    sections = {"plug": {**PLUG, "query_topic": "plug/get", "query_payload": "state?"}}
    async with rig(sections, mqtt=mqtt) as r:
        await r.ready()
        assert [d["status"] for d in await r.listed()] == ["on"]
        assert ("plug/get", "state?", None, False) in mqtt.published


async def test_disconnected_is_an_error_and_refused(autojump_clock: Any) -> None:
    mqtt = FakeMqtt()
    async with rig({"plug": PLUG}, mqtt=mqtt) as r:
        mqtt.deliver("plug/state", b'{"POWER": "ON"}')
        await r.ready()
        mqtt.connected = False
        assert await r.get("plug") == {"plug": "error"}
        with pytest.raises(ApiError) as info:
            await r.post("plug", "off")
        assert info.value.status == 503
        assert "MQTT Not Connected" in info.value.message


async def test_without_mqtt_a_device_is_a_warning() -> None:
    async with rig({"plug": PLUG}) as r:
        assert r.power.devices == {}
        assert r.warnings == ["[power plug]: type mqtt needs an [mqtt] section; device not loaded"]


# --- against a real broker ------------------------------------------------------------------


@pytest.mark.slow
async def test_a_plug_on_a_real_broker(tmp_path: Path, broker: Broker) -> None:
    (tmp_path / "data").mkdir()
    config = tmp_path / "trioprint.conf"
    options = "".join(f"{key}: {value}\n" for key, value in PLUG.items())
    config.write_text(
        f"[mqtt]\naddress: {broker.host}\nport: {broker.port}\ninstance_name: printer1\n"
        f"[power plug]\n{options}qos: 1\n"
        "[power dead]\ntype: mqtt\ncommand_topic: dead/set\ncommand_payload: {command}\n"
        "state_topic: dead/state\nstate_timeout: 0.5\n"
    )
    async with (
        watching(broker) as plug,
        trio.open_nursery() as nursery,
    ):
        await plug.subscribe("plug/set")
        plug.link.publish("plug/state", b'{"POWER": "OFF"}', 1, True)  # the plug's state

        async def fake_plug() -> None:
            while True:
                _, payload = await plug.wait(lambda t, p: t == "plug/set")
                state = json.dumps({"POWER": payload.decode()}).encode()
                plug.link.publish("plug/state", state, 1, True)

        nursery.start_soon(fake_plug)
        async with live_server(tmp_path / "data", config) as live, rpc_client(live.ws) as client:
            with trio.fail_after(15):
                info = (await client.call("server.info"))["result"]
                assert not [w for w in info["warnings"] if "power" in w], info["warnings"]
                while True:  # both devices initialized
                    listed = (await client.call("machine.device_power.devices"))["result"]
                    states = {d["device"]: d["status"] for d in listed["devices"]}
                    if "init" not in states.values():
                        break
                    await trio.sleep(0.05)
                assert states == {"plug": "off", "dead": "error"}
                on = await client.call("machine.device_power.on", {"plug": None})
                assert on["result"] == {"plug": "on"}
                listed = (await client.call("machine.device_power.devices"))["result"]
                assert {d["device"]: d["status"] for d in listed["devices"]}["plug"] == "on"
                assert listed["devices"][0]["type"] == "mqtt"
                dead = await client.call("machine.device_power.on", {"dead": None})
                assert "no state on dead/state within 0.5 s" in dead["error"]["message"], dead
                listed = (await client.call("machine.device_power.devices"))["result"]
                assert {d["device"]: d["status"] for d in listed["devices"]}["dead"] == "error"
        nursery.cancel_scope.cancel()
