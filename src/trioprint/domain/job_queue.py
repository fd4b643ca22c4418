"""The print job queue as a pure state machine (Moonraker 0.11's ``job_queue`` and ``job_state``).

:class:`JobEvents` turns klippy's ``print_stats`` diffs into Moonraker's job events
(``started``, ``paused``, ``resumed``, ``complete``, ``error``, ``cancelled``, ``standby``).
:class:`JobQueue` holds the queued jobs and the queue state (``ready``, ``paused``,
``loading``, ``starting``) and decides what happens on each request and event, as Moonraker's
``job_queue`` does:

- jobs are added at the end (``reset`` empties the queue first); with
  ``automatic_transition`` and a print under way, the queue becomes ``ready``;
- ``start`` with jobs and a printer that can print moves to ``loading`` and asks for the
  first job to be loaded at once; a printer that is busy leaves it ``ready`` (automatic) or
  ``paused``; ``pause`` makes it ``paused`` and cancels a load not begun yet;
- a print that completes while the queue is ``ready`` with jobs left (automatic transition
  only) asks for the next one after ``job_transition_delay`` seconds, with the transition
  G-code; an aborted print (error, cancelled) pauses a queue that holds jobs;
- klippy becoming ready with ``load_on_startup`` and jobs queued loads the first one after 1 s;
  klippy's shutdown pauses the queue (without counting as the user's pause request).

Loading a job is I/O (a query of klippy, the transition G-code, the start of the print), so it
is a protocol the caller walks through: :meth:`JobQueue.pop_begin`, :meth:`~JobQueue.pop_check`,
:meth:`~JobQueue.pop_transition_done`, :meth:`~JobQueue.pop_starting`, and then
:meth:`~JobQueue.pop_loaded` or :meth:`~JobQueue.pop_failed`. Each step re-checks the state, so
a pause that comes in between wins.

Every change that clients are told about is appended to :attr:`JobQueue.notifications` (the
``notify_job_queue_changed`` payloads: ``action`` ``state_changed``, ``jobs_added``,
``jobs_removed`` or ``job_loaded``, the queue when the jobs changed, else ``None``, and the
state); a load to schedule is left in :attr:`JobQueue.pop_request`, and
:attr:`JobQueue.pop_cancelled` says a scheduled one must be dropped. The caller carries these out.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

#: The queue states, as Moonraker names them.
QUEUE_STATES = ("ready", "paused", "loading", "starting")
#: The ``action`` of each ``notify_job_queue_changed``.
ACTIONS = ("state_changed", "jobs_added", "jobs_removed", "job_loaded")
#: print_stats states in which no print is under way.
IDLE_STATES = frozenset({"standby", "complete", "cancelled", "error"})
#: The print_stats fields :class:`JobEvents` reads.
STATS_FIELDS = ("state", "filename", "total_duration")
#: Seconds between klippy becoming ready and the first job's load (``load_on_startup``).
STARTUP_LOAD_DELAY = 1.0
#: Seconds between ``start`` and the first job's load.
START_LOAD_DELAY = 0.01


class JobEvent(enum.Enum):
    """Moonraker's job events (its ``JobEvent``), in its order."""

    STANDBY = "standby"
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def aborted(self) -> bool:
        return self in (JobEvent.ERROR, JobEvent.CANCELLED)

    @property
    def is_printing(self) -> bool:
        return self in (JobEvent.STARTED, JobEvent.RESUMED)


class JobEvents:
    """klippy's ``print_stats`` diffs -> job events, as Moonraker's ``job_state`` infers them.

    The first status after (re)connecting is the baseline and yields no event. From an idle
    state, ``printing`` is ``started``; any other state but ``standby`` is preceded by an
    inferred ``started``. Back in ``printing`` from ``paused`` with the same file and a grown
    ``total_duration`` is ``resumed``, otherwise ``started`` (a new print).
    """

    def __init__(self) -> None:
        self.stats: dict[str, Any] | None = None  # None: the next status is the baseline
        self.last_event = JobEvent.STANDBY

    def status(self, diff: Mapping[str, Any]) -> list[JobEvent]:
        stats = diff.get("print_stats")
        if not isinstance(stats, Mapping):
            return []
        if self.stats is None:
            self.stats = dict(stats)
            return []
        previous = dict(self.stats)
        self.stats.update(stats)
        new_state = stats.get("state")
        old_state = previous.get("state")
        if not isinstance(new_state, str) or new_state == old_state:
            return []
        events: list[JobEvent] = []
        if old_state in IDLE_STATES or not isinstance(old_state, str):
            if new_state == "printing":
                events.append(JobEvent.STARTED)
            else:
                if new_state != "standby":
                    events.append(JobEvent.STARTED)  # began and moved on between two updates
                events.extend(_event(new_state))
        elif new_state == "printing":
            resumed = (
                old_state == "paused"
                and previous.get("filename") == self.stats.get("filename")
                and _grown(previous.get("total_duration"), self.stats.get("total_duration"))
            )
            events.append(JobEvent.RESUMED if resumed else JobEvent.STARTED)
        else:
            events.extend(_event(new_state))
        if events:
            self.last_event = events[-1]
        return events

    def disconnected(self) -> None:
        """The link to klippy is lost: a print under way ended in error; the next status is a
        baseline again."""
        if self.stats is not None and self.stats.get("state") in ("printing", "paused"):
            self.last_event = JobEvent.ERROR
        self.stats = None


