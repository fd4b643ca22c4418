"""Announcements: RSS feeds parsed into entries, dismissals and wake times (Moonraker 0.11's
``announcements``), as pure logic.

:func:`parse_feed` reads one feed (Moonraker's "moonlight" RSS: a ``channel`` whose ``title``
is the prefix of its items' ``guid``\\ s, each ``item`` with ``guid``, ``link``, ``title``,
``description``, ``category`` (the priority) and ``pubDate``). It refuses a document with a
DTD (``<!DOCTYPE``/``<!ENTITY``: an RSS feed needs none, and it is how entity expansion and
external entities get in) or over :data:`MAX_FEED_SIZE` before the XML parser sees it.

:class:`Entries` holds the entries under Moonraker's database keys (six hex digits, in the
order they came) and does what Moonraker's entry manager does: a parsed feed adds the entries
not seen yet and drops those of its prefix that it no longer lists; an entry is dismissed (for
good, or until a wake time) and woken again; removing a feed drops its entries.
"""

from __future__ import annotations

import copy
import email.utils
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import attrs

#: Moonraker's feed host; each feed is ``assets/<name>.xml`` there.
MOONLIGHT_URL = "https://arksine.github.io/moonlight"
DEFAULT_FEED_URL = MOONLIGHT_URL + "/assets/{name}.xml"
#: The feeds every installation subscribes to.
DEFAULT_FEEDS = ("moonraker", "klipper")
#: Largest feed document, in bytes.
MAX_FEED_SIZE = 1024 * 1024
#: A dismissed entry whose wake time is this close (seconds) when the server starts is woken.
WAKE_MARGIN = 10.0
#: A feed name: it becomes part of a URL and of a file name.
FEED_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_DTD_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class FeedError(ValueError):
    """A feed document that cannot be used."""


def check_feed_name(name: str) -> str:
    """``name`` in lower case, if it is a usable feed name; else ``ValueError``."""
    lowered = name.strip().lower()
    if not FEED_NAME_RE.fullmatch(lowered):
        raise ValueError(
            f"invalid feed name {name!r}: 1 to 64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return lowered


@attrs.frozen
class FeedItem:
    guid: str
    url: str | None
    title: str | None
    description: str | None
    priority: str | None
    date: float


@attrs.frozen
class ParsedFeed:
    #: Every entry id starting with it belongs to this feed ("" when unknown).
    prefix: str
    items: tuple[FeedItem, ...]


def _date(text: str | None, now: float) -> float:
    if not text:
        return now
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return now
    try:
        stamp = parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return now
    return stamp if math.isfinite(stamp) else now


def parse_feed(data: bytes | str, *, now: float) -> ParsedFeed:
    """One RSS document; ``now`` dates the items without a usable ``pubDate``."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_FEED_SIZE:
        raise FeedError(f"feed larger than {MAX_FEED_SIZE} bytes")
    if _DTD_RE.search(raw):
        raise FeedError("feed with a DTD (<!DOCTYPE or <!ENTITY) refused")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise FeedError(f"not XML: {exc}") from None
    channel = root.find("channel")
    if channel is None:
        raise FeedError("no <channel> in the feed")
    prefix = (channel.findtext("title") or "").strip().lower()
    items: list[FeedItem] = []
    for item in channel.findall("item"):
        guid = item.findtext("guid")
        if guid is None or not guid.strip():
            continue
        guid = guid.strip()
        if not prefix:
            prefix = "/".join(guid.split("/")[:2])
        items.append(
            FeedItem(
                guid=guid,
                url=item.findtext("link"),
                title=item.findtext("title"),
                description=item.findtext("description"),
                priority=item.findtext("category"),
                date=_date(item.findtext("pubDate"), now),
            )
        )
    return ParsedFeed(prefix, tuple(items))


def new_entry(feed: str, item: FeedItem) -> dict[str, Any]:
    """Moonraker's entry for a feed item."""
    return {
        "entry_id": item.guid,
        "url": item.url,
        "title": item.title,
        "description": item.description,
        "priority": item.priority,
        "date": item.date,
        "dismissed": False,
        "date_dismissed": None,
        "dismiss_wake": None,
        "source": "moonlight",
        "feed": feed,
    }


def _is_entry(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("entry_id"), str)
        and isinstance(value.get("date"), int | float)
        and not isinstance(value.get("date"), bool)
        and isinstance(value.get("dismissed"), bool)
    )


def _key_number(key: str) -> int | None:
    if not 0 < len(key) <= 16 or any(c not in "0123456789abcdefABCDEF" for c in key):
        return None
    return int(key, 16)


class UnknownEntry(KeyError):
    """No entry with that id."""


