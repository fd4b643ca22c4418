"""Queries answered from the status cache: coverage, the answer's shape, freshness after writes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.query_cache import Freshness, answer, cached_query, covers
from trioprint.domain.status import ObjectSpec, Status, StatusCache, filter_status

# --- a model of klippy's objects/query and objects/subscribe (webhooks.QueryStatusHelper) ------


def klippy_query(world: Status, spec: ObjectSpec, *, missing_as_none: bool = True) -> Status:
    """What klippy answers: an unknown object is ``{}``; a requested field the object lacks is
    ``null`` (klippy) or left out (the simulator, ``missing_as_none=False``)."""
    out: Status = {}
    for name, wanted in spec.items():
        fields = world.get(name, {})
        if wanted is None:
            out[name] = dict(fields)
        elif missing_as_none:
            out[name] = {f: fields.get(f) for f in wanted}
        else:
            out[name] = {f: fields[f] for f in wanted if f in fields}
    return out


OBJECTS = ["toolhead", "extruder", "heater_bed", "print_stats", "webhooks", "no_such_object"]
FIELDS = ["position", "temperature", "target", "state", "info", "power", "missing"]

values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4))
worlds = st.dictionaries(
    st.sampled_from(OBJECTS[:-1]),
    st.dictionaries(st.sampled_from(FIELDS[:-1]), values, max_size=6),
    max_size=5,
)
specs = st.dictionaries(
    st.sampled_from(OBJECTS),
    st.one_of(st.none(), st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)),
    max_size=6,
)


@given(
    world=worlds,
    subscribed=specs,
    query=specs,
    missing_as_none=st.booleans(),
    dropped=st.sets(st.sampled_from(OBJECTS)),
)
def test_a_cached_answer_equals_klippys_or_the_query_is_forwarded(
    world: Status,
    subscribed: ObjectSpec,
    query: ObjectSpec,
    missing_as_none: bool,
    dropped: set[str],
) -> None:
    cache = StatusCache()
    cache.replace(klippy_query(world, subscribed, missing_as_none=missing_as_none), 12.5)
    state = {n: dict(f) for n, f in cache.state.items() if n not in dropped}  # not received
    got = cached_query(subscribed, state, query)
    if got is None:
        return
    assert got == klippy_query(world, query, missing_as_none=missing_as_none)
    assert got == filter_status(state, query)  # a projection of the cache, nothing else
    for name, wanted in query.items():
        assert set(got[name]) == (set(state[name]) if wanted is None else set(wanted))


@given(world=worlds, subscribed=specs, query=specs)
def test_what_the_subscription_holds_is_answered(
    world: Status, subscribed: ObjectSpec, query: ObjectSpec
) -> None:
    """Not forwarding too much: klippy's full subscribe result answers every query within it."""
    state = klippy_query(world, subscribed)
    # with an all-fields subscription, a field the object lacks was never sent: forwarded
    within = all(
        name in subscribed
        and (
            (subscribed[name] is None and (wanted is None or set(wanted) <= set(state[name])))
            or (wanted is not None and set(wanted) <= set(subscribed[name] or []))
        )
        for name, wanted in query.items()
    )
    assert (cached_query(subscribed, state, query) is not None) == within


def test_all_fields_needs_an_all_fields_subscription() -> None:
    state = {"extruder": {"temperature": 20.0, "target": 0.0}}
    assert not covers({"extruder": ["temperature", "target"]}, state, {"extruder": None})
    assert covers({"extruder": None}, state, {"extruder": None})
    assert covers({"extruder": None}, state, {"extruder": ["target"]})
    assert answer(state, {"extruder": ["target"]}) == {"extruder": {"target": 0.0}}


def test_an_internal_subscription_covers_only_its_fields() -> None:
    # e.g. the temperature store's heaters: only these fields are pushed
    subscribed: ObjectSpec = {
        "webhooks": None,
        "heaters": None,
        "extruder": ["power", "target", "temperature"],
    }
    state: dict[str, dict[str, Any]] = {
        "webhooks": {"state": "ready", "state_message": "Printer is ready"},
        "heaters": {"available_heaters": ["extruder"]},
        "extruder": {"power": 0.0, "target": 0.0, "temperature": 21.0},
    }
    assert cached_query(subscribed, state, {"extruder": ["temperature"]}) == {
        "extruder": {"temperature": 21.0}
    }
    assert cached_query(subscribed, state, {"extruder": ["pressure_advance"]}) is None
    assert cached_query(subscribed, state, {"extruder": None}) is None
    assert cached_query(subscribed, state, {"toolhead": ["position"]}) is None
    assert cached_query(subscribed, state, {"webhooks": None}) == {"webhooks": state["webhooks"]}


def test_unknown_objects_and_empty_field_lists_answer_as_klippy() -> None:
    subscribed: ObjectSpec = {"no_such_object": None, "toolhead": ["position"]}
    state: dict[str, dict[str, Any]] = {"no_such_object": {}, "toolhead": {"position": [0, 0]}}
    got = cached_query(subscribed, state, {"no_such_object": None, "toolhead": []})
    assert got == {"no_such_object": {}, "toolhead": {}}
    assert cached_query(subscribed, state, {}) == {}


def test_nothing_subscribed_or_nothing_received_forwards() -> None:
    assert cached_query(None, {}, {}) is None
    assert cached_query({"toolhead": None}, {}, {"toolhead": None}) is None  # not received yet
    partial = {"toolhead": {"position": [0, 0]}}
    assert (
        cached_query(
            {"toolhead": ["position", "homed_axes"]}, partial, {"toolhead": ["homed_axes"]}
        )
        is None
    )


def test_answers_are_new_dicts() -> None:
    state = {"toolhead": {"position": [0, 0]}}
    got = answer(state, {"toolhead": None})
    got["toolhead"]["position"] = "changed"
    assert state["toolhead"]["position"] == [0, 0]


# --- freshness ------------------------------------------------------------------------------


def test_a_write_waits_for_the_next_push() -> None:
    f = Freshness()
    assert f.fresh
    f.wrote()
    assert not f.fresh
    f.pushed()
    assert f.fresh


def test_a_subscribe_result_confirms_only_the_writes_before_it_was_asked() -> None:
    f = Freshness()
    f.wrote()
    mark = f.mark()
    f.wrote()  # answered while the subscribe was on its way
    f.refreshed(mark)
    assert not f.fresh
    f.refreshed(f.mark())
    assert f.fresh
    f.refreshed(0)  # an older mark never undoes a confirmation
    assert f.fresh


@given(st.lists(st.sampled_from(["wrote", "pushed", "mark", "refresh"]), max_size=30))
def test_fresh_means_no_write_since_the_last_confirmation(ops: list[str]) -> None:
    f = Freshness()
    marks: list[int] = []
    unconfirmed_writes = 0
    writes = 0
    for op in ops:
        if op == "wrote":
            f.wrote()
            writes += 1
            unconfirmed_writes += 1
        elif op == "pushed":
            f.pushed()
            unconfirmed_writes = 0
        elif op == "mark":
            marks.append(writes)
            assert f.mark() == writes
        elif marks:
            mark = marks.pop(0)
            f.refreshed(mark)
            unconfirmed_writes = min(unconfirmed_writes, writes - mark)
        assert f.fresh == (unconfirmed_writes == 0)
