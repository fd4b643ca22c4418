"""Answering ``objects/query`` from the status cache instead of asking klippy, without I/O.

Klippy answers a query on its next status tick (every 250 ms), so a client polling
``printer.objects.query`` one request after another gets about four answers a second. trioprint
already holds klippy's live subscription and its full state (:class:`~.status.StatusCache`); when
that subscription covers every object and field a query asks for, the cache *is* the answer, as
fresh as klippy's last push and stamped with that push's eventtime.

Coverage (:func:`covers`) follows what klippy itself sends:

- an object asked with ``None`` (all fields) is covered only if it is subscribed with ``None``:
  klippy fixes the field list of such a subscription at its first tick, so the cached object
  holds every field klippy had then;
- an object asked with a list of fields is covered if every one of them is subscribed (by name,
  or the object with ``None``);
- and, in both cases, the object is in the cache with every requested field (klippy's subscribe
  result holds each subscribed field, ``null`` for one the object lacks, and an unknown object
  as ``{}``; a field missing from the cache has not been received, so the query is forwarded).

:class:`Freshness` keeps the answers consistent with the client's own writes: once a request
that may change the printer (a G-code script, pause, ...) has been answered, the cache may
still hold the state from before it, until klippy's next status push (which klippy sends after
that answer, from a tick that ran after the command finished) or a new subscribe result that
was asked for after it. Until then queries are forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .status import ObjectSpec, Status

#: Klippy endpoints that never change the printer's state (a completed request of any other
#: endpoint makes the cache unconfirmed until the next push).
READ_ONLY_METHODS = frozenset(
    {
        "info",
        "list_endpoints",
        "objects/list",
        "objects/query",
        "objects/subscribe",
        "gcode/help",
        "query_endstops/status",
    }
)


def covers(
    subscribed: ObjectSpec | None,
    state: Mapping[str, Mapping[str, Any]],
    query: ObjectSpec,
) -> bool:
    """Whether the cached ``state`` of the ``subscribed`` spec answers ``query`` in full."""
    if subscribed is None:
        return False
    for name, wanted in query.items():
        if name not in subscribed:
            return False
        have = subscribed[name]
        cached = state.get(name)
        if cached is None:
            return False
        if wanted is None:
            if have is not None:
                return False
            continue
        if have is not None and not set(wanted).issubset(have):
            return False
        if any(field not in cached for field in wanted):
            return False
    return True


def answer(state: Mapping[str, Mapping[str, Any]], query: ObjectSpec) -> Status:
    """The status part of the answer: exactly the requested fields (all for ``None``).

    Call only when :func:`covers` holds. The dicts are new; field values are shared (the cache
    replaces them whole, never changes them in place).
    """
    out: Status = {}
    for name, wanted in query.items():
        cached = state[name]
        out[name] = dict(cached) if wanted is None else {f: cached[f] for f in wanted}
    return out


def cached_query(
    subscribed: ObjectSpec | None,
    state: Mapping[str, Mapping[str, Any]],
    query: ObjectSpec,
) -> Status | None:
    """:func:`answer` if :func:`covers`, else ``None``: forward the query to klippy."""
    if not covers(subscribed, state, query):
        return None
    return answer(state, query)


class Freshness:
    """Whether the cache reflects every write klippy has answered so far.

    ``written`` counts completed writes, ``confirmed`` how many of them the cache is known to
    reflect. Call :meth:`wrote` when a state-changing request has been answered (or failed),
    :meth:`pushed` on each status push, :meth:`mark` just before sending a subscribe and
    :meth:`refreshed` with that mark once its result has replaced the cache.
    """

    def __init__(self) -> None:
        self.written = 0
        self.confirmed = 0

    @property
    def fresh(self) -> bool:
        return self.confirmed == self.written

    def wrote(self) -> None:
        self.written += 1

    def pushed(self) -> None:
        self.confirmed = self.written

    def mark(self) -> int:
        return self.written

    def refreshed(self, mark: int) -> None:
        self.confirmed = max(self.confirmed, mark)

    def reset(self) -> None:
        """A new connection: nothing is cached, nothing is pending."""
        self.written = self.confirmed = 0


__all__ = ["READ_ONLY_METHODS", "Freshness", "answer", "cached_query", "covers"]
