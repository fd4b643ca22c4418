"""One MQTT client (paho-mqtt) driven from Trio through its socket.

paho's "external event loop" mode: paho never blocks nor starts a thread of its own; this
module waits on its socket with :func:`trio.lowlevel.wait_readable` /
:func:`~trio.lowlevel.wait_writable` and calls ``loop_read``, ``loop_write`` and (every
second) ``loop_misc``. Only the TCP connect, which paho does blocking, runs in a worker thread.

::

    MqttLink.run: connect (a thread) -> session -> lost -> back-off (0.25 s doubling to 8 s)
    └─ session nursery: reader (loop_read), writer (loop_write when paho has bytes to send),
       misc (keep-alive, every second)

Nothing here waits on the broker for a caller: :meth:`MqttLink.publish` returns at once.
QoS 1 and 2 messages are kept by paho (at most ``max_queued``) and sent again after a
reconnect; *droppable* messages (status updates) are held in a small queue of their own while
the link is down or busy, the oldest dropped (and counted) when it is full.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs
import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

PROTOCOLS = {
    "v3.1": MQTTProtocolVersion.MQTTv31,
    "v3.1.1": MQTTProtocolVersion.MQTTv311,
    "v5": MQTTProtocolVersion.MQTTv5,
}
#: MQTT 5's session expiry for a persistent session (as an MQTT 3 one: kept until it is used).
SESSION_NEVER_EXPIRES = 0xFFFFFFFF
MIN_BACKOFF = 0.25
MAX_BACKOFF = 8.0


@attrs.frozen
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = True


class Ticket:
    """One publish: ``done`` is set once the broker has it (QoS 0: once it is handed over)."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None

    def finish(self, error: str | None = None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class MqttLink:
    """A connection to one broker, kept up for as long as :meth:`run` runs."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        protocol: str = "v3.1.1",
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        will: Will | None = None,
        keepalive: int = 60,
        max_queued: int = 1000,
        clean_session: bool = True,
        held_limit: int = 100,
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._keepalive = keepalive
        self._v5_session = protocol == "v5" and not clean_session
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PROTOCOLS[protocol],
            reconnect_on_failure=False,
            # MQTT 5 has clean_start (on connect) instead
            clean_session=None if protocol == "v5" else clean_session,
        )
        client.max_queued_messages_set(max_queued)
        client.suppress_exceptions = True
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        self._client = client
        self.on_message = on_message
        #: Called (in the Trio thread, must not block) each time the broker accepts us.
        self.connect_listeners: list[Callable[[], None]] = []
        self._state = "disconnected"
        self._state_changed = trio.Event()
        self.last_error: str | None = None
        self.connects = 0
        self.dropped = 0
        self._subscriptions: dict[str, int] = {}
        self._tickets: dict[int, Ticket] = {}
        self._held: collections.deque[tuple[str, bytes, int, bool]] = collections.deque(
            maxlen=held_limit
        )
        self._write_wanted = trio.Event()
        self._lost = trio.Event()
        self._connected = trio.Event()
        self._trio_thread = threading.get_ident()
        self._token: trio.lowlevel.TrioToken | None = None

    @property
    def state(self) -> str:
        """``disconnected``, ``connecting``, ``connected`` or ``refused``."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value != self._state:
            self._state = value
            changed, self._state_changed = self._state_changed, trio.Event()
            changed.set()

    async def wait_state(self, state: str) -> None:
        while self._state != state:
            await self._state_changed.wait()

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    async def wait_connected(self) -> None:
        await self._connected.wait()

    # -- what the component calls (never blocks) --------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        droppable: bool = False,
    ) -> Ticket:
        ticket = Ticket()
        if droppable and (not self.connected or self._client.want_write()):
            if len(self._held) == self._held.maxlen:
                self._count_drop()
            self._held.append((topic, payload, qos, retain))
            ticket.finish()
            return ticket
        if qos == 0 and not self.connected:
            ticket.finish("MQTT Publish Error: not connected to the broker")
            return ticket
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            ticket.finish("MQTT Message Queue Full")
        elif info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            ticket.finish(f"MQTT Publish Error: {paho.error_string(info.rc)}")
        elif qos == 0:
            ticket.finish()
        else:  # kept by paho until the broker acknowledges it, across reconnects
            self._tickets[info.mid] = ticket
        return ticket

    def subscribe(self, topic: str, qos: int) -> None:
        if self._subscriptions.get(topic) == qos:
            return
        self._subscriptions[topic] = qos
        if self.connected:
            self._client.subscribe(topic, qos)

    def unsubscribe(self, topic: str) -> None:
        if self._subscriptions.pop(topic, None) is not None and self.connected:
            self._client.unsubscribe(topic)

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 100 == 0:
            log.warning("mqtt: broker not keeping up, %d status message(s) dropped", self.dropped)

    # -- the lifecycle -------------------------------------------------------------------

    async def run(
        self,
        *,
        farewell: Callable[[], None] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect and stay connected; when cancelled, ``farewell()`` publishes its last
        messages and the link disconnects cleanly (the broker then sends no last will)."""
        self._token = trio.lowlevel.current_trio_token()
        self._trio_thread = threading.get_ident()
        if self._v5_session:  # MQTT 5: keep the session on every connect, and after it ends
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
            self._client.connect_async(
                self.host, self.port, self._keepalive, clean_start=False, properties=props
            )
        else:
            self._client.connect_async(self.host, self.port, self._keepalive)
        task_status.started()
        delay = MIN_BACKOFF
        try:
            while True:
                if await self._connect():
                    await self._session()
                    if self.connects and self.state != "refused":
                        delay = MIN_BACKOFF
                await trio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        finally:
            with trio.CancelScope(shield=True):
                await self._close(farewell)

    async def _connect(self) -> bool:
        self.state = "connecting"
        try:
            await trio.to_thread.run_sync(self._client.reconnect, abandon_on_cancel=True)
        except (OSError, ValueError) as exc:
            self.state = "disconnected"
            error = f"cannot connect to {self.host}:{self.port}: {exc}"
            if error != self.last_error:
                log.warning("mqtt: %s (retrying)", error)
            self.last_error = error
            return False
        return True

    async def _session(self) -> None:
        sock: Any = self._client.socket()
        if sock is None:
            return
        self._lost = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader, sock)
            nursery.start_soon(self._writer, sock)
            nursery.start_soon(self._misc)
            await self._lost.wait()
            nursery.cancel_scope.cancel()
        if self._client.socket() is not None:  # we gave up on it: paho must forget it too
            self._client._sock_close()  # no public call closes without a DISCONNECT
        if self.state == "connected":
            self.state = "disconnected"
        if self._connected.is_set():
            self._connected = trio.Event()

    def _is_current(self, sock: Any) -> bool:
        """Whether ``sock`` is still paho's socket (paho closes it on a lost connection)."""
        return self._client.socket() is sock

    async def _reader(self, sock: Any) -> None:
        while True:
            if not self._is_current(sock):
                break
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.ClosedResourceError, OSError, ValueError):
                break
            if self._client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._lost.set()

    async def _writer(self, sock: Any) -> None:
        while True:
            if self._client.want_write():
                if not self._is_current(sock):
                    break
                try:
                    await trio.lowlevel.wait_writable(sock)
                except (trio.ClosedResourceError, OSError, ValueError):
                    break
                if self._client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
                continue
            if self.connected and self._held:
                self._release_held()
                continue
            self._write_wanted = trio.Event()
            await self._write_wanted.wait()
        self._lost.set()

    def _release_held(self) -> None:
        while self._held and not self._client.want_write():
            topic, payload, qos, retain = self._held.popleft()
            self._client.publish(topic, payload, qos, retain)

    async def _misc(self) -> None:
        while True:
            await trio.sleep(1.0)
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._lost.set()

    async def _close(self, farewell: Callable[[], None] | None) -> None:
        if not self.connected:
            self._client._sock_close()
            return
        if farewell is not None:
            farewell()
        self._client.disconnect()
        sock: Any = self._client.socket()
        with trio.move_on_after(1.0):
            while self._client.socket() is sock and sock is not None and self._client.want_write():
                await trio.lowlevel.wait_writable(sock)
                if self._client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._client._sock_close()
        self.state = "disconnected"

    # -- paho's callbacks (in the Trio thread, from loop_read/loop_write/loop_misc) --------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.state = "refused"
            error = f"the broker at {self.host}:{self.port} refused the connection: {reason}"
            if error != self.last_error:
                log.warning("mqtt: %s", error)
            self.last_error = error
            return
        self.state = "connected"
        self.last_error = None
        self.connects += 1
        log.info("mqtt: connected to %s:%d", self.host, self.port)
        if self._subscriptions:
            self._client.subscribe(list(self._subscriptions.items()))
        self._connected.set()
        for listener in self.connect_listeners:
            try:
                listener()
            except Exception:
                log.exception("mqtt connect listener failed")

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self.state == "connected":
            log.warning("mqtt: disconnected from %s:%d (%s)", self.host, self.port, reason)
            self.state = "disconnected"
        self._lost.set()

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        if self.on_message is not None:
            try:
                self.on_message(message.topic, bytes(message.payload))
            except Exception:
                log.exception("mqtt message handler failed for %s", message.topic)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        ticket = self._tickets.pop(mid, None)
        if ticket is not None:
            failed = getattr(reason, "is_failure", False)
            ticket.finish(f"MQTT Publish Error: {reason}" if failed else None)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._trio_thread:
            trio.lowlevel.notify_closing(sock)
            self._lost.set()

    def _on_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == self._trio_thread:
            self._write_wanted.set()
        elif self._token is not None:  # the connect thread queued the CONNECT packet
            self._token.run_sync_soon(self._wake_writer)

    def _wake_writer(self) -> None:
        self._write_wanted.set()
