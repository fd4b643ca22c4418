"""Argument readers Moonraker's web requests have and the typed params classes do not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ApiError


def string_list(raw: Mapping[str, Any], key: str, *, required: bool = True) -> list[str] | None:
    """Moonraker's ``get_list``: a list of strings, or one string split at commas."""
    if key not in raw:
        if required:
            raise ApiError(f"No data for argument: {key}", 400)
        return None
    value = raw[key]
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ApiError(
        f"Invalid list format for argument '{key}', expected all values to be of type str.", 400
    )


def flag(raw: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """A boolean argument: ``true``/``false`` (any case) as a string, or a JSON boolean."""
    value = raw.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ApiError(f"invalid argument '{key}': expected bool, got {value!r}", 400)
