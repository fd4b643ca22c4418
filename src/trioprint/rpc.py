"""JSON-RPC 2.0 envelopes, parsed and built without I/O.

:func:`parse` turns one websocket text frame into a :class:`Message`: the requests it holds
(one, or a batch), the error answers owed for the malformed parts, and the replies a client
sends to requests the server sent it (:class:`Reply`: an agent answering a call). The
transport runs the requests (concurrently), and builds the answers with :func:`result` and
:func:`error`; a batch is answered with one array of the answers owed, notifications
(requests without ``id``) with nothing.

Error codes follow JSON-RPC (-32700 parse error, -32600 invalid request, -32601 method not found,
-32602 invalid params); a server error keeps its HTTP status as its code, except that 404 becomes
-32601 and 401 becomes -32602, as Moonraker does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from .domain import strictjson

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

#: Compact, standard JSON (``ValueError`` for NaN or Infinity). Non-ASCII characters are
#: escaped, so that a lone surrogate taken from a client's frame (valid JSON, invalid UTF-8) is
#: echoed as valid JSON instead of failing the transport's UTF-8 encoding.
dumps = strictjson.dumps

#: The largest batch answered; a larger one is refused whole (a bound on the work one frame makes).
MAX_BATCH = 1000

_NO_ID = object()


@attrs.frozen
class Request:
    """A well-formed request or notification."""

    method: str
    params: dict[str, Any]
    id: Any = _NO_ID

    @property
    def is_notification(self) -> bool:
        return self.id is _NO_ID


@attrs.frozen
class Invalid:
    """A malformed entry; ``reply`` is the error answer owed for it (None for a notification)."""

    reply: dict[str, Any] | None


@attrs.frozen
class Reply:
    """A client's answer to a request the server sent it (an agent answering
    ``server.extensions.request``): an object with ``result`` or ``error`` and no ``method``."""

    id: Any
    result: Any = None
    error: Any = None

    @property
    def failed(self) -> bool:
        # as Moonraker: an answer without a (non-null) result is an error
        return self.result is None


Entry = Request | Invalid | Reply


@attrs.frozen
class Message:
    """One frame: its entries and whether it was a batch (answered with an array)."""

    entries: tuple[Entry, ...]
    batch: bool


def result(req_id: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": req_id}


def error(req_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "error": err, "id": req_id}


def request(req_id: Any, method: str, params: Any = None) -> dict[str, Any]:
    """A request the server sends a client (params left out when empty, as Moonraker)."""
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        msg["params"] = params
    if req_id is not None:
        msg["id"] = req_id
    return msg


def notification(method: str, params: Sequence[Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = list(params)
    return msg


def rpc_code_for_status(status: int) -> int:
    """The JSON-RPC error code for an HTTP status, as Moonraker maps them."""
    if status == 404:
        return METHOD_NOT_FOUND
    if status == 401:
        return INVALID_PARAMS
    return status


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _entry(obj: Any) -> Entry:
    if not isinstance(obj, dict):
        return Invalid(error(None, INVALID_REQUEST, "Invalid Request: not a JSON object"))
    has_id = "id" in obj
    req_id = obj.get("id")
    if has_id and not _valid_id(req_id):
        return Invalid(
            error(None, INVALID_REQUEST, "Invalid Request: id must be a string, number or null")
        )
    reply_id = req_id if has_id else None
    # An object that is not a valid request is answered even without an id (with id null), as
    # JSON-RPC 2.0 requires; only a valid notification is owed nothing.
    if obj.get("jsonrpc") != "2.0":
        return Invalid(error(reply_id, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"'))
    if "method" not in obj and ("result" in obj or "error" in obj) and has_id:
        return Reply(req_id, obj.get("result"), obj.get("error"))
    method = obj.get("method")
    if not isinstance(method, str):
        return Invalid(
            error(reply_id, INVALID_REQUEST, 'Invalid Request: "method" must be a string')
        )
    params = obj.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        message = 'Invalid params: "params" must be an object'
        return Invalid(error(reply_id, INVALID_PARAMS, message) if has_id else None)
    return Request(method, params, req_id if has_id else _NO_ID)


def parse(data: str | bytes) -> Message:
    """Parse one frame. Never raises: every problem becomes an error entry."""
    try:
        obj = strictjson.loads(data)
    except strictjson.NonStandardJSON as exc:  # NaN, Infinity, 1e400: named
        return Message((Invalid(error(None, PARSE_ERROR, f"Parse error: {exc}")),), batch=False)
    except (ValueError, RecursionError):
        return Message((Invalid(error(None, PARSE_ERROR, "Parse error")),), batch=False)
    if isinstance(obj, list):
        if not obj:
            return Message(
                (Invalid(error(None, INVALID_REQUEST, "Invalid Request: empty batch")),),
                batch=False,
            )
        if len(obj) > MAX_BATCH:
            return Message(
                (
                    Invalid(
                        error(
                            None,
                            INVALID_REQUEST,
                            f"Invalid Request: batch of {len(obj)} exceeds {MAX_BATCH}",
                        )
                    ),
                ),
                batch=False,
            )
        return Message(tuple(_entry(o) for o in obj), batch=True)
    return Message((_entry(obj),), batch=False)
