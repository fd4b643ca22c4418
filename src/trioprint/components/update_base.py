"""What every updater of the update manager shares: running a command, the context an updater
reports through, and the base class with the refresh bookkeeping Moonraker keeps.

An updater never touches the websockets, the database or the lock: it reports progress with
:meth:`Context.notify` (a ``notify_update_response`` while an update runs), raises
:class:`UpdateError` for a failure a client should read, and leaves storing to the manager
(:meth:`Updater.stored` / :meth:`Updater.restore`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from ..domain.update import RateLimit
from ..domain.update_config import AppOptions
from ..transport.http_client import HttpResponse

#: Bytes of a command's output kept (each stream).
OUTPUT_LIMIT = 4 * 1024 * 1024


class UpdateError(Exception):
    """An update, recovery, rollback or refresh step failed; the message is for the client."""


@attrs.frozen
class Output:
    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        """Both streams' lines (progress lines split on carriage returns too), non-empty."""
        text = (self.stdout + "\n" + self.stderr).replace("\r", "\n")
        return [line.strip() for line in text.split("\n") if line.strip()]


Runner = Callable[..., Awaitable[Output]]
Fetch = Callable[..., Awaitable[HttpResponse]]


async def run_command(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    limit: float = 20.0,
    env: Mapping[str, str] | None = None,
) -> Output:
    """Run ``argv`` (no shell) to its end, both streams captured, killed after ``limit`` s."""
    environment = {**os.environ, **(env or {})}
    try:
        with trio.fail_after(limit):
            done = await trio.run_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=cwd,
                env=environment,
            )
    except trio.TooSlowError:
        raise UpdateError(f"Command '{' '.join(argv)}' timed out after {limit:g} s") from None
    except OSError as exc:
        raise UpdateError(f"Cannot run {argv[0]}: {exc.strerror or exc}") from None
    return Output(
        done.returncode,
        done.stdout[:OUTPUT_LIMIT].decode("utf-8", "replace"),
        done.stderr[:OUTPUT_LIMIT].decode("utf-8", "replace"),
    )


class Context(Protocol):
    """What the manager lends its updaters."""

    execute: Runner
    fetch: Fetch
    github_api: str
    rate_limit: RateLimit

    def notify(self, message: str, complete: bool = False) -> None:
        """A ``notify_update_response`` line (dropped when no update is running)."""

    async def restart_services(
        self, owner: str, services: Sequence[str], notify: Callable[[str], None]
    ) -> None:
        """Restart ``services`` after ``owner`` was updated (some postponed in a full update);
        ``notify`` tells of each."""


class Updater:
    """One entry of ``version_info``."""

    #: Moonraker's ``configured_type``.
    kind = "none"

    def __init__(self, name: str, context: Context, refresh_interval: float, config_hash: str):
        self.name = name
        self.context = context
        self.refresh_interval = refresh_interval  # seconds
        self.config_hash = config_hash
        self.last_refresh_time = 0.0
        self.last_config_hash = ""
        #: Added to the messages of :meth:`notify` (Moonraker's ``Git Repo NAME: ``).
        self.prefix = ""

    def notify(self, message: str, complete: bool = False) -> None:
        self.context.notify(f"{self.prefix}{message}", complete)

    def needs_refresh(self, now: float) -> bool:
        return (
            self.config_hash != self.last_config_hash
            or now >= self.last_refresh_time + self.refresh_interval
        )

    def refreshed(self, now: float) -> None:
        self.last_refresh_time = now
        self.last_config_hash = self.config_hash

    def stored(self) -> dict[str, Any]:
        return {
            "last_config_hash": self.last_config_hash,
            "last_refresh_time": self.last_refresh_time,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        when = data.get("last_refresh_time")
        self.last_refresh_time = float(when) if isinstance(when, int | float) else 0.0
        digest = data.get("last_config_hash")
        self.last_config_hash = digest if isinstance(digest, str) else ""

    async def refresh(self) -> None:
        """Learn the installed and the available versions (never raises for a bad state)."""

    async def update(self) -> bool:
        """Install what is available; False if there was nothing to do."""
        return False

    async def rollback(self) -> bool:
        raise UpdateError(f"Rollback not available for {self.name}")

    def status(self) -> dict[str, Any]:
        return {}


class AppUpdater(Updater):
    """An application from an ``[update_manager NAME]`` section."""

    def __init__(self, options: AppOptions, context: Context, default_interval: float) -> None:
        hours = options.refresh_interval
        interval = hours * 3600.0 if hours is not None else default_interval
        super().__init__(options.name, context, interval, options.config_hash)
        self.options = options
        self.valid = False

    async def recover(self, hard: bool, update_deps: bool) -> None:
        raise UpdateError(f"Updater {self.name} is not a Git Repo Type")

    async def restart_services(self) -> None:
        await self.context.restart_services(self.name, self.options.managed_services, self.notify)

    def status(self) -> dict[str, Any]:
        return {
            "channel": self.options.channel,
            "debug_enabled": False,
            "channel_invalid": self.options.channel_invalid,
            "is_valid": self.valid,
            "configured_type": self.options.type,
            "info_tags": list(self.options.info_tags),
        }
