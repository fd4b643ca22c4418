"""``machine.update.*``: the update manager (Moonraker 0.11's ``update_manager``).

Built only when the configuration has an ``[update_manager]`` section; each
``[update_manager NAME]`` adds an application (``git_repo``, ``web``, ``python``) and
``system`` (the host's packages) is there unless ``enable_system_updates: False``::

    UpdateManager.run
    ├─ the state kept in the database (namespace ``update_manager``, one key per application)
    │  is loaded; keys of applications no longer configured are dropped
    ├─ initial refresh (background): each application whose last refresh is older than
    │  ``refresh_interval`` hours, or whose section changed, is refreshed
    └─ with ``enable_auto_refresh``: every hour, inside ``refresh_window`` and not printing,
       the same again; every pass ends with a ``notify_update_refreshed``

One command at a time: refreshes, updates, recoveries and rollbacks take one lock, and while an
update, recovery or rollback runs the status says ``busy`` and its progress goes out as
``notify_update_response`` lines (``complete`` on the last). ``status`` never waits: it
answers from what is known. Nothing is updated while klippy prints.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import platform
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import trio

from ..config import Config
from ..domain.kv import KeyValueStore
from ..domain.update import RateLimit, in_refresh_window, status_result, update_response
from ..domain.update_config import parse_update_manager
from ..errors import ApiError
from ..registry import Call, endpoint
from ..transport.http_client import http_get
from .update_apps import (
    PackageProvider,
    PythonUpdater,
    SystemUpdater,
    WebUpdater,
    detect_package_provider,
)
from .update_base import AppUpdater, Fetch, Runner, UpdateError, Updater, run_command
from .update_git import GitRepoUpdater

log = logging.getLogger(__name__)

NAMESPACE = "update_manager"
#: Seconds between two automatic refresh checks (Moonraker's hour).
AUTO_REFRESH_INTERVAL = 3600.0
#: A ``status`` with ``refresh`` is ignored this soon after the last refresh (seconds).
REFRESH_SPAM_INTERVAL = 60.0
GITHUB_API = "https://api.github.com"
GITHUB_API_ENV = "TRIOPRINT_GITHUB_API"
SERVICE_TIMEOUT = 60.0

RestartService = Callable[[str], Awaitable[None]]


class Broadcaster(Protocol):
    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


def is_configured(config: Config) -> bool:
    return "update_manager" in config.sections


def _github_api(warnings: list[str]) -> str:
    env = os.environ.get(GITHUB_API_ENV, "").strip()
    if not env:
        return GITHUB_API
    if env.startswith(("http://", "https://")):
        return env
    warnings.append(f"${GITHUB_API_ENV}: not an http(s) URL, ignored")
    return GITHUB_API


async def restart_with_systemctl(run: Runner, service: str) -> None:
    """``systemctl restart SERVICE`` (through ``sudo -n`` unless root)."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    out = await run([*sudo, "systemctl", "restart", service], limit=SERVICE_TIMEOUT)
    if out.returncode != 0:
        lines = out.lines()
        raise UpdateError(f"Cannot restart service {service}: {lines[-1] if lines else ''}")


@attrs.frozen
class StatusParams:
    refresh: bool = False


@attrs.frozen
class NameParams:
    name: str | None = None


@attrs.frozen
class RequiredName:
    name: str


@attrs.frozen
class RecoverParams:
    name: str
    hard: bool = False
    update_deps: bool = False


