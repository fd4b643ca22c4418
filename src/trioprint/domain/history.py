"""Job history as a pure state machine: print_stats transitions in, job decisions out.

:class:`JobTracker` is fed what klippy's status subscription reports (``print_stats`` diffs and
``webhooks.state``) and the link's losses, and answers with :class:`JobStarted` and
:class:`JobFinished` decisions; the history component persists them and tells the clients.
The transitions follow Moonraker 0.11 (its ``job_state`` and ``history`` components):

- from an idle state (``standby``, ``complete``, ``cancelled``, ``error``) to ``printing`` a
  job starts; to ``paused``, ``complete``, ``cancelled`` or ``error`` a job start is inferred
  first (a print that began and ended between two updates still gets its record);
- from ``paused`` back to ``printing`` with the same file and a grown ``total_duration`` the
  job resumes; any other entry into ``printing`` while a job runs is a new print: the running
  job ends ``cancelled`` and a new one starts;
- ``complete`` ends the job ``completed``, ``error`` ends it ``error``, ``cancelled`` and
  ``standby`` end it ``cancelled``; klippy's shutdown ends it ``klippy_shutdown``, the loss of
  the link ``klippy_disconnect``, the server stopping or restarting ``server_exit``; a job
  still ``in_progress`` when the server starts again was cut short by a crash and is marked
  ``interrupted`` (:func:`interrupted`), closed with the time and durations it was last seen
  with (:meth:`JobTracker.progress` checkpoints them while it runs).

One clock for a job: its ``start_time`` is the wall time at which it started (never before the
previous job's end), and every later
time of the job (its end, its last-seen checkpoint) is that start plus the printer's own elapsed
time (klippy's ``eventtime``, the clock ``print_duration`` and ``total_duration`` are counted
on, from the moment the print began), so ``end_time - start_time`` is the job's
``total_duration`` even on a simulated printer that runs faster than real time. With a real
klippy the printer's clock runs with the wall's.

One job at most is open at any time; every finished job adds to the totals, which only a reset
brings back to zero. The first status after (re)connecting is taken as the baseline: a print
already running then was started before this server saw it, and gets no record (as Moonraker).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import attrs

#: print_stats states in which no print is under way.
IDLE_STATES = frozenset({"standby", "complete", "cancelled", "error"})
#: The print_stats fields the tracker reads.
STATS_FIELDS = ("state", "filename", "print_duration", "total_duration", "filament_used")
#: The status of a job that has not ended yet.
IN_PROGRESS = "in_progress"
#: The statuses a job ends with.
FINAL_STATUSES = frozenset(
    {
        "completed",
        "cancelled",
        "error",
        "klippy_shutdown",
        "klippy_disconnect",
        "server_exit",
        "interrupted",
    }
)
#: The stored (never served) key of an unfinished job's last checkpoint time.
LAST_SEEN_KEY = "trioprint_last_seen"
#: Moonraker's user of a job nobody logged in for.
NO_USER = "No User"

BASE_TOTALS: dict[str, float | int] = {
    "total_jobs": 0,
    "total_time": 0.0,
    "total_print_time": 0.0,
    "total_filament_used": 0.0,
    "longest_job": 0.0,
    "longest_print": 0.0,
}


def uid(job_id: int) -> str:
    """Moonraker's job uid: the id as (at least) six upper-case hex digits."""
    return f"{job_id:06X}"


def parse_uid(text: str) -> int | None:
    """The id of a uid, or None if ``text`` is not one."""
    text = text.strip()
    if not text or len(text) > 16 or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return int(text, 16)


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


