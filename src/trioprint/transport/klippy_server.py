"""The server side of klippy's socket API: what a local printer serves trioprint's klippy link on.

::

    KlippyApiServer (a base class; SimKlippy and MarlinPrinter serve their printers through it)
    ├─ listen():     the Unix socket (a stale one from a previous run unlinked, never a live one)
    ├─ accept(...):  one task per client connection
    │  └─ client nursery: reader (server codec -> one task per request), writer (outbox)
    ├─ push_status(query, eventtime): each subscribed client's changed fields
    ├─ broadcast_output(line): ``gcode/subscribe_output`` subscribers
    └─ call_remote_method(name, ...): clients that registered it

A subclass answers requests in ``handle(client, method, params)``; ``answer_common`` answers the
endpoints every printer serves the same way (objects/query and subscribe, subscribe_output,
register_remote_method, list_endpoints). An exception in ``request_errors`` becomes klippy's
error answer with its message; any other is logged and answered as an internal error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import trio

from ..domain.klippy import NEED_DATA, KlippyServerConnection, RemoteProtocolError, Request
from ..errors import StartupError
from .outbox import Outbox

log = logging.getLogger(__name__)

#: The endpoints every printer served here answers (klippy's own, as Moonraker uses them);
#: a printer adds its own (the simulator: motion_report and query_endstops).
CORE_ENDPOINTS = (
    "list_endpoints",
    "info",
    "emergency_stop",
    "register_remote_method",
    "gcode/help",
    "gcode/script",
    "gcode/restart",
    "gcode/firmware_restart",
    "gcode/subscribe_output",
    "objects/list",
    "objects/query",
    "objects/subscribe",
    "pause_resume/cancel",
    "pause_resume/pause",
    "pause_resume/resume",
)

CLIENT_QUEUE = 4096

Query = Callable[[Mapping[str, list[str] | None]], dict[str, dict[str, Any]]]


class Refused(Exception):
    """A request klippy's webhooks would refuse; the message is klippy's."""


class Client:
    def __init__(self, number: int, stream: trio.abc.Stream) -> None:
        self.number = number
        self.stream = stream
        self.outbox: Outbox[bytes] = Outbox(CLIENT_QUEUE)
        self.subscription: dict[str, list[str] | None] | None = None
        self.status_template: dict[str, Any] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.output_template: dict[str, Any] | None = None
        self.remote_methods: dict[str, dict[str, Any]] = {}
        self.scope = trio.CancelScope()

    def send(self, data: bytes) -> None:
        if not self.outbox.put(data):
            log.warning("local printer: client %d does not read; dropping it", self.number)
            self.scope.cancel()

    def send_templated(self, template: dict[str, Any], params: Any) -> None:
        message = dict(template)
        message["params"] = params
        self.send(KlippyServerConnection.notify(message.pop("method", ""), params))


class KlippyApiServer:
    """klippy's socket API on ``socket_path``; subclasses answer the requests."""

    #: What is served, in error messages ("simulated printer", "serial printer").
    what: ClassVar[str] = "local printer"
    #: Exceptions answered as klippy errors (their message), besides :class:`Refused`.
    request_errors: ClassVar[tuple[type[Exception], ...]] = ()

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._clients: dict[int, Client] = {}
        self._numbers = 0
        self._socket_id: tuple[int, int] | None = None

    # -- the socket ------------------------------------------------------------------------

    def listen(self) -> trio.SocketListener:
        try:
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_socket()
        except OSError as exc:
            raise StartupError(
                f"cannot serve the {self.what} at {self.socket_path}: {exc.strerror or exc}"
            ) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(self.socket_path))
            self._socket_id = _file_id(self.socket_path)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise StartupError(
                f"cannot serve the {self.what} at {self.socket_path}: {exc.strerror or exc}"
            ) from None
        return trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    def _remove_stale_socket(self) -> None:
        """Unlink a socket left by a previous run; never one another process is serving."""
        if not os.path.lexists(self.socket_path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)  # a local connect answers at once, unless the backlog is full
        try:
            probe.connect(os.fspath(self.socket_path))
        except ConnectionRefusedError:  # nobody listens: stale
            self.socket_path.unlink(missing_ok=True)
            return
        except FileNotFoundError:
            return
        except TimeoutError:
            pass  # someone listens but is busy: in use all the same
        finally:
            probe.close()
        raise StartupError(
            f"cannot serve the {self.what} at {self.socket_path}: another process "
            "serves it (another trioprint on this data folder?)"
        )

    def remove_socket(self) -> None:
        """Unlink the socket when stopping, if the path still is the one this server bound."""
        if self._socket_id is not None and _file_id(self.socket_path) == self._socket_id:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
        self._socket_id = None

    async def accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Serve every client that connects, until cancelled; then unlink the socket."""
        try:
            while True:
                stream = await listener.accept()
                self._numbers += 1
                nursery.start_soon(self._serve_client, Client(self._numbers, stream))
        finally:
            self.remove_socket()

    # -- pushes ----------------------------------------------------------------------------

    def push_status(self, query: Query, eventtime: float) -> None:
        for client in list(self._clients.values()):
            if client.subscription is None:
                continue
            status = query(client.subscription)
            diff: dict[str, dict[str, Any]] = {}
            for name, fields in status.items():
                old = client.last.get(name, {})
                changed = {k: v for k, v in fields.items() if k not in old or old[k] != v}
                if changed:
                    diff[name] = changed
            client.last = status
            if diff:
                client.send_templated(
                    client.status_template, {"eventtime": eventtime, "status": diff}
                )

    def broadcast_output(self, line: str) -> None:
        for client in list(self._clients.values()):
            if client.output_template is not None:
                client.send_templated(client.output_template, {"response": line})

    def call_remote_method(self, name: str, **kwargs: Any) -> int:
        """What a macro's ``action_call_remote_method(name, ...)`` does in klippy: every client
        that registered ``name`` is sent it; returns how many were (klippy errors on none)."""
        reached = 0
        for client in list(self._clients.values()):
            template = client.remote_methods.get(name)
            if template is not None:
                client.send_templated(template, kwargs)
                reached += 1
        return reached

    def drop_clients(self) -> None:
        for client in list(self._clients.values()):
            client.outbox.close()  # what is queued (the answer) goes out, then EOF

    # -- one client ------------------------------------------------------------------------

    async def _serve_client(self, client: Client) -> None:
        self._clients[client.number] = client
        codec = KlippyServerConnection()
        try:
            with client.scope:
                async with client.stream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, client)
                    while True:
                        data = await client.stream.receive_some(65536)
                        if not data:
                            break
                        codec.receive_data(data)
                        while (request := codec.next_event()) is not NEED_DATA:
                            assert isinstance(request, Request)
                            nursery.start_soon(self._answer, client, request)
                    nursery.cancel_scope.cancel()
        # the reader and the writer share a nursery: their errors arrive as a group
        except* RemoteProtocolError as group:
            log.warning("%s: client %d: %s", self.what, client.number, group.exceptions[0])
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away (a reset included): only that client is done
        finally:
            self._clients.pop(client.number, None)

    async def _writer(self, client: Client) -> None:
        while (data := await client.outbox.get()) is not None:
            await client.stream.send_all(data)
        client.scope.cancel()  # closed after a restart: what was queued is out, now EOF

    async def _answer(self, client: Client, request: Request) -> None:
        params = request.params if isinstance(request.params, dict) else None
        errors: tuple[type[Exception], ...] = (Refused, *self.request_errors)
        try:
            if params is None:
                raise Refused("Invalid Argument Type [params]")
            result = await self.handle(client, request.method, params)
        except errors as exc:
            if request.id is not None:
                client.send(KlippyServerConnection.error(request.id, str(exc)))
            return
        except Exception as exc:  # a bug in the model must not take the printer down
            log.exception("%s: %s failed", self.what, request.method)
            if request.id is not None:
                client.send(KlippyServerConnection.error(request.id, f"Internal error: {exc!r}"))
            return
        if request.id is not None:
            client.send(KlippyServerConnection.respond(request.id, result))
        if self.drops_clients_after(request.method):
            self.drop_clients()

    # -- for subclasses --------------------------------------------------------------------

    async def handle(self, client: Client, method: str, params: dict[str, Any]) -> Any:
        raise Refused(f"webhooks: No registered callback for path '{method}'")

    def drops_clients_after(self, method: str) -> bool:
        """Whether the answer to ``method`` is followed by dropping every client (a restart)."""
        return False

    @staticmethod
    def script_argument(params: dict[str, Any]) -> str:
        """``gcode/script``'s ``script``, refused as klippy refuses it when not text."""
        script = params.get("script")
        if not isinstance(script, str):
            raise Refused("Invalid Argument Type [script]")
        return script

    def answer_common(
        self,
        client: Client,
        method: str,
        params: dict[str, Any],
        *,
        query: Query,
        eventtime: float,
        endpoints: list[str],
    ) -> tuple[bool, Any]:
        """``(True, result)`` for the endpoints every printer answers alike, else ``(False,
        None)``."""
        if method == "list_endpoints":
            return True, {"endpoints": list(endpoints)}
        if method in ("objects/query", "objects/subscribe"):
            objects = params.get("objects")
            if not isinstance(objects, dict) or not all(
                v is None or isinstance(v, list) for v in objects.values()
            ):
                raise Refused("Invalid Argument Type [objects]")
            status = query(objects)
            if method == "objects/subscribe":
                client.subscription = dict(objects)
                template = params.get("response_template")
                client.status_template = dict(template) if isinstance(template, dict) else {}
                client.last = status
            return True, {"eventtime": eventtime, "status": status}
        if method == "gcode/subscribe_output":
            template = params.get("response_template")
            client.output_template = dict(template) if isinstance(template, dict) else {}
            return True, {}
        if method == "register_remote_method":
            name = params.get("remote_method")
            template = params.get("response_template")
            if not isinstance(name, str) or not isinstance(template, dict):
                raise Refused("Invalid Argument Type [remote_method]")
            client.remote_methods[name] = template
            return True, {}
        return False, None


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
