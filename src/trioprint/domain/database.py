"""The database's semantics, pure: names, keys, nested values, records, reserved namespaces.

The store (:mod:`trioprint.components.database`) keeps one row per (namespace, top-level key)
whose value is a record: the JSON-like value at that key, encoded as Moonraker 0.11 encodes it
(so a Moonraker backup can be restored into trioprint). A key is a dotted string
(``"a.b.c"``) or a list of parts (``["a", "b.c"]``); the first part names the row, the others
walk into the record's nested objects. This module checks names and keys, and does the nested
get/insert/delete on a record; it does no I/O.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from ..errors import ApiError
from . import strictjson

#: Longest namespace and longest key part, in characters; deepest key, in parts.
MAX_NAMESPACE_LENGTH = 256
MAX_KEY_PART_LENGTH = 1024
MAX_KEY_DEPTH = 64

#: Readable through the API, not writable (Moonraker's own and the namespaces its components
#: register, plus trioprint's internal ones).
PROTECTED_NAMESPACES = frozenset(
    {"moonraker", "gcode_metadata", "update_manager", "announcements", "history", "trioprint"}
)
#: Neither readable nor writable through the API, and not listed.
FORBIDDEN_NAMESPACES = frozenset({"database", "simplyprint", "authorized_users", "authorization"})


def _check_text(value: str, what: str, limit: int) -> None:
    if not value:
        raise ApiError(f"{what} must not be empty", 400)
    if len(value) > limit:
        raise ApiError(f"{what} is too long ({len(value)} characters, at most {limit})", 400)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(f"{what} is not valid Unicode (a lone surrogate)", 400) from None


def check_namespace(namespace: Any) -> str:
    """``namespace`` if it is a usable name, else ``ApiError(400)``."""
    if not isinstance(namespace, str):
        raise ApiError(
            f"Value for argument 'namespace' is an invalid type: {type(namespace).__name__}", 400
        )
    _check_text(namespace, "namespace", MAX_NAMESPACE_LENGTH)
    return namespace


def parse_key(key: Any) -> list[str]:
    """A key (dotted string or list of strings) as its parts; ``ApiError(400)`` if malformed.

    As Moonraker: ``"a..b"``, ``""``, ``[]`` and ``["a", ""]`` are invalid (an empty part).
    """
    if isinstance(key, str):
        parts = key.split(".")
    elif isinstance(key, list):
        parts = key
        for part in parts:
            if not isinstance(part, str):
                raise ApiError(
                    f"Invalid Key Format: '{key}' (a part is a {type(part).__name__}, "
                    "not a string)",
                    400,
                )
    else:
        raise ApiError(f"Value for argument 'key' is an invalid type: {type(key).__name__}", 400)
    if not parts or "" in parts:
        raise ApiError(f"Invalid Key Format: '{key}'", 400)
    if len(parts) > MAX_KEY_DEPTH:
        raise ApiError(f"key is too deep ({len(parts)} parts, at most {MAX_KEY_DEPTH})", 400)
    for part in parts:
        _check_text(part, "key part", MAX_KEY_PART_LENGTH)
    return list(parts)


def check_access(namespace: str, *, write: bool) -> None:
    """``ApiError(403)`` if the API may not read (or, ``write``, change) ``namespace``."""
    if namespace in FORBIDDEN_NAMESPACES:
        raise ApiError(f"Read/Write access to namespace '{namespace}' is forbidden", 403)
    if write and namespace in PROTECTED_NAMESPACES:
        raise ApiError(f"Write access to namespace '{namespace}' is forbidden", 403)


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(f"Namespace {namespace} not found", 404)


def key_not_found(namespace: str, key: Any) -> ApiError:
    return ApiError(f"Key '{key}' in namespace '{namespace}' not found", 404)


# --- nested values inside one record --------------------------------------------------------


class NotFound(Exception):
    """The path does not lead to a value."""


def lookup(record: Any, path: list[str]) -> Any:
    """The value at ``path`` (parts after the row's key) inside ``record``; NotFound if none."""
    node = record
    for part in path:
        if not isinstance(node, dict) or part not in node:
            raise NotFound
        node = node[part]
    return node


def insert(record: Any, path: list[str], value: Any, *, namespace: str, key: Any) -> Any:
    """The record with ``value`` at ``path`` (missing parents created), as Moonraker does.

    An empty ``path`` replaces the record. A record that is not an object is replaced by one;
    a parent inside it that is not an object is an ``ApiError(400)``. ``record`` is changed
    in place when it is an object.
    """
    if not path:
        return value
    if not isinstance(record, dict):
        record = {}
    node: Any = record
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            child = node[part] = {}
        if not isinstance(child, dict):
            parts = parse_key(key)
            shown = ".".join(parts[: depth + 2])
            raise ApiError(
                f"Item at key '{shown}' in namespace '{namespace}' is not a dictionary "
                "object, cannot insert",
                400,
            )
        node = child
    node[path[-1]] = value
    return record


def remove(record: Any, path: list[str]) -> tuple[Any, bool]:
    """Remove the value at ``path`` from ``record`` (in place): (old value, row now empty).

    An empty ``path`` removes the whole record. NotFound if there is no such value. As in
    Moonraker, a record left as an empty object is removed (and a namespace left with no rows
    is gone).
    """
    if not path:
        return record, True
    parent = lookup(record, path[:-1])
    if not isinstance(parent, dict) or path[-1] not in parent:
        raise NotFound
    old = parent.pop(path[-1])
    return old, not record


# --- records: Moonraker 0.11's encoding -------------------------------------------------------


def _dumps(value: Any) -> bytes:
    # ensure_ascii: a lone surrogate inside a string survives as an escape; standard JSON
    # only: a NaN stored would make the namespace unreadable to every browser
    return strictjson.dumps(value).encode()


def encode_record(value: Any) -> bytes:
    """A record's bytes: a type tag then the value (objects and arrays as JSON)."""
    try:
        if value is None:
            return b"\x00"
        if isinstance(value, bool):
            return b"?" + struct.pack("?", value)
        if isinstance(value, int):
            return b"q" + struct.pack("q", value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{value} is not valid JSON")
            return b"d" + struct.pack("d", value)
        if isinstance(value, str):
            return b"s" + value.encode("utf-8", "surrogatepass")
        if isinstance(value, (dict, list)):
            return _dumps(value)
    except (struct.error, TypeError, ValueError) as exc:
        raise ApiError(f"Error encoding value of type {type(value).__name__}: {exc}", 400) from None
    raise ApiError(f"Error encoding value of type {type(value).__name__}", 400)


def decode_record(data: bytes) -> Any:
    """The value of a record's bytes (``ValueError`` if they are not a record)."""
    if not data:
        raise ValueError("an empty record")
    tag = data[0]
    try:
        if tag == 0:
            return None
        if tag == ord("?"):
            return struct.unpack("?", data[1:])[0]
        if tag == ord("q"):
            return struct.unpack("q", data[1:])[0]
        if tag == ord("d"):  # one stored by an earlier version may be NaN: read as null
            return strictjson.finite_or_none(struct.unpack("d", data[1:])[0])
        if tag == ord("s"):
            return bytes(data[1:]).decode("utf-8", "surrogatepass")
        if tag in (ord("{"), ord("[")):
            return strictjson.loads_lenient(bytes(data))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"an undecodable record ({exc})") from None
    raise ValueError(f"an unknown record format {tag!r}")
