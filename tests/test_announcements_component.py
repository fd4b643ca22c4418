"""The announcements component against a local feed server on 127.0.0.1, and without one."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import trio
import trio.testing

from trioprint.components.announcements import Announcements
from trioprint.config import AnnouncementsConfig
from trioprint.domain.kv import MemoryStore
from trioprint.errors import ApiError
from trioprint.registry import Call, Transport
from trioprint.transport.http_client import HttpError, HttpResponse, http_get

from .test_announcements import item, rss

WAIT = 10.0


@attrs.define
class Page:
    body: bytes
    etag: str | None = None
    status: int = 200
    headers: list[tuple[str, str]] = attrs.Factory(list)
    chunked: bool = False


class FeedServer:
    """An HTTP/1.1 server on 127.0.0.1:0 serving ``pages`` by path; records each request."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.hang = False  # accept, read the request, never answer
        self.hanging = trio.Event()
        self.port = 0

    def url(self, template: str = "/{name}.xml") -> str:
        return f"http://127.0.0.1:{self.port}{template}"

    async def serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        with contextlib.suppress(trio.BrokenResourceError, h11.ProtocolError):
            request: h11.Request | None = None
            while request is None:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    request = event
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            path = request.target.decode()
            self.requests.append((path, headers))
            if self.hang:
                self.hanging.set()
                await trio.sleep_forever()
            page = self.pages.get(path, Page(b"missing", status=404))
            status, body = page.status, page.body
            out = [*page.headers]
            if page.etag is not None:
                out.append(("ETag", page.etag))
                if headers.get("if-none-match") == page.etag:
                    status, body = 304, b""
            if page.chunked and status == 200:
                out.append(("Transfer-Encoding", "chunked"))
            else:
                out.append(("Content-Length", str(len(body))))
            data = conn.send(h11.Response(status_code=status, headers=out))
            if body:
                half = len(body) // 2
                data += conn.send(h11.Data(data=body[:half])) + conn.send(
                    h11.Data(data=body[half:])
                )
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
        await stream.aclose()


@contextlib.asynccontextmanager
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


class Sockets:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.arrived = trio.Event()

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        assert params is not None
        assert len(params) == 1
        self.sent.append((method, params[0]))
        self.arrived.set()
        self.arrived = trio.Event()

    def methods(self) -> list[str]:
        return [m for m, _ in self.sent]

    async def wait(self, method: str) -> Any:
        while True:
            for m, p in self.sent:
                if m == method:
                    return p
            await self.arrived.wait()


