"""The printer link to klippy: connection lifecycle, state, and the status subscription fan-out.

::

    Klippy.run (started at once: the API is up while the printer is off)
    └─ reconnect loop: connect every 0.25 s until klippy's socket answers
       └─ per connection (a nursery):
          ├─ KlippySession.run: reader + writer (transport/klippy.py)
          └─ initialization: ``info`` (identifies trioprint) polled until klippy leaves
             ``startup``; ``objects/list``; ``objects/subscribe`` with the merged subscription
             (webhooks and heaters, internal consumers
             and every client's objects); ``gcode/subscribe_output``; remote methods when
             ready; then ``notify_klippy_ready`` (or ``notify_klippy_shutdown``)

Klippy sends nothing while idle: silence is not a dead link, only EOF or an error is. When the
connection drops (klippy restarting, FIRMWARE_RESTART, a crash) every waiting request fails
with 503, clients hear ``notify_klippy_disconnected``, and the loop reconnects. Client
subscriptions are kept across the drop: the first subscribe on the new connection covers them
all again and every client is sent its full snapshot as a status update.

Status fan-out (the pure logic is :mod:`trioprint.domain.status`): one klippy subscription, the
union of what everyone asked for; a full cache of it; each websocket client gets exactly its
objects and fields as ``notify_status_update [diff, eventtime]``, coalesced while it cannot keep
up (its writer asks for the pending diff only when its queue is empty). Internal consumers
(the temperature store, later history) are subscribers too, with callbacks instead of sockets.

Queries from the cache (:mod:`trioprint.domain.query_cache`): ``printer.objects.query`` is
answered at once from the cache, with klippy's last eventtime, when klippy is ready, the live
subscription covers every requested object and field, and klippy has pushed a status since the
last state-changing request was answered; otherwise it is forwarded (klippy answers queries on
its 250 ms tick).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .. import rpc
from .._version import __version__
from ..bus import Bus, Event
from ..domain.klippy import Notification
from ..domain.query_cache import READ_ONLY_METHODS, Freshness, cached_query
from ..domain.status import (
    ClientView,
    ObjectSpec,
    Status,
    StatusCache,
    Subscriptions,
)
from ..errors import ApiError
from ..transport.klippy import (
    Connect,
    KlippyDisconnected,
    KlippySession,
    side_emergency_stop,
)

if TYPE_CHECKING:
    from ..transport.websocket import WebsocketConnection, WebsocketManager

log = logging.getLogger(__name__)

#: Seconds between connection attempts, and between ``info`` polls while klippy starts up.
RETRY_INTERVAL = 0.25
#: Moonraker's response templates (klippy names its pushes after them).
STATUS_METHOD = "process_status_update"
GCODE_METHOD = "process_gcode_response"

KLIPPY_STATES = ("disconnected", "startup", "ready", "shutdown", "error")


@attrs.frozen
class KlippyStateChanged(Event):
    """Klippy's state changed: ``startup``, ``ready``, ``shutdown``, ``error``, ``disconnected``."""

    state: str
    message: str
    previous: str


@attrs.frozen
class GcodeResponse(Event):
    """One output message of klippy's G-code processor."""

    message: str


@attrs.frozen
class GcodeCommand(Event):
    """A G-code script sent to klippy through the API."""

    script: str


#: Internal subscribers are keyed apart from websocket connection ids (which are ints).
InternalKey = tuple[str, str]
StatusCallback = Callable[[Status, float], None]


