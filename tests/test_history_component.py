"""The history component: a fake klippy feeds it print_stats, a MemoryStore keeps its records."""

from __future__ import annotations

import copy
import os
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.bus import Bus
from trioprint.components.history import NAMESPACE, History
from trioprint.components.klippy import KlippyStateChanged
from trioprint.domain.kv import MemoryStore
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport


class FakeKlippy:
    def __init__(self) -> None:
        self.subscriptions: dict[str, Any] = {}

    def set_internal_subscription(
        self, name: str, spec: Any, callback: Callable[[dict[str, Any], float], None]
    ) -> None:
        self.subscriptions[name] = (spec, callback)

    def push(self, diff: dict[str, Any], eventtime: float) -> None:
        self.subscriptions["history"][1](diff, eventtime)


class FakeWebsockets:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self._arrived = trio.Event()

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        self.sent.append((method, params))
        self._arrived.set()
        self._arrived = trio.Event()

    def changes(self) -> list[dict[str, Any]]:
        return [p[0] for m, p in self.sent if m == "notify_history_changed"]

    async def wait_changes(self, count: int) -> list[dict[str, Any]]:
        while len(self.changes()) < count:
            await self._arrived.wait()
        return self.changes()


class FakeMetadata:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def get(self, filename: str, *, force: bool = False) -> dict[str, Any]:
        path = self.folder / filename
        if not path.is_file():
            raise ApiError(f"file does not exist (gcodes/{filename})", 404)
        return {
            "filename": filename,
            "modified": path.stat().st_mtime,
            "size": path.stat().st_size,
            "slicer": "PrusaSlicer",
            "estimated_time": 120,
            "job_id": "00000F",
            "print_start_time": 1.0,
            "thumbnails": [{"width": 32, "height": 32, "data": "AAAA", "relative_path": "t.png"}],
        }


class FakeFiles:
    def __init__(self, folder: Path) -> None:
        self.real = os.path.realpath(folder)

    async def roots(self) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"gcodes": types.SimpleNamespace(real=self.real)}


class Rig:
    def __init__(self, tmp_path: Path, store: MemoryStore) -> None:
        self.gcodes = tmp_path / "gcodes"
        self.gcodes.mkdir(exist_ok=True)
        self.klippy = FakeKlippy()
        self.bus = Bus()
        self.ws = FakeWebsockets()
        self.store = store
        self.now = 1000.0
        #: The printer's clock (klippy's eventtime): its own origin, and as fast as the wall
        #: clock unless a test sets ``printer_speed`` (a simulated printer at --sim-speed).
        self.eventtime = 50.0
        self.printer_speed = 1.0
        self.history = History(
            self.klippy,
            self.bus,
            self.ws,
            store,
            FakeMetadata(self.gcodes),
            FakeFiles(self.gcodes),
            clock=lambda: self.now,
        )
        self.registry = Registry()
        self.registry.add_component(self.history)

    async def feed(self, state: str | None = None, at: float | None = None, **fields: Any) -> None:
        if at is not None:
            self.eventtime += (at - self.now) * self.printer_speed
            self.now = at
        diff = dict(fields)
        if state is not None:
            diff["state"] = state
        self.klippy.push({"print_stats": diff}, self.eventtime)
        await self.history.settled()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        ep = self.registry.by_rpc(method)
        assert ep is not None, method
        return await self.registry.dispatch(ep, params or {}, Transport.WEBSOCKET)

    async def print_file(
        self, name: str, start: float, seconds: float, end: str = "complete"
    ) -> None:
        (self.gcodes / name).write_text("G28\n")
        await self.feed("printing", at=start, filename=name, total_duration=0.0, print_duration=0.0)
        await self.feed(
            end,
            at=start + seconds,
            total_duration=seconds,
            print_duration=seconds - 1,
            filament_used=10.0,
        )


@asynccontextmanager
async def rig(tmp_path: Path, store: MemoryStore | None = None) -> AsyncIterator[Rig]:
    r = Rig(tmp_path, store or MemoryStore())
    async with trio.open_nursery() as nursery:
        await nursery.start(r.history.run)
        await r.feed("standby", filename="", total_duration=0.0)  # the snapshot on connect
        yield r
        nursery.cancel_scope.cancel()


