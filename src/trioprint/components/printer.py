"""The ``printer.*`` endpoints: klippy's API, served on HTTP and the websocket.

Moonraker forwards these to klippy: an empty klippy result becomes ``"ok"``, a klippy error
becomes a 400 carrying klippy's message, and a request while the link is down is a 503
("Klippy Host not connected") at once, never a hang. The endpoints Moonraker forwards as
"remote" klippy endpoints take GET and POST alike under one JSON-RPC name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from ..domain.status import ObjectSpec, normalize_spec
from ..errors import ApiError
from ..registry import Call, NoParams, Transport, endpoint
from .klippy import Klippy

#: Query-string arguments that are never object names (Moonraker's list).
_NOT_OBJECTS = frozenset({"_", "token", "access_token", "connection_id"})
_BOTH = ("GET", "POST")


def _parse_objects(raw: Mapping[str, Any]) -> ObjectSpec:
    """``{"objects": {...}}`` (JSON-RPC, JSON body) or HTTP's ``?toolhead&gcode=busy,x``."""
    if "objects" in raw:
        value = raw["objects"]
    else:
        value = {}
        for key, fields in raw.items():
            if key in _NOT_OBJECTS:
                continue
            if fields is None or fields == "":
                value[key] = None
            elif isinstance(fields, str):
                value[key] = [f for f in fields.split(",") if f]
            else:
                value[key] = fields
    try:
        return normalize_spec(value)
    except ValueError as exc:
        raise ApiError(f"invalid argument 'objects': {exc}") from None


@attrs.frozen
class ObjectsParams:
    objects: ObjectSpec

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> ObjectsParams:
        return cls(_parse_objects(raw))


@attrs.frozen
class SubscribeParams:
    objects: ObjectSpec
    connection_id: int | None = None

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> SubscribeParams:
        cid = raw.get("connection_id")
        if cid is not None:
            try:
                cid = int(cid)
            except (TypeError, ValueError):
                raise ApiError(
                    f"invalid argument 'connection_id': expected int, got {cid!r}"
                ) from None
        return cls(_parse_objects(raw), cid)


@attrs.frozen
class ScriptParams:
    script: str


@attrs.frozen
class StartParams:
    filename: str


def _ok(result: Any) -> Any:
    return "ok" if result in ({}, None) else result


class Printer:
    """Serves klippy's API through the link (see :class:`~trioprint.components.klippy.Klippy`)."""

    name = "klippy_apis"

    def __init__(self, klippy: Klippy) -> None:
        self._klippy = klippy
        #: whether a file is in the gcodes root (the file manager's, set by the app): a print
        #: of a missing file is refused naming it, where klippy only says "Unable to open file"
        self.gcode_file_exists: Callable[[str], Awaitable[bool]] | None = None

    @endpoint("/printer/info", *_BOTH, rpc="printer.info")
    async def info(self, call: Call[NoParams]) -> Any:
        return await self._klippy.request("info", {})

    @endpoint("/printer/emergency_stop", *_BOTH, rpc="printer.emergency_stop", urgent=True)
    async def emergency_stop(self, call: Call[NoParams]) -> Any:
        return _ok(await self._klippy.emergency_stop())

    @endpoint("/printer/restart", "POST", urgent=True)
    async def restart(self, call: Call[NoParams]) -> Any:
        return await self._restart("RESTART")

    @endpoint("/printer/firmware_restart", "POST", urgent=True)
    async def firmware_restart(self, call: Call[NoParams]) -> Any:
        return await self._restart("FIRMWARE_RESTART")

    async def _restart(self, command: str) -> Any:
        try:
            return _ok(await self._klippy.run_gcode(command))
        except ApiError as exc:
            if exc.status == 503 and not self._klippy.connected:
                return "ok"  # klippy drops the link to restart: that is success
            raise

    @endpoint("/printer/objects/list", *_BOTH, rpc="printer.objects.list")
    async def objects_list(self, call: Call[NoParams]) -> Any:
        return await self._klippy.request("objects/list", {})

    @endpoint("/printer/objects/query", *_BOTH, params=ObjectsParams, rpc="printer.objects.query")
    async def objects_query(self, call: Call[ObjectsParams]) -> Any:
        return await self._klippy.query(call.params.objects)

    @endpoint(
        "/printer/objects/subscribe",
        *_BOTH,
        params=SubscribeParams,
        rpc="printer.objects.subscribe",
    )
    async def objects_subscribe(self, call: Call[SubscribeParams]) -> Any:
        conn: Any = call.connection
        if call.transport is Transport.HTTP:
            cid = call.params.connection_id
            if cid is None:
                raise ApiError(
                    "Subscriptions over HTTP need 'connection_id' (a websocket's id)", 400
                )
            conn = self._klippy.websocket(cid)
            if conn is None:
                raise ApiError(f"No websocket connection with id {cid}", 404)
        if conn is None:
            raise ApiError("No connection associated with subscription request")
        if not self._klippy.connected:
            raise ApiError("Klippy Host not connected", 503)
        return await self._klippy.subscribe(conn, call.params.objects)

    @endpoint("/printer/query_endstops/status", *_BOTH, rpc="printer.query_endstops.status")
    async def query_endstops(self, call: Call[NoParams]) -> Any:
        return await self._klippy.request("query_endstops/status", {})

    @endpoint("/printer/gcode/script", *_BOTH, params=ScriptParams, rpc="printer.gcode.script")
    async def gcode_script(self, call: Call[ScriptParams]) -> Any:
        return _ok(await self._klippy.run_gcode(call.params.script))

    @endpoint("/printer/gcode/help", *_BOTH, rpc="printer.gcode.help")
    async def gcode_help(self, call: Call[NoParams]) -> Any:
        return await self._klippy.request("gcode/help", {})

    @endpoint("/printer/print/start", "POST", params=StartParams)
    async def print_start(self, call: Call[StartParams]) -> Any:
        return _ok(await self.start_print(call.params.filename))

    async def start_print(self, filename: str) -> Any:
        """Print ``filename`` (relative to gcodes) from klippy's virtual_sdcard."""
        filename = filename.lstrip("/")
        if not filename:
            raise ApiError("invalid argument 'filename': empty")
        if any(c in filename for c in "\n\r\x00"):
            raise ApiError("invalid argument 'filename': control characters are not allowed")
        if self.gcode_file_exists is not None and not await self.gcode_file_exists(filename):
            # klippy's error, with Moonraker's code for it, naming the file
            raise ApiError(f'Unable to open file "{filename}": not in the gcodes folder', 400)
        quoted = filename.replace('"', '\\"')
        return await self._klippy.run_gcode(f'SDCARD_PRINT_FILE FILENAME="{quoted}"')

    @endpoint("/printer/print/pause", "POST")
    async def print_pause(self, call: Call[NoParams]) -> Any:
        return _ok(await self._klippy.request("pause_resume/pause", {}))

    @endpoint("/printer/print/resume", "POST")
    async def print_resume(self, call: Call[NoParams]) -> Any:
        return _ok(await self._klippy.request("pause_resume/resume", {}))

    @endpoint("/printer/print/cancel", "POST")
    async def print_cancel(self, call: Call[NoParams]) -> Any:
        return _ok(await self._klippy.request("pause_resume/cancel", {}))
