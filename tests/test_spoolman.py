"""[spoolman]: the usage accounting, the HTTP client's PUT, and the component against a double
that follows Spoolman's API (GET /api/v1/health, GET /api/v1/spool/{id}, PUT .../use)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from trioprint.components.spoolman import Spoolman, read_section
from trioprint.domain.kv import MemoryStore
from trioprint.domain.spoolman import SpoolmanError, UsageTracker, api_url, proxy_target
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport
from trioprint.transport.http_client import HttpError, HttpResponse, http_json

from .http_double import Request, http_double
from .test_history_component import FakeKlippy, FakeWebsockets


class Klippy(FakeKlippy):
    def __init__(self) -> None:
        super().__init__()
        self.remote: dict[str, Any] = {}

    def register_remote_method(self, name: str, callback: Any) -> None:
        self.remote[name] = callback


class SpoolmanDouble:
    """Spoolman's API, in memory: spools by id with their used length."""

    def __init__(self) -> None:
        self.up = True
        self.spools: dict[int, float] = {1: 0.0, 2: 0.0}

    async def handle(self, request: Request) -> tuple[int, Any]:
        await trio.lowlevel.checkpoint()
        path = request.target
        if path == "/api/v1/health":
            return 200, {"status": "healthy"}
        parts = path.split("/")
        if len(parts) >= 5 and parts[3] == "spool":
            spool = int(parts[4].split("?")[0])
            if spool not in self.spools:
                return 404, {"message": f"No spool with ID {spool} found."}
            if parts[5:] == ["use"] and request.method == "PUT":
                self.spools[spool] += request.json()["use_length"]
            return 200, {"id": spool, "used_length": self.spools[spool]}
        return 404, {"message": "Not Found"}

    async def request(self, method: str, url: str, body: Any = None, **_: Any) -> HttpResponse:
        if not self.up:
            raise HttpError("cannot reach spoolman:7912: Connection refused")
        target = url.removeprefix("http://spoolman:7912")
        data = b"" if body is None else json.dumps(body).encode()
        status, answer = await self.handle(Request(method, target, {}, data))
        return HttpResponse(status, {"x-total-count": "2"}, json.dumps(answer).encode(), url)


def test_usage_accounting() -> None:
    u = UsageTracker()
    u.toolhead({"position": [0, 0, 0, 10.0], "extruder": "extruder"})  # the baseline
    u.toolhead({"position": [0, 0, 0, 15.0]})  # no active spool: not counted
    assert u.pending == {}
    assert u.set_spool(1)
    assert not u.set_spool(1)
    u.toolhead({"position": [0, 0, 0, 17.0]})
    u.toolhead({"position": [0, 0, 0, 16.0]})  # a retraction
    u.toolhead({"position": [0, 0, 0, 17.5]})  # only past the highest point counts
    assert u.pending == {1: 2.5}
    u.toolhead({"position": [0, 0, 0, 0.0], "extruder": "extruder1"})  # a new extruder: baseline
    u.toolhead({"position": [0, 0, 0, 1.0]})
    assert u.pending == {1: 3.5}
    u.set_spool(2)
    u.toolhead({"position": [0, 0, 0, 2.0]})
    assert u.take() == {1: 3.5, 2: 1.0}
    assert u.pending == {}
    u.add(2, 1.0)
    assert u.status() == [{"spool_id": 2, "filament_used": 1.0}]


def test_section_and_proxy_checks() -> None:
    assert api_url("192.168.1.5:7912/") == "http://192.168.1.5:7912/api"
    assert api_url("HTTPS://spools.local") == "https://spools.local/api"
    assert read_section({"server": "h:1"}) == ("http://h:1/api", 5)
    with pytest.raises(SpoolmanError, match="'server' is required"):
        read_section({})
    with pytest.raises(SpoolmanError, match="sync_rate"):
        read_section({"server": "h", "sync_rate": "0"})
    assert proxy_target("GET", "/v1/spool", "limit=2", None) == "/v1/spool?limit=2"
    for args, message in [
        (("TRACE", "/v1/x", None, None), "Invalid HTTP method"),
        (("GET", "/v1/x", None, {"a": 1}), "cannot have a body"),
        (("GET", "/spool", None, None), "must start with the API version"),
    ]:
        with pytest.raises(SpoolmanError, match=message):
            proxy_target(*args)


