"""The file routes with a path in the URL, and the file manager wired to the printer."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from .test_sim import WAIT, collector, sim_server

LONG_PRINT = "M109 S200\nG28\nM83\n" + "G1 X10 Y10 F60\nG1 X200 Y200 E5 F60\n" * 50


async def test_download_range_and_delete(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        data = bytes(range(256)) * 40
        (tmp_path / "gcodes" / "part one.gcode").write_bytes(data)
        with trio.fail_after(WAIT):
            whole = await http.get("/server/files/gcodes/part%20one.gcode")
            part = await http.get(
                "/server/files/gcodes/part%20one.gcode", headers={"Range": "bytes=10-19"}
            )
            missing = await http.get("/server/files/gcodes/nope.gcode")
            escape = await http.get("/server/files/gcodes/..%2Fgcodes_evil%2Fx.gcode")
            info = (await http.get("/server/info")).json()["result"]
            async with collector(live) as c:
                deleted = await http.delete("/server/files/gcodes/part%20one.gcode")
                note = await c.wait(lambda m: m.get("method") == "notify_filelist_changed")
        assert whole.status_code == 200
        assert whole.content == data
        assert part.status_code == 206
        assert part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == 404
        assert escape.status_code in (400, 403)
        assert "gcodes" in info["registered_directories"]
        assert deleted.status_code == 200
        result = deleted.json()["result"]
        assert result["action"] == "delete_file"
        assert result["item"]["path"] == "part one.gcode"
        assert note["params"] == [result]
        assert not (tmp_path / "gcodes" / "part one.gcode").exists()


async def test_the_printed_file_cannot_be_deleted_or_moved(tmp_path: Path) -> None:
    async with sim_server(tmp_path, speed=20.0) as live, collector(live) as c:
        (tmp_path / "gcodes" / "sub").mkdir()
        (tmp_path / "gcodes" / "sub" / "long.gcode").write_text(LONG_PRINT)
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": {"print_stats": ["state"]}})
            assert await c.result("printer.print.start", {"filename": "sub/long.gcode"}) == "ok"
            await c.wait(
                lambda m: (
                    m.get("method") == "notify_status_update"
                    and m["params"][0].get("print_stats", {}).get("state") == "printing"
                )
            )
            refused = [
                await c.call("server.files.delete_file", {"path": "gcodes/sub/long.gcode"}),
                await c.call(
                    "server.files.move", {"source": "gcodes/sub/long.gcode", "dest": "gcodes/x"}
                ),
                await c.call(
                    "server.files.delete_directory", {"path": "gcodes/sub", "force": True}
                ),
            ]
            await c.result("printer.print.cancel")
        for reply in refused:
            assert reply["error"]["code"] == 403, reply
        assert (tmp_path / "gcodes" / "sub" / "long.gcode").exists()