def call(params: Any, verb: str = "POST") -> Call[Any]:
    return Call(params, Transport.WEBSOCKET, verb)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    db: MemoryStore | None = None,
    *,
    clock: Callable[[], float] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Announcements, Sockets, MemoryStore]]:
    db = db if db is not None else MemoryStore()
    sockets = Sockets()
    fetch = options.pop("fetch", http_get)
    timeout = options.pop("timeout", 10.0)
    component = Announcements(
        AnnouncementsConfig(**options),
        db,
        sockets,
        tmp_path,
        fetch=fetch,
        timeout=timeout,
        **({"clock": clock} if clock is not None else {}),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(component.run)
        yield component, sockets, db
        nursery.cancel_scope.cancel()


MOONRAKER = rss(
    "moonraker",
    item("moonraker/issue/1", "Old news", "Mon, 01 Jan 2024 00:00:00 GMT"),
    item("moonraker/issue/2", "New news", "Mon, 01 Jan 2025 00:00:00 GMT"),
).encode()
KLIPPER = rss("klipper", item("klipper/issue/9", "Klipper news")).encode()


async def test_feeds_are_fetched_in_the_background_listed_and_stored(tmp_path: Path) -> None:
    async with feed_server() as server:
        server.pages["/moonraker.xml"] = Page(MOONRAKER, etag='"m1"')
        server.pages["/klipper.xml"] = Page(KLIPPER, chunked=True)
        opts = {"feed_url": server.url(), "subscriptions": ("Mainsail",)}
        async with running(tmp_path, **opts) as (ann, sockets, db):
            with trio.fail_after(WAIT):
                await ann.wait_updates()
                listed = await ann.list_entries(call(_list(), "GET"))
                feeds = await ann.list_feeds(call(None, "GET"))
        update = sockets.sent[0]
        stored = await db.get_item("announcements")
        etag = await db.get_item("moonraker", ["announcements", "moonraker", "etag"])
    assert feeds == {"feeds": ["moonraker", "klipper", "mainsail"]}
    assert listed["feeds"] == ["moonraker", "klipper", "mainsail"]
    ids = [e["entry_id"] for e in listed["entries"]]
    # newest first: 2025, 2024, then klipper's of 2023
    assert ids == ["moonraker/issue/2", "moonraker/issue/1", "klipper/issue/9"]
    assert update == ("notify_announcement_update", {"entries": listed["entries"]})
    assert sorted(e["entry_id"] for e in stored.values()) == sorted(ids)
    assert sorted(stored) == ["000000", "000001", "000002"]
    assert etag == '"m1"'
    # the feeds were asked for as Moonraker asks; mainsail's 404 is just no news
    paths = sorted(path for path, _ in server.requests)
    assert paths == ["/klipper.xml", "/mainsail.xml", "/moonraker.xml"]
    assert all(h["accept"] == "application/xml" for _, h in server.requests)
    assert all("if-none-match" not in h for _, h in server.requests)


def _list(include_dismissed: bool = True) -> Any:
    from trioprint.components.announcements import ListParams

    return ListParams(include_dismissed)


def _update(*names: str) -> Any:
    from trioprint.components.announcements import UpdateParams

    return UpdateParams(list(names) if names else None)


def _dismiss(entry_id: str, wake: int | None = None) -> Any:
    from trioprint.components.announcements import DismissParams

    return DismissParams(entry_id, wake)


def _feed(name: str) -> Any:
    from trioprint.components.announcements import FeedParams

    return FeedParams(name)


async def test_update_uses_the_etag_and_follows_the_feed(tmp_path: Path) -> None:
    async with feed_server() as server:
        server.pages["/moonraker.xml"] = Page(MOONRAKER, etag='"m1"')
        async with running(tmp_path, feed_url=server.url()) as (ann, sockets, db):
            with trio.fail_after(WAIT):
                await ann.wait_updates()
                server.requests.clear()
                same = await ann.update(call(_update("moonraker")))
                assert server.requests[0][1]["if-none-match"] == '"m1"'
                # the feed changes: issue 1 is gone, issue 3 is new
                server.pages["/moonraker.xml"] = Page(
                    rss("moonraker", item("moonraker/issue/2"), item("moonraker/issue/3")).encode(),
                    etag='"m2"',
                )
                count = len(sockets.sent)
                changed = await ann.update(call(_update()))
                with pytest.raises(ApiError, match="No subscription for nope"):
                    await ann.update(call(_update("nope")))
            stored = await db.get_item("announcements")
    assert same["modified"] is False
    assert len(same["entries"]) == 2
    assert changed["modified"] is True
    assert sorted(e["entry_id"] for e in changed["entries"]) == [
        "moonraker/issue/2",
        "moonraker/issue/3",
    ]
    assert sockets.methods()[count:] == ["notify_announcement_update"]
    assert sorted(e["entry_id"] for e in stored.values()) == [
        "moonraker/issue/2",
        "moonraker/issue/3",
    ]


async def test_redirects_are_followed(tmp_path: Path) -> None:
    async with feed_server() as server:
        server.pages["/old/klipper.xml"] = Page(
            b"", status=301, headers=[("Location", "/new/klipper.xml")]
        )
        server.pages["/new/klipper.xml"] = Page(KLIPPER)
        response = await http_get(server.url("/old/klipper.xml"))
    assert response.status == 200
    assert response.body == KLIPPER
    assert response.url.endswith("/new/klipper.xml")


async def test_a_body_over_the_limit_is_refused() -> None:
    async with feed_server() as server:
        server.pages["/big.xml"] = Page(b"x" * 5000, chunked=True)
        with pytest.raises(HttpError, match="larger than 1000 bytes"):
            await http_get(server.url("/big.xml"), max_body=1000)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///nohost", "http://127.0.0.1:99999/"])
async def test_unusable_urls(url: str) -> None:
    with pytest.raises(HttpError):
        await http_get(url)


async def test_a_feed_with_a_dtd_is_not_used_and_fetched_again_in_full(tmp_path: Path) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">]>'
        b"<rss><channel><title>&a;</title></channel></rss>"
    )
    async with feed_server() as server:
        server.pages["/moonraker.xml"] = Page(bomb, etag='"bad"')
        async with running(tmp_path, feed_url=server.url()) as (ann, _, db):
            with trio.fail_after(WAIT):
                await ann.wait_updates()
                server.requests.clear()
                result = await ann.update(call(_update("moonraker")))
        etag = await db.get_item("moonraker", ["announcements", "moonraker", "etag"], default=None)
    assert result == {"entries": [], "modified": False}
    assert etag is None
    assert "if-none-match" not in server.requests[0][1]


