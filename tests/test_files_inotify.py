"""The inotify file watcher: the pure event codec and filter (domain/inotify.py), the ctypes
wrapper (transport/inotify.py) on a real descriptor, and Files.run announcing what other
programs do in real temporary folders, with the fallback to polling."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.test_files import Env, make_env, write
from trioprint.bus import Event
from trioprint.components.files import FileChanged
from trioprint.domain import inotify as ino
from trioprint.domain.inotify import InotifyEvent, WatchTable, encode_event, parse_events
from trioprint.transport import inotify as inotify_transport
from trioprint.transport.inotify import Inotify, InotifyUnavailable

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")

# --- the pure part ------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0/"), max_size=40)
events_st = st.builds(
    InotifyEvent,
    wd=st.integers(-1, 2**31 - 1),
    mask=st.integers(0, 2**32 - 1),
    cookie=st.integers(0, 2**32 - 1),
    name=names,
)


@given(st.lists(events_st, max_size=8), st.lists(st.integers(0, 2000), max_size=6))
def test_encode_parse_round_trip_split_anywhere(
    events: list[InotifyEvent], cuts: list[int]
) -> None:
    data = b"".join(encode_event(e) for e in events)
    positions = sorted({min(c, len(data)) for c in cuts} | {len(data)})
    got: list[InotifyEvent] = []
    pending = b""
    start = 0
    for end in positions:
        parsed, pending = parse_events(pending + data[start:end])
        got.extend(parsed)
        start = end
    assert got == events
    assert pending == b""


def test_encoding_matches_the_kernel_layout() -> None:
    record = encode_event(InotifyEvent(3, ino.IN_CREATE, 0, "a.gcode"))
    assert len(record) == 16 + 16  # name + NUL padded to a multiple of 16
    assert record[16:] == b"a.gcode" + b"\0" * 9
    assert encode_event(InotifyEvent(-1, ino.IN_Q_OVERFLOW)) == (
        (-1).to_bytes(4, sys.byteorder, signed=True)
        + ino.IN_Q_OVERFLOW.to_bytes(4, sys.byteorder)
        + bytes(8)
    )
    exactly_15 = encode_event(InotifyEvent(1, ino.IN_DELETE, 0, "x" * 15))
    assert len(exactly_15) == 32
    assert len(encode_event(InotifyEvent(1, ino.IN_DELETE, 0, "x" * 16))) == 48


def test_incomplete_event_is_left_over() -> None:
    one, two = (
        encode_event(InotifyEvent(1, ino.IN_CREATE, 0, "a")),
        encode_event(InotifyEvent(2, ino.IN_DELETE, 7, "bb")),
    )
    events, rest = parse_events(one + two[:20])
    assert events == [InotifyEvent(1, ino.IN_CREATE, 0, "a")]
    assert rest == two[:20]
    assert parse_events(b"") == ([], b"")
    assert parse_events(one[:15]) == ([], one[:15])


def test_undecodable_names_survive() -> None:
    name = b"caf\xe9.gcode".decode("utf-8", "surrogateescape")
    events, _ = parse_events(encode_event(InotifyEvent(1, ino.IN_CREATE, 0, name)))
    assert events[0].name.encode("utf-8", "surrogateescape") == b"caf\xe9.gcode"


@pytest.mark.parametrize(
    ("mask", "name", "rescan"),
    [
        (ino.IN_CREATE, "a.gcode", True),
        (ino.IN_CREATE | ino.IN_ISDIR, "folder", True),
        (ino.IN_CLOSE_WRITE, "a.gcode", True),
        (ino.IN_DELETE, "a.gcode", True),
        (ino.IN_MOVED_FROM, "a.gcode", True),
        (ino.IN_MOVED_TO, "b.gcode", True),
        (ino.IN_ATTRIB, "a.gcode", True),
        (ino.IN_DELETE_SELF, "", True),
        (ino.IN_MOVE_SELF, "", True),
        (ino.IN_Q_OVERFLOW, "", True),
        # uploads spool into hidden files, thumbnails go to .thumbs, editors use dot files
        (ino.IN_CREATE, ".upload-1234.part", False),
        (ino.IN_CLOSE_WRITE, ".upload-1234.part", False),
        (ino.IN_MOVED_FROM, ".upload-1234.part", False),
        (ino.IN_CREATE | ino.IN_ISDIR, ".thumbs", False),
        (ino.IN_DELETE, ".git", False),
        (ino.IN_IGNORED, "", False),
        (ino.IN_ATTRIB, "", False),  # the watched folder's own metadata: not in a scan
        (ino.IN_OPEN, "a.gcode", False),
    ],
)
def test_what_calls_for_a_rescan(mask: int, name: str, rescan: bool) -> None:
    assert ino.calls_for_rescan(InotifyEvent(1, mask, 0, name)) is rescan


def test_watch_table() -> None:
    table = WatchTable()
    wanted = [("gcodes", ""), ("gcodes", "a"), ("config", "")]
    assert table.missing(wanted) == wanted
    for wd, key in enumerate(wanted, 1):
        table.added(key, wd)
    table.added(("gcodes", "moved"), 2)  # the same folder under a new path: the same wd
    assert table.missing([*wanted, ("gcodes", "b")]) == [("gcodes", "b")]
    assert table.drop_unwanted([("gcodes", ""), ("config", ""), ("gcodes", "moved")]) == []
    assert table.drop_unwanted([("gcodes", ""), ("config", "")]) == [2]
    assert table.ignored(3) is True
    assert table.ignored(3) is False  # a watch already forgotten
    assert table.by_key == {("gcodes", ""): 1}
    assert len(table) == 1


# --- the transport, on a real descriptor --------------------------------------------------------


@linux_only
async def test_inotify_reports_created_and_deleted_names(tmp_path: Path) -> None:
    with Inotify.open() as notify:
        wd = notify.add_watch(str(tmp_path), ino.WATCH_MASK)
        assert notify.add_watch(str(tmp_path), ino.WATCH_MASK) == wd  # same folder, same wd
        (tmp_path / "a.gcode").write_text("G28\n")
        (tmp_path / "a.gcode").unlink()
        seen: list[InotifyEvent] = []
        with trio.fail_after(10):
            while not any(e.mask & ino.IN_DELETE for e in seen):
                seen.extend(await notify.read())
        assert all(e.wd == wd and e.name == "a.gcode" for e in seen)
        masks = [e.mask for e in seen]
        assert masks == [ino.IN_CREATE, ino.IN_CLOSE_WRITE, ino.IN_DELETE]
        notify.rm_watch(wd)
        with trio.fail_after(10):
            assert await notify.read() == [InotifyEvent(wd, ino.IN_IGNORED)]
        notify.rm_watch(wd)  # already gone: not an error
        with pytest.raises(OSError, match="inotify_add_watch") as exc:
            notify.add_watch(str(tmp_path / "missing"), ino.WATCH_MASK)
        assert exc.value.errno == errno.ENOENT
        write(tmp_path / "file")
        with pytest.raises(OSError, match="inotify_add_watch") as exc:  # IN_ONLYDIR
            notify.add_watch(str(tmp_path / "file"), ino.WATCH_MASK)
        assert exc.value.errno == errno.ENOTDIR
        fd = notify.fd
    with pytest.raises(OSError, match="Bad file descriptor"):  # closed on exit
        os.fstat(fd)


@linux_only
async def test_inotify_does_not_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with Inotify.open() as notify, pytest.raises(OSError, match="inotify_add_watch") as exc:
        notify.add_watch(str(tmp_path / "link"), ino.WATCH_MASK)
    assert exc.value.errno == errno.ENOTDIR


def test_unavailable_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inotify_transport, "_libc", None)
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(InotifyUnavailable, match="Linux only") as exc:
        Inotify.open()
    assert isinstance(exc.value, OSError)
    assert exc.value.errno == errno.ENOSYS


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


# --- the component --------------------------------------------------------------------------


@attrs.define
class Watched:
    env: Env
    events: trio.MemoryReceiveChannel[Event]

    async def next(self) -> tuple[str, str, str]:
        with trio.fail_after(10):
            event = await self.events.receive()
        assert isinstance(event, FileChanged)
        return (event.action, event.root, event.path)

    async def until(self, *wanted: tuple[str, str, str]) -> list[tuple[str, str, str]]:
        """Events up to and including all of ``wanted``."""
        got: list[tuple[str, str, str]] = []
        while not set(wanted) <= set(got):
            got.append(await self.next())
        return got


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux's")
    env = make_env(tmp_path, watch_interval=3600.0)  # a poll would never come in a test
    write(env.gcodes / "keep.gcode")
    (env.gcodes / "sub").mkdir()
    assert await env.files.scan_changes() == []  # the first scan records what is there
    with env.bus.subscribe(FileChanged) as events:
        async with trio.open_nursery() as nursery:
            await nursery.start(env.files.run)
            yield Watched(env, events)
            assert env.files.watching == "inotify"
            nursery.cancel_scope.cancel()


async def test_file_written_by_another_program_is_announced(watched: Watched) -> None:
    env = watched.env
    write(env.gcodes / "sub" / "other.gcode", "G28\nG1 X10\n")
    assert await watched.next() == ("create_file", "gcodes", "sub/other.gcode")
    created = env.ws.changes()[0]
    if created["item"]["size"] == 0:
        # the scan ran between the file's creation and its write (a loaded machine): the
        # write is announced on its own, as the README says a file being written may be
        assert await watched.next() == ("modify_file", "gcodes", "sub/other.gcode")
        created = env.ws.changes()[1]
    assert created["item"]["size"] == len("G28\nG1 X10\n")
    write(env.data / "config" / "macros.cfg")
    assert await watched.next() == ("create_file", "config", "macros.cfg")


async def test_new_folder_and_the_file_inside_it(watched: Watched) -> None:
    env = watched.env
    (env.gcodes / "new" / "deeper").mkdir(parents=True)
    assert await watched.next() == ("create_dir", "gcodes", "new")
    write(env.gcodes / "new" / "deeper" / "a.gcode")
    assert await watched.next() == ("create_file", "gcodes", "new/deeper/a.gcode")
    # by now the new folder is watched: only its watch can report this one
    write(env.gcodes / "new" / "deeper" / "b.gcode")
    assert await watched.next() == ("create_file", "gcodes", "new/deeper/b.gcode")


async def test_delete_move_and_modify_are_announced(watched: Watched) -> None:
    env = watched.env
    os.remove(env.gcodes / "keep.gcode")
    assert await watched.next() == ("delete_file", "gcodes", "keep.gcode")
    write(env.gcodes / "sub" / "m.gcode")
    assert await watched.next() == ("create_file", "gcodes", "sub/m.gcode")
    os.rename(env.gcodes / "sub" / "m.gcode", env.gcodes / "moved.gcode")
    got = await watched.until(
        ("delete_file", "gcodes", "sub/m.gcode"), ("create_file", "gcodes", "moved.gcode")
    )
    assert len(got) == 2
    append(env.gcodes / "moved.gcode", "G1 X1\n")
    assert await watched.next() == ("modify_file", "gcodes", "moved.gcode")
    os.rename(env.gcodes / "sub", env.gcodes / "sub2")  # a watched folder moved
    await watched.until(("delete_dir", "gcodes", "sub"), ("create_dir", "gcodes", "sub2"))
    write(env.gcodes / "sub2" / "in-moved.gcode")
    assert await watched.next() == ("create_file", "gcodes", "sub2/in-moved.gcode")
    os.remove(env.gcodes / "sub2" / "in-moved.gcode")
    os.rmdir(env.gcodes / "sub2")
    assert await watched.next() == ("delete_dir", "gcodes", "sub2")


async def test_hidden_files_are_not_announced(watched: Watched) -> None:
    env = watched.env
    write(env.gcodes / ".upload-abc.part")
    write(env.gcodes / ".thumbs" / "keep-32x32.png")
    write(env.gcodes / "marker.gcode")
    assert await watched.next() == ("create_file", "gcodes", "marker.gcode")
    assert [c["item"]["path"] for c in env.ws.changes()] == ["marker.gcode"]


async def test_own_change_is_announced_once(watched: Watched) -> None:
    env = watched.env
    own = await env.call("server.files.post_directory", path="gcodes/mine")
    assert await watched.next() == ("create_dir", "gcodes", "mine")
    # another program writes into trioprint's new folder: seen (it is watched), and the
    # folder is not announced a second time on the way
    write(env.gcodes / "mine" / "x.gcode")
    assert await watched.next() == ("create_file", "gcodes", "mine/x.gcode")
    changes = env.ws.changes()
    assert changes[0] == own
    assert [(c["action"], c["item"]["path"]) for c in changes] == [
        ("create_dir", "mine"),
        ("create_file", "mine/x.gcode"),
    ]


async def test_upload_style_rename_is_announced_once(watched: Watched) -> None:
    env = watched.env
    spooled = write(env.gcodes / ".upload-x.part", "G28\n")
    result = await env.files.place_upload("gcodes", "up/u.gcode", str(spooled))
    assert await watched.next() == ("create_file", "gcodes", "up/u.gcode")
    write(env.gcodes / "after.gcode")
    assert await watched.next() == ("create_file", "gcodes", "after.gcode")
    assert env.ws.changes()[0] == result
    assert len(env.ws.changes()) == 2


# --- falling back to polling ----------------------------------------------------------------


async def _polls(env: Env) -> None:
    """The polling loop runs: a change is found after ``watch_interval`` (virtual time).

    The scans ``run`` makes before it settles on polling (the first one, and the one after
    adding watches) may find a change at once, so changes are made one after the other until
    one is found by a scan a whole interval later (at most three are needed)."""
    with env.bus.subscribe(FileChanged) as events:
        async with trio.open_nursery() as nursery:
            await nursery.start(env.files.run)
            for i in range(3):
                before = trio.current_time()
                write(env.gcodes / f"b{i}.gcode")
                event = await events.receive()
                assert isinstance(event, FileChanged)
                assert (event.action, event.path) == ("create_file", f"b{i}.gcode")
                if trio.current_time() - before >= env.files.watch_interval:
                    break
            else:
                pytest.fail("no change was found by polling")
            assert env.files.watching == "polling"
            nursery.cancel_scope.cancel()


async def test_polls_when_inotify_is_unavailable(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unavailable() -> Inotify:
        raise InotifyUnavailable(errno.ENOSYS, "not here")

    monkeypatch.setattr(Inotify, "open", staticmethod(unavailable))
    env = make_env(tmp_path, watch_interval=30.0)
    await env.files.scan_changes()
    with caplog.at_level(logging.INFO, logger="trioprint.components.files"):
        await _polls(env)
    assert "inotify is not available (not here)" in caplog.text
    assert "scanning them every 30 s" in caplog.text


@linux_only
async def test_polls_when_the_watch_limit_is_reached(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    opened: list[Inotify] = []
    real_open = Inotify.open

    def tracked() -> Inotify:
        notify = real_open()
        opened.append(notify)
        return notify

    def no_space(self: Inotify, path: str, mask: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(Inotify, "open", staticmethod(tracked))
    monkeypatch.setattr(Inotify, "add_watch", no_space)
    env = make_env(tmp_path, watch_interval=30.0)
    await env.files.scan_changes()
    with caplog.at_level(logging.INFO, logger="trioprint.components.files"):
        await _polls(env)
    assert "max_user_watches" in caplog.text
    assert [r.levelname for r in caplog.records if "max_user_watches" in r.message] == ["WARNING"]
    with pytest.raises(OSError, match="Bad file descriptor"):  # closed before polling
        os.fstat(opened[0].fd)


@linux_only
async def test_polls_when_the_watcher_fails(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(self: Inotify) -> list[InotifyEvent]:
        raise RuntimeError("boom")

    monkeypatch.setattr(Inotify, "read", broken)
    env = make_env(tmp_path, watch_interval=30.0)
    await env.files.scan_changes()
    with caplog.at_level(logging.INFO, logger="trioprint.components.files"):
        await _polls(env)
    assert "the inotify watcher failed" in caplog.text
    assert "boom" in caplog.text


async def test_polls_when_told_to(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    env = make_env(tmp_path, watch_interval=30.0)
    env.files.use_inotify = False
    await env.files.scan_changes()
    await _polls(env)
