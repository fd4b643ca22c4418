"""The job history state machine (domain/history.py): print_stats transitions -> job decisions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.history import (
    BASE_TOTALS,
    FINAL_STATUSES,
    IN_PROGRESS,
    Job,
    JobFinished,
    JobInProgress,
    JobStarted,
    JobTracker,
    interrupted,
    load_totals,
    parse_uid,
    uid,
)


def stats(state: str, filename: str = "a.gcode", total: float = 0.0, **more: Any) -> Any:
    return {"print_stats": {"state": state, "filename": filename, "total_duration": total, **more}}


def tracker_at(state: str = "standby", filename: str = "") -> JobTracker:
    tracker = JobTracker()
    assert tracker.status(stats(state, filename), 0.0) == []  # the baseline
    return tracker


def kinds(decisions: list[Any]) -> list[tuple[str, int, str]]:
    return [
        ("started" if isinstance(d, JobStarted) else "finished", d.job.job_id, d.job.status)
        for d in decisions
    ]


def test_a_print_from_start_to_complete_is_one_completed_job() -> None:
    t = tracker_at()
    started = t.status(stats("printing", "cube.gcode", 0.5, print_duration=0.0), 100.0)
    assert kinds(started) == [("started", 1, IN_PROGRESS)]
    assert started[0].job.filename == "cube.gcode"
    assert started[0].job.start_time == 100.0
    assert t.current is not None
    # progress alone decides nothing
    assert t.status({"print_stats": {"print_duration": 30.0, "total_duration": 40.0}}, 140) == []
    done = t.status(
        stats("complete", "cube.gcode", 60.0, print_duration=50.0, filament_used=123.4), 160.0
    )
    assert kinds(done) == [("finished", 1, "completed")]
    job = done[0].job
    assert (job.end_time, job.print_duration, job.total_duration, job.filament_used) == (
        160.0,
        50.0,
        60.0,
        123.4,
    )
    assert t.current is None
    assert done[0].totals == {
        "total_jobs": 1,
        "total_time": 60.0,
        "total_print_time": 50.0,
        "total_filament_used": 123.4,
        "longest_job": 60.0,
        "longest_print": 50.0,
    }
    assert t.totals == done[0].totals


def test_the_first_status_is_a_baseline_even_mid_print() -> None:
    t = JobTracker()
    assert t.status(stats("printing", "x.gcode", 10.0), 0.0) == []
    assert t.current is None
    # its end is not recorded either: the job was never seen to start
    assert t.status(stats("complete", "x.gcode", 20.0), 1.0) == []
    assert t.totals == BASE_TOTALS


def test_pause_and_resume_stay_one_job() -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 1.0), 0.0)
    assert t.status(stats("paused", "a.gcode", 2.0), 1.0) == []
    assert t.status(stats("printing", "a.gcode", 3.0), 2.0) == []
    assert t.current is not None
    assert t.current.job_id == 1


def test_printing_again_without_a_grown_duration_is_a_new_print() -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 5.0), 0.0)
    t.status(stats("paused", "a.gcode", 6.0), 1.0)
    # the file changed while paused: the old job is cancelled and a new one begins
    decisions = t.status(stats("printing", "b.gcode", 0.0), 2.0)
    assert kinds(decisions) == [("finished", 1, "cancelled"), ("started", 2, IN_PROGRESS)]
    assert decisions[1].job.filename == "b.gcode"


def test_cancel_ends_the_job_cancelled_with_the_stats_before_the_change() -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 1.0, print_duration=0.5), 0.0)
    t.status({"print_stats": {"total_duration": 9.0, "print_duration": 8.0}}, 9.0)
    decisions = t.status(stats("cancelled", "a.gcode", 10.0, print_duration=9.5), 10.0)
    assert kinds(decisions) == [("finished", 1, "cancelled")]
    assert (decisions[0].job.total_duration, decisions[0].job.print_duration) == (9.0, 8.0)


@pytest.mark.parametrize(("state", "status"), [("standby", "cancelled"), ("error", "error")])
def test_standby_and_error_end_the_job(state: str, status: str) -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 1.0), 0.0)
    assert kinds(t.status(stats(state, "a.gcode", 2.0), 1.0)) == [("finished", 1, status)]


def test_a_print_that_ended_between_two_updates_still_gets_a_record() -> None:
    t = tracker_at("complete", "old.gcode")
    decisions = t.status(stats("error", "new.gcode", 3.0), 5.0)
    assert kinds(decisions) == [("started", 1, IN_PROGRESS), ("finished", 1, "error")]
    assert decisions[1].job.filename == "new.gcode"
    assert decisions[1].job.total_duration == 3.0


def test_idle_to_paused_starts_a_job_and_idle_to_standby_does_not() -> None:
    t = tracker_at("complete")
    assert t.status(stats("standby", ""), 0.0) == []
    assert kinds(t.status(stats("paused", "a.gcode", 1.0), 1.0)) == [("started", 1, IN_PROGRESS)]


def test_klippy_shutdown_in_the_status_ends_the_job_once() -> None:
    t = tracker_at()
    t.status({"webhooks": {"state": "ready"}}, 0.0)
    t.status(stats("printing", "a.gcode", 1.0), 0.0)
    # shutdown and the pause it causes arrive together: the shutdown decides
    both = {"webhooks": {"state": "shutdown"}, **stats("paused", "a.gcode", 2.0)}
    assert kinds(t.status(both, 3.0)) == [("finished", 1, "klippy_shutdown")]
    assert t.klippy_shutdown(4.0) == []  # the bus's news of it comes later: nothing open
    assert t.status(stats("error", "a.gcode", 2.0), 5.0) == []


def test_a_lost_link_ends_the_job_and_the_next_status_is_a_baseline() -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 4.0), 0.0)
    assert kinds(t.klippy_disconnected(5.0)) == [("finished", 1, "klippy_disconnect")]
    assert t.status(stats("printing", "a.gcode", 7.0), 6.0) == []
    assert t.current is None


def test_stats_of_another_file_do_not_overwrite_the_job() -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 4.0), 0.0)
    t.status({"print_stats": {"filename": "other.gcode", "total_duration": 0.0}}, 1.0)
    (finished,) = t.status({"print_stats": {"state": "complete"}}, 2.0)
    assert isinstance(finished, JobFinished)
    assert (finished.job.filename, finished.job.total_duration) == ("a.gcode", 4.0)


def test_reset_totals_refuses_while_a_job_runs_and_zeroes_otherwise() -> None:
    t = tracker_at()
    t.status(stats("printing", "a.gcode", 1.0), 0.0)
    with pytest.raises(JobInProgress):
        t.reset_totals()
    t.status(stats("complete", "a.gcode", 2.0), 1.0)
    last = t.reset_totals()
    assert last["total_jobs"] == 1
    assert t.totals == BASE_TOTALS
    # ids go on after a reset
    assert kinds(t.status(stats("printing", "b.gcode"), 2.0))[0][1] == 2


def test_records_round_trip_and_bad_records_are_refused() -> None:
    job = Job(job_id=42, filename="a.gcode", start_time=1.0, metadata={"slicer": "X"})
    record = job.record()
    assert record["job_id"] == "00002A"
    assert Job.from_record("00002A", record) == job
    assert Job.from_record("totals", {}) is None
    assert Job.from_record("00002B", "not a dict") is None
    odd = Job.from_record("1", {"print_duration": "x", "end_time": 3, "filename": 5})
    assert odd is not None
    assert (odd.print_duration, odd.end_time, odd.filename, odd.status) == (
        0.0,
        3.0,
        "unknown",
        "error",
    )


def test_uids() -> None:
    assert uid(1) == "000001"
    assert uid(0x1234567) == "1234567"
    assert parse_uid("00002a") == 42
    for bad in ("", "xyz", "-1", "1.0", "0x10", "1" * 17):
        assert parse_uid(bad) is None


def test_interrupted_marks_only_jobs_in_progress() -> None:
    jobs = {
        1: Job(job_id=1, filename="a", start_time=0.0, status="completed"),
        2: Job(job_id=2, filename="b", start_time=0.0),
    }
    assert [j.job_id for j in interrupted(jobs)] == [2]
    assert [j.status for j in jobs.values()] == ["completed", "interrupted"]


def test_load_totals_keeps_good_fields_and_zeroes_broken_ones() -> None:
    stored = {"total_jobs": 3, "total_time": "x", "longest_job": -1.0, "total_print_time": 5}
    totals = load_totals(stored)
    assert totals == {**BASE_TOTALS, "total_jobs": 3, "total_print_time": 5.0}
    assert load_totals(None) == BASE_TOTALS


# -- properties ------------------------------------------------------------------------------

STATES = ["standby", "printing", "paused", "complete", "cancelled", "error", "bogus"]

progress = st.fixed_dictionaries(
    {},
    optional={
        "filename": st.sampled_from(["a.gcode", "b.gcode", ""]),
        "total_duration": st.floats(0, 1e6),
        "print_duration": st.floats(0, 1e6),
        "filament_used": st.floats(0, 1e6),
    },
)
transitions = st.builds(lambda s, p: {"state": s, **p}, st.sampled_from(STATES), progress)
steps = st.one_of(
    transitions.map(lambda d: ("stats", d)),
    transitions.map(lambda d: ("stats", d)),
    progress.map(lambda d: ("stats", d)),
    st.sampled_from(["ready", "shutdown"]).map(lambda s: ("webhooks", s)),
    st.just(("disconnect", None)),
    st.just(("reset", None)),
)


@given(st.lists(steps, min_size=10, max_size=60))
def test_any_sequence_keeps_one_open_job_and_consistent_totals(
    sequence: list[tuple[str, Any]],
) -> None:
    t = JobTracker()
    open_job: int | None = None
    seen_ids: list[int] = []
    finished = 0
    totals = dict(t.totals)
    for now, (kind, value) in enumerate(sequence):
        if kind == "stats":
            decisions = t.status({"print_stats": value}, float(now))
        elif kind == "webhooks":
            decisions = t.status({"webhooks": {"state": value}}, float(now))
        elif kind == "disconnect":
            decisions = t.klippy_disconnected(float(now))
        else:
            if t.current is None:
                t.reset_totals()
                totals, finished = dict(t.totals), 0
            else:
                with pytest.raises(JobInProgress):
                    t.reset_totals()
            continue
        for d in decisions:
            if isinstance(d, JobStarted):
                assert open_job is None, "a job started while another was open"
                assert d.job.status == IN_PROGRESS
                assert not seen_ids or d.job.job_id > seen_ids[-1]
                open_job = d.job.job_id
                seen_ids.append(d.job.job_id)
            else:
                assert d.job.job_id == open_job, "a job finished that was not open"
                assert d.job.status in FINAL_STATUSES
                assert d.job.end_time == float(now)
                assert d.job.end_time >= d.job.start_time
                open_job = None
                finished += 1
                for name in totals:
                    assert d.totals[name] >= totals[name], name
                assert d.totals["longest_job"] >= d.job.total_duration
                assert d.totals["longest_print"] >= d.job.print_duration
                totals = dict(d.totals)
        assert (t.current.job_id if t.current else None) == open_job
        assert t.totals == totals
        assert t.totals["total_jobs"] == finished
