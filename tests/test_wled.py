"""WLED strips: the pure rules, the component against a local HTTP double of WLED's JSON API,
klippy's remote methods, and the live routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trioprint.components.power import BatchParams
from trioprint.components.wled import StripParams, Wled
from trioprint.domain import wled as dw
from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Transport
from trioprint.transport.http_client import HttpError, HttpResponse

from .http_peer import Peer, Seen, http_peer

# --- the pure rules ---------------------------------------------------------------------------


def opts(**options: str) -> dw.StripOptions:
    parsed, warnings = dw.strip_options("s", {"address": "10.0.0.9", **options})
    assert warnings == []
    return parsed


def test_options_defaults_and_problems() -> None:
    o = opts()
    assert o.state_url == "http://10.0.0.9:80/json/state"
    assert o.info_url == "http://10.0.0.9:80/json/info"
    assert (o.timeout, o.initial_preset, o.chain_count) == (2.0, -1, 1)
    assert o.initial_color == (0.5, 0.5, 0.5, 0.5)
    o = opts(port="8080", protocol="https", chain_count="30", initial_preset="3")
    assert o.state_url == "https://10.0.0.9:8080/json/state"
    assert (o.chain_count, o.initial_preset) == (30, 3)
    assert opts(address="wled.local:81").state_url == "http://wled.local:81/json/state"
    assert opts(address="[fe80::1]").state_url == "http://[fe80::1]:80/json/state"
    _, warnings = dw.strip_options("s", {"address": "a", "color_order": "RGB", "speed": "1"})
    assert warnings == [
        "[wled s] speed: unknown option, ignored",
        "[wled s] color_order: deprecated (every strip is RGBW), ignored",
    ]
    bad = {
        "type: serial strips are not supported": {"type": "serial", "serial": "/dev/ttyUSB0"},
        "Unsupported Strip Type: udp": {"type": "udp", "address": "a"},
        "address: required": {},
        "chain_count: expected at least 1": {"address": "a", "chain_count": "0"},
        "initial_red: expected a number from 0 to 1": {"address": "a", "initial_red": "2"},
        "port: expected an integer": {"address": "a", "port": "x"},
    }
    for message, options in bad.items():
        with pytest.raises(dw.WledConfigError, match=message):
            dw.strip_options("s", options)


def test_initial_state_without_and_with_a_preset() -> None:
    strip = dw.Strip(opts(chain_count="3", initial_red="1", initial_green="0"))
    assert strip.info()["status"] == "off"
    assert strip.initial() == [
        {"on": True, "tt": 0, "bri": 255, "seg": {"bri": 255, "i": [0, 3, [255, 0, 128, 128]]}}
    ]
    assert strip.info() == {
        "strip": "s", "status": "on", "chain_count": 3, "preset": -1, "brightness": 255,
        "intensity": -1, "speed": -1, "error": None,
    }  # fmt: skip
    strip = dw.Strip(opts(initial_preset="2"))
    assert strip.initial() == [{"on": True, "ps": 2}]
    assert strip.info()["preset"] == 2
    assert strip.info()["brightness"] == -1
    assert strip.pixel(1) == [128, 128, 128, 128]


def test_set_color_sends_the_whole_chain_after_off_and_then_one_led() -> None:
    strip = dw.Strip(opts(chain_count="2"))
    strip.initial()
    assert strip.turn_off() == [{"on": False}]
    first = strip.set_color((1.0, 0.0, 0.0, 0.0), 2)
    full = {"on": True, "tt": 0, "bri": 255,
            "seg": {"bri": 255, "i": [[128, 128, 128, 128], [255, 0, 0, 0]]}}  # fmt: skip
    assert first == [full, full]  # twice from off
    assert strip.set_color((0.0, 0.0, 1.0, 0.0), 1) == [
        {"on": True, "tt": 0, "bri": 255, "seg": {"bri": 255, "i": [0, [0, 0, 255, 0]]}}
    ]
    assert strip.set_color((0.0, 1.0, 0.0, 0.0), 1, transmit=False) == []
    sent = strip.set_color((0.0, 1.0, 0.0, 0.0), 2)  # after a non-transmitted one: the chain
    assert sent[0]["seg"]["i"] == [[0, 255, 0, 0], [0, 255, 0, 0]]
    assert strip.set_color((2.0, -1.0, 0.0, 0.0), None)[0]["seg"]["i"] == [0, 2, [255, 0, 0, 0]]
    with pytest.raises(ValueError, match="index 3 is not from 1 to 2"):
        strip.set_color((1.0, 1.0, 1.0, 1.0), 3)


def test_control_needs_the_strip_on_and_a_preset_for_intensity_and_speed() -> None:
    strip = dw.Strip(opts())
    assert strip.control(100) == []  # off
    strip.initial()
    assert strip.control(100, 50, 60) == [{"tt": 0, "bri": 100}]  # no preset: brightness only
    assert strip.control(0, 300, 1) == []
    strip.turn_on(4)
    assert strip.control(-1, 50, 60) == [{"tt": 0, "seg": {"ix": 50, "sx": 60}}]
    assert strip.control(200) == [{"tt": 0, "bri": 200, "seg": {"bri": 200}}]
    assert strip.info() | {} == {
        "strip": "s", "status": "on", "chain_count": 1, "preset": 4, "brightness": 200,
        "intensity": 50, "speed": 60, "error": None,
    }  # fmt: skip
    assert dw.wanted("toggle", strip) == "off"


def test_remote_method_arguments() -> None:
    req = dw.state_request({"strip": "s", "state": True, "preset": 3})
    assert req == dw.StateRequest("s", True, 3)
    assert dw.state_request({"strip": "s", "state": "OFF"}).state is False
    assert dw.state_request({"strip": "s", "brightness": "40"}).brightness == 40
    with pytest.raises(ValueError, match="no state, preset or control"):
        dw.state_request({"strip": "s"})
    with pytest.raises(ValueError, match="state: expected on or off"):
        dw.state_request({"strip": "s", "state": "blink"})
    with pytest.raises(ValueError, match="preset: expected an integer"):
        dw.state_request({"strip": "s", "preset": 1.5})
    color = dw.color_request({"strip": "s", "red": 1, "blue": "0.5", "index": -1, "transmit": 0})
    assert color == dw.ColorRequest("s", (1.0, 0.0, 0.5, 0.0), None, False)
    assert dw.color_request({"strip": "s", "index": 2}).transmit is True
    with pytest.raises(ValueError, match="green: expected a number"):
        dw.color_request({"strip": "s", "green": "x"})
    strip = dw.Strip(opts())
    assert dw.StateRequest("s", False, 2).apply(strip) == [{"on": False}, {"on": True, "ps": 2}]


# --- the component against a WLED double ------------------------------------------------------


class FakeWled:
    """WLED's ``/json/state`` (merges what it is sent) and ``/json/info``."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"on": False, "bri": 128, "ps": -1}
        self.fail = False

    def __call__(self, seen: Seen) -> tuple[int, Any]:
        if self.fail:
            return 500, {"error": 9}
        if seen.method == "GET" and seen.target == "/json/info":
            return 200, {"name": "Shelf", "ver": "0.14.0", "leds": {"count": 30}}
        if seen.method == "POST" and seen.target == "/json/state":
            self.state.update(seen.json())
            return 200, {"success": True}
        return 404, b"not found"

    @staticmethod
    def posted(peer: Peer, since: int = 0) -> list[Any]:
        return [s.json() for s in peer.seen[since:] if s.method == "POST"]


