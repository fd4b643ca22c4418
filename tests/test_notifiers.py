"""[notifier NAME]: job events from print_stats, the sections and templates, and delivery through
apprise's json:// target to a local HTTP server (never the network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.components.notifiers import Notifiers
from trioprint.domain.notifiers import JobEvents, Message, Notifier, NotifierError
from trioprint.registry import Registry, Transport

from .http_double import Request, http_double
from .test_history_component import FakeKlippy


def events(*diffs: dict[str, Any]) -> list[str]:
    tracker = JobEvents()
    out = []
    for diff in diffs:
        out += [name for name, _, _ in tracker.feed(diff)]
    return out


def test_job_events_follow_moonrakers_transitions() -> None:
    base = {"state": "standby", "filename": "", "total_duration": 0.0}
    assert events(base, {"state": "printing", "filename": "a.gcode"}) == ["started"]
    assert events(
        base,
        {"state": "printing", "filename": "a.gcode"},
        {"state": "paused", "total_duration": 5.0},
        {"state": "printing", "total_duration": 6.0},
        {"state": "complete"},
    ) == ["started", "paused", "resumed", "complete"]
    # from idle straight to an end: a start is inferred first
    assert events(base, {"state": "error", "filename": "a.gcode"}) == ["started", "error"]
    # a reprint while paused (no progress) is a new start; standby is no notifier's event
    assert events(
        base,
        {"state": "printing", "filename": "a.gcode"},
        {"state": "paused"},
        {"state": "printing"},
        {"state": "cancelled"},
        {"state": "standby"},
    ) == ["started", "paused", "started", "cancelled", "standby"]
    assert events({"state": "printing"}) == []  # the first status is the baseline


def test_sections_and_templates() -> None:
    n = Notifier(
        "tg",
        {
            "url": "json://127.0.0.1:1/{'hook'}",
            "events": "started, complete",
            "title": "Printer: {event_name|upper}",
            "body": "{event_args[1].filename} is {event_name}{% if event_message %}: "
            "{event_message}{% endif %}",
            "body_format": "Markdown",
            "attach": "http://cam/snap.jpg\n\n/tmp/x.png",
        },
    )
    assert n.url == "json://127.0.0.1:1/hook"
    assert n.hears("started")
    assert not n.hears("paused")
    m = n.message("complete", [{}, {"filename": "cube.gcode"}])
    assert m == Message(
        "json://127.0.0.1:1/hook",
        "Printer: COMPLETE",
        "cube.gcode is complete",
        "markdown",
        ("http://cam/snap.jpg", "/tmp/x.png"),
    )
    assert n.as_dict() == {
        "name": "tg",
        "url": "json://127.0.0.1:1/{'hook'}",
        "title": "Printer: {event_name|upper}",
        "body": n.options["body"],
        "body_format": "Markdown",
        "events": ["started", "complete"],
        "attach": "http://cam/snap.jpg\n\n/tmp/x.png",
    }
    plain = Notifier("p", {"url": "json://h/", "events": "*"})
    assert plain.hears("paused")
    assert not plain.hears("standby")
    assert plain.message("paused", [{}, {}]) == Message("json://h/", "", "paused", "text", ())
    # the sandbox: no way out to Python's internals
    evil = Notifier("e", {"url": "json://h/", "events": "*", "body": "{''.__class__.__mro__}"})
    with pytest.raises(NotifierError, match="template failed"):
        evil.message("started", [{}, {}])
    odd = Notifier("o", {"url": "json://h/", "events": "started, standby"})
    assert "unknown event(s) standby" in odd.warnings[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"events": "*"}, "option 'url' is required"),
        ({"url": "not a url", "events": "*"}, "invalid url"),
        ({"url": "json://h/"}, "option 'events' is required"),
        ({"url": "json://h/", "events": "*", "body_format": "rtf"}, "body_format"),
        ({"url": "json://h/", "events": "*", "body": "{event_name"}, "bad template"),
    ],
)
def test_bad_sections(options: dict[str, str], message: str) -> None:
    with pytest.raises(NotifierError, match=message):
        Notifier("x", options)


def printing(klippy: FakeKlippy, *diffs: dict[str, Any]) -> None:
    for diff in diffs:
        klippy.subscriptions["notifier"][1]({"print_stats": diff}, 0.0)


async def test_delivery_through_apprise_json_to_a_local_server(tmp_path: Path) -> None:
    async def hook(request: Request) -> tuple[int, Any]:
        await trio.lowlevel.checkpoint()
        return 200, {}

    snapshot = tmp_path / "snap.txt"
    snapshot.write_text("a picture")
    async with http_double(hook) as server:
        host = server.url.removeprefix("http://")
        klippy = FakeKlippy()
        warnings: list[str] = []
        sections = {
            "done": {
                "url": f"json://{host}/done",
                "events": "complete, error",
                "title": "{event_name}",
                "body": "{event_args[1].filename} finished",
                "attach": str(snapshot),
            },
            "all": {"url": f"json://{host}/all", "events": "*"},
            "bad": {"url": "nosuchservice://x", "events": "*"},
        }
        notifiers = Notifiers(sections, klippy, warnings=warnings)
        assert list(notifiers.notifiers) == ["done", "all"]
        assert any("[notifier bad]" in w for w in warnings)
        registry = Registry()
        registry.add_component(notifiers)
        ep = registry.by_rpc("server.notifiers.list")
        assert ep is not None
        listed = await registry.dispatch(ep, {}, Transport.WEBSOCKET)
        assert [n["name"] for n in listed["notifiers"]] == ["done", "all"]
        assert listed["notifiers"][1]["events"] == ["*"]
        async with trio.open_nursery() as nursery:
            await nursery.start(notifiers.run)
            printing(
                klippy,
                {"state": "standby", "filename": ""},
                {"state": "printing", "filename": "cube.gcode"},
                {"state": "complete"},
            )
            with trio.fail_after(20):
                await notifiers.wait_deliveries(3)
                await server.wait_requests(3)
            assert sorted(notifiers.delivered) == [
                ("all", "complete", True),
                ("all", "started", True),
                ("done", "complete", True),
            ]
            by_path = {r.target: r for r in server.requests if r.target == "/done"}
            done = by_path["/done"].json()
            assert (done["title"], done["message"], done["type"]) == (
                "complete",
                "cube.gcode finished",
                "info",
            )
            assert done["attachments"][0]["filename"] == "snap.txt"
            nursery.cancel_scope.cancel()


async def test_a_failing_or_stalled_notifier_never_blocks(autojump_clock: Any) -> None:
    klippy = FakeKlippy()
    release = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def stalled(message: Message) -> bool:
        trio.from_thread.run(release.wait, trio_token=token)
        return True

    def broken(message: Message) -> bool:
        raise OSError("no route")

    def pick(message: Message) -> bool:
        return stalled(message) if "stall" in message.url else broken(message)

    notifiers = Notifiers(
        {"s": {"url": "json://stall/", "events": "*"}, "b": {"url": "json://b/", "events": "*"}},
        klippy,
        send=pick,
        check_url=lambda url: True,
        timeout=5.0,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(notifiers.run)
        start = trio.current_time()
        printing(klippy, {"state": "standby"}, {"state": "printing", "filename": "a"})
        # the status callback returned at once; the deliveries end in the background
        await notifiers.wait_deliveries(2)
        assert sorted(notifiers.delivered) == [("b", "started", False), ("s", "started", False)]
        assert trio.current_time() - start == pytest.approx(5.0)
        release.set()
        nursery.cancel_scope.cancel()
