"""OctoPrint's events: published on the bus, pushed to websocket clients, kept in a ring.

::

    OctoPrintEvents.run (one bus subscriber, so every input is handled in the order it happened)
    ├─ KlippyStateChanged, KlippyStatus (its internal status subscription), GcodeCommand,
    │  FileChanged, FileUploaded -> OctoPrintMapper (pure: domain/octoprint_mapping.py)
    │  -> OctoPrintEvents published on the bus (event hooks subscribe to them there)
    └─ every OctoPrintEvent on the bus (the mapper's, the metadata component's, the websocket
       open/close listeners', Startup/SettingsUpdated/Shutdown) -> the ring of recent events
       (``server.events.list``) and ``notify_octoprint_event`` to every websocket client

The notification is ``{"jsonrpc": "2.0", "method": "notify_octoprint_event", "params":
[{"event": "PrintStarted", "payload": {...}}]}``; clients that do not know it ignore it, as
they ignore any notification they do not handle. See ``docs/octoprint-events.md``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..bus import Bus, Event, OctoPrintEvent
from ..domain import octoprint_events as ev
from ..domain.octoprint_mapping import STATUS_SPEC, EventLog, OctoPrintMapper
from ..domain.status import Status
from ..errors import ApiError
from ..registry import Call, endpoint
from .files.roots import FileChanged
from .klippy import GcodeCommand, Klippy, KlippyStateChanged
from .uploads import FileUploaded

if TYPE_CHECKING:
    from ..transport.websocket import WebsocketConnection, WebsocketManager

log = logging.getLogger(__name__)

#: The websocket notification that carries each event.
NOTIFICATION = "notify_octoprint_event"
#: How many recent events ``server.events.list`` keeps.
RING_SIZE = 500


@attrs.frozen
class KlippyStatus(Event):
    """A diff of the status objects the OctoPrint mapper follows (through the bus, so that it
    is handled in order with klippy's state changes)."""

    diff: Status


@attrs.frozen
class EventsListParams:
    count: int | None = None
    #: only these events (OctoPrint names, comma separated); all when empty
    event: str = ""


class OctoPrintEvents:
    name = "octoprint_events"

    def __init__(
        self,
        bus: Bus,
        klippy: Klippy,
        websockets: WebsocketManager,
        *,
        gcodes_path: str = "",
        restarted: bool = False,
        ring_size: int = RING_SIZE,
    ) -> None:
        self._bus = bus
        self._klippy = klippy
        self._websockets = websockets
        self._restarted = restarted
        self.mapper = OctoPrintMapper(port=klippy.address, gcodes_path=gcodes_path)
        self.log = EventLog(ring_size)
        klippy.set_internal_subscription("octoprint_events", dict(STATUS_SPEC), self._on_status)
        websockets.add_open_listener(self._opened)
        websockets.add_close_listener(self._closed)

    def _on_status(self, diff: Status, eventtime: float) -> None:
        self._bus.publish(KlippyStatus(diff))

    def _opened(self, conn: WebsocketConnection) -> None:
        self._bus.publish(ev.ClientOpened(conn.remote))

    def _closed(self, conn: WebsocketConnection) -> None:
        self._bus.publish(ev.ClientClosed(conn.remote))

    def _map(self, event: Event) -> list[OctoPrintEvent]:
        mapper = self.mapper
        if isinstance(event, KlippyStatus):
            return mapper.status(event.diff)
        if isinstance(event, KlippyStateChanged):
            return mapper.klippy(event.state, event.message, self._klippy.info)
        if isinstance(event, GcodeCommand):
            return mapper.command(event.script)
        if isinstance(event, FileChanged):
            return mapper.file_changed(
                event.action, event.root, event.path, event.source_root, event.source_path
            )
        if isinstance(event, FileUploaded):
            return mapper.uploaded(
                event.root,
                event.path,
                select=event.select,
                print_=event.print,
                effective_select=event.effective_select,
                effective_print=event.effective_print,
            )
        return []

    def _catch_up(self) -> list[OctoPrintEvent]:
        """The link may have reached klippy before this subscriber was there: start the mapper
        from where the link is (what comes later is in the subscription, in order)."""
        klippy = self._klippy
        if klippy.state == "disconnected":
            return []
        out = self.mapper.klippy("startup")
        out += self.mapper.status(klippy.cache.get(dict(STATUS_SPEC)))
        if klippy.state != "startup":
            out += self.mapper.klippy(klippy.state, klippy.state_message, klippy.info)
        return out

    def _deliver(self, event: OctoPrintEvent) -> None:
        entry = self.log.add(event, time.time())
        self._websockets.broadcast(
            NOTIFICATION, [{"event": entry["event"], "payload": entry["payload"]}]
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        inputs = (
            OctoPrintEvent,
            KlippyStatus,
            KlippyStateChanged,
            GcodeCommand,
            FileChanged,
            FileUploaded,
        )
        try:
            with self._bus.subscribe(*inputs, capacity=4096, name="octoprint events") as events:
                self._bus.publish(ev.Startup())
                if self._restarted:
                    self._bus.publish(ev.SettingsUpdated())
                for out in self._catch_up():
                    self._bus.publish(out)
                task_status.started()
                async for event in events:
                    if isinstance(event, OctoPrintEvent):
                        self._deliver(event)
                        continue
                    try:
                        produced = self._map(event)
                    except Exception:
                        log.exception("octoprint events: cannot map %r", event)
                        continue
                    for out in produced:
                        self._bus.publish(out)
        finally:
            # the websockets are closed by now; event hooks may still hear it
            self._bus.publish(ev.Shutdown())

    @endpoint("/server/events/list", "GET", params=EventsListParams)
    async def events_list(self, call: Call[EventsListParams]) -> dict[str, Any]:
        count = call.params.count
        if count is not None and count < 0:
            raise ApiError(f"invalid argument 'count': expected a count of 0 or more, got {count}")
        names = frozenset(n.strip() for n in call.params.event.split(",") if n.strip())
        names = frozenset(ev.ALIASES.get(n, n) for n in names)
        unknown = sorted(n for n in names if n not in ev.EVENTS)
        if unknown:
            raise ApiError(f"invalid argument 'event': unknown event(s) {', '.join(unknown)}")
        return {"events": self.log.get(count or None, names)}
