"""OctoPrint's file resource (``GET /api/files/local/<path>``, the upload's ``refs.resource``)
and the upload's ``effectiveSelect``/``effectivePrint`` (issue #16, item 6)."""

from __future__ import annotations

from pathlib import Path

import trio

from .test_octoprint_api import (
    GCODE,
    PRINT,
    cura,
    post_upload,
    printing,
    prusaslicer_upload,
    slicer_session,
)
from .test_sim import WAIT


async def test_the_upload_resource_answers_octoprints_file_information(tmp_path: Path) -> None:
    sliced = (Path(__file__).parent / "data" / "metadata" / "prusaslicer.gcode").read_bytes()
    async with slicer_session(tmp_path) as (live, http, c, key):
        with trio.fail_after(WAIT):
            upload = await post_upload(
                http, prusaslicer_upload(key, "cube.gcode", GCODE, path="parts")
            )
            await post_upload(http, prusaslicer_upload(key, "benchy.gcode", sliced))
            meta = await c.result("server.files.metadata", {"filename": "benchy.gcode"})
            resource = upload.json()["files"]["local"]["refs"]["resource"]
            info = await http.get(resource, headers=cura(key))
            analysed = await http.get("/api/files/local/benchy.gcode", headers=cura(key))
            download = await http.get(info.json()["refs"]["download"], headers=cura(key))
            missing = await http.get("/api/files/local/parts/nope.gcode", headers=cura(key))
            escape = await http.get("/api/files/local/..%2F..%2Fetc%2Fpasswd", headers=cura(key))
            folder = await http.get("/api/files/local/parts", headers=cura(key))
            anonymous = await http.get(resource, headers={"X-Api-Key": "wrong"})
    assert upload.status_code == 201
    assert resource == f"{live.http}/api/files/local/parts/cube.gcode"
    assert info.status_code == 200, info.text
    stored = tmp_path / "gcodes" / "parts" / "cube.gcode"
    body = {k: v for k, v in info.json().items() if k != "gcodeAnalysis"}
    assert body == {
        "name": "cube.gcode",
        "display": "cube.gcode",
        "path": "parts/cube.gcode",
        "type": "machinecode",
        "typePath": ["machinecode", "gcode"],
        "origin": "local",
        "size": len(GCODE),
        "date": int(stored.stat().st_mtime),
        "refs": {
            "resource": resource,
            "download": f"{live.http}/server/files/gcodes/parts/cube.gcode",
        },
    }
    assert download.content == GCODE
    assert analysed.status_code == 200
    analysis = analysed.json()["gcodeAnalysis"]
    assert analysis["estimatedPrintTime"] == meta["estimated_time"]
    assert analysis["filament"] == {"tool0": {"length": meta["filament_total"], "volume": None}}
    assert missing.status_code == 404
    assert "parts/nope.gcode" in missing.json()["error"]["message"]
    assert escape.status_code in (400, 403, 404)
    assert folder.status_code == 404
    assert anonymous.status_code == 401


async def test_print_without_select_is_an_effective_select_and_print(tmp_path: Path) -> None:
    async with slicer_session(tmp_path, speed=50.0) as (_live, http, c, key):
        with trio.fail_after(WAIT):
            await c.result("printer.objects.subscribe", {"objects": {"print_stats": None}})
            upload = await post_upload(http, prusaslicer_upload(key, "go.gcode", PRINT, start=True))
            await c.wait(printing("go.gcode"))
            busy = await post_upload(http, prusaslicer_upload(key, "next.gcode", PRINT, start=True))
            await c.result("printer.print.cancel")
    assert upload.status_code == 201, upload.text
    assert upload.json()["effectivePrint"] is True
    assert upload.json()["effectiveSelect"] is True  # OctoPrint 1.11.8's answer to print=true
    # printing already: neither is done (as OctoPrint refuses to select during a print)
    assert busy.json()["effectivePrint"] is False
    assert busy.json()["effectiveSelect"] is False
