"""Watching the writable roots: changes other programs make are announced once, changes
trioprint makes itself are not announced a second time; the watcher's loop and its option."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.test_files import INFO_KEYS, Env, make_env, write
from trioprint.components.files import FileChanged
from trioprint.config import ConfigError, load_config


@pytest.fixture
async def env(tmp_path: Path) -> Env:
    e = make_env(tmp_path)
    write(e.gcodes / "keep.gcode")
    (e.gcodes / "sub").mkdir()
    write(e.data / "config" / "printer.cfg")
    assert await e.files.scan_changes() == []  # the first scan records what is there
    return e


def actions(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["action"], r["item"]["root"], r["item"]["path"]) for r in results]


async def test_changes_by_other_programs_are_announced(env: Env) -> None:
    with env.bus.subscribe(FileChanged) as events:
        write(env.gcodes / "sub" / "new.gcode", "G28\nG1 X1\n")
        write(env.gcodes / "dropped" / "in" / "a.gcode")
        write(env.data / "config" / "macros.cfg")
        os.remove(env.gcodes / "keep.gcode")
        results = await env.files.scan_changes()
        got = {actions([r])[0] for r in results}
        assert got == {
            ("delete_file", "gcodes", "keep.gcode"),
            ("create_dir", "gcodes", "dropped"),
            ("create_file", "gcodes", "sub/new.gcode"),
            ("create_file", "config", "macros.cfg"),
        }
        assert len(results) == 4
        created = next(r for r in results if r["item"]["path"] == "sub/new.gcode")
        assert set(created) == {"item", "action"}
        assert set(created["item"]) == {"path", "root", *INFO_KEYS}
        assert created["item"]["size"] == len("G28\nG1 X1\n")
        assert created["item"]["permissions"] == "rw"
        deleted = next(r for r in results if r["action"] == "delete_file")
        assert deleted["item"] == {
            "modified": 0,
            "size": 0,
            "permissions": "",
            "path": "keep.gcode",
            "root": "gcodes",
        }
        assert env.ws.changes() == results
        bus = [events.receive_nowait() for _ in results]
        assert {(e.action, e.root, e.path) for e in bus} == got
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()
    # announced once: the next scan finds nothing new
    assert await env.files.scan_changes() == []


async def test_modified_and_deleted_folder(env: Env) -> None:
    write(env.gcodes / "sub" / "x.gcode")
    await env.files.scan_changes()
    env.ws.sent.clear()
    (env.gcodes / "keep.gcode").write_text("G28\nG28\n")
    shutil.rmtree(env.gcodes / "sub")
    results = await env.files.scan_changes()
    assert actions(results) == [
        ("delete_dir", "gcodes", "sub"),
        ("modify_file", "gcodes", "keep.gcode"),
    ]
    assert results[1]["item"]["size"] == len("G28\nG28\n")


async def test_hidden_names_and_read_only_roots_are_not_watched(env: Env) -> None:
    write(env.gcodes / ".thumbs" / "keep-32x32.png")
    write(env.gcodes / ".upload-x.part")
    write(env.gcodes / "sub" / ".hidden.gcode")
    write(env.data / "logs" / "klippy.log")
    assert await env.files.scan_changes() == []
    assert env.ws.sent == []


async def test_symlink_leading_out_is_not_watched(env: Env) -> None:
    outside = write(env.data / "outside" / "secret.gcode")
    (env.gcodes / "out").symlink_to(outside.parent, target_is_directory=True)
    (env.gcodes / "leak.gcode").symlink_to(outside)
    (env.gcodes / "inside.gcode").symlink_to(env.gcodes / "keep.gcode")
    results = await env.files.scan_changes()
    assert actions(results) == [("create_file", "gcodes", "inside.gcode")]
    assert results[0]["item"]["permissions"] == "r"


async def test_own_changes_are_not_announced_twice(env: Env) -> None:
    write(env.data / "logs" / "klippy.log")
    call = env.call
    own = [
        await call("server.files.post_directory", path="gcodes/made"),
        await call("server.files.copy", source="gcodes/keep.gcode", dest="gcodes/made"),
        await call("server.files.copy", source="gcodes/made", dest="gcodes/made2"),
        await call("server.files.move", source="gcodes/made2", dest="gcodes/sub"),
        await call("server.files.move", source="gcodes/keep.gcode", dest="config/k.gcode"),
        await call("server.files.copy", source="logs/klippy.log", dest="gcodes/k.log"),
        await call("server.files.delete_file", path="gcodes/k.log"),
        await call("server.files.zip", items=["gcodes/made"], dest="gcodes/made.zip"),
        await call("server.files.delete_directory", path="gcodes/made", force=True),
    ]
    zipped = own[7]
    assert zipped["action"] == "zip_files"
    own[7] = {"item": zipped["destination"], "action": "create_file"}
    assert env.ws.changes() == own
    assert await env.files.scan_changes() == []
    assert env.ws.changes() == own
    # what trioprint did is known to the watcher: an outside change to it is seen
    os.remove(env.gcodes / "made.zip")
    assert actions(await env.files.scan_changes()) == [("delete_file", "gcodes", "made.zip")]


async def test_upload_into_new_folders_not_announced_twice(env: Env) -> None:
    spooled = write(env.gcodes / ".upload-test.part", "G28\n")
    result = await env.files.place_upload("gcodes", "new/deeper/u.gcode", str(spooled))
    assert result["action"] == "create_file"
    assert (env.gcodes / "new" / "deeper" / "u.gcode").read_text() == "G28\n"
    assert await env.files.scan_changes() == []
    assert env.ws.changes() == [result]


async def test_outside_change_elsewhere_still_seen_after_own_change(env: Env) -> None:
    write(env.gcodes / "other.gcode")  # by another program, not yet scanned
    await env.call("server.files.post_directory", path="gcodes/mine")
    results = await env.files.scan_changes()
    assert actions(results) == [("create_file", "gcodes", "other.gcode")]


async def test_run_scans_every_interval(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    env = make_env(tmp_path, watch_interval=30.0)
    env.files.use_inotify = False  # the polling loop (inotify: tests/test_files_inotify.py)
    write(env.gcodes / "a.gcode")
    with env.bus.subscribe(FileChanged) as events:
        await env.files.scan_changes()
        async with trio.open_nursery() as nursery:
            await nursery.start(env.files.run)
            write(env.gcodes / "b.gcode")
            event = await events.receive()
            assert (event.action, event.root, event.path) == ("create_file", "gcodes", "b.gcode")
            os.remove(env.gcodes / "a.gcode")
            event = await events.receive()
            assert (event.action, event.path) == ("delete_file", "a.gcode")
            nursery.cancel_scope.cancel()


async def test_run_returns_when_watching_is_off(tmp_path: Path) -> None:
    env = make_env(tmp_path, watch_interval=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(env.files.run)  # returns: nothing left running
    write(env.gcodes / "a.gcode")
    assert await env.files.scan_changes() == []  # a first scan only records
    assert env.ws.sent == []


def test_watch_interval_option(tmp_path: Path) -> None:
    conf = tmp_path / "moonraker.conf"
    conf.write_text("[file_manager]\nwatch_interval: 0.5\n")
    assert load_config(conf, tmp_path).file_manager.watch_interval == 0.5
    assert load_config(None, tmp_path).file_manager.watch_interval == 2.0
    conf.write_text("[file_manager]\nwatch_interval: -1\n")
    with pytest.raises(ConfigError, match="watch_interval"):
        load_config(conf, tmp_path)
