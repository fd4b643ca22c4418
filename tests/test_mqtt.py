"""[mqtt] against a real broker (mosquitto, started by the tests): the JSON-RPC API, klippy's
status, server.mqtt.publish/subscribe, a broker restart, password authentication."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.transport.mqtt import MqttLink

from .live import Live, live_server, rpc_client
from .mqtt_broker import Broker, auth_broker_fixture, broker_fixture, run_broker

__all__ = ["auth_broker_fixture", "broker_fixture"]  # the fixtures used here

pytestmark = pytest.mark.slow
WAIT = 15.0


class Watcher:
    """The test's own MQTT client: every message it receives, in order."""

    def __init__(self, broker: Broker, **kwargs: Any) -> None:
        self.link = MqttLink(broker.host, broker.port, on_message=self._on, **kwargs)
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes]](10000)
        self.seen: list[tuple[str, bytes]] = []

    def _on(self, topic: str, payload: bytes) -> None:
        self._send.send_nowait((topic, payload))

    async def subscribe(self, *topics: str, qos: int = 1) -> None:
        """Subscribe and wait until the broker delivers (a probe on a topic of our own)."""
        for topic in topics:
            self.link.subscribe(topic, qos)
        probe = f"probe/{id(self)}"
        self.link.subscribe(probe, qos)
        await self.link.wait_connected()
        self.link.publish(probe, b"probe", 1)
        await self.wait(lambda t, p: t == probe)

    async def wait(self, match: Callable[[str, bytes], bool]) -> tuple[str, bytes]:
        for item in self.seen:
            if match(*item):
                self.seen.remove(item)
                return item
        with trio.fail_after(WAIT):
            while True:
                item = await self._receive.receive()
                if match(*item):
                    return item
                self.seen.append(item)

    async def json(self, topic: str, match: Callable[[Any], bool] = lambda v: True) -> Any:
        _, payload = await self.wait(lambda t, p: t == topic and match(json.loads(p)))
        return json.loads(payload)


@asynccontextmanager
async def watching(broker: Broker, **kwargs: Any) -> AsyncIterator[Watcher]:
    watcher = Watcher(broker, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.link.run)
        yield watcher
        nursery.cancel_scope.cancel()


def write_config(tmp_path: Path, broker: Broker, extra: str = "") -> Path:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    config = tmp_path / "trioprint.conf"
    config.write_text(
        f"[mqtt]\naddress: {broker.host}\nport: {broker.port}\ninstance_name: printer1\n{extra}"
    )
    return config


@asynccontextmanager
async def server_with_mqtt(
    tmp_path: Path, broker: Broker, watcher: Watcher, extra: str = ""
) -> AsyncIterator[Live]:
    config = write_config(tmp_path, broker, extra)
    async with live_server(tmp_path / "data", config) as live:
        await watcher.json("printer1/moonraker/status", lambda v: v == {"server": "online"})
        yield live


async def api(watcher: Watcher, method: str, params: Any = None, req_id: int = 1) -> Any:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        request["params"] = params
    watcher.link.publish("printer1/moonraker/api/request", json.dumps(request).encode(), 1)
    return await watcher.json("printer1/moonraker/api/response", lambda v: v.get("id") == req_id)


async def test_api_request_response(tmp_path: Path, broker: Broker) -> None:
    async with watching(broker) as watcher:
        await watcher.subscribe("printer1/moonraker/#")
        async with server_with_mqtt(tmp_path, broker, watcher) as live:
            info = await api(watcher, "server.info", req_id=7)
            assert "mqtt" in info["result"]["components"]
            await live.instance.klippy.wait_ready()
            query = await api(watcher, "printer.objects.query", {"objects": {"webhooks": None}}, 8)
            assert query["result"]["status"]["webhooks"]["state"] == "ready"
            # websocket-only methods and the MQTT endpoints themselves are not served over MQTT
            for i, method in enumerate(["server.websocket.id", "server.mqtt.publish"]):
                error = (await api(watcher, method, {"topic": "x"}, 20 + i))["error"]
                assert error["message"] == f"Method not found for transport MQTT: {method}"
            bad = await api(watcher, "printer.gcode.script", {"script": 5}, 30)
            assert "script" in bad["error"]["message"]
            # Moonraker's duplicate guard: the same mqtt_timestamp twice
            stamp = {"mqtt_timestamp": 1234.5}
            assert "result" in await api(watcher, "server.info", stamp, 40)
            dup = await api(watcher, "server.info", stamp, 41)
            assert dup["error"]["code"] == -10000
            # notifications: what every websocket client hears
            await api(watcher, "printer.gcode.script", {"script": "M118 hello mqtt"}, 50)
            note = await watcher.json(
                "printer1/moonraker/api/notification",
                lambda v: v["method"] == "notify_gcode_response" and "hello mqtt" in v["params"][0],
            )
            assert note["jsonrpc"] == "2.0"
        # a clean shutdown says offline (retained)
        await watcher.json("printer1/moonraker/status", lambda v: v == {"server": "offline"})


