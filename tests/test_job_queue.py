"""The job queue's pure core: Moonraker 0.11's queue states, actions and job events."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.config import JobQueueConfig, load_config
from trioprint.domain.job_queue import (
    ACTIONS,
    QUEUE_STATES,
    JobEvent,
    JobEvents,
    JobQueue,
    PopRequest,
    QueuedJob,
    UnknownJob,
    load_jobs,
)
from trioprint.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs: Any) -> tuple[JobQueue, Clock]:
    clock = Clock()
    ids = (f"{n:016X}" for n in itertools.count(1))
    return JobQueue(clock=clock, new_id=lambda: next(ids), **kwargs), clock


def actions(queue: JobQueue) -> list[tuple[str, str]]:
    return [(n["action"], n["queue_state"]) for n in queue.take_notifications()]


def load_first(queue: JobQueue, *, can_print: bool = True) -> QueuedJob | None:
    """Walk the load protocol as the component does, the print starting fine."""
    job = queue.pop_begin()
    if job is None or not queue.pop_check(can_print):
        return None
    queue.pop_starting()
    queue.pop_loaded(job.job_id)
    return job


def test_added_jobs_are_listed_with_moonraker_s_fields() -> None:
    queue, clock = make()
    queue.add(["a.gcode", "b.gcode"], user="alice")
    clock.now += 5
    snapshot = queue.snapshot()
    assert snapshot == {
        "queued_jobs": [
            {
                "filename": "a.gcode",
                "job_id": "0000000000000001",
                "time_added": 1000.0,
                "time_in_queue": 5.0,
            },
            {
                "filename": "b.gcode",
                "job_id": "0000000000000002",
                "time_added": 1000.0,
                "time_in_queue": 5.0,
            },
        ],
        "queue_state": "paused",
    }
    (note,) = queue.take_notifications()
    assert note["action"] == "jobs_added"
    assert [j["filename"] for j in note["updated_queue"]] == ["a.gcode", "b.gcode"]
    assert note["queue_state"] == "paused"
    assert queue.take_jobs_changed() is True
    assert queue.take_jobs_changed() is False
    # the user is kept (for the print) but not served
    assert queue.records()[0]["user"] == "alice"


def test_reset_replaces_the_queue() -> None:
    queue, _ = make()
    queue.add(["a.gcode"])
    queue.add(["b.gcode", "c.gcode"], reset=True)
    assert [j["filename"] for j in queue.queued()] == ["b.gcode", "c.gcode"]


def test_start_loads_the_first_job_and_stays_ready_with_automatic_transition() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode", "b.gcode"])
    queue.take_notifications()
    queue.start(can_print=True)
    assert queue.state == "loading"
    assert queue.take_pop_request() == PopRequest(0.01, need_transition=False)
    job = load_first(queue)
    assert job is not None
    assert job.filename == "a.gcode"
    assert actions(queue) == [
        ("state_changed", "loading"),
        ("state_changed", "starting"),
        ("job_loaded", "ready"),
    ]
    assert [j["filename"] for j in queue.queued()] == ["b.gcode"]
    # the print runs, then completes: the next one is asked for, with the transition G-code
    queue.job_event(JobEvent.STARTED)
    queue.job_event(JobEvent.COMPLETE)
    assert queue.state == "loading"
    assert queue.take_pop_request() == PopRequest(0.01, need_transition=True)
    assert load_first(queue) is not None
    assert queue.state == "paused"  # nothing left
    assert queue.queued() == []


def test_without_automatic_transition_each_start_loads_one_job() -> None:
    queue, _ = make(automatic=False)
    queue.add(["a.gcode", "b.gcode"])
    queue.start(can_print=True)
    load_first(queue)
    assert queue.state == "paused"
    queue.job_event(JobEvent.COMPLETE)
    assert queue.take_pop_request() is not None  # the first start's request
    assert queue.take_pop_request() is None  # a completed print asks for nothing
    assert queue.state == "paused"


def test_transition_delay_is_the_configured_one() -> None:
    queue, _ = make(automatic=True, job_delay=2.5)
    queue.add(["a.gcode", "b.gcode"])
    queue.start(can_print=True)
    queue.take_pop_request()
    load_first(queue)
    queue.job_event(JobEvent.COMPLETE)
    assert queue.take_pop_request() == PopRequest(2.5, need_transition=True)


@pytest.mark.parametrize(("automatic", "state"), [(True, "ready"), (False, "paused")])
def test_start_while_the_printer_is_busy(automatic: bool, state: str) -> None:
    queue, _ = make(automatic=automatic)
    queue.add(["a.gcode"])
    queue.start(can_print=False)
    assert queue.state == state
    assert queue.take_pop_request() is None


def test_start_with_an_empty_queue_stays_paused() -> None:
    queue, _ = make(automatic=True)
    queue.start(can_print=True)
    assert queue.state == "paused"
    assert queue.take_pop_request() is None
    assert queue.take_notifications() == []


def test_adding_while_printing_makes_an_automatic_queue_ready() -> None:
    queue, _ = make(automatic=True)
    queue.job_event(JobEvent.STARTED)
    queue.add(["a.gcode"])
    assert queue.state == "ready"
    assert actions(queue) == [("jobs_added", "paused"), ("state_changed", "ready")]
    queue.job_event(JobEvent.COMPLETE)
    assert queue.state == "loading"


def test_a_pause_request_keeps_added_jobs_waiting() -> None:
    queue, _ = make(automatic=True)
    queue.pause()
    queue.job_event(JobEvent.PAUSED)
    queue.add(["a.gcode"])
    assert queue.state == "paused"
    queue.start(can_print=False)  # start clears the request
    assert queue.state == "ready"


def test_pause_drops_a_scheduled_load_and_wins_over_one_under_way() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode", "b.gcode"])
    queue.start(can_print=True)
    queue.take_pop_cancelled()
    queue.pause()
    assert queue.state == "paused"
    assert queue.take_pop_request() is None
    assert queue.take_pop_cancelled() is True
    # a load whose timer had already fired finds the queue paused
    assert queue.pop_begin() is None
    queue.start(can_print=True)
    job = queue.pop_begin()
    assert job is not None
    queue.pause()  # while klippy is being asked
    assert queue.pop_check(True) is False
    assert len(queue.jobs) == 2


def test_a_pause_during_the_transition_gcode_stops_the_load() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode"])
    queue.start(can_print=True)
    assert queue.pop_begin() is not None
    assert queue.pop_check(True)
    queue.pause()
    assert queue.pop_transition_done() is False
    assert queue.state == "paused"
    assert len(queue.jobs) == 1


def test_a_pause_while_starting_keeps_the_queue_paused_after_the_load() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode", "b.gcode"])
    queue.start(can_print=True)
    job = queue.pop_begin()
    assert job is not None
    assert queue.pop_check(True)
    queue.pop_starting()
    queue.pause()
    queue.pop_loaded(job.job_id)
    assert queue.state == "paused"
    assert [j["filename"] for j in queue.queued()] == ["b.gcode"]


def test_a_failed_start_pauses_and_keeps_the_job() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode"])
    queue.start(can_print=True)
    assert queue.pop_begin() is not None
    assert queue.pop_check(True)
    queue.pop_starting()
    queue.pop_failed()
    assert queue.state == "paused"
    assert len(queue.jobs) == 1


def test_a_busy_printer_at_load_time_pauses() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode"])
    queue.start(can_print=True)
    queue.pop_begin()
    assert queue.pop_check(False) is False
    assert queue.state == "paused"


def test_a_load_with_nothing_queued_pauses() -> None:
    queue, _ = make(automatic=True)
    queue.add(["a.gcode"])
    queue.start(can_print=True)
    queue.delete([], every=True)
    assert queue.pop_begin() is None
    assert queue.state == "paused"


@pytest.mark.parametrize("event", [JobEvent.ERROR, JobEvent.CANCELLED])
def test_an_aborted_print_pauses_a_queue_with_jobs(event: JobEvent) -> None:
    queue, _ = make(automatic=True)
    queue.job_event(JobEvent.STARTED)
    queue.add(["a.gcode"])
    assert queue.state == "ready"
    queue.job_event(event)
    assert queue.state == "paused"
    assert queue.take_pop_request() is None


def test_delete_jobs() -> None:
    queue, _ = make()
    queue.delete(["nope"])
    assert queue.take_notifications() == []  # nothing queued: nothing to say
    queue.add(["a.gcode", "b.gcode", "c.gcode"])
    queue.take_notifications()
    ids = list(queue.jobs)
    queue.delete([ids[1], "unknown"])
    (note,) = queue.take_notifications()
    assert note["action"] == "jobs_removed"
    assert [j["filename"] for j in note["updated_queue"]] == ["a.gcode", "c.gcode"]
    queue.delete([])
    assert queue.take_notifications() == []
    queue.delete([], every=True)
    assert queue.jobs == {}
    assert [n["action"] for n in queue.take_notifications()] == ["jobs_removed"]


def test_jump_moves_a_job_to_the_front_without_a_notification() -> None:
    queue, _ = make()
    queue.add(["a.gcode", "b.gcode", "c.gcode"])
    queue.take_notifications()
    queue.take_jobs_changed()
    last = list(queue.jobs)[2]
    queue.jump(last)
    assert [j["filename"] for j in queue.queued()] == ["c.gcode", "a.gcode", "b.gcode"]
    assert queue.take_notifications() == []
    assert queue.take_jobs_changed() is True
    with pytest.raises(UnknownJob):
        queue.jump("0000000000000BAD")


def test_load_on_startup() -> None:
    queue, _ = make(load_on_startup=True)
    queue.klippy_ready()
    assert queue.take_pop_request() is None  # nothing queued
    queue.add(["a.gcode"])
    queue.klippy_ready()
    assert queue.state == "loading"
    assert queue.take_pop_request() == PopRequest(1.0, need_transition=False)
    other, _ = make(load_on_startup=False)
    other.add(["a.gcode"])
    other.klippy_ready()
    assert other.state == "paused"
    assert other.take_pop_request() is None


def test_klippy_shutdown_pauses_without_being_a_pause_request() -> None:
    queue, _ = make(automatic=True)
    queue.job_event(JobEvent.STARTED)
    queue.add(["a.gcode"])
    assert queue.state == "ready"
    queue.klippy_shutdown()
    assert queue.state == "paused"
    assert queue.pause_requested is False
    queue.pause()
    queue.klippy_shutdown()
    assert queue.pause_requested is True


def test_ids_are_unique_even_if_the_generator_repeats() -> None:
    ids = iter(["A", "A", "B"])
    queue = JobQueue(clock=Clock(), new_id=lambda: next(ids))
    queue.add(["x.gcode", "y.gcode"])
    assert list(queue.jobs) == ["A", "B"]


def test_default_ids_are_16_hex_digits() -> None:
    queue = JobQueue(clock=Clock())
    queue.add(["x.gcode"] * 50)
    assert len(queue.jobs) == 50
    for job_id in queue.jobs:
        assert len(job_id) == 16
        int(job_id, 16)
        assert job_id == job_id.upper()


def test_records_round_trip() -> None:
    queue, _ = make()
    queue.add(["a.gcode", "sub/b.gcode"], user="bob")
    restored = load_jobs(queue.records())
    assert restored == list(queue.jobs.values())


def test_load_jobs_drops_what_is_not_a_job() -> None:
    good = {"filename": "a.gcode", "job_id": "01", "time_added": 3, "user": None}
    records = [
        good,
        dict(good),  # the same id again
        {"filename": "", "job_id": "02", "time_added": 1.0},
        {"filename": "b.gcode", "job_id": 3, "time_added": 1.0},
        {"filename": "b.gcode", "job_id": "04", "time_added": True},
        "junk",
        None,
    ]
    assert load_jobs(records) == [QueuedJob("a.gcode", "01", 3.0, None)]
    assert load_jobs({"not": "a list"}) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(json_values)
def test_load_jobs_never_raises(value: Any) -> None:
    for job in load_jobs(value):
        assert isinstance(job.filename, str)
        assert job.filename


# -- job events ---------------------------------------------------------------------------


def feed(events: JobEvents, *states: str, **extra: Any) -> list[list[str]]:
    return [
        [e.value for e in events.status({"print_stats": {"state": s, **extra}})] for s in states
    ]


def test_job_events_follow_print_stats() -> None:
    events = JobEvents()
    assert feed(events, "standby") == [[]]  # the baseline
    assert feed(events, "printing", "paused", "complete", "standby") == [
        ["started"],
        ["paused"],
        ["complete"],
        ["standby"],
    ]
    assert events.last_event is JobEvent.STANDBY


def test_a_print_that_ends_between_two_updates_gets_an_inferred_start() -> None:
    events = JobEvents()
    feed(events, "standby")
    assert feed(events, "complete") == [["started", "complete"]]
    assert feed(events, "cancelled") == [["started", "cancelled"]]


def test_resume_needs_the_same_file_and_a_grown_total_duration() -> None:
    events = JobEvents()
    events.status({"print_stats": {"state": "standby", "filename": "", "total_duration": 0.0}})
    base = {"filename": "a.gcode"}
    events.status({"print_stats": {"state": "printing", **base, "total_duration": 1.0}})
    events.status({"print_stats": {"state": "paused", "total_duration": 5.0}})
    resumed = events.status({"print_stats": {"state": "printing", "total_duration": 9.0}})
    assert resumed == [JobEvent.RESUMED]
    events.status({"print_stats": {"state": "paused"}})
    restarted = events.status({"print_stats": {"state": "printing", "filename": "b.gcode"}})
    assert restarted == [JobEvent.STARTED]


def test_diffs_without_a_state_change_are_no_event() -> None:
    events = JobEvents()
    feed(events, "printing")
    assert events.status({"print_stats": {"print_duration": 3.0}}) == []
    assert events.status({"toolhead": {}}) == []
    assert feed(events, "printing") == [[]]


def test_a_lost_link_while_printing_is_an_error_and_the_next_status_a_baseline() -> None:
    events = JobEvents()
    feed(events, "standby", "printing")
    events.disconnected()
    assert events.last_event is JobEvent.ERROR
    assert feed(events, "standby") == [[]]
    assert feed(events, "printing") == [["started"]]


def test_an_unknown_print_stats_state_is_no_event() -> None:
    events = JobEvents()
    feed(events, "standby")
    assert feed(events, "printing", "warming") == [["started"], []]


# -- any sequence of operations keeps the queue consistent --------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
        st.tuples(st.just("reset"), st.lists(st.sampled_from(["a", "b"]), max_size=2)),
        st.tuples(st.just("delete"), st.integers(0, 5)),
        st.tuples(st.just("delete_all"), st.none()),
        st.tuples(st.just("jump"), st.integers(0, 5)),
        st.tuples(st.just("pause"), st.none()),
        st.tuples(st.just("start"), st.booleans()),
        st.tuples(st.just("event"), st.sampled_from(list(JobEvent))),
        st.tuples(st.just("ready"), st.none()),
        st.tuples(st.just("shutdown"), st.none()),
        st.tuples(st.just("pop"), st.tuples(st.booleans(), st.booleans(), st.booleans())),
    ),
    max_size=40,
)


@given(operations, st.booleans(), st.booleans())
def test_any_sequence_keeps_the_queue_consistent(
    ops: list[tuple[str, Any]], automatic: bool, load_on_startup: bool
) -> None:
    queue, clock = make(automatic=automatic, load_on_startup=load_on_startup)
    expected: list[str] = []  # the filenames, in queue order
    for op, arg in ops:
        clock.now += 1
        ids = list(queue.jobs)
        if op == "add":
            queue.add(arg)
            expected += arg
        elif op == "reset":
            queue.add(arg, reset=True)
            expected = list(arg)
        elif op == "delete" and arg < len(ids):
            queue.delete([ids[arg]])
            del expected[arg]
        elif op == "delete_all":
            queue.delete([], every=True)
            expected = []
        elif op == "jump" and arg < len(ids):
            queue.jump(ids[arg])
            expected.insert(0, expected.pop(arg))
        elif op == "pause":
            queue.pause()
            assert queue.state == "paused"
            assert queue.pop_request is None
        elif op == "start":
            queue.start(arg)
        elif op == "event":
            queue.job_event(arg)
        elif op == "ready":
            queue.klippy_ready()
        elif op == "shutdown":
            queue.klippy_shutdown()
            assert queue.state == "paused"
        elif op == "pop":
            can_print, pause_meanwhile, start_ok = arg
            job = queue.pop_begin()
            go_on = job is not None and queue.pop_check(can_print)
            if go_on and pause_meanwhile:
                queue.pause()  # during the transition G-code
            if job is not None and go_on and queue.pop_transition_done():
                queue.pop_starting()
                if start_ok:
                    queue.pop_loaded(job.job_id)
                    assert expected[0] == job.filename
                    expected.pop(0)
                else:
                    queue.pop_failed()
        assert queue.state in QUEUE_STATES
        assert [j["filename"] for j in queue.queued()] == expected
        assert len(set(queue.jobs)) == len(queue.jobs)
        for note in queue.take_notifications():
            assert note["action"] in ACTIONS
            assert note["queue_state"] in QUEUE_STATES
            assert (note["updated_queue"] is None) == (note["action"] == "state_changed")
        assert load_jobs(queue.records()) == list(queue.jobs.values())
        request = queue.take_pop_request()
        if request is not None:
            assert queue.state == "loading"
            assert request.delay > 0


# -- [job_queue] ---------------------------------------------------------------------------


def test_job_queue_options(tmp_path: Path) -> None:
    conf = tmp_path / "moonraker.conf"
    conf.write_text(
        "[job_queue]\nload_on_startup: True\nautomatic_transition: yes\n"
        "job_transition_delay: 2.5\njob_transition_gcode:\n  M117 one\n  M117 two\n"
    )
    options = load_config(conf, tmp_path).job_queue
    assert options == JobQueueConfig(True, True, 2.5, "M117 one\nM117 two")
    assert load_config(None, tmp_path).job_queue == JobQueueConfig(False, False, 0.01, "")


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_transition_delay_is_refused(tmp_path: Path, value: str) -> None:
    conf = tmp_path / "moonraker.conf"
    conf.write_text(f"[job_queue]\njob_transition_delay: {value}\n")
    with pytest.raises(ConfigError, match=r"\[job_queue\] job_transition_delay: expected"):
        load_config(conf, tmp_path)
