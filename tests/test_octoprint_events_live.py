"""OctoPrint's events end to end: real actions on the simulated printer, the events a websocket
client is sent (``notify_octoprint_event``) and ``server.events.list``, in the order OctoPrint
1.11.8 fires them (the recorded transcript, see test_octoprint_events.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from trioprint.components.octoprint_events import NOTIFICATION
from trioprint.domain import octoprint_events as ev

from .live import Live, live_server, rpc_client
from .test_octoprint_events import NOT_COMPARED, label, needs_seeds, recorded
from .test_sim import WAIT, Collector, collector

#: A print long enough to pause, resume and cancel (no heating: it starts at once).
LONG = "G28\nG90\nG1 Z0.3 F600\n" + "".join(
    f"G1 X{10 + (i % 2) * 100} Y{10 + (i % 3) * 50} F3000\n" for i in range(400)
)


@contextlib.asynccontextmanager
async def printer(tmp_path: Path, speed: float = 1.0) -> AsyncIterator[Live]:
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[simulator]\nspeed: {speed}\n")
    (tmp_path / "gcodes").mkdir(exist_ok=True)
    async with live_server(tmp_path, conf) as live:
        with trio.fail_after(WAIT):
            await live.instance.klippy.wait_ready()
        yield live


def events(c: Collector) -> list[tuple[str, Any]]:
    """(name, payload) of every OctoPrint event this client was sent, in order."""
    return [
        (m["params"][0]["event"], m["params"][0]["payload"])
        for m in c.messages
        if m.get("method") == NOTIFICATION
    ]


def labels(c: Collector, start: int = 0) -> list[str]:
    return [label(n, p) for n, p in events(c)[start:] if n not in NOT_COMPARED]


async def wait_event(
    c: Collector, name: str, match: Callable[[Any], bool] = lambda p: True, after: int = 0
) -> Any:
    """The payload of the first ``name`` event matching ``match`` among the events from index
    ``after`` on, waiting for it."""
    while True:
        for event, payload in events(c)[after:]:
            if event == name and match(payload):
                return payload
        await c.arrived.wait()


def state_is(state_id: str) -> Callable[[Any], bool]:
    return lambda p: p["state_id"] == state_id


@needs_seeds
async def test_upload_print_pause_resume_cancel_fire_octoprints_events(tmp_path: Path) -> None:
    async with (
        printer(tmp_path) as live,
        collector(live) as c,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        with trio.fail_after(WAIT):
            await c.result("server.info")
            reply = await http.post(
                "/server/files/upload", files={"file": ("trio_long.gcode", LONG.encode())}
            )
            assert reply.status_code == 201, reply.text
            upload = await wait_event(c, "Upload")
            assert upload["name"] == upload["path"] == "trio_long.gcode"
            assert upload["target"] == "local"
            assert (upload["print"], upload["effective_print"]) == (False, False)
            # then, as in OctoPrint, the new file's analysis, without anybody asking for it
            await wait_event(c, "MetadataAnalysisFinished")
            assert labels(c)[-3:] == recorded("FileAdded", "Upload")
            # (OctoPrint's analysis starts just before its Upload event, trioprint's just after)
            assert [n for n, _ in events(c)][-5:] == [
                "FileAdded",
                "UpdatedFiles",
                "Upload",
                "MetadataAnalysisStarted",
                "MetadataAnalysisFinished",
            ]
            # a metadata analysis asked for
            mark = len(events(c))
            await c.result("server.files.metascan", {"filename": "trio_long.gcode"})
            analysed = await wait_event(c, "MetadataAnalysisFinished", after=mark)
            assert analysed["path"] == "trio_long.gcode"
            assert analysed["result"]["size"] == len(LONG.encode())
            assert [n for n, _ in events(c)[mark:]] == [
                "MetadataAnalysisStarted",
                "MetadataAnalysisFinished",
            ]

            mark = len(events(c))
            assert await c.result("printer.print.start", {"filename": "trio_long.gcode"}) == "ok"
            started = await wait_event(c, "PrinterStateChanged", state_is("PRINTING"))
            assert labels(c, mark) == recorded("FileSelected", "PrinterStateChanged:PRINTING")
            assert started["state_string"] == "Printing"
            job = dict(events(c))["PrintStarted"]
            assert job["size"] == len(LONG.encode())
            assert job["file"] == str(tmp_path / "gcodes" / "trio_long.gcode")

            # the file's first layer: klippy's commanded Z
            await wait_event(c, "ZChange", lambda p: p["new"] == 0.3)
            mark = len(events(c))
            await c.result("printer.print.pause")
            await wait_event(c, "PrinterStateChanged", state_is("PAUSED"), mark)
            assert labels(c, mark) == recorded(
                "PrinterStateChanged:PAUSING", "PrinterStateChanged:PAUSED"
            )
            paused = dict(events(c)[mark:])["PrintPaused"]
            assert set(paused["position"]) == {"x", "y", "z", "e", "t", "f"}
            assert paused["position"]["z"] == 0.3
            assert paused["position"]["t"] == 0
            assert paused["fileposition"] > 0

            mark = len(events(c))
            await c.result("printer.print.resume")
            await wait_event(c, "PrinterStateChanged", state_is("PRINTING"), mark)
            assert labels(c, mark) == recorded(
                "PrinterStateChanged:RESUMING", "PrinterStateChanged:PRINTING"
            )

            mark = len(events(c))
            await c.result("printer.print.cancel")
            await wait_event(c, "PrinterStateChanged", state_is("OPERATIONAL"), mark)
            assert labels(c, mark) == recorded("PrintCancelling", "PrinterStateChanged:OPERATIONAL")
            failed = dict(events(c)[mark:])["PrintFailed"]
            assert failed["reason"] == "cancelled"
            assert failed["time"] > 0

            listed = (await c.result("server.events.list"))["events"]
        # the ring has what the client was sent, with times, and what came before it
        names = [e["event"] for e in listed]
        assert names[0] == "Startup"
        assert names.index("Connected") < names.index("ClientOpened") < names.index("Upload")
        sent = events(c)
        assert [(e["event"], e["payload"]) for e in listed[-len(sent) :]] == sent
        times = [e["time"] for e in listed]
        assert times == sorted(times)


async def test_gcode_through_the_api_estop_and_firmware_restart(tmp_path: Path) -> None:
    async with printer(tmp_path, speed=20.0) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result("server.info")
            await c.result("printer.gcode.script", {"script": "G28\nG4 P10\nM300"})
            await wait_event(c, "Alert")
            await c.result("printer.gcode.script", {"script": "G1 Z5 F600"})
            z = await wait_event(c, "ZChange", lambda p: p["new"] == 5.0)
            assert z["old"] == 0.0  # G28 homed Z to 0
            sent = [n for n, _ in events(c) if n != "ClientOpened"]
            assert sent[:3] == ["Home", "Dwelling", "Alert"]
            assert sent[-1] == "ZChange"
            await c.result("printer.gcode.script", {"script": "M114"})
            position = await wait_event(c, "PositionUpdate")
            assert position["z"] == 5.0
            assert position["reason"] is None

            mark = len(events(c))
            await c.result("printer.emergency_stop")
            await wait_event(c, "PrinterStateChanged", state_is("ERROR"), mark)
            assert labels(c, mark) == ["EStop", "Error", "PrinterStateChanged:ERROR"]
            assert "webhooks" in dict(events(c)[mark:])["Error"]["error"]

            mark = len(events(c))
            await c.result("printer.firmware_restart")
            await wait_event(c, "UpdatedFiles", after=mark)
            # klippy restarts: the link drops and connects again, as OctoPrint reconnecting
            assert labels(c, mark) == [
                "Disconnected",
                "PrinterStateChanged:OFFLINE",
                *recorded("Connecting", "UpdatedFiles"),
            ]

            filtered = (await c.result("server.events.list", {"event": "EStop,Dwell"}))["events"]
            assert [e["event"] for e in filtered] == ["Dwelling", "EStop"]
            reply = await c.call("server.events.list", {"event": "NoSuchEvent"})
            assert "NoSuchEvent" in reply["error"]["message"]


async def test_folders_and_deletes_and_a_restart(tmp_path: Path) -> None:
    async with printer(tmp_path, speed=20.0) as live:
        first = live.server.instance
        assert first is not None
        with first.bus.subscribe(ev.ClientOpened, ev.ClientClosed) as clients:
            async with collector(live) as c:
                with trio.fail_after(WAIT):
                    await c.result("server.files.post_directory", {"path": "gcodes/trio_folder"})
                    await c.result("server.files.delete_directory", {"path": "gcodes/trio_folder"})
                    removed = await wait_event(c, "FolderRemoved")
                    await wait_event(c, "UpdatedFiles", after=len(events(c)) - 1)
                assert removed["path"] == "trio_folder"
                assert labels(c)[1:] == [
                    "FolderAdded",
                    "UpdatedFiles",
                    "FolderRemoved",
                    "UpdatedFiles",
                ]
                assert dict(events(c))["FolderAdded"] == {
                    "storage": "local",
                    "path": "trio_folder",
                    "name": "trio_folder",
                }
            with trio.fail_after(WAIT):
                opened = await clients.receive()
                closed = await clients.receive()
        assert opened == ev.ClientOpened("127.0.0.1")
        assert closed == ev.ClientClosed("127.0.0.1")
        with first.bus.subscribe(ev.Shutdown) as shutdown:
            first.request_restart()
            with trio.fail_after(WAIT):
                second = await live.server.wait_serving(other_than=first)
                # the old instance said goodbye on its bus (event hooks hear it)
                assert await shutdown.receive() == ev.Shutdown()
        async with rpc_client(f"ws://127.0.0.1:{second.bound[0][1]}/websocket") as client:
            listed = (await client.call("server.events.list"))["result"]["events"]
        assert [e["event"] for e in listed][:2] == ["Startup", "SettingsUpdated"]


async def test_m112_through_the_gcode_api_is_one_estop(tmp_path: Path) -> None:
    async with printer(tmp_path, speed=20.0) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            await c.result("server.info")
            mark = len(events(c))
            await c.call("printer.gcode.script", {"script": "M112"})
            await wait_event(c, "PrinterStateChanged", state_is("ERROR"), mark)
            assert labels(c, mark) == ["EStop", "Error", "PrinterStateChanged:ERROR"]
            assert "M112" in dict(events(c)[mark:])["Error"]["error"]


async def test_an_upload_with_print_fires_upload_before_the_print(tmp_path: Path) -> None:
    async with (
        printer(tmp_path) as live,
        collector(live) as c,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        with trio.fail_after(WAIT):
            await c.result("server.info")
            reply = await http.post(
                "/server/files/upload",
                data={"print": "true"},
                files={"file": ("go.gcode", LONG.encode())},
            )
            assert reply.json()["print_started"] is True
            upload = await wait_event(c, "Upload")
            await wait_event(c, "PrintStarted")
            assert (upload["print"], upload["effective_print"]) == (True, True)
            names = [n for n, _ in events(c)]
            assert names.index("Upload") < names.index("PrintStarted")
            # a second upload while it prints: asked to print, but it cannot
            reply = await http.post(
                "/server/files/upload",
                data={"print": "true"},
                files={"file": ("next.gcode", b"G28\n")},
            )
            assert reply.json()["print_started"] is False
            second = await wait_event(c, "Upload", lambda p: p["path"] == "next.gcode")
            assert (second["print"], second["effective_print"]) == (True, False)
            await c.result("printer.print.cancel")
