"""Spoolman's filament accounting (Moonraker 0.11's ``spoolman``), pure.

:class:`UsageTracker` is fed the toolhead's position and extruder (klippy's ``toolhead``
``position``, ``extruder``): whenever the extruder's position reaches past the highest point it
had, the difference is filament used from the active spool (a retraction and its
un-retraction are not counted twice; a change of extruder, or of the active spool, starts from
where the extruder is). The used lengths wait per spool in ``pending`` -- Moonraker's offline
queue -- until the component has reported them to Spoolman (``PUT /api/v1/spool/{id}/use``);
what it could not report it gives back with :meth:`UsageTracker.add`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


class SpoolmanError(ValueError):
    """A bad ``[spoolman]`` option or proxy request (the message names it)."""


def api_url(server: str) -> str:
    """``[spoolman] server`` -> the API's base (``http://host:7912/api``); no scheme: http."""
    match = re.fullmatch(r"(?i:(?P<scheme>https?)://)?(?P<host>[^\s/][^\s]*)", server.strip())
    if match is None:
        raise SpoolmanError(f"[spoolman] option 'server': invalid URL {server!r}")
    scheme = (match["scheme"] or "http").lower()
    return f"{scheme}://{match['host'].rstrip('/')}/api"


def proxy_target(method: str, path: str, query: str | None, body: Any) -> str:
    """The path and query a ``server.spoolman.proxy`` call goes to (below the API's base)."""
    if method not in PROXY_METHODS:
        raise SpoolmanError(f"Invalid HTTP method: {method}")
    if body is not None and method == "GET":
        raise SpoolmanError("GET requests cannot have a body")
    if not path.startswith("/v1/"):
        raise SpoolmanError("Invalid path, must start with the API version, e.g. /v1")
    return path + (f"?{query}" if query is not None else "")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class UsageTracker:
    """The active spool's filament use from the extruder's position; see the module docstring."""

    def __init__(self) -> None:
        self.spool_id: int | None = None
        self.pending: dict[int, float] = {}
        self.extruder = "extruder"
        self._highest: float | None = None  # None: the next position is the baseline
        self._last: float | None = None

    def toolhead(self, status: Mapping[str, Any]) -> None:
        """A ``toolhead`` diff (``position`` and/or ``extruder``)."""
        extruder = status.get("extruder")
        changed = isinstance(extruder, str) and extruder != self.extruder
        if isinstance(extruder, str):
            self.extruder = extruder
        position = status.get("position")
        epos = None
        if isinstance(position, list | tuple) and len(position) >= 4:
            epos = _number(position[3])
        if epos is None:
            if changed:
                self._highest = self._last
            return
        self._last = epos
        if self._highest is None or changed:
            self._highest = epos
        elif epos > self._highest:
            if self.spool_id is not None:
                self.add(self.spool_id, epos - self._highest)
            self._highest = epos

    def reset_baseline(self) -> None:
        """The link was lost: the next position is a new baseline (klippy's may restart)."""
        self._highest = None
        self._last = None

    def set_spool(self, spool_id: int | None) -> bool:
        """A new active spool (counted from where the extruder is); whether it changed."""
        if spool_id == self.spool_id:
            return False
        self.spool_id = spool_id
        self._highest = self._last
        return True

    def add(self, spool_id: int, length: float) -> None:
        self.pending[spool_id] = self.pending.get(spool_id, 0.0) + length

    def take(self) -> dict[int, float]:
        """Everything pending, to report (give back what failed with :meth:`add`)."""
        taken, self.pending = self.pending, {}
        return taken

    def forget(self, spool_id: int) -> None:
        """The spool is gone from Spoolman: its pending use is dropped."""
        self.pending.pop(spool_id, None)

    def status(self) -> list[dict[str, Any]]:
        return [{"spool_id": sid, "filament_used": used} for sid, used in self.pending.items()]
