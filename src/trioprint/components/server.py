"""The ``server.*`` core methods: info, config, restart, websocket id, connection identify,
log rollover."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .. import logs
from .._version import __version__
from ..domain.webcams import WebcamError, section_values
from ..errors import ApiError
from ..registry import Call, Connection, NoParams, Transport, endpoint

if TYPE_CHECKING:
    from ..app import Instance

#: The Moonraker API level trioprint implements. Mainsail and Fluidd check these.
API_VERSION = (1, 5, 0)
MOONRAKER_VERSION = "v0.11.0"

CLIENT_TYPES = ("web", "mobile", "desktop", "display", "bot", "agent", "other")
#: The logs ``server.logs.rollover`` knows, by Moonraker's names: trioprint's own is
#: "moonraker" (the program in Moonraker's place).
LOG_APPLICATIONS = ("moonraker", "klipper")

log = logging.getLogger(__name__)


@attrs.frozen
class RolloverParams:
    application: str | None = None


@attrs.frozen
class InfoParams:
    raw: bool = False


@attrs.frozen
class IdentifyParams:
    client_name: str
    version: str
    type: str
    url: str
    access_token: str | None = None
    api_key: str | None = None


class ServerCore:
    """Owns the server's own endpoints; reads everything else from the running instance."""

    name = "server"

    def __init__(self, instance: Instance) -> None:
        self._instance = instance

    @endpoint("/server/info", "GET", params=InfoParams)
    async def info(self, call: Call[InfoParams]) -> dict[str, Any]:
        inst = self._instance
        warnings = list(inst.warnings)
        if not call.params.raw:
            warnings = [w.replace("\n", "<br/>") for w in warnings]
        return {
            "klippy_connected": inst.klippy_connected,
            "klippy_state": inst.klippy_state,
            "components": inst.component_names(),
            "failed_components": [],
            "registered_directories": inst.registered_directories(),
            "warnings": warnings,
            "websocket_count": inst.websockets.count,
            "moonraker_version": MOONRAKER_VERSION,
            "trioprint_version": __version__,
            "missing_klippy_requirements": [],
            "api_version": list(API_VERSION),
            "api_version_string": ".".join(map(str, API_VERSION)),
        }

    @endpoint("/server/config", "GET")
    async def config(self, call: Call[NoParams]) -> dict[str, Any]:
        cfg = self._instance.config
        parsed = cfg.parsed()
        for name, options in cfg.sections.items():
            prefix, _, camera = name.partition(" ")
            if prefix == "webcam" and camera and "stream_url" in options:
                with contextlib.suppress(WebcamError):  # a bad section: shown as written
                    parsed[name] = section_values(options)
        return {
            "config": parsed,
            "orig": {name: dict(opts) for name, opts in cfg.sections.items()},
            "files": [{"filename": f, "sections": list(s)} for f, s in cfg.files],
        }

    @endpoint("/server/restart", "POST")
    async def restart(self, call: Call[NoParams]) -> str:
        self._instance.request_restart()
        return "ok"

    @endpoint("/server/logs/rollover", "POST", params=RolloverParams)
    async def logs_rollover(self, call: Call[RolloverParams]) -> dict[str, Any]:
        """Start new log files: trioprint's own (``moonraker``), and Klipper's, which
        trioprint cannot do (it does not run Klipper as a service): always in ``failed``."""
        apps: tuple[str, ...] = LOG_APPLICATIONS
        app = call.params.application
        if app is not None:
            if app not in LOG_APPLICATIONS:
                raise ApiError(
                    f"Unknown application {app!r}: expected one of {', '.join(LOG_APPLICATIONS)}"
                )
            apps = (app,)
        result: dict[str, Any] = {"rolled_over": [], "failed": {}}
        if "moonraker" in apps:
            try:
                await trio.to_thread.run_sync(logs.rollover)
            except (logs.RolloverError, OSError) as exc:
                result["failed"]["moonraker"] = str(exc)
            else:
                result["rolled_over"].append("moonraker")
                log.info("log rolled over (trioprint %s)", __version__)
        if "klipper" in apps:
            result["failed"]["klipper"] = (
                "Klipper's log cannot be rolled over: trioprint does not manage a Klipper service"
            )
        return result

    @endpoint("/server/websocket/id", "GET", transports=Transport.WEBSOCKET)
    async def websocket_id(self, call: Call[NoParams]) -> dict[str, Any]:
        assert call.connection is not None
        return {"websocket_id": call.connection.connection_id}

    @endpoint(
        "/server/connection/identify",
        "POST",
        params=IdentifyParams,
        transports=Transport.WEBSOCKET,
        auth=False,
    )
    async def identify(self, call: Call[IdentifyParams]) -> dict[str, Any]:
        conn = call.connection
        assert conn is not None
        p = call.params
        if p.type not in CLIENT_TYPES:
            raise ApiError(
                f"invalid argument 'type': {p.type!r} is not one of {', '.join(CLIENT_TYPES)}"
            )
        if conn.client_info is not None:
            raise ApiError(f"Connection already identified as {conn.client_info.get('name')}")
        self._authenticate(conn, p)
        if p.type == "agent":
            # refused before identifying: it may try again under another name
            self._instance.extensions.check_agent(p.client_name)
        conn.identify({"name": p.client_name, "version": p.version, "type": p.type, "url": p.url})
        if p.type == "agent":
            live = self._instance.websockets.get(conn.connection_id)
            if live is not None:
                self._instance.extensions.add_agent(live)
        return {"connection_id": conn.connection_id}

    def _authenticate(self, conn: Connection, p: IdentifyParams) -> None:
        """Moonraker's identify: an ``access_token`` or ``api_key`` authenticates the
        connection; a bad one, or none on a connection not yet authenticated, is a 401 (and a
        failed attempt drops what the connection had, a trusted address included)."""
        auth = self._instance.auth
        try:
            if p.access_token is not None:
                conn.user = auth.validate_jwt(p.access_token)
            elif p.api_key is not None:
                conn.user = auth.validate_api_key(p.api_key)
            elif conn.user is None:
                raise ApiError("Unauthorized", 401)
        except ApiError:
            conn.user = None
            raise
