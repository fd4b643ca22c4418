"""An upload's temporary file: never listed or served, removed at start-up when a killed server
left it (issue #16, S4), and the uploaded file's mode (item 4)."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio

from trioprint.domain.paths import is_temporary, upload_temp_name

from .test_sim import WAIT, sim_server

GCODE = b"G28\nG1 X10 Y10 F3000\n" * 100


def test_only_trioprints_own_temporary_names_are_temporary() -> None:
    assert is_temporary(upload_temp_name("0123456789abcdef"))
    assert is_temporary(".upload-k2_9xq0a.part")  # tempfile.mkstemp's, from earlier versions
    assert is_temporary(".upload-k2_9xq0a")
    assert is_temporary(".zip-abcd1234.part")
    for name in (
        ".upload-notes.txt",
        ".upload-.part",
        "upload-k2_9xq0a.part",
        ".upload-k2_9xq0a.part.gcode",
        "cube.gcode",
        ".upload-0123456789ABCDEF.part",
    ):
        assert not is_temporary(name), name


async def test_leftovers_of_a_killed_upload_are_removed_at_start_up(tmp_path: Path) -> None:
    gcodes, config = tmp_path / "gcodes", tmp_path / "config"
    (gcodes / "sub").mkdir(parents=True)
    config.mkdir()
    leftovers = [
        gcodes / ".upload-k2_9xq0a.part",  # what a kill -9 during a big upload left
        gcodes / upload_temp_name("0123456789abcdef"),
        gcodes / "sub" / ".upload-abcdefgh",  # a cross-device copy's staging file
        config / ".upload-zzzzzzzz.part",
        config / ".zip-a1b2c3d4.part",
    ]
    kept = [
        gcodes / ".upload-notes.txt",
        gcodes / "my.upload-k2_9xq0a.part",
        gcodes / "cube.gcode",
        config / "printer.cfg",
    ]
    for path in leftovers + kept:
        path.write_bytes(b"G28\n" * 1000)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".upload-qqqqqqqq.part").write_bytes(b"x")
    (gcodes / "link").symlink_to(outside)  # a symlinked folder is not cleaned through
    async with sim_server(tmp_path):
        pass
    assert [p for p in leftovers if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert (outside / ".upload-qqqqqqqq.part").exists()


async def test_a_temporary_file_is_never_listed_or_served(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        # as while an upload is being received (and a cross-device copy in another root)
        temporary = upload_temp_name("0123456789abcdef")
        (tmp_path / "gcodes" / temporary).write_bytes(b"G28\n")
        (tmp_path / "config" / ".upload-k2_9xq0a.part").write_bytes(b"[printer]\n")
        (tmp_path / "config" / "printer.cfg").write_bytes(b"[printer]\n")
        with trio.fail_after(WAIT):
            listings = [
                (await http.get("/server/files/directory", params={"path": p})).json()["result"]
                for p in ("gcodes", "config")
            ]
            lists = [
                (await http.get("/server/files/list", params={"root": r})).json()["result"]
                for r in ("gcodes", "config")
            ]
            downloads = [
                await http.get(f"/server/files/gcodes/{temporary}"),
                await http.get("/server/files/config/.upload-k2_9xq0a.part"),
            ]
            zipped = await http.post(
                "/server/files/zip", json={"items": ["config"], "dest": "config/all.zip"}
            )
    names = [f["filename"] for listing in listings for f in listing["files"]]
    assert "printer.cfg" in names
    assert not [n for n in names if n.startswith(".upload-")]
    paths = [f["path"] for found in lists for f in found]
    assert "config/printer.cfg" in paths or "printer.cfg" in paths
    assert not [p for p in paths if ".upload-" in p]
    for response in downloads:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 404
    assert zipped.status_code == 200, zipped.text
    with zipfile.ZipFile(tmp_path / "config" / "all.zip") as archive:
        assert archive.namelist() == ["config/printer.cfg"]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
async def test_an_uploaded_file_honours_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    with umask(mask):
        async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
            with trio.fail_after(WAIT):
                response = await http.post(
                    "/server/files/upload",
                    files={"file": ("cube.gcode", GCODE)},
                    data={"path": "parts", "checksum": hashlib.sha256(GCODE).hexdigest()},
                )
                copied = await http.post(
                    "/server/files/copy",
                    json={"source": "gcodes/square.gcode", "dest": "gcodes/copy.gcode"},
                )
    assert response.status_code == 201, response.text
    assert copied.status_code == 200, copied.text
    uploaded = tmp_path / "gcodes" / "parts" / "cube.gcode"
    assert uploaded.read_bytes() == GCODE
    assert stat.S_IMODE(uploaded.stat().st_mode) == mode
    # as a file any program writes (sim_server wrote square.gcode), and its copy
    assert stat.S_IMODE((tmp_path / "gcodes" / "copy.gcode").stat().st_mode) == mode
