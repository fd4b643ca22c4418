"""``server.job_queue.*``: the print job queue (Moonraker 0.11's ``job_queue``).

The decisions are :class:`trioprint.domain.job_queue.JobQueue`'s; this component feeds it and
carries them out. Inputs, in arrival order through one channel: klippy's ``print_stats`` diffs
(an internal status subscription, turned into job events by
:class:`~trioprint.domain.job_queue.JobEvents`), the link's state changes from the bus
(``ready`` may load the first job, ``shutdown`` pauses the queue) and klippy's remote methods
``pause_job_queue`` and ``start_job_queue`` (a macro's ``action_call_remote_method``). The API
handlers call the core directly.

A load the core asks for is a timer task in the component's nursery (a pause before it fires
cancels it); the load itself asks klippy whether it can print, runs
``job_transition_gcode`` between two jobs and starts the print, under one lock, as Moonraker
does. Every change is ``notify_job_queue_changed``.

Unlike Moonraker, the queue survives a restart: the jobs are kept in the database (namespace
``trioprint``, key ``job_queue``), written before a request that changed them is answered;
the queue comes back ``paused`` (``load_on_startup`` then loads its first job when klippy is
ready, as Moonraker's does for a queue filled before klippy connected).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
import trio

from ..bus import Bus
from ..config import JobQueueConfig
from ..domain.job_queue import (
    STATS_FIELDS,
    JobEvents,
    JobQueue,
    PopRequest,
    UnknownJob,
    load_jobs,
)
from ..domain.kv import KeyValueStore
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from .args import flag, string_list
from .klippy import KlippyStateChanged
from .protocols import Broadcaster, RemoteMethodSource

log = logging.getLogger(__name__)

NAMESPACE = "trioprint"
KEY = "job_queue"
NOTIFICATION = "notify_job_queue_changed"
#: Inputs waiting for the component (a few per second while printing); beyond this, dropped.
INPUT_CAPACITY = 1000


class KlippyLink(RemoteMethodSource, Protocol):
    @property
    def state(self) -> str: ...

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    async def run_gcode(self, script: str) -> Any: ...


class FileLocator(Protocol):
    async def locate(self, request: str, what: str = "path") -> str: ...


@attrs.frozen
class JobParams:
    """``/server/job_queue/job``'s arguments, read by verb: POST takes ``filenames`` and
    ``reset``, DELETE ``job_ids`` or ``all``."""

    raw: Mapping[str, Any]

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> JobParams:
        return cls(dict(raw))


@attrs.frozen
class JumpParams:
    job_id: str


class JobQueueComponent:
    """Moonraker's ``job_queue`` component."""

    name = "job_queue"

    def __init__(
        self,
        options: JobQueueConfig,
        klippy: KlippyLink,
        start_print: Callable[[str], Awaitable[Any]],
        files: FileLocator,
        websockets: Broadcaster,
        database: KeyValueStore,
        bus: Bus,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._klippy = klippy
        self._start_print = start_print
        self._files = files
        self._websockets = websockets
        self._db = database
        self._bus = bus
        self.core = JobQueue(
            automatic=options.automatic_transition,
            load_on_startup=options.load_on_startup,
            job_delay=options.job_transition_delay,
            clock=clock,
        )
        self.events = JobEvents()
        self._lock = trio.Lock()  # one load, start or queueing with I/O at a time
        self._save_lock = trio.Lock()
        self._send, self._receive = trio.open_memory_channel[tuple[str, Any]](INPUT_CAPACITY)
        self._nursery: trio.Nursery | None = None
        self._timer: trio.CancelScope | None = None
        self._idle = trio.Event()
        self._dropped = 0
        #: ``listener(payload)`` for each ``jobs_added`` (the power devices' on_when_job_queued).
        self.jobs_added_listeners: list[Callable[[dict[str, Any]], None]] = []
        klippy.set_internal_subscription(
            "job_queue", {"print_stats": list(STATS_FIELDS)}, self._on_status
        )
        klippy.register_remote_method("pause_job_queue", lambda **_: self._put("remote", "pause"))
        klippy.register_remote_method("start_job_queue", lambda **_: self._put("remote", "start"))

    # -- inputs ------------------------------------------------------------------------------

    def _put(self, kind: str, data: Any) -> None:
        try:
            self._send.send_nowait((kind, data))
        except trio.WouldBlock:
            self._dropped += 1
            if self._dropped == 1:
                log.warning("job queue: input queue full, updates dropped")
        else:
            if self._idle.is_set():
                self._idle = trio.Event()

    def _on_status(self, diff: dict[str, Any], eventtime: float) -> None:
        self._put("status", diff)

    async def settled(self) -> None:
        """Wait until every input so far has been handled (for tests)."""
        await self._idle.wait()

    # -- the lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._bus.subscribe(KlippyStateChanged, capacity=64, name="job_queue") as events:
            # The link starts before this component: klippy may be ready already (a fast
            # reconnect after a restart), and that change was published before this subscribed.
            # Read in the same step as the subscription, so no change falls between the two.
            if self._klippy.state == "ready":
                self._put("klippy", "ready")
            stored = await self._db.get_item(NAMESPACE, [KEY], default=[])
            for job in load_jobs(stored):
                self.core.jobs[job.job_id] = job
            if self.core.jobs:
                log.info("job queue: %d job(s) queued before the restart", len(self.core.jobs))
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._forward_klippy_states, events)
                task_status.started()
                while True:
                    try:
                        kind, data = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        self._idle.set()
                        kind, data = await self._receive.receive()
                    try:
                        await self._handle(kind, data)
                    except Exception:  # one bad input never stops the queue
                        log.exception("job queue: %s input failed", kind)

    async def _forward_klippy_states(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            if isinstance(event, KlippyStateChanged):
                self._put("klippy", event.state)

    async def _handle(self, kind: str, data: Any) -> None:
        if kind == "status":
            events = self.events.status(data)
            if events:
                async with self._lock:  # after a load under way, as Moonraker's handlers
                    for event in events:
                        self.core.job_event(event)
                    await self._commit()
                return
        elif kind == "klippy":
            if data == "ready":
                async with self._lock:
                    self.core.klippy_ready()
                    await self._commit()
                return
            if data == "shutdown":
                self.core.klippy_shutdown()
            elif data == "disconnected":
                self.events.disconnected()
                self.core.last_event = self.events.last_event
        elif kind == "remote":
            if data == "pause":
                self.core.pause()
            else:
                await self._start_queue()
                return
        await self._commit()

    # -- carrying out the core's decisions ---------------------------------------------------

    async def _commit(self) -> None:
        """Send the notifications, (re)schedule or drop a load, store the jobs if changed."""
        for payload in self.core.take_notifications():
            self._websockets.broadcast(NOTIFICATION, [payload])
            if payload.get("action") == "jobs_added":
                for listener in self.jobs_added_listeners:
                    listener(payload)
        if self.core.take_pop_cancelled() and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        request = self.core.take_pop_request()
        if request is not None and self._nursery is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = await self._nursery.start(self._scheduled_pop, request)
        if self.core.take_jobs_changed():
            async with self._save_lock:
                try:
                    await self._db.insert_item(NAMESPACE, [KEY], self.core.records())
                except Exception:  # the queue goes on in memory
                    log.exception("job queue: the queue could not be stored")

    async def _scheduled_pop(
        self, request: PopRequest, *, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await trio.sleep(request.delay)
        if scope.cancelled_caught:
            return
        if self._timer is scope:
            self._timer = None
        await self._pop(request.need_transition)

    async def _can_print(self) -> bool:
        try:
            result = await self._klippy.request(
                "objects/query", {"objects": {"print_stats": ["state"]}}
            )
        except ApiError:
            return False  # klippy not connected
        stats = result.get("status", {}).get("print_stats") if isinstance(result, dict) else None
        if not isinstance(stats, dict):
            return False
        return stats.get("state") not in ("printing", "paused")

    async def _pop(self, need_transition: bool) -> None:
        """Load the first job (a scheduled load is due)."""
        async with self._lock:
            job = self.core.pop_begin()
            await self._commit()
            if job is None:
                return
            go_on = self.core.pop_check(await self._can_print())
            await self._commit()
            if not go_on:
                return
            gcode = self.options.job_transition_gcode
            try:
                if gcode and need_transition:
                    await self._klippy.run_gcode(gcode)
                    if not self.core.pop_transition_done():
                        log.info("job queue: paused during the transition G-code")
                        return
                self.core.pop_starting()
                await self._commit()
                await self._start_print(job.filename)
            except Exception as exc:
                message = exc.message if isinstance(exc, ApiError) else repr(exc)
                log.warning("job queue: cannot load %s: %s", job.filename, message)
                self.core.pop_failed()
            else:
                log.info("job queue: %s loaded", job.filename)
                self.core.pop_loaded(job.job_id)
            finally:
                await self._commit()

    async def _start_queue(self) -> None:
        async with self._lock:
            can_print = bool(self.core.jobs) and await self._can_print()
            self.core.start(can_print)
            await self._commit()

    async def _check_file(self, filename: str) -> None:
        missing = ApiError(f"G-Code File {filename} does not exist", 400)
        try:
            path = await self._files.locate(f"gcodes/{filename.lstrip('/')}", "filename")
        except ApiError as exc:
            if exc.status == 404:
                raise missing from None
            raise
        if not await trio.to_thread.run_sync(os.path.isfile, path):
            raise missing

    async def queue_upload(self, filename: str) -> None:
        """An upload asked to print while the printer was busy (``queue_gcode_uploads``)."""
        async with self._lock:
            self.core.add([filename])
            await self._commit()

    # -- the API -----------------------------------------------------------------------------

    @endpoint("/server/job_queue/job", "POST", "DELETE", params=JobParams)
    async def job(self, call: Call[JobParams]) -> dict[str, Any]:
        raw = call.params.raw
        async with self._lock:
            if call.verb == "POST":
                filenames = string_list(raw, "filenames") or []
                reset = flag(raw, "reset")
                for filename in filenames:
                    await self._check_file(filename)
                user = call.user.username if call.user is not None else None
                self.core.add(filenames, reset=reset, user=user)
            elif flag(raw, "all"):
                self.core.delete([], every=True)
            else:
                self.core.delete(string_list(raw, "job_ids") or [])
            await self._commit()
        return self.core.snapshot()

    @endpoint("/server/job_queue/pause", "POST")
    async def pause(self, call: Call[NoParams]) -> dict[str, Any]:
        self.core.pause()
        await self._commit()
        return self.core.snapshot()

    @endpoint("/server/job_queue/start", "POST")
    async def start(self, call: Call[NoParams]) -> dict[str, Any]:
        await self._start_queue()
        return self.core.snapshot()

    @endpoint("/server/job_queue/status", "GET")
    async def status(self, call: Call[NoParams]) -> dict[str, Any]:
        return self.core.snapshot()

    @endpoint("/server/job_queue/jump", "POST", params=JumpParams)
    async def jump(self, call: Call[JumpParams]) -> dict[str, Any]:
        async with self._lock:
            try:
                self.core.jump(call.params.job_id)
            except UnknownJob:
                raise ApiError(f"Invalid job id: {call.params.job_id}", 400) from None
            await self._commit()
        return self.core.snapshot()
