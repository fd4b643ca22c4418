"""The job queue component against doubles: klippy's remote methods, shutdown, storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from trioprint.bus import Bus
from trioprint.components.job_queue import KEY, NAMESPACE, JobQueueComponent
from trioprint.components.klippy import KlippyStateChanged
from trioprint.config import JobQueueConfig
from trioprint.domain.kv import MemoryStore
from trioprint.errors import ApiError


class FakeKlippy:
    def __init__(self) -> None:
        self.remote: dict[str, Callable[..., Any]] = {}
        self.status: Callable[[dict[str, Any], float], None] | None = None
        self.state = "startup"  # the link's state
        self.print_state = "standby"
        self.gcode: list[str] = []

    def set_internal_subscription(self, name: str, spec: Any, callback: Any) -> None:
        self.status = callback

    def register_remote_method(self, name: str, callback: Callable[..., Any]) -> None:
        self.remote[name] = callback

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert method == "objects/query"
        return {"status": {"print_stats": {"state": self.print_state}}}

    async def run_gcode(self, script: str) -> Any:
        self.gcode.append(script)
        return {}


class Files:
    async def locate(self, request: str, what: str = "path") -> str:
        raise ApiError("not used", 500)


class Sockets:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        assert method == "notify_job_queue_changed"
        assert params is not None
        self.sent.append(params[0])


async def test_remote_methods_shutdown_and_storage(autojump_clock: trio.testing.MockClock) -> None:
    klippy, sockets, db, bus = FakeKlippy(), Sockets(), MemoryStore(), Bus()
    started: list[str] = []

    async def start_print(filename: str) -> None:
        started.append(filename)
        klippy.print_state = "printing"

    await db.insert_item(
        NAMESPACE,
        [KEY],
        [{"filename": "a.gcode", "job_id": "00000000000000AA", "time_added": 1.0}, "junk"],
    )
    queue = JobQueueComponent(
        JobQueueConfig(automatic_transition=True),
        klippy,
        start_print,
        Files(),
        sockets,
        db,
        bus,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        assert [j["job_id"] for j in queue.core.queued()] == ["00000000000000AA"]
        # a macro's action_call_remote_method
        klippy.remote["start_job_queue"]()
        await queue.settled()
        await trio.sleep(1)
        assert started == ["a.gcode"]
        assert queue.core.state == "paused"  # nothing left
        assert await db.get_item(NAMESPACE, [KEY]) == []
        await queue.queue_upload("b.gcode")
        assert klippy.status is not None
        klippy.status({"print_stats": {"state": "standby"}}, 0.0)  # the baseline
        klippy.status({"print_stats": {"state": "printing", "filename": "a.gcode"}}, 0.0)
        klippy.remote["start_job_queue"]()
        await queue.settled()
        assert queue.core.state == "ready"  # busy printer, automatic transition
        bus.publish(KlippyStateChanged("shutdown", "boom", "ready"))
        await trio.sleep(0.1)
        await queue.settled()
        assert queue.core.state == "paused"
        klippy.remote["start_job_queue"]()
        await queue.settled()
        klippy.remote["pause_job_queue"]()
        await queue.settled()
        assert queue.core.state == "paused"
        assert queue.core.pause_requested is True
        stored = await db.get_item(NAMESPACE, [KEY])
        assert [j["filename"] for j in stored] == ["b.gcode"]
        nursery.cancel_scope.cancel()
    assert [n["action"] for n in sockets.sent][:4] == [
        "state_changed",
        "state_changed",
        "job_loaded",
        "jobs_added",
    ]
    assert klippy.gcode == []  # no transition G-code before the first job


async def test_load_on_startup_when_klippy_was_ready_before_the_queue_ran(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # After a restart the link may reconnect before this component subscribes to its
    # state changes: the queue reads the state it starts in, and loads its first job.
    klippy, db = FakeKlippy(), MemoryStore()
    klippy.state = "ready"
    started: list[str] = []

    async def start_print(filename: str) -> None:
        started.append(filename)

    await db.insert_item(
        NAMESPACE,
        [KEY],
        [{"filename": "a.gcode", "job_id": "00000000000000AA", "time_added": 1.0}],
    )
    queue = JobQueueComponent(
        JobQueueConfig(load_on_startup=True),
        klippy,
        start_print,
        Files(),
        Sockets(),
        db,
        Bus(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        await queue.settled()
        await trio.sleep(60)
        assert started == ["a.gcode"]
        nursery.cancel_scope.cancel()