async def test_dismissal_wakes_after_its_wake_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def fetch(url: str, headers: Any, **_: Any) -> HttpResponse:
        if "moonraker" in url:
            return HttpResponse(200, {}, MOONRAKER, url)
        raise HttpError("no network")

    clock = lambda: 1_700_000_000.0 + trio.current_time()  # noqa: E731
    db = MemoryStore()
    async with running(tmp_path, db, clock=clock, fetch=fetch) as (ann, sockets, _):
        await ann.wait_updates()
        with pytest.raises(ApiError, match="No key matching entry id: nope"):
            await ann.dismiss(call(_dismiss("nope")))
        assert await ann.dismiss(call(_dismiss("moonraker/issue/1", 3600))) == {
            "entry_id": "moonraker/issue/1"
        }
        await ann.dismiss(call(_dismiss("moonraker/issue/2")))
        dismissed_at = trio.current_time()
        shown = await ann.list_entries(call(_list(False), "GET"))
        assert shown["entries"] == []
        stored = await db.get_item("announcements")
        assert [e["dismissed"] for e in stored.values()] == [True, True]
        woken = await sockets.wait("notify_announcement_wake")
        assert trio.current_time() - dismissed_at == pytest.approx(3600)
        shown = await ann.list_entries(call(_list(False), "GET"))
    assert woken == {"entry_id": "moonraker/issue/1"}
    assert [e["entry_id"] for e in shown["entries"]] == ["moonraker/issue/1"]
    assert [m for m in sockets.methods() if m != "notify_announcement_update"] == [
        "notify_announcement_dismissed",
        "notify_announcement_dismissed",
        "notify_announcement_wake",
    ]
    stored = await db.get_item("announcements")
    assert {e["entry_id"]: e["dismissed"] for e in stored.values()} == {
        "moonraker/issue/1": False,
        "moonraker/issue/2": True,
    }