async def test_http_json_puts_json() -> None:
    double = SpoolmanDouble()
    async with http_double(double.handle) as server:
        response = await http_json(
            "PUT", f"{server.url}/api/v1/spool/1/use", {"use_length": 12.5}, limit=5
        )
        assert response.status == 200
        assert json.loads(response.body) == {"id": 1, "used_length": 12.5}
        (req,) = server.requests
        assert req.headers["content-type"] == "application/json"
        missing = await http_json("GET", f"{server.url}/api/v1/spool/9", limit=5)
        assert missing.status == 404
    with pytest.raises(HttpError, match="cannot reach"):
        await http_json("GET", server.url + "/api/v1/health", limit=5)


class Rig:
    def __init__(self) -> None:
        self.double = SpoolmanDouble()
        self.klippy = Klippy()
        self.ws = FakeWebsockets()
        self.store = MemoryStore()
        self.spoolman = Spoolman(
            {"server": "http://spoolman:7912", "sync_rate": "5"},
            self.klippy,
            self.store,
            self.ws,
            request=self.double.request,
        )
        self.registry = Registry()
        self.registry.add_component(self.spoolman)

    def epos(self, e: float) -> None:
        self.klippy.subscriptions["spoolman"][1]({"toolhead": {"position": [0, 0, 0, e]}}, 0.0)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        ep = self.registry.by_rpc(method)
        assert ep is not None, method
        return await self.registry.dispatch(ep, params or {}, Transport.WEBSOCKET)

    def sent(self, method: str) -> list[Any]:
        return [p[0] for m, p in self.ws.sent if m == method]


async def test_use_is_reported_per_spool_with_the_offline_queue(autojump_clock: Any) -> None:
    r = Rig()
    r.double.up = False
    await r.store.insert_item("moonraker", "spoolman.spool_id", 1)  # kept from before
    async with trio.open_nursery() as nursery:
        await nursery.start(r.spoolman.run)
        assert await r.call("server.spoolman.get_spool_id") == {"spool_id": 1}
        r.epos(0.0)
        r.epos(30.0)
        await trio.sleep(12)  # Spoolman is away: the use waits
        status = await r.call("server.spoolman.status")
        assert status == {
            "spoolman_connected": False,
            "pending_reports": [{"spool_id": 1, "filament_used": 30.0}],
            "spool_id": 1,
        }
        with pytest.raises(ApiError, match="Spoolman server not available") as err:
            await r.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool"})
        assert err.value.status == 503
        r.double.up = True
        await trio.sleep(5)
        assert r.sent("notify_spoolman_status_changed") == [{"spoolman_connected": True}]
        assert r.double.spools[1] == 30.0
        assert (await r.call("server.spoolman.status"))["pending_reports"] == []
        # another spool: announced, stored, counted from where the extruder is
        assert await r.call("server.spoolman.post_spool_id", {"spool_id": 2}) == {"spool_id": 2}
        assert r.sent("notify_active_spool_set") == [{"spool_id": 2}]
        assert await r.store.get_item("moonraker", "spoolman.spool_id") == 2
        r.epos(32.0)
        await trio.sleep(5)
        assert r.double.spools == {1: 30.0, 2: 2.0}
        # Spoolman went away in between: the failed report is kept and sent later
        r.double.up = False
        r.epos(33.0)
        await trio.sleep(5)
        assert r.sent("notify_spoolman_status_changed")[-1] == {"spoolman_connected": False}
        assert (await r.call("server.spoolman.status"))["pending_reports"] == [
            {"spool_id": 2, "filament_used": 1.0}
        ]
        r.double.up = True
        await trio.sleep(5)
        assert r.double.spools[2] == 3.0
        # the spool was deleted in Spoolman: its use is dropped and it is no longer active
        del r.double.spools[2]
        r.epos(40.0)
        await trio.sleep(5)
        assert r.spoolman.spool_id is None
        assert r.sent("notify_active_spool_set")[-1] == {"spool_id": None}
        # a macro's SET_ACTIVE_SPOOL through klippy's remote method
        r.klippy.remote["spoolman_set_active_spool"](spool_id=1)
        r.klippy.remote["spoolman_set_active_spool"](spool_id="x")  # refused, logged
        await trio.sleep(0.1)
        assert r.spoolman.spool_id == 1
        assert r.sent("notify_active_spool_set")[-1] == {"spool_id": 1}
        nursery.cancel_scope.cancel()