class UpdateManager:
    """Moonraker's ``update_manager`` component."""

    name = "update_manager"

    def __init__(
        self,
        config: Config,
        database: KeyValueStore,
        websockets: Broadcaster,
        *,
        is_printing: Callable[[], bool] = lambda: False,
        execute: Runner = run_command,
        fetch: Fetch = http_get,
        package_provider: PackageProvider | Literal["detect"] | None = "detect",
        restart_service: RestartService | None = None,
        clock: Callable[[], float] = time.time,
        warnings: list[str] | None = None,
    ) -> None:
        warnings = warnings if warnings is not None else []
        sections = config.sections_with_prefix("update_manager")
        self.options, apps, problems = parse_update_manager(
            config.section("update_manager"), sections
        )
        warnings.extend(problems)
        self._db = database
        self._websockets = websockets
        self._is_printing = is_printing
        self._clock = clock
        self.execute = execute
        self.fetch = fetch
        self.github_api = _github_api(warnings)
        self.rate_limit = RateLimit()
        self._restart_service = restart_service or (
            lambda service: restart_with_systemctl(self.execute, service)
        )
        interval = self.options.refresh_interval * 3600.0
        self.updaters: dict[str, Updater] = {}
        if self.options.enable_system_updates:
            provider = (
                detect_package_provider(execute)
                if package_provider == "detect"
                else package_provider
            )
            if provider is None:
                dist = _distribution()
                warnings.append(
                    f"Unable to initialize System Update Provider for distribution: {dist}"
                )
            self.updaters["system"] = SystemUpdater(self, provider, interval)
        kinds: dict[str, type[AppUpdater]] = {
            "git_repo": GitRepoUpdater,
            "web": WebUpdater,
            "python": PythonUpdater,
        }
        for app in apps:
            path = app.path if app.type != "python" else app.virtualenv
            if path is not None and not Path(path).expanduser().exists():
                option = "path" if app.type != "python" else "virtualenv"
                warnings.append(
                    f"[update_manager]: Failed to load extension {app.name}: Invalid path for"
                    f" option `{option}` in section [update_manager {app.name}]: Path"
                    f" `{path}` does not exist"
                )
                continue
            self.updaters[app.name] = kinds[app.type](app, self, interval)
        self._lock = trio.Lock()
        self._proc_ids = itertools.count(1)
        self._current: str | None = None
        self._proc_id = 0
        self._full = False
        self._full_complete = False
        self._pending_restarts: list[str] = []
        self._initial_done = trio.Event()
        #: Refresh passes done in the background (the first one included).
        self.refresh_passes = 0
        self._passed = trio.Event()

    # -- what updaters see (the Context protocol) ------------------------------------------

    def notify(self, message: str, complete: bool = False) -> None:
        if self._current is None:
            return
        done = complete and (self._full_complete if self._full else True)
        payload = update_response(message, self._current, self._proc_id, done)
        self._websockets.broadcast("notify_update_response", [payload])

    async def restart_services(
        self, owner: str, services: Sequence[str], notify: Callable[[str], None]
    ) -> None:
        for service in services:
            if self._full and service != owner:
                notify(f"Service {service} restart postponed...")
                if service not in self._pending_restarts:
                    self._pending_restarts.append(service)
                continue
            if service in self._pending_restarts:
                self._pending_restarts.remove(service)
            notify(f"Restarting service {service}...")
            await self._restart_service(service)

    # -- the lifecycle ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._load()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refresher)
            task_status.started()

    async def _load(self) -> None:
        stored = await self._db.get_item(NAMESPACE, None, default={})
        stored = stored if isinstance(stored, dict) else {}
        for key in stored:
            if key not in self.updaters:
                log.info("update_manager: removing the stale data of %s", key)
                with contextlib.suppress(ApiError):
                    await self._db.delete_item(NAMESPACE, [key])
        for name, updater in self.updaters.items():
            data = stored.get(name)
            if isinstance(data, dict):
                updater.restore(data)

    async def _save(self, updater: Updater) -> None:
        try:
            await self._db.insert_item(NAMESPACE, [updater.name], updater.stored())
        except Exception:  # the state goes on in memory
            log.exception("update_manager: the state of %s not stored", updater.name)

    async def _refresh_one(self, updater: Updater) -> None:
        try:
            await updater.refresh()
        except UpdateError as exc:
            log.warning("update_manager: refreshing %s failed: %s", updater.name, exc)
        updater.refreshed(self._clock())
        await self._save(updater)

    async def _refresher(self) -> None:
        first = True
        while True:
            hour = time.localtime(self._clock()).tm_hour
            allowed = first or (
                in_refresh_window(hour, self.options.refresh_window) and not self._is_printing()
            )
            if allowed:
                changed = False
                async with self._lock:
                    for updater in list(self.updaters.values()):
                        if updater.needs_refresh(self._clock()):
                            await self._refresh_one(updater)
                            changed = True
                if changed:
                    self.broadcast_refreshed()
            if first:
                first = False
                self._initial_done.set()
            self.refresh_passes += 1
            passed, self._passed = self._passed, trio.Event()
            passed.set()
            if not self.options.enable_auto_refresh:
                return
            await trio.sleep(AUTO_REFRESH_INTERVAL)

    async def wait_initial_refresh(self) -> None:
        await self._initial_done.wait()

    async def wait_refresh_passes(self, count: int) -> None:
        while self.refresh_passes < count:
            await self._passed.wait()

    # -- the answers -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._current is not None

    def result(self) -> dict[str, Any]:
        info = {name: updater.status() for name, updater in self.updaters.items()}
        return status_result(info, self.busy, self.rate_limit)

    def broadcast_refreshed(self) -> None:
        self._websockets.broadcast("notify_update_refreshed", [self.result()])

    def _refresh_refused(self) -> bool:
        return self.busy or self._is_printing() or not self._initial_done.is_set()

    @contextlib.contextmanager
    def _running(self, application: str, *, full: bool = False) -> Iterator[None]:
        self._current = application
        self._proc_id = next(self._proc_ids)
        self._full = full
        self._full_complete = not full
        self._pending_restarts = []
        try:
            yield
        finally:
            self._current = None
            self._full = self._full_complete = False
            self._pending_restarts = []

    def _updater(self, name: str) -> Updater:
        updater = self.updaters.get(name)
        if updater is None:
            raise ApiError(f"Updater {name} not available", 404)
        return updater

    # -- the API -------------------------------------------------------------------------

    @endpoint("/machine/update/status", "GET", params=StatusParams)
    async def status(self, call: Call[StatusParams]) -> dict[str, Any]:
        if not call.params.refresh or self._refresh_refused():
            return self.result()
        async with self._lock:
            last = max((u.last_refresh_time for u in self.updaters.values()), default=0.0)
            if self._clock() < last + REFRESH_SPAM_INTERVAL:
                return self.result()
            for updater in list(self.updaters.values()):
                await self._refresh_one(updater)
        self.broadcast_refreshed()
        return self.result()

    @endpoint("/machine/update/refresh", "POST", params=NameParams)
    async def refresh(self, call: Call[NameParams]) -> dict[str, Any]:
        name = call.params.name
        if name is not None and name not in self.updaters:
            raise ApiError(f"No updater registered for '{name}'", 400)
        if self._refresh_refused():
            raise ApiError("Server is busy, cannot perform refresh", 503)
        async with self._lock:
            for updater_name, updater in list(self.updaters.items()):
                if name is None or updater_name == name:
                    await self._refresh_one(updater)
        self.broadcast_refreshed()
        return self.result()

    @endpoint("/machine/update/upgrade", "POST", params=NameParams)
    async def upgrade(self, call: Call[NameParams]) -> str:
        if call.params.name is None:
            return await self._full_update()
        return await self._update(call.params.name)

    @endpoint("/machine/update/client", "POST", params=NameParams)
    async def client(self, call: Call[NameParams]) -> str:
        """Moonraker's older name of ``upgrade``."""
        if call.params.name is None:
            return await self._full_update()
        return await self._update(call.params.name)

    @endpoint("/machine/update/moonraker", "POST")
    async def moonraker(self, call: Call[Any]) -> str:
        """Moonraker's older endpoint: ``upgrade`` of the item named ``moonraker``."""
        return await self._update("moonraker")

    @endpoint("/machine/update/klipper", "POST")
    async def klipper(self, call: Call[Any]) -> str:
        """Moonraker's older endpoint: ``upgrade`` of the item named ``klipper``."""
        return await self._update("klipper")

    @endpoint("/machine/update/system", "POST")
    async def system(self, call: Call[Any]) -> str:
        return await self._update("system")

    @endpoint("/machine/update/full", "POST")
    async def full(self, call: Call[Any]) -> str:
        return await self._full_update()

    async def _update(self, name: str) -> str:
        if self._is_printing():
            raise ApiError("Update Refused: Klippy is printing", 503)
        if self._current == name or self._full:
            raise ApiError(f"Item {name} is currently updating", 503)
        updater = self._updater(name)
        async with self._lock:
            with self._running(name):
                try:
                    await updater.update()
                except UpdateError as exc:
                    self.notify(f"Error updating {name}: {exc}", complete=True)
                    raise ApiError(str(exc), 400) from None
                finally:
                    await self._save(updater)
        self.broadcast_refreshed()
        return "ok"

    def _full_order(self) -> list[Updater]:
        last = ("klipper", "moonraker", "trioprint")
        names = [n for n in self.updaters if n == "system"]
        names += [n for n in self.updaters if n != "system" and n not in last]
        names += [n for n in last if n in self.updaters]
        return [self.updaters[n] for n in names]

    async def _full_update(self) -> str:
        if self._is_printing():
            raise ApiError("Update Refused: Klippy is printing", 503)
        async with self._lock:
            with self._running("full", full=True):
                self.notify("Preparing full software update...")
                name = ""
                try:
                    for updater in self._full_order():
                        name = updater.name
                        try:
                            await updater.update()
                        finally:
                            await self._save(updater)
                    for service in list(self._pending_restarts):
                        self.notify(f"Restarting service {service}...")
                        await self._restart_service(service)
                    self._full_complete = True
                    self.notify("Full Update Complete", complete=True)
                except UpdateError as exc:
                    self._full_complete = True
                    self.notify(f"Error updating {name}: {exc}", complete=True)
                    raise ApiError(str(exc), 400) from None
        self.broadcast_refreshed()
        return "ok"

    @endpoint("/machine/update/recover", "POST", params=RecoverParams)
    async def recover(self, call: Call[RecoverParams]) -> str:
        name = call.params.name
        if self._is_printing():
            raise ApiError("Recovery Attempt Refused: Klippy is printing", 503)
        updater = self._updater(name)
        if not isinstance(updater, GitRepoUpdater):
            raise ApiError(f"Updater {name} is not a Git Repo Type", 400)
        async with self._lock:
            with self._running(f"recover_{name}"):
                try:
                    await updater.recover(call.params.hard, call.params.update_deps)
                except UpdateError as exc:
                    self.notify(f"Error Recovering {name}")
                    self.notify(str(exc), complete=True)
                    raise ApiError(str(exc), 500) from None
                finally:
                    await self._save(updater)
        self.broadcast_refreshed()
        return "ok"

    @endpoint("/machine/update/rollback", "POST", params=RequiredName)
    async def rollback(self, call: Call[RequiredName]) -> str:
        name = call.params.name
        if self._is_printing():
            raise ApiError("Rollback Attempt Refused: Klippy is printing", 503)
        updater = self._updater(name)
        async with self._lock:
            with self._running(f"rollback_{name}"):
                try:
                    await updater.rollback()
                except UpdateError as exc:
                    self.notify(f"Error Rolling Back {name}")
                    self.notify(str(exc), complete=True)
                    raise ApiError(str(exc), 400) from None
                finally:
                    await self._save(updater)
        self.broadcast_refreshed()
        return "ok"


def _distribution() -> str:
    with contextlib.suppress(OSError):
        return platform.freedesktop_os_release().get("ID", "unknown").lower()
    return platform.system().lower() or "unknown"
