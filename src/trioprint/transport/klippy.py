"""The klippy link: one session on klippy's Unix API socket, as a thin Trio task tree.

::

    KlippySession.run
    ├─ reader: stream -> KlippyConnection (sans-I/O codec) -> responses to their waiters,
    │          notifications to the ``on_notification`` callback (synchronous, never blocks)
    └─ writer: Outbox (bounded; urgent lane first) -> stream

A caller's :meth:`KlippySession.request` queues its frame and waits for the answer; its
cancellation never cuts a frame in half, because only the writer touches the stream. When the
session ends (EOF, a protocol error, a write error) every waiting request fails with
:class:`KlippyDisconnected` at once.

Emergency stop (:meth:`KlippySession.emergency_stop`) never queues behind other requests: its
frame takes the urgent lane, ahead of everything queued. If the writer is in the middle of
sending another frame that klippy is not taking, the stop is also sent on a second connection
of its own to the same socket (klippy serves several clients); whichever answers first wins.
Every other request still waiting then fails with a clear error.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ..domain.klippy import (
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    KlippyConnection,
    LocalProtocolError,
    Notification,
    RemoteProtocolError,
    Response,
)
from ..errors import ApiError
from .outbox import Outbox

log = logging.getLogger(__name__)

#: Requests queued for the writer at most; beyond that a request fails at once with 503.
OUTBOX_CAPACITY = 1024
#: Seconds the emergency stop waits for klippy's answer before saying it could not confirm.
ESTOP_TIMEOUT = 2.0
RECEIVE_SIZE = 65536

Connect = Callable[[], Awaitable[trio.abc.Stream]]


class KlippyDisconnected(ApiError):
    """The link to klippy is down (or went down while the request waited)."""

    def __init__(self, message: str = "Klippy Disconnected") -> None:
        super().__init__(message, 503)


class KlippyRequestError(ApiError):
    """Klippy answered with an error; the message is klippy's own."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message or error, 400)
        self.error = error


async def open_unix(path: str) -> trio.abc.Stream:
    return await trio.open_unix_socket(path)


