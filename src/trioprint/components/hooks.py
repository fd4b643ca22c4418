"""Event hooks: run the ``[event_hook NAME]`` commands when OctoPrint events are published.

::

    EventHooks.run
    ├─ dispatcher: OctoPrint events from the bus (bounded channel); for each hook of the event
    │  the placeholders are expanded at once (Z, progress and file from klippy's status cache)
    ├─ one task per system hook run (at most MAX_PENDING at once): its commands in order,
    │  each an argv run as a subprocess, output captured (capped) and logged, a timeout that
    │  kills the command's whole process group
    └─ G-code sender: G-code hooks' lines through the printer link, in event order

The parsing and expansion are pure (:mod:`trioprint.domain.hooks`). A hook that fails, hangs
or floods never reaches the event loop or the other components: its task catches everything,
times out and is killed; when too many runs are waiting, further ones are dropped and logged.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import os
import shlex
import signal
import subprocess
from typing import TYPE_CHECKING

import attrs
import trio

from ..bus import Bus, OctoPrintEvent
from ..domain.hooks import (
    STATUS_SPEC,
    ExpansionError,
    Hook,
    expand_gcode,
    expand_system,
    job_state,
    parse_hooks,
    placeholders,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config
    from .klippy import Klippy

log = logging.getLogger(__name__)

#: Bytes of a command's output kept (and logged); the rest is read and discarded.
OUTPUT_LIMIT = 64 * 1024
#: System hook runs at once (each runs its commands one after the other); more are dropped
#: and logged, so an event flood cannot start unbounded processes.
MAX_PENDING = 64
#: Seconds to read what a finished command left in its pipe (a daemon it started may hold it).
DRAIN_TIMEOUT = 1.0


@attrs.frozen
class CommandResult:
    """How one command ended: ``returncode`` is None if it could not start."""

    argv: tuple[str, ...]
    returncode: int | None
    output: str
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@attrs.frozen
class HookRun:
    """One hook run for one event (what :attr:`EventHooks.completed` keeps)."""

    hook: str
    event: str
    results: tuple[CommandResult, ...] = ()
    gcode: tuple[str, ...] = ()
    error: str | None = None


def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _read_capped(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError, OSError):
        while chunk := await stream.receive_some(65536):
            if len(into) < OUTPUT_LIMIT:
                into += chunk[: OUTPUT_LIMIT - len(into)]


async def run_command(argv: list[str], time_limit: float) -> CommandResult:
    """Run ``argv`` (no shell), stdout and stderr captured together, killed after ``time_limit`` s.

    The command gets its own session (process group): the time limit, and a cancellation, kill
    the group, so what a shell line started dies with it.
    """
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(tuple(argv), None, "", error=exc.strerror or str(exc))
    output = bytearray()
    timed_out = False
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            nursery.start_soon(_read_capped, process.stdout, output)
            with trio.move_on_after(time_limit) as scope:
                await process.wait()
            if scope.cancelled_caught:
                timed_out = True
                _kill_group(process)
                await process.wait()
            nursery.cancel_scope.deadline = trio.current_time() + DRAIN_TIMEOUT
    finally:
        if process.returncode is None:  # cancelled from outside: the command goes too
            _kill_group(process)
            with trio.CancelScope(shield=True):
                await process.wait()
        if process.stdout is not None:
            await trio.aclose_forcefully(process.stdout)
    return CommandResult(
        tuple(argv),
        process.returncode,
        output.decode("utf-8", "replace"),
        timed_out=timed_out,
    )


class EventHooks:
    """Runs the configured event hooks (OctoPrint's ``CommandTrigger``)."""

    name = "event_hooks"

    def __init__(
        self,
        config: Config,
        bus: Bus,
        klippy: Klippy,
        *,
        capacity: int = 256,
        now: Callable[[], datetime.datetime] = datetime.datetime.now,
    ) -> None:
        self._bus = bus
        self._klippy = klippy
        self._capacity = capacity
        self._now = now
        hooks, self.warnings = parse_hooks(config.sections_with_prefix("event_hook"))
        self.hooks = [h for h in hooks if h.enabled]
        self._by_event: dict[str, list[Hook]] = collections.defaultdict(list)
        for hook in self.hooks:
            for event in hook.events:
                self._by_event[event].append(hook)
        for hook in hooks:
            if not hook.enabled:
                log.info("event hook %s is disabled", hook.name)
        self.completed: collections.deque[HookRun] = collections.deque(maxlen=100)
        self.finished = 0
        self.dropped = 0
        self._pending = 0
        self._changed = trio.Event()
        self._gcode_send, self._gcode_receive = trio.open_memory_channel[
            tuple[Hook, str, list[str]]
        ](capacity)
        if self.hooks:
            klippy.set_internal_subscription("event_hooks", STATUS_SPEC, lambda diff, t: None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._bus.subscribe(OctoPrintEvent, capacity=self._capacity, name=self.name) as rx:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_gcode)
                task_status.started()
                async for event in rx:
                    assert isinstance(event, OctoPrintEvent)
                    self.dispatch(event, nursery)

    def dispatch(self, event: OctoPrintEvent, nursery: trio.Nursery) -> None:
        """Start the hooks of ``event`` (never blocks; a broken hook only logs)."""
        hooks = self._by_event.get(event.NAME)
        if not hooks:
            return
        try:
            payload = event.payload()
        except Exception:
            log.exception("event hooks: the payload of %s failed", event.NAME)
            return
        state = job_state(self._klippy.cache.state)
        params = placeholders(event.NAME, payload, state, self._now())
        for hook in hooks:
            try:
                if hook.type == "gcode":
                    lines = expand_gcode(hook, params)
                else:
                    commands = expand_system(hook, params)
            except ExpansionError as exc:
                log.warning("event hook %s: %s: %s; not run", hook.name, event.NAME, exc)
                self._finished(HookRun(hook.name, event.NAME, error=str(exc)))
                continue
            if hook.type == "gcode":
                try:
                    self._gcode_send.send_nowait((hook, event.NAME, lines))
                except trio.WouldBlock:
                    self._drop(hook, event.NAME)
            elif self._pending >= MAX_PENDING:
                self._drop(hook, event.NAME)
            else:
                self._pending += 1
                nursery.start_soon(self._run_system, hook, event.NAME, commands)

    def _drop(self, hook: Hook, event: str) -> None:
        self.dropped += 1
        log.warning(
            "event hook %s: %s: too many hook runs waiting, this one is dropped (%d so far)",
            hook.name,
            event,
            self.dropped,
        )

    def _finished(self, run: HookRun) -> None:
        self.completed.append(run)
        self.finished += 1
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_completed(self, count: int) -> list[HookRun]:
        """Wait until ``count`` hook runs have finished since start; the last 100 runs."""
        while self.finished < count:
            await self._changed.wait()
        return list(self.completed)

    async def _run_system(self, hook: Hook, event: str, commands: list[list[str]]) -> None:
        results: list[CommandResult] = []
        error: str | None = None
        try:
            for argv in commands:
                if hook.debug:
                    log.info("event hook %s: %s: running %s", hook.name, event, shlex.join(argv))
                else:
                    log.info("event hook %s: %s: running a system command", hook.name, event)
                result = await run_command(argv, hook.timeout)
                results.append(result)
                self._log_result(hook, event, result)
                if not result.ok:
                    break
        except Exception as exc:  # a hook never takes the component down
            log.exception("event hook %s: %s: failed", hook.name, event)
            error = str(exc) or type(exc).__name__
        finally:
            self._pending -= 1
        self._finished(HookRun(hook.name, event, results=tuple(results), error=error))

    def _log_result(self, hook: Hook, event: str, result: CommandResult) -> None:
        for line in result.output.splitlines():
            log.info("event hook %s: %s", hook.name, line)
        if result.error is not None:
            log.warning("event hook %s: %s: cannot run: %s", hook.name, event, result.error)
        elif result.timed_out:
            log.warning(
                "event hook %s: %s: killed after the %g s timeout", hook.name, event, hook.timeout
            )
        elif result.returncode != 0:
            detail = f": {shlex.join(result.argv)}" if hook.debug else ""
            log.warning(
                "event hook %s: %s: command failed with return code %s%s",
                hook.name,
                event,
                result.returncode,
                detail,
            )

    async def _send_gcode(self) -> None:
        async for hook, event, lines in self._gcode_receive:
            script = "\n".join(lines)
            if hook.debug:
                log.info("event hook %s: %s: sending G-code %r", hook.name, event, script)
            error: str | None = None
            try:
                with trio.move_on_after(hook.timeout) as scope:
                    await self._klippy.run_gcode(script)
                if scope.cancelled_caught:
                    error = f"no answer within {hook.timeout:g} s"
            except Exception as exc:  # ApiError, a dropped link: logged, nothing else
                error = str(exc) or type(exc).__name__
            if error is not None:
                log.warning("event hook %s: %s: G-code failed: %s", hook.name, event, error)
            self._finished(HookRun(hook.name, event, gcode=tuple(lines), error=error))
