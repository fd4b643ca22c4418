"""``server.announcements.*``: news from RSS feeds, dismissible (Moonraker 0.11's
``announcements``).

Feeds: ``moonraker`` and ``klipper`` always, then ``[announcements] subscriptions``, then those
clients added with ``server.announcements.post_feed`` (kept in the database). Each is fetched
in the background when the server starts and every 30 minutes, from ``feed_url`` with the
feed's name in it (Moonraker's GitHub-hosted feeds by default; ``$TRIOPRINT_ANNOUNCEMENTS_URL``
overrides that default, for tests and offline installations), with ``If-None-Match`` and
one deadline per fetch; with ``dev_mode`` from ``<data>/development/announcements/<name>.xml``
instead, with ``enable_moonlight: false`` not at all. Fetches never hold anything a request
waits for: ``list``, ``feeds`` and ``dismiss`` answer at once from what is stored, whatever the
network does; only ``update`` and ``post_feed``, which ask for a fetch, wait for it (bounded).

The parsing and the entry logic are pure (:mod:`trioprint.domain.announcements`). Storage is
Moonraker's: the entries in namespace ``announcements`` (six-hex-digit keys), the added feeds
and each feed's ETag in namespace ``moonraker`` under ``announcements``. A dismissal with a
``wake_time`` is woken by a timer task (``notify_announcement_wake``); a dismissal whose wake
time passed while the server was stopped is woken at start-up.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ..config import AnnouncementsConfig
from ..domain.announcements import (
    DEFAULT_FEED_URL,
    DEFAULT_FEEDS,
    MAX_FEED_SIZE,
    Change,
    Entries,
    FeedError,
    ParsedFeed,
    UnknownEntry,
    check_feed_name,
    parse_feed,
)
from ..domain.kv import KeyValueStore
from ..errors import ApiError
from ..registry import Call, NoParams, endpoint
from ..transport.http_client import HttpError, HttpResponse, http_get
from .args import string_list

log = logging.getLogger(__name__)

ENTRIES_NAMESPACE = "announcements"
STATE_NAMESPACE = "moonraker"
#: Seconds between two background updates of every feed (Moonraker's).
UPDATE_INTERVAL = 1800.0
#: Seconds one fetch (resolution, connection, answer) may take.
FETCH_TIMEOUT = 10.0
URL_ENV = "TRIOPRINT_ANNOUNCEMENTS_URL"

Fetch = Callable[..., Awaitable[HttpResponse]]


class Broadcaster(Protocol):
    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


def feed_url_template(options: AnnouncementsConfig, warnings: list[str]) -> str:
    """``feed_url``, else ``$TRIOPRINT_ANNOUNCEMENTS_URL``, else Moonraker's feeds."""
    if options.feed_url:
        return options.feed_url
    env = os.environ.get(URL_ENV, "").strip()
    if env:
        if env.startswith(("http://", "https://")) and "{name}" in env:
            return env
        warnings.append(f"${URL_ENV}: not an http(s) URL with {{name}} in it, ignored")
    return DEFAULT_FEED_URL


