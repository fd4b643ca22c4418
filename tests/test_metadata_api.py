"""server.files.metadata, metascan and thumbnails through a real server."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import trio

from .test_sim import WAIT, collector, sim_server

CORPUS = Path(__file__).parent / "data" / "metadata"


async def test_metadata_thumbnails_and_the_cache(tmp_path: Path) -> None:
    (tmp_path / "gcodes" / "sub").mkdir(parents=True)
    shutil.copy(CORPUS / "prusaslicer.gcode", tmp_path / "gcodes" / "sub" / "cube.gcode")
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        with trio.fail_after(WAIT):
            meta = (await http.get("/server/files/metadata?filename=sub/cube.gcode")).json()
            thumbs = (await http.get("/server/files/thumbnails?filename=sub/cube.gcode")).json()
            missing = await http.get("/server/files/metadata?filename=nope.gcode")
            escape = await http.get("/server/files/metadata?filename=../config/x.gcode")
            first = thumbs["result"][0]
            image = await http.get(f"/server/files/gcodes/{first['thumbnail_path']}")
        result = meta["result"]
        assert result["slicer"] == "PrusaSlicer"
        assert result["filename"] == "sub/cube.gcode"
        assert result["size"] == (tmp_path / "gcodes" / "sub" / "cube.gcode").stat().st_size
        assert result["thumbnails"]
        for entry in result["thumbnails"]:
            assert set(entry) == {"width", "height", "size", "relative_path"}
            assert entry["relative_path"].startswith(".thumbs/cube-")
        assert first["thumbnail_path"].startswith("sub/.thumbs/cube-")
        assert image.status_code == 200
        assert image.content.startswith(b"\x89PNG")
        assert missing.status_code == 404
        assert escape.status_code == 403
        # the result is kept in the database (gcode_metadata, keyed by the gcodes-relative
        # name: a list key, since a dotted string splits at the name's dots), readable but
        # not writable through the API
        stored = (
            await http.get(
                "/server/database/item",
                params={"namespace": "gcode_metadata", "key": "sub/cube.gcode"},
            )
        ).status_code
        record = await http.request(
            "GET",
            "/server/database/item",
            json={"namespace": "gcode_metadata", "key": ["sub/cube.gcode"]},
        )
        write = await http.post(
            "/server/database/item",
            json={"namespace": "gcode_metadata", "key": ["x.gcode"], "value": {}},
        )
        assert stored == 404
        assert record.json()["result"]["value"]["slicer"] == "PrusaSlicer"
        assert write.status_code == 403


async def test_a_changed_file_is_extracted_again_and_announced(tmp_path: Path) -> None:
    gcodes = tmp_path / "gcodes"
    gcodes.mkdir()
    target = gcodes / "part.gcode"
    shutil.copy(CORPUS / "cura.gcode", target)
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            first = await c.result("server.files.metadata", {"filename": "part.gcode"})
            shutil.copy(CORPUS / "simplify3d.gcode", target)
            os.utime(target, (1, first["modified"] + 10))
            second = await c.result("server.files.metadata", {"filename": "part.gcode"})
            note = await c.wait(
                lambda m: (
                    m.get("method") == "notify_metadata_update"
                    and m["params"][0].get("slicer") == "Simplify3D"
                )
            )
            rescanned = await c.result("server.files.metascan", {"filename": "part.gcode"})
        assert first["slicer"] == "Cura"
        assert second["slicer"] == "Simplify3D"
        assert note["params"][0]["filename"] == "part.gcode"
        assert rescanned["slicer"] == "Simplify3D"


async def test_an_unknown_file_has_the_basic_fields(tmp_path: Path) -> None:
    (tmp_path / "gcodes").mkdir()
    content = b"G28\nG1 X10\n\xff\xfe garbage\n"
    (tmp_path / "gcodes" / "plain.gcode").write_bytes(content)
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            result = await c.result("server.files.metadata", {"filename": "plain.gcode"})
        assert result["size"] == len(content)
        assert isinstance(result["modified"], float)
        assert "slicer" not in result


async def test_an_earlier_json_cache_is_imported_once(tmp_path: Path) -> None:
    gcodes = tmp_path / "gcodes"
    gcodes.mkdir()
    shutil.copy(CORPUS / "cura.gcode", gcodes / "a.b.gcode")
    stat = (gcodes / "a.b.gcode").stat()
    legacy = tmp_path / "database" / "metadata.json"
    legacy.parent.mkdir()
    # a valid entry (size and mtime match, so it is served without extraction) and junk
    entry = {"filename": "a.b.gcode", "size": stat.st_size, "modified": stat.st_mtime}
    legacy.write_text(json.dumps({"a.b.gcode": {**entry, "slicer": "Imported"}, "x": 3}))
    async with sim_server(tmp_path) as live, collector(live) as c:
        with trio.fail_after(WAIT):
            result = await c.result("server.files.metadata", {"filename": "a.b.gcode"})
            stored = await c.result(
                "server.database.get_item", {"namespace": "gcode_metadata", "key": ["a.b.gcode"]}
            )
    assert result["slicer"] == "Imported"
    assert stored["value"]["slicer"] == "Imported"
    assert not legacy.exists()
    assert legacy.with_name("metadata.json.imported").exists()


async def test_an_uploaded_file_is_analysed_without_being_asked(tmp_path: Path) -> None:
    """As in Moonraker (and OctoPrint's analysis queue): an upload is followed by its metadata,
    announced with notify_metadata_update, before any client asks for it."""
    async with sim_server(tmp_path) as live, collector(live) as c:
        async with httpx.AsyncClient(base_url=live.http) as http:
            with trio.fail_after(WAIT):
                body = (CORPUS / "orcaslicer.gcode").read_bytes()
                upload = await http.post(
                    "/server/files/upload",
                    data={"path": "sub"},
                    files={"file": ("new.gcode", body)},
                )
                assert upload.status_code == 201, upload.text
                note = await c.wait(
                    lambda m: (
                        m.get("method") == "notify_metadata_update"
                        and m["params"][0].get("filename") == "sub/new.gcode"
                    )
                )
        assert note["params"][0]["slicer"] == "OrcaSlicer"
        assert note["params"][0]["size"] == len(body)