@pytest.mark.parametrize("split", [False, True])
async def test_status_published(tmp_path: Path, broker: Broker, split: bool) -> None:
    extra = "status_objects:\n  webhooks=state\n  extruder=target\n"
    if split:
        extra += "publish_split_status: true\n"
    async with watching(broker) as watcher:
        await watcher.subscribe("printer1/klipper/#", "printer1/moonraker/#")
        async with server_with_mqtt(tmp_path, broker, watcher, extra) as live:
            await live.instance.klippy.wait_ready()
            await api(watcher, "printer.gcode.script", {"script": "M104 S42"})
            if split:
                state = await watcher.json("printer1/klipper/state/webhooks/state")
                assert state["value"] == "ready"
                assert "eventtime" in state
                target = await watcher.json(
                    "printer1/klipper/state/extruder/target", lambda v: v["value"] == 42
                )
                assert set(target) == {"eventtime", "value"}
            else:
                first = await watcher.json("printer1/klipper/status")
                assert first["status"]["webhooks"] == {"state": "ready"}
                changed = await watcher.json(
                    "printer1/klipper/status",
                    lambda v: v["status"].get("extruder", {}).get("target") == 42,
                )
                assert set(changed) == {"eventtime", "status"}
                assert set(changed["status"]) <= {"webhooks", "extruder"}


async def test_server_mqtt_publish_and_subscribe(tmp_path: Path, broker: Broker) -> None:
    async with watching(broker) as watcher:
        await watcher.subscribe("farm/#", "printer1/moonraker/#")
        async with server_with_mqtt(tmp_path, broker, watcher) as live:
            async with rpc_client(live.ws) as client:
                params = {"topic": "farm/a", "payload": {"x": [1, 2]}, "qos": 1, "retain": False}
                reply = await client.call("server.mqtt.publish", params)
                assert reply["result"] == {"topic": "farm/a"}
                _, payload = await watcher.wait(lambda t, p: t == "farm/a")
                assert json.loads(payload) == {"x": [1, 2]}
                params = {"topic": "farm/b", "payload": True}
                reply = await client.call("server.mqtt.publish", params)
                assert (await watcher.wait(lambda t, p: t == "farm/b"))[1] == b"true"
                # subscribe: the first message on the topic (here a retained one)
                watcher.link.publish("farm/retained", b'{"temp": 21.5}', 1, True)
                await watcher.wait(lambda t, p: t == "farm/retained")
                reply = await client.call("server.mqtt.subscribe", {"topic": "farm/retained"})
                assert reply["result"] == {"topic": "farm/retained", "payload": {"temp": 21.5}}
                watcher.link.publish("farm/text", b"plain words", 1, True)
                await watcher.wait(lambda t, p: t == "farm/text")
                reply = await client.call("server.mqtt.subscribe", {"topic": "farm/text"})
                assert reply["result"]["payload"] == "plain words"
                # errors: Moonraker's messages and codes
                reply = await client.call(
                    "server.mqtt.subscribe", {"topic": "farm/empty", "timeout": 0.2}
                )
                assert reply["error"] == {"code": 504, "message": "MQTT Subscribe Timed Out"}
                reply = await client.call("server.mqtt.subscribe", {"topic": "farm/#"})
                assert "wildcards" in reply["error"]["message"]
                reply = await client.call("server.mqtt.publish", {"topic": "farm/a", "qos": 3})
                assert reply["error"]["message"] == "QOS must be between 0 and 2"
                reply = await client.call("server.mqtt.publish", {"payload": 1})
                assert "topic" in reply["error"]["message"]
            assert not live.instance.mqtt.link._subscriptions.keys() & {"farm/text"}


