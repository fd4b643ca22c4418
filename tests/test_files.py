"""server.files.*: result shapes (Moonraker 0.11), path confinement, read-only roots, moves,
copies, deletes, notifications, and that a big listing does not block the event loop."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint.bus import Bus
from trioprint.components.files import FileChanged, Files, parse_range, printing_check, serve_file
from trioprint.config import FileManagerConfig, load_config
from trioprint.domain.paths import confined
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport

INFO_KEYS = {"modified", "size", "permissions"}


class FakeWebsockets:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any] | None]] = []

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        self.sent.append((method, params))

    def changes(self) -> list[dict[str, Any]]:
        assert all(m == "notify_filelist_changed" for m, _ in self.sent)
        return [p[0] for _, p in self.sent if p]


@attrs.define
class Env:
    data: Path
    files: Files
    reg: Registry
    ws: FakeWebsockets
    bus: Bus

    @property
    def gcodes(self) -> Path:
        return self.data / "gcodes"

    async def call(self, method: str, **args: Any) -> Any:
        ep = self.reg.by_rpc(method)
        assert ep is not None, method
        return await self.reg.dispatch(ep, args, Transport.WEBSOCKET)

    async def fails(self, status: int, method: str, **args: Any) -> str:
        with pytest.raises(ApiError) as exc:
            await self.call(method, **args)
        assert exc.value.status == status, exc.value.message
        return exc.value.message


def make_env(data: Path, **fm: Any) -> Env:
    config = load_config(None, data)
    if fm:
        config = attrs.evolve(config, file_manager=FileManagerConfig(**fm))
    ws, bus = FakeWebsockets(), Bus()
    files = Files(config, bus, ws)
    reg = Registry()
    reg.add_component(files)
    return Env(data, files, reg, ws, bus)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def write(path: Path, text: str = "G28\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- roots and listings -----------------------------------------------------------------------


async def test_roots_created_with_moonraker_shape(env: Env) -> None:
    roots = await env.call("server.files.roots")
    assert roots == [
        {"name": "config", "path": str((env.data / "config").resolve()), "permissions": "rw"},
        {"name": "logs", "path": str((env.data / "logs").resolve()), "permissions": "r"},
        {"name": "gcodes", "path": str(env.gcodes.resolve()), "permissions": "rw"},
    ]
    assert env.gcodes.is_dir()
    assert env.files.registered_directories() == ["config", "logs", "gcodes"]


async def test_configured_paths_and_read_only_config(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "config_examples").mkdir()
    e = make_env(
        tmp_path,
        gcodes_path=str(tmp_path / "elsewhere" / "gc"),
        enable_config_write_access=False,
    )
    roots = {r["name"]: r for r in await e.call("server.files.roots")}
    assert list(roots) == ["config", "logs", "gcodes", "config_examples", "docs"]
    assert roots["gcodes"]["path"] == str((tmp_path / "elsewhere" / "gc").resolve())
    assert roots["config"]["permissions"] == "r"
    assert roots["docs"]["permissions"] == "r"
    msg = await e.fails(403, "server.files.post_directory", path="config/new")
    assert "config/new" in msg
    assert "read-only" in msg
    assert not (tmp_path / "config" / "new").exists()


async def test_list_files_shape_and_filter(env: Env) -> None:
    write(env.gcodes / "b.gcode")
    write(env.gcodes / "A.gcode", "G1 X1\n")
    write(env.gcodes / "sub" / "deep" / "c.nc")
    write(env.gcodes / "notes.txt")
    write(env.gcodes / ".thumbs" / "b-32x32.png")
    result = await env.call("server.files.list", root="gcodes")
    assert [f["path"] for f in result] == ["A.gcode", "b.gcode", "sub/deep/c.nc"]
    first = result[0]
    assert set(first) == {"path", *INFO_KEYS}
    assert isinstance(first["modified"], float)
    assert first["size"] == len("G1 X1\n")
    assert first["permissions"] == "rw"
    # the default root is gcodes; other roots list every file
    assert await env.call("server.files.list") == result
    write(env.data / "config" / "printer.cfg")
    write(env.data / "config" / "sub" / "macros.cfg")
    listed = await env.call("server.files.list", root="config")
    assert [f["path"] for f in listed] == ["printer.cfg", "sub/macros.cfg"]
    msg = await env.fails(400, "server.files.list", root="nope")
    assert "nope" in msg


async def test_get_directory_shape(env: Env) -> None:
    write(env.gcodes / "sub" / "cube.gcode", "G28\nG1 X10\n")
    (env.gcodes / "sub" / "inner").mkdir()
    result = await env.call("server.files.get_directory", path="gcodes/sub", extended=False)
    assert set(result) == {"dirs", "files", "disk_usage", "root_info"}
    assert result["root_info"] == {"name": "gcodes", "permissions": "rw"}
    assert set(result["disk_usage"]) == {"total", "used", "free"}
    (d,) = result["dirs"]
    assert set(d) == {"dirname", *INFO_KEYS}
    assert d["dirname"] == "inner"
    (f,) = result["files"]
    assert set(f) == {"filename", *INFO_KEYS}
    assert f["filename"] == "cube.gcode"
    assert f["size"] == 11
    assert f["permissions"] == "rw"
    top = await env.call("server.files.get_directory")  # defaults to the gcodes root
    assert [x["dirname"] for x in top["dirs"]] == ["sub"]
    logs = await env.call("server.files.get_directory", path="logs")
    assert logs["root_info"] == {"name": "logs", "permissions": "r"}
    msg = await env.fails(404, "server.files.get_directory", path="gcodes/missing")
    assert "gcodes/missing" in msg


# --- confinement --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../gcodes_evil/x.gcode",
        "gcodes/../gcodes_evil/x.gcode",
        "gcodes_evil/x.gcode",
        "/etc/passwd",
        "gcodes/a\\..\\b",
        "gcodes/a\x00b",
    ],
)
async def test_sibling_prefix_and_malformed_paths_refused(env: Env, path: str) -> None:
    evil = write(env.data / "gcodes_evil" / "x.gcode")
    for method in ("server.files.get_directory", "server.files.delete_file"):
        with pytest.raises(ApiError) as exc:
            await env.call(method, path=path)
        assert exc.value.status in (400, 403)
    with pytest.raises(ApiError):
        await env.call("server.files.move", source=path, dest="gcodes/stolen.gcode")
    with pytest.raises(ApiError):
        await env.call("server.files.copy", source="gcodes", dest=path)
    assert evil.exists()
    assert not (env.gcodes / "stolen.gcode").exists()
    assert env.ws.sent == []


async def test_symlink_out_of_root_refused(env: Env) -> None:
    outside = env.data / "outside"
    secret = write(outside / "secret.gcode", "secret")
    env.gcodes.mkdir()
    (env.gcodes / "out").symlink_to(outside, target_is_directory=True)
    (env.gcodes / "link.gcode").symlink_to(secret)
    write(env.gcodes / "ok.gcode")
    # read
    await env.fails(403, "server.files.get_directory", path="gcodes/out")
    listed = await env.call("server.files.list", root="gcodes")
    assert [f["path"] for f in listed] == ["ok.gcode"]
    top = await env.call("server.files.get_directory", path="gcodes")
    assert [f["filename"] for f in top["files"]] == ["ok.gcode"]
    assert top["dirs"] == []
    await env.fails(403, "server.files.copy", source="gcodes/link.gcode", dest="gcodes/c.gcode")
    await env.fails(403, "server.files.copy", source="gcodes/out/secret.gcode", dest="gcodes")
    # write
    await env.fails(403, "server.files.post_directory", path="gcodes/out/new")
    await env.fails(403, "server.files.delete_file", path="gcodes/out/secret.gcode")
    await env.fails(403, "server.files.delete_file", path="gcodes/link.gcode")
    await env.fails(403, "server.files.delete_directory", path="gcodes/out", force=True)
    await env.fails(403, "server.files.move", source="gcodes/ok.gcode", dest="gcodes/out/x")
    await env.fails(403, "server.files.copy", source="gcodes/ok.gcode", dest="gcodes/link.gcode")
    assert secret.read_text() == "secret"
    assert sorted(os.listdir(outside)) == ["secret.gcode"]
    # a link that stays inside the root is fine
    (env.gcodes / "inside.gcode").symlink_to(env.gcodes / "ok.gcode")
    listed = await env.call("server.files.list", root="gcodes")
    assert {f["path"]: f["permissions"] for f in listed} == {"inside.gcode": "r", "ok.gcode": "rw"}


async def test_copy_dir_skips_links_leading_out(env: Env) -> None:
    secret = write(env.data / "secret.txt", "secret")
    write(env.gcodes / "d" / "a.gcode")
    (env.gcodes / "d" / "leak").symlink_to(secret)
    await env.call("server.files.copy", source="gcodes/d", dest="gcodes/e")
    assert sorted(os.listdir(env.gcodes / "e")) == ["a.gcode"]


# --- read-only roots ----------------------------------------------------------------------------


async def test_read_only_roots_refuse_writes(env: Env) -> None:
    log_file = write(env.data / "logs" / "klippy.log")
    (env.data / "logs" / "old").mkdir()
    write(env.gcodes / "a.gcode")
    await env.fails(403, "server.files.post_directory", path="logs/new")
    await env.fails(403, "server.files.delete_directory", path="logs/old")
    await env.fails(403, "server.files.delete_file", path="logs/klippy.log")
    await env.fails(403, "server.files.move", source="logs/klippy.log", dest="gcodes/k.log")
    await env.fails(403, "server.files.move", source="gcodes/a.gcode", dest="logs/a.gcode")
    await env.fails(403, "server.files.copy", source="gcodes/a.gcode", dest="logs/a.gcode")
    assert log_file.exists()
    assert (env.gcodes / "a.gcode").exists()
    # copying out of a read-only root is allowed (as in Moonraker)
    result = await env.call("server.files.copy", source="logs/klippy.log", dest="gcodes/k.log")
    assert result["action"] == "create_file"
    assert env.ws.changes() == [result]


# --- directories ----------------------------------------------------------------------------------


async def test_create_and_delete_directory(env: Env) -> None:
    created = await env.call("server.files.post_directory", path="gcodes/new")
    assert created["action"] == "create_dir"
    assert set(created) == {"item", "action"}
    assert set(created["item"]) == {"path", "root", *INFO_KEYS}
    assert created["item"]["path"] == "new"
    assert created["item"]["root"] == "gcodes"
    assert (env.gcodes / "new").is_dir()
    msg = await env.fails(400, "server.files.post_directory", path="gcodes/new")
    assert "already exists" in msg
    await env.fails(404, "server.files.post_directory", path="gcodes/no/such/parent")
    await env.fails(403, "server.files.delete_directory", path="gcodes")

    write(env.gcodes / "new" / "a.gcode")
    msg = await env.fails(400, "server.files.delete_directory", path="gcodes/new")
    assert "gcodes/new" in msg
    assert "not empty" in msg
    assert (env.gcodes / "new" / "a.gcode").exists()
    deleted = await env.call("server.files.delete_directory", path="gcodes/new", force=True)
    assert deleted == {
        "item": {"modified": 0, "size": 0, "permissions": "", "path": "new", "root": "gcodes"},
        "action": "delete_dir",
    }
    assert not (env.gcodes / "new").exists()
    await env.fails(404, "server.files.delete_directory", path="gcodes/new")
    assert env.ws.changes() == [created, deleted]


async def test_bus_events(env: Env) -> None:
    write(env.gcodes / "a.gcode")
    with env.bus.subscribe(FileChanged) as events:
        await env.call("server.files.move", source="gcodes/a.gcode", dest="gcodes/b.gcode")
        await env.call("server.files.delete_file", path="gcodes/b.gcode")
        assert events.receive_nowait() == FileChanged(
            "move_file", "gcodes", "b.gcode", "gcodes", "a.gcode"
        )
        assert events.receive_nowait() == FileChanged("delete_file", "gcodes", "b.gcode")


# --- move, copy, delete ---------------------------------------------------------------------------


async def test_move_file_and_dir(env: Env) -> None:
    write(env.gcodes / "a.gcode", "abc")
    (env.gcodes / "sub").mkdir()
    moved = await env.call("server.files.move", source="gcodes/a.gcode", dest="gcodes/sub")
    assert moved["action"] == "move_file"
    assert moved["item"]["path"] == "sub/a.gcode"
    assert moved["item"]["size"] == 3
    assert moved["source_item"] == {"path": "a.gcode", "root": "gcodes"}
    assert (env.gcodes / "sub" / "a.gcode").exists()
    renamed = await env.call("server.files.move", source="gcodes/sub", dest="gcodes/parts")
    assert renamed["action"] == "move_dir"
    assert renamed["item"]["path"] == "parts"
    assert renamed["source_item"] == {"path": "sub", "root": "gcodes"}
    assert (env.gcodes / "parts" / "a.gcode").exists()
    # across rw roots
    across = await env.call("server.files.move", source="gcodes/parts", dest="config/parts")
    assert across["item"]["root"] == "config"
    assert across["source_item"] == {"path": "parts", "root": "gcodes"}
    assert env.ws.changes() == [moved, renamed, across]
    await env.fails(404, "server.files.move", source="gcodes/missing", dest="gcodes/x")
    write(env.gcodes / "d" / "e" / "f.gcode")
    msg = await env.fails(400, "server.files.move", source="gcodes/d", dest="gcodes/d/e/x")
    assert "into itself" in msg


async def test_copy_file_and_dir(env: Env) -> None:
    write(env.gcodes / "a.gcode", "abc")
    copied = await env.call("server.files.copy", source="gcodes/a.gcode", dest="gcodes/b.gcode")
    assert copied["action"] == "create_file"
    assert "source_item" not in copied
    assert copied["item"]["path"] == "b.gcode"
    assert copied["item"]["size"] == 3
    again = await env.call("server.files.copy", source="gcodes/a.gcode", dest="gcodes/b.gcode")
    assert again["action"] == "modify_file"
    write(env.gcodes / "d" / "x.gcode")
    tree = await env.call("server.files.copy", source="gcodes/d", dest="gcodes/d2")
    assert tree["action"] == "create_dir"
    assert tree["item"]["path"] == "d2"
    assert (env.gcodes / "d2" / "x.gcode").exists()
    assert (env.gcodes / "d" / "x.gcode").exists()
    msg = await env.fails(400, "server.files.copy", source="gcodes/d", dest="gcodes/d2")
    assert "already exists" in msg
    into = await env.call("server.files.copy", source="gcodes/a.gcode", dest="gcodes/d")
    assert into["item"]["path"] == "d/a.gcode"
    await env.fails(400, "server.files.copy", source="gcodes/d", dest="gcodes/d/inner")
    assert env.ws.changes() == [copied, again, tree, into]


async def test_delete_file(env: Env) -> None:
    write(env.gcodes / "sub" / "a.gcode")
    result = await env.call("server.files.delete_file", path="gcodes/sub/a.gcode")
    assert result == {
        "item": {
            "modified": 0,
            "size": 0,
            "permissions": "",
            "path": "sub/a.gcode",
            "root": "gcodes",
        },
        "action": "delete_file",
    }
    assert not (env.gcodes / "sub" / "a.gcode").exists()
    msg = await env.fails(400, "server.files.delete_file", path="gcodes/sub/a.gcode")
    assert "gcodes/sub/a.gcode" in msg
    await env.fails(400, "server.files.delete_file", path="gcodes/sub")
    assert env.ws.sent == [("notify_filelist_changed", [result])]


def test_delete_file_is_websocket_only(env: Env) -> None:
    ep = env.reg.by_rpc("server.files.delete_file")
    assert ep is not None
    assert ep.verb == "DELETE"
    assert ep.transports == Transport.WEBSOCKET
    assert env.reg.by_path("/server/files/delete_file") is None
    assert {"server.files.get_directory", "server.files.post_directory"} <= set(env.reg.rpc_names())
    assert "server.files.delete_directory" in env.reg.rpc_names()


async def test_file_being_printed_is_protected(env: Env) -> None:
    write(env.gcodes / "job" / "cube.gcode")
    write(env.gcodes / "other.gcode")
    env.files.is_printing = printing_check(lambda: "job/cube.gcode")
    await env.fails(403, "server.files.delete_file", path="gcodes/job/cube.gcode")
    await env.fails(403, "server.files.move", source="gcodes/job/cube.gcode", dest="gcodes/x")
    await env.fails(403, "server.files.move", source="gcodes/job", dest="gcodes/job2")
    await env.fails(403, "server.files.delete_directory", path="gcodes/job", force=True)
    await env.fails(
        403, "server.files.copy", source="gcodes/other.gcode", dest="gcodes/job/cube.gcode"
    )
    # copying the printed file is fine, as are other files
    await env.call("server.files.copy", source="gcodes/job/cube.gcode", dest="gcodes/c.gcode")
    await env.call("server.files.delete_file", path="gcodes/other.gcode")
    assert (env.gcodes / "job" / "cube.gcode").exists()


# --- downloads ------------------------------------------------------------------------------------


def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-", 10) == (0, 10)
    assert parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=5-100", 10) == (5, 10)
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=0-1,3-4", 10) is None
    assert parse_range("bytes=x-y", 10) is None
    with pytest.raises(ApiError) as exc:
        parse_range("bytes=10-", 10)
    assert exc.value.status == 416


async def test_serve_file(env: Env) -> None:
    from quart import Response
    from quart_trio import QuartTrio

    write(env.gcodes / "sub" / "cube.gcode", "0123456789")
    write(env.data / "secret.gcode", "secret")
    (env.gcodes / "leak.gcode").symlink_to(env.data / "secret.gcode")
    app = QuartTrio("t")

    @app.route("/server/files/<root>/<path:path>")
    async def download(root: str, path: str) -> Response:
        from quart import request

        try:
            response: Response = await serve_file(
                env.files, root, path, request.headers.get("Range")
            )
        except ApiError as exc:
            return Response(exc.message, status=exc.status)
        return response

    client = app.test_client()
    whole = await client.get("/server/files/gcodes/sub/cube.gcode")
    assert whole.status_code == 200
    assert await whole.get_data() == b"0123456789"
    assert "cube.gcode" in whole.headers["Content-Disposition"]
    part = await client.get("/server/files/gcodes/sub/cube.gcode", headers={"Range": "bytes=2-4"})
    assert part.status_code == 206
    assert await part.get_data() == b"234"
    assert part.headers["Content-Range"] == "bytes 2-4/10"
    bad = await client.get("/server/files/gcodes/sub/cube.gcode", headers={"Range": "bytes=20-"})
    assert bad.status_code == 416
    assert (await client.get("/server/files/gcodes/leak.gcode")).status_code == 403
    assert (await client.get("/server/files/gcodes/missing.gcode")).status_code == 404
    assert (await client.get("/server/files/gcodes_evil/x.gcode")).status_code == 400


# --- the event loop stays free ----------------------------------------------------------------


async def test_listing_10000_files_does_not_block_the_loop(env: Env) -> None:
    for d in range(20):
        folder = env.gcodes / f"d{d:02}"
        folder.mkdir(parents=True)
        for i in range(500):
            fd = os.open(folder / f"f{i:03}.gcode", os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
    ticks = 0
    during = 0
    listing = True

    async def count() -> None:
        nonlocal ticks, during
        while True:
            ticks += 1
            if listing:
                during += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(count)
        await trio.lowlevel.checkpoint()
        before = ticks
        result = await env.call("server.files.list", root="gcodes")
        listing = False
        after = ticks
        nursery.cancel_scope.cancel()
    assert len(result) == 10_000
    assert result[0]["path"] == "d00/f000.gcode"
    assert after - before > 10, (before, after)
    assert during > 10


# --- fuzzing: arbitrary paths never escape -------------------------------------------------------

_PARTS = st.sampled_from(
    ["..", ".", "", "out", "sub", "a.gcode", "gcodes", "gcodes_evil", "x" * 300, "\x00", "\\",
     "\ud800", "\udcff", "~", "é", "link.gcode", "..."]
)  # fmt: skip
_PATHS = st.one_of(
    st.text(max_size=40),
    st.lists(_PARTS, max_size=6).map("/".join),
    st.tuples(
        st.sampled_from(["gcodes", "config", "logs", "/gcodes", "gcodes_evil", ""]),
        st.lists(_PARTS, max_size=5),
    ).map(lambda t: "/".join([t[0], *t[1]])),
)


def _snapshot(path: Path) -> list[tuple[str, bytes]]:
    return sorted(
        (os.path.join(d, f), Path(d, f).read_bytes()) for d, _, fs in os.walk(path) for f in fs
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths=st.lists(_PATHS, min_size=2, max_size=2), force=st.booleans())
async def test_arbitrary_paths_never_escape(paths: list[str], force: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        outside = data / "outside"
        write(outside / "sub" / "a.gcode", "outside")
        write(data / "gcodes_evil" / "a.gcode", "evil")
        write(data / "gcodes" / "sub" / "a.gcode", "inside")
        (data / "gcodes" / "out").symlink_to(outside, target_is_directory=True)
        (data / "gcodes" / "link.gcode").symlink_to(outside / "sub" / "a.gcode")
        before = _snapshot(outside) + _snapshot(data / "gcodes_evil")
        e = make_env(data)
        a, b = paths
        calls: list[tuple[str, dict[str, Any]]] = [
            ("server.files.get_directory", {"path": a}),
            ("server.files.post_directory", {"path": a}),
            ("server.files.delete_file", {"path": a}),
            ("server.files.copy", {"source": a, "dest": b}),
            ("server.files.move", {"source": a, "dest": b}),
            ("server.files.delete_directory", {"path": a, "force": force}),
        ]
        statuses: list[int] = []
        for method, args in calls:
            try:
                result = await e.call(method, **args)
            except ApiError as exc:
                statuses.append(exc.status)
                continue
            if "item" in result:
                root = data / result["item"]["root"]
                item = root / result["item"]["path"]
                real = PurePosixPath(os.path.realpath(item.parent))  # noqa: ASYNC240
                assert confined(real, PurePosixPath(root.resolve()))
        assert set(statuses) <= {400, 403, 404}
        assert _snapshot(outside) + _snapshot(data / "gcodes_evil") == before
        assert sorted(os.listdir(data)) == ["config", "gcodes", "gcodes_evil", "logs", "outside"]