@attrs.define
class Job:
    """One print, as Moonraker's ``job_history`` row holds it."""

    job_id: int
    filename: str
    start_time: float
    status: str = IN_PROGRESS
    end_time: float | None = None
    print_duration: float = 0.0
    total_duration: float = 0.0
    filament_used: float = 0.0
    metadata: dict[str, Any] = attrs.field(factory=dict)
    auxiliary_data: list[Any] = attrs.field(factory=list)
    user: str = NO_USER
    #: While it runs: the job-clock time of its last checkpoint (see :meth:`JobTracker.progress`).
    last_seen: float | None = None

    @property
    def uid(self) -> str:
        return uid(self.job_id)

    def update_from_stats(self, stats: Mapping[str, Any]) -> None:
        filename = stats.get("filename")
        if isinstance(filename, str):
            self.filename = filename
        for name in ("print_duration", "total_duration", "filament_used"):
            value = stats.get(name)
            if value is not None:
                setattr(self, name, _number(value, getattr(self, name)))

    def record(self) -> dict[str, Any]:
        """The stored and served form (without ``exists``, which depends on the disk)."""
        return {
            "job_id": self.uid,
            "user": self.user,
            "filename": self.filename,
            "status": self.status,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "print_duration": self.print_duration,
            "total_duration": self.total_duration,
            "filament_used": self.filament_used,
            "metadata": copy.deepcopy(self.metadata),
            "auxiliary_data": copy.deepcopy(self.auxiliary_data),
        }

    def stored(self) -> dict[str, Any]:
        """The stored form: the served one, plus an unfinished job's last checkpoint."""
        record = self.record()
        if self.status == IN_PROGRESS and self.last_seen is not None:
            record[LAST_SEEN_KEY] = self.last_seen
        return record

    @classmethod
    def from_record(cls, key: str, record: Any) -> Job | None:
        """A job from its stored form (stored under ``key``, its uid); None if it is not one."""
        job_id = parse_uid(key)
        if job_id is None or not isinstance(record, dict):
            return None
        end = record.get("end_time")
        metadata = record.get("metadata")
        aux = record.get("auxiliary_data")
        status = record.get("status")
        filename = record.get("filename")
        user = record.get("user")
        last_seen = record.get(LAST_SEEN_KEY)
        return cls(
            job_id=job_id,
            filename=filename if isinstance(filename, str) else "unknown",
            start_time=_number(record.get("start_time")),
            status=status if isinstance(status, str) else "error",
            end_time=None if end is None else _number(end),
            print_duration=_number(record.get("print_duration")),
            total_duration=_number(record.get("total_duration")),
            filament_used=_number(record.get("filament_used")),
            metadata=metadata if isinstance(metadata, dict) else {},
            auxiliary_data=aux if isinstance(aux, list) else [],
            user=user if isinstance(user, str) else NO_USER,
            last_seen=None if last_seen is None else _number(last_seen),
        )

    def copy(self) -> Job:
        return attrs.evolve(
            self,
            metadata=copy.deepcopy(self.metadata),
            auxiliary_data=copy.deepcopy(self.auxiliary_data),
        )


@attrs.frozen
class JobStarted:
    job: Job


@attrs.frozen
class JobFinished:
    job: Job
    totals: dict[str, float | int]


Decision = JobStarted | JobFinished


class JobInProgress(Exception):
    """The totals cannot be reset while a job runs."""


def load_totals(stored: Any) -> dict[str, float | int]:
    """Totals from their stored form: missing or broken fields are zero."""
    totals = dict(BASE_TOTALS)
    if isinstance(stored, dict):
        for name, base in BASE_TOTALS.items():
            value = stored.get(name)
            if isinstance(base, int):
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    totals[name] = value
            elif _number(value, -1.0) >= 0:
                totals[name] = _number(value)
    return totals


def add_to_totals(totals: Mapping[str, float | int], job: Job) -> dict[str, float | int]:
    """The totals with one more finished job."""
    result = dict(totals)
    result["total_jobs"] = int(result["total_jobs"]) + 1
    result["total_time"] += max(job.total_duration, 0.0)
    result["total_print_time"] += max(job.print_duration, 0.0)
    result["total_filament_used"] += max(job.filament_used, 0.0)
    result["longest_job"] = max(result["longest_job"], job.total_duration)
    result["longest_print"] = max(result["longest_print"], job.print_duration)
    return result


def interrupted(jobs: Mapping[int, Job]) -> list[Job]:
    """The jobs still in progress at start-up, now marked interrupted (the others unchanged).

    Each is closed with the time of its last checkpoint (the durations stored with it are that
    checkpoint's). As in Moonraker, an interrupted job does not count in the totals: nothing
    saw it end.
    """
    cut = []
    for job in jobs.values():
        if job.status == IN_PROGRESS:
            job.status = "interrupted"
            if job.last_seen is not None:
                job.end_time = max(job.last_seen, job.start_time)
            job.last_seen = None
            cut.append(job)
    return cut