async def test_feeds_added_and_removed_and_everything_kept_across_a_restart(
    tmp_path: Path,
) -> None:
    db = MemoryStore()
    async with feed_server() as server:
        server.pages["/moonraker.xml"] = Page(MOONRAKER)
        server.pages["/fluidd.xml"] = Page(rss("fluidd", item("fluidd/issue/5")).encode())
        opts = {"feed_url": server.url(), "subscriptions": ("mainsail",)}
        async with running(tmp_path, db, **opts) as (ann, sockets, _):
            with trio.fail_after(WAIT):
                await ann.wait_updates()
                added = await ann.feed(call(_feed("Fluidd")))
                again = await ann.feed(call(_feed("fluidd")))
                await ann.dismiss(call(_dismiss("moonraker/issue/2")))
                with pytest.raises(ApiError, match="Feed 'mainsail' not stored"):
                    await ann.feed(call(_feed("mainsail"), "DELETE"))
                with pytest.raises(ApiError, match="invalid feed name"):
                    await ann.feed(call(_feed("../../etc/passwd")))
                listed = await ann.list_entries(call(_list(), "GET"))
        assert added == {"feed": "fluidd", "action": "added"}
        assert again == {"feed": "fluidd", "action": "skipped"}
        assert listed["feeds"] == ["moonraker", "klipper", "mainsail", "fluidd"]
        assert "fluidd/issue/5" in [e["entry_id"] for e in listed["entries"]]
        # a restart: the added feed, the entries and the dismissal are still there, even with
        # the feed server gone
        server.pages.clear()
        async with running(tmp_path, db, **opts) as (ann, sockets, _):
            with trio.fail_after(WAIT):
                await ann.wait_updates()
                after = await ann.list_entries(call(_list(), "GET"))
                removed = await ann.feed(call(_feed("fluidd"), "DELETE"))
                update = await sockets.wait("notify_announcement_update")
                with pytest.raises(ApiError, match="Feed 'fluidd' not stored"):
                    await ann.feed(call(_feed("fluidd"), "DELETE"))
                final = await ann.list_entries(call(_list(), "GET"))
    assert after["feeds"] == ["moonraker", "klipper", "mainsail", "fluidd"]
    assert after["entries"] == listed["entries"]
    assert {e["entry_id"]: e["dismissed"] for e in after["entries"]}["moonraker/issue/2"] is True
    assert removed == {"feed": "fluidd", "action": "removed"}
    assert "fluidd/issue/5" not in [e["entry_id"] for e in update["entries"]]
    assert final["feeds"] == ["moonraker", "klipper", "mainsail"]
    assert await db.get_item("moonraker", ["announcements", "stored_feeds"]) == []


async def test_a_configured_feed_cannot_be_removed(tmp_path: Path) -> None:
    db = MemoryStore()
    await db.insert_item("moonraker", ["announcements", "stored_feeds"], ["mainsail"])
    async with running(tmp_path, db, subscriptions=("mainsail",)) as (ann, _, _):
        with pytest.raises(ApiError, match="exists in the configuration, cannot remove"):
            await ann.feed(call(_feed("mainsail"), "DELETE"))


