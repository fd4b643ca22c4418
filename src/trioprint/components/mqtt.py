"""``[mqtt]``: the JSON-RPC API, klippy's status and Home Assistant discovery over a broker.

::

    Mqtt.run
    ├─ MqttLink.run (transport/mqtt.py): the broker connection, kept up with back-off
    ├─ api: requests from ``I/moonraker/api/request`` (a bounded channel), each answered by
    │  the registry (transport/jsonrpc.py, Transport.MQTT) in its own task (at most 16)
    │  -> ``I/moonraker/api/response``
    ├─ status ticker (``status_interval`` > 0): the merged diffs, once an interval
    └─ discovery (``discovery: true``): the state message at most once a second; commands
       from the buttons and numbers (a bounded channel) -> the printer link

Nothing here makes the printer wait: klippy's status callbacks only hand messages to the link,
which never blocks (see :class:`~trioprint.transport.mqtt.MqttLink`).

Other components use :meth:`Mqtt.subscribe` / :meth:`Mqtt.unsubscribe` (a callback per exact
topic, called with the payload's bytes; it must not block) and :meth:`Mqtt.publish`.
"""

from __future__ import annotations

import collections
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .. import rpc
from .._version import __version__
from ..domain import mqtt_discovery
from ..domain.mqtt import (
    MqttConfig,
    MqttConfigError,
    StatusBatch,
    check_topic,
    decode_payload,
    encode_payload,
    parse_section,
    status_messages,
)
from ..domain.status import Status, filter_status
from ..errors import ApiError, ConfigError
from ..registry import Call, Registry, Transport, endpoint
from ..transport import jsonrpc
from ..transport.mqtt import MqttLink, Ticket, Will

if TYPE_CHECKING:
    from ..config import Config
    from ..transport.websocket import WebsocketManager
    from .klippy import Klippy

log = logging.getLogger(__name__)

#: Requests waiting to be answered, and answered at once.
API_QUEUE = 64
API_CONCURRENCY = 16
#: ``mqtt_timestamp`` values remembered to refuse a request delivered twice (Moonraker's).
DUPLICATE_WINDOW = 20
DUPLICATE_CODE = -10000
_NOT_OVER_MQTT = Transport.HTTP | Transport.WEBSOCKET


def load_mqtt_config(config: Config) -> tuple[MqttConfig | None, list[str]]:
    """The ``[mqtt]`` section (None without one); ConfigError naming the problem."""
    if "mqtt" not in config.sections:
        return None, []
    where = f"{config.source}: " if config.source is not None else ""
    try:
        mqtt, warnings = parse_section(config.section("mqtt"), socket.gethostname())
    except MqttConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    if mqtt.password_file is not None:
        path = Path(mqtt.password_file).expanduser()
        try:
            mqtt = attrs.evolve(mqtt, password=path.read_text().strip())
        except OSError as exc:
            raise ConfigError(
                f"{where}[mqtt] password_file: cannot read {path}: {exc.strerror or exc}"
            ) from None
    return mqtt, warnings


@attrs.frozen
class PublishParams:
    topic: str
    payload: Any = None
    qos: int | None = None
    retain: bool = False
    timeout: float | None = None


@attrs.frozen
class SubscribeParams:
    topic: str
    qos: int | None = None
    timeout: float | None = None


class Subscription:
    """One callback on one exact topic (a handle for :meth:`Mqtt.unsubscribe`)."""

    def __init__(self, topic: str, callback: Callable[[bytes], None], qos: int) -> None:
        self.topic = topic
        self.callback = callback
        self.qos = qos


