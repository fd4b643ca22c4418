"""The database: key parsing and nested values (pure), the SQLite store (a real file), and the
``server.database.*`` endpoints through a live server, with Moonraker 0.11's shapes and errors."""

from __future__ import annotations

import contextlib
import copy
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint.components import database as cdb
from trioprint.components.database import Database
from trioprint.domain import database as dbm
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport
from trioprint.rpc import rpc_code_for_status

from .live import call_until_closed, live_server, rpc_client

NOT_FOUND = rpc_code_for_status(404)

# --- the pure part ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("a", ["a"]),
        ("a.b.c", ["a", "b", "c"]),
        (["a", "b.c"], ["a", "b.c"]),
        (["file.gcode"], ["file.gcode"]),
        ("ünï.cödé", ["ünï", "cödé"]),
    ],
)
def test_keys_are_dotted_strings_or_lists(key: Any, parts: list[str]) -> None:
    assert dbm.parse_key(key) == parts


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "Invalid Key Format"),
        ("a..b", "Invalid Key Format"),
        (".a", "Invalid Key Format"),
        ([], "Invalid Key Format"),
        (["a", ""], "Invalid Key Format"),
        (["a", 3], "not a string"),
        (3, "invalid type: int"),
        ({"a": 1}, "invalid type: dict"),
        ("x" * (dbm.MAX_KEY_PART_LENGTH + 1), "too long"),
        (["a"] * (dbm.MAX_KEY_DEPTH + 1), "too deep"),
        (["\ud800"], "not valid Unicode"),
    ],
)
def test_bad_keys_are_a_clear_400(key: Any, words: str) -> None:
    with pytest.raises(ApiError) as info:
        dbm.parse_key(key)
    assert info.value.status == 400
    assert words in info.value.message


@pytest.mark.parametrize(
    ("namespace", "words"),
    [
        ("", "must not be empty"),
        (None, "invalid type: NoneType"),
        (5, "invalid type: int"),
        ("n" * (dbm.MAX_NAMESPACE_LENGTH + 1), "too long"),
        ("a\udfffb", "not valid Unicode"),
    ],
)
def test_bad_namespaces_are_a_clear_400(namespace: Any, words: str) -> None:
    with pytest.raises(ApiError) as info:
        dbm.check_namespace(namespace)
    assert info.value.status == 400
    assert words in info.value.message


def test_nested_insert_creates_parents_and_replaces_a_non_object_record() -> None:
    assert dbm.insert(None, ["b", "c"], 1, namespace="n", key="a.b.c") == {"b": {"c": 1}}
    assert dbm.insert(5, ["b"], 1, namespace="n", key="a.b") == {"b": 1}
    assert dbm.insert({"b": {"x": 0}}, ["b", "c"], 1, namespace="n", key="a.b.c") == {
        "b": {"x": 0, "c": 1}
    }
    with pytest.raises(ApiError) as info:
        dbm.insert({"b": 5}, ["b", "c"], 1, namespace="n", key="a.b.c")
    assert info.value.message.startswith("Item at key 'a.b' in namespace 'n'")