class JobTracker:
    """The job state machine; see the module docstring for its transitions."""

    def __init__(
        self,
        *,
        next_id: int = 1,
        totals: Mapping[str, float | int] | None = None,
        not_before: float = -math.inf,
    ) -> None:
        self.next_id = max(next_id, 1)
        #: No job starts before this: the newest time of the jobs so far (a printer clock
        #: faster than the wall's, as a simulated printer's, ends jobs in the wall's future).
        self.not_before = not_before
        self.totals: dict[str, float | int] = dict(totals or BASE_TOTALS)
        self.current: Job | None = None
        self.user = NO_USER
        self._last: dict[str, Any] | None = None  # None: the next status is the baseline
        self._klippy_state: str | None = None
        #: The printer's clock (klippy's eventtime) at the last status, and at the current
        #: job's start: a job's times are its start plus the printer's elapsed time.
        self._eventtime: float | None = None
        self._start_eventtime: float | None = None

    @property
    def last_stats(self) -> dict[str, Any]:
        return dict(self._last or {})

    # -- inputs ------------------------------------------------------------------------------

    def status(
        self, diff: Mapping[str, Any], now: float, eventtime: float | None = None
    ) -> list[Decision]:
        """A status diff from klippy (``print_stats`` and ``webhooks``), at wall time ``now``
        and printer time ``eventtime`` (klippy's clock; None if unknown)."""
        if eventtime is not None and math.isfinite(eventtime):
            self._eventtime = eventtime
        decisions: list[Decision] = []
        webhooks = diff.get("webhooks")
        if isinstance(webhooks, Mapping) and isinstance(webhooks.get("state"), str):
            state = webhooks["state"]
            if state == "shutdown" and self._klippy_state != "shutdown":
                decisions += self.klippy_shutdown(now)
            self._klippy_state = state
        stats = diff.get("print_stats")
        if isinstance(stats, Mapping):
            decisions += self.print_stats(stats, now)
        return decisions

    def print_stats(self, diff: Mapping[str, Any], now: float) -> list[Decision]:
        """A ``print_stats`` diff (only changed fields; the first one after a connect is all)."""
        changes = {k: diff[k] for k in STATS_FIELDS if k in diff}
        if self._last is None:
            self._last = changes
            return []
        prev = dict(self._last)
        new = {**prev, **changes}
        self._last = new
        old_state, new_state = prev.get("state"), changes.get("state")
        if not isinstance(new_state, str) or new_state == old_state:
            return []
        decisions: list[Decision] = []
        if old_state in IDLE_STATES:
            if new_state == "standby":
                return self._finish("cancelled", prev, now)
            decisions += self._start(prev, new, now)
            if new_state == "printing":
                return decisions
        elif new_state == "printing":
            if self._resumed(prev, new):
                return []
            return self._start(prev, new, now)
        if new_state == "complete":
            decisions += self._finish("completed", new, now)
        elif new_state == "error":
            decisions += self._finish("error", new, now)
        elif new_state in ("cancelled", "standby"):
            # standby too: the CLEAR_PAUSE / SDCARD_RESET_FILE way of cancelling
            decisions += self._finish("cancelled", prev, now)
        return decisions

    def klippy_shutdown(self, now: float) -> list[Decision]:
        self._klippy_state = "shutdown"
        return self._finish("klippy_shutdown", self.last_stats, now)

    def klippy_disconnected(self, now: float) -> list[Decision]:
        """The link to klippy is lost: the running job ends; the next status is a baseline."""
        decisions = self._finish("klippy_disconnect", self.last_stats, now)
        self._last = None
        self._klippy_state = None
        self._eventtime = None
        return decisions

    def server_exit(self, now: float) -> list[Decision]:
        """The server stops or restarts: the running job ends ``server_exit`` (as Moonraker)."""
        return self._finish("server_exit", self.last_stats, now)

    def progress(self, now: float) -> Job | None:
        """A checkpoint of the running job (None if there is none): its durations so far and
        ``last_seen``, the job-clock time it was last seen alive, for the store to keep, so a
        crash leaves a record that says how far it got."""
        job = self.current
        if job is None:
            return None
        stats = self.last_stats
        if stats.get("filename") == job.filename:
            job.update_from_stats(stats)
        job.last_seen = self._job_time(now)
        return job.copy()

    def reset_totals(self) -> dict[str, float | int]:
        """Zero the totals; return the previous ones. :class:`JobInProgress` while a job runs."""
        if self.current is not None:
            raise JobInProgress("Job in progress, cannot reset totals")
        last, self.totals = self.totals, dict(BASE_TOTALS)
        return last

    # -- transitions -------------------------------------------------------------------------

    @staticmethod
    def _resumed(prev: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        return (
            prev.get("state") == "paused"
            and prev.get("filename") == new.get("filename")
            and _number(prev.get("total_duration")) < _number(new.get("total_duration"))
        )

    def _job_time(self, now: float) -> float:
        """The current job's time now: its start plus the printer's elapsed time."""
        job = self.current
        if job is None or self._eventtime is None or self._start_eventtime is None:
            return now
        return job.start_time + max(self._eventtime - self._start_eventtime, 0.0)

    def _start(self, prev: Mapping[str, Any], new: Mapping[str, Any], now: float) -> list[Decision]:
        decisions = self._finish("cancelled", prev, now)
        # the print began total_duration (printer seconds) before the status that shows it
        began = _number(new.get("total_duration"))
        self._start_eventtime = None if self._eventtime is None else self._eventtime - began
        start = max(now, self.not_before)
        job = Job(job_id=self.next_id, filename="", start_time=start, user=self.user)
        job.update_from_stats(new)
        self.not_before = start
        self.next_id += 1
        self.current = job
        decisions.append(JobStarted(job.copy()))
        return decisions

    def _finish(self, status: str, stats: Mapping[str, Any], now: float) -> list[Decision]:
        job = self.current
        if job is None:
            return []
        reset = _number(stats.get("total_duration")) < job.total_duration
        if stats.get("filename") != job.filename or reset:
            stats = {}  # print_stats were reset meanwhile: they are not this job's
        job.update_from_stats(stats)
        job.status = status
        job.end_time = self._job_time(now)
        self.not_before = max(self.not_before, job.end_time)
        job.last_seen = None
        self.current = None
        self._start_eventtime = None
        self.user = NO_USER
        self.totals = add_to_totals(self.totals, job)
        return [JobFinished(job.copy(), dict(self.totals))]
