"""The Klippy API socket protocol, without I/O.

Klippy (Klipper's host process) speaks JSON objects over a Unix socket, each followed by the
byte 0x03. A client sends requests ``{"id": N, "method": "objects/query", "params": {...}}``;
klippy answers ``{"id": N, "result": {...}}`` or ``{"id": N, "error": {"error": ...,
"message": ...}}``, and pushes messages built from a ``response_template`` the client gave
(``{"method": "process_status_update", "params": {...}}``).

:class:`KlippyConnection` is the whole client side of that protocol as a plain object, in the
manner of h11 and wsproto: feed it received bytes with :meth:`~KlippyConnection.receive_data`,
take events with :meth:`~KlippyConnection.next_event`, and turn requests into bytes with
:meth:`~KlippyConnection.send_request`. It never does I/O, never blocks and keeps its buffer
bounded: a frame larger than ``max_frame`` or one that is not a JSON object is a
:class:`RemoteProtocolError`, after which the connection is unusable (the transport drops the
link and reconnects).
"""

from __future__ import annotations

from typing import Any, NoReturn

import attrs

from . import strictjson

ETX = b"\x03"

#: Klippy's largest messages (a configfile query with a big printer.cfg, a full gcode/help) are
#: a few hundred KiB; anything beyond this is not klippy talking.
DEFAULT_MAX_FRAME = 4 * 1024 * 1024


class RemoteProtocolError(Exception):
    """Klippy (or whatever is on the socket) sent something that is not the protocol."""


class LocalProtocolError(Exception):
    """This side misused the connection (e.g. used it after a protocol error)."""


@attrs.frozen
class Response:
    """The answer to request ``id``: ``result`` on success, else ``error`` and ``message``."""

    id: int
    result: Any = None
    error: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.frozen
class Notification:
    """A message klippy pushed, named by the ``response_template`` that asked for it."""

    method: str
    params: Any


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`KlippyConnection.next_event` when more bytes are needed.
NEED_DATA = _NeedData()

Event = Response | Notification


def encode(message: dict[str, Any]) -> bytes:
    """One frame: compact JSON and the 0x03 terminator."""
    return strictjson.dumps(message).encode() + ETX


class KlippyConnection:
    """The client side of one connection to klippy's API socket."""

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME, first_id: int = 1) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._max_frame = max_frame
        self._next_id = first_id
        self._pending: set[int] = set()
        self._error: RemoteProtocolError | None = None

    @property
    def pending(self) -> frozenset[int]:
        """Ids of requests sent and not answered yet."""
        return frozenset(self._pending)

    def send_request(self, method: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """A new request: its id (to match the :class:`Response`) and the bytes to send."""
        self._check_usable()
        req_id = self._next_id
        self._next_id += 1
        self._pending.add(req_id)
        return req_id, encode({"id": req_id, "method": method, "params": params or {}})

    def forget(self, req_id: int) -> None:
        """Stop waiting for ``req_id`` (its caller gave up); a late answer is then dropped."""
        self._pending.discard(req_id)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add received bytes. ``b""`` is not end of stream here: the transport handles EOF."""
        self._check_usable()
        self._buffer += data

    def next_event(self) -> Event | _NeedData:
        """The next complete message, or :data:`NEED_DATA`. Raises RemoteProtocolError."""
        self._check_usable()
        while True:
            end = self._buffer.find(ETX, self._scan_from)
            if end < 0:
                self._scan_from = len(self._buffer)
                if len(self._buffer) > self._max_frame:
                    self._fail(f"frame larger than {self._max_frame} bytes without a terminator")
                return NEED_DATA
            frame = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scan_from = 0
            if len(frame) > self._max_frame:
                self._fail(f"frame of {len(frame)} bytes exceeds {self._max_frame}")
            event = self._parse(frame)
            if event is not None:
                return event

    def _parse(self, frame: bytes) -> Event | None:
        if not frame.strip():
            return None  # klippy never sends empty frames; tolerate stray terminators
        try:
            # klippy writes NaN and Infinity (Python's json): they arrive as null
            message = strictjson.loads_lenient(frame)
        except (ValueError, RecursionError) as exc:
            self._fail(f"frame is not JSON: {exc}")
        if not isinstance(message, dict):
            self._fail(f"frame is not a JSON object: {frame[:80]!r}")
        if "id" in message and ("result" in message or "error" in message):
            req_id = message["id"]
            if not isinstance(req_id, int) or isinstance(req_id, bool):
                self._fail(f"response id is not an integer: {req_id!r}")
            if req_id not in self._pending:
                return None  # an answer nobody waits for any more (forgotten, or a duplicate)
            self._pending.discard(req_id)
            if "error" in message:
                err = message["error"]
                if isinstance(err, dict):
                    return Response(
                        req_id,
                        error=str(err.get("error", "Error")),
                        message=str(err.get("message", "")),
                    )
                return Response(req_id, error="Error", message=str(err))
            return Response(req_id, result=message["result"])
        method = message.get("method")
        if isinstance(method, str):
            return Notification(method, message.get("params"))
        if set(message) == {"params"}:
            # a push made from an empty response template (a dump endpoint such as
            # motion_report/dump_trapq called without one): a notification without a name
            return Notification("", message["params"])
        self._fail(f"message is neither a response nor a notification: {frame[:80]!r}")

    def _fail(self, reason: str) -> NoReturn:
        self._error = RemoteProtocolError(reason)
        self._buffer.clear()
        raise self._error

    def _check_usable(self) -> None:
        if self._error is not None:
            raise LocalProtocolError(f"connection unusable after a protocol error: {self._error}")


# --- the server side (the simulated printer serves the same protocol) ------------------------


@attrs.frozen
class Request:
    """A client's request. ``id`` is None when the client wants no answer (klippy then runs
    the request and sends nothing back)."""

    id: Any
    method: str
    params: dict[str, Any]


class KlippyServerConnection:
    """The server side of one connection to an API socket, as klippy serves it.

    Feed received bytes with :meth:`receive_data`, take :class:`Request` events with
    :meth:`next_event`; :meth:`respond`, :meth:`error` and :meth:`notify` give the bytes to send.
    Framing errors are :class:`RemoteProtocolError` (the server drops that client).
    """

    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._max_frame = max_frame

    def receive_data(self, data: bytes | bytearray) -> None:
        self._buffer += data

    def next_event(self) -> Request | _NeedData:
        while True:
            end = self._buffer.find(ETX, self._scan_from)
            if end < 0:
                self._scan_from = len(self._buffer)
                if len(self._buffer) > self._max_frame:
                    raise RemoteProtocolError(f"request larger than {self._max_frame} bytes")
                return NEED_DATA
            frame = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scan_from = 0
            if not frame.strip():
                continue
            try:
                message = strictjson.loads_lenient(frame)
            except (ValueError, RecursionError) as exc:
                raise RemoteProtocolError(f"request is not JSON: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("method"), str):
                raise RemoteProtocolError(f"not a request: {frame[:80]!r}")
            params = message.get("params", {})
            return Request(message.get("id"), message["method"], params)

    @staticmethod
    def respond(req_id: Any, result: Any) -> bytes:
        return encode({"id": req_id, "result": result})

    @staticmethod
    def error(req_id: Any, message: str, error: str = "WebRequestError") -> bytes:
        return encode({"id": req_id, "error": {"error": error, "message": message}})

    @staticmethod
    def notify(method: str, params: Any) -> bytes:
        return encode({"method": method, "params": params})