def test_nested_remove_reports_an_emptied_record() -> None:
    record = {"b": {"c": 1}, "d": 2}
    assert dbm.remove(record, ["b", "c"]) == (1, False)
    assert record == {"b": {}, "d": 2}
    assert dbm.remove(record, ["d"]) == (2, False)
    assert dbm.remove(record, ["b"]) == ({}, True)
    with pytest.raises(dbm.NotFound):
        dbm.remove({"a": 1}, ["a", "b"])
    with pytest.raises(dbm.NotFound):
        dbm.remove([1, 2], ["0"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)  # not JSON: refused
    | st.text(st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_records_round_trip(value: Any) -> None:
    assert dbm.decode_record(dbm.encode_record(value)) == value


def test_records_are_moonraker_s_encoding() -> None:
    # the tags of Moonraker 0.11's encode_record, so its databases restore into trioprint
    assert dbm.encode_record(1) == b"q\x01\x00\x00\x00\x00\x00\x00\x00"
    assert dbm.encode_record("é") == "sé".encode()
    assert dbm.encode_record(True) == b"?\x01"
    assert dbm.encode_record(None) == b"\x00"
    assert dbm.decode_record(b'{"a":[1]}') == {"a": [1]}
    with pytest.raises(ApiError):
        dbm.encode_record(2**64)  # beyond 64 bits at the top level: refused, not stored


# --- the SQLite store, a real file, against a model --------------------------------------------

names = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "a.b",
            ".",
            "gcode.file.gcode",
            "\x00",
            "\ud800",
            "é" * 300,
            "n" * 257,
            "database",
            "moonraker",
        ]
    ),
)
keys = st.one_of(
    names,
    st.lists(names, max_size=3),
    st.just(None),
    st.integers(),
)
operations = st.lists(
    st.tuples(st.sampled_from(["insert", "delete", "get"]), names, keys, json_values),
    max_size=25,
)


def model_valid(namespace: Any, key: Any) -> bool:
    def ok(text: Any, limit: int) -> bool:
        if not isinstance(text, str) or not text or len(text) > limit:
            return False
        return all(not 0xD800 <= ord(c) <= 0xDFFF for c in text)

    if not ok(namespace, dbm.MAX_NAMESPACE_LENGTH):
        return False
    parts = key.split(".") if isinstance(key, str) else key
    if not isinstance(parts, list) or not parts or len(parts) > dbm.MAX_KEY_DEPTH:
        return False
    return all(ok(p, dbm.MAX_KEY_PART_LENGTH) for p in parts)


