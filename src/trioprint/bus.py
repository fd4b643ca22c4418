"""The typed internal event bus.

Components publish attrs event objects; subscribers receive them in order through a bounded
memory channel of their own. :meth:`Bus.publish` never blocks and never waits for a subscriber:
when a subscriber's channel is full the event is dropped for that subscriber only, counted, and
logged (a slow subscriber cannot stall the publisher or the other subscribers, and memory stays
bounded).

Websocket notifications are one subscriber (:class:`Notify` events are sent to every client);
OctoPrint's typed events (:class:`OctoPrintEvent`, defined in ``domain/``) feed the event hooks and
the `notify_octoprint_event` notification.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from .domain.events import Event, OctoPrintEvent

__all__ = ["Bus", "Event", "Notify", "OctoPrintEvent", "Subscriber"]

log = logging.getLogger(__name__)


@attrs.frozen
class Notify(Event):
    """A websocket notification for every connected client: ``{"method": ..., "params": ...}``."""

    method: str
    params: tuple[Any, ...] | None = None


@attrs.define(eq=False)
class Subscriber:
    name: str
    types: tuple[type[Event], ...]
    send: trio.MemorySendChannel[Event]
    dropped: int = 0


class Bus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that wants it, without waiting."""
        for sub in self._subscribers:
            if sub.types and not isinstance(event, sub.types):
                continue
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.dropped += 1
                if sub.dropped == 1 or sub.dropped % 1000 == 0:
                    log.warning(
                        "event bus: subscriber %s is not keeping up, %d event(s) dropped",
                        sub.name,
                        sub.dropped,
                    )
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    @contextmanager
    def subscribe(
        self, *types: type[Event], capacity: int = 1024, name: str = "subscriber"
    ) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        """Receive the events of ``types`` (all events when none given) while in the block."""
        send, receive = trio.open_memory_channel[Event](capacity)
        sub = Subscriber(name, types, send)
        self._subscribers.append(sub)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.remove(sub)
            send.close()
