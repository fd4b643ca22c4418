"""Several printers in one process: ``trioprint serve --instance [NAME=]DIR ...``.

::

    trio.run(farm_main)
    └─ root nursery
       ├─ signal watcher: SIGINT/SIGTERM -> farm.stop(); a second signal cancels at once
       └─ one supervisor per instance (its tasks carry the instance's name for logging)
          └─ Server.run: that instance's simulated printer and its instance loop (as one
             process runs one printer, see :mod:`trioprint.app`)

Each instance has its own data folder, config file (``DIR/config/trioprint.conf`` or
``moonraker.conf``), port, printer link and database. Everything is checked before anything
starts: a bad config, two instances on one data folder, one port or one database is a one-line
start-up error naming the instance, and nothing runs (a farm started with a mistake in it is
noticed at once, not found later as one printer missing). Once the farm runs, an instance is on
its own: its ``server.restart`` rebuilds its tree alone, and a crash of its task tree is logged
and that instance alone is started again after a back-off (1 s doubling to 60 s; back to 1 s
once it has served for 60 s), while the others go on serving.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs
import trio

from . import logs
from .app import Instance, Options, Server, read_config, watch_signals
from .config import Config
from .errors import ConfigError, StartupError

log = logging.getLogger(__name__)

#: Seconds before a crashed instance is started again: doubling from the first to the last.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
#: An instance that served this long before it crashed starts again after BACKOFF_FIRST.
BACKOFF_RESET = 60.0


@attrs.frozen
class Member:
    """One instance of the farm: its name (in logs and errors) and its options."""

    name: str
    options: Options


def parse_instance(text: str) -> tuple[str, Path]:
    """``[NAME=]DIR`` -> (name, folder); the name defaults to the folder's own name."""
    name, sep, folder = text.partition("=")
    if not sep:
        name, folder = "", text
    if not folder:
        raise ValueError(f"--instance {text!r}: expected [NAME=]DIR")
    path = Path(folder).expanduser()
    name = name or path.resolve().name or str(path)
    if any(c.isspace() or c in "<>" for c in name):
        raise ValueError(f"--instance {text!r}: the name {name!r} has a space or < >")
    return name, path


def check_members(members: Sequence[Member], configs: Sequence[Config]) -> None:
    """Raise :class:`StartupError` naming the instances that would share a name, data folder,
    port or database (a start-up error, never a race at run time)."""
    names = [m.name for m in members]
    for name in names:
        if names.count(name) > 1:
            raise StartupError(f"two instances are named {name!r}: name them with NAME=DIR")
    seen: dict[tuple[str, object], int] = {}
    for index, (member, config) in enumerate(zip(members, configs, strict=True)):
        database = Path(config.database.database_path or config.data_dir / "database")
        claims: list[tuple[str, object]] = [
            ("use the data folder", member.options.data_dir.resolve()),
            ("use the database", database.expanduser().resolve()),
        ]
        if config.server.port != 0:  # 0: each gets a free port of its own
            claims.append(("listen on port", config.server.port))
        for what, value in claims:
            other = seen.setdefault((what, value), index)
            if other != index:
                first = members[other].name
                raise StartupError(f"instances {first!r} and {member.name!r} both {what} {value}")


def read_configs(members: Sequence[Member]) -> list[Config]:
    """Every member's config, read and checked; a problem names its instance."""
    configs = []
    for member in members:
        try:
            configs.append(read_config(member.options))
        except ConfigError as exc:
            raise StartupError(f"instance {member.name!r}: {exc}") from None
    check_members(members, configs)
    return configs


class Farm:
    """The process of a farm: one :class:`Server` per instance, each supervised alone."""

    def __init__(
        self,
        members: Sequence[Member],
        *,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        if not members:
            raise ValueError("a farm needs at least one instance")
        self.members = list(members)
        self.servers: dict[str, Server] = {}
        #: Times each instance's tree crashed and was started again.
        self.crashes: dict[str, int] = {m.name: 0 for m in members}
        self._backoff = (backoff_first, backoff_max)
        self._stopping = False
        self._stopped = trio.Event()
        self._replaced = trio.Event()  # set when an instance's Server is replaced

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()
        for server in self.servers.values():
            server.stop()

    async def wait_serving(self, name: str, *, other_than: Instance | None = None) -> Instance:
        """Wait until instance ``name`` serves (with a tree other than ``other_than``)."""
        while True:
            server = self.servers[name]
            if server.serving is not None and server.serving is not other_than:
                return server.serving
            replaced = self._replaced
            async with trio.open_nursery() as nursery:

                async def first(wait: Callable[[], Awaitable[object]]) -> None:
                    await wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(first, replaced.wait)
                serving = functools.partial(server.wait_serving, other_than=other_than)
                nursery.start_soon(first, serving)

    async def run(self, *, task_status: trio.TaskStatus[Farm] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every instance (any start-up problem fails the whole start), then serve until
        stopped."""
        read_configs(self.members)
        started = False
        try:
            async with trio.open_nursery() as nursery:
                for member in self.members:
                    await nursery.start(self._supervise, member)
                started = True
                task_status.started(self)
        except Exception as exc:
            leaf = _first_leaf(exc)
            if not started and isinstance(leaf, StartupError):
                raise leaf from None  # the others started are stopped: one line says why
            raise

    async def _supervise(
        self, member: Member, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        logs.current_instance.set(member.name)  # this task's context: its tree inherits it
        delay, limit = self._backoff
        started = False
        while not self._stopping:
            server = Server(member.options)
            self.servers[member.name] = server
            replaced, self._replaced = self._replaced, trio.Event()
            replaced.set()
            began = trio.current_time()
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(server.run)
                    if not started:
                        started = True
                        task_status.started()
            except Exception as exc:
                leaf = _first_leaf(exc)
                problem = isinstance(leaf, (ConfigError, StartupError))
                if not started:
                    if problem:
                        raise StartupError(f"instance {member.name!r}: {leaf}") from None
                    raise
                if problem:
                    log.error("instance %s cannot start again: %s", member.name, leaf)
                else:
                    log.error("instance %s crashed: %r", member.name, leaf, exc_info=exc)
            else:
                return  # stopped
            if self._stopping:
                return
            self.crashes[member.name] += 1
            if trio.current_time() - began >= BACKOFF_RESET:
                delay = self._backoff[0]
            log.warning("instance %s starts again in %g s", member.name, delay)
            with trio.move_on_after(delay):
                await self._stopped.wait()
            delay = min(delay * 2, limit) if math.isfinite(delay) else limit
        if not started:  # stopped (a signal) before this instance was started
            task_status.started()


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def farm_main(members: Sequence[Member]) -> None:
    """The process entry point of a farm: the root nursery."""
    farm = Farm(members)
    async with trio.open_nursery() as root:
        root.start_soon(watch_signals, farm, root.cancel_scope)
        await farm.run()
        root.cancel_scope.cancel()
