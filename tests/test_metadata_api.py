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
        # the result is kept across restarts in the cache, keyed by size and mtime
        cache = json.loads((tmp_path / "database" / "metadata.json").read_text())
        assert cache["sub/cube.gcode"]["slicer"] == "PrusaSlicer"


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