class Klippy:
    """The klippy link component (Moonraker's ``klippy_connection``)."""

    name = "klippy_connection"

    def __init__(
        self,
        bus: Bus,
        websockets: WebsocketManager,
        connect: Connect,
        *,
        address: str = "",
    ) -> None:
        self._bus = bus
        self._websockets = websockets
        self._connect = connect
        self.address = address
        self.session: KlippySession | None = None
        self.state = "disconnected"
        self.state_message = "Klippy Disconnected"
        self.info: dict[str, Any] = {}
        self.objects: list[str] = []
        self.cache = StatusCache()
        self._subs: Subscriptions[Hashable] = Subscriptions()
        self._internal: dict[InternalKey, StatusCallback] = {}
        self._subscribed: ObjectSpec | None = None  # what klippy has now (None: nothing)
        self._freshness = Freshness()
        #: ``objects/query`` requests answered from the cache (never reaching klippy).
        self.cached_queries = 0
        self._subscribe_lock = trio.Lock()
        self._remote_methods: dict[str, Callable[..., Any]] = {}
        #: The session the remote methods were registered on (klippy keeps them per client).
        self._methods_session: KlippySession | None = None
        self._ready_hooks: list[Callable[[], Awaitable[None]]] = []
        self._endpoint_listeners: list[Callable[[list[Any]], object]] = []
        self._ready = trio.Event()
        self._gcode_listeners: list[Callable[[str, str], None]] = []
        websockets.add_close_listener(self._connection_closed)

    # -- what other components use --------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.session is not None and not self.session.closed

    def register_remote_method(self, name: str, callback: Callable[..., Any]) -> None:
        """Klippy may call ``name`` (e.g. from a macro's ``action_call_remote_method``)."""
        self._remote_methods[name] = callback

    async def register_agent_method(self, name: str, callback: Callable[..., Any]) -> None:
        """An agent's remote method (``connection.register_remote_method``): registered with
        klippy now if its methods are already registered on this connection, else at the next
        ready. A name already taken is refused."""
        if name in self._remote_methods or name in (STATUS_METHOD, GCODE_METHOD):
            raise ApiError(f"Remote method ({name}) already registered")
        self._remote_methods[name] = callback
        session = self.session
        if session is None or session.closed or session is not self._methods_session:
            return
        try:
            await self._register_with_klippy(session, name)
        except ApiError as exc:
            log.warning("klippy refused remote method %s: %s", name, exc.message)

    def unregister_remote_method(self, name: str) -> None:
        """Klippy's calls of ``name`` are dropped from now on (klippy cannot forget it)."""
        self._remote_methods.pop(name, None)

    async def _list_endpoints(self, session: KlippySession) -> None:
        try:
            result = await session.request("list_endpoints", {})
        except KlippyDisconnected:
            raise
        except ApiError as exc:  # an old klippy: only the endpoints trioprint declares
            log.info("klippy did not list its endpoints: %s", exc.message)
            return
        endpoints = result.get("endpoints") if isinstance(result, dict) else None
        if not isinstance(endpoints, list):
            return
        for listener in self._endpoint_listeners:
            try:
                listener(endpoints)
            except Exception:
                log.exception("klippy endpoint listener failed")

    async def _register_with_klippy(self, session: KlippySession, name: str) -> None:
        await session.request(
            "register_remote_method",
            {"response_template": {"method": name}, "remote_method": name},
        )

    def on_endpoints(self, listener: Callable[[list[Any]], object]) -> None:
        """``listener(endpoints)`` with klippy's ``list_endpoints`` on each connection, once
        klippy has started (see :mod:`trioprint.components.klippy_endpoints`)."""
        self._endpoint_listeners.append(listener)

    def on_ready(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` each time klippy becomes ready (after the subscription is in place)."""
        self._ready_hooks.append(hook)

    @property
    def heaters(self) -> Mapping[str, Any]:
        """Klippy's ``heaters`` object (``available_heaters``, ``available_sensors``,
        ``available_monitors``), always subscribed: current once ready hooks run."""
        heaters = self.cache.state.get("heaters")
        return heaters if isinstance(heaters, Mapping) else {}

    def on_gcode(self, listener: Callable[[str, str], None]) -> None:
        """``listener(kind, message)`` for every command sent and response line received."""
        self._gcode_listeners.append(listener)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One klippy request; 503 when the link is down, 400 with klippy's message on error."""
        session = self.session
        if session is None or session.closed:
            raise KlippyDisconnected("Klippy Host not connected")
        if method in READ_ONLY_METHODS:
            return await session.request(method, params)
        try:
            return await session.request(method, params)
        finally:
            self._freshness.wrote()  # the cache may predate this until klippy's next push

    def cached_query(self, spec: ObjectSpec) -> dict[str, Any] | None:
        """``objects/query``'s answer from the cache, if the live subscription covers ``spec``
        and the cache is confirmed after every write (see :mod:`trioprint.domain.query_cache`);
        ``None``: ask klippy."""
        if self.state != "ready" or not self.connected or not self._freshness.fresh:
            return None
        status = cached_query(self._subscribed, self.cache.state, spec)
        if status is None:
            return None
        self.cached_queries += 1
        return {"eventtime": self.cache.eventtime, "status": status}

    async def query(self, spec: ObjectSpec) -> Any:
        """``objects/query``: from the cache when it covers ``spec``, else from klippy."""
        cached = self.cached_query(spec)
        if cached is not None:
            return cached
        return await self.request("objects/query", {"objects": spec})

    async def run_gcode(self, script: str) -> Any:
        for listener in self._gcode_listeners:
            listener("command", script)
        self._bus.publish(GcodeCommand(script))
        return await self.request("gcode/script", {"script": script})

    async def emergency_stop(self) -> Any:
        """Stop the printer now: ahead of every queued request, on a second connection if the
        link is busy or down. Every request still waiting fails afterwards."""
        session = self.session
        self._freshness.wrote()
        if session is not None and not session.closed:
            try:
                return await session.emergency_stop()
            finally:
                self._freshness.wrote()
        with trio.move_on_after(2.0):
            result = await side_emergency_stop(self._connect)
            if result is not None:
                return result
        raise KlippyDisconnected("Klippy Host not connected: emergency stop not delivered")

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def websocket(self, connection_id: int) -> WebsocketConnection | None:
        return self._websockets.get(connection_id)

    # -- subscriptions --------------------------------------------------------------------

    def set_internal_subscription(
        self, name: str, spec: ObjectSpec, callback: StatusCallback
    ) -> None:
        """An internal consumer's objects; ``callback(diff, eventtime)`` gets its changes.

        Takes effect with the next klippy subscribe (call :meth:`resubscribe` to force one).
        """
        key: InternalKey = ("internal", name)
        self._internal[key] = callback
        self._subs.set(key, spec)

    async def subscribe(self, conn: WebsocketConnection, spec: ObjectSpec) -> dict[str, Any]:
        """A client's ``printer.objects.subscribe``: its snapshot; an empty spec unsubscribes."""
        cid = conn.connection_id
        if not spec:
            self._subs.remove(cid)
            conn.idle_source = None
            return {"eventtime": self.cache.eventtime, "status": {}}
        self._subs.set(cid, spec)
        if conn.idle_source is None:
            conn.idle_source = lambda: self._take_status(cid)
        await self.resubscribe()
        view = self._subs.get(cid)
        if view is None:  # the connection closed meanwhile
            return {"eventtime": self.cache.eventtime, "status": {}}
        view.clear()  # the snapshot holds everything pending so far
        return {"eventtime": self.cache.eventtime, "status": self.cache.get(view.spec)}

    async def resubscribe(self) -> None:
        """Make klippy's subscription the merged one, if it is not already."""
        async with self._subscribe_lock:
            merged = self._subs.merged()
            if merged == self._subscribed:
                return
            mark = self._freshness.mark()
            result = await self.request(
                "objects/subscribe",
                {"objects": merged, "response_template": {"method": STATUS_METHOD}},
            )
            self._subscribed = merged
            eventtime = float(result.get("eventtime", 0.0))
            status = result.get("status") or {}
            fresh = len(self.cache) == 0
            diff = self.cache.replace(status, eventtime)
            self._freshness.refreshed(mark)
            # Everyone hears what changed between the last update and this full result; on a
            # new connection (after a klippy restart) that is everything: each subscriber's
            # full snapshot.
            self._offer(status if fresh else diff, eventtime)

    def _offer(self, diff: Status, eventtime: float) -> None:
        if not diff:
            return
        for key in self._subs.offer(diff, eventtime):
            if isinstance(key, tuple):
                callback = self._internal.get(key)
                view = self._subs.get(key)
                taken = view.take() if view is not None else None
                if callback is not None and taken is not None:
                    try:
                        callback(*taken)
                    except Exception:
                        log.exception("status consumer %s failed", key[1])
            elif isinstance(key, int):
                conn = self._websockets.get(key)
                if conn is not None:
                    conn.wake()

    def _take_status(self, cid: int) -> str | None:
        view: ClientView | None = self._subs.get(cid)
        if view is None:
            return None
        frame = view.take_frame()
        if frame is None:
            return None
        if frame.text is None:  # the first client of its group to take it encodes it
            try:
                frame.text = rpc.dumps(
                    rpc.notification("notify_status_update", [frame.status, frame.eventtime])
                )
            except (TypeError, ValueError) as exc:  # never expected: klippy's NaN arrive as null
                log.error("status update not sent: it cannot be encoded as JSON: %s", exc)
                return None
        return frame.text

    def _connection_closed(self, conn: WebsocketConnection) -> None:
        self._subs.remove(conn.connection_id)

    # -- klippy's pushes -------------------------------------------------------------------

    def _on_notification(self, note: Notification) -> None:
        params = note.params if isinstance(note.params, dict) else {}
        if note.method == STATUS_METHOD:
            status = params.get("status")
            if isinstance(status, dict):
                eventtime = float(params.get("eventtime", self.cache.eventtime))
                self.cache.update(status, eventtime)
                self._freshness.pushed()
                webhooks = status.get("webhooks")
                if isinstance(webhooks, dict):
                    self._webhooks_changed(webhooks)
                self._offer(status, eventtime)
        elif note.method == GCODE_METHOD:
            response = params.get("response")
            if isinstance(response, str):
                for listener in self._gcode_listeners:
                    listener("response", response)
                self._bus.publish(GcodeResponse(response))
                # Straight to every websocket, not through the bus: a script's output must
                # reach clients before the script's reply, in the order klippy sent them.
                self._websockets.broadcast("notify_gcode_response", [response])
        elif note.method in self._remote_methods:
            try:
                self._remote_methods[note.method](**params)
            except Exception:
                log.exception("remote method %s failed", note.method)
        else:
            log.debug("klippy: unhandled notification %s", note.method)

    def _webhooks_changed(self, webhooks: dict[str, Any]) -> None:
        message = webhooks.get("state_message")
        if isinstance(message, str):
            self.state_message = message
        state = webhooks.get("state")
        if isinstance(state, str) and state != self.state and self.state != "startup":
            # During initialization the init sequence decides what is announced.
            self._set_state(state)

    def _set_state(self, state: str) -> None:
        previous, self.state = self.state, state
        if state == previous:
            return
        log.info("klippy state: %s (%s)", state, self.state_message)
        self._bus.publish(KlippyStateChanged(state, self.state_message, previous))
        if state == "ready":
            self._ready.set()
        else:
            if self._ready.is_set():
                self._ready = trio.Event()
        if state == "shutdown":
            self._websockets.broadcast("notify_klippy_shutdown")
        elif state == "disconnected":
            self._websockets.broadcast("notify_klippy_disconnected")

    # -- the lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        logged_failure = False
        while True:
            try:
                stream = await self._connect()
            except OSError as exc:
                if not logged_failure:
                    log.info("klippy not reachable at %s (%s); retrying", self.address, exc)
                    logged_failure = True
                await trio.sleep(RETRY_INTERVAL)
                continue
            logged_failure = False
            log.info("klippy connected at %s", self.address)
            async with stream:
                await self._serve(stream)
            await trio.sleep(RETRY_INTERVAL)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        session = KlippySession(stream, self._on_notification, connect=self._connect)
        self.session = session
        self.state_message = "Klippy connected, initializing"
        self._set_state("startup")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._initialize, session)
                await session.run()
                nursery.cancel_scope.cancel()
        finally:
            self.session = None
            self._subscribed = None
            self.cache.clear()
            self.info = {}
            self.state_message = "Klippy Disconnected"
            self._set_state("disconnected")

    async def _initialize(self, session: KlippySession) -> None:
        try:
            client_info = {"program": "trioprint", "version": __version__}
            info = await session.request("info", {"client_info": client_info})
            while info.get("state") == "startup":
                self.info = info
                self.state_message = str(info.get("state_message", ""))
                await trio.sleep(RETRY_INTERVAL)
                info = await session.request("info", {})
            self.info = info
            self.state_message = str(info.get("state_message", ""))
            state = str(info.get("state", "error"))
            if self._endpoint_listeners:
                await self._list_endpoints(session)
            objects = await session.request("objects/list", {})
            self.objects = list(objects.get("objects", []))
            # klippy's state, and which heaters and sensors exist (the temperature store and
            # the OctoPrint emulation read it from the cache when klippy is ready)
            self._subs.set(("internal", "webhooks"), {"webhooks": None, "heaters": None})
            await self.resubscribe()
            await session.request(
                "gcode/subscribe_output", {"response_template": {"method": GCODE_METHOD}}
            )
            webhooks = self.cache.state.get("webhooks", {})
            state = str(webhooks.get("state", state))
            self.state_message = str(webhooks.get("state_message", self.state_message))
            if state == "ready":
                # methods added from now on register themselves (register_agent_method)
                self._methods_session = session
                for method in list(self._remote_methods):
                    await self._register_with_klippy(session, method)
                for hook in self._ready_hooks:
                    await hook()
            self._set_state(state)
            if state == "ready":
                self._websockets.broadcast("notify_klippy_ready")
        except KlippyDisconnected:
            return  # the session ended; the reconnect loop takes over
        except ApiError as exc:
            log.error("klippy initialization failed: %s", exc.message)
            self.state_message = f"Klippy initialization failed: {exc.message}"
            self._set_state("error")


__all__ = ["GcodeCommand", "GcodeResponse", "Klippy", "KlippyStateChanged"]
