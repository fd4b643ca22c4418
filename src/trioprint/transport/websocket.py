"""The websocket transport: JSON-RPC 2.0 at ``/websocket``.

Each connection is one task tree under the ASGI server's connection task:

    connection nursery
    ├─ reader (this task): frames -> rpc.parse -> one task per frame (bounded in number)
    ├─ frame tasks: registry dispatch -> reply queued
    └─ writer: bounded outgoing queue -> ASGI send

Requests on one connection run concurrently. Replies and notifications go through the bounded
outgoing queue; a client that does not read fast enough to keep it from filling is disconnected
with a logged reason (it can neither stall other clients nor grow memory without bound).

The reader never stops reading, so that an emergency stop is read and run whatever else the
connection has in flight. Admission, per connection (see :class:`_Admission`):

* a frame of ordinary requests takes one of ``max_in_flight`` slots; when they are all taken it
  waits for one, in order (at most ``max_waiting`` frames and ``MAX_WAITING_BYTES`` of them);
  past that its requests are answered at once with error 429, ``Too many requests in flight``;
* a request for an *urgent* method (declared ``urgent=True``: ``printer.emergency_stop``,
  ``printer.restart``, ``printer.firmware_restart``) starts at once, also inside a batch whose
  other requests wait; at most ``max_urgent`` of them run at a time, more are answered 429.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from .. import rpc
from ..bus import Bus, Notify
from ..domain.auth import Authenticator, Credentials, User, credentials_from
from ..errors import ApiError
from ..registry import Registry, Transport
from . import jsonrpc
from .outbox import Outbox

log = logging.getLogger(__name__)

ASGIMessage = dict[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]

#: Close codes (RFC 6455).
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_RESTART = 1012

#: Seconds a closing connection may take to send what was queued before it.
FLUSH_TIMEOUT = 1.0

#: The most frame text (characters) waiting for a slot on one connection; one frame may
#: always wait.
MAX_WAITING_BYTES = 8 * 1024 * 1024
#: The error code of a request refused because its connection has too many in flight.
TOO_MANY = 429


class _Kind(enum.Enum):
    DONE = enum.auto()  # answered without dispatch (malformed, refused)
    URGENT = enum.auto()  # started at once
    ORDINARY = enum.auto()  # started once the frame has a slot


class _Admission:
    """One connection's bounds on the requests it runs (see the module docstring)."""

    def __init__(self, max_in_flight: int, max_waiting: int, max_urgent: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self.max_urgent = max_urgent
        self.running = 0
        self.urgent = 0
        self._waiting: deque[tuple[trio.Event, int]] = deque()
        self._waiting_bytes = 0

    def take(self, size: int) -> trio.Event | bool:
        """A slot for a frame of ``size`` characters: True (run now), an event to wait for (the
        slot is handed over when it is set), or False (refused)."""
        if self.running < self.max_in_flight:
            self.running += 1
            return True
        if len(self._waiting) >= self.max_waiting or (
            self._waiting and self._waiting_bytes + size > MAX_WAITING_BYTES
        ):
            return False
        event = trio.Event()
        self._waiting.append((event, size))
        self._waiting_bytes += size
        return event

    def release(self) -> None:
        """A frame with a slot is done: hand the slot to the first waiting frame."""
        if self._waiting:
            event, size = self._waiting.popleft()
            self._waiting_bytes -= size
            event.set()
        else:
            self.running -= 1

    def abandon(self, event: trio.Event) -> None:
        """A waiting frame is cancelled: give up its place, or the slot it was just handed."""
        for i, (waiting, size) in enumerate(self._waiting):
            if waiting is event:
                del self._waiting[i]
                self._waiting_bytes -= size
                return
        if event.is_set():
            self.release()


class WebsocketConnection:
    """One client connection: its identity and its bounded outgoing queue."""

    def __init__(self, manager: WebsocketManager, remote: str | None, queue_size: int) -> None:
        self._manager = manager
        # Moonraker's ids are large positive integers; clients only compare them.
        self.connection_id: int = random.getrandbits(47) | (1 << 46)
        self.remote = remote
        self.client_info: Mapping[str, Any] | None = None
        #: Who the connection is authenticated as: at connect (a token, the API key header, a
        #: trusted address), by ``server.connection.identify`` or ``access.login``.
        self.user: User | None = None
        #: Asked for one frame whenever the queue is empty (the status fan-out's coalesced
        #: ``notify_status_update``); see :meth:`wake`.
        self.idle_source: Callable[[], str | None] | None = None
        self._outbox: Outbox[str] = Outbox(queue_size, idle=self._idle_frame)
        self._scope: trio.CancelScope | None = None
        self.close_code = CLOSE_GOING_AWAY
        self.close_reason = ""
        #: Requests this server sent the client (an agent), by id, waiting for its reply.
        self._pending: dict[int, _PendingCall] = {}
        self._next_call_id = 1
        self.ended = False

    # -- the Connection protocol (see registry.Connection) --

    def identify(self, info: Mapping[str, Any]) -> None:
        if self.client_info is not None:
            raise ApiError(f"Connection already identified as {self.client_info.get('name')}")
        self.client_info = dict(info)

    def send_notification(self, method: str, params: list[Any] | None = None) -> None:
        if self.authenticated and (text := _encode_notification(method, params)) is not None:
            self.send_text(text)

    def call_method(self, method: str, params: Any = None) -> None:
        """Send the client a notification of its own method (a remote method klippy called)."""
        self.send_text(rpc.dumps(rpc.request(None, method, params)))

    async def call_method_with_response(self, method: str, params: Any = None) -> Any:
        """Send the client a request and wait for its reply (``server.extensions.request``).

        An error reply is a 424 carrying the client's error as ``data``; a connection that
        ends first fails the call with a 500, as Moonraker."""
        if self.ended:
            raise ApiError("Client Socket Disconnected", 500)
        call_id = self._next_call_id
        self._next_call_id += 1
        pending = _PendingCall()
        self._pending[call_id] = pending
        try:
            self.send_text(rpc.dumps(rpc.request(call_id, method, params)))
            await pending.done.wait()
        finally:
            self._pending.pop(call_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def resolve_reply(self, reply: rpc.Reply) -> None:
        """The client answered one of our requests (a reply to nothing waiting is dropped)."""
        pending = self._pending.get(reply.id) if isinstance(reply.id, int) else None
        if pending is None:
            log.debug("websocket %d: reply to unknown id %r", self.connection_id, reply.id)
            return
        if reply.failed:
            name = (self.client_info or {}).get("name", "unknown")
            pending.finish(error=ApiError(f"Agent {name} RPC error", 424, reply.error))
        else:
            pending.finish(result=reply.result)

    def _end(self) -> None:
        """The connection is gone: every request still waiting for the client fails."""
        self.ended = True
        pending, self._pending = self._pending, {}
        for call in pending.values():
            call.finish(error=ApiError("Client Socket Disconnected", 500))

    @property
    def authenticated(self) -> bool:
        """Whether notifications may go to this client: as in Moonraker, a connection that
        has not authenticated gets none (no status, no G-code responses) until it does."""
        return self.user is not None or self._manager.authenticator is None

    # -- queue --

    def send_text(self, text: str) -> None:
        """Queue a frame; a full queue disconnects this client (never blocks the caller)."""
        if not self._outbox.put(text) and not self._outbox.closed:
            self.close(CLOSE_POLICY, "outgoing queue full: client too slow")

    def wake(self) -> None:
        """The idle source has a frame: the writer asks for it once the queue is empty."""
        self._outbox.wake()

    def _idle_frame(self) -> str | None:
        if self.idle_source is None or not self.authenticated:
            return None
        return self.idle_source()

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Disconnect this client (safe to call from any task, any number of times).

        With ``flush``, what is already queued is sent first (within ``FLUSH_TIMEOUT``).
        """
        if self._scope is None or self.close_reason:
            return
        self.close_code, self.close_reason = code, reason
        if code not in (CLOSE_GOING_AWAY, CLOSE_RESTART):
            log.warning(
                "websocket %d (%s): disconnecting: %s", self.connection_id, self.remote, reason
            )
        if flush:
            self._outbox.close()  # the writer sends what is queued, then ends the connection
            self._scope.deadline = min(self._scope.deadline, trio.current_time() + FLUSH_TIMEOUT)
        else:
            self._scope.cancel()


class _PendingCall:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: ApiError | None = None

    def finish(self, result: Any = None, error: ApiError | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class WebsocketManager:
    """All websocket connections of one server instance, and the notification fan-out."""

    def __init__(
        self,
        registry: Registry,
        bus: Bus,
        *,
        max_connections: int = 50,
        queue_size: int = 512,
        max_in_flight: int = 32,
        max_waiting: int = 256,
        max_urgent: int = 8,
        authenticator: Authenticator | None = None,
    ) -> None:
        self._registry = registry
        #: Checks every connection and call (None: everything is served, as in unit tests).
        self.authenticator = authenticator
        self._bus = bus
        self._max_connections = max_connections
        self._queue_size = queue_size
        self._max_in_flight = max_in_flight
        self._max_waiting = max_waiting
        self._max_urgent = max_urgent
        self._connections: dict[int, WebsocketConnection] = {}
        self._closing = False
        self._close_listeners: list[Callable[[WebsocketConnection], None]] = []
        self._open_listeners: list[Callable[[WebsocketConnection], None]] = []
        self._broadcast_listeners: list[Callable[[str, list[Any] | None], None]] = []

    @property
    def count(self) -> int:
        return len(self._connections)

    def connections(self) -> list[WebsocketConnection]:
        return list(self._connections.values())

    def get(self, connection_id: int) -> WebsocketConnection | None:
        return self._connections.get(connection_id)

    def add_close_listener(self, listener: Callable[[WebsocketConnection], None]) -> None:
        """Call ``listener(connection)`` when any connection ends (it must not block)."""
        self._close_listeners.append(listener)

    def add_open_listener(self, listener: Callable[[WebsocketConnection], None]) -> None:
        """Call ``listener(connection)`` when a connection is accepted (it must not block)."""
        self._open_listeners.append(listener)

    def add_broadcast_listener(self, listener: Callable[[str, list[Any] | None], None]) -> None:
        """Call ``listener(method, params)`` for every notification broadcast to the clients
        (the MQTT notification topic); it must not block."""
        self._broadcast_listeners.append(listener)

    def broadcast(
        self, method: str, params: list[Any] | None = None, *, exclude: int | None = None
    ) -> None:
        """Send one notification to every client (but ``exclude``), encoding it once."""
        for listener in self._broadcast_listeners:
            try:
                listener(method, params)
            except Exception:
                log.exception("broadcast listener failed")
        if not self._connections:
            return
        text = _encode_notification(method, params)
        if text is None:
            return
        for conn in list(self._connections.values()):
            if conn.authenticated and conn.connection_id != exclude:
                conn.send_text(text)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every connection after sending what is queued for it; refuse new ones."""
        self._closing = True
        for conn in list(self._connections.values()):
            conn.close(code, reason, flush=True)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward :class:`Notify` events from the bus to every client."""
        with self._bus.subscribe(Notify, capacity=4096, name="websocket notifications") as events:
            task_status.started()
            async for event in events:
                assert isinstance(event, Notify)
                self.broadcast(event.method, None if event.params is None else list(event.params))

    # -- the ASGI application for one connection --

    async def serve(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        first = await receive()
        if first.get("type") != "websocket.connect":
            return
        client = scope.get("client")
        remote = client[0] if client else None
        if self._closing:
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})
            return
        if len(self._connections) >= self._max_connections:
            log.warning("websocket from %s refused: %d connections open", remote, self.count)
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})
            return
        await send({"type": "websocket.accept"})
        conn = WebsocketConnection(self, remote, self._queue_size)
        if self.authenticator is not None:
            # no valid credentials still connects: methods with auth=False (identify, login)
            # work, the others answer 401 until the connection authenticates
            conn.user = self.authenticator.authenticate(
                _connect_credentials(scope, remote), required=False
            )
        self._connections[conn.connection_id] = conn
        log.debug("websocket %d opened from %s", conn.connection_id, remote)
        for listener in self._open_listeners:
            try:
                listener(conn)
            except Exception:
                log.exception("websocket open listener failed")
        try:
            async with trio.open_nursery() as nursery:
                conn._scope = nursery.cancel_scope
                nursery.start_soon(self._writer, conn, send)
                await self._reader(conn, receive, nursery)
                nursery.cancel_scope.cancel()
        finally:
            del self._connections[conn.connection_id]
            conn.idle_source = None
            conn._end()
            for listener in self._close_listeners:
                try:
                    listener(conn)
                except Exception:
                    log.exception("websocket close listener failed")
            log.debug("websocket %d closed", conn.connection_id)
        if conn.close_reason:
            with trio.move_on_after(FLUSH_TIMEOUT) as cleanup:
                cleanup.shield = True
                # the peer may be gone already: then there is nothing more to do
                with contextlib.suppress(Exception):
                    await send(
                        {
                            "type": "websocket.close",
                            "code": conn.close_code,
                            "reason": conn.close_reason[:120],
                        }
                    )

    async def _writer(self, conn: WebsocketConnection, send: Send) -> None:
        while (text := await conn._outbox.get()) is not None:
            await send({"type": "websocket.send", "text": text})
        # the queue was closed (close with flush) and everything in it is sent
        if conn._scope is not None:
            conn._scope.cancel()

    async def _reader(
        self, conn: WebsocketConnection, receive: Receive, nursery: trio.Nursery
    ) -> None:
        admission = _Admission(self._max_in_flight, self._max_waiting, self._max_urgent)
        while True:
            msg = await receive()
            kind = msg.get("type")
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            data = msg.get("text")
            if data is None:
                data = msg.get("bytes") or b""
            self._admit(conn, rpc.parse(data), len(data), admission, nursery)

    def _admit(
        self,
        conn: WebsocketConnection,
        message: rpc.Message,
        size: int,
        admission: _Admission,
        nursery: trio.Nursery,
    ) -> None:
        """Start (or queue, or refuse) the requests of one frame, without ever blocking."""
        kinds: list[_Kind] = []
        replies: list[str | None] = []
        for entry in message.entries:
            reply: str | None = None
            if isinstance(entry, rpc.Invalid):
                kinds.append(_Kind.DONE)
                reply = None if entry.reply is None else rpc.dumps(entry.reply)
            elif isinstance(entry, rpc.Reply):  # an answer to a request of ours: at once
                kinds.append(_Kind.DONE)
                conn.resolve_reply(entry)
            elif (ep := self._registry.by_rpc(entry.method)) is not None and ep.urgent:
                if admission.urgent < admission.max_urgent:
                    admission.urgent += 1
                    kinds.append(_Kind.URGENT)
                else:
                    kinds.append(_Kind.DONE)
                    reply = _refusal(entry, f"{admission.max_urgent} urgent requests")
            else:
                kinds.append(_Kind.ORDINARY)
            replies.append(reply)
        gate: trio.Event | bool = False
        if _Kind.ORDINARY in kinds:
            gate = admission.take(size)
            if gate is False:
                for i, entry in enumerate(message.entries):
                    if kinds[i] is _Kind.ORDINARY:
                        assert isinstance(entry, rpc.Request)
                        kinds[i] = _Kind.DONE
                        replies[i] = _refusal(entry, f"{admission.max_in_flight} requests")
        if _Kind.URGENT in kinds or _Kind.ORDINARY in kinds:
            nursery.start_soon(self._answer, conn, message, kinds, replies, admission, gate)
        else:
            self._send_replies(conn, message, replies)

    async def _answer(
        self,
        conn: WebsocketConnection,
        message: rpc.Message,
        kinds: list[_Kind],
        replies: list[str | None],
        admission: _Admission,
        gate: trio.Event | bool,
    ) -> None:
        """Run one frame's requests: urgent ones at once, ordinary ones once it has a slot."""
        holds_slot = gate is True

        async def one(i: int, entry: rpc.Entry) -> None:
            try:
                replies[i] = await jsonrpc.answer_entry(self._registry, entry, self._caller(conn))
                if not message.batch:
                    self._send_replies(conn, message, replies)
            finally:
                if kinds[i] is _Kind.URGENT:
                    admission.urgent -= 1

        try:
            async with trio.open_nursery() as tasks:
                for i, entry in enumerate(message.entries):
                    if kinds[i] is _Kind.URGENT:
                        tasks.start_soon(one, i, entry)
                if isinstance(gate, trio.Event):
                    try:
                        await gate.wait()
                    except BaseException:
                        admission.abandon(gate)
                        raise
                    holds_slot = True
                for i, entry in enumerate(message.entries):
                    if kinds[i] is _Kind.ORDINARY:
                        tasks.start_soon(one, i, entry)
        finally:
            if holds_slot:
                admission.release()
        if message.batch:
            self._send_replies(conn, message, replies)

    @staticmethod
    def _send_replies(
        conn: WebsocketConnection, message: rpc.Message, replies: list[str | None]
    ) -> None:
        owed = [r for r in replies if r is not None]
        if not owed:
            return
        conn.send_text("[" + ",".join(owed) + "]" if message.batch else owed[0])

    def _caller(self, conn: WebsocketConnection) -> jsonrpc.Caller:
        return jsonrpc.Caller(
            Transport.WEBSOCKET,
            remote=conn.remote,
            connection=conn,
            require_user=self.authenticator is not None,
            on_reply=conn.resolve_reply,
        )


def _encode_notification(method: str, params: list[Any] | None) -> str | None:
    """A notification's frame; None (logged) for one that is not JSON (a NaN, an object)."""
    try:
        return rpc.dumps(rpc.notification(method, params))
    except (TypeError, ValueError) as exc:
        log.error("notification %s not sent: it cannot be encoded as JSON: %s", method, exc)
        return None


def _refusal(entry: rpc.Request, limit: str) -> str | None:
    """The answer to a request refused for the connection's bound (None for a notification)."""
    if entry.is_notification:
        return None
    message = f"Too many requests in flight on this connection (at most {limit})"
    return rpc.dumps(rpc.error(entry.id, TOO_MANY, message))


def _connect_credentials(scope: Mapping[str, Any], remote: str | None) -> Credentials:
    """The credentials of a websocket handshake (``?token=``, ``?access_token=``, headers)."""
    headers = {
        bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
        for k, v in scope.get("headers") or ()
    }
    query_string = scope.get("query_string") or b""
    query = dict(urllib.parse.parse_qsl(bytes(query_string).decode("latin-1")))
    return credentials_from(remote, headers, query)
