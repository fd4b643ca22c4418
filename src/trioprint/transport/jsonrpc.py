"""JSON-RPC requests answered from the endpoint registry, whichever transport they came on.

The websocket (``transport/websocket.py``) and ``POST /server/jsonrpc`` (``transport/http.py``)
both parse a frame with :func:`trioprint.rpc.parse` and answer it here: one request, or a batch
whose requests run concurrently and whose answers come back as one array, in request order.
A :class:`~trioprint.rpc.Reply` (a client answering a request the server sent it) is handed to
``on_reply``; only a websocket connection has requests of its own waiting for one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .. import rpc
from ..domain.auth import User
from ..errors import ApiError
from ..registry import Connection, Registry, Transport

log = logging.getLogger(__name__)

#: Methods a transport refuses though the registry serves them (Moonraker: no subscriptions
#: over HTTP, where nothing could receive the updates).
_NOT_OVER_HTTP = frozenset({"printer.objects.subscribe"})


@attrs.frozen
class Caller:
    """Who sends the requests: the transport, the peer, the connection and the user."""

    transport: Transport
    remote: str | None = None
    #: A websocket connection: its user is read for each request (a login in a batch counts).
    connection: Connection | None = None
    user: User | None = None
    #: Whether methods declared ``auth=True`` need a user (False: no authenticator).
    require_user: bool = False
    on_reply: Callable[[rpc.Reply], None] | None = None


async def answer_message(registry: Registry, message: rpc.Message, caller: Caller) -> str | None:
    """The encoded answer to one frame (None: nothing is owed, only notifications)."""
    if not message.batch:
        return await answer_entry(registry, message.entries[0], caller)
    replies: list[str | None] = [None] * len(message.entries)

    async def one(i: int, entry: rpc.Entry) -> None:
        replies[i] = await answer_entry(registry, entry, caller)

    async with trio.open_nursery() as batch:
        for i, entry in enumerate(message.entries):
            batch.start_soon(one, i, entry)
    owed = [r for r in replies if r is not None]
    return "[" + ",".join(owed) + "]" if owed else None


async def answer_entry(registry: Registry, entry: rpc.Entry, caller: Caller) -> str | None:
    """Run one request; return its encoded reply (None for a notification or a reply)."""
    if isinstance(entry, rpc.Invalid):
        return None if entry.reply is None else rpc.dumps(entry.reply)
    if isinstance(entry, rpc.Reply):
        if caller.on_reply is not None:
            caller.on_reply(entry)
        else:
            log.debug("JSON-RPC reply %r with no request of ours waiting: ignored", entry.id)
        return None
    req_id = None if entry.is_notification else entry.id
    reply = await _run(registry, entry, req_id, caller)
    if entry.is_notification:
        return None
    try:
        return rpc.dumps(reply)
    except (TypeError, ValueError) as exc:
        log.error("result of %s cannot be encoded as JSON: %s", entry.method, exc)
        return rpc.dumps(rpc.error(req_id, 500, f"Internal error in {entry.method}: {exc}"))


async def _run(
    registry: Registry, entry: rpc.Request, req_id: Any, caller: Caller
) -> dict[str, Any]:
    ep = registry.by_rpc(entry.method)
    if ep is None:
        return rpc.error(req_id, rpc.METHOD_NOT_FOUND, f"Method not found: {entry.method}")
    if not ep.transports & caller.transport:
        name = {Transport.HTTP: "HTTP", Transport.MQTT: "MQTT"}.get(caller.transport, "WEBSOCKET")
        message = f"Method not found for transport {name}: {entry.method}"
        return rpc.error(req_id, rpc.METHOD_NOT_FOUND, message)
    user = caller.connection.user if caller.connection is not None else caller.user
    if ep.auth and caller.require_user and user is None:
        return rpc.error(req_id, rpc.rpc_code_for_status(401), "Unauthorized")
    if caller.transport is Transport.HTTP and entry.method in _NOT_OVER_HTTP:
        message = "Subscriptions not available for HTTP transport"
        return rpc.error(req_id, rpc.METHOD_NOT_FOUND, message)
    try:
        value = await registry.dispatch(
            ep,
            entry.params,
            caller.transport,
            remote=caller.remote,
            connection=caller.connection,
            user=user,
        )
    except ApiError as exc:
        return rpc.error(req_id, rpc.rpc_code_for_status(exc.status), exc.message, exc.data)
    except Exception as exc:
        log.exception("internal error in %s", entry.method)
        return rpc.error(req_id, 500, f"Internal error in {entry.method}: {exc!r}")
    return rpc.result(req_id, value)
