"""Home Assistant MQTT discovery over a real broker, on the simulated printer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from trioprint.components.klippy import KlippyStateChanged

from .live import rpc_client
from .mqtt_broker import Broker, broker_fixture
from .test_mqtt import WAIT, server_with_mqtt, watching

__all__ = ["broker_fixture"]

pytestmark = pytest.mark.slow

DISCOVERY = "discovery: true\ndiscovery_prefix: homeassistant\n"
EXPECTED = {
    "sensor": {
        "extruder_temperature", "extruder_target", "bed_temperature", "bed_target",
        "print_state", "progress", "time_left", "current_file",
    },
    "button": {"pause", "resume", "cancel", "emergency_stop"},
    "number": {"extruder_target_set", "bed_target_set"},
}  # fmt: skip


async def test_discovery_configs_and_controls(tmp_path: Path, broker: Broker) -> None:
    async with watching(broker) as watcher:
        await watcher.subscribe("homeassistant/#", "printer1/#")
        async with server_with_mqtt(tmp_path, broker, watcher, DISCOVERY) as live:
            configs: dict[tuple[str, str], dict[str, object]] = {}
            wanted = sum(len(v) for v in EXPECTED.values())
            while len(configs) < wanted:
                topic, payload = await watcher.wait(
                    lambda t, p: t.startswith("homeassistant/") and t.endswith("/config")
                )
                prefix, component, node, object_id, _ = topic.split("/")
                assert (prefix, node) == ("homeassistant", "printer1")
                configs[(component, object_id)] = json.loads(payload)
            found: dict[str, set[str]] = {}
            for component, object_id in configs:
                found.setdefault(component, set()).add(object_id)
            assert found == EXPECTED
            for (component, object_id), config in configs.items():
                assert config["unique_id"] == f"printer1_{object_id}"
                device = config["device"]
                assert isinstance(device, dict)
                assert device["identifiers"] == ["trioprint_printer1"]
                assert device["name"] == "printer1"
                assert set(device) == {"identifiers", "name", "manufacturer", "model", "sw_version"}
                assert config["availability_topic"] == "printer1/moonraker/status"
                assert config["payload_available"] == "online"
                assert config["payload_not_available"] == "offline"
                if component in ("sensor", "number"):
                    assert config["state_topic"] == "printer1/trioprint/state"
                    assert str(config["value_template"]).startswith("{{ value_json.")
                if component in ("button", "number"):
                    assert config["command_topic"] == f"printer1/trioprint/command/{object_id}"
            state = await watcher.json("printer1/trioprint/state")
            assert state["print_state"] in ("standby", "unknown")
            await live.instance.klippy.wait_ready()

            # a number sets the heater's target through the printer link (M104)
            watcher.link.publish("printer1/trioprint/command/extruder_target_set", b"60", 1)
            state = await watcher.json(
                "printer1/trioprint/state", lambda v: v["extruder_target"] == 60
            )
            assert state["extruder_target"] == 60
            async with rpc_client(live.ws) as client:
                query = {"objects": {"extruder": ["target"]}}
                reply = await client.call("printer.objects.query", query)
                assert reply["result"]["status"]["extruder"]["target"] == 60
            # out of range: refused, nothing changes
            watcher.link.publish("printer1/trioprint/command/bed_target_set", b"999", 1)
            # a button press: the emergency stop shuts klippy down
            with live.instance.bus.subscribe(KlippyStateChanged) as events, trio.fail_after(WAIT):
                watcher.link.publish("printer1/trioprint/command/emergency_stop", b"PRESS", 1)
                async for event in events:
                    assert isinstance(event, KlippyStateChanged)
                    if event.state == "shutdown":
                        break
            assert live.instance.klippy.cache.state["heater_bed"]["target"] == 0


async def test_availability_through_the_last_will(tmp_path: Path, broker: Broker) -> None:
    async with watching(broker) as watcher:
        await watcher.subscribe("printer1/moonraker/status")
        async with server_with_mqtt(tmp_path, broker, watcher, DISCOVERY) as live:
            # the connection dies without a DISCONNECT (as in a crash): the broker says offline
            live.instance.mqtt.link._client._sock_close()
            offline = await watcher.json("printer1/moonraker/status")
            assert offline == {"server": "offline"}
            # and trioprint, reconnected, says online again
            online = await watcher.json("printer1/moonraker/status")
            assert online == {"server": "online"}