def _event(state: str) -> list[JobEvent]:
    try:
        return [JobEvent(state)]
    except ValueError:
        return []  # a state klippy may add one day: no event


def _grown(before: Any, after: Any) -> bool:
    numbers = (int, float)
    if not isinstance(before, numbers) or not isinstance(after, numbers):
        return False
    return bool(before < after)


def new_job_id() -> str:
    """A queued job's id: 16 upper-case hex digits, as Moonraker's."""
    return secrets.token_hex(8).upper()


@attrs.frozen
class QueuedJob:
    filename: str
    job_id: str
    time_added: float
    user: str | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        """The served form (Moonraker's, without the user)."""
        return {
            "filename": self.filename,
            "job_id": self.job_id,
            "time_added": self.time_added,
            "time_in_queue": now - self.time_added,
        }

    def record(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "filename": self.filename,
            "job_id": self.job_id,
            "time_added": self.time_added,
            "user": self.user,
        }

    @classmethod
    def from_record(cls, record: Any) -> QueuedJob | None:
        """A job from its stored form; None if ``record`` is not one."""
        if not isinstance(record, Mapping):
            return None
        filename, job_id, added = (record.get(k) for k in ("filename", "job_id", "time_added"))
        user = record.get("user")
        if not isinstance(filename, str) or not filename or not isinstance(job_id, str):
            return None
        if isinstance(added, bool) or not isinstance(added, int | float):
            return None
        return cls(filename, job_id, float(added), user if isinstance(user, str) else None)


@attrs.frozen
class PopRequest:
    """Load the first job after ``delay`` seconds (``need_transition``: run the transition
    G-code first)."""

    delay: float
    need_transition: bool


class UnknownJob(Exception):
    """``jump`` to a job id the queue does not hold."""