@attrs.define(eq=False)
class _Waiter:
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: ApiError | None = None

    def resolve(self, result: Any = None, error: ApiError | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()


class KlippySession:
    """One connection to klippy: requests matched to answers, notifications handed on."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        on_notification: Callable[[Notification], None],
        *,
        connect: Connect | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._stream = stream
        self._on_notification = on_notification
        self._connect = connect
        self._max_frame = max_frame
        self._codec = KlippyConnection(max_frame=max_frame)
        self._outbox: Outbox[bytes] = Outbox(OUTBOX_CAPACITY)
        self._waiters: dict[int, _Waiter] = {}
        self._writing = False
        self._closed = False
        self.close_reason = ""
        #: Requests sent on this connection, by klippy method (for tests and statistics).
        self.sent: Counter[str] = Counter()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Requests sent or queued and not answered yet."""
        return len(self._waiters)

    async def run(self) -> None:
        """Read and write until the connection ends; then every waiting request fails."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self._finish(self.close_reason or "Klippy Disconnected")

    def _finish(self, reason: str) -> None:
        self._closed = True
        self._outbox.close()
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.resolve(error=KlippyDisconnected())
        if reason:
            log.info("klippy link closed: %s", reason)

    async def _reader(self) -> None:
        codec = self._codec
        while True:
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.close_reason = f"read failed: {exc}"
                return
            if not data:
                self.close_reason = "klippy closed the connection"
                return
            try:
                codec.receive_data(data)
                while (event := codec.next_event()) is not NEED_DATA:
                    if isinstance(event, Response):
                        self._answer(event)
                    elif isinstance(event, Notification):
                        self._notify(event)
            except (RemoteProtocolError, LocalProtocolError) as exc:
                log.error("klippy link: protocol error, dropping the link: %s", exc)
                self.close_reason = f"protocol error: {exc}"
                return

    def _answer(self, response: Response) -> None:
        waiter = self._waiters.pop(response.id, None)
        if waiter is None:
            return
        if response.ok:
            waiter.resolve(response.result)
        else:
            waiter.resolve(error=KlippyRequestError(response.error or "", response.message or ""))

    def _notify(self, notification: Notification) -> None:
        try:
            self._on_notification(notification)
        except Exception:
            log.exception("klippy notification %s: handler failed", notification.method)

    async def _writer(self, cancel: trio.CancelScope) -> None:
        while (data := await self._outbox.get()) is not None:
            self._writing = True
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.close_reason = f"write failed: {exc}"
                cancel.cancel()
                return
            finally:
                self._writing = False

    def _start(
        self, method: str, params: dict[str, Any] | None, urgent: bool
    ) -> tuple[int, _Waiter]:
        if self._closed:
            raise KlippyDisconnected()
        req_id, data = self._codec.send_request(method, params)
        queued = self._outbox.put_urgent(data) if urgent else self._outbox.put(data)
        if not queued:
            self._codec.forget(req_id)
            raise KlippyDisconnected("Klippy request queue full")
        waiter = _Waiter()
        self._waiters[req_id] = waiter
        self.sent[method] += 1
        return req_id, waiter

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return klippy's result (raises KlippyRequestError/Disconnected).

        Cancelling the caller only stops its wait: the frame is sent whole or not at all.
        """
        return await self._wait(*self._start(method, params, urgent=False))

    async def request_urgent(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Like :meth:`request`, but the frame goes ahead of every queued one."""
        return await self._wait(*self._start(method, params, urgent=True))

    async def _wait(self, req_id: int, waiter: _Waiter) -> Any:
        try:
            await waiter.done.wait()
        finally:
            if not waiter.done.is_set():
                self._waiters.pop(req_id, None)
                if not self._closed:
                    self._codec.forget(req_id)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    async def emergency_stop(self) -> Any:
        """Send ``emergency_stop`` ahead of everything; then fail every other waiting request.

        Returns klippy's answer (``{}``), or raises KlippyDisconnected if no connection could
        carry it within :data:`ESTOP_TIMEOUT`.
        """
        others = dict(self._waiters)
        answer: list[Any] = []
        with trio.move_on_after(ESTOP_TIMEOUT):
            async with trio.open_nursery() as nursery:

                async def on_link() -> None:
                    try:
                        answer.append(await self.request_urgent("emergency_stop"))
                    except ApiError:
                        return  # the link went down: the second connection may still make it
                    nursery.cancel_scope.cancel()

                async def on_side(connect: Connect) -> None:
                    result = await side_emergency_stop(connect, self._max_frame)
                    if result is not None:
                        answer.append(result)
                        nursery.cancel_scope.cancel()

                if not self._closed:
                    nursery.start_soon(on_link)
                if self._connect is not None and (self._closed or self._writing):
                    # The writer is busy with a frame klippy may not be taking: do not wait for
                    # it; a second connection carries the stop as well.
                    nursery.start_soon(on_side, self._connect)
        error = ApiError("Request cancelled: emergency stop", 503)
        for req_id, waiter in others.items():
            if self._waiters.pop(req_id, None) is not None:
                self._codec.forget(req_id)
            waiter.resolve(error=error)
        if not answer:
            raise KlippyDisconnected("Emergency stop could not be confirmed: no answer from klippy")
        return answer[0]


async def side_emergency_stop(connect: Connect, max_frame: int = DEFAULT_MAX_FRAME) -> Any:
    """``emergency_stop`` on a connection of its own; klippy's answer, or None on failure."""
    try:
        stream = await connect()
    except OSError as exc:
        log.warning("emergency stop: second connection failed: %s", exc)
        return None
    async with stream:
        codec = KlippyConnection(max_frame=max_frame)
        req_id, data = codec.send_request("emergency_stop")
        try:
            await stream.send_all(data)
            while True:
                chunk = await stream.receive_some(RECEIVE_SIZE)
                if not chunk:
                    return None
                codec.receive_data(chunk)
                while (event := codec.next_event()) is not NEED_DATA:
                    if isinstance(event, Response) and event.id == req_id:
                        return event.result if event.ok else None
        except (trio.BrokenResourceError, OSError, RemoteProtocolError) as exc:
            log.warning("emergency stop: second connection failed: %s", exc)
            return None


__all__ = [
    "Connect",
    "KlippyDisconnected",
    "KlippyRequestError",
    "KlippySession",
    "open_unix",
    "side_emergency_stop",
]
