"""``server.notifiers.list`` and ``[notifier NAME]`` delivery (Moonraker 0.11's ``notifier``).

The sections, the job events and the templates are pure (:mod:`trioprint.domain.notifiers`).
This component follows klippy's ``print_stats`` (an internal status subscription), turns its
state changes into job events, and sends each event every notifier that hears it through
apprise (https://github.com/caronc/apprise, a maintained library that speaks to about a hundred
notification services through one URL scheme each, which is what Moonraker uses too).

Delivery never holds the print up: the status callback only queues the event; a background task
renders each notification and hands it to apprise (synchronous) in a worker thread, bounded by
:data:`SEND_TIMEOUT` seconds (past it the thread is abandoned: its own socket timeouts end it)
and by :data:`MAX_THREADS` threads at once. A notifier that fails (a template error, apprise
refusing or failing, the timeout) is logged; nothing is retried.
"""

from __future__ import annotations

import functools
import logging
import os
import types
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from ..domain.notifiers import JobEvents, Message, Notifier, NotifierError, is_remote
from ..registry import Call, NoParams, endpoint
from .protocols import StatusSource

log = logging.getLogger(__name__)

#: Seconds one notification may take before it is given up.
SEND_TIMEOUT = 30.0
#: Notifications waiting to be sent; past this, new ones are dropped (and logged).
QUEUE_SIZE = 100
#: Worker threads sending at once.
MAX_THREADS = 4

#: Sends one message (in a worker thread); False or an exception: it failed.
Sender = Callable[[Message], bool]


@functools.cache
def _apprise() -> types.ModuleType:
    """apprise, imported on first use (it takes about a second) with its plugins loaded;
    one of them imports the standard library's deprecated ``imghdr``: that warning is apprise's
    to fix, not the user's, so it is not shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        apprise.Apprise().add("json://localhost/")  # loads every plugin now
    return apprise


def url_accepted(url: str) -> bool:
    """Whether apprise knows the URL's service."""
    return bool(_apprise().Apprise().add(url))


def apprise_send(message: Message) -> bool:
    """Send ``message`` with apprise (blocking: run it in a thread)."""
    apprise = _apprise()
    sender = apprise.Apprise()
    if not sender.add(message.url):
        raise NotifierError("apprise does not accept the url")
    attach = None
    files = []
    for item in message.attach:
        if is_remote(item):
            files.append(item)
            continue
        path = Path(item).expanduser().resolve()
        if path.is_file() and os.access(path, os.R_OK):
            files.append(str(path))
        else:
            log.warning("notifier: attachment %s is not a readable file, left out", path)
    if files:
        attach = apprise.AppriseAttachment(files)
    return bool(
        sender.notify(
            body=message.body,
            title=message.title,
            body_format=apprise.NotifyFormat(message.body_format),
            attach=attach,
        )
    )


class Notifiers:
    """Moonraker's ``notifier`` component."""

    name = "notifier"

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, str]],
        klippy: StatusSource,
        *,
        send: Sender = apprise_send,
        check_url: Callable[[str], bool] = url_accepted,
        timeout: float = SEND_TIMEOUT,
        warnings: list[str] | None = None,
    ) -> None:
        self._send = send
        self._timeout = timeout
        self._warnings = warnings if warnings is not None else []
        self.notifiers: dict[str, Notifier] = {}
        for name, options in sections.items():
            try:
                notifier = Notifier(name, options)
            except NotifierError as exc:
                self._warnings.append(f"Failed to load notifier [notifier {name}]: {exc}")
                continue
            if not check_url(notifier.url):
                self._warnings.append(
                    f"Failed to load notifier [notifier {name}]: apprise does not know the url"
                    f" {options.get('url')!r}"
                )
                continue
            self._warnings.extend(notifier.warnings)
            self.notifiers[name] = notifier
        self.job_events = JobEvents()
        self._queue_send, self._queue = trio.open_memory_channel[tuple[Notifier, str, list[Any]]](
            QUEUE_SIZE
        )
        self._limiter = trio.CapacityLimiter(MAX_THREADS)
        #: (notifier, event, succeeded) of the recent deliveries, and how many there were.
        self.delivered: deque[tuple[str, str, bool]] = deque(maxlen=100)
        self.delivery_count = 0
        self._delivery = trio.Event()
        klippy.set_internal_subscription("notifier", {"print_stats": None}, self._on_status)

    def _on_status(self, diff: dict[str, Any], eventtime: float) -> None:
        stats = diff.get("print_stats")
        if not isinstance(stats, dict):
            return
        for event, prev, new in self.job_events.feed(stats):
            self.notify(event, [prev, new])

    def notify(self, event: str, args: list[Any]) -> None:
        """Queue ``event`` for every notifier that hears it (never blocks)."""
        for notifier in self.notifiers.values():
            if not notifier.hears(event):
                continue
            try:
                self._queue_send.send_nowait((notifier, event, args))
            except trio.WouldBlock:
                log.warning(
                    "notifier %s: too many notifications waiting, %s dropped", notifier.name, event
                )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for notifier, event, args in self._queue:
                nursery.start_soon(self._deliver, notifier, event, args)

    async def _deliver(self, notifier: Notifier, event: str, args: list[Any]) -> None:
        ok = False
        try:
            message = notifier.message(event, args)
            with trio.move_on_after(self._timeout) as scope:
                ok = await trio.to_thread.run_sync(
                    self._send, message, abandon_on_cancel=True, limiter=self._limiter
                )
            if scope.cancelled_caught:
                log.warning(
                    "notifier %s: %s not sent within %g s", notifier.name, event, self._timeout
                )
            elif not ok:
                log.warning("notifier %s: %s could not be sent", notifier.name, event)
        except NotifierError as exc:
            log.warning("notifier %s: %s", notifier.name, exc)
        except Exception:  # apprise's own failure: logged, never the print's
            log.exception("notifier %s: %s failed", notifier.name, event)
        self.delivered.append((notifier.name, event, ok))
        self.delivery_count += 1
        self._delivery.set()
        self._delivery = trio.Event()

    async def wait_deliveries(self, count: int) -> None:
        """Wait until ``count`` deliveries have ended (for tests)."""
        while self.delivery_count < count:
            await self._delivery.wait()

    @endpoint("/server/notifiers/list", "GET")
    async def list_notifiers(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"notifiers": [n.as_dict() for n in self.notifiers.values()]}