class JobQueue:
    """The queued jobs and the queue state; see the module docstring."""

    def __init__(
        self,
        *,
        automatic: bool = False,
        load_on_startup: bool = False,
        job_delay: float = 0.01,
        jobs: Iterable[QueuedJob] = (),
        clock: Callable[[], float],
        new_id: Callable[[], str] = new_job_id,
    ) -> None:
        self.automatic = automatic
        self.load_on_startup = load_on_startup
        self.job_delay = job_delay
        self.clock = clock
        self.new_id = new_id
        self.state = "paused"
        self.jobs: dict[str, QueuedJob] = {job.job_id: job for job in jobs}
        self.pause_requested = False
        self.last_event = JobEvent.STANDBY
        #: ``notify_job_queue_changed`` payloads not sent yet (the caller takes them).
        self.notifications: list[dict[str, Any]] = []
        #: A load to schedule (replacing any scheduled one), taken by the caller.
        self.pop_request: PopRequest | None = None
        #: A scheduled load must be dropped (taken by the caller).
        self.pop_cancelled = False
        #: The jobs changed since the caller last stored them.
        self.jobs_changed = False

    # -- what the caller reads ---------------------------------------------------------------

    def queued(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [job.as_dict(now) for job in self.jobs.values()]

    def snapshot(self) -> dict[str, Any]:
        """Every method's answer: ``{"queued_jobs": [...], "queue_state": ...}``."""
        return {"queued_jobs": self.queued(), "queue_state": self.state}

    def records(self) -> list[dict[str, Any]]:
        return [job.record() for job in self.jobs.values()]

    def take_notifications(self) -> list[dict[str, Any]]:
        taken, self.notifications = self.notifications, []
        return taken

    def take_pop_request(self) -> PopRequest | None:
        taken, self.pop_request = self.pop_request, None
        return taken

    def take_pop_cancelled(self) -> bool:
        taken, self.pop_cancelled = self.pop_cancelled, False
        return taken

    def take_jobs_changed(self) -> bool:
        taken, self.jobs_changed = self.jobs_changed, False
        return taken

    # -- internals ---------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._notify("state_changed")

    def _notify(self, action: str) -> None:
        queue = None if action == "state_changed" else self.queued()
        self.notifications.append(
            {"action": action, "updated_queue": queue, "queue_state": self.state}
        )

    def _schedule(self, delay: float, need_transition: bool) -> None:
        self.pop_request = PopRequest(delay, need_transition)

    # -- requests ----------------------------------------------------------------------------

    def add(
        self, filenames: Iterable[str], *, reset: bool = False, user: str | None = None
    ) -> None:
        """Queue ``filenames`` at the end (their existence is the caller's to check)."""
        if reset:
            self.jobs.clear()
        now = self.clock()
        for filename in filenames:
            job_id = self.new_id()
            while job_id in self.jobs:
                job_id = self.new_id()
            self.jobs[job_id] = QueuedJob(filename, job_id, now, user)
        self.jobs_changed = True
        self._notify("jobs_added")
        busy = self.last_event.is_printing or self.last_event is JobEvent.PAUSED
        if self.automatic and not self.pause_requested and busy:
            self._set_state("ready")

    def delete(self, job_ids: Iterable[str], *, every: bool = False) -> None:
        """Remove ``job_ids`` (unknown ids are ignored), or every job."""
        if not self.jobs:
            return
        ids = list(job_ids)
        if every:
            self.jobs.clear()
        elif ids:
            for job_id in ids:
                self.jobs.pop(job_id, None)
        else:
            return
        self.jobs_changed = True
        self._notify("jobs_removed")

    def pause(self) -> None:
        self._set_state("paused")
        if self.pop_request is not None:
            self.pop_request = None
        self.pop_cancelled = True
        self.pause_requested = True

    def start(self, can_print: bool) -> None:
        """Start the queue; ``can_print``: klippy reports no print under way."""
        self.pause_requested = False
        if self.state not in ("ready", "paused"):
            return
        if not self.jobs:
            self._set_state("paused")
        elif can_print:
            self._set_state("loading")
            self._schedule(START_LOAD_DELAY, need_transition=False)
        else:
            self._set_state("ready" if self.automatic else "paused")

    def jump(self, job_id: str) -> None:
        """Move ``job_id`` to the front of the queue (no notification, as Moonraker)."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            raise UnknownJob(job_id)
        self.jobs = {job_id: job, **self.jobs}
        self.jobs_changed = True

    # -- events ------------------------------------------------------------------------------

    def klippy_ready(self) -> None:
        if not self.load_on_startup or not self.jobs:
            return
        if self.state in ("ready", "paused"):
            self._set_state("loading")
            self._schedule(STARTUP_LOAD_DELAY, need_transition=False)

    def klippy_shutdown(self) -> None:
        requested = self.pause_requested
        self.pause()
        self.pause_requested = requested

    def job_event(self, event: JobEvent) -> None:
        self.last_event = event
        if event is JobEvent.COMPLETE:
            if self.automatic and self.state == "ready" and self.jobs:
                self._set_state("loading")
                self._schedule(self.job_delay, need_transition=True)
        elif event.aborted and self.jobs:
            self._set_state("paused")

    # -- loading the first job ---------------------------------------------------------------

    def pop_begin(self) -> QueuedJob | None:
        """A scheduled load is due: the job to load, or None (nothing to do)."""
        if self.state == "paused":
            return None
        if not self.jobs:
            self._set_state("paused")
            return None
        return next(iter(self.jobs.values()))

    def pop_check(self, can_print: bool) -> bool:
        """Whether to go on, once klippy was asked if it can print."""
        if not can_print or self.state != "loading":
            self._set_state("paused")
            return False
        return True

    def pop_transition_done(self) -> bool:
        """After the transition G-code: whether the queue is still loading."""
        if self.state != "loading":
            self._set_state("paused")
            return False
        return True

    def pop_starting(self) -> None:
        self._set_state("starting")

    def pop_failed(self) -> None:
        self._set_state("paused")

    def pop_loaded(self, job_id: str) -> None:
        """The print of ``job_id`` started: it leaves the queue."""
        self.jobs.pop(job_id, None)
        self.jobs_changed = True
        if self.state == "starting":
            self.state = "ready" if self.jobs and self.automatic else "paused"
        self._notify("job_loaded")


def load_jobs(records: Any) -> list[QueuedJob]:
    """The jobs of a stored list (entries that are not jobs, and repeated ids, dropped)."""
    if not isinstance(records, list):
        return []
    jobs: dict[str, QueuedJob] = {}
    for record in records:
        job = QueuedJob.from_record(record)
        if job is not None and job.job_id not in jobs:
            jobs[job.job_id] = job
    return list(jobs.values())
