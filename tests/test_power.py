"""The power component: each family against a local HTTP server (or a runner, a GPIO double,
a fake printer link), the shared options, the safety rules and the endpoints."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

from trioprint.bus import Bus
from trioprint.components.init_system import RunResult
from trioprint.components.klippy import KlippyStateChanged
from trioprint.components.power import BatchParams, DeviceParams, Power
from trioprint.components.power_devices import GpioDevice, open_gpiod_line
from trioprint.domain import power as dp
from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Transport

from .http_peer import Seen, http_peer


class Notes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self._changed = trio.Event()

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        self.sent.append((method, params))
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, device: str, status: str, since: int = 0) -> None:
        """Wait for ``notify_power_changed`` of ``device`` with ``status``, among the
        notifications from index ``since`` on (bounded)."""
        with trio.fail_after(5):
            while (device, status) not in self.power(since):
                await self._changed.wait()

    def power(self, since: int = 0) -> list[tuple[str, str]]:
        sent = self.sent[since:]
        return [(p[0]["device"], p[0]["status"]) for m, p in sent if m == "notify_power_changed"]


class FakeKlippy:
    """The printer link: ``output_pin psu`` follows SET_PIN at once."""

    def __init__(self, state: str = "ready", value: float | None = 0.0) -> None:
        self.state = state
        self.cache = SimpleNamespace(state={})
        if value is not None:
            self.cache.state["output_pin psu"] = {"value": value}
        self.subs: dict[str, tuple[Any, Callable[[Any, float], None]]] = {}
        self.methods: dict[str, Callable[..., Any]] = {}
        self.scripts: list[str] = []
        self.follow = True

    def set_internal_subscription(self, name: str, spec: Any, callback: Any) -> None:
        self.subs[name] = (spec, callback)

    def register_remote_method(self, name: str, callback: Callable[..., Any]) -> None:
        self.methods[name] = callback

    def push(self, status: dict[str, Any]) -> None:
        for value in status.values():
            self.cache.state.setdefault("output_pin psu", {}).update(value)
        for _, callback in self.subs.values():
            callback(status, 0.0)

    async def run_gcode(self, script: str) -> Any:
        self.scripts.append(script)
        if script.startswith("SET_PIN PIN=psu") and self.follow:
            self.push({"output_pin psu": {"value": float(script.rsplit("=", 1)[1])}})
        return {}


def call(params: Any, verb: str = "GET") -> Call[Any]:
    return Call(params=params, verb=verb, transport=Transport.HTTP)


class Rig:
    def __init__(self, power: Power, notes: Notes, bus: Bus, klippy: FakeKlippy) -> None:
        self.power = power
        self.notes = notes
        self.bus = bus
        self.klippy = klippy
        self.printing = False
        self.warnings: list[str] = []

    async def post(self, device: str, action: str) -> Any:
        return await self.power.device(call(DeviceParams(device, action), "POST"))

    async def get(self, device: str) -> Any:
        return await self.power.device(call(DeviceParams(device)))

    async def listed(self) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = (await self.power.list_devices(call(NoParams())))["devices"]
        return devices

    async def ready(self) -> None:
        with trio.fail_after(5):
            for device in self.power.devices.values():
                await device.initialized.wait()


@asynccontextmanager
async def rig(
    sections: Mapping[str, Mapping[str, str]],
    *,
    klippy: FakeKlippy | None = None,
    **kwargs: Any,
) -> AsyncIterator[Rig]:
    notes, bus = Notes(), Bus()
    klippy = klippy or FakeKlippy()
    warnings: list[str] = []
    holder: list[Rig] = []
    power = Power(
        sections,
        klippy,
        notes,
        bus,
        is_printing=lambda: holder[0].printing,
        warnings=warnings,
        **kwargs,
    )
    r = Rig(power, notes, bus, klippy)
    r.warnings = warnings
    holder.append(r)
    async with trio.open_nursery() as nursery:
        await nursery.start(power.run)
        yield r
        nursery.cancel_scope.cancel()


def tasmota_handler(plug: dict[str, str]) -> Callable[[Seen], tuple[int, Any]]:
    def handle(seen: Seen) -> tuple[int, Any]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(seen.target).query)
        words = query["cmnd"][0].split()
        if len(words) == 2:
            plug["state"] = words[1].upper()
        if plug.get("fail"):
            return 500, {"error": "broken"}
        return 200, {"POWER": plug["state"]}

    return handle


# --- HTTP families ----------------------------------------------------------------------------


async def test_tasmota_on_off_toggle_and_notifications() -> None:
    plug = {"state": "OFF"}
    async with http_peer(tasmota_handler(plug)) as peer:
        sections = {"plug": {"type": "tasmota", "address": peer.address}}
        async with rig(sections) as r:
            await r.ready()
            assert await r.listed() == [
                {"device": "plug", "status": "off", "locked_while_printing": False,
                 "type": "tasmota"}
            ]  # fmt: skip
            assert await r.post("plug", "on") == {"plug": "on"}
            assert plug["state"] == "ON"
            assert await r.post("plug", "toggle") == {"plug": "off"}
            assert await r.get("plug") == {"plug": "off"}
            assert r.notes.power() == [("plug", "off"), ("plug", "on"), ("plug", "off")]
            # each request reads the state first, then changes it
            assert [urllib.parse.parse_qs(s.target.split("?")[1])["cmnd"] for s in peer.seen][
                1:3
            ] == [["Power1"], ["Power1 on"]]
            batch = await r.power.on(call(BatchParams(("plug", "nope")), "POST"))
            assert batch == {"plug": "on", "nope": "device_not_found"}
            assert await r.power.status(call(BatchParams.from_args({"plug": "", "token": "x"})))
            assert await r.power.off(call(BatchParams(("plug",)), "POST")) == {"plug": "off"}


async def test_endpoint_errors_are_moonraker_s() -> None:
    plug = {"state": "OFF"}
    async with (
        http_peer(tasmota_handler(plug)) as peer,
        rig({"plug": {"type": "tasmota", "address": peer.address}}) as r,
    ):
        await r.ready()
        with pytest.raises(ApiError, match="No valid device named lamp") as info:
            await r.get("lamp")
        assert info.value.status == 400
        with pytest.raises(ApiError, match="Invalid requested action 'blink'"):
            await r.post("plug", "blink")
        with pytest.raises(ApiError, match="No arguments provided"):
            await r.power.status(call(BatchParams(())))
        with pytest.raises(ApiError, match="No data for argument: action"):
            await r.power.device(call(DeviceParams("plug"), "POST"))


async def test_locked_while_printing_refuses_any_change() -> None:
    plug = {"state": "ON"}
    async with http_peer(tasmota_handler(plug)) as peer:
        sections = {
            "printer": {"type": "tasmota", "address": peer.address, "locked_while_printing": "1"}
        }
        async with rig(sections) as r:
            await r.ready()
            r.printing = True
            with pytest.raises(ApiError, match="Unable to change power for printer while printing"):
                await r.post("printer", "off")
            with pytest.raises(ApiError) as info:
                await r.power.off(call(BatchParams(("printer",)), "POST"))
            assert info.value.status == 409
            assert plug["state"] == "ON"
            assert not any("Power1 off" in s.target.replace("%20", " ") for s in peer.seen)
            assert await r.get("printer") == {"printer": "on"}  # a status is fine
            r.power.jobs_added({"action": "jobs_added", "updated_queue": []})  # not opted in
            # klippy's own remote method may force it, as in Moonraker
            r.klippy.methods["set_device_power"](device="printer", state="off", force=True)
            await r.notes.until("printer", "off")
            assert plug["state"] == "OFF"


async def test_a_failing_device_is_error_and_nothing_crashes() -> None:
    plug = {"state": "OFF"}
    async with (
        http_peer(tasmota_handler(plug)) as peer,
        rig({"plug": {"type": "tasmota", "address": peer.address}}) as r,
    ):
        await r.ready()
        plug["fail"] = "yes"
        with pytest.raises(ApiError, match="Error Setting Device Status: plug to on") as info:
            await r.post("plug", "on")
        assert info.value.status == 500
        assert r.power.devices["plug"].state == "error"
        assert r.notes.power()[-1] == ("plug", "error")
        del plug["fail"]
        assert await r.get("plug") == {"plug": "on"}  # back when it answers again
        assert r.notes.power()[-1] == ("plug", "on")


async def test_unreachable_device_stays_init_without_blocking_requests() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        sections = {"plug": {"type": "tasmota", "address": f"127.0.0.1:{port}"}}
        async with rig(sections) as r:
            await trio.testing.wait_all_tasks_blocked()
            assert r.power.devices["plug"].lock.locked()
            with trio.fail_after(2):  # the first read is retried every 5 s: never waited for
                assert await r.get("plug") == {"plug": "init"}
                assert (await r.listed())[0]["status"] == "init"


async def test_shelly_homeassistant_hue_and_generic_http() -> None:
    state = {"on": False}

    def handle(seen: Seen) -> tuple[int, Any]:
        path = urllib.parse.urlsplit(seen.target)
        if path.path.startswith("/relay/0"):  # shelly
            turn = urllib.parse.parse_qs(path.query).get("turn")
            if turn:
                state["on"] = turn[0] == "on"
            return 200, {"ison": state["on"]}
        if path.path.startswith("/api/services/switch/turn_"):  # home assistant
            assert seen.headers["authorization"] == "Bearer tok"
            assert seen.json() == {"entity_id": "switch.p"}
            state["on"] = path.path.endswith("_on")
            return 200, []
        if path.path == "/api/states/switch.p":
            return 200, {"state": "on" if state["on"] else "off"}
        if path.path == "/api/u/lights/7/state":  # hue
            state["on"] = seen.json()["on"]
            return 200, [{"success": {"/lights/7/state/on": state["on"]}}]
        if path.path == "/api/u/lights/7":
            return 200, {"state": {"on": state["on"]}}
        if path.path in ("/on", "/off", "/status"):  # generic
            if path.path != "/status":
                state["on"] = path.path == "/on"
            return 200, {"relay": {"on": state["on"]}}
        return 404, {}

    async with http_peer(handle) as peer:
        template = (
            '{% set r = http_request.last_response().json() %}{"on" if r.relay.on else "off"}'
        )
        sections: dict[str, dict[str, str]] = {
            "shelly": {"type": "shelly", "address": peer.address},
            "ha": {
                "type": "homeassistant", "address": "127.0.0.1", "port": str(peer.port),
                "device": "switch.p", "token": "tok", "status_delay": "0",
            },
            "hue": {
                "type": "hue", "address": "127.0.0.1", "port": str(peer.port), "user": "u",
                "device_id": "7",
            },
            "generic": {
                "type": "http", "on_url": f"{peer.base}/on", "off_url": f"{peer.base}/off",
                "status_url": f"{peer.base}/status", "response_template": template,
            },
        }  # fmt: skip
        async with rig(sections) as r:
            await r.ready()
            for name in sections:
                assert await r.post(name, "on") == {name: "on"}, name
                assert state["on"]
                assert await r.post(name, "off") == {name: "off"}, name
                assert not state["on"]
            methods = {s.method for s in peer.seen}
            assert methods == {"GET", "POST", "PUT"}


async def test_uhubctl_through_the_runner() -> None:
    ports = {"2": "off"}
    argvs: list[list[str]] = []

    async def runner(argv: Any, limit: float, stdin: bytes | None) -> RunResult:
        argvs.append(list(argv))
        word = "Current"
        if "-a" in argv:
            ports["2"] = argv[argv.index("-a") + 1]
            word = "New"
        bits = "0100 power" if ports["2"] == "on" else "0000 off"
        return RunResult(0, f"{word} status for hub 1-1.3 [hub]\n  Port 2: {bits}\n")

    sections = {"usb": {"type": "uhubctl", "location": "1-1.3", "port": "2"}}
    async with rig(sections, runner=runner, which=lambda _: "/usr/bin/uhubctl") as r:
        await r.ready()
        assert await r.post("usb", "on") == {"usb": "on"}
        assert argvs[-1] == ["uhubctl", "-l", "1-1.3", "-p", "2", "-a", "on"]

        async def broken(argv: Any, limit: float, stdin: bytes | None) -> RunResult:
            return RunResult(1, "", "can't claim hub")

        r.power.devices["usb"]._runner = broken  # type: ignore[attr-defined]
        with pytest.raises(ApiError, match="Error Setting Device Status: usb to off"):
            await r.post("usb", "off")
        assert r.power.devices["usb"].state == "error"
    async with rig(sections, which=lambda _: None) as r:
        assert r.power.devices == {}
        assert "'uhubctl' is not installed" in r.warnings[0]


# --- gpio -------------------------------------------------------------------------------------


class FakeLine:
    def __init__(self, pin: dp.GpioPin, active: bool) -> None:
        self.pin = pin
        self.values = [active]
        self.closed = False

    def set(self, active: bool) -> None:
        self.values.append(active)

    def close(self) -> None:
        self.closed = True


async def test_gpio_initial_state_timer_and_release(autojump_clock: Any) -> None:
    lines: list[FakeLine] = []

    def opener(pin: dp.GpioPin, active: bool) -> FakeLine:
        lines.append(FakeLine(pin, active))
        return lines[-1]

    sections = {"psu": {"type": "gpio", "pin": "!gpiochip2/gpio17", "initial_state": "on",
                        "timer": "30"}}  # fmt: skip
    async with rig(sections, gpio_opener=opener) as r:
        await r.ready()
        (line,) = lines
        assert line.pin == dp.GpioPin("gpiochip2", 17, True)
        assert line.values == [True]
        assert await r.post("psu", "off") == {"psu": "off"}
        assert await r.post("psu", "on") == {"psu": "on"}
        assert line.values == [True, False, True]
        await trio.sleep(29)
        assert r.power.devices["psu"].state == "on"
        await trio.sleep(2)  # the timer turned it off
        assert r.power.devices["psu"].state == "off"
        assert line.values[-1] is False
    assert line.closed


async def test_gpio_without_the_chip_is_an_error_state() -> None:
    pytest.importorskip("gpiod")
    sections = {"psu": {"type": "gpio", "pin": "gpiochip99/gpio1"}}
    async with rig(sections, gpio_opener=open_gpiod_line) as r:
        await r.ready()
        assert r.power.devices["psu"].state == "error"
        with pytest.raises(ApiError, match="Error Setting Device Status: psu to on"):
            await r.post("psu", "on")
    assert isinstance(r.power.devices["psu"], GpioDevice)


# --- klipper_device and klippy's states ---------------------------------------------------


async def test_klipper_device_follows_the_printer() -> None:
    klippy = FakeKlippy(state="ready", value=0.0)
    sections = {"psu": {"type": "klipper_device", "object_name": "output_pin psu"}}
    async with rig(sections, klippy=klippy) as r:
        await r.ready()
        assert klippy.subs == {"power psu": ({"output_pin psu": None}, klippy.subs["power psu"][1])}
        assert (await r.listed())[0] == {
            "device": "psu", "status": "off", "locked_while_printing": False,
            "type": "klipper_device", "is_shutdown": False,
        }  # fmt: skip
        assert await r.post("psu", "on") == {"psu": "on"}
        assert klippy.scripts == ["SET_PIN PIN=psu VALUE=1"]
        klippy.push({"output_pin psu": {"value": 0.0}})  # a macro turned it off
        assert r.notes.power()[-1] == ("psu", "off")
        klippy.follow = False
        with pytest.raises(ApiError, match="Timeout waiting for device state update"):
            await r.post("psu", "on")
        klippy.state = "shutdown"
        mark = len(r.notes.sent)
        r.bus.publish(KlippyStateChanged("shutdown", "", "ready"))
        await r.notes.until("psu", "error", since=mark)
        assert r.power.devices["psu"].info()["is_shutdown"] is True
        with pytest.raises(ApiError, match="when Klipper is shutdown"):
            await r.post("psu", "on")


async def test_off_when_shutdown_and_restart_when_powered(autojump_clock: Any) -> None:
    klippy = FakeKlippy(state="ready")

    def opener(pin: dp.GpioPin, active: bool) -> FakeLine:
        return FakeLine(pin, active)

    sections = {
        "psu": {"type": "gpio", "pin": "gpio1", "off_when_shutdown": "true",
                "off_when_shutdown_delay": "10", "initial_state": "on"},
        "mcu": {"type": "gpio", "pin": "gpio2", "restart_klipper_when_powered": "true",
                "restart_delay": "3"},
    }  # fmt: skip
    async with rig(sections, klippy=klippy, gpio_opener=opener) as r:
        await r.ready()
        klippy.state = "shutdown"
        r.bus.publish(KlippyStateChanged("shutdown", "", "ready"))
        await trio.sleep(9)
        assert r.power.devices["psu"].state == "on"
        await trio.sleep(2)
        assert r.power.devices["psu"].state == "off"
        # powered while klippy is shut down: a FIRMWARE_RESTART after the delay
        assert await r.post("mcu", "on") == {"mcu": "on"}
        await trio.sleep(2)
        assert klippy.scripts == []
        await trio.sleep(2)
        assert klippy.scripts == ["FIRMWARE_RESTART"]
        # powered while klippy is away: decided once klippy has started (ready: nothing)
        await r.post("mcu", "off")
        klippy.state = "disconnected"
        await r.post("mcu", "on")
        klippy.state = "ready"
        r.bus.publish(KlippyStateChanged("ready", "", "startup"))
        await trio.sleep(10)
        assert klippy.scripts == ["FIRMWARE_RESTART"]


async def test_on_when_job_queued_and_bound_services() -> None:
    done: list[tuple[str, str]] = []

    async def service_action(action: str, name: str) -> None:
        done.append((action, name))
        if name == "crowsnest":
            raise ApiError("crowsnest failed to start", 500)

    sections = {
        "psu": {"type": "gpio", "pin": "gpio1", "on_when_job_queued": "true",
                "bound_services": "klipper\ncrowsnest\nmissing\ntrioprint"},
    }  # fmt: skip
    async with rig(
        sections,
        gpio_opener=FakeLine,
        service_action=service_action,
        available_services=lambda: ["klipper", "crowsnest", "trioprint"],
        own_service=lambda: "trioprint",
    ) as r:
        await r.ready()
        assert r.power.devices["psu"].opts.bound_services == ("klipper", "crowsnest")
        assert any("missing is not available" in w for w in r.warnings)
        assert any("own service trioprint" in w for w in r.warnings)
        r.power.jobs_added({"action": "jobs_added", "updated_queue": [{"filename": "a.gcode"}]})
        await r.notes.until("psu", "on")
        await trio.testing.wait_all_tasks_blocked()
        assert done == [("start", "klipper"), ("start", "crowsnest")]
        await r.post("psu", "off")
        assert done[2:] == [("stop", "klipper"), ("stop", "crowsnest")]


async def test_bad_sections_are_warnings() -> None:
    sections = {
        "a": {"type": "gpio", "pin": "pin1"},
        "b": {"type": "mqtt", "command_topic": "p/set", "command_payload": "{command}"},
        "c": {"type": "tasmota"},
    }
    async with rig(sections) as r:
        assert r.power.devices == {}
        assert r.warnings == [
            "[power a]: pin: expected '[!][gpiochipN/]gpioM', got 'pin1'; device not loaded",
            "[power b]: state_topic: required for type mqtt; device not loaded",
            "[power c]: address: required; device not loaded",
        ]


# --- live -----------------------------------------------------------------------------------


async def test_live_routes_names_and_job_queue_hook(tmp_path: Any) -> None:
    import httpx

    from .live import live_server, rpc_client

    plug = {"state": "OFF"}
    async with http_peer(tasmota_handler(plug)) as peer:
        (tmp_path / "gcodes").mkdir()
        (tmp_path / "gcodes" / "a.gcode").write_text("G28\n")
        conf = tmp_path / "trioprint.conf"
        conf.write_text(
            f"[power plug]\ntype: tasmota\naddress: {peer.address}\non_when_job_queued: True\n"
            "[power broken]\ntype: tasmota\n"
        )
        async with live_server(tmp_path, conf) as live, rpc_client(live.ws) as rpc:
            info = (await rpc.call("server.info"))["result"]
            assert "power" in info["components"]
            assert any("[power broken]: address: required" in w for w in info["warnings"])
            power = live.instance.power
            assert power is not None
            with trio.fail_after(5):
                await power.devices["plug"].initialized.wait()
            listed = await rpc.call("machine.device_power.devices")
            assert listed["result"]["devices"][0]["status"] == "off"
            on = await rpc.call(
                "machine.device_power.post_device", {"device": "plug", "action": "on"}
            )
            assert on["result"] == {"plug": "on"}
            note = await rpc.notification("notify_power_changed")
            assert note["params"] == [
                {"device": "plug", "status": "on", "locked_while_printing": False,
                 "type": "tasmota"}
            ]  # fmt: skip
            got = await rpc.call("machine.device_power.get_device", {"device": "plug"})
            assert got["result"] == {"plug": "on"}
            missing = await rpc.call("machine.device_power.get_device", {"device": "x"})
            assert missing["error"] == {"code": 400, "message": "No valid device named x"}
            off = await rpc.call("machine.device_power.off", {"plug": None})
            assert off["result"] == {"plug": "off"}
            async with httpx.AsyncClient(base_url=live.http) as client:
                r = await client.get("/machine/device_power/status?plug&nope")
                assert r.json()["result"] == {"plug": "off", "nope": "device_not_found"}
                r = await client.post("/machine/device_power/on?plug")
                assert r.json()["result"] == {"plug": "on"}
                r = await client.post("/machine/device_power/device?device=plug&action=off")
                assert r.json()["result"] == {"plug": "off"}
                r = await client.get("/machine/device_power/device", params={"device": "plug"})
                assert r.json()["result"] == {"plug": "off"}
            # a job added to the queue turns the plug on
            await rpc.call("server.job_queue.pause")
            rpc.notifications.clear()  # the ones before this reply were the HTTP requests'
            queued = await rpc.call("server.job_queue.post_job", {"filenames": ["a.gcode"]})
            assert "result" in queued, queued
            with trio.fail_after(5):
                note = await rpc.notification("notify_power_changed")
            assert note["params"][0]["status"] == "on"
            assert plug["state"] == "ON"
