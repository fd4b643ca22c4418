"""Agents: websocket clients that extend the server (Moonraker's ``extensions``).

A connection identified with ``server.connection.identify`` as type ``agent`` is an agent,
known by its client name (one connection per name). An agent may

- register a remote method (``connection.register_remote_method``): klippy may then call it
  (a macro's ``action_call_remote_method``), and the agent receives it as a JSON-RPC
  notification of that method with klippy's arguments as its params;
- send events (``connection.send_event``): every other client receives
  ``notify_agent_event`` ``[{"agent", "event", "data"?}]``, as it does when an agent connects
  (``connected``, with its client data) and disconnects (``disconnected``);
- be called by any client (``server.extensions.request``): the request is sent to the agent
  and its reply is the answer (an error reply is a 424 carrying the agent's error as data).

``server.extensions.list`` lists the connected agents. Moonraker's Unix socket for agents is
not served: agents connect over the websocket.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ApiError
from ..registry import Call, NoParams, Transport, endpoint

if TYPE_CHECKING:
    from ..transport.websocket import WebsocketConnection, WebsocketManager
    from .klippy import Klippy

log = logging.getLogger(__name__)

#: Events an agent may not send: the server sends them when it connects and disconnects.
RESERVED_EVENTS = ("connected", "disconnected")


@attrs.frozen
class RegisterMethodParams:
    method_name: str


@attrs.frozen
class SendEventParams:
    event: str
    data: Any = None


@attrs.frozen
class AgentRequestParams:
    agent: str
    method: str
    arguments: Any = None


class Extensions:
    """The connected agents, their klippy remote methods and their events."""

    name = "extensions"

    def __init__(self, websockets: WebsocketManager, klippy: Klippy) -> None:
        self._websockets = websockets
        self._klippy = klippy
        #: agent name -> its connection id
        self._agents: dict[str, int] = {}
        #: connection id -> the remote methods it registered
        self._methods: dict[int, list[str]] = {}
        websockets.add_close_listener(self._connection_closed)

    # -- agents come and go ----------------------------------------------------------------

    def check_agent(self, name: str) -> None:
        """Before a connection identifies as agent ``name``: refused if one is connected."""
        if name in self._agents:
            raise ApiError(f"Agent '{name}' already registered and connected")

    def add_agent(self, conn: WebsocketConnection) -> None:
        """``conn`` has identified as an agent: everyone else hears it connected."""
        info = dict(conn.client_info or {})
        name = str(info.get("name", ""))
        self.check_agent(name)
        self._agents[name] = conn.connection_id
        log.info("agent %s connected (websocket %d)", name, conn.connection_id)
        self._event(conn.connection_id, {"agent": name, "event": "connected", "data": info})

    def _connection_closed(self, conn: WebsocketConnection) -> None:
        name = str((conn.client_info or {}).get("name", ""))
        if self._agents.get(name) != conn.connection_id:
            return
        for method in self._methods.pop(conn.connection_id, []):
            self._klippy.unregister_remote_method(method)
        del self._agents[name]
        log.info("agent %s disconnected", name)
        self._event(conn.connection_id, {"agent": name, "event": "disconnected"})

    def _event(self, sender: int, event: dict[str, Any]) -> None:
        self._websockets.broadcast("notify_agent_event", [event], exclude=sender)

    def _agent_connection(self, call: Call[Any], what: str) -> WebsocketConnection:
        cid = call.connection.connection_id if call.connection is not None else None
        conn = self._websockets.get(cid) if cid is not None else None
        if conn is None:
            raise ApiError("No connection detected")
        if (conn.client_info or {}).get("type") != "agent":
            raise ApiError(f"Only connections of the 'agent' type can {what}")
        return conn

    # -- the endpoints ---------------------------------------------------------------------

    @endpoint(
        "/connection/register_remote_method",
        "POST",
        params=RegisterMethodParams,
        transports=Transport.WEBSOCKET,
    )
    async def register_remote_method(self, call: Call[RegisterMethodParams]) -> str:
        conn = self._agent_connection(call, "register methods")
        name = call.params.method_name
        if not name:
            raise ApiError("invalid argument 'method_name': empty")

        def forward(**kwargs: Any) -> None:
            conn.call_method(name, kwargs)

        await self._klippy.register_agent_method(name, forward)
        self._methods.setdefault(conn.connection_id, []).append(name)
        return "ok"

    @endpoint(
        "/connection/send_event", "POST", params=SendEventParams, transports=Transport.WEBSOCKET
    )
    async def send_event(self, call: Call[SendEventParams]) -> str:
        conn = self._agent_connection(call, "send events")
        name = str((conn.client_info or {}).get("name", ""))
        if call.params.event in RESERVED_EVENTS:
            raise ApiError(f"Event '{call.params.event}' is reserved")
        event: dict[str, Any] = {"agent": name, "event": call.params.event}
        if call.params.data is not None:
            event["data"] = call.params.data
        self._event(conn.connection_id, event)
        return "ok"

    @endpoint("/server/extensions/list", "GET")
    async def list_agents(self, call: Call[NoParams]) -> dict[str, Any]:
        agents = []
        for cid in self._agents.values():
            conn = self._websockets.get(cid)
            if conn is not None:
                agents.append(dict(conn.client_info or {}))
        return {"agents": agents}

    @endpoint("/server/extensions/request", "POST", params=AgentRequestParams)
    async def request(self, call: Call[AgentRequestParams]) -> Any:
        p = call.params
        if p.arguments is not None and not isinstance(p.arguments, list | dict):
            raise ApiError("invalid argument 'arguments': expected an object or a list")
        cid = self._agents.get(p.agent)
        conn = self._websockets.get(cid) if cid is not None else None
        if conn is None:
            raise ApiError(f"Agent {p.agent} not connected")
        return await conn.call_method_with_response(p.method, p.arguments)
