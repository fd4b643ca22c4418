"""``server.history.*``: one job record per print, and the totals (Moonraker 0.11's ``history``).

The decisions are :class:`trioprint.domain.history.JobTracker`'s; this component feeds it and
carries them out. Its inputs, in arrival order through one channel: klippy's ``print_stats``
and ``webhooks.state`` diffs (an internal status subscription, so a shutdown is seen in order
with the print_stats changes around it) and the link's state changes from the bus (a lost
link ends a running job ``klippy_disconnect``). Each started job gets a snapshot of its file's
slicer metadata (from the metadata component), is stored and announced
(``notify_history_changed`` ``{"action": "added", "job": ...}``); a finished one is stored
again with the totals, and announced as ``"finished"``.

Storage: the instance's key-value store, namespace ``history``: each job under its uid
(``"00002A"``), the totals under ``"totals"``. All jobs are also kept in memory (a few
thousand records) for listing. While a job runs its record is checkpointed every
``CHECKPOINT_INTERVAL`` seconds (durations so far, the time it was last seen alive); when the
server stops or restarts the running job ends ``server_exit``, as Moonraker ends it; a job still
``in_progress`` at start-up (the server crashed while it ran) is marked ``interrupted``, closed
with its last checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from stat import S_ISREG
from typing import Any, Protocol

import attrs
import trio

from ..bus import Bus
from ..domain.history import (
    STATS_FIELDS,
    Decision,
    Job,
    JobFinished,
    JobInProgress,
    JobStarted,
    JobTracker,
    interrupted,
    load_totals,
    parse_uid,
)
from ..domain.history_fields import HistoryField
from ..domain.kv import KeyValueStore
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from .klippy import KlippyStateChanged
from .protocols import Broadcaster, StatusSource

log = logging.getLogger(__name__)

NAMESPACE = "history"
TOTALS_KEY = "totals"
#: Inputs waiting for the tracker (a few per second while printing); beyond this, dropped.
INPUT_CAPACITY = 10_000
#: Seconds (wall clock) between two checkpoints of a running job's record.
CHECKPOINT_INTERVAL = 5.0
#: Seconds the stopping component may take to record the running job as ``server_exit``.
EXIT_TIMEOUT = 2.0


class MetadataSource(Protocol):
    async def get(self, filename: str, *, force: bool = False) -> dict[str, Any]: ...


class GcodeRoot(Protocol):
    async def roots(self) -> Any: ...


@attrs.frozen
class ListParams:
    limit: int = 50
    start: int = 0
    since: float = -1.0
    before: float = -1.0
    order: str = "desc"


@attrs.frozen
class JobParams:
    uid: str | None = None
    all: bool = False


def metadata_snapshot(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a job keeps of its file's metadata (no thumbnail data, no history back-links)."""
    snapshot = dict(metadata)
    snapshot.pop("filename", None)  # the job has its own; Moonraker keeps the stored fields
    snapshot.pop("print_start_time", None)
    snapshot.pop("job_id", None)
    thumbs = snapshot.get("thumbnails")
    if isinstance(thumbs, list):
        snapshot["thumbnails"] = [
            {k: v for k, v in t.items() if k != "data"} if isinstance(t, dict) else t
            for t in thumbs
        ]
    return snapshot


def _files_exist(root: str | None, wanted: list[tuple[str, float | None]]) -> list[bool]:
    """Whether each (gcodes-relative file, mtime or None) is there, unchanged (thread only)."""
    mtimes: dict[str, float | None] = {}  # many jobs print the same few files: stat each once

    def file_mtime(filename: str) -> float | None:
        if root is None or not filename:
            return None
        full = os.path.realpath(os.path.join(root, filename))
        try:
            if os.path.commonpath([root, full]) != root:
                return None
            stat = os.stat(full)
        except (OSError, ValueError):
            return None
        return stat.st_mtime if S_ISREG(stat.st_mode) else None

    found = []
    for filename, mtime in wanted:
        if filename not in mtimes:
            mtimes[filename] = file_mtime(filename)
        actual = mtimes[filename]
        found.append(actual is not None and (mtime is None or math.isclose(actual, mtime)))
    return found


