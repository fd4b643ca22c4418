"""Job history end to end on the simulated printer: a live Instance records real prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trioprint.domain.kv import MemoryStore
from trioprint.registry import Transport

from .test_sim import WAIT, collector, sim_server

#: A print that takes minutes of machine time: long enough to be cancelled or cut short.
LONG = "G28\n" + "G1 X200 Y10 F600\nG1 X10 Y200 F600\n" * 100


def history_change(action: str) -> Any:
    def match(message: dict[str, Any]) -> bool:
        return (
            message.get("method") == "notify_history_changed"
            and message["params"][0]["action"] == action
        )

    return match


async def test_a_print_is_recorded_as_one_completed_job(tmp_path: Path) -> None:
    async with (
        sim_server(tmp_path, speed=50.0) as live,
        collector(live) as c,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        with trio.fail_after(WAIT):
            assert "history" in (await c.result("server.info"))["components"]
            assert await c.result("printer.print.start", {"filename": "square.gcode"}) == "ok"
            added = (await c.wait(history_change("added")))["params"][0]["job"]
            finished = (await c.wait(history_change("finished")))["params"][0]["job"]
            listed = (await http.get("/server/history/list")).json()["result"]
            totals = (await http.get("/server/history/totals")).json()["result"]
            deleted = (await http.delete("/server/history/job?uid=000001")).json()["result"]
            missing = await http.get("/server/history/job?uid=000001")
        assert added["job_id"] == finished["job_id"] == "000001"
        assert added["status"] == "in_progress"
        assert listed["count"] == 1
        (job,) = listed["jobs"]
        assert job == finished
        assert job["status"] == "completed"
        assert job["filename"] == "square.gcode"
        assert job["print_duration"] > 0
        assert job["total_duration"] >= job["print_duration"]
        assert job["filament_used"] == pytest.approx(12.0)
        assert job["end_time"] > job["start_time"]
        assert job["exists"] is True
        assert job["metadata"]["size"] == (tmp_path / "gcodes" / "square.gcode").stat().st_size
        assert totals["job_totals"]["total_jobs"] == 1
        assert totals["job_totals"]["total_print_time"] == job["print_duration"]
        assert totals["auxiliary_totals"] == []
        assert deleted == {"deleted_jobs": ["000001"]}
        assert missing.status_code == 404


async def test_a_cancelled_print_is_recorded_cancelled(tmp_path: Path) -> None:
    (tmp_path / "gcodes").mkdir()
    (tmp_path / "gcodes" / "long.gcode").write_text(LONG)
    async with sim_server(tmp_path, speed=50.0) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            assert await c.result("printer.print.start", {"filename": "long.gcode"}) == "ok"
            await c.wait(history_change("added"))
            assert await c.result("printer.print.cancel") == "ok"
            finished = (await c.wait(history_change("finished")))["params"][0]["job"]
            jobs = (await c.result("server.history.list"))["jobs"]
        assert finished["status"] == "cancelled"
        assert [j["status"] for j in jobs] == ["cancelled"]
        assert jobs[0]["filename"] == "long.gcode"


async def test_a_restart_mid_print_ends_the_job_as_server_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Until the SQLite database lands every Instance gets a MemoryStore of its own: share one
    # so that the restarted instance reads what the first one stored, as it will on disk.
    shared = MemoryStore()
    monkeypatch.setattr("trioprint.app.MemoryStore", lambda: shared, raising=False)
    (tmp_path / "gcodes").mkdir()
    (tmp_path / "gcodes" / "long.gcode").write_text(LONG)
    async with sim_server(tmp_path, speed=20.0) as live:
        with trio.fail_after(WAIT):
            async with collector(live) as c:
                assert await c.result("printer.print.start", {"filename": "long.gcode"}) == "ok"
                await c.wait(history_change("added"))
            # over HTTP: a websocket client would see its socket closed by the restart
            async with httpx.AsyncClient(base_url=live.http) as http:
                assert (await http.post("/server/restart")).json() == {"result": "ok"}
            new = await live.server.wait_serving(other_than=live.instance)
            await new.klippy.wait_ready()
            endpoint = new.registry.by_rpc("server.history.list")
            assert endpoint is not None
            jobs = (await new.registry.dispatch(endpoint, {}, Transport.WEBSOCKET))["jobs"]
            printing = await new.klippy.request(
                "objects/query", {"objects": {"print_stats": ["state"]}}
            )
        assert [(j["job_id"], j["status"]) for j in jobs] == [("000001", "server_exit")]
        (job,) = jobs
        # one clock: the job's end is its start plus the printer's elapsed time (speed 20)
        assert job["end_time"] - job["start_time"] == pytest.approx(job["total_duration"], abs=1)
        # the machine went on printing: only the host restarted
        assert printing["status"]["print_stats"]["state"] == "printing"
        await new.klippy.request("pause_resume/cancel", {})
