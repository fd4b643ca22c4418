"""Standard JSON (RFC 8259) only, in and out.

Python's ``json`` reads and writes ``NaN``, ``Infinity`` and ``-Infinity``, and reads a number
too large for a double (``1e400``) as infinity; none of them is JSON, and a browser's
``JSON.parse`` fails on a whole document holding one. So what a client sends is parsed by
:func:`loads`, which refuses them with a message naming the problem, and everything trioprint
encodes goes through :func:`dumps`, which refuses to write them (``ValueError``).

Data from a trusted peer that writes them (klippy encodes with Python's ``json``; old database
records) is read with :func:`loads_lenient`, which turns them into ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NonStandardJSON(ValueError):
    """Input that Python's ``json`` would accept but that is not JSON."""


def _refuse_constant(name: str) -> Any:
    raise NonStandardJSON(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise NonStandardJSON(f"number {shown} is out of range")
    return value


def _null_constant(name: str) -> Any:
    return None


def _finite_or_null(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def loads(data: str | bytes | bytearray) -> Any:
    """Parse standard JSON; ``ValueError`` (a :class:`NonStandardJSON` for NaN, Infinity or
    an out-of-range number) otherwise."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)


def loads_lenient(data: str | bytes | bytearray) -> Any:
    """Parse JSON as Python writes it, with NaN, Infinity and out-of-range numbers as None."""
    return json.loads(data, parse_constant=_null_constant, parse_float=_finite_or_null)


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_spaced = json.JSONEncoder(allow_nan=False).encode


def dumps(value: Any, *, compact: bool = True) -> str:
    """Encode as standard JSON (non-ASCII escaped, so a lone surrogate survives as an escape);
    ``ValueError`` for a non-finite number, ``TypeError`` for what JSON cannot hold."""
    return _compact(value) if compact else _spaced(value)
