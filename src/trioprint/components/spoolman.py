"""``server.spoolman.*``: the ``[spoolman]`` section (Moonraker 0.11's ``spoolman``).

The active spool is kept in the database (namespace ``moonraker``, key ``spoolman.spool_id``,
as Moonraker keeps it) and announced with ``notify_active_spool_set``. The filament it uses is
counted from klippy's toolhead position (an internal status subscription; the accounting is
pure: :class:`trioprint.domain.spoolman.UsageTracker`) and reported every ``sync_rate``
seconds with ``PUT /api/v1/spool/{id}/use`` while Spoolman answers; while it does not, the use
waits (Moonraker's offline queue) and goes out once it is back. A spool Spoolman no longer
knows (404) is dropped, and is no longer the active one.

Whether Spoolman is there: Moonraker keeps a websocket to it; trioprint asks
``GET /api/v1/health`` every ``sync_rate`` seconds while it is away (and counts it away as soon
as a request fails), and announces each change with ``notify_spoolman_status_changed``. On each
reconnection the active spool is looked up, and cleared if Spoolman answers 404. Every request
is bounded (:data:`REQUEST_TIMEOUT`). The spools a job used are in its ``auxiliary_data``
(``spoolman`` ``spool_ids``). Klippy's macros set the active spool with the remote method
``spoolman_set_active_spool`` (``spool_id``), as with Moonraker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from ..domain.history_fields import HistoryField
from ..domain.kv import KeyValueStore
from ..domain.spoolman import SpoolmanError, UsageTracker, api_url, proxy_target
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from ..transport.http_client import HttpError, HttpResponse, http_json
from .protocols import Broadcaster, FieldRegistry, RemoteMethodSource

log = logging.getLogger(__name__)

DB_NAMESPACE = "moonraker"
ACTIVE_SPOOL_KEY = "spoolman.spool_id"
#: Seconds one request to Spoolman may take.
REQUEST_TIMEOUT = 5.0
DEFAULT_SYNC_RATE = 5

Request = Callable[..., Awaitable[HttpResponse]]


@attrs.frozen
class SpoolIdParams:
    spool_id: int | None = None


@attrs.frozen
class ProxyParams:
    request_method: str | None = None
    path: str | None = None
    query: str | None = None
    body: Any = None
    use_v2_response: bool = False


def read_section(options: Mapping[str, str]) -> tuple[str, int]:
    """``[spoolman]``: the API's base URL and ``sync_rate``; :class:`SpoolmanError` if bad."""
    server = options.get("server")
    if not server:
        raise SpoolmanError("[spoolman] option 'server' is required")
    text = options.get("sync_rate", str(DEFAULT_SYNC_RATE))
    try:
        rate = int(text)
    except ValueError:
        raise SpoolmanError(
            f"[spoolman] option 'sync_rate': expected an integer, got {text!r}"
        ) from None
    if rate < 1:
        raise SpoolmanError("[spoolman] option 'sync_rate': must be 1 or more")
    return api_url(server), rate


def _message(response: HttpResponse) -> str:
    try:
        found = json.loads(response.body).get("message")
    except (ValueError, AttributeError):
        found = None
    return str(found) if found else f"HTTP error {response.status}"