async def test_a_deleted_active_spool_is_cleared_on_connect(autojump_clock: Any) -> None:
    r = Rig()
    await r.store.insert_item("moonraker", "spoolman.spool_id", 7)
    async with trio.open_nursery() as nursery:
        await nursery.start(r.spoolman.run)
        await trio.sleep(1)
        assert r.spoolman.spool_id is None
        assert await r.store.get_item("moonraker", "spoolman.spool_id") is None
        nursery.cancel_scope.cancel()


async def test_proxy(autojump_clock: Any) -> None:
    r = Rig()
    async with trio.open_nursery() as nursery:
        await nursery.start(r.spoolman.run)
        await trio.sleep(1)
        got = await r.call(
            "server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool/1"}
        )
        assert got == {"id": 1, "used_length": 0.0}
        v2 = await r.call(
            "server.spoolman.proxy",
            {"request_method": "GET", "path": "/v1/spool/1", "use_v2_response": True},
        )
        assert v2 == {
            "response": {"id": 1, "used_length": 0.0},
            "response_headers": {"x-total-count": "2"},
            "error": None,
        }
        missing = await r.call(
            "server.spoolman.proxy",
            {"request_method": "GET", "path": "/v1/spool/9", "use_v2_response": True},
        )
        assert missing == {
            "response": None,
            "error": {"status_code": 404, "message": "No spool with ID 9 found."},
        }
        with pytest.raises(ApiError, match="No spool with ID 9") as err:
            await r.call("server.spoolman.proxy", {"request_method": "GET", "path": "/v1/spool/9"})
        assert err.value.status == 404
        for params, message in [
            ({"path": "/v1/spool"}, "'request_method'"),
            ({"request_method": "GET", "path": "/spool"}, "API version"),
            ({"request_method": "GET", "path": "/v1/spool", "body": {}}, "cannot have a body"),
        ]:
            with pytest.raises(ApiError, match=message) as err:
                await r.call("server.spoolman.proxy", params)
            assert err.value.status == 400
        nursery.cancel_scope.cancel()


async def test_against_the_http_double() -> None:
    double = SpoolmanDouble()
    async with http_double(double.handle) as server:
        ws = FakeWebsockets()
        spoolman = Spoolman({"server": server.url}, Klippy(), MemoryStore(), ws)
        await spoolman.set_active_spool(1)
        spoolman.usage.toolhead({"position": [0, 0, 0, 1.0]})
        spoolman.usage.toolhead({"position": [0, 0, 0, 4.5]})
        await spoolman._check_health()
        await spoolman.report()
        assert double.spools[1] == 3.5
        assert [r.target for r in server.requests] == [
            "/api/v1/health",
            "/api/v1/spool/1",
            "/api/v1/spool/1/use",
        ]


async def test_the_spools_a_job_used_are_in_its_auxiliary_data(tmp_path: Any) -> None:
    from .test_history_component import rig

    double = SpoolmanDouble()
    async with rig(tmp_path) as h:
        spoolman = Spoolman(
            {"server": "http://spoolman:7912"},
            Klippy(),
            MemoryStore(),
            h.ws,
            h.history,
            request=double.request,
        )
        await spoolman.set_active_spool(1)
        (h.gcodes / "a.gcode").write_text("G28\n")
        await h.feed("printing", at=1000.0, filename="a.gcode", total_duration=0.0)
        await spoolman.set_active_spool(2)
        await h.feed("complete", at=1010.0, total_duration=10.0)
        finished = (await h.ws.wait_changes(2))[1]["job"]
        assert finished["auxiliary_data"] == [
            {
                "provider": "spoolman",
                "name": "spool_ids",
                "value": [1, 2],
                "description": "Spool IDs used",
                "units": None,
            }
        ]


async def test_configured_devices_are_listed_as_components(tmp_path: Any) -> None:
    from trioprint.app import Instance
    from trioprint.config import load_config

    await trio.lowlevel.checkpoint()
    conf = tmp_path / "trioprint.conf"
    conf.write_text("[server]\n")
    names = Instance(load_config(conf, tmp_path)).component_names()
    assert not {"sensor", "notifier", "spoolman"} & set(names)
    conf.write_text(
        "[sensor s]\ntype: mqtt\n[notifier n]\nurl: json://127.0.0.1:9/\nevents: *\n"
        "[spoolman]\nserver: 127.0.0.1:7912\n"
    )
    names = Instance(load_config(conf, tmp_path)).component_names()
    assert {"sensor", "notifier", "spoolman"} <= set(names)
