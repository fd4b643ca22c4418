"""Status subscriptions fanned out to many clients, without I/O.

Klippy grants one status subscription per API connection (a new ``objects/subscribe`` replaces
the old one) and then pushes only what changed, about every 250 ms, as ``{"eventtime": float,
"status": {object: {field: value}}}``. A field's value is always sent whole (``print_stats.info``
arrives as a complete dict), so merging a diff into a state is a per-field replacement.

trioprint holds a single klippy subscription covering what every websocket client asked for
(:func:`merge_specs`), keeps the full state of it (:class:`StatusCache`), and gives each client
exactly the objects and fields it subscribed to (:class:`ClientView`, grouped in
:class:`Subscriptions`). A client's pending update is coalesced: a slow reader gets one merged
diff instead of a growing queue, so memory stays bounded by the size of what it subscribed to.

An *object spec* is Moonraker's (and klippy's) ``objects`` argument: object name -> ``None``
(every field of that object) or a list of field names.

How the pieces fit (the caller does the I/O and holds a lock around subscribe round trips)::

    changed = subs.set(client, spec)            # the client's objects/subscribe
    if changed:                                 # klippy must be re-subscribed
        result = await klippy("objects/subscribe", objects=subs.merged())
        diff = cache.replace(result["status"], result["eventtime"])
        subs.offer(diff, result["eventtime"], exclude=client)  # others see what changed
    subs.get(client).clear()                    # older pending updates are in the snapshot
    reply(cache.get(spec))                      # the client's snapshot

    # on every process_status_update(eventtime, status):
    cache.update(status, eventtime)
    for client in subs.offer(status, eventtime):
        wake(client)                            # its writer then calls view.take()
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

Status = dict[str, dict[str, Any]]
ObjectSpec = dict[str, list[str] | None]

K = TypeVar("K", bound=Hashable)

_REPR_LIMIT = 60


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def normalize_spec(raw: Any) -> ObjectSpec:
    """Validate a client's ``objects`` argument and return a fresh copy of it.

    Accepted is what klippy accepts (Moonraker does not check the argument itself, it forwards
    it and relays klippy's error): a dict whose keys are object names (strings) and whose
    values are ``None`` (all fields) or a list of field names (strings). Anything else is a
    :class:`ValueError` naming the offending object or field.

    An empty list is kept as it is and means *no* fields, not all of them: klippy then reports
    the object as ``{}`` in a query or subscribe result and never in an update, and Moonraker
    prunes the same way. A single string instead of a list is rejected, as klippy does.
    Duplicate field names are dropped (first occurrence kept); they cannot change a result.
    """
    if not isinstance(raw, dict):
        raise ValueError(
            f"objects must map object names to null or a list of field names, "
            f"not {type(raw).__name__}"
        )
    spec: ObjectSpec = {}
    for name, fields in raw.items():
        if not isinstance(name, str):
            raise ValueError(f"object name must be a string, not {_short(name)}")
        if fields is None:
            spec[name] = None
            continue
        if not isinstance(fields, list):
            raise ValueError(
                f"objects[{name!r}] must be null or a list of field names, "
                f"not {type(fields).__name__}"
            )
        seen: dict[str, None] = {}
        for field in fields:
            if not isinstance(field, str):
                raise ValueError(f"objects[{name!r}] field name must be a string: {_short(field)}")
            seen[field] = None
        spec[name] = list(seen)
    return spec


def merge_specs(specs: Iterable[ObjectSpec]) -> ObjectSpec:
    """The union of ``specs``: ``None`` (all fields) wins over a list, lists are unioned.

    Field lists come out sorted, so the result does not depend on the order of ``specs``.
    """
    merged: dict[str, set[str] | None] = {}
    for spec in specs:
        for name, fields in spec.items():
            if fields is None:
                merged[name] = None
            elif name not in merged:
                merged[name] = set(fields)
            else:
                have = merged[name]
                if have is not None:
                    have.update(fields)
    return {name: None if fields is None else sorted(fields) for name, fields in merged.items()}


def _filter_object(fields: Mapping[str, Any], wanted: list[str] | None) -> dict[str, Any]:
    if wanted is None:
        return dict(fields)
    if len(wanted) < len(fields):
        return {f: fields[f] for f in wanted if f in fields}
    wanted_set = set(wanted)
    return {f: v for f, v in fields.items() if f in wanted_set}


def filter_status(status: Mapping[str, Mapping[str, Any]], spec: ObjectSpec) -> Status:
    """The part of a full ``status`` snapshot that ``spec`` asks for, as a new dict.

    Objects absent from ``status`` are absent from the result, and so are requested fields the
    object lacks; an object present whose selection is empty stays as ``{}``, as in klippy's
    query result. The per-object dicts are new; field values are shared (they are replaced
    whole, never changed in place).
    """
    out: Status = {}
    for name, wanted in spec.items():
        fields = status.get(name)
        if fields is not None:
            out[name] = _filter_object(fields, wanted)
    return out


def filter_diff(diff: Mapping[str, Mapping[str, Any]], spec: ObjectSpec) -> Status:
    """Like :func:`filter_status`, for an update: objects left with no fields are dropped.

    A diff nothing of which concerns the client is ``{}`` (and is not worth sending).
    """
    out: Status = {}
    for name, wanted in spec.items():
        fields = diff.get(name)
        if fields:
            selected = _filter_object(fields, wanted)
            if selected:
                out[name] = selected
    return out


def merge_diff(into: Status, diff: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge ``diff`` into ``into`` field by field: each field in ``diff`` replaces the old one.

    Objects new to ``into`` are added as copies, so ``into`` never shares a dict with ``diff``.
    """
    for name, fields in diff.items():
        target = into.get(name)
        if target is None:
            into[name] = dict(fields)
        else:
            target.update(fields)


class StatusCache:
    """The full state of the merged klippy subscription."""

    def __init__(self) -> None:
        self._state: Status = {}
        self.eventtime: float = 0.0
        """klippy's eventtime of the newest status seen (0.0 before any)."""

    def replace(
        self, status: Mapping[str, Mapping[str, Any]], eventtime: float | None = None
    ) -> Status:
        """Start over from ``status`` (a fresh ``objects/subscribe`` result).

        Returns what changed compared to the old state, for clients already subscribed: the
        fields whose value differs or that are new, of objects that were already cached.
        Objects not in ``status`` are dropped (nobody subscribes to them any more).
        """
        changed: Status = {}
        for name, fields in status.items():
            old = self._state.get(name)
            if old is None:
                continue
            delta = {f: v for f, v in fields.items() if f not in old or old[f] != v}
            if delta:
                changed[name] = delta
        self._state = {name: dict(fields) for name, fields in status.items()}
        if eventtime is not None:
            self.eventtime = eventtime
        return changed

    def update(self, diff: Mapping[str, Mapping[str, Any]], eventtime: float | None = None) -> None:
        """Merge a ``process_status_update`` diff (see :func:`merge_diff`)."""
        merge_diff(self._state, diff)
        if eventtime is not None:
            self.eventtime = eventtime

    def get(self, spec: ObjectSpec) -> Status:
        """A client's snapshot: :func:`filter_status` of the cached state."""
        return filter_status(self._state, spec)

    def snapshot(self) -> Status:
        """A copy of the whole cached state."""
        return {name: dict(fields) for name, fields in self._state.items()}

    def clear(self) -> None:
        """Forget everything (klippy disconnected)."""
        self._state = {}
        self.eventtime = 0.0

    @property
    def objects(self) -> tuple[str, ...]:
        """Names of the cached objects."""
        return tuple(self._state)

    @property
    def state(self) -> Mapping[str, Mapping[str, Any]]:
        """The cached state itself, read only (no copy; do not keep it across updates)."""
        return self._state

    def __contains__(self, name: object) -> bool:
        return name in self._state

    def __len__(self) -> int:
        return len(self._state)


class Frame:
    """One update as it goes out: the diff, its eventtime, and its encoding once made.

    A frame offered to a group of clients with the same subscription (see
    :meth:`Subscriptions.offer`) is shared by all of them, so it is encoded once, whoever takes
    it first (``text`` is for the caller to fill; nothing here encodes). Read only once made.
    """

    __slots__ = ("eventtime", "status", "text")

    def __init__(self, status: Status, eventtime: float) -> None:
        self.status = status
        self.eventtime = eventtime
        self.text: str | None = None


class ClientView:
    """One client's subscription and its coalesced pending update.

    The pending update is either a shared :class:`Frame` (the client took everything before
    it: the usual case) or, once a second update arrives before the client took the first, a
    merge of its own (a slow reader gets one merged diff, never a queue of them).
    """

    __slots__ = ("_eventtime", "_pending", "_shared", "spec")

    def __init__(self, spec: ObjectSpec) -> None:
        self.spec: ObjectSpec = spec
        self._pending: Status = {}
        self._eventtime = 0.0
        self._shared: Frame | None = None

    def resubscribe(self, spec: ObjectSpec) -> None:
        """Change what the client wants; the pending update is dropped."""
        self.spec = spec
        self.clear()

    def clear(self) -> None:
        """Drop the pending update (e.g. once the client got a fresh snapshot)."""
        self._pending = {}
        self._eventtime = 0.0
        self._shared = None

    def _own(self) -> Status:
        """The pending update as a merge of this client's own (the shared frame copied)."""
        shared = self._shared
        if shared is not None:
            self._pending = {name: dict(fields) for name, fields in shared.status.items()}
            self._eventtime = shared.eventtime
            self._shared = None
        return self._pending

    def offer(self, diff: Mapping[str, Mapping[str, Any]], eventtime: float) -> bool:
        """Merge the part of ``diff`` this client wants into its pending update.

        Later values win, field by field, and the pending eventtime becomes ``eventtime``.
        Returns whether anything was added; a diff with nothing for the client changes nothing.
        """
        added = False
        pending = self._own()
        for name, wanted in self.spec.items():
            fields = diff.get(name)
            if not fields:
                continue
            selected = _filter_object(fields, wanted)
            if not selected:
                continue
            target = pending.get(name)
            if target is None:
                pending[name] = selected
            else:
                target.update(selected)
            added = True
        if added:
            self._eventtime = eventtime
        return added

    def offer_frame(self, frame: Frame) -> None:
        """Add ``frame`` (already filtered for this client's spec, not empty) to the pending
        update: it is the pending update if there was none, else it is merged in."""
        if self._shared is None and not self._pending:
            self._shared = frame
            return
        pending = self._own()
        for name, fields in frame.status.items():
            target = pending.get(name)
            if target is None:
                pending[name] = dict(fields)
            else:
                target.update(fields)
        self._eventtime = frame.eventtime

    @property
    def has_pending(self) -> bool:
        return self._shared is not None or bool(self._pending)

    def take_frame(self) -> Frame | None:
        """The pending update as a frame (shared, maybe already encoded), then cleared."""
        shared = self._shared
        if shared is not None:
            self._shared = None
            return shared
        if not self._pending:
            return None
        frame = Frame(self._pending, self._eventtime)
        self.clear()
        return frame

    def take(self) -> tuple[Status, float] | None:
        """The pending update and its eventtime, which are then cleared; ``None`` if none.

        The status may be shared with other clients: read it, do not change it.
        """
        frame = self.take_frame()
        return None if frame is None else (frame.status, frame.eventtime)


def _spec_key(spec: ObjectSpec) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """Equal for specs that filter a diff into equal dicts, in the same order (so one frame,
    one encoding, serves them all): the objects and fields, in the spec's order."""
    return tuple((name, None if f is None else tuple(f)) for name, f in spec.items())


class Subscriptions(Generic[K]):
    """Every client's :class:`ClientView`, by client id, and the merged spec they need."""

    def __init__(self) -> None:
        self._views: dict[K, ClientView] = {}
        self._merged: ObjectSpec = {}
        #: Clients by identical spec (:func:`_spec_key`): each group's diff is filtered once.
        self._groups: list[tuple[ObjectSpec, list[tuple[K, ClientView]]]] = []

    def set(self, client_id: K, spec: ObjectSpec) -> bool:
        """Subscribe ``client_id`` to ``spec`` (replacing its previous subscription).

        ``spec`` is validated and copied (:func:`normalize_spec`, so ValueError if bad). An
        empty spec unsubscribes the client. Returns whether :meth:`merged` changed, i.e.
        whether klippy must be re-subscribed.
        """
        spec = normalize_spec(spec)
        if not spec:
            return self.remove(client_id)
        view = self._views.get(client_id)
        if view is None:
            self._views[client_id] = ClientView(spec)
        else:
            view.resubscribe(spec)
        return self._recompute()

    def remove(self, client_id: K) -> bool:
        """Drop ``client_id`` (if subscribed); returns whether :meth:`merged` changed."""
        if self._views.pop(client_id, None) is None:
            return False
        return self._recompute()

    def _recompute(self) -> bool:
        groups: dict[Hashable, tuple[ObjectSpec, list[tuple[K, ClientView]]]] = {}
        for cid, view in self._views.items():
            groups.setdefault(_spec_key(view.spec), (view.spec, []))[1].append((cid, view))
        self._groups = list(groups.values())
        merged = merge_specs(view.spec for view in self._views.values())
        changed = merged != self._merged
        self._merged = merged
        return changed

    def merged(self) -> ObjectSpec:
        """The union of all clients' specs (a copy), what klippy should be subscribed to."""
        return {
            name: None if fields is None else list(fields) for name, fields in self._merged.items()
        }

    def offer(
        self, diff: Mapping[str, Mapping[str, Any]], eventtime: float, *, exclude: K | None = None
    ) -> list[K]:
        """Offer ``diff`` to every view (but ``exclude``'s); the ids that got something
        (grouped by spec, not in subscription order).

        Clients with the same spec share one :class:`Frame` of it (filtered once), unless they
        still had something pending (then each merges it into its own).
        """
        got: list[K] = []
        for spec, members in self._groups:
            status = filter_diff(diff, spec)
            if not status:
                continue
            frame = Frame(status, eventtime)
            for cid, view in members:
                if cid != exclude:
                    view.offer_frame(frame)
                    got.append(cid)
        return got

    def get(self, client_id: K) -> ClientView | None:
        return self._views.get(client_id)

    def views(self) -> list[ClientView]:
        return list(self._views.values())

    def items(self) -> list[tuple[K, ClientView]]:
        return list(self._views.items())

    def clear(self) -> None:
        """Drop every subscription (klippy disconnected: Moonraker forgets them all)."""
        self._views.clear()
        self._groups = []
        self._merged = {}

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._views))

    def __len__(self) -> int:
        return len(self._views)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._views