class Spoolman:
    """Moonraker's ``spoolman`` component."""

    name = "spoolman"

    def __init__(
        self,
        options: Mapping[str, str],
        klippy: RemoteMethodSource,
        database: KeyValueStore,
        websockets: Broadcaster,
        history: FieldRegistry | None = None,
        *,
        request: Request = http_json,
    ) -> None:
        self.url, self.sync_rate = read_section(options)
        self._db = database
        self._websockets = websockets
        self._request = request
        self.usage = UsageTracker()
        self.connected = False
        self._poke = trio.Event()
        self.field = HistoryField(
            "spool_ids",
            "spoolman",
            "Spool IDs used",
            "collect",
            reset_callback=lambda: [] if self.spool_id is None else [self.spool_id],
        )
        if history is not None:
            history.register_auxiliary_field(self.field)
        klippy.set_internal_subscription(
            "spoolman", {"toolhead": ["position", "extruder"]}, self._on_status
        )
        # a macro's SET_ACTIVE_SPOOL: action_call_remote_method("spoolman_set_active_spool", ...)
        self._remote_send, self._remote = trio.open_memory_channel[Any](16)
        klippy.register_remote_method("spoolman_set_active_spool", self._on_remote)

    def _on_remote(self, spool_id: Any = None, **_: Any) -> None:
        if spool_id is not None and (isinstance(spool_id, bool) or not isinstance(spool_id, int)):
            log.warning("spoolman_set_active_spool: spool_id %r is not an integer", spool_id)
            return
        try:
            self._remote_send.send_nowait(spool_id)
        except trio.WouldBlock:
            log.warning("spoolman_set_active_spool: too many calls waiting, %r dropped", spool_id)

    @property
    def spool_id(self) -> int | None:
        return self.usage.spool_id

    def _on_status(self, diff: dict[str, Any], eventtime: float) -> None:
        toolhead = diff.get("toolhead")
        if isinstance(toolhead, dict):
            self.usage.toolhead(toolhead)

    # -- the lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        stored = await self._db.get_item(DB_NAMESPACE, ACTIVE_SPOOL_KEY, default=None)
        self.usage.set_spool(stored if isinstance(stored, int) else None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._remote_calls)
            task_status.started()
            await self._sync()

    async def _remote_calls(self) -> None:
        async for spool_id in self._remote:
            await self.set_active_spool(spool_id)

    async def _sync(self) -> None:
        while True:
            if not self.connected:
                await self._check_health()
            if self.connected:
                await self.report()
            with trio.move_on_after(self.sync_rate):
                await self._poke.wait()
            self._poke = trio.Event()

    async def _call(self, method: str, path: str, body: Any = None) -> HttpResponse:
        return await self._request(method, self.url + path, body, limit=REQUEST_TIMEOUT)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            log.info("spoolman: %s", "connected" if connected else "not reachable")
            self._websockets.broadcast(
                "notify_spoolman_status_changed", [{"spoolman_connected": connected}]
            )

    async def _check_health(self) -> None:
        try:
            response = await self._call("GET", "/v1/health")
        except HttpError as exc:
            log.debug("spoolman: health check failed: %s", exc)
            return
        if response.status != 200:
            return
        self._set_connected(True)
        spool = self.spool_id
        if spool is not None:
            try:
                found = await self._call("GET", f"/v1/spool/{spool}")
            except HttpError:
                return
            if found.status == 404:
                log.info("spoolman: spool %s not found, no active spool", spool)
                self.usage.forget(spool)
                await self.set_active_spool(None)

    async def report(self) -> None:
        """Send the pending use; keep what could not be sent for the next round."""
        for spool, length in self.usage.take().items():
            if not self.connected:
                self.usage.add(spool, length)
                continue
            try:
                response = await self._call("PUT", f"/v1/spool/{spool}/use", {"use_length": length})
            except HttpError as exc:
                log.info("spoolman: use of spool %s not reported: %s", spool, exc)
                self._set_connected(False)
                self.usage.add(spool, length)
                continue
            if response.status == 404:
                self.usage.forget(spool)
                if spool == self.spool_id:
                    log.info("spoolman: spool %s not found, no active spool", spool)
                    await self.set_active_spool(None)
            elif response.status >= 400:
                log.info("spoolman: use of spool %s refused: %s", spool, _message(response))
                self.usage.add(spool, length)

    async def set_active_spool(self, spool_id: int | None) -> None:
        if not self.usage.set_spool(spool_id):
            return
        self.field.update(spool_id)
        await self._db.insert_item(DB_NAMESPACE, ACTIVE_SPOOL_KEY, spool_id)
        self._websockets.broadcast("notify_active_spool_set", [{"spool_id": spool_id}])
        log.info("spoolman: active spool %s", spool_id)

    # -- the API -----------------------------------------------------------------------------

    @endpoint("/server/spoolman/spool_id", "GET", "POST", params=SpoolIdParams)
    async def spool_id_endpoint(self, call: Call[SpoolIdParams]) -> dict[str, Any]:
        if call.verb == "POST":
            await self.set_active_spool(call.params.spool_id)
        return {"spool_id": self.spool_id}

    @endpoint("/server/spoolman/status", "GET")
    async def status(self, call: Call[NoParams]) -> dict[str, Any]:
        return {
            "spoolman_connected": self.connected,
            "pending_reports": self.usage.status(),
            "spool_id": self.spool_id,
        }

    @endpoint("/server/spoolman/proxy", "POST", params=ProxyParams)
    async def proxy(self, call: Call[ProxyParams]) -> Any:
        p = call.params
        if p.request_method is None:
            raise ApiError("missing required argument 'request_method'", 400)
        if p.path is None:
            raise ApiError("missing required argument 'path'", 400)
        try:
            target = proxy_target(p.request_method, p.path, p.query, p.body)
        except SpoolmanError as exc:
            raise ApiError(str(exc), 400) from None
        unavailable = "Spoolman server not available"
        if not self.connected:
            if not p.use_v2_response:
                raise ApiError(unavailable, 503)
            return {"response": None, "error": {"status_code": 503, "message": unavailable}}
        try:
            response = await self._call(p.request_method, target, p.body)
        except HttpError as exc:
            self._set_connected(False)
            self._poke.set()
            if not p.use_v2_response:
                raise ApiError(f"{unavailable}: {exc}", 503) from None
            return {"response": None, "error": {"status_code": 503, "message": unavailable}}
        try:
            answer = json.loads(response.body) if response.body else None
        except ValueError:
            answer = response.body.decode("utf-8", "replace")
        if response.status >= 400:
            if not p.use_v2_response:
                raise ApiError(_message(response), response.status)
            error = {"status_code": response.status, "message": _message(response)}
            return {"response": None, "error": error}
        if not p.use_v2_response:
            return answer
        return {"response": answer, "response_headers": dict(response.headers), "error": None}