class Mqtt:
    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        registry: Registry,
        klippy: Klippy,
        websockets: WebsocketManager,
    ) -> None:
        self.config = config
        self.topics = config.topics
        self._registry = registry
        self._klippy = klippy
        offline = encode_payload({"server": "offline"})
        self.link = MqttLink(
            config.address,
            config.port,
            protocol=config.protocol,
            client_id=config.session_client_id,
            clean_session=not config.persistent_session,
            username=config.username,
            password=config.password,
            will=Will(self.topics.server_status, offline, config.default_qos, True),
            on_message=self._on_message,
        )
        self.link.connect_listeners.append(self._on_connected)
        self._subs: dict[str, list[Subscription]] = {}
        send, self._api_requests = trio.open_memory_channel[bytes](API_QUEUE)
        self._api_send = send
        self.api_dropped = 0
        self._seen: collections.deque[Any] = collections.deque(maxlen=DUPLICATE_WINDOW)
        self._batch = StatusBatch()
        self.discovery = (
            mqtt_discovery.Discovery(self.topics, config.discovery_prefix, __version__)
            if config.discovery
            else None
        )
        cmd_send, self._commands = trio.open_memory_channel[tuple[str, bytes]](16)
        self._command_send = cmd_send
        self._state_dirty = trio.Event()
        self._last_state: dict[str, Any] | None = None
        if config.enable_moonraker_api:
            self.subscribe(self.topics.api_request, self._on_api_request, config.api_qos)
        if config.status_objects:
            klippy.set_internal_subscription("mqtt", config.status_objects, self._on_status)
        if self.discovery is not None:
            klippy.set_internal_subscription(
                "mqtt_discovery", mqtt_discovery.STATE_SPEC, self._on_discovery_status
            )
            for topic in self.discovery.command_topics():
                self.subscribe(topic, self._command_callback(topic), 1)
            self.subscribe(self.discovery.ha_status_topic, self._on_ha_status, 1)
        klippy.register_remote_method("publish_mqtt_topic", self._publish_from_klippy)
        websockets.add_broadcast_listener(self._on_notification)

    # -- the interface other components use ----------------------------------------------

    def subscribe(
        self, topic: str, callback: Callable[[bytes], None], qos: int | None = None
    ) -> Subscription:
        """Call ``callback(payload)`` for every message on ``topic`` (exact, no wildcards)."""
        problem = check_topic(topic)
        if problem is not None:
            raise ApiError(f"Invalid topic {topic!r}: {problem}", 400)
        qos = self._qos(qos)
        handle = Subscription(topic, callback, qos)
        handles = self._subs.setdefault(topic, [])
        handles.append(handle)
        self.link.subscribe(topic, max(h.qos for h in handles))
        return handle

    def unsubscribe(self, handle: Subscription) -> None:
        handles = self._subs.get(handle.topic, [])
        if handle in handles:
            handles.remove(handle)
        if handles:
            self.link.subscribe(handle.topic, max(h.qos for h in handles))
        else:
            self._subs.pop(handle.topic, None)
            self.link.unsubscribe(handle.topic)

    @property
    def connected(self) -> bool:
        """True while connected to the broker."""
        return self.link.connected

    async def wait_connected(self) -> None:
        """Return once connected to the broker (at once if it is)."""
        await self.link.wait_connected()

    def publish(
        self, topic: str, payload: Any = None, qos: int | None = None, retain: bool = False
    ) -> Ticket:
        """Hand a message to the link at once (``payload`` encoded as Moonraker does)."""
        problem = check_topic(topic)
        if problem is not None:
            raise ApiError(f"Invalid topic {topic!r}: {problem}", 400)
        try:
            data = encode_payload(payload)
        except (TypeError, ValueError):
            raise ApiError("Dict or List is not json encodable", 400) from None
        return self.link.publish(topic, data, self._qos(qos), retain)

    def _qos(self, qos: int | None) -> int:
        if qos is None:
            return self.config.default_qos
        if not 0 <= qos <= 2:
            raise ApiError("QOS must be between 0 and 2", 400)
        return qos

    # -- endpoints (not over MQTT itself, as Moonraker: its clients publish directly) -------

    @endpoint("/server/mqtt/publish", "POST", params=PublishParams, transports=_NOT_OVER_MQTT)
    async def publish_endpoint(self, call: Call[PublishParams]) -> Any:
        p = call.params
        ticket = self.publish(p.topic, p.payload, p.qos, p.retain)
        with trio.move_on_after(_timeout(p.timeout)) as scope:
            await ticket.done.wait()
        if scope.cancelled_caught:
            raise ApiError("MQTT Publish Timed Out", 504)
        if ticket.error is not None:
            raise ApiError(ticket.error, 529 if "Queue Full" in ticket.error else 503)
        return {"topic": p.topic}

    @endpoint("/server/mqtt/subscribe", "POST", params=SubscribeParams, transports=_NOT_OVER_MQTT)
    async def subscribe_endpoint(self, call: Call[SubscribeParams]) -> Any:
        p = call.params
        got: list[bytes] = []
        arrived = trio.Event()

        def on_message(payload: bytes) -> None:
            if not got:
                got.append(payload)
                arrived.set()

        handle = self.subscribe(p.topic, on_message, p.qos)
        try:
            with trio.move_on_after(_timeout(p.timeout)) as scope:
                await arrived.wait()
        finally:
            self.unsubscribe(handle)
        if scope.cancelled_caught:
            raise ApiError("MQTT Subscribe Timed Out", 504)
        return {"topic": p.topic, "payload": decode_payload(got[0])}

    # -- the lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda **kw: self.link.run(farewell=self._farewell, **kw))
            nursery.start_soon(self._serve_api)
            if self.config.status_objects and self.config.status_interval:
                nursery.start_soon(self._status_ticker)
            if self.discovery is not None:
                nursery.start_soon(self._publish_state)
                nursery.start_soon(self._run_commands)
            task_status.started()

    def _on_connected(self) -> None:
        self.link.publish(
            self.topics.server_status,
            encode_payload({"server": "online"}),
            self.config.default_qos,
            True,
        )
        self._announce()

    def _farewell(self) -> None:
        self.link.publish(
            self.topics.server_status,
            encode_payload({"server": "offline"}),
            self.config.default_qos,
            True,
        )

    def _on_message(self, topic: str, payload: bytes) -> None:
        for handle in list(self._subs.get(topic, ())):
            try:
                handle.callback(payload)
            except Exception:
                log.exception("mqtt subscriber of %s failed", topic)

    # -- the JSON-RPC API ------------------------------------------------------------------

    def _on_api_request(self, payload: bytes) -> None:
        try:
            self._api_send.send_nowait(payload)
        except trio.WouldBlock:
            self.api_dropped += 1
            log.warning("mqtt: %d API request(s) dropped: too many waiting", self.api_dropped)

    async def _serve_api(self) -> None:
        limiter = trio.CapacityLimiter(API_CONCURRENCY)
        async with trio.open_nursery() as requests:
            async for payload in self._api_requests:
                await limiter.acquire_on_behalf_of(payload)
                requests.start_soon(self._answer, payload, limiter)

    async def _answer(self, payload: bytes, limiter: trio.CapacityLimiter) -> None:
        try:
            message = rpc.parse(payload)
            duplicate = self._screen(message)
            if duplicate is not None:
                answer: str | None = duplicate
            else:
                caller = jsonrpc.Caller(Transport.MQTT, remote=f"mqtt:{self.topics.api_request}")
                answer = await jsonrpc.answer_message(self._registry, message, caller)
            if answer is not None:
                self.link.publish(self.topics.api_response, answer.encode(), self.config.api_qos)
        finally:
            limiter.release_on_behalf_of(payload)

    def _screen(self, message: rpc.Message) -> str | None:
        """Moonraker's guard against a request delivered twice (``params.mqtt_timestamp``)."""
        if message.batch or not isinstance(message.entries[0], rpc.Request):
            return None
        entry = message.entries[0]
        stamp = entry.params.pop("mqtt_timestamp", None)
        if stamp is None:
            return None
        if stamp in self._seen:
            log.debug("mqtt: duplicate API request %r ignored", stamp)
            return rpc.dumps(rpc.error(entry.id, DUPLICATE_CODE, "Duplicate MQTT Request"))
        self._seen.append(stamp)
        return None

    def _on_notification(self, method: str, params: list[Any] | None) -> None:
        if not self.link.connected:
            return
        try:
            data = rpc.dumps(rpc.notification(method, params)).encode()
        except (TypeError, ValueError):
            return
        self.link.publish(
            self.topics.api_notification, data, self.config.default_qos, droppable=True
        )

    def _publish_from_klippy(
        self,
        topic: str,
        payload: Any = None,
        qos: int | None = None,
        retain: bool = False,
        use_prefix: bool = False,
        **_: Any,
    ) -> None:
        if use_prefix:
            topic = f"{self.topics.instance}/{topic.lstrip('/')}"
        try:
            self.publish(topic, payload, qos, retain)
        except ApiError as exc:
            log.warning("publish_mqtt_topic from klippy refused: %s", exc.message)

    # -- klippy's status -------------------------------------------------------------------

    def _on_status(self, diff: Status, eventtime: float) -> None:
        if self.config.status_interval:
            self._batch.add(diff, eventtime)
        else:
            self._send_status(diff, eventtime)

    def _send_status(self, status: Status, eventtime: float) -> None:
        split = self.config.publish_split_status
        for topic, data, retain in status_messages(self.topics, status, eventtime, split=split):
            self.link.publish(topic, data, self.config.default_qos, retain, droppable=True)

    async def _status_ticker(self) -> None:
        while True:
            await trio.sleep(self.config.status_interval)
            taken = self._batch.take()
            if taken is not None:
                self._send_status(*taken)

    # -- Home Assistant discovery ----------------------------------------------------------

    def _announce(self) -> None:
        if self.discovery is None:
            return
        for topic, payload in self.discovery.configs():
            self.link.publish(topic, encode_payload(payload), 1, True)
        self._last_state = None
        self._state_dirty.set()

    def _on_ha_status(self, payload: bytes) -> None:
        if payload.strip() == b"online":
            self._announce()

    def _on_discovery_status(self, diff: Status, eventtime: float) -> None:
        self._state_dirty.set()

    async def _publish_state(self) -> None:
        assert self.discovery is not None
        while True:
            await self._state_dirty.wait()
            self._state_dirty = trio.Event()
            status = filter_status(self._klippy.cache.state, mqtt_discovery.STATE_SPEC)
            state = mqtt_discovery.state(status)
            if state != self._last_state and self.link.connected:
                self._last_state = state
                data = encode_payload(state)
                self.link.publish(
                    self.discovery.state_topic, data, self.config.default_qos, True, droppable=True
                )
            await trio.sleep(1.0)

    def _command_callback(self, topic: str) -> Callable[[bytes], None]:
        def on_command(payload: bytes) -> None:
            try:
                self._command_send.send_nowait((topic, payload))
            except trio.WouldBlock:
                log.warning("mqtt: command on %s dropped: too many waiting", topic)

        return on_command

    async def _run_commands(self) -> None:
        assert self.discovery is not None
        async for topic, payload in self._commands:
            try:
                command = self.discovery.command(topic, payload)
            except mqtt_discovery.CommandError as exc:
                log.warning("mqtt: Home Assistant command refused: %s", exc)
                continue
            log.info("mqtt: Home Assistant %s (%s)", command.object_id, command.gcode or "M112")
            try:
                if command.gcode is None:
                    await self._klippy.emergency_stop()
                else:
                    await self._klippy.run_gcode(command.gcode)
            except ApiError as exc:
                log.warning("mqtt: Home Assistant %s failed: %s", command.object_id, exc.message)
            except Exception:
                log.exception("mqtt: Home Assistant %s failed", command.object_id)


def _timeout(value: float | None) -> float:
    if value is None:
        return float("inf")
    if value < 0:
        raise ApiError("timeout must not be negative", 400)
    return value