async def test_no_answer_never_delays_a_client(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with feed_server() as server:
        server.hang = True
        async with running(tmp_path, feed_url=server.url(), timeout=10.0) as (ann, _, _):
            await server.hanging.wait()  # the background fetch is under way, unanswered
            start = trio.current_time()
            listed = await ann.list_entries(call(_list(), "GET"))
            feeds = await ann.list_feeds(call(None, "GET"))
            assert trio.current_time() == start  # no time passed: nothing was waited for
            assert ann.updates == 0
            update = await ann.update(call(_update("klipper")))
            waited = trio.current_time() - start
    assert listed == {"entries": [], "feeds": ["moonraker", "klipper"]}
    assert feeds == {"feeds": ["moonraker", "klipper"]}
    assert update == {"entries": [], "modified": False}
    # the klipper feed waited for the background fetch of it, then for its own: each bounded
    assert 10.0 <= waited <= 20.0 + 1


async def test_a_refused_connection_fails_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{{name}}.xml"
    async with running(tmp_path, feed_url=url) as (ann, sockets, _):
        start = trio.current_time()
        await ann.wait_updates()
        update = await ann.update(call(_update()))
        elapsed = trio.current_time() - start
    assert elapsed < 1.0
    assert update == {"entries": [], "modified": False}
    assert sockets.sent == []


async def test_enable_moonlight_false_fetches_nothing(tmp_path: Path) -> None:
    async def fetch(url: str, headers: Any, **_: Any) -> HttpResponse:
        raise AssertionError("no fetch expected")

    async with running(tmp_path, fetch=fetch, enable_moonlight=False) as (ann, _, _):
        with trio.fail_after(WAIT):
            await ann.wait_updates()
            result = await ann.update(call(_update()))
    assert result == {"entries": [], "modified": False}


async def test_dev_mode_reads_the_local_folder(tmp_path: Path) -> None:
    async def fetch(url: str, headers: Any, **_: Any) -> HttpResponse:
        raise AssertionError("no fetch expected")

    folder = tmp_path / "development" / "announcements"
    async with running(tmp_path, fetch=fetch, dev_mode=True) as (ann, _, _):
        with trio.fail_after(WAIT):
            await ann.wait_updates()
            assert folder.is_dir()
            (folder / "klipper.xml").write_bytes(KLIPPER)
            first = await ann.update(call(_update("klipper")))
            again = await ann.update(call(_update("klipper")))  # the file did not change
    assert first["modified"] is True
    assert [e["entry_id"] for e in first["entries"]] == ["klipper/issue/9"]
    assert again["modified"] is False


def test_the_feed_url_option_is_checked(tmp_path: Path) -> None:
    from trioprint.config import load_config
    from trioprint.errors import ConfigError

    conf = tmp_path / "moonraker.conf"
    conf.write_text("[announcements]\nfeed_url: http://127.0.0.1:1/feeds.xml\n")
    with pytest.raises(ConfigError, match=r"\[announcements\] feed_url: expected"):
        load_config(conf, tmp_path)
    conf.write_text("[announcements]\nsubscriptions:\n  Mainsail\n  fluidd\ndev_mode: true\n")
    options = load_config(conf, tmp_path).announcements
    assert options == AnnouncementsConfig(("mainsail", "fluidd"), True, True, None)


async def test_a_bad_subscription_name_is_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    ann = Announcements(
        AnnouncementsConfig(subscriptions=("ok", "../x")),
        MemoryStore(),
        Sockets(),
        tmp_path,
        warnings=warnings,
    )
    assert list(ann.feeds) == ["moonraker", "klipper", "ok"]
    assert len(warnings) == 1
    assert "../x" in warnings[0]


async def test_a_live_server_lists_the_component_and_serves_its_feeds(tmp_path: Path) -> None:
    import httpx

    from .live import live_server

    async with feed_server() as server:
        server.pages["/moonraker.xml"] = Page(MOONRAKER)
        conf = tmp_path / "moonraker.conf"
        conf.write_text(f"[announcements]\nfeed_url: {server.url()}\n")
        async with live_server(tmp_path, conf) as live:
            component = live.instance.announcements
            async with httpx.AsyncClient(base_url=live.http) as http:
                with trio.fail_after(WAIT):
                    await component.wait_updates()
                    info = (await http.get("/server/info")).json()["result"]
                    listed = (await http.get("/server/announcements/list")).json()["result"]
                    dismissed = await http.post(
                        "/server/announcements/dismiss",
                        json={"entry_id": "moonraker/issue/1", "wake_time": 60},
                    )
                    bad = await http.post(
                        "/server/announcements/dismiss", json={"entry_id": "nope"}
                    )
                    shown = (
                        await http.get("/server/announcements/list?include_dismissed=false")
                    ).json()["result"]
    assert "announcements" in info["components"]
    assert "job_queue" in info["components"]
    assert [e["entry_id"] for e in listed["entries"]] == ["moonraker/issue/2", "moonraker/issue/1"]
    assert listed["feeds"] == ["moonraker", "klipper"]
    assert dismissed.json() == {"result": {"entry_id": "moonraker/issue/1"}}
    assert bad.status_code == 400
    assert [e["entry_id"] for e in shown["entries"]] == ["moonraker/issue/2"]
