"""The G-code and temperature history rings behind ``server.gcode_store`` and
``server.temperature_store``, without I/O (the caller supplies times and drives the 1 Hz
sampling).

Both follow Moonraker 0.11's observable behaviour:

* G-code store: one entry per ``gcode/script`` request (the whole script, however many lines
  it has, and only if it is not blank) and one per klippy ``gcode_response`` message (whole,
  multi-line responses included, empty ones too). Entries are
  ``{"message": str, "time": float, "type": "command" | "response"}``.
* Temperature store: for every sensor klippy lists in ``heaters.available_sensors`` and
  ``available_monitors``, one ring per field among ``temperature``, ``target``, ``power`` and
  ``speed`` that the sensor's status reports, sampled once a second from the latest status and
  rounded to 2 decimals (``None`` stays ``None``). There is no pre-fill: a ring starts with the
  sensor's first status value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Literal

Status = dict[str, dict[str, Any]]

GcodeKind = Literal["command", "response"]

#: Fields of a sensor's status the temperature store records, and the plural key of each ring
#: in the ``server.temperature_store`` result.
TEMPERATURE_FIELDS: dict[str, str] = {
    "temperature": "temperatures",
    "target": "targets",
    "power": "powers",
    "speed": "speeds",
}


class Ring:
    """The last ``maxlen`` entries (JSON objects), oldest first: the base of the ring stores."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, not {maxlen}")
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)

    @property
    def maxlen(self) -> int:
        assert self._entries.maxlen is not None
        return self._entries.maxlen

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class GcodeStore(Ring):
    """The last ``maxlen`` G-code commands and responses, oldest first."""

    def __init__(self, maxlen: int = 1000) -> None:
        super().__init__(maxlen)

    def add(self, message: str, kind: GcodeKind, time: float) -> bool:
        """Record a command (a whole script) or a response (a whole klippy message).

        A blank command is not recorded (as in Moonraker); returns whether it was.
        """
        if kind not in ("command", "response"):
            raise ValueError(f"kind must be 'command' or 'response', not {kind!r}")
        if kind == "command" and not message.strip():
            return False
        self._entries.append({"message": message, "time": time, "type": kind})
        return True

    def get(self, count: int | None = None) -> list[dict[str, Any]]:
        """The newest ``count`` entries (all if ``None``), oldest first, as new dicts.

        ``count`` is applied as Moonraker applies it, as the slice ``[-count:]``: so ``0`` also
        means all of them, and a negative count drops that many of the *oldest* entries.
        """
        entries = list(self._entries)
        if count is not None:
            entries = entries[-count:]
        return [dict(entry) for entry in entries]


def _round(value: Any) -> float | None:
    """Moonraker's rounding of a sample: 2 decimals; ``None`` (and any non-number) is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(value, 2)


class TemperatureStore:
    """Per-sensor rings of temperature/target/power/speed, ``size`` samples each."""

    def __init__(self, size: int = 1200) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size}")
        self._size = size
        self._rings: dict[str, dict[str, deque[float | None]]] = {}
        self._latest: dict[str, dict[str, float | None]] = {}
        self._monitors: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        return self._size

    def configure(
        self, sensors: Iterable[str], monitors: Iterable[str], initial: Mapping[str, Any]
    ) -> None:
        """(Re)build the tracked set when klippy becomes ready.

        ``sensors`` and ``monitors`` are ``heaters.available_sensors`` and
        ``available_monitors``; ``initial`` is their first status (the subscribe result). Both
        lists are tracked (monitors are only hidden from :meth:`result` by default). As in
        Moonraker, on a reconfigure a sensor that is still there keeps its history, extended by
        its new initial value, and keeps only the fields it still reports; a sensor that is gone
        or reports none of the recorded fields is dropped; a new sensor starts with one sample
        (its initial value).
        """
        monitor_list = list(dict.fromkeys(monitors))
        names = list(dict.fromkeys([*sensors, *monitor_list]))
        rings: dict[str, dict[str, deque[float | None]]] = {}
        latest: dict[str, dict[str, float | None]] = {}
        for name in names:
            status = initial.get(name)
            if not isinstance(status, Mapping):
                status = {}
            reported = [f for f in status if f in TEMPERATURE_FIELDS]
            if not reported:
                continue
            old = self._rings.get(name, {})
            sensor_rings: dict[str, deque[float | None]] = {}
            # surviving rings first (in their original order), then new ones, as Moonraker does
            for field, ring in old.items():
                if field in reported:
                    ring.append(_round(status[field]))
                    sensor_rings[field] = ring
            for field in reported:
                if field not in sensor_rings:
                    sensor_rings[field] = deque([_round(status[field])], maxlen=self._size)
            rings[name] = sensor_rings
            latest[name] = {field: ring[-1] for field, ring in sensor_rings.items()}
        self._rings = rings
        self._latest = latest
        self._monitors = frozenset(monitor_list)

    def update(self, diff: Mapping[str, Mapping[str, Any]]) -> None:
        """Remember the newest values of the tracked sensors' recorded fields in ``diff``."""
        for name, fields in diff.items():
            latest = self._latest.get(name)
            if latest is None:
                continue
            for field, value in fields.items():
                if field in latest:
                    latest[field] = _round(value)

    def sample(self) -> None:
        """Append the latest known value of every tracked field (call once a second).

        A field with no newer value than its last sample repeats it (klippy only reports
        changes, and nothing while disconnected).
        """
        for name, sensor_rings in self._rings.items():
            latest = self._latest[name]
            for field, ring in sensor_rings.items():
                ring.append(latest[field])

    def result(self, include_monitors: bool = False) -> dict[str, dict[str, list[float | None]]]:
        """The ``server.temperature_store`` result: sensor -> ``{"temperatures": [...], ...}``.

        Monitors are left out unless ``include_monitors``.
        """
        return {
            name: {TEMPERATURE_FIELDS[field]: list(ring) for field, ring in sensor_rings.items()}
            for name, sensor_rings in self._rings.items()
            if include_monitors or name not in self._monitors
        }

    def clear(self) -> None:
        """Forget every sensor and its history."""
        self._rings = {}
        self._latest = {}
        self._monitors = frozenset()

    @property
    def tracked(self) -> tuple[str, ...]:
        """The tracked sensors (monitors included), in klippy's order."""
        return tuple(self._rings)

    @property
    def monitors(self) -> frozenset[str]:
        """The tracked names that are monitors."""
        return frozenset(name for name in self._rings if name in self._monitors)
