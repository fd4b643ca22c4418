"""A job's auxiliary fields: values other components track per job (Moonraker's ``history_field``).

A provider (a ``[sensor NAME]`` section, Spoolman) declares a :class:`HistoryField` with a
strategy; the history component resets every field when a job starts and stores each field's
:meth:`HistoryField.as_dict` in the job's ``auxiliary_data`` when it starts, at checkpoints and
when it ends. Between those, the provider calls :meth:`HistoryField.update` with each new value;
an update counts only while a job runs (and, with ``exclude_paused``, is not paused) -- the
history component tells through :attr:`HistoryField.enabled`.

Strategies, as Moonraker 0.11's:

- ``basic``: the last value;
- ``delta``: the change of the value since the job started (or since its first value);
- ``accumulate``: the sum of the values;
- ``average``, ``maximum``, ``minimum``: of the values;
- ``collect``: the distinct values, in order (at most :data:`MAX_COLLECTED`).

``init_tracker`` (a reset callback) starts a field from the provider's current value instead of
zero (for ``delta``: counts from it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

STRATEGIES = ("basic", "delta", "accumulate", "average", "maximum", "minimum", "collect")
#: How many distinct values a ``collect`` field keeps (the oldest go first).
MAX_COLLECTED = 100


class FieldError(ValueError):
    """A field's declaration is wrong."""


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


class HistoryField:
    """One auxiliary field of a job; see the module docstring."""

    def __init__(
        self,
        name: str,
        provider: str,
        description: str,
        strategy: str = "basic",
        *,
        units: str | None = None,
        reset_callback: Callable[[], Any] | None = None,
        exclude_paused: bool = False,
        report_total: bool = False,
        report_maximum: bool = False,
        precision: int | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise FieldError(
                f"unknown strategy {strategy!r} (expected one of {', '.join(STRATEGIES)})"
            )
        if provider == "history":
            raise FieldError("provider name 'history' is reserved")
        self.name = name
        self.provider = provider
        self.description = description
        self.strategy = strategy
        self.units = units
        self.reset_callback = reset_callback
        self.exclude_paused = exclude_paused
        self.report_total = report_total
        self.report_maximum = report_maximum
        self.precision = precision
        #: ``enabled(check_paused)``: whether an update counts now (set by the history component;
        #: until then nothing counts, as no job is known to run).
        self.enabled: Callable[[bool], bool] = lambda check_paused: False
        self.value: Any = [] if strategy == "collect" else (None if strategy == "basic" else 0)
        self._count = 0
        self._initialized = False
        self._last: float | None = None

    def reset(self) -> None:
        """A job starts: the field starts over (from the reset callback's value, if any)."""
        start = self.reset_callback() if self.reset_callback is not None else None
        self._count = 0
        self._initialized = False
        if self.strategy == "collect":
            self.value = list(start) if isinstance(start, list) else []
        elif self.strategy == "basic":
            if self.reset_callback is not None:
                self.value = start
        elif self.strategy == "delta":
            self.value = 0
            self._last = float(start) if start is not None and _is_number(start) else None
        else:
            self.value = start if _is_number(start) else 0
            self._initialized = _is_number(start) and self.strategy in ("maximum", "minimum")

    def update(self, value: Any) -> None:
        """A new value from the provider."""
        active = self.enabled(self.exclude_paused)
        strategy = self.strategy
        if strategy == "basic":
            if active:
                self.value = value
            return
        if strategy == "collect":
            if active and value not in self.value:
                self.value.append(value)
                del self.value[:-MAX_COLLECTED]
            return
        if not _is_number(value):
            return
        if strategy == "delta":
            if active and self._last is not None:
                self.value += value - self._last
            self._last = value
            return
        if not active:
            return
        if strategy == "accumulate":
            self.value += value
        elif strategy == "average":
            self._count += 1
            self.value = (self.value * (self._count - 1) + value) / self._count
        elif not self._initialized:
            self.value = value
            self._initialized = True
        elif strategy == "maximum":
            self.value = max(self.value, value)
        else:
            self.value = min(self.value, value)

    def configuration(self) -> dict[str, Any]:
        """The field's declaration, as ``server.sensors.list?extended=true`` shows it."""
        return {
            "field": self.name,
            "provider": self.provider,
            "description": self.description,
            "strategy": self.strategy,
            "units": self.units,
            "init_tracker": self.reset_callback is not None,
            "exclude_paused": self.exclude_paused,
            "report_total": self.report_total,
            "report_maximum": self.report_maximum,
            "precision": self.precision,
        }

    def as_dict(self) -> dict[str, Any]:
        """The field in a job's ``auxiliary_data``."""
        value = self.value
        if isinstance(value, list):
            value = list(value)
        elif self.precision is not None and isinstance(value, float):
            value = round(value, self.precision)
        return {
            "provider": self.provider,
            "name": self.name,
            "value": value,
            "description": self.description,
            "units": self.units,
        }