class Feed:
    """One subscription: its name, ETag and (dev mode) the file's last mtime."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.etag: str | None = None
        self.mtime_ns = 0
        self.lock = trio.Lock()  # one fetch of a feed at a time


@attrs.frozen
class ListParams:
    include_dismissed: bool = True


@attrs.frozen
class UpdateParams:
    subscriptions: list[str] | None

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> UpdateParams:
        return cls(string_list(raw, "subscriptions", required=False))


@attrs.frozen
class DismissParams:
    entry_id: str
    wake_time: int | None = None


@attrs.frozen
class FeedParams:
    name: str


class Announcements:
    """Moonraker's ``announcements`` component."""

    name = "announcements"

    def __init__(
        self,
        options: AnnouncementsConfig,
        database: KeyValueStore,
        websockets: Broadcaster,
        data_dir: Path,
        *,
        fetch: Fetch = http_get,
        clock: Callable[[], float] = time.time,
        timeout: float = FETCH_TIMEOUT,
        warnings: list[str] | None = None,
    ) -> None:
        self.options = options
        self._db = database
        self._websockets = websockets
        self._fetch = fetch
        self._clock = clock
        self.timeout = timeout
        warnings = warnings if warnings is not None else []
        self.url_template = feed_url_template(options, warnings)
        self.dev_folder = data_dir / "development" / "announcements"
        self.entries = Entries()
        self.feeds: dict[str, Feed] = {}
        self.configured: list[str] = []
        for name in (*DEFAULT_FEEDS, *options.subscriptions):
            try:
                name = check_feed_name(name)
            except ValueError as exc:
                warnings.append(f"[announcements] subscriptions: {exc}; ignored")
                continue
            if name not in self.feeds:
                self.feeds[name] = Feed(name)
                self.configured.append(name)
        self.stored_feeds: list[str] = []
        self._write_lock = trio.Lock()
        self._rearm = trio.Event()
        self._nursery: trio.Nursery | None = None
        #: Background update passes done (each fetches every feed once).
        self.updates = 0
        self._updated = trio.Event()

    # -- the lifecycle -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._load()
        if self.options.dev_mode:
            await trio.to_thread.run_sync(
                lambda: self.dev_folder.mkdir(parents=True, exist_ok=True)
            )
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._waker)
            nursery.start_soon(self._updater)
            task_status.started()

    async def wait_updates(self, count: int = 1) -> None:
        """Wait until ``count`` background update passes are done (for tests)."""
        while self.updates < count:
            await self._updated.wait()

    async def _load(self) -> None:
        stored = await self._db.get_item(STATE_NAMESPACE, ["announcements"], default={})
        stored = stored if isinstance(stored, dict) else {}
        names = stored.get("stored_feeds")
        for name in names if isinstance(names, list) else []:
            if not isinstance(name, str):
                continue
            try:
                name = check_feed_name(name)
            except ValueError:
                log.warning("announcements: stored feed %r is not a usable name, dropped", name)
                continue
            if name not in self.stored_feeds:
                self.stored_feeds.append(name)
            self.feeds.setdefault(name, Feed(name))
        for name, feed in self.feeds.items():
            state = stored.get(name)
            etag = state.get("etag") if isinstance(state, dict) else None
            feed.etag = etag if isinstance(etag, str) else None
        content = await self._db.get_item(ENTRIES_NAMESPACE, None, default={})
        self.entries, change = Entries.load(content, self._clock())
        await self._store(change)

    async def _updater(self) -> None:
        while True:
            changed = await self._update(list(self.feeds))
            if changed:
                self._broadcast_entries()
            self.updates += 1
            updated, self._updated = self._updated, trio.Event()
            updated.set()
            await trio.sleep(UPDATE_INTERVAL)

    async def _waker(self) -> None:
        while True:
            due = self.entries.next_wake()
            rearm = self._rearm
            if due is None:
                await rearm.wait()
                continue
            delay = due - self._clock()
            if delay > 0:
                with trio.move_on_after(delay):
                    await rearm.wait()
                continue
            change, woken = self.entries.wake_due(self._clock())
            await self._store(change)
            for entry_id in woken:
                log.info("announcements: %s woken", entry_id)
                self._websockets.broadcast("notify_announcement_wake", [{"entry_id": entry_id}])

    def _rewake(self) -> None:
        rearm, self._rearm = self._rearm, trio.Event()
        rearm.set()

    # -- storage and notifications -----------------------------------------------------------

    async def _store(self, change: Change) -> None:
        if not change:
            return
        async with self._write_lock:
            try:
                for key, entry in change.written.items():
                    await self._db.insert_item(ENTRIES_NAMESPACE, [key], entry)
                for key in change.removed:
                    with contextlib.suppress(ApiError):  # never stored
                        await self._db.delete_item(ENTRIES_NAMESPACE, [key])
            except Exception:  # the entries go on in memory
                log.exception("announcements: entries not stored")

    async def _store_state(self, key: list[str], value: Any) -> None:
        try:
            if value is None:
                with contextlib.suppress(ApiError):  # not stored
                    await self._db.delete_item(STATE_NAMESPACE, ["announcements", *key])
            else:
                await self._db.insert_item(STATE_NAMESPACE, ["announcements", *key], value)
        except Exception:
            log.exception("announcements: %s not stored", ".".join(key))

    def _broadcast_entries(self) -> None:
        self._websockets.broadcast(
            "notify_announcement_update", [{"entries": self.entries.listed()}]
        )

    # -- fetching ----------------------------------------------------------------------------

    async def _update(self, names: list[str]) -> bool:
        """Fetch ``names`` at once (each bounded by the timeout); merge what came, in order."""
        parsed: dict[str, ParsedFeed | None] = {}

        async def one(name: str) -> None:
            parsed[name] = await self._fetch_feed(name)

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(one, name)
        change = Change()
        for name in names:
            result = parsed.get(name)
            if result is None or name not in self.feeds:
                continue
            merged = self.entries.merge(name, result)
            change.written.update(merged.written)
            change.removed.extend(merged.removed)
        await self._store(change)
        return bool(change)

    async def _fetch_feed(self, name: str) -> ParsedFeed | None:
        """The feed's new document, parsed; None if unchanged, unreachable or unusable."""
        feed = self.feeds.get(name)
        if feed is None:
            return None
        async with feed.lock:
            try:
                if self.options.dev_mode:
                    return await self._read_dev_file(feed)
                if not self.options.enable_moonlight:
                    return None
                return await self._download(feed)
            except FeedError as exc:
                log.warning("announcements: feed %s unusable: %s", name, exc)
                return None

    async def _download(self, feed: Feed) -> ParsedFeed | None:
        url = self.url_template.replace("{name}", feed.name)
        headers = {"Accept": "application/xml"}
        if feed.etag is not None:
            headers["If-None-Match"] = feed.etag
        try:
            response = await self._fetch(url, headers, limit=self.timeout, max_body=MAX_FEED_SIZE)
        except HttpError as exc:
            log.info("announcements: feed %s not updated: %s", feed.name, exc)
            return None
        if response.status == 304:
            log.debug("announcements: feed %s not modified", feed.name)
            return None
        if response.status != 200:
            log.info("announcements: feed %s not updated: HTTP %d", feed.name, response.status)
            return None
        parsed = await self._parse(response.body)
        # the ETag is kept only for a document that was used: a bad one is fetched again
        etag = response.headers.get("etag")
        if etag != feed.etag:
            feed.etag = etag
            await self._store_state([feed.name, "etag"], etag)
        return parsed

    async def _parse(self, data: bytes) -> ParsedFeed:
        """Parsed in a worker thread (up to a MiB of XML); dated by the clock read here."""
        return await trio.to_thread.run_sync(functools.partial(parse_feed, data, now=self._clock()))

    async def _read_dev_file(self, feed: Feed) -> ParsedFeed | None:
        path = self.dev_folder / f"{feed.name}.xml"

        def read() -> tuple[int, bytes] | None:
            try:
                mtime = path.stat().st_mtime_ns
                if mtime <= feed.mtime_ns:
                    return None
                with path.open("rb") as file:
                    return mtime, file.read(MAX_FEED_SIZE + 1)
            except FileNotFoundError:
                log.info("announcements: no file at %s", path)
                return None
            except OSError as exc:
                log.warning("announcements: cannot read %s: %s", path, exc)
                return None

        found = await trio.to_thread.run_sync(read)
        if found is None:
            return None
        mtime, data = found
        parsed = await self._parse(data)
        feed.mtime_ns = mtime
        return parsed

    # -- the API -----------------------------------------------------------------------------

    @endpoint("/server/announcements/list", "GET", params=ListParams)
    async def list_entries(self, call: Call[ListParams]) -> dict[str, Any]:
        return {
            "entries": self.entries.listed(call.params.include_dismissed),
            "feeds": list(self.feeds),
        }

    @endpoint("/server/announcements/update", "POST", params=UpdateParams)
    async def update(self, call: Call[UpdateParams]) -> dict[str, Any]:
        names = call.params.subscriptions
        if names is None:
            names = list(self.feeds)
        for name in names:
            if name not in self.feeds:
                raise ApiError(f"No subscription for {name}", 400)
        changed = await self._update(list(dict.fromkeys(names)))
        if changed:
            self._broadcast_entries()
        return {"entries": self.entries.listed(), "modified": changed}

    @endpoint("/server/announcements/dismiss", "POST", params=DismissParams)
    async def dismiss(self, call: Call[DismissParams]) -> dict[str, Any]:
        entry_id, wake = call.params.entry_id, call.params.wake_time
        try:
            change = self.entries.dismiss(entry_id, wake, self._clock())
        except UnknownEntry:
            raise ApiError(f"No key matching entry id: {entry_id}", 400) from None
        if change:
            await self._store(change)
            if wake is not None:
                self._rewake()
            self._websockets.broadcast("notify_announcement_dismissed", [{"entry_id": entry_id}])
        return {"entry_id": entry_id}

    @endpoint("/server/announcements/feeds", "GET")
    async def list_feeds(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"feeds": list(self.feeds)}

    @endpoint("/server/announcements/feed", "POST", "DELETE", params=FeedParams)
    async def feed(self, call: Call[FeedParams]) -> dict[str, Any]:
        try:
            name = check_feed_name(call.params.name)
        except ValueError as exc:
            raise ApiError(str(exc), 400) from None
        action = "skipped"
        changed = False
        if call.verb == "POST":
            if name not in self.feeds:
                self.feeds[name] = Feed(name)
                self.stored_feeds.append(name)
                await self._store_state(["stored_feeds"], list(self.stored_feeds))
                changed = await self._update([name])
                action = "added"
        else:
            if name not in self.stored_feeds:
                raise ApiError(f"Feed '{name}' not stored", 400)
            if name in self.configured:
                raise ApiError(f"Feed '{name}' exists in the configuration, cannot remove", 400)
            self.stored_feeds.remove(name)
            await self._store_state(["stored_feeds"], list(self.stored_feeds))
            await self._store_state([name], None)
            self.feeds.pop(name, None)
            change = self.entries.prune_feed(name)
            await self._store(change)
            changed = bool(change)
            log.info("announcements: feed %s removed", name)
            action = "removed"
        if changed:
            self._broadcast_entries()
        return {"feed": name, "action": action}