class FakeKlippy:
    def __init__(self) -> None:
        self.methods: dict[str, Any] = {}

    def register_remote_method(self, name: str, callback: Any) -> None:
        self.methods[name] = callback


def call(params: Any, verb: str = "GET") -> Call[Any]:
    return Call(params=params, verb=verb, transport=Transport.HTTP)


@asynccontextmanager
async def running(
    sections: Mapping[str, Mapping[str, str]], **kwargs: Any
) -> AsyncIterator[tuple[Wled, FakeKlippy, list[str]]]:
    klippy, warnings = FakeKlippy(), []
    wled = Wled(sections, klippy, warnings=warnings, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(wled.run)
        with trio.fail_after(200):  # up to 2 minutes of start-up tries
            await wled.initialized.wait()
        yield wled, klippy, warnings
        nursery.cancel_scope.cancel()


def section(peer: Peer, **extra: str) -> dict[str, str]:
    return {"address": "127.0.0.1", "port": str(peer.port), **extra}


async def test_start_up_endpoints_and_batch() -> None:
    fake = FakeWled()
    async with (
        http_peer(fake) as peer,
        running({"shelf": section(peer, chain_count="10")}) as (wled, _, warnings),
    ):
        assert warnings == []
        assert [(s.method, s.target) for s in peer.seen] == [
            ("GET", "/json/info"),
            ("POST", "/json/state"),
        ]
        assert peer.seen[1].headers["content-type"] == "application/json"
        assert fake.state["seg"] == {"bri": 255, "i": [0, 10, [128, 128, 128, 128]]}
        listed = await wled.list_strips(call(NoParams()))
        info = listed["strips"]["shelf"]
        assert (info["strip"], info["status"], info["chain_count"]) == ("shelf", "on", 10)

        off = await wled.off(call(BatchParams(("shelf", "nope")), "POST"))
        assert off["shelf"]["status"] == "off"
        assert off["nope"] == {"error": "strip_not_found"}
        assert fake.state["on"] is False
        toggled = await wled.toggle(call(BatchParams(("shelf",)), "POST"))
        assert toggled["shelf"]["status"] == "on"  # back to the initial colour
        assert fake.state["on"] is True
        status = await wled.status(call(BatchParams.from_args({"shelf": "", "token": "x"})))
        assert status["shelf"]["status"] == "on"

        since = len(peer.seen)
        post = StripParams("shelf", "on", preset=5, brightness=90, intensity=20, speed=30)
        result = await wled.strip(call(post, "POST"))
        assert result["shelf"] | {} == {
            "strip": "shelf", "status": "on", "chain_count": 10, "preset": 5,
            "brightness": 90, "intensity": 20, "speed": 30, "error": None,
        }  # fmt: skip
        assert FakeWled.posted(peer, since) == [
            {"on": True, "ps": 5},
            {"tt": 0, "bri": 90, "seg": {"bri": 90, "ix": 20, "sx": 30}},
        ]
        control = StripParams("shelf", "CONTROL", brightness=10)
        assert (await wled.strip(call(control, "POST")))["shelf"]["brightness"] == 10
        assert (await wled.strip(call(StripParams("shelf"))))["shelf"]["preset"] == 5
        assert (await wled.on(call(BatchParams(("shelf",)), "POST")))["shelf"]["preset"] == -1


async def test_errors_are_moonraker_s_and_a_failing_strip_is_its_error() -> None:
    fake = FakeWled()
    async with http_peer(fake) as peer, running({"shelf": section(peer)}) as (wled, _, _w):
        with pytest.raises(ApiError, match="No valid strip named lamp") as info:
            await wled.strip(call(StripParams("lamp")))
        assert info.value.status == 400
        with pytest.raises(ApiError, match="Invalid requested action 'blink'"):
            await wled.strip(call(StripParams("shelf", "blink"), "POST"))
        with pytest.raises(ApiError, match="No data for argument: action"):
            await wled.strip(call(StripParams("shelf"), "POST"))
        with pytest.raises(ApiError, match="No arguments provided"):
            await wled.on(call(BatchParams(()), "POST"))
        fake.fail = True
        with pytest.raises(ApiError, match="WLED: Error HTTP status 500") as info:
            await wled.off(call(BatchParams(("shelf",)), "POST"))
        assert info.value.status == 400
        assert len(peer.seen) == 2 + 3  # start-up, then three tries
        listed = await wled.list_strips(call(NoParams()))
        assert listed["strips"]["shelf"]["error"] == "WLED: Error HTTP status 500"
        fake.fail = False
        await wled.off(call(BatchParams(("shelf",)), "POST"))
        assert (await wled.list_strips(call(NoParams())))["strips"]["shelf"]["error"] is None


async def test_klippy_remote_methods_reach_the_strip() -> None:
    fake = FakeWled()
    async with (
        http_peer(fake) as peer,
        running({"shelf": section(peer, chain_count="2")}) as (wled, klippy, _),
    ):
        assert set(klippy.methods) == {"set_wled_state", "set_wled"}
        since = len(peer.seen)
        klippy.methods["set_wled_state"](strip="shelf", state=False)
        klippy.methods["set_wled"](strip="shelf", red=1.0, index=1, transmit=1)
        klippy.methods["set_wled"](strip="nope", red=1.0)  # unknown: dropped
        klippy.methods["set_wled"](strip="shelf", index=9)  # out of range: dropped
        klippy.methods["set_wled"](strip="shelf", red="x")  # bad: dropped
        klippy.methods["set_wled_state"](strip="shelf", state=True, preset=7, speed=99)
        with trio.fail_after(5):
            await wled.wait_idle()
        chain = [[255, 0, 0, 0], [128, 128, 128, 128]]
        full = {"on": True, "tt": 0, "bri": 255, "seg": {"bri": 255, "i": chain}}
        assert FakeWled.posted(peer, since) == [
            {"on": False},
            full,
            full,
            {"on": True, "ps": 7},
            {"tt": 0, "seg": {"sx": 99}},
        ]
        assert wled.strips["shelf"].state.info()["speed"] == 99


async def test_bad_sections_are_warnings_and_unreachable_strips_too(autojump_clock: Any) -> None:
    tries: list[str] = []

    async def unreachable(method: str, url: str, *args: Any, **kwargs: Any) -> HttpResponse:
        tries.append(url)
        await trio.sleep(0.1)
        raise HttpError("cannot reach 10.0.0.9:80: refused")

    sections = {
        "usb": {"type": "serial", "serial": "/dev/ttyACM0"},
        "far": {"address": "10.0.0.9", "color_order": "GRB"},
    }
    async with running(sections, post=unreachable) as (wled, _, warnings):
        pass
    assert list(wled.strips) == ["far"]
    assert warnings == [
        "[wled usb] type: serial strips are not supported by trioprint (use type: http);"
        " strip not loaded",
        "[wled far] color_order: deprecated (every strip is RGBW), ignored",
        "WLED strips that failed to initialize: far",
    ]
    assert 50 < len(tries) < 70  # every 2 s for 2 minutes
    assert wled.strips["far"].state.error == "WLED: Error cannot reach 10.0.0.9:80: refused"


# --- live -------------------------------------------------------------------------------------


async def test_live_routes_and_names(tmp_path: Any) -> None:
    import httpx

    from .live import live_server, rpc_client

    fake = FakeWled()
    async with http_peer(fake) as peer:
        conf = tmp_path / "trioprint.conf"
        conf.write_text(f"[wled shelf]\naddress: 127.0.0.1\nport: {peer.port}\n")
        async with live_server(tmp_path, conf) as live, rpc_client(live.ws) as rpc:
            info = (await rpc.call("server.info"))["result"]
            assert "wled" in info["components"]
            assert not [w for w in info["warnings"] if "wled" in w]
            wled = live.instance.wled
            assert wled is not None
            with trio.fail_after(5):
                await wled.initialized.wait()
            strips = await rpc.call("machine.wled.strips")
            assert strips["result"]["strips"]["shelf"]["status"] == "on"
            off = await rpc.call("machine.wled.post_strip", {"strip": "shelf", "action": "off"})
            assert off["result"]["shelf"]["status"] == "off"
            got = await rpc.call("machine.wled.get_strip", {"strip": "shelf"})
            assert got["result"]["shelf"]["status"] == "off"
            missing = await rpc.call("machine.wled.get_strip", {"strip": "x"})
            assert missing["error"] == {"code": 400, "message": "No valid strip named x"}
            on = await rpc.call("machine.wled.on", {"shelf": None})
            assert on["result"]["shelf"]["status"] == "on"
            async with httpx.AsyncClient(base_url=live.http) as client:
                r = await client.get("/machine/wled/status?shelf&nope")
                assert r.json()["result"]["nope"] == {"error": "strip_not_found"}
                r = await client.post("/machine/wled/toggle?shelf")
                assert r.json()["result"]["shelf"]["status"] == "off"
                r = await client.post("/machine/wled/off?shelf")
                assert r.json()["result"]["shelf"]["status"] == "off"
                r = await client.post(
                    "/machine/wled/strip?strip=shelf&action=on&preset=2&brightness=50"
                )
                assert r.json()["result"]["shelf"]["preset"] == 2
                r = await client.get("/machine/wled/strip", params={"strip": "shelf"})
                assert r.json()["result"]["shelf"]["brightness"] == 50
            assert fake.state["ps"] == 2
            assert json.loads(peer.seen[-1].body) == {"tt": 0, "bri": 50, "seg": {"bri": 50}}
