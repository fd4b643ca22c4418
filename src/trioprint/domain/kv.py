"""The key-value store contract every persistent component codes against.

The SQLite database (:mod:`trioprint.components.database`) implements it; :class:`MemoryStore`
implements it in memory for unit tests of the components that persist through it (auth,
history, metadata). Keys are Moonraker's: a dotted string (``"a.b.c"``) or a list of parts
(``["a", "b.c"]``, where a part may hold dots); ``None`` means the whole namespace.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from ..errors import ApiError

Key = str | list[str] | None


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: The default of :meth:`KeyValueStore.get_item`: raise ``ApiError(404)`` when absent.
MISSING: Any = _Missing()


def key_parts(key: Key) -> list[str]:
    """``"a.b"`` -> ``["a", "b"]``; a list is taken as it is; ``None`` -> ``[]``."""
    if key is None:
        return []
    if isinstance(key, str):
        return key.split(".") if key else []
    return list(key)


class KeyValueStore(Protocol):
    async def get_item(self, namespace: str, key: Key = None, default: Any = MISSING) -> Any:
        """The value (a copy) at ``key``; ``default`` if absent, else ``ApiError(404)``."""
        ...

    async def insert_item(self, namespace: str, key: Key, value: Any) -> None:
        """Store ``value`` at ``key`` (parents created), durably, before returning."""
        ...

    async def delete_item(self, namespace: str, key: Key) -> Any:
        """Remove ``key``, return its old value; ``ApiError(404)`` if absent."""
        ...

    async def namespaces(self) -> list[str]: ...


class MemoryStore:
    """:class:`KeyValueStore` in a dict (no persistence): for tests."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get_item(self, namespace: str, key: Key = None, default: Any = MISSING) -> Any:
        node: Any = self.data.get(namespace)
        if node is None:
            if default is MISSING:
                raise ApiError(f"Namespace '{namespace}' not found", 404)
            return default
        for part in key_parts(key):
            if not isinstance(node, dict) or part not in node:
                if default is MISSING:
                    raise ApiError(f"Key '{key}' in namespace '{namespace}' not found", 404)
                return default
            node = node[part]
        return copy.deepcopy(node)

    async def insert_item(self, namespace: str, key: Key, value: Any) -> None:
        parts = key_parts(key)
        if not parts:
            raise ApiError("a key is required", 400)
        node = self.data.setdefault(namespace, {})
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = copy.deepcopy(value)

    async def delete_item(self, namespace: str, key: Key) -> Any:
        parts = key_parts(key)
        old = await self.get_item(namespace, parts)
        if not parts:
            raise ApiError("a key is required", 400)
        node = self.data[namespace]
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]
        if not self.data[namespace]:
            del self.data[namespace]
        return old

    async def namespaces(self) -> list[str]:
        return sorted(self.data)
