"""The job queue end to end: a live instance on the simulated printer runs queued jobs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from .live import Live, live_server
from .test_history_sim import LONG, history_change
from .test_sim import WAIT, Collector, collector

#: A job of about 30 s of machine time: at speed 20, more than the simulator's 0.25 s between
#: two status pushes (a print that begins and ends between two pushes is not seen as a print,
#: by Moonraker either).
SHORT = "G28\nG1 X100 Y100 F600\nG1 X10 Y10\n"


@contextlib.asynccontextmanager
async def queue_server(tmp_path: Path, extra: str = "") -> AsyncIterator[Live]:
    conf = tmp_path / "trioprint.conf"
    conf.write_text(
        "[simulator]\nspeed: 20\n"
        "[job_queue]\nautomatic_transition: true\njob_transition_delay: 0.1\n"
        "job_transition_gcode:\n  M117 next job\n" + extra
    )
    gcodes = tmp_path / "gcodes"
    gcodes.mkdir(exist_ok=True)
    for name in ("a.gcode", "b.gcode"):
        (gcodes / name).write_text(SHORT)
    (gcodes / "long.gcode").write_text(LONG)
    async with live_server(tmp_path, conf) as live:
        with trio.fail_after(WAIT):
            await live.instance.klippy.wait_ready()
        yield live


async def wait_count(c: Collector, match: Any, count: int) -> list[dict[str, Any]]:
    """The first ``count`` messages ``match`` accepts, once they have come."""
    while True:
        found = [m for m in c.messages if match(m)]
        if len(found) >= count:
            return found[:count]
        await c.arrived.wait()


def queue_changed(action: str, state: str | None = None) -> Any:
    def match(message: dict[str, Any]) -> bool:
        if message.get("method") != "notify_job_queue_changed":
            return False
        params = message["params"][0]
        return bool(
            params["action"] == action and (state is None or params["queue_state"] == state)
        )

    return match


async def test_two_queued_jobs_run_one_after_the_other(tmp_path: Path) -> None:
    async with queue_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            info = await c.result("server.info")
            posted = await c.result(
                "server.job_queue.post_job", {"filenames": ["a.gcode", "b.gcode"]}
            )
            started = await c.result("server.job_queue.start")
            await c.wait(queue_changed("job_loaded", "ready"))
            await c.wait(queue_changed("job_loaded", "paused"))
            finished = [
                m["params"][0]["job"] for m in await wait_count(c, history_change("finished"), 2)
            ]
            status = await c.result("server.job_queue.status")
            gcodes = (await c.result("server.gcode_store"))["gcode_store"]
        assert "job_queue" in info["components"]
        assert posted["queue_state"] == "paused"
        assert [j["filename"] for j in posted["queued_jobs"]] == ["a.gcode", "b.gcode"]
        assert all(len(j["job_id"]) == 16 for j in posted["queued_jobs"])
        assert started["queue_state"] == "loading"
        assert [(j["filename"], j["status"]) for j in finished] == [
            ("a.gcode", "completed"),
            ("b.gcode", "completed"),
        ]
        # one after the other, not at once
        assert finished[0]["end_time"] <= finished[1]["start_time"]
        assert status == {"queued_jobs": [], "queue_state": "paused"}
        # the transition G-code ran between the two jobs, not before the first
        commands = [g["message"] for g in gcodes if g["type"] == "command"]
        first = commands.index('SDCARD_PRINT_FILE FILENAME="a.gcode"')
        between = commands.index("M117 next job")
        second = commands.index('SDCARD_PRINT_FILE FILENAME="b.gcode"')
        assert first < between < second
        states = [
            m["params"][0]["queue_state"]
            for m in c.messages
            if m.get("method") == "notify_job_queue_changed"
        ]
        assert states == [
            "paused",  # jobs_added
            "loading",
            "starting",
            "ready",  # a loaded, b waits
            "loading",
            "starting",
            "paused",  # b loaded, nothing left
        ]


async def test_errors_and_a_cancelled_print_pauses_the_queue(tmp_path: Path) -> None:
    async with (
        queue_server(tmp_path) as live,
        collector(live) as c,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        with trio.fail_after(WAIT):
            missing = await c.call("server.job_queue.post_job", {"filenames": ["nope.gcode"]})
            no_files = await c.call("server.job_queue.post_job", {})
            posted = (
                await http.post("/server/job_queue/job?filenames=long.gcode,a.gcode,b.gcode")
            ).json()["result"]
            ids = [j["job_id"] for j in posted["queued_jobs"]]
            bad_jump = await c.call("server.job_queue.jump", {"job_id": "0000000000000000"})
            jumped = await c.result("server.job_queue.jump", {"job_id": ids[0]})
            # long.gcode prints first; b and a wait
            await c.result("server.job_queue.jump", {"job_id": ids[2]})
            await c.result("server.job_queue.jump", {"job_id": ids[0]})
            await c.result("server.job_queue.start")
            await c.wait(queue_changed("job_loaded", "ready"))
            await c.wait(history_change("added"))
            assert await c.result("printer.print.cancel") == "ok"
            await c.wait(queue_changed("state_changed", "paused"))
            after_cancel = await c.result("server.job_queue.status")
            deleted = (
                await http.request("DELETE", f"/server/job_queue/job?job_ids={ids[1]}")
            ).json()["result"]
            cleared = await c.result("server.job_queue.delete_job", {"all": True})
        assert missing["error"]["code"] == 400
        assert missing["error"]["message"] == "G-Code File nope.gcode does not exist"
        assert no_files["error"]["code"] == 400
        assert "filenames" in no_files["error"]["message"]
        assert bad_jump["error"]["message"] == "Invalid job id: 0000000000000000"
        assert [j["filename"] for j in jumped["queued_jobs"]] == [
            "long.gcode",
            "a.gcode",
            "b.gcode",
        ]
        assert after_cancel["queue_state"] == "paused"
        assert [j["filename"] for j in after_cancel["queued_jobs"]] == ["b.gcode", "a.gcode"]
        assert [j["filename"] for j in deleted["queued_jobs"]] == ["b.gcode"]
        assert cleared == {"queued_jobs": [], "queue_state": "paused"}


async def test_the_queue_survives_a_restart(tmp_path: Path) -> None:
    async with queue_server(tmp_path) as live:
        async with httpx.AsyncClient(base_url=live.http) as http:
            with trio.fail_after(WAIT):
                posted = (
                    await http.post(
                        "/server/job_queue/job", json={"filenames": ["a.gcode", "b.gcode"]}
                    )
                ).json()["result"]
                assert (await http.post("/server/restart")).json() == {"result": "ok"}
                new = await live.server.wait_serving(other_than=live.instance)
                await new.klippy.wait_ready()
        port = new.bound[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            with trio.fail_after(WAIT):
                status = (await http.get("/server/job_queue/status")).json()["result"]
        assert status["queue_state"] == "paused"
        assert [(j["filename"], j["job_id"]) for j in status["queued_jobs"]] == [
            (j["filename"], j["job_id"]) for j in posted["queued_jobs"]
        ]


async def test_an_upload_to_print_while_printing_is_queued(tmp_path: Path) -> None:
    async with (
        queue_server(tmp_path, "[file_manager]\nqueue_gcode_uploads: true\n") as live,
        collector(live) as c,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        with trio.fail_after(WAIT):
            assert await c.result("printer.print.start", {"filename": "long.gcode"}) == "ok"
            await c.wait(history_change("added"))
            printing = await http.post(
                "/server/files/upload",
                data={"print": "true"},
                files={"file": ("up.gcode", SHORT.encode())},
            )
            plain = await http.post(
                "/server/files/upload", files={"file": ("plain.gcode", SHORT.encode())}
            )
            added = await c.wait(queue_changed("jobs_added"))
            status = await c.result("server.job_queue.status")
            await c.result("printer.print.cancel")
        assert printing.status_code == 201
        assert printing.json()["print_started"] is False
        assert printing.json()["print_queued"] is True
        assert plain.json()["print_queued"] is False
        assert [j["filename"] for j in added["params"][0]["updated_queue"]] == ["up.gcode"]
        # automatic transition and a print under way: the queue is ready for it
        assert status["queue_state"] == "ready"
        assert [j["filename"] for j in status["queued_jobs"]] == ["up.gcode"]


async def test_without_queue_gcode_uploads_a_busy_printer_queues_nothing(tmp_path: Path) -> None:
    async with (
        queue_server(tmp_path) as live,
        collector(live) as c,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        with trio.fail_after(WAIT):
            assert await c.result("printer.print.start", {"filename": "long.gcode"}) == "ok"
            await c.wait(history_change("added"))
            reply = await http.post(
                "/server/files/upload",
                data={"print": "true"},
                files={"file": ("up.gcode", SHORT.encode())},
            )
            status = await c.result("server.job_queue.status")
            await c.result("printer.print.cancel")
        assert reply.json()["print_queued"] is False
        assert status["queued_jobs"] == []


async def test_load_on_startup_loads_the_kept_queue_when_klippy_is_ready(tmp_path: Path) -> None:
    # appended to [job_queue]; klippy is ready before anything is queued, so only the
    # restarted instance finds jobs to load
    async with queue_server(tmp_path, "load_on_startup: true\n") as live:
        async with httpx.AsyncClient(base_url=live.http) as http:
            with trio.fail_after(WAIT):
                await http.post("/server/job_queue/job", json={"filenames": ["a.gcode", "b.gcode"]})
                assert (await http.post("/server/restart")).json() == {"result": "ok"}
                new = await live.server.wait_serving(other_than=live.instance)
        async with collector(Live(live.server, new)) as c:
            with trio.fail_after(WAIT):
                # connected first: a load after this is announced to this client
                status = await c.result("server.job_queue.status")
                if len(status["queued_jobs"]) == 2:
                    await c.wait(queue_changed("job_loaded"))
                    status = await c.result("server.job_queue.status")
                printing = await c.result(
                    "printer.objects.query", {"objects": {"print_stats": ["filename"]}}
                )
        assert [j["filename"] for j in status["queued_jobs"]] == ["b.gcode"]
        assert printing["status"]["print_stats"]["filename"] == "a.gcode"
