"""Work-arounds for three faults of hypercorn (0.17) as trioprint serves it.

**Websocket protocol errors end without a close frame.** When a client sends a frame wsproto
cannot accept (invalid UTF-8 in a text message, a reserved opcode, a continuation with nothing
to continue), wsproto reports it as a ``CloseConnection`` event carrying the close code RFC 6455
asks for (1007, 1002) but leaves its connection in the ``OPEN`` state, as if nothing had been
said; hypercorn answers a close event with a close frame only in the ``REMOTE_CLOSING`` state,
so it drops the TCP connection without one. :func:`install` makes such an event look like a
close received (``REMOTE_CLOSING``), so hypercorn answers it with a close frame with that code.

**A response to ``Connection: close`` leaves the connection open.** quart-trio cancels its
request's tasks once the response is sent; hypercorn closes the socket from inside that last
``send`` (which the request task makes), and the cancellation interrupts it, so the socket
stays open, with no idle timeout running, until the client goes away. :func:`shield_final_send`
wraps an HTTP ``send`` so that the message ending the response is sent shielded from that
cancellation (and bounded in time).

**A bind that fails leaves its socket open.** ``Config.create_sockets`` raises the ``OSError``
of a port in use without closing the socket it made (nor those it bound before it): they stay
open until the error is collected. :func:`close_failed_sockets` closes them at once (a farm's
instance that cannot listen tries again, and must not keep a descriptor each time).
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import trio
from hypercorn.protocol.ws_stream import WSStream
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event

#: Seconds the end of a response may take to be sent once its request is cancelled.
FINAL_SEND_TIMEOUT = 30.0

_INSTALLED = "__trioprint_close_on_protocol_error__"


def _events_answering_protocol_errors(connection: Connection) -> Generator[Event, None, None]:
    for event in Connection.events(connection):
        if isinstance(event, CloseConnection) and connection.state is ConnectionState.OPEN:
            # no close frame was received (that would have left OPEN): a frame wsproto could
            # not parse; treat it as a close received so hypercorn answers it with its code
            connection._state = ConnectionState.REMOTE_CLOSING
        yield event


def install() -> None:
    """Make hypercorn answer a websocket protocol error with a close frame (idempotent)."""
    original = WSStream._handle_events
    if getattr(original, _INSTALLED, False):
        return

    @functools.wraps(original)
    async def handle_events(self: WSStream) -> None:
        connection = self.connection
        if not getattr(connection, _INSTALLED, False):
            connection.events = functools.partial(  # type: ignore[method-assign]
                _events_answering_protocol_errors, connection
            )
            setattr(connection, _INSTALLED, True)
        await original(self)

    setattr(handle_events, _INSTALLED, True)
    WSStream._handle_events = handle_events  # type: ignore[method-assign]


Send = Callable[[dict[str, Any]], Awaitable[None]]


def shield_final_send(send: Send) -> Send:
    """``send`` with the message that ends an HTTP response shielded from cancellation."""

    async def shielded(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body" and not message.get("more_body", False):
            with trio.move_on_after(FINAL_SEND_TIMEOUT, shield=True):
                await send(message)
        else:
            await send(message)

    return shielded


def close_failed_sockets(error: BaseException) -> None:
    """Close the sockets the frames of ``error``'s traceback made (``create_sockets``'s)."""
    tb = error.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, socket.socket):
                    item.close()
        tb = tb.tb_next
