"""The status fan-out core: object specs, the state cache, per-client coalescing views."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.status import (
    ClientView,
    ObjectSpec,
    Status,
    StatusCache,
    Subscriptions,
    filter_diff,
    filter_status,
    merge_diff,
    merge_specs,
    normalize_spec,
)

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "klippy-transcripts"

#: Every object of the batch-mode printer, as klippy answered an objects/query of all of them.
QUERY_ALL = json.loads((TRANSCRIPTS / "objects_query_all.json").read_text())
STATE: Status = QUERY_ALL["status"]


def session(name: str) -> list[dict[str, Any]]:
    lines = (TRANSCRIPTS / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def subscribe_and_updates(name: str) -> tuple[ObjectSpec, dict[str, Any], list[dict[str, Any]]]:
    """The first objects/subscribe of a session: its spec, its result, the updates after it."""
    msgs = [r["msg"] for r in session(name) if isinstance(r.get("msg"), dict)]
    start = next(i for i, m in enumerate(msgs) if m.get("method") == "objects/subscribe")
    sub = msgs[start]
    result = next(m["result"] for m in msgs[start:] if m.get("id") == sub["id"] and "result" in m)
    updates = [m["params"] for m in msgs[start:] if m.get("method") == "process_status_update"]
    return sub["params"]["objects"], result, updates


# --- normalize_spec ---------------------------------------------------------------------------


def test_normalize_spec_accepts_moonraker_clients_subscription() -> None:
    spec, _, _ = subscribe_and_updates("session-realtime.jsonl")
    assert normalize_spec(spec) == spec
    assert spec["toolhead"] == ["position", "print_time", "estimated_print_time", "homed_axes"]
    assert spec["webhooks"] is None


def test_normalize_spec_copies_and_drops_duplicate_fields() -> None:
    raw: dict[str, Any] = {"extruder": ["target", "temperature", "target"], "toolhead": None}
    spec = normalize_spec(raw)
    assert spec == {"extruder": ["target", "temperature"], "toolhead": None}
    raw["extruder"].append("power")
    assert spec["extruder"] == ["target", "temperature"]


def test_normalize_spec_keeps_an_empty_list_as_no_fields() -> None:
    spec = normalize_spec({"heater_bed": []})
    assert spec == {"heater_bed": []}
    # klippy reports such an object as {} in a snapshot, never in an update
    assert filter_status(STATE, spec) == {"heater_bed": {}}
    assert filter_diff(STATE, spec) == {}


def test_normalize_spec_empty_dict_is_empty_spec() -> None:
    assert normalize_spec({}) == {}


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (["toolhead"], "objects must map object names"),
        ("toolhead", "not str"),
        (None, "not NoneType"),
        ({1: None}, "object name must be a string, not 1"),
        ({"toolhead": "position"}, r"objects\['toolhead'\] must be null or a list"),
        ({"toolhead": {"position": True}}, r"objects\['toolhead'\].*not dict"),
        ({"extruder": ["target", 3]}, r"objects\['extruder'\] field name must be a string: 3"),
        ({"extruder": [None]}, r"objects\['extruder'\] field name .*None"),
    ],
)
def test_normalize_spec_rejects_bad_input_naming_the_culprit(raw: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        normalize_spec(raw)


# --- merge_specs ------------------------------------------------------------------------------


def test_merge_specs_unions_fields_and_none_wins() -> None:
    merged = merge_specs(
        [
            {"extruder": ["temperature", "target"], "toolhead": ["position"]},
            {"extruder": ["power", "target"], "toolhead": None, "webhooks": None},
            {"toolhead": ["homed_axes"], "heater_bed": []},
        ]
    )
    assert merged == {
        "extruder": ["power", "target", "temperature"],
        "toolhead": None,
        "webhooks": None,
        "heater_bed": [],
    }


def test_merge_specs_none_wins_whatever_the_order() -> None:
    a: ObjectSpec = {"toolhead": None}
    b: ObjectSpec = {"toolhead": ["position"]}
    assert merge_specs([a, b]) == merge_specs([b, a]) == {"toolhead": None}


def test_merge_specs_of_nothing_is_empty() -> None:
    assert merge_specs([]) == {}
    assert merge_specs([{}, {}]) == {}


def test_merge_specs_does_not_alias_inputs() -> None:
    spec: ObjectSpec = {"extruder": ["temperature"]}
    merged = merge_specs([spec])
    assert merged == spec
    assert merged["extruder"] is not spec["extruder"]


# --- filter_status / filter_diff / merge_diff -------------------------------------------------


def test_filter_status_on_real_state() -> None:
    spec: ObjectSpec = {
        "toolhead": ["position", "homed_axes", "no_such_field"],
        "extruder": None,
        "no_such_object": None,
        "temperature_sensor chamber": ["temperature"],
        "heater_bed": ["no_such_field"],
    }
    assert filter_status(STATE, spec) == {
        "toolhead": {"position": [0.0, 0.0, 0.0, 0.0], "homed_axes": ""},
        "extruder": {
            "can_extrude": True,
            "motion_queue": None,
            "power": 0.0,
            "pressure_advance": 0.0,
            "smooth_time": 0.04,
            "target": 0.0,
            "temperature": 0.0,
        },
        "temperature_sensor chamber": {"temperature": 0.0},
        "heater_bed": {},
    }


def test_filter_status_with_long_field_list_keeps_only_present_fields() -> None:
    # more requested fields than the object has: the other code path of the selection
    fields = ["temperature", "target", "power", "a", "b", "c", "d", "e", "f"]
    assert filter_status(STATE, {"heater_bed": fields}) == {
        "heater_bed": {"temperature": 0.0, "target": 0.0, "power": 0.0}
    }


def test_filter_status_returns_new_object_dicts() -> None:
    before = copy.deepcopy(STATE["print_stats"])
    out = filter_status(STATE, {"print_stats": None, "toolhead": ["position"]})
    assert out["print_stats"] == STATE["print_stats"]
    assert out["print_stats"] is not STATE["print_stats"]
    out["print_stats"]["state"] = "printing"
    out["toolhead"]["homed_axes"] = "xyz"
    assert STATE["print_stats"] == before
    assert STATE["toolhead"]["homed_axes"] == ""


def test_filter_diff_drops_objects_with_nothing_wanted() -> None:
    diff: Status = {
        "toolhead": {"print_time": 45.3, "position": [101.0, 100.0, 10.0, 0.0]},
        "extruder": {"target": 200.0},
        "heater_bed": {"target": 60.0},
        "gcode_move": {"speed": 6000.0},
    }
    spec: ObjectSpec = {"toolhead": ["position"], "extruder": ["temperature"], "heater_bed": None}
    assert filter_diff(diff, spec) == {
        "toolhead": {"position": [101.0, 100.0, 10.0, 0.0]},
        "heater_bed": {"target": 60.0},
    }
    assert filter_diff(diff, {"extruder": ["temperature"], "fan": None}) == {}
    assert filter_diff({"extruder": {}}, {"extruder": None}) == {}


def test_merge_diff_replaces_fields_whole_and_copies_new_objects() -> None:
    into: Status = {"print_stats": {"state": "printing", "info": {"total_layer": 10, "x": 1}}}
    new_obj = {"speed": 6000.0}
    merge_diff(into, {"print_stats": {"info": {"total_layer": 12}}, "gcode_move": new_obj})
    assert into == {
        "print_stats": {"state": "printing", "info": {"total_layer": 12}},
        "gcode_move": {"speed": 6000.0},
    }
    assert into["gcode_move"] is not new_obj


# --- StatusCache ------------------------------------------------------------------------------


def test_cache_replay_of_a_real_session_matches_klippys_later_query() -> None:
    _, result, updates = subscribe_and_updates("session-basic.jsonl")
    cache = StatusCache()
    assert cache.replace(result["status"], result["eventtime"]) == {}
    assert cache.eventtime == result["eventtime"]
    records = session("session-basic.jsonl")
    query_at = next(
        i for i, r in enumerate(records) if r["dir"] == "rx" and r["msg"].get("id") == 30
    )
    for record in records[:query_at]:
        if record["msg"].get("method") == "process_status_update":
            cache.update(record["msg"]["params"]["status"], record["msg"]["params"]["eventtime"])
    query = records[query_at]["msg"]["result"]
    assert cache.get({"print_stats": None, "virtual_sdcard": None}) == query["status"]
    assert cache.get({"print_stats": ["state"]}) == {"print_stats": {"state": "complete"}}
    assert cache.eventtime == query["eventtime"]  # the update sent just before the answer
    assert len(updates) == 14


def test_cache_update_merges_fields_and_adds_objects() -> None:
    cache = StatusCache()
    cache.replace({"extruder": {"temperature": 20.0, "target": 0.0}}, 1.0)
    cache.update({"extruder": {"target": 200.0}, "fan": {"speed": 0.5}}, 1.25)
    assert cache.get({"extruder": None, "fan": None}) == {
        "extruder": {"temperature": 20.0, "target": 200.0},
        "fan": {"speed": 0.5},
    }
    assert cache.objects == ("extruder", "fan")
    assert "fan" in cache
    assert len(cache) == 2
    assert cache.eventtime == 1.25
    cache.update({"fan": {"speed": 0.0}})  # no eventtime: keeps the last one
    assert cache.eventtime == 1.25
    assert cache.state["fan"] == {"speed": 0.0}


def test_cache_replace_does_not_keep_or_change_its_argument() -> None:
    status = copy.deepcopy(STATE)
    cache = StatusCache()
    cache.replace(status, QUERY_ALL["eventtime"])
    cache.update({"toolhead": {"homed_axes": "xyz"}, "new_object": {"x": 1}})
    assert status == STATE
    assert cache.snapshot()["toolhead"]["homed_axes"] == "xyz"
    snap = cache.snapshot()
    snap["toolhead"]["homed_axes"] = ""
    assert cache.state["toolhead"]["homed_axes"] == "xyz"


def test_cache_replace_reports_changes_and_drops_unsubscribed_objects() -> None:
    cache = StatusCache()
    cache.replace({"extruder": {"temperature": 20.0, "target": 0.0}, "fan": {"speed": 0.5}}, 1.0)
    changed = cache.replace(
        {"extruder": {"temperature": 21.0, "target": 0.0, "power": 0.1}, "heater_bed": {"x": 1}},
        2.0,
    )
    # changed or new fields of objects that were cached; new objects are in the snapshot only
    assert changed == {"extruder": {"temperature": 21.0, "power": 0.1}}
    assert cache.objects == ("extruder", "heater_bed")
    assert cache.eventtime == 2.0


def test_cache_clear() -> None:
    cache = StatusCache()
    cache.replace(STATE, 5.0)
    cache.clear()
    assert cache.objects == ()
    assert cache.eventtime == 0.0
    assert cache.get({"toolhead": None}) == {}


# --- ClientView -------------------------------------------------------------------------------


def test_client_view_coalesces_offers() -> None:
    view = ClientView({"extruder": ["temperature", "target"], "toolhead": None})
    assert not view.has_pending
    assert view.take() is None
    assert view.offer({"extruder": {"temperature": 20.0, "power": 0.5}}, 1.0)
    assert not view.offer({"fan": {"speed": 1.0}, "extruder": {"power": 0.6}}, 1.25)
    assert view.offer({"extruder": {"temperature": 21.0, "target": 200.0}}, 1.5)
    assert view.offer({"toolhead": {"position": [1.0, 2.0, 3.0, 0.0]}}, 1.75)
    assert view.has_pending
    assert view.take() == (
        {
            "extruder": {"temperature": 21.0, "target": 200.0},
            "toolhead": {"position": [1.0, 2.0, 3.0, 0.0]},
        },
        1.75,
    )
    assert not view.has_pending
    assert view.take() is None


def test_client_view_irrelevant_offer_keeps_eventtime() -> None:
    view = ClientView({"extruder": ["temperature"]})
    view.offer({"extruder": {"temperature": 20.0}}, 1.0)
    view.offer({"extruder": {"target": 1.0}}, 2.0)
    assert view.take() == ({"extruder": {"temperature": 20.0}}, 1.0)


def test_client_view_pending_does_not_alias_offered_diffs() -> None:
    view = ClientView({"extruder": None})
    diff: Status = {"extruder": {"temperature": 20.0}}
    view.offer(diff, 1.0)
    view.offer({"extruder": {"target": 60.0}}, 2.0)
    assert diff == {"extruder": {"temperature": 20.0}}


def test_client_view_resubscribe_and_clear_drop_pending() -> None:
    view = ClientView({"extruder": None})
    view.offer({"extruder": {"temperature": 20.0}}, 1.0)
    view.resubscribe({"heater_bed": None})
    assert view.spec == {"heater_bed": None}
    assert view.take() is None
    assert not view.offer({"extruder": {"temperature": 21.0}}, 2.0)
    view.offer({"heater_bed": {"temperature": 21.0}}, 2.0)
    view.clear()
    assert view.take() is None


def test_views_of_a_real_realtime_session_track_the_cache() -> None:
    spec, result, updates = subscribe_and_updates("session-realtime.jsonl")
    cache = StatusCache()
    cache.replace(result["status"], result["eventtime"])
    specs: list[ObjectSpec] = [
        spec,
        {"temperature_sensor fake_extruder": ["temperature"]},
        {"print_stats": ["state", "message"], "toolhead": ["homed_axes"]},
    ]
    views = [ClientView(s) for s in specs]
    seen = [cache.get(s) for s in specs]
    states = []  # print states as the slowest client saw them, coalesced
    for n, update in enumerate(updates):
        cache.update(update["status"], update["eventtime"])
        for i, view in enumerate(views):
            view.offer(update["status"], update["eventtime"])
            if n % (i + 2) == 0 and (taken := view.take()) is not None:
                merge_diff(seen[i], taken[0])
                assert taken[1] <= update["eventtime"]
                if i == 2 and "state" in taken[0].get("print_stats", {}):
                    states.append(taken[0]["print_stats"]["state"])
    for i, view in enumerate(views):
        if (taken := view.take()) is not None:
            merge_diff(seen[i], taken[0])
        assert seen[i] == cache.get(specs[i])
    assert states == [
        *("printing", "paused", "printing", "complete"),  # job 1
        *("printing", "cancelled"),  # job 2
        *("standby", "error", "standby"),  # job 3, then SDCARD_RESET_FILE
    ]
    assert seen[2]["print_stats"] == {"state": "standby", "message": ""}
    assert seen[1] == {"temperature_sensor fake_extruder": {"temperature": 25.0}}  # ramped back


# --- Subscriptions ----------------------------------------------------------------------------


def test_subscriptions_merge_and_change_detection() -> None:
    subs: Subscriptions[str] = Subscriptions()
    assert subs.merged() == {}
    assert subs.set("a", {"extruder": ["temperature"]})
    assert subs.set("b", {"extruder": ["target"], "toolhead": None})
    assert subs.merged() == {"extruder": ["target", "temperature"], "toolhead": None}
    assert not subs.set("c", {"toolhead": ["position"], "extruder": ["temperature"]})
    assert len(subs) == 3
    assert "c" in subs
    assert "z" not in subs
    assert not subs.remove("c")
    assert not subs.remove("c")  # already gone
    assert subs.remove("b")
    assert subs.merged() == {"extruder": ["temperature"]}
    assert subs.set("a", {})  # an empty spec unsubscribes
    assert "a" not in subs
    assert len(subs) == 0
    assert subs.merged() == {}
    assert not subs.set("a", {})


def test_subscriptions_resubscribe_replaces_and_clears_pending() -> None:
    subs: Subscriptions[int] = Subscriptions()
    subs.set(1, {"extruder": None})
    view = subs.get(1)
    assert view is not None
    view.offer({"extruder": {"temperature": 1.0}}, 1.0)
    assert subs.set(1, {"heater_bed": None})
    assert subs.get(1) is view
    assert view.spec == {"heater_bed": None}
    assert not view.has_pending
    assert subs.merged() == {"heater_bed": None}


def test_subscriptions_merged_is_a_copy() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.set("a", {"extruder": ["temperature"]})
    merged = subs.merged()
    fields = merged["extruder"]
    assert fields is not None
    fields.append("target")
    assert subs.merged() == {"extruder": ["temperature"]}


def test_subscriptions_validate_specs() -> None:
    subs: Subscriptions[str] = Subscriptions()
    with pytest.raises(ValueError, match="extruder"):
        subs.set("a", {"extruder": "temperature"})  # type: ignore[dict-item]
    assert len(subs) == 0


def test_subscriptions_offer_returns_who_got_something() -> None:
    subs: Subscriptions[str] = Subscriptions()
    subs.set("a", {"extruder": ["temperature"]})
    subs.set("b", {"extruder": None})
    subs.set("c", {"heater_bed": None})
    diff: Status = {"extruder": {"target": 200.0}}
    assert subs.offer(diff, 1.0) == ["b"]
    assert subs.offer({"extruder": {"temperature": 5.0}}, 2.0, exclude="b") == ["a"]
    view_b = subs.get("b")
    assert view_b is not None
    assert view_b.take() == ({"extruder": {"target": 200.0}}, 1.0)
    assert sorted(subs) == ["a", "b", "c"]
    assert [cid for cid, _ in subs.items()] == ["a", "b", "c"]
    assert len(subs.views()) == 3
    subs.clear()
    assert len(subs) == 0
    assert subs.merged() == {}


# --- properties -------------------------------------------------------------------------------

OBJECTS = sorted(STATE)
EXTRA_FIELDS = ["extra_a", "extra_b"]
FIELDS = {name: sorted(fields) + EXTRA_FIELDS for name, fields in STATE.items()}
ALL_FIELDS = sorted({f for fields in FIELDS.values() for f in fields})

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def diffs(draw: st.DrawFn) -> Status:
    """A klippy update: some existing objects, some of their fields (or new ones), new values."""
    names = draw(st.lists(st.sampled_from(OBJECTS), max_size=4, unique=True))
    return {
        name: draw(
            st.dictionaries(st.sampled_from(FIELDS[name]), json_values, min_size=1, max_size=4)
        )
        for name in names
    }


specs = st.dictionaries(
    st.sampled_from([*OBJECTS, "no_such_object"]),
    st.none() | st.lists(st.sampled_from(ALL_FIELDS), max_size=5, unique=True),
    max_size=8,
)


@given(spec=specs, updates=st.lists(diffs(), max_size=8))
def test_filtered_diffs_on_filtered_snapshot_equal_filtered_state(
    spec: ObjectSpec, updates: list[Status]
) -> None:
    cache = StatusCache()
    cache.replace(STATE, 0.0)
    view_state = filter_status(STATE, spec)
    for diff in updates:
        cache.update(diff)
        merge_diff(view_state, filter_diff(diff, spec))
        assert cache.get(spec) == view_state
    assert filter_status(cache.state, spec) == view_state


@given(spec=specs, updates=st.lists(diffs(), max_size=10))
def test_coalesced_view_loses_nothing(spec: ObjectSpec, updates: list[Status]) -> None:
    cache = StatusCache()
    cache.replace(STATE, 0.0)
    snapshot = cache.get(spec)
    view = ClientView(spec)
    last_relevant = None
    for n, diff in enumerate(updates, start=1):
        cache.update(diff, float(n))
        if view.offer(diff, float(n)):
            last_relevant = float(n)
    final = cache.get(spec)
    # bounded: what is pending is a subset of the client's state, field for field
    taken = view.take()
    assert not view.has_pending
    if taken is None:
        assert last_relevant is None
        assert snapshot == final
        return
    pending, eventtime = taken
    assert eventtime == last_relevant
    for name, fields in pending.items():
        assert fields
        assert fields.items() <= final[name].items()
    merge_diff(snapshot, pending)
    assert snapshot == final


@given(clients=st.lists(specs, max_size=6), drop=st.sets(st.integers(0, 5)))
def test_merged_spec_covers_every_client_and_nothing_more(
    clients: list[ObjectSpec], drop: set[int]
) -> None:
    subs: Subscriptions[int] = Subscriptions()
    for cid, spec in enumerate(clients):
        before = subs.merged()
        changed = subs.set(cid, spec)
        assert changed == (subs.merged() != before)
    for cid in drop:
        before = subs.merged()
        changed = subs.remove(cid)
        assert changed == (subs.merged() != before)
    live = [spec for cid, spec in enumerate(clients) if cid not in drop and spec]
    merged = subs.merged()
    assert merged == merge_specs(reversed(live))
    assert len(subs) == len(live)
    for spec in live:  # covers
        for name, fields in spec.items():
            assert name in merged
            have = merged[name]
            if fields is None:
                assert have is None
            elif have is not None:
                assert set(fields) <= set(have)
    for name, have in merged.items():  # minimal
        asked = [spec[name] for spec in live if name in spec]
        assert asked
        if have is None:
            assert None in asked
        else:
            assert None not in asked
            assert set(have) == {f for fields in asked if fields is not None for f in fields}


spec_like = st.dictionaries(
    json_scalars,
    st.none() | st.lists(json_scalars, max_size=4) | json_values,
    max_size=4,
)


@given(raw=json_values | spec_like)
def test_normalize_spec_raises_only_value_error(raw: Any) -> None:
    try:
        spec = normalize_spec(raw)
    except ValueError:
        return
    assert isinstance(spec, dict)
    for name, fields in spec.items():
        assert isinstance(name, str)
        assert fields is None or all(isinstance(f, str) for f in fields)
    assert normalize_spec(spec) == spec


# --- shared frames: the same bytes as one view per client ---------------------------------


def _encoded(taken: tuple[Status, float] | None) -> str | None:
    return None if taken is None else json.dumps([taken[0], taken[1]], separators=(",", ":"))


#: Specs as a frontend's clients send them: several identical, one the same objects in another
#: order (a different group: its bytes differ), and a subset.
shared_specs = st.lists(
    st.sampled_from(
        [
            {"extruder": None, "toolhead": ["position", "homed_axes"], "webhooks": None},
            {"toolhead": ["position", "homed_axes"], "extruder": None, "webhooks": None},
            {"extruder": ["temperature", "target"]},
        ]
    )
    | specs,
    min_size=1,
    max_size=6,
)


@given(
    clients=shared_specs,
    updates=st.lists(diffs(), max_size=10),
    reads=st.lists(st.sets(st.integers(0, 5)), max_size=10),
)
def test_shared_frames_give_each_client_the_bytes_of_its_own_view(
    clients: list[ObjectSpec], updates: list[Status], reads: list[set[int]]
) -> None:
    """Whoever reads when, each client takes exactly what a view of its own would give it
    (equal JSON text, key order included), and shared frames are never changed by a merge."""
    subs: Subscriptions[int] = Subscriptions()
    own: dict[int, ClientView] = {}
    for cid, spec in enumerate(clients):
        subs.set(cid, spec)
        if spec:
            own[cid] = ClientView(normalize_spec(spec))
    frames: list[tuple[Status, str]] = []
    for n, diff in enumerate(updates):
        got = subs.offer(diff, float(n))
        # the same clients (in groups of one spec, so not in subscription order)
        assert sorted(got) == [cid for cid, view in own.items() if view.offer(diff, float(n))]
        readers = reads[n] if n < len(reads) else set(own)
        for cid in readers & set(own):
            view = subs.get(cid)
            assert view is not None
            frame = view.take_frame()
            expected = _encoded(own[cid].take())
            got_text = None if frame is None else _encoded((frame.status, frame.eventtime))
            assert got_text == expected
            if frame is not None:
                frames.append((frame.status, json.dumps(frame.status)))
    for cid, reference in own.items():
        view = subs.get(cid)
        assert view is not None
        assert _encoded(view.take()) == _encoded(reference.take())
    for status, text in frames:  # what was handed out stayed as it was
        assert json.dumps(status) == text


def test_clients_with_one_spec_share_one_frame_and_a_slow_one_merges_its_own() -> None:
    subs: Subscriptions[int] = Subscriptions()
    spec: ObjectSpec = {"extruder": ["temperature"], "toolhead": None}
    for cid in range(3):
        subs.set(cid, dict(spec))
    subs.set(3, {"toolhead": None, "extruder": ["temperature"]})  # other order: own group
    assert subs.offer({"extruder": {"temperature": 20.0, "power": 1.0}}, 1.0) == [0, 1, 2, 3]
    views = [subs.get(cid) for cid in range(4)]
    assert all(v is not None for v in views)
    frames = [v.take_frame() for v in views[:2] if v is not None]
    assert frames[0] is frames[1]  # one frame, so one encoding, for the group
    assert frames[0] is not None
    assert frames[0].status == {"extruder": {"temperature": 20.0}}
    # client 2 did not read: the next update is merged into a copy of its own
    subs.offer({"toolhead": {"position": [1.0]}}, 2.0)
    slow = views[2]
    assert slow is not None
    merged = {"extruder": {"temperature": 20.0}, "toolhead": {"position": [1.0]}}
    assert slow.take() == (merged, 2.0)
    assert frames[0].status == {"extruder": {"temperature": 20.0}}  # the shared one unchanged
    other = views[3]
    assert other is not None
    taken = other.take_frame()
    assert taken is not None
    assert taken is not frames[0]