class Model:
    """What the store must hold, written the plain way."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def insert(self, namespace: str, parts: list[str], value: Any) -> bool:
        rows = self.data.setdefault(namespace, {})
        if len(parts) == 1:
            rows[parts[0]] = value
            return True
        record = copy.deepcopy(rows.get(parts[0]))
        if not isinstance(record, dict):
            record = {}
        node = record
        for part in parts[1:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                if not rows:
                    del self.data[namespace]
                return False
        node[parts[-1]] = value
        rows[parts[0]] = record
        return True

    def delete(self, namespace: str, parts: list[str]) -> Any:
        rows = self.data.get(namespace, {})
        if parts[0] not in rows:
            raise KeyError
        if len(parts) == 1:
            old = rows.pop(parts[0])
        else:
            node = rows[parts[0]]
            for part in parts[1:-1]:
                node = node[part] if isinstance(node, dict) else {}
            if not isinstance(node, dict) or parts[-1] not in node:
                raise KeyError
            old = node.pop(parts[-1])
            if not rows[parts[0]]:
                del rows[parts[0]]
        if not rows:
            del self.data[namespace]
        return old


def check_store(conn: sqlite3.Connection, model: Model) -> None:
    assert cdb.op_namespaces(conn) == sorted(model.data)
    for namespace, rows in model.data.items():
        assert cdb.op_get(conn, namespace, None) == rows


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations)
def test_arbitrary_names_and_keys_never_corrupt_the_store(
    tmp_path: Path, ops: list[tuple[str, Any, Any, Any]]
) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "t.db"  # a fresh file for each example
    model = Model()
    conn = cdb.open_connection(path)
    try:
        for op, namespace, key, value in ops:
            valid = model_valid(namespace, key)
            try:
                if op == "insert":
                    cdb.op_insert(conn, namespace, key, value)
                    assert valid
                    assert model.insert(namespace, dbm.parse_key(key), value)
                elif op == "delete":
                    old = cdb.op_delete(conn, namespace, key)
                    assert valid
                    assert model.delete(namespace, dbm.parse_key(key)) == old
                else:
                    got = cdb.op_get(conn, namespace, key, default="absent")
                    if key is None and model_valid(namespace, "k"):
                        assert got == model.data.get(namespace, "absent")
                    else:
                        assert valid
            except ApiError as exc:
                # refused: a malformed name or key (400), a missing one (404), or a nested
                # insert under a non-object (400); the model agrees and nothing changed
                assert exc.status in (400, 404), exc  # noqa: PT017
                if valid and op == "insert":
                    assert not model.insert(namespace, dbm.parse_key(key), value)
                elif valid and op == "delete":
                    with pytest.raises(KeyError):
                        model.delete(namespace, dbm.parse_key(key))
            check_store(conn, model)
    finally:
        conn.close()
    # and again from the file, in a new connection
    conn = cdb.open_connection(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check_store(conn, model)
    finally:
        conn.close()


# --- the component --------------------------------------------------------------------------


async def test_the_key_value_store_protocol_and_call(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", tmp_path / "backup")
    async with trio.open_nursery() as nursery:
        with pytest.raises(ApiError) as info:
            await db.get_item("n", "k")
        assert info.value.status == 503  # not open before run
        await nursery.start(db.run)
        await db.insert_item("n", ["a", "b.c"], 1)
        await db.insert_item("n", "top", None)  # through the protocol a null is stored
        assert await db.get_item("n") == {"a": {"b.c": 1}, "top": None}
        assert await db.get_item("n", "a.b", default=7) == 7
        assert await db.get_item("other", default={}) == {}
        with pytest.raises(ApiError) as info:
            await db.get_item("other")
        assert (info.value.status, info.value.message) == (404, "Namespace other not found")
        assert await db.delete_item("n", ["a", "b.c"]) == 1
        assert await db.namespaces() == ["n"]
        assert await db.delete_item("n", "top") is None
        assert await db.namespaces() == []
        tables = await db.call(
            lambda conn: [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        )
        assert cdb.NAMESPACE_TABLE in tables
        mode = await db.call(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
        sync = await db.call(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        assert sync == 2  # FULL

        def careless(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            conn.execute("CREATE TABLE mine (x INTEGER)")

        await db.call(careless)  # its open transaction is rolled back, the store still works
        await db.insert_item("n", "after", 1)
        assert await db.delete_item("n", "after") == 1
        assert "mine" not in await db.call(cdb._tables)
        nursery.cancel_scope.cancel()
    with pytest.raises(ApiError):  # closed with the instance
        await db.get_item("n")


# --- the endpoints, through a live server -----------------------------------------------------


async def test_items_over_the_websocket_as_moonraker(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, rpc_client(live.ws) as client:

        async def ok(method: str, **params: Any) -> Any:
            reply = await client.call(f"server.database.{method}", params)
            assert "result" in reply, reply
            return reply["result"]

        async def error(method: str, **params: Any) -> tuple[int, str]:
            reply = await client.call(f"server.database.{method}", params)
            assert "error" in reply, reply
            return reply["error"]["code"], reply["error"]["message"]

        with trio.fail_after(10):
            posted = await ok("post_item", namespace="mainsail", key="a.b", value={"c": 1})
            assert posted == {"namespace": "mainsail", "key": "a.b", "value": {"c": 1}}
            await ok("post_item", namespace="mainsail", key=["file.gcode"], value=[1, "x"])
            got = await ok("get_item", namespace="mainsail")
            assert got == {
                "namespace": "mainsail",
                "key": None,
                "value": {"a": {"b": {"c": 1}}, "file.gcode": [1, "x"]},
            }
            assert (await ok("get_item", namespace="mainsail", key="a.b.c"))["value"] == 1
            listed = await ok("list")
            assert "mainsail" in listed["namespaces"]
            assert listed["backups"] == []
            # errors: Moonraker's messages and codes
            # (a 404 is JSON-RPC code -32601 on the websocket, as Moonraker maps it)
            assert await error("get_item", namespace="nope") == (
                NOT_FOUND,
                "Namespace nope not found",
            )
            assert await error("get_item", namespace="mainsail", key="zz.y") == (
                NOT_FOUND,
                "Key 'zz' in namespace 'mainsail' not found",
            )
            assert await error("get_item", namespace="mainsail", key="a.q") == (
                NOT_FOUND,
                "Key 'a.q' in namespace 'mainsail' not found",
            )
            assert (await error("post_item", namespace="mainsail", key="a..b", value=1))[0] == 400
            assert (await error("post_item", namespace="mainsail", key=5, value=1))[0] == 400
            assert await error("post_item", namespace="mainsail", key="k") == (
                400,
                "No data for argument: value",
            )
            assert (await error("get_item", namespace=""))[0] == 400
            assert (await error("get_item", namespace="x" * 300))[0] == 400
            assert (await error("delete_item", namespace="mainsail"))[0] == 400
            # reserved namespaces: readable, not writable; "database" not even readable
            assert await error("post_item", namespace="moonraker", key="k", value=1) == (
                403,
                "Write access to namespace 'moonraker' is forbidden",
            )
            assert (await error("delete_item", namespace="gcode_metadata", key="k"))[0] == 403
            assert (await error("get_item", namespace="gcode_metadata", key="k"))[0] == NOT_FOUND
            assert await error("get_item", namespace="database") == (
                403,
                "Read/Write access to namespace 'database' is forbidden",
            )
            # a null record is not stored (as Moonraker), a nested null is
            await ok("post_item", namespace="mainsail", key="n", value=None)
            assert (await error("get_item", namespace="mainsail", key="n"))[0] == NOT_FOUND
            # deleting: the value comes back; the last key takes the namespace with it
            deleted = await ok("delete_item", namespace="mainsail", key="a.b.c")
            assert deleted == {"namespace": "mainsail", "key": "a.b.c", "value": 1}
            # (as Moonraker: emptied parents inside a record stay)
            assert (await ok("get_item", namespace="mainsail"))["value"] == {
                "a": {"b": {}},
                "file.gcode": [1, "x"],
            }
            await ok("delete_item", namespace="mainsail", key="a")
            await ok("delete_item", namespace="mainsail", key=["file.gcode"])
            assert "mainsail" not in (await ok("list"))["namespaces"]
            assert await error("delete_item", namespace="mainsail", key="a") == (
                NOT_FOUND,
                "Key 'a' in namespace 'mainsail' not found",
            )


async def test_items_over_http_with_a_body_or_a_query(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        with trio.fail_after(10):
            post = await http.post(
                "/server/database/item",
                json={"namespace": "fluidd", "key": "uiSettings.theme", "value": {"dark": True}},
            )
            by_query = await http.get(
                "/server/database/item", params={"namespace": "fluidd", "key": "uiSettings"}
            )
            by_body = await http.request(
                "GET", "/server/database/item", json={"namespace": "fluidd", "key": ["uiSettings"]}
            )
            delete = await http.request(
                "DELETE", "/server/database/item", json={"namespace": "fluidd", "key": "uiSettings"}
            )
            missing = await http.get("/server/database/item", params={"namespace": "fluidd"})
            # the documented query form, with a typed value
            typed = await http.post(
                "/server/database/item?namespace=q&key=item.location&value:int=100"
            )
            typed_back = await http.get("/server/database/item?namespace=q&key=item")
        assert post.json()["result"]["value"] == {"dark": True}
        assert by_query.json()["result"]["value"] == {"theme": {"dark": True}}
        assert by_body.json()["result"] == {
            "namespace": "fluidd",
            "key": ["uiSettings"],
            "value": {"theme": {"dark": True}},
        }
        assert delete.json()["result"]["value"] == {"theme": {"dark": True}}
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "Namespace fluidd not found"
        assert typed.json()["result"] == {"namespace": "q", "key": "item.location", "value": 100}
        assert typed_back.json()["result"]["value"] == {"location": 100}


async def test_backup_compact_and_restore(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        old = live.instance

        async def call(verb: str, path: str, **args: Any) -> httpx.Response:
            return await http.request(verb, f"/server/database/{path}", json=args)

        with trio.fail_after(20):
            await call("POST", "item", namespace="keep", key="x", value=1)
            backup = (await call("POST", "backup", filename="one.db")).json()["result"]
            default = (await call("POST", "backup")).json()["result"]
            bad_name = await call("POST", "backup", filename="../escape.db")
            nul_name = await call("POST", "backup", filename="a\x00b.db")
            listed = (await http.get("/server/database/list")).json()["result"]
            await call("POST", "item", namespace="keep", key="x", value=2)
            await call("POST", "item", namespace="later", key="y", value=3)
            compact = (await call("POST", "compact")).json()["result"]
            gone = await call("DELETE", "backup", filename=Path(default["backup_path"]).name)
            gone_again = await call("DELETE", "backup", filename=Path(default["backup_path"]).name)
            bad_restore = await call("POST", "restore", filename="none.db")
            restore = await call("POST", "restore", filename="one.db")
            new = await live.server.wait_serving(other_than=old)
        folder = tmp_path / "backup" / "database"
        assert backup == {"backup_path": str((folder / "one.db").resolve())}
        assert Path(default["backup_path"]).name.startswith("sqldb-backup-")
        assert bad_name.status_code == 400
        assert bad_name.json()["error"]["message"] == "Invalid name ../escape.db."
        assert nul_name.status_code == 400
        assert sorted(listed["backups"]) == sorted(["one.db", Path(default["backup_path"]).name])
        assert set(compact) == {"previous_size", "new_size"}
        assert compact["new_size"] > 0
        assert gone.status_code == 200
        assert gone_again.status_code == 404
        assert bad_restore.status_code == 400
        restored = restore.json()["result"]["restored_namespaces"]
        assert "keep" in restored
        assert "later" not in restored
        assert "namespace_store" in restore.json()["result"]["restored_tables"]
        # the restart brought up a new instance on the restored database
        assert new is not old
        port = new.bound[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as fresh:
            value = await fresh.get(
                "/server/database/item", params={"namespace": "keep", "key": "x"}
            )
            later = await fresh.get("/server/database/item", params={"namespace": "later"})
        assert value.json()["result"]["value"] == 1
        assert later.status_code == 404


async def test_a_restored_database_waits_for_the_restart(tmp_path: Path) -> None:
    restarts: list[int] = []
    printing = [False]
    db = Database(
        tmp_path / "db",
        tmp_path / "backup",
        is_printing=lambda: printing[0],
        request_restart=lambda: restarts.append(1),
    )
    registry = Registry()
    registry.add_component(db)

    async def call(method: str, **args: Any) -> Any:
        ep = registry.by_rpc(f"server.database.{method}")
        assert ep is not None
        return await registry.dispatch(ep, args, Transport.WEBSOCKET)

    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        await db.insert_item("n", "k", 1)
        await call("post_backup", filename="b.db")
        printing[0] = True
        for method in ("compact", "post_backup", "restore"):
            with pytest.raises(ApiError, match="when Klipper is printing"):
                await call(method, filename="b.db")
        printing[0] = False
        await db.insert_item("n", "k", 2)
        await call("restore", filename="b.db")
        assert restarts == [1]
        assert await db.get_item("n", "k") == 1
        for method in ("compact", "post_backup", "restore"):
            with pytest.raises(ApiError) as info:
                await call(method, filename="b.db")
            assert info.value.status == 400
        nursery.cancel_scope.cancel()


async def test_a_moonraker_database_file_restores(tmp_path: Path) -> None:
    # a backup in Moonraker 0.11's layout: its table, its records, an extra table of its own
    folder = tmp_path / "backup" / "database"
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "moonraker.db") as conn:
        conn.execute(
            "CREATE TABLE namespace_store (namespace TEXT NOT NULL, key TEXT NOT NULL, "
            "value record NOT NULL, PRIMARY KEY (namespace, key))"
        )
        conn.execute("CREATE TABLE table_registry (name TEXT NOT NULL PRIMARY KEY)")
        conn.executemany(
            "INSERT INTO namespace_store VALUES (?, ?, ?)",
            [
                ("mainsail", "general", b'{"printername":"P"}'),
                ("mainsail", "count", b"q\x05\x00\x00\x00\x00\x00\x00\x00"),
                ("fluidd", "name", b"sVoron"),
            ],
        )
    conn.close()
    async with live_server(tmp_path) as live, httpx.AsyncClient(base_url=live.http) as http:
        old = live.instance
        with trio.fail_after(20):
            restore = await http.post("/server/database/restore", json={"filename": "moonraker.db"})
            new = await live.server.wait_serving(other_than=old)
        assert restore.status_code == 200, restore.text
        port = new.bound[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as fresh:
            mainsail = await fresh.get("/server/database/item", params={"namespace": "mainsail"})
            fluidd = await fresh.get(
                "/server/database/item", params={"namespace": "fluidd", "key": "name"}
            )
        assert mainsail.json()["result"]["value"] == {"general": {"printername": "P"}, "count": 5}
        assert fluidd.json()["result"]["value"] == "Voron"


# --- the endpoints with arbitrary arguments, through the registry ------------------------------

raw_args = st.dictionaries(
    st.sampled_from(["namespace", "key", "value", "filename"]),
    st.one_of(names, keys, json_values),
    max_size=4,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["get", "post", "delete", "list"]), raw_args), max_size=12)
)
def test_arbitrary_requests_are_answered_or_refused_never_crash(
    requests: list[tuple[str, dict[str, Any]]],
) -> None:
    async def main(folder: Path) -> None:
        db = Database(folder / "db", folder / "backup")
        registry = Registry()
        registry.add_component(db)
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            for verb, args in requests:
                method = "list" if verb == "list" else f"{verb}_item"
                ep = registry.by_rpc(f"server.database.{method}")
                assert ep is not None
                try:
                    result = await registry.dispatch(ep, args, Transport.WEBSOCKET)
                except ApiError as exc:
                    assert exc.status in (400, 403, 404), exc  # noqa: PT017
                    continue
                if verb != "list":
                    assert result["namespace"] == args["namespace"]
            # the store is still consistent and readable, namespace by namespace
            for namespace in await db.namespaces():
                assert isinstance(await db.get_item(namespace), dict)
            nursery.cancel_scope.cancel()
        conn = cdb.open_connection(folder / "db" / cdb.DB_FILENAME)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()

    with tempfile.TemporaryDirectory() as folder:
        trio.run(main, Path(folder))


def database_fds() -> int:
    """Open file descriptors of this process on a database file (the db, -wal, -shm)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if cdb.DB_FILENAME in os.readlink(f"/proc/self/fd/{fd}"):
                count += 1
    return count


async def test_restarts_close_the_database_and_keep_its_items(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        server = live.server
        with trio.fail_after(30):
            async with rpc_client(live.ws) as client:
                await client.call(
                    "server.database.post_item", {"namespace": "ns", "key": "k", "value": 0}
                )
            open_while_serving = database_fds()
            for i in range(1, 6):
                old = server.instance
                assert old is not None
                reply, _, _ = await call_until_closed(old.bound[0][1], "server.restart")
                assert reply["result"] == "ok"
                new = await server.wait_serving(other_than=old)
                url = f"ws://127.0.0.1:{new.bound[0][1]}/websocket"
                async with rpc_client(url) as client:
                    got = await client.call(
                        "server.database.get_item", {"namespace": "ns", "key": "k"}
                    )
                    assert got["result"]["value"] == i - 1
                    await client.call(
                        "server.database.post_item", {"namespace": "ns", "key": "k", "value": i}
                    )
                # one connection's files open at a time: the old instance closed its own
                assert database_fds() == open_while_serving
    assert open_while_serving >= 1
    assert database_fds() == 0  # and the last one closed at shutdown
