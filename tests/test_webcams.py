"""server.webcams.*: the pure camera logic, the component on a memory store, and a live server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trioprint.components.webcams import ItemParams, Webcams, read_instance_uuid
from trioprint.domain.kv import MemoryStore
from trioprint.domain.webcams import (
    Cameras,
    WebcamError,
    config_uid,
    default_host,
    from_record,
    from_request,
    from_section,
    full_url,
)
from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Transport
from trioprint.transport.http_client import HttpError, HttpResponse

from .live import live_server, rpc_client

UUID = "0123456789abcdef0123456789abcdef"
#: Moonraker 0.11's answer keys, in its order.
FIELDS = [
    "name",
    "enabled",
    "icon",
    "aspect_ratio",
    "target_fps",
    "target_fps_idle",
    "location",
    "service",
    "stream_url",
    "snapshot_url",
    "flip_horizontal",
    "flip_vertical",
    "rotation",
    "source",
    "extra_data",
    "uid",
]


# --- domain ---------------------------------------------------------------------------------


def test_section_defaults_and_stable_uid() -> None:
    cam = from_section("front", {"stream_url": "/webcam/?action=stream"}, UUID)
    d = cam.as_dict()
    assert list(d) == FIELDS
    assert d == {
        "name": "front",
        "enabled": True,
        "icon": "mdiWebcam",
        "aspect_ratio": "4:3",
        "target_fps": 15,
        "target_fps_idle": 5,
        "location": "printer",
        "service": "mjpegstreamer",
        "stream_url": "/webcam/?action=stream",
        "snapshot_url": "",
        "flip_horizontal": False,
        "flip_vertical": False,
        "rotation": 0,
        "source": "config",
        "extra_data": {},
        "uid": config_uid(UUID, "front"),
    }
    assert from_section("front", {"stream_url": "x"}, UUID).uid == d["uid"]
    assert from_section("back", {"stream_url": "x"}, UUID).uid != d["uid"]


def test_section_values_are_typed() -> None:
    cam = from_section(
        "c",
        {"stream_url": "s", "flip_horizontal": "True", "rotation": "90", "target_fps": "30"},
        UUID,
    )
    assert (cam.flip_horizontal, cam.rotation, cam.target_fps) == (True, 90, 30)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "stream_url"),
        ({"stream_url": "s", "rotation": "45"}, "rotation"),
        ({"stream_url": "s", "aspect_ratio": "wide"}, "aspect_ratio"),
        ({"stream_url": "s", "enabled": "maybe"}, "enabled"),
        ({"stream_url": "s", "target_fps": "fast"}, "target_fps"),
    ],
)
def test_bad_section(options: dict[str, str], message: str) -> None:
    with pytest.raises(WebcamError, match=message):
        from_section("c", options, UUID)


def test_request_and_record_round_trip() -> None:
    cam = from_request(
        {"name": "n", "stream_url": "/s", "flip_vertical": True, "extra_data": {"a": 1}}, "u1"
    )
    assert cam.source == "database"
    record = cam.record()
    assert record["urlStream"] == "/s"
    assert record["flipY"] is True
    assert record["aspectRatio"] == "4:3"
    assert "uid" not in record
    assert "source" not in record
    assert from_record("u1", record) == cam


def test_record_from_a_frontend_with_old_names() -> None:
    cam = from_record("u", {"name": "old", "urlStream": "/s", "rotate": 180})
    assert cam.rotation == 180
    assert cam.snapshot_url == ""


def test_request_needs_name_and_stream_url() -> None:
    with pytest.raises(WebcamError, match="name"):
        from_request({"stream_url": "s"}, "u")
    with pytest.raises(WebcamError, match="stream_url"):
        from_request({"name": "n"}, "u")


def test_update_ignores_protected_and_unknown_fields() -> None:
    cam = from_request({"name": "n", "stream_url": "s"}, "u")
    new = cam.updated({"uid": "other", "source": "config", "bogus": 1, "rotation": "270"})
    assert (new.uid, new.source, new.rotation) == ("u", "database", 270)
    with pytest.raises(WebcamError):
        cam.updated({"rotation": 33})


def test_cameras_collisions_and_sources() -> None:
    configured = from_section("front", {"stream_url": "s"}, UUID)
    cams = Cameras([configured])
    problems = cams.load(
        {
            "u1": {"name": "front", "urlStream": "x"},
            "u2": {"name": "side", "urlStream": "y"},
            "u3": "not a camera",
        }
    )
    assert len(problems) == 2
    assert [c["name"] for c in cams.listed()] == ["front", "side"]
    with pytest.raises(WebcamError, match="configuration"):
        cams.delete(configured)
    with pytest.raises(WebcamError, match="configuration"):
        cams.post(configured, {"stream_url": "z"}, "new")
    side = cams.by_name["side"]
    with pytest.raises(WebcamError, match="already exists"):
        cams.post(side, {"name": "front"}, "new")
    renamed = cams.post(side, {"name": "rear"}, "new")
    assert renamed.uid == "u2"
    assert sorted(cams.by_name) == ["front", "rear"]


def test_urls() -> None:
    assert full_url("/webcam/?action=snapshot") == "http://127.0.0.1/webcam/?action=snapshot"
    assert full_url("http://cam:8080/x") == "http://cam:8080/x"
    assert full_url("x", default_host("fe80::1")) == "http://[fe80::1]/x"
    with pytest.raises(WebcamError):
        full_url("")


# --- component ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any] | None]] = []

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        self.sent.append((method, params))


def item(args: dict[str, Any], verb: str) -> Call[ItemParams]:
    return Call(ItemParams.from_args(args), Transport.WEBSOCKET, verb)


async def started(tmp_path: Path, sections: Any = None, **kw: Any) -> tuple[Webcams, Recorder]:
    db = kw.pop("db", None) or MemoryStore()
    ws = Recorder()
    cams = Webcams(sections or {}, db, ws, tmp_path, **kw)
    await cams.run()
    return cams, ws


async def test_instance_uuid_is_kept(tmp_path: Path) -> None:
    first = read_instance_uuid(tmp_path)
    assert (tmp_path / ".moonraker.uuid").read_text() == first
    assert read_instance_uuid(tmp_path) == first


async def test_post_get_delete_and_notifications(tmp_path: Path) -> None:
    db = MemoryStore()
    cams, ws = await started(tmp_path, {"front": {"stream_url": "/s"}}, db=db)
    listed = await cams.list_webcams(Call(NoParams(), Transport.WEBSOCKET, "GET"))
    assert [c["name"] for c in listed["webcams"]] == ["front"]

    posted = await cams.item(item({"name": "side", "stream_url": "/side"}, "POST"))
    uid = posted["webcam"]["uid"]
    assert db.data["webcams"][uid]["urlStream"] == "/side"
    method, params = ws.sent[-1]
    assert method == "notify_webcams_changed"
    assert params is not None
    assert [c["name"] for c in params[0]["webcams"]] == ["front", "side"]

    got = await cams.item(item({"uid": uid}, "GET"))
    assert got == posted
    updated = await cams.item(item({"uid": uid, "name": "rear", "rotation": 90}, "POST"))
    assert updated["webcam"]["name"] == "rear"
    assert updated["webcam"]["uid"] == uid
    assert db.data["webcams"][uid]["rotation"] == 90

    # a restart reads it back, with the configured camera's uid unchanged
    again, _ = await started(tmp_path, {"front": {"stream_url": "/s"}}, db=db)
    assert again.cameras.listed() == cams.cameras.listed()

    deleted = await cams.item(item({"name": "rear"}, "DELETE"))
    assert deleted["webcam"]["uid"] == uid
    assert "webcams" not in db.data
    assert len(ws.sent) == 3


async def test_errors(tmp_path: Path) -> None:
    warnings: list[str] = []
    sections = {"front": {"stream_url": "/s"}, "bad": {"rotation": "1"}}
    cams, ws = await started(tmp_path, sections, warnings=warnings)
    assert warnings == ["[webcam bad]: Option 'stream_url' is required; ignored"]
    cases = [
        ({"name": "nope"}, "GET", 404),
        ({"uid": "nope"}, "GET", 404),
        ({}, "GET", 400),
        ({"name": "front"}, "DELETE", 400),
        ({"name": "front", "stream_url": "/x"}, "POST", 400),
        ({"name": "new"}, "POST", 400),
        ({"name": "new", "stream_url": "/x", "rotation": 7}, "POST", 400),
    ]
    for args, verb, status in cases:
        with pytest.raises(ApiError) as info:
            await cams.item(item(args, verb))
        assert info.value.status == status, (args, verb)
    assert ws.sent == []
    assert [c["name"] for c in cams.cameras.listed()] == ["front"]


async def test_test_endpoint(tmp_path: Path) -> None:
    asked: list[str] = []

    async def fetch(url: str, **kw: Any) -> HttpResponse:
        asked.append(url)
        if "down" in url:
            raise HttpError("refused")
        return HttpResponse(200, {}, b"jpeg", url)

    sections = {
        "up": {"stream_url": "/s", "snapshot_url": "/snap"},
        "down": {"stream_url": "http://down/s", "snapshot_url": "http://down/snap"},
        "none": {"stream_url": "/s"},
    }
    cams, _ = await started(tmp_path, sections, fetch=fetch)
    up = await cams.test(item({"name": "up"}, "POST"))
    assert up == {
        "name": "up",
        "snapshot_reachable": True,
        "snapshot_url": "http://127.0.0.1/snap",
        "stream_url": "http://127.0.0.1/s",
    }
    down = await cams.test(item({"name": "down"}, "POST"))
    assert down["snapshot_reachable"] is False
    none = await cams.test(item({"name": "none"}, "POST"))
    assert none["snapshot_url"] == ""
    assert none["snapshot_reachable"] is False
    assert asked == ["http://127.0.0.1/snap", "http://down/snap"]


# --- live -----------------------------------------------------------------------------------


async def test_live_websocket_and_http(tmp_path: Path) -> None:
    import httpx

    conf = tmp_path / "trioprint.conf"
    conf.write_text("[webcam front]\nstream_url: /webcam/?action=stream\n")
    async with live_server(tmp_path, conf) as live, rpc_client(live.ws) as rpc:
        info = await rpc.call("server.info")
        assert "webcam" in info["result"]["components"]
        listed = await rpc.call("server.webcams.list")
        assert [c["name"] for c in listed["result"]["webcams"]] == ["front"]
        posted = await rpc.call("server.webcams.post_item", {"name": "side", "stream_url": "/side"})
        assert posted["result"]["webcam"]["source"] == "database"
        note = await rpc.notification("notify_webcams_changed")
        assert len(note["params"][0]["webcams"]) == 2
        missing = await rpc.call("server.webcams.get_item", {"name": "nope"})
        # Moonraker answers a 404 as -32601 over JSON-RPC
        assert missing["error"] == {"code": -32601, "message": "Webcam nope not found"}
        async with httpx.AsyncClient(base_url=live.http) as client:
            r = await client.get("/server/webcams/item", params={"name": "side"})
            assert r.json()["result"]["webcam"]["stream_url"] == "/side"
            r = await client.delete("/server/webcams/item", params={"name": "side"})
            assert r.status_code == 200
            r = await client.get("/server/webcams/list")
            assert json.loads(r.text)["result"]["webcams"][0]["name"] == "front"
