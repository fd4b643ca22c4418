"""Reading a loosely typed argument value (JSON or query-string text) as the type it names."""

from __future__ import annotations

from typing import Any


def as_int(value: Any) -> int | None:
    """``value`` as an integer: an int, a float with no fraction, or decimal text (spaces
    around it allowed); None for anything else, booleans included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