@attrs.frozen
class Change:
    """What an operation changed, for the store: entries to write, keys to delete."""

    written: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    removed: list[str] = attrs.field(factory=list)

    def __bool__(self) -> bool:
        return bool(self.written or self.removed)


class Entries:
    """The announcement entries, by database key."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}  # entry id -> key
        self.next_key = 0

    @classmethod
    def load(cls, stored: Any, now: float) -> tuple[Entries, Change]:
        """The entries of the namespace's content; dismissed ones whose wake time has (almost)
        come are woken (the change to write back). Records that are not entries are dropped
        (their keys in the change's ``removed``)."""
        entries = cls()
        change = Change()
        if not isinstance(stored, Mapping):
            return entries, change
        numbered = []
        for key, value in stored.items():
            number = _key_number(key) if isinstance(key, str) else None
            if number is None or not _is_entry(value):
                if isinstance(key, str):
                    change.removed.append(key)
                continue
            numbered.append((number, key, value))
        for number, key, value in sorted(numbered):
            entry = dict(value)
            entries.by_key[key] = entry
            entries.keys[entry["entry_id"]] = key
            entries.next_key = max(entries.next_key, number + 1)
            wake = entry.get("dismiss_wake")
            if entry["dismissed"] and isinstance(wake, int | float) and wake - WAKE_MARGIN < now:
                _undismiss(entry)
                change.written[key] = copy.deepcopy(entry)
        return entries, change

    def listed(self, include_dismissed: bool = True) -> list[dict[str, Any]]:
        """Newest first."""
        values = sorted(self.by_key.values(), key=lambda e: e["date"], reverse=True)
        return [copy.deepcopy(e) for e in values if include_dismissed or not e["dismissed"]]

    def has(self, entry_id: str) -> bool:
        return entry_id in self.keys

    def _add(self, entry: dict[str, Any], change: Change) -> None:
        key = f"{self.next_key:06X}"
        self.next_key += 1
        self.by_key[key] = entry
        self.keys[entry["entry_id"]] = key
        change.written[key] = copy.deepcopy(entry)

    def _remove(self, entry_id: str, change: Change) -> None:
        key = self.keys.pop(entry_id, None)
        if key is not None:
            self.by_key.pop(key, None)
            change.removed.append(key)

    def merge(self, feed: str, parsed: ParsedFeed) -> Change:
        """A feed's latest document: its new items added, its prefix's vanished ones dropped."""
        change = Change()
        valid = set()
        for item in parsed.items:
            valid.add(item.guid)
            if not self.has(item.guid):
                self._add(new_entry(feed, item), change)
        if parsed.prefix:
            for entry_id in list(self.keys):
                if entry_id.startswith(parsed.prefix) and entry_id not in valid:
                    self._remove(entry_id, change)
        return change

    def prune_feed(self, feed: str) -> Change:
        """Drop every entry of ``feed``."""
        change = Change()
        for entry in list(self.by_key.values()):
            if str(entry.get("feed", "")).lower() == feed:
                self._remove(entry["entry_id"], change)
        return change

    def dismiss(self, entry_id: str, wake_time: float | None, now: float) -> Change:
        """Dismiss ``entry_id`` (until ``now + wake_time`` if given); an empty change if it was
        dismissed already. ``UnknownEntry`` if there is no such entry."""
        key = self.keys.get(entry_id)
        if key is None:
            raise UnknownEntry(entry_id)
        entry = self.by_key[key]
        if entry["dismissed"]:
            return Change()
        entry["dismissed"] = True
        entry["date_dismissed"] = now
        entry["dismiss_wake"] = None if wake_time is None else now + wake_time
        return Change(written={key: copy.deepcopy(entry)})

    def next_wake(self) -> float | None:
        """The earliest wake time of a dismissed entry, if any."""
        wakes = [
            e["dismiss_wake"]
            for e in self.by_key.values()
            if e["dismissed"] and isinstance(e.get("dismiss_wake"), int | float)
        ]
        return min(wakes, default=None)

    def wake_due(self, now: float) -> tuple[Change, list[str]]:
        """Wake every dismissed entry whose time has come: the change and their entry ids."""
        change = Change()
        woken = []
        for key, entry in self.by_key.items():
            wake = entry.get("dismiss_wake")
            if entry["dismissed"] and isinstance(wake, int | float) and wake <= now:
                _undismiss(entry)
                change.written[key] = copy.deepcopy(entry)
                woken.append(entry["entry_id"])
        return change, woken


def _undismiss(entry: dict[str, Any]) -> None:
    entry["dismissed"] = False
    entry["date_dismissed"] = None
    entry["dismiss_wake"] = None
