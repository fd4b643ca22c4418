"""The database: Moonraker's namespaced key-value store in SQLite, and its ``server.database.*``.

One file, ``<data>/database/trioprint.db`` (``[database] database_path`` names another
folder), in WAL mode with ``synchronous=FULL``: a write is committed to disk before it is
acknowledged. Every sqlite call runs on one worker thread at a time (a
``CapacityLimiter(1)``; the connection is not tied to a thread), so writes are serialized and
the event loop never waits on the disk. The table is Moonraker 0.11's ``namespace_store``, one
row per (namespace, top-level key) with the record encoded as Moonraker encodes it, so a
Moonraker backup restores into trioprint; :mod:`trioprint.domain.database` holds the pure part
(keys, nested values, reserved namespaces, the encoding).

:class:`Database` implements :class:`~trioprint.domain.kv.KeyValueStore` for the components,
and :meth:`Database.call` runs a function on the connection, for components that want tables
of their own. It is opened by :meth:`Database.run`, which the instance runs in a nursery
around the components' (opened before any of them starts, closed after all of them ended).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from ..domain import database as dbm
from ..domain.kv import MISSING, Key
from ..errors import ApiError, StartupError
from ..registry import Call, NoParams, endpoint

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_FILENAME = "trioprint.db"
NAMESPACE_TABLE = "namespace_store"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {NAMESPACE_TABLE} ("
    "namespace TEXT NOT NULL, key TEXT NOT NULL, value record NOT NULL, "
    "PRIMARY KEY (namespace, key))"
)


# --- the operations, run on the database thread -----------------------------------------------


def open_connection(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the database file, WAL with full sync, the table present."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("database %s: journal mode is %s, not wal", path, mode)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def _read(conn: sqlite3.Connection, namespace: str, row: str) -> Any:
    found = conn.execute(
        f"SELECT value FROM {NAMESPACE_TABLE} WHERE namespace = ? AND key = ?", (namespace, row)
    ).fetchone()
    if found is None:
        return MISSING
    return _decode(found[0], namespace, row)


def _decode(data: Any, namespace: str, row: str) -> Any:
    try:
        return dbm.decode_record(bytes(data) if not isinstance(data, bytes) else data)
    except (ValueError, TypeError) as exc:
        log.error("database: record %r in namespace %r unreadable: %s", row, namespace, exc)
        raise ApiError(f"Key '{row}' in namespace '{namespace}' is unreadable", 500) from None


def _write(conn: sqlite3.Connection, namespace: str, row: str, record: Any) -> None:
    conn.execute(
        f"INSERT INTO {NAMESPACE_TABLE} VALUES (?, ?, ?) "
        "ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value",
        (namespace, row, dbm.encode_record(record)),
    )


def op_get(conn: sqlite3.Connection, namespace: str, key: Key, default: Any = MISSING) -> Any:
    """The value at ``key`` (None: the namespace as an object); ``default`` or 404 if absent."""
    dbm.check_namespace(namespace)
    if key is None:
        rows = conn.execute(
            f"SELECT key, value FROM {NAMESPACE_TABLE} WHERE namespace = ?", (namespace,)
        ).fetchall()
        if not rows:
            if default is MISSING:
                raise dbm.namespace_not_found(namespace)
            return default
        return {row: _decode(value, namespace, row) for row, value in rows}
    parts = dbm.parse_key(key)
    record = _read(conn, namespace, parts[0])
    if record is MISSING:
        if default is MISSING:
            raise dbm.key_not_found(namespace, parts[0])
        return default
    try:
        return dbm.lookup(record, parts[1:])
    except dbm.NotFound:
        if default is MISSING:
            raise dbm.key_not_found(namespace, key) from None
        return default


def op_insert(conn: sqlite3.Connection, namespace: str, key: Key, value: Any) -> None:
    """Store ``value`` at ``key`` (parents created) in one committed transaction."""
    dbm.check_namespace(namespace)
    parts = dbm.parse_key(key)
    with _transaction(conn):
        if len(parts) == 1:
            record = value
        else:
            record = _read(conn, namespace, parts[0])
            record = dbm.insert(
                {} if record is MISSING else record, parts[1:], value, namespace=namespace, key=key
            )
        _write(conn, namespace, parts[0], record)


def op_delete(conn: sqlite3.Connection, namespace: str, key: Key) -> Any:
    """Remove ``key``; its old value. A record left empty goes, and with the last the namespace."""
    dbm.check_namespace(namespace)
    parts = dbm.parse_key(key)
    with _transaction(conn):
        record = _read(conn, namespace, parts[0])
        if record is MISSING:
            raise dbm.key_not_found(namespace, parts[0])
        try:
            old, empty = dbm.remove(record, parts[1:])
        except dbm.NotFound:
            raise dbm.key_not_found(namespace, key) from None
        if empty:
            conn.execute(
                f"DELETE FROM {NAMESPACE_TABLE} WHERE namespace = ? AND key = ?",
                (namespace, parts[0]),
            )
        else:
            _write(conn, namespace, parts[0], record)
    return old


def op_namespaces(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(f"SELECT DISTINCT namespace FROM {NAMESPACE_TABLE}").fetchall()
    return sorted(row[0] for row in rows)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return sorted(row[0] for row in rows)


# --- the component ----------------------------------------------------------------------------


@attrs.frozen
class ItemParams:
    """``namespace``, ``key`` and ``value`` as sent (the key may be a string or a list)."""

    namespace: str
    key: Any
    value: Any

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> ItemParams:
        if "namespace" not in raw:
            raise ApiError("No data for argument: namespace", 400)
        return cls(dbm.check_namespace(raw["namespace"]), raw.get("key"), raw.get("value", MISSING))


@attrs.frozen
class BackupParams:
    filename: str | None = None


@attrs.frozen
class FilenameParams:
    filename: str


class Database:
    """:class:`~trioprint.domain.kv.KeyValueStore` in SQLite, and ``server.database.*``."""

    name = "database"

    def __init__(
        self,
        folder: Path,
        backup_dir: Path,
        *,
        is_printing: Callable[[], bool] = lambda: False,
        request_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = folder / DB_FILENAME
        self.backup_dir = backup_dir
        self._is_printing = is_printing
        self._request_restart = request_restart
        self._conn: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._backup_lock = trio.Lock()
        self._restored = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the database, serve until cancelled, then close it (after any call in flight)."""
        try:
            self._conn = await trio.to_thread.run_sync(
                open_connection, self.path, limiter=self._limiter
            )
        except (sqlite3.Error, OSError) as exc:
            raise StartupError(f"cannot open the database {self.path}: {exc}") from None
        log.info("database: %s (sqlite %s)", self.path, sqlite3.sqlite_version)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread (one call at a time); its result.

        For components that keep tables of their own. The connection is in autocommit mode:
        each statement commits by itself; group several in ``BEGIN`` ... ``COMMIT``. A
        transaction ``fn`` leaves open is rolled back (and logged).
        """

        def run() -> T:
            conn = self._conn
            if conn is None:
                raise ApiError("the database is not open", 503)
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.rollback()
                    log.error("database: %r left a transaction open; rolled back", fn)

        return await trio.to_thread.run_sync(run, limiter=self._limiter)

    # -- KeyValueStore -----------------------------------------------------------------------

    async def get_item(self, namespace: str, key: Key = None, default: Any = MISSING) -> Any:
        return await self.call(lambda conn: op_get(conn, namespace, key, default))

    async def insert_item(self, namespace: str, key: Key, value: Any) -> None:
        await self.call(lambda conn: op_insert(conn, namespace, key, value))

    async def delete_item(self, namespace: str, key: Key) -> Any:
        return await self.call(lambda conn: op_delete(conn, namespace, key))

    async def namespaces(self) -> list[str]:
        return await self.call(op_namespaces)

    # -- the API -----------------------------------------------------------------------------

    def _backups(self) -> list[str]:
        if not self.backup_dir.is_dir():
            return []
        return sorted(p.name for p in self.backup_dir.iterdir() if p.is_file())

    @endpoint("/server/database/list", "GET")
    async def list_namespaces(self, call: Call[NoParams]) -> dict[str, Any]:
        namespaces = await self.namespaces()
        backups = await trio.to_thread.run_sync(self._backups)
        return {
            "namespaces": [ns for ns in namespaces if ns not in dbm.FORBIDDEN_NAMESPACES],
            "backups": backups,
        }

    @endpoint("/server/database/item", "GET", "POST", "DELETE", params=ItemParams)
    async def item(self, call: Call[ItemParams]) -> dict[str, Any]:
        namespace, key = call.params.namespace, call.params.key
        dbm.check_access(namespace, write=call.verb != "GET")
        if call.verb == "GET":
            if key is not None:
                dbm.parse_key(key)
            value = await self.get_item(namespace, key)
        else:
            dbm.parse_key(key)
            if call.verb == "POST":
                value = call.params.value
                if value is MISSING:
                    raise ApiError("No data for argument: value", 400)
                if value is not None:  # as Moonraker: a null record is not stored
                    await self.insert_item(namespace, key, value)
            else:
                value = await self.delete_item(namespace, key)
        return {"namespace": namespace, "key": key, "value": value}

    def _check_idle(self, what: str) -> None:
        if self._is_printing():
            raise ApiError(f"Cannot {what} when Klipper is printing", 400)
        if self._restored:
            raise ApiError(f"Cannot {what} restored database, awaiting restart", 400)

    def _backup_path(self, name: str) -> Path:
        folder = self.backup_dir.resolve()
        try:
            path = folder.joinpath(name).resolve()
        except (ValueError, OSError):  # a NUL byte, a symlink loop
            raise ApiError(f"Invalid name {name}.", 400) from None
        if folder not in path.parents:
            raise ApiError(f"Invalid name {name}.", 400)
        return path

    @endpoint("/server/database/compact", "POST")
    async def compact(self, call: Call[NoParams]) -> dict[str, int]:
        self._check_idle("compact")
        async with self._backup_lock:
            return await self.call(self._compact)

    def _compact(self, conn: sqlite3.Connection) -> dict[str, int]:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = self.path.stat().st_size
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"previous_size": before, "new_size": self.path.stat().st_size}

    @endpoint("/server/database/backup", "POST", "DELETE", params=BackupParams)
    async def backup(self, call: Call[BackupParams]) -> dict[str, str]:
        """``post_backup`` (``filename`` defaults to one with the time) and ``delete_backup``."""
        name = call.params.filename
        if call.verb == "DELETE":
            if name is None:
                raise ApiError("No data for argument: filename", 400)
            return await self._delete_backup(name)
        self._check_idle("backup")
        name = name or time.strftime("sqldb-backup-%Y%m%d-%H%M%S.db")
        async with self._backup_lock:
            path = await trio.to_thread.run_sync(self._backup_path, name)
            await self.call(lambda conn: self._backup(conn, path))
        return {"backup_path": str(path)}

    @staticmethod
    def _backup(conn: sqlite3.Connection, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        target = sqlite3.connect(str(tmp))
        try:
            conn.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)

    async def _delete_backup(self, name: str) -> dict[str, str]:
        async with self._backup_lock:

            def unlink() -> Path:
                path = self._backup_path(name)
                if not path.is_file():
                    raise ApiError(f"Backup file {name} does not exist", 404)
                path.unlink()
                return path

            path = await trio.to_thread.run_sync(unlink)
        return {"backup_path": str(path)}

    @endpoint("/server/database/restore", "POST", params=FilenameParams)
    async def restore(self, call: Call[FilenameParams]) -> dict[str, Any]:
        if self._is_printing():
            raise ApiError("Cannot restore when Klipper is printing", 400)
        if self._restored:
            raise ApiError("Database already restored", 400)
        async with self._backup_lock:
            path = await trio.to_thread.run_sync(self._backup_path, call.params.filename)
            info = await self.call(lambda conn: self._restore(conn, path))
            self._restored = True
        # the components rebuild their state from the restored database in a new instance
        self._request_restart()
        return info

    @staticmethod
    def _restore(conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise ApiError(f"Restoration File {path} does not exist", 400)
        source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            try:
                tables = _tables(source)
                if NAMESPACE_TABLE not in tables:
                    raise ApiError(
                        f"Invalid database for restoration, missing table '{NAMESPACE_TABLE}'",
                        400,
                    )
                namespaces = op_namespaces(source)
            except sqlite3.DatabaseError as exc:
                raise ApiError(f"Invalid database for restoration: {exc}", 400) from None
            source.backup(conn)
        finally:
            source.close()
        return {"restored_tables": tables, "restored_namespaces": namespaces}
