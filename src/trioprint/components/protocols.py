"""The small interfaces components take their collaborators by (structural: any object with
these methods will do, as the tests' doubles do)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..domain.history_fields import HistoryField


class Broadcaster(Protocol):
    """Sends a notification to every websocket client."""

    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


class StatusSource(Protocol):
    """Calls back with the changes of klippy objects' fields."""

    def set_internal_subscription(
        self,
        name: str,
        spec: dict[str, list[str] | None],
        callback: Callable[[dict[str, Any], float], None],
    ) -> None: ...


class RemoteMethodSource(StatusSource, Protocol):
    """A :class:`StatusSource` that also forwards klippy's calls of a named remote method."""

    def register_remote_method(self, name: str, callback: Callable[..., Any]) -> None: ...


class FieldRegistry(Protocol):
    """Takes the fields a component adds to each history job."""

    def register_auxiliary_field(self, field: HistoryField) -> None: ...