async def test_broker_restart_delivers_qos1(tmp_path: Path) -> None:
    # a persistent session: the broker keeps QoS 1 messages for it across its restart
    async with (
        run_broker(tmp_path / "broker", persistent=True) as broker,
        watching(broker, client_id="watcher", clean_session=False) as watcher,
    ):
        await watcher.subscribe("farm/#", "printer1/moonraker/#")
        async with server_with_mqtt(tmp_path, broker, watcher) as live:
            mqtt = live.instance.mqtt
            await broker.stop()
            with trio.fail_after(WAIT):
                await mqtt.link.wait_state("disconnected")
            async with rpc_client(live.ws) as client:
                sent: dict[str, Any] = {}

                async def publish() -> None:
                    params = {"topic": "farm/while_down", "payload": "kept", "qos": 1}
                    sent.update(await client.call("server.mqtt.publish", params))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(publish)
                    # the printer does not wait on the broker meanwhile
                    async with rpc_client(live.ws) as other:
                        assert "result" in await other.call("server.info")
                    assert not sent
                    await broker.start()
                assert sent["result"] == {"topic": "farm/while_down"}
            _, payload = await watcher.wait(lambda t, p: t == "farm/while_down")
            assert payload == b"kept"
            assert mqtt.link.connects >= 2
            assert (await api(watcher, "server.info", req_id=3))["result"]["components"]


async def test_password_authentication(tmp_path: Path, auth_broker: Broker) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    watcher_auth = {"username": "printer", "password": "s3cret"}
    async with watching(auth_broker, **watcher_auth) as watcher:
        await watcher.subscribe("printer1/moonraker/#")
        good = "username: printer\npassword: s3cret\n"
        async with server_with_mqtt(tmp_path / "a", auth_broker, watcher, good):
            assert "result" in await api(watcher, "server.info")
        from_file = f"username: printer\npassword_file: {secret}\n"
        async with server_with_mqtt(tmp_path / "b", auth_broker, watcher, from_file):
            assert "result" in await api(watcher, "server.info", req_id=2)
    bad = write_config(tmp_path / "c", auth_broker, "username: printer\npassword: wrong\n")
    async with live_server(tmp_path / "c" / "data", bad) as live:
        link = live.instance.mqtt.link
        with trio.fail_after(WAIT):
            await link.wait_state("refused")
        assert "not authorized" in (link.last_error or "").lower()
        async with rpc_client(live.ws) as client:  # the server itself is unaffected
            assert "mqtt" in (await client.call("server.info"))["result"]["components"]


@pytest.mark.parametrize("protocol", ["v3.1.1", "v5"])
async def test_persistent_session_keeps_requests_sent_while_away(
    tmp_path: Path, protocol: str
) -> None:
    # Without persistent_session a request that reaches the broker while trioprint is not
    # subscribed (away, or not yet subscribed again after a reconnect) has no subscriber and
    # is dropped, though the broker acknowledged it to its sender.
    extra = f"persistent_session: true\napi_qos: 1\nmqtt_protocol: {protocol}\n"
    async with (
        run_broker(tmp_path / "broker", persistent=True) as broker,
        watching(broker, client_id="watcher", clean_session=False) as watcher,
    ):
        await watcher.subscribe("printer1/moonraker/#")
        async with server_with_mqtt(tmp_path, broker, watcher, extra) as live:
            assert live.instance.mqtt.link._client._client_id == b"trioprint-printer1"
        await watcher.json("printer1/moonraker/status", lambda v: v == {"server": "offline"})
        request = {"jsonrpc": "2.0", "method": "server.info", "id": 9}
        watcher.link.publish("printer1/moonraker/api/request", json.dumps(request).encode(), 1)
        await broker.restart()  # the session (and the request queued in it) survives this too
        async with server_with_mqtt(tmp_path, broker, watcher, extra):
            reply = await watcher.json("printer1/moonraker/api/response", lambda v: v["id"] == 9)
            assert "mqtt" in reply["result"]["components"]
