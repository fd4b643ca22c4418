"""Announcements' pure core: RSS parsing (safely) and Moonraker's entry bookkeeping."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.announcements import (
    MAX_FEED_SIZE,
    Entries,
    FeedError,
    ParsedFeed,
    UnknownEntry,
    check_feed_name,
    parse_feed,
)

NOW = 1_700_000_000.0


def rss(title: str | None, *items: str) -> str:
    head = f"<title>{title}</title>" if title is not None else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:moonlight="https://arksine.github.io/moonlight">'
        f"<channel>{head}<link>https://example.invalid</link>{''.join(items)}</channel></rss>"
    )


def item(guid: str | None, title: str = "T", date: str = "Wed, 05 Apr 2023 12:00:00 GMT") -> str:
    g = f"<guid>{guid}</guid>" if guid is not None else ""
    return (
        f"<item><title>{title}</title><link>https://example.invalid/{guid}</link>"
        f"<description>About {title}</description><pubDate>{date}</pubDate>"
        f"<category>high</category>{g}</item>"
    )


def test_a_feed_is_parsed_into_items() -> None:
    parsed = parse_feed(
        rss("Moonraker", item("moonraker/issue/1", "One"), item("moonraker/issue/2", "Two")),
        now=NOW,
    )
    assert parsed.prefix == "moonraker"
    first, second = parsed.items
    assert first.guid == "moonraker/issue/1"
    assert first.title == "One"
    assert first.url == "https://example.invalid/moonraker/issue/1"
    assert first.description == "About One"
    assert first.priority == "high"
    assert first.date == 1680696000.0  # 2023-04-05 12:00 UTC
    assert second.guid == "moonraker/issue/2"


def test_items_without_guid_are_skipped_and_bad_dates_are_now() -> None:
    parsed = parse_feed(
        rss("x", item(None), item("x/a/1", date="not a date"), item("x/a/2", date="")),
        now=NOW,
    )
    assert [i.guid for i in parsed.items] == ["x/a/1", "x/a/2"]
    assert [i.date for i in parsed.items] == [NOW, NOW]


def test_without_a_channel_title_the_prefix_comes_from_the_first_guid() -> None:
    parsed = parse_feed(rss(None, item("klipper/issue/7")), now=NOW)
    assert parsed.prefix == "klipper/issue"


def test_bytes_with_an_encoding_declaration() -> None:
    text = rss("Klipper", item("klipper/issue/1", "Grüße")).replace("UTF-8", "ISO-8859-1")
    parsed = parse_feed(text.encode("iso-8859-1"), now=NOW)
    assert parsed.items[0].title == "Grüße"


@pytest.mark.parametrize(
    "document",
    [
        # entity expansion ("billion laughs")
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<rss><channel><title>&lol2;</title></channel></rss>",
        # an external entity
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<rss><channel><title>&x;</title></channel></rss>",
        "<!doctype rss><rss><channel></channel></rss>",
    ],
)
def test_a_document_with_a_dtd_is_refused(document: str) -> None:
    with pytest.raises(FeedError, match="DTD"):
        parse_feed(document, now=NOW)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not xml at all", "not XML"),
        ("<rss><channel>", "not XML"),
        ("<rss><item/></rss>", "no <channel>"),
        ("<rss>" + " " * MAX_FEED_SIZE + "</rss>", "larger"),
    ],
)
def test_unusable_documents(document: str, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        parse_feed(document, now=NOW)


@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: "<rss>" + t + "</rss>"))
def test_any_input_parses_or_is_a_feed_error(data: bytes | str) -> None:
    try:
        parsed = parse_feed(data, now=NOW)
    except FeedError:
        return
    assert isinstance(parsed, ParsedFeed)


@given(
    st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8
        ),
        max_size=5,
    )
)
def test_any_item_text_round_trips(titles: list[str]) -> None:
    from xml.sax.saxutils import escape

    items = [item(f"f/x/{n}", escape(t)) for n, t in enumerate(titles)]
    parsed = parse_feed(rss("f", *items), now=NOW)
    assert [i.title for i in parsed.items] == titles


def test_feed_names() -> None:
    assert check_feed_name(" Mainsail ") == "mainsail"
    assert check_feed_name("klipper-screen_2") == "klipper-screen_2"
    for bad in ("", "../etc", "a/b", "a.b", "-x", "x" * 65, "a b"):
        with pytest.raises(ValueError, match="invalid feed name"):
            check_feed_name(bad)


# -- entries ------------------------------------------------------------------------------


def feed(prefix: str, *guids: str, date: float = NOW) -> ParsedFeed:
    text = rss(prefix, *(item(g) for g in guids))
    parsed = parse_feed(text, now=date)
    return parsed


def test_merge_adds_new_items_under_sequential_keys() -> None:
    entries = Entries()
    change = entries.merge("moonraker", feed("moonraker", "moonraker/a/1", "moonraker/a/2"))
    assert sorted(change.written) == ["000000", "000001"]
    assert change.removed == []
    entry = change.written["000000"]
    assert entry == {
        "entry_id": "moonraker/a/1",
        "url": "https://example.invalid/moonraker/a/1",
        "title": "T",
        "description": "About T",
        "priority": "high",
        "date": 1680696000.0,
        "dismissed": False,
        "date_dismissed": None,
        "dismiss_wake": None,
        "source": "moonlight",
        "feed": "moonraker",
    }
    # the same document again changes nothing
    assert not entries.merge("moonraker", feed("moonraker", "moonraker/a/1", "moonraker/a/2"))


def test_merge_drops_the_prefix_s_entries_the_feed_no_longer_lists() -> None:
    entries = Entries()
    entries.merge("moonraker", feed("moonraker", "moonraker/a/1", "moonraker/a/2"))
    entries.merge("klipper", feed("klipper", "klipper/a/1"))
    change = entries.merge("moonraker", feed("moonraker", "moonraker/a/2", "moonraker/a/3"))
    assert change.removed == ["000000"]
    assert list(change.written) == ["000003"]
    ids = sorted(e["entry_id"] for e in entries.listed())
    assert ids == ["klipper/a/1", "moonraker/a/2", "moonraker/a/3"]


def test_listed_is_newest_first_and_can_leave_dismissed_out() -> None:
    entries = Entries()
    entries.merge(
        "f",
        parse_feed(
            rss(
                "f",
                item("f/a/old", date="Mon, 01 Jan 2024 00:00:00 GMT"),
                item("f/a/new", date="Mon, 01 Jan 2025 00:00:00 GMT"),
            ),
            now=NOW,
        ),
    )
    assert [e["entry_id"] for e in entries.listed()] == ["f/a/new", "f/a/old"]
    entries.dismiss("f/a/new", None, NOW)
    assert [e["entry_id"] for e in entries.listed(include_dismissed=False)] == ["f/a/old"]
    # a copy: changing it changes nothing
    entries.listed()[0]["title"] = "changed"
    assert entries.listed()[0]["title"] == "T"


def test_dismiss_and_wake() -> None:
    entries = Entries()
    entries.merge("f", feed("f", "f/a/1", "f/a/2"))
    with pytest.raises(UnknownEntry):
        entries.dismiss("f/a/404", None, NOW)
    change = entries.dismiss("f/a/1", 3600, NOW)
    assert change.written["000000"]["dismissed"] is True
    assert change.written["000000"]["date_dismissed"] == NOW
    assert change.written["000000"]["dismiss_wake"] == NOW + 3600
    assert not entries.dismiss("f/a/1", 10, NOW)  # already dismissed: nothing
    entries.dismiss("f/a/2", None, NOW)  # for good
    assert entries.next_wake() == NOW + 3600
    assert entries.wake_due(NOW + 3599) == (entries.wake_due(NOW)[0], [])
    change, woken = entries.wake_due(NOW + 3600)
    assert woken == ["f/a/1"]
    assert change.written["000000"]["dismissed"] is False
    assert change.written["000000"]["dismiss_wake"] is None
    assert entries.next_wake() is None
    assert [e["dismissed"] for e in entries.listed()] == [False, True]


def test_prune_feed() -> None:
    entries = Entries()
    entries.merge("mainsail", feed("mainsail", "mainsail/a/1"))
    entries.merge("klipper", feed("klipper", "klipper/a/1"))
    change = entries.prune_feed("mainsail")
    assert change.removed == ["000000"]
    assert [e["entry_id"] for e in entries.listed()] == ["klipper/a/1"]
    assert not entries.has("mainsail/a/1")


def test_load_restores_keys_and_wakes_what_is_due() -> None:
    source = Entries()
    source.merge("f", feed("f", "f/a/1", "f/a/2", "f/a/3"))
    source.dismiss("f/a/1", 5, NOW)  # due within the margin at start-up
    source.dismiss("f/a/2", 3600, NOW)
    stored: dict[str, Any] = {key: dict(e) for key, e in source.by_key.items()}
    stored["zz"] = {"not": "an entry"}
    stored["000009"] = "junk"
    entries, change = Entries.load(stored, NOW)
    assert list(change.written) == ["000000"]
    assert sorted(change.removed) == ["000009", "zz"]
    assert entries.next_key == 3
    dismissed = {e["entry_id"]: e["dismissed"] for e in entries.listed()}
    assert dismissed == {"f/a/1": False, "f/a/2": True, "f/a/3": False}
    assert entries.next_wake() == NOW + 3600
    change = entries.merge("f", feed("f", "f/a/1", "f/a/2", "f/a/3", "f/a/4"))
    assert list(change.written) == ["000003"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(json_values)
def test_load_never_raises(value: Any) -> None:
    entries, _ = Entries.load(value, NOW)
    entries.listed()
    entries.next_wake()
