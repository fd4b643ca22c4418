"""server.files.zip: Moonraker 0.11's archive of files and folders, written atomically."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import httpx
import pytest
import trio

from tests.test_files import INFO_KEYS, Env, make_env, write
from trioprint.errors import ApiError

from .test_sim import WAIT, sim_server


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return sorted(zf.namelist())


async def test_zip_files_and_folder_result_and_notification(env: Env) -> None:
    write(env.gcodes / "a.gcode", "G28\n" * 100)
    write(env.gcodes / "parts" / "b.gcode", "G1 X1\n")
    write(env.gcodes / "parts" / "deeper" / "c.gcode")
    write(env.data / "config" / "printer.cfg", "[printer]\n")
    result = await env.call(
        "server.files.zip",
        items=["gcodes/a.gcode", "gcodes/parts", "config/printer.cfg"],
        dest="gcodes/bundle.zip",
    )
    assert result["action"] == "zip_files"
    dest = result["destination"]
    assert set(dest) == {"path", "root", *INFO_KEYS}
    assert (dest["path"], dest["root"]) == ("bundle.zip", "gcodes")
    archive = env.gcodes / "bundle.zip"
    assert dest["size"] == archive.stat().st_size
    # a folder contributes the files directly in it (Moonraker does not descend)
    assert names(archive) == ["config/printer.cfg", "gcodes/a.gcode", "gcodes/parts/b.gcode"]
    with zipfile.ZipFile(archive) as zf:
        assert zf.read("gcodes/a.gcode") == b"G28\n" * 100
        assert zf.getinfo("gcodes/a.gcode").compress_type == zipfile.ZIP_DEFLATED
    assert env.ws.changes() == [{"item": dest, "action": "create_file"}]
    # no temporary file is left beside it
    assert sorted(os.listdir(env.gcodes)) == ["a.gcode", "bundle.zip", "parts"]


async def test_zip_store_only_and_comma_separated_items(env: Env) -> None:
    write(env.gcodes / "a.gcode", "G28\n" * 100)
    write(env.gcodes / "b.gcode")
    await env.call(
        "server.files.zip",
        items="gcodes/a.gcode, gcodes/b.gcode",
        dest="gcodes/s.zip",
        store_only="true",
    )
    with zipfile.ZipFile(env.gcodes / "s.zip") as zf:
        assert sorted(zf.namelist()) == ["gcodes/a.gcode", "gcodes/b.gcode"]
        assert zf.getinfo("gcodes/a.gcode").compress_type == zipfile.ZIP_STORED


async def test_zip_default_destination_in_config(env: Env) -> None:
    write(env.gcodes / "a.gcode")
    result = await env.call("server.files.zip", items=["gcodes/a.gcode"])
    path = result["destination"]["path"]
    assert result["destination"]["root"] == "config"
    assert path.startswith("collection-")
    assert path.endswith(".zip")
    assert names(env.data / "config" / path) == ["gcodes/a.gcode"]


async def test_zip_same_file_once(env: Env) -> None:
    write(env.gcodes / "a.gcode")
    (env.gcodes / "alias.gcode").symlink_to(env.gcodes / "a.gcode")
    await env.call(
        "server.files.zip",
        items=["gcodes/a.gcode", "gcodes", "gcodes/alias.gcode"],
        dest="gcodes/x.zip",
    )
    assert names(env.gcodes / "x.zip") == ["gcodes/a.gcode"]


async def test_zip_overwrites_an_existing_archive_atomically(env: Env) -> None:
    write(env.gcodes / "a.gcode")
    write(env.gcodes / "old.zip", "not a zip")
    await env.call("server.files.zip", items=["gcodes/a.gcode"], dest="gcodes/old.zip")
    assert names(env.gcodes / "old.zip") == ["gcodes/a.gcode"]


@pytest.mark.parametrize(
    "items",
    [
        ["../gcodes_evil/x.gcode"],
        ["gcodes/../gcodes_evil/x.gcode"],
        ["gcodes_evil/x.gcode"],
        ["gcodes/ok.gcode", "/etc/passwd"],
        ["gcodes/out/secret.gcode"],
        ["gcodes/link.gcode"],
    ],
)
async def test_zip_refuses_items_outside_the_roots(env: Env, items: list[str]) -> None:
    write(env.data / "gcodes_evil" / "x.gcode", "evil")
    secret = write(env.data / "outside" / "secret.gcode", "secret")
    write(env.gcodes / "ok.gcode")
    (env.gcodes / "out").symlink_to(secret.parent, target_is_directory=True)
    (env.gcodes / "link.gcode").symlink_to(secret)
    with pytest.raises(ApiError) as exc:
        await env.call("server.files.zip", items=items, dest="gcodes/leak.zip")
    assert exc.value.status in (400, 403)
    assert "item" in exc.value.message
    assert not (env.gcodes / "leak.zip").exists()
    assert [n for n in os.listdir(env.gcodes) if n.startswith(".")] == []
    assert env.ws.sent == []


async def test_zip_folder_skips_links_leading_out(env: Env) -> None:
    secret = write(env.data / "secret.txt", "secret")
    write(env.gcodes / "d" / "a.gcode")
    (env.gcodes / "d" / "leak.gcode").symlink_to(secret)
    write(env.gcodes / "d" / ".git" / "config")
    await env.call("server.files.zip", items=["gcodes/d"], dest="gcodes/d.zip")
    assert names(env.gcodes / "d.zip") == ["gcodes/d/a.gcode"]


async def test_zip_refusals(env: Env) -> None:
    write(env.gcodes / "a.gcode")
    (env.gcodes / "folder").mkdir()
    (env.data / "logs").mkdir(exist_ok=True)
    msg = await env.fails(400, "server.files.zip", items=[], dest="gcodes/x.zip")
    assert "At least one" in msg
    await env.fails(400, "server.files.zip", dest="gcodes/x.zip")
    msg = await env.fails(404, "server.files.zip", items=["gcodes/nope.gcode"], dest="gcodes/x.zip")
    assert "gcodes/nope.gcode" in msg
    assert not (env.gcodes / "x.zip").exists()
    msg = await env.fails(403, "server.files.zip", items=["gcodes/a.gcode"], dest="logs/x.zip")
    assert "read-only" in msg
    msg = await env.fails(400, "server.files.zip", items=["gcodes/a.gcode"], dest="gcodes/folder")
    assert "directory" in msg
    await env.fails(400, "server.files.zip", items=["gcodes/a.gcode"], dest="gcodes")
    await env.fails(404, "server.files.zip", items=["gcodes/a.gcode"], dest="gcodes/no/x.zip")
    for dest in ("gcodes/../x.zip", "../gcodes_e/x.zip", "/tmp/x.zip"):
        with pytest.raises(ApiError) as exc:
            await env.call("server.files.zip", items=["gcodes/a.gcode"], dest=dest)
        assert exc.value.status in (400, 403)
    assert sorted(os.listdir(env.gcodes)) == ["a.gcode", "folder"]
    assert env.ws.sent == []


async def test_zip_over_http(tmp_path: Path) -> None:
    async with sim_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        with trio.fail_after(WAIT):
            response = await http.post(
                "/server/files/zip",
                json={"items": ["gcodes/square.gcode"], "dest": "gcodes/s.zip"},
            )
            query = await http.post(
                "/server/files/zip",
                params={"items": "gcodes/square.gcode,gcodes/s.zip", "dest": "gcodes/t.zip"},
            )
            refused = await http.post(
                "/server/files/zip",
                json={"items": ["gcodes/../gcodes_evil/x"], "dest": "gcodes/u.zip"},
            )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["action"] == "zip_files"
    assert names(tmp_path / "gcodes" / "s.zip") == ["gcodes/square.gcode"]
    assert query.status_code == 200, query.text
    assert names(tmp_path / "gcodes" / "t.zip") == ["gcodes/s.zip", "gcodes/square.gcode"]
    assert refused.status_code == 403
    assert not (tmp_path / "gcodes" / "u.zip").exists()
