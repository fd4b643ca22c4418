"""The base classes of the events on the internal bus (pure: no I/O; the bus is ``bus.py``)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs


@attrs.frozen
class Event:
    """Base class of every event on the bus."""


@attrs.frozen
class OctoPrintEvent(Event):
    """Base of OctoPrint's typed events (``domain/octoprint_events.py`` defines them all).

    ``NAME`` is OctoPrint's event name (``"PrintStarted"``); :meth:`payload` is the documented
    payload (``None`` for events without one). Websocket clients and event hooks consume them.
    """

    NAME: ClassVar[str] = ""

    def payload(self) -> dict[str, Any] | None:
        return attrs.asdict(self, recurse=True) or None