async def test_a_print_is_one_job_announced_when_added_and_finished(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        assert r.klippy.subscriptions["history"][0]["print_stats"]
        (r.gcodes / "cube.gcode").write_text("G28\n")
        await r.feed("printing", at=1000.0, filename="cube.gcode", total_duration=0.0)
        (added,) = await r.ws.wait_changes(1)
        assert added["action"] == "added"
        assert added["job"]["status"] == "in_progress"
        assert added["job"]["job_id"] == "000001"
        assert added["job"]["exists"] is True
        await r.feed("complete", at=1100.0, total_duration=100.0, print_duration=90.0)
        finished = (await r.ws.wait_changes(2))[1]
        assert finished["action"] == "finished"
        job = finished["job"]
        assert job["status"] == "completed"
        assert (job["start_time"], job["end_time"]) == (1000.0, 1100.0)
        assert (job["print_duration"], job["total_duration"]) == (90.0, 100.0)
        # the metadata snapshot: no thumbnail data, no back-links into the history
        assert job["metadata"]["slicer"] == "PrusaSlicer"
        assert "job_id" not in job["metadata"]
        assert "print_start_time" not in job["metadata"]
        assert job["metadata"]["thumbnails"] == [
            {"width": 32, "height": 32, "relative_path": "t.png"}
        ]
        listed = await r.call("server.history.list")
        assert listed["count"] == 1
        assert listed["jobs"] == [job]
        assert await r.call("server.history.get_job", {"uid": "000001"}) == {"job": job}
        assert set(job) == {
            "job_id",
            "user",
            "filename",
            "status",
            "start_time",
            "end_time",
            "print_duration",
            "total_duration",
            "filament_used",
            "metadata",
            "auxiliary_data",
            "exists",
        }
        totals = await r.call("server.history.totals")
        assert totals == {
            "job_totals": {
                "total_jobs": 1,
                "total_time": 100.0,
                "total_print_time": 90.0,
                "total_filament_used": 0.0,
                "longest_job": 100.0,
                "longest_print": 90.0,
            },
            "auxiliary_totals": [],
        }
        # stored: the job under its uid, the totals beside it
        assert r.store.data[NAMESPACE]["000001"]["status"] == "completed"
        assert r.store.data[NAMESPACE]["totals"]["job_totals"]["total_jobs"] == 1


async def test_exists_follows_the_file(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.print_file("a.gcode", 10.0, 5.0)
        await r.print_file("b.gcode", 20.0, 5.0)
        (r.gcodes / "a.gcode").unlink()
        (r.gcodes / "b.gcode").write_text("changed\n")
        os.utime(r.gcodes / "b.gcode", (1.0, 1.0))
        jobs = (await r.call("server.history.list", {"order": "asc"}))["jobs"]
        assert [(j["filename"], j["exists"]) for j in jobs] == [
            ("a.gcode", False),
            ("b.gcode", False),
        ]


async def test_list_filters_orders_and_pages(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        for i in range(5):  # job i runs from 100*i to 100*i + 50
            await r.print_file(f"{i}.gcode", 100.0 * i, 50.0)

        async def ids(**params: Any) -> list[str]:
            result = await r.call("server.history.list", params)
            assert result["count"] == len(result["jobs"])
            return [j["job_id"][-1] for j in result["jobs"]]

        assert await ids() == ["5", "4", "3", "2", "1"]
        assert await ids(order="asc") == ["1", "2", "3", "4", "5"]
        assert await ids(limit=2) == ["5", "4"]
        assert await ids(limit=2, start=2) == ["3", "2"]
        assert await ids(limit="2", start="4") == ["1"]  # query strings give text
        assert await ids(limit=0, start=3) == ["5", "4", "3", "2", "1"]  # no limit: all
        assert await ids(since=100.0) == ["5", "4", "3"]  # started after
        assert await ids(before=250.0) == ["2", "1"]  # ended before
        assert await ids(since=50.0, before=350.0, order="ASC") == ["2", "3"]
        with pytest.raises(ApiError) as info:
            await r.call("server.history.list", {"order": "sideways"})
        assert info.value.status == 400
        with pytest.raises(ApiError) as info:
            await r.call("server.history.list", {"limit": "many"})
        assert info.value.status == 400


async def test_a_running_job_is_listed_but_not_before_anything(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.print_file("a.gcode", 10.0, 5.0)
        (r.gcodes / "b.gcode").write_text("x")
        await r.feed("printing", at=30.0, filename="b.gcode", total_duration=0.0)
        jobs = (await r.call("server.history.list"))["jobs"]
        assert [j["status"] for j in jobs] == ["in_progress", "completed"]
        assert jobs[0]["end_time"] is None
        assert len((await r.call("server.history.list", {"before": 1e12}))["jobs"]) == 1


async def test_delete_one_job_or_all(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        for i in range(3):
            await r.print_file(f"{i}.gcode", 10.0 * i, 5.0)
        assert await r.call("server.history.delete_job", {"uid": "000002"}) == {
            "deleted_jobs": ["000002"]
        }
        assert "000002" not in r.store.data[NAMESPACE]
        with pytest.raises(ApiError) as info:
            await r.call("server.history.get_job", {"uid": "000002"})
        assert (info.value.status, info.value.message) == (404, "Invalid job uid: 000002")
        for bad in ({"uid": "000002"}, {"uid": "nothex"}):
            with pytest.raises(ApiError) as info:
                await r.call("server.history.delete_job", bad)
            assert info.value.status == 404
        with pytest.raises(ApiError) as info:
            await r.call("server.history.delete_job", {})
        assert info.value.status == 400
        result = await r.call("server.history.delete_job", {"all": "true"})
        assert result == {"deleted_jobs": ["000001", "000003"]}
        assert (await r.call("server.history.list"))["jobs"] == []
        assert set(r.store.data[NAMESPACE]) == {"totals"}
        # totals are the prints' record, not the list's: deleting jobs keeps them
        assert (await r.call("server.history.totals"))["job_totals"]["total_jobs"] == 3


async def test_reset_totals(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.print_file("a.gcode", 0.0, 30.0)
        (r.gcodes / "b.gcode").write_text("x")
        await r.feed("printing", at=50.0, filename="b.gcode", total_duration=0.0)
        with pytest.raises(ApiError) as info:
            await r.call("server.history.reset_totals")
        assert (info.value.status, info.value.message) == (
            400,
            "Job in progress, cannot reset totals",
        )
        await r.feed(at=59.0, total_duration=10.0)
        await r.feed("cancelled", at=60.0, total_duration=11.0)
        result = await r.call("server.history.reset_totals")
        assert result["last_totals"]["total_jobs"] == 2
        assert result["last_totals"]["total_time"] == 40.0
        assert result["last_auxiliary_totals"] == []
        totals = (await r.call("server.history.totals"))["job_totals"]
        assert set(totals.values()) == {0}
        assert r.store.data[NAMESPACE]["totals"]["job_totals"]["total_jobs"] == 0


async def test_a_lost_link_ends_the_job_as_klippy_disconnect(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        (r.gcodes / "a.gcode").write_text("x")
        await r.feed("printing", at=10.0, filename="a.gcode", total_duration=0.0)
        await r.feed(at=15.0, total_duration=5.0, print_duration=4.0)
        r.bus.publish(KlippyStateChanged("disconnected", "Klippy Disconnected", "ready"))
        finished = (await r.ws.wait_changes(2))[1]
        assert finished["job"]["status"] == "klippy_disconnect"
        assert finished["job"]["total_duration"] == 5.0


async def test_a_shutdown_ends_the_job_as_klippy_shutdown(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        (r.gcodes / "a.gcode").write_text("x")
        await r.feed("printing", at=10.0, filename="a.gcode", total_duration=0.0)
        r.klippy.push(
            {"webhooks": {"state": "shutdown"}, "print_stats": {"state": "paused"}}, r.eventtime
        )
        finished = (await r.ws.wait_changes(2))[1]
        assert finished["job"]["status"] == "klippy_shutdown"
        assert len(await r.ws.wait_changes(2)) == 2


async def test_a_stop_mid_print_ends_the_job_as_server_exit(tmp_path: Path) -> None:
    store = MemoryStore()
    async with rig(tmp_path, store) as r:
        await r.print_file("a.gcode", 0.0, 10.0)
        (r.gcodes / "b.gcode").write_text("x")
        await r.feed("printing", at=20.0, filename="b.gcode", total_duration=0.0)
        await r.feed(at=23.0, total_duration=3.0, print_duration=2.5)
        await r.ws.wait_changes(3)
    # the component was stopped mid-print (a stop or server.restart): as Moonraker records it
    stored = store.data[NAMESPACE]["000002"]
    assert stored["status"] == "server_exit"
    assert (stored["end_time"], stored["total_duration"]) == (23.0, 3.0)
    assert "trioprint_last_seen" not in stored
    assert store.data[NAMESPACE]["totals"]["job_totals"]["total_jobs"] == 2
    async with rig(tmp_path, store) as r:
        jobs = (await r.call("server.history.list"))["jobs"]
        assert [(j["job_id"], j["status"]) for j in jobs] == [
            ("000002", "server_exit"),
            ("000001", "completed"),
        ]
        assert (await r.call("server.history.totals"))["job_totals"]["total_jobs"] == 2
        await r.print_file("c.gcode", 30.0, 5.0)  # ids go on from the stored ones
        assert (await r.call("server.history.list", {"limit": 1}))["jobs"][0]["job_id"] == "000003"


async def test_a_crash_mid_print_leaves_the_job_interrupted_at_its_last_checkpoint(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    async with rig(tmp_path, store) as r:
        await r.print_file("a.gcode", 0.0, 10.0)
        (r.gcodes / "b.gcode").write_text("x")
        await r.feed("printing", at=20.0, filename="b.gcode", total_duration=0.0)
        for second in range(1, 8):  # klippy reports the durations as they grow
            await r.feed(at=20.0 + second, total_duration=float(second), print_duration=second / 2)
        await r.ws.wait_changes(3)
        # the process dies here: what the store holds is all a new start sees
        crashed = MemoryStore()
        crashed.data = copy.deepcopy(store.data)
    stored = crashed.data[NAMESPACE]["000002"]
    assert stored["status"] == "in_progress"
    assert stored["trioprint_last_seen"] == 25.0  # checkpointed CHECKPOINT_INTERVAL s in
    async with rig(tmp_path, crashed) as r:
        jobs = (await r.call("server.history.list"))["jobs"]
        assert [(j["job_id"], j["status"]) for j in jobs] == [
            ("000002", "interrupted"),
            ("000001", "completed"),
        ]
        job = jobs[0]
        assert (job["start_time"], job["end_time"]) == (20.0, 25.0)
        assert (job["total_duration"], job["print_duration"]) == (5.0, 2.5)
        assert "trioprint_last_seen" not in job
        # as in Moonraker, nothing saw the interrupted job end: it does not count
        assert (await r.call("server.history.totals"))["job_totals"]["total_jobs"] == 1
        assert crashed.data[NAMESPACE]["000002"]["status"] == "interrupted"


async def test_a_jobs_times_follow_the_printers_clock(tmp_path: Path) -> None:
    # a simulated printer at --sim-speed 20: 134 s of printing pass in 6.7 s of wall time
    async with rig(tmp_path) as r:
        r.printer_speed = 20.0
        (r.gcodes / "fast.gcode").write_text("G28\n")
        await r.feed("printing", at=1000.0, filename="fast.gcode", total_duration=0.0)
        await r.feed("complete", at=1006.7, total_duration=134.0, print_duration=130.0)
        job = (await r.ws.wait_changes(2))[1]["job"]
    assert job["start_time"] == 1000.0
    assert job["end_time"] - job["start_time"] == pytest.approx(job["total_duration"])


async def test_broken_stored_entries_are_skipped(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.insert_item(NAMESPACE, "zzz", {"status": "completed"})
    await store.insert_item(NAMESPACE, "000007", "not a record")
    await store.insert_item(NAMESPACE, "000005", {"status": "completed", "filename": "a.gcode"})
    await store.insert_item(NAMESPACE, "totals", {"job_totals": {"total_jobs": "lots"}})
    async with rig(tmp_path, store) as r:
        jobs = (await r.call("server.history.list"))["jobs"]
        assert [j["job_id"] for j in jobs] == ["000005"]
        assert (await r.call("server.history.totals"))["job_totals"]["total_jobs"] == 0


class FailingStore(MemoryStore):
    """A store whose next ``fail`` job writes fail (a full disk, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = 0

    async def insert_item(self, namespace: str, key: Any, value: Any) -> None:
        if self.fail and key != ["totals"]:
            self.fail -= 1
            raise OSError("disk full")
        await super().insert_item(namespace, key, value)


async def test_a_failed_write_loses_that_record_only(tmp_path: Path) -> None:
    store = FailingStore()
    async with rig(tmp_path, store) as r:
        store.fail = 1
        await r.print_file("a.gcode", 0.0, 10.0)  # its start is not stored, its end is
        store.fail = 2
        await r.print_file("b.gcode", 20.0, 10.0)  # neither is stored
        await r.print_file("c.gcode", 40.0, 10.0)
        assert sorted(k for k in store.data[NAMESPACE] if k != "totals") == ["000001", "000003"]
        # the component went on: every job is listed and counted
        assert (await r.call("server.history.list"))["count"] == 3
        assert (await r.call("server.history.totals"))["job_totals"]["total_jobs"] == 3


async def test_a_file_without_metadata_gets_an_empty_snapshot(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await r.feed("printing", at=1.0, filename="gone.gcode", total_duration=0.0)
        await r.feed("error", at=2.0, total_duration=1.0)
        (job,) = (await r.call("server.history.list"))["jobs"]
        assert (job["status"], job["metadata"], job["exists"]) == ("error", {}, False)


async def test_a_job_never_starts_before_the_previous_one_ended(tmp_path: Path) -> None:
    # a printer clock 20 times faster than the wall's ends each job in the wall's future
    async with rig(tmp_path) as r:
        r.printer_speed = 20.0
        await r.print_file("a.gcode", 1000.0, 5.0)
        await r.print_file("b.gcode", 1006.0, 5.0)
        first, second = (c["job"] for c in (await r.ws.wait_changes(4))[1::2])
    assert first["end_time"] <= second["start_time"]