class History:
    name = "history"

    def __init__(
        self,
        klippy: StatusSource,
        bus: Bus,
        websockets: Broadcaster,
        database: KeyValueStore,
        metadata: MetadataSource,
        files: GcodeRoot,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus = bus
        self._websockets = websockets
        self._db = database
        self._metadata = metadata
        self._files = files
        self._clock = clock
        self.tracker = JobTracker()
        self.jobs: dict[int, Job] = {}
        self._lock = trio.Lock()
        self._send, self._receive = trio.open_memory_channel[tuple[str, Any, float]](INPUT_CAPACITY)
        self._checkpointed = -math.inf
        self._dropped = 0
        self._idle = trio.Event()
        #: Other components' per-job fields (sensors, Spoolman), in each job's auxiliary_data.
        self.auxiliary_fields: list[HistoryField] = []
        klippy.set_internal_subscription(
            "history", {"print_stats": list(STATS_FIELDS), "webhooks": ["state"]}, self._on_status
        )

    # -- inputs ------------------------------------------------------------------------------

    def _put(self, kind: str, data: Any) -> None:
        try:
            self._send.send_nowait((kind, data, self._clock()))
        except trio.WouldBlock:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("history: input queue full, status updates dropped")
        else:
            if self._idle.is_set():
                self._idle = trio.Event()

    def _on_status(self, diff: dict[str, Any], eventtime: float) -> None:
        self._put("status", (diff, eventtime))

    async def settled(self) -> None:
        """Wait until every input so far has been carried out (for tests and callers)."""
        await self._idle.wait()

    def register_auxiliary_field(self, field: HistoryField) -> None:
        """Track ``field`` per job (its updates count while a job runs)."""
        for known in self.auxiliary_fields:
            if (known.provider, known.name) == (field.provider, field.name):
                raise ValueError(f"field {field.name} already registered by {field.provider}")
        field.enabled = self._tracking_enabled
        self.auxiliary_fields.append(field)

    def _tracking_enabled(self, check_paused: bool) -> bool:
        if self.tracker.current is None:
            return False
        return not (check_paused and self.tracker.last_stats.get("state") == "paused")

    def _set_auxiliary_data(self, job: Job, *, start: bool = False) -> None:
        if not self.auxiliary_fields:
            return
        for field in self.auxiliary_fields if start else ():
            field.reset()
        job.auxiliary_data = [field.as_dict() for field in self.auxiliary_fields]

    # -- the lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._load()
        with self._bus.subscribe(KlippyStateChanged, capacity=256, name="history") as events:
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._forward_klippy_states, events)
                    await self._consume()
            finally:
                # A stop or restart (the components' nursery is cancelled; the database closes
                # only after every component has ended): the running job ends server_exit.
                with trio.CancelScope(shield=True), trio.move_on_after(EXIT_TIMEOUT):
                    await self._carry_out(self.tracker.server_exit(self._clock()))

    async def _consume(self) -> None:
        while True:
            try:
                kind, data, now = self._receive.receive_nowait()
            except trio.WouldBlock:
                self._idle.set()
                kind, data, now = await self._receive.receive()
            if kind == "status":
                diff, eventtime = data
                decisions = self.tracker.status(diff, now, eventtime)
            elif data == "disconnected":
                decisions = self.tracker.klippy_disconnected(now)
            elif data == "shutdown":
                decisions = self.tracker.klippy_shutdown(now)
            else:
                decisions = []
            await self._carry_out(decisions)
            if decisions:
                self._checkpointed = now
            elif now - self._checkpointed >= CHECKPOINT_INTERVAL:
                await self._checkpoint(now)

    async def _carry_out(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            try:
                await self._apply(decision)
            except Exception:  # a failed write loses one record, not the server
                log.exception("history: job %s not recorded", decision.job.uid)

    async def _checkpoint(self, now: float) -> None:
        """Store the running job's progress, so a crash leaves how far it got."""
        job = self.tracker.progress(now)
        self._checkpointed = now
        if job is None:
            return
        async with self._lock:
            known = self.jobs.get(job.job_id)
            if known is None:  # its start is not stored yet (or was deleted by a client)
                return
            job.metadata = known.metadata
            self._set_auxiliary_data(job)
            self.jobs[job.job_id] = job
            try:
                await self._db.insert_item(NAMESPACE, [job.uid], job.stored())
            except Exception:
                log.exception("history: checkpoint of job %s not stored", job.uid)

    async def _forward_klippy_states(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            if isinstance(event, KlippyStateChanged):
                self._put("klippy", event.state)

    async def _load(self) -> None:
        stored = await self._db.get_item(NAMESPACE, None, default={})
        if not isinstance(stored, dict):
            stored = {}
        jobs: dict[int, Job] = {}
        for key, record in stored.items():
            if key == TOTALS_KEY:
                continue
            job = Job.from_record(key, record)
            if job is None:
                log.warning("history: stored entry %r is not a job, skipped", key)
                continue
            jobs[job.job_id] = job
        self.jobs = dict(sorted(jobs.items()))
        totals = stored.get(TOTALS_KEY)
        job_totals = totals.get("job_totals") if isinstance(totals, dict) else None
        latest = max(
            (t for job in self.jobs.values() for t in (job.start_time, job.end_time) if t),
            default=-math.inf,
        )
        self.tracker = JobTracker(
            next_id=max(self.jobs, default=0) + 1,
            totals=load_totals(job_totals),
            not_before=latest,
        )
        cut = interrupted(self.jobs)
        for job in cut:
            await self._db.insert_item(NAMESPACE, [job.uid], job.stored())
        if cut:
            log.info("history: jobs interrupted by a stop or crash: %s", [job.uid for job in cut])

    # -- carrying out decisions --------------------------------------------------------------

    async def _snapshot(self, filename: str) -> dict[str, Any] | None:
        if not filename:
            return None
        try:
            return metadata_snapshot(await self._metadata.get(filename))
        except ApiError as exc:
            log.debug("history: no metadata for %s: %s", filename, exc.message)
        except Exception:
            log.exception("history: metadata of %s", filename)
        return None

    async def _apply(self, decision: Decision) -> None:
        job = decision.job
        self._set_auxiliary_data(job, start=isinstance(decision, JobStarted))
        metadata = await self._snapshot(job.filename)
        async with self._lock:
            known = self.jobs.get(job.job_id)
            if metadata is not None:
                job.metadata = metadata
            elif known is not None:
                job.metadata = known.metadata
            self.jobs[job.job_id] = job
            await self._db.insert_item(NAMESPACE, [job.uid], job.stored())
            if isinstance(decision, JobFinished):
                # the tracker's totals, not the decision's: a reset may have come in between
                await self._save_totals(dict(self.tracker.totals))
        action = "added" if isinstance(decision, JobStarted) else "finished"
        log.info("history: job %s %s (%s, %s)", job.uid, action, job.filename, job.status)
        prepared = await self._prepare([job])
        self._websockets.broadcast(
            "notify_history_changed", [{"action": action, "job": prepared[0]}]
        )

    async def _save_totals(self, totals: dict[str, float | int]) -> None:
        await self._db.insert_item(
            NAMESPACE, [TOTALS_KEY], {"job_totals": totals, "auxiliary_totals": []}
        )

    async def _prepare(self, jobs: list[Job]) -> list[dict[str, Any]]:
        """The served form of ``jobs``: their records with ``exists``."""
        roots = await self._files.roots()
        gcodes = roots.get("gcodes") if isinstance(roots, dict) else None
        root = getattr(gcodes, "real", None)
        wanted = []
        for job in jobs:
            modified = job.metadata.get("modified")
            mtime = float(modified) if isinstance(modified, int | float) else None
            wanted.append((job.filename, mtime))
        exists = await trio.to_thread.run_sync(_files_exist, root, wanted)
        return [{**job.record(), "exists": e} for job, e in zip(jobs, exists, strict=True)]

    def _job(self, text: str | None) -> Job:
        if text is None:
            raise ApiError("missing required argument 'uid'", 400)
        job_id = parse_uid(text)
        job = self.jobs.get(job_id) if job_id is not None else None
        if job is None:
            raise ApiError(f"Invalid job uid: {text}", 404)
        return job

    # -- the API -----------------------------------------------------------------------------

    @endpoint("/server/history/list", "GET", params=ListParams)
    async def list_jobs(self, call: Call[ListParams]) -> dict[str, Any]:
        p = call.params
        order = p.order.lower()
        if order not in ("asc", "desc"):
            raise ApiError(f"Invalid `order` value: {p.order.upper()}", 400)
        selected = [
            job
            for job in self.jobs.values()
            if (p.before == -1 or (job.end_time is not None and job.end_time < p.before))
            and (p.since == -1 or job.start_time > p.since)
        ]
        if order == "desc":
            selected.reverse()
        if p.limit > 0:
            start = max(p.start, 0)
            selected = selected[start : start + p.limit]
        jobs = await self._prepare(selected)
        return {"count": len(jobs), "jobs": jobs}

    @endpoint("/server/history/job", "GET", "DELETE", params=JobParams)
    async def job(self, call: Call[JobParams]) -> dict[str, Any]:
        if call.verb == "GET":
            (prepared,) = await self._prepare([self._job(call.params.uid)])
            return {"job": prepared}
        async with self._lock:
            every = call.params.all
            doomed = list(self.jobs.values()) if every else [self._job(call.params.uid)]
            for job in doomed:
                try:
                    await self._db.delete_item(NAMESPACE, [job.uid])
                except ApiError:  # not stored (its write failed): forgetting it is enough
                    log.warning("history: job %s was not in the database", job.uid)
                del self.jobs[job.job_id]
        return {"deleted_jobs": [job.uid for job in doomed]}

    @endpoint("/server/history/totals", "GET")
    async def totals(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"job_totals": dict(self.tracker.totals), "auxiliary_totals": []}

    @endpoint("/server/history/reset_totals", "POST")
    async def reset_totals(self, call: Call[NoParams]) -> dict[str, Any]:
        async with self._lock:
            try:
                last = self.tracker.reset_totals()
            except JobInProgress as exc:
                raise ApiError(str(exc), 400) from None
            await self._save_totals(dict(self.tracker.totals))
        return {"last_totals": last, "last_auxiliary_totals": []}
