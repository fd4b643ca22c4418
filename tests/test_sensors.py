"""[sensor NAME]: the history fields' strategies, the sensor's readings, the component with an
injected source (Moonraker 0.11's only type is mqtt, which comes with [mqtt]), and a sensor's
field in a job's auxiliary_data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioprint.components.sensors import Sensors
from trioprint.domain.history_fields import FieldError, HistoryField
from trioprint.domain.sensors import Sensor, SensorError
from trioprint.errors import ApiError
from trioprint.registry import Registry, Transport

from .test_history_component import FakeWebsockets, rig

POWER = {
    "type": "feed",
    "name": "Printer Power",
    "parameter_power": "units=W",
    "parameter_energy": "\nunits=kWh",
    "history_field_energy_consumption": (
        "parameter=energy\ndesc=Printer Power Consumption\nstrategy=delta\nunits=kWh\n"
        "init_tracker=true\nprecision=3\nexclude_paused=true"
    ),
    "history_field_max_power": "parameter=power\nstrategy=maximum\nunits=W",
}


def field(strategy: str, **kw: Any) -> HistoryField:
    f = HistoryField("f", "sensor s", "d", strategy, **kw)
    f.enabled = lambda check_paused: True
    return f


@pytest.mark.parametrize(
    ("strategy", "values", "expected"),
    [
        ("basic", [1, 5, 3], 3),
        ("accumulate", [1, 5, 3], 9),
        ("average", [1, 5, 3], 3),
        ("maximum", [-4, -1, -3], -1),
        ("minimum", [4, 1, 3], 1),
        ("delta", [10, 12, 15], 5),
        ("collect", [1, 2, 1, 3], [1, 2, 3]),
    ],
)
def test_strategies(strategy: str, values: list[int], expected: Any) -> None:
    f = field(strategy)
    f.reset()
    for v in values:
        f.update(v)
    assert f.as_dict()["value"] == expected


def test_updates_count_only_while_enabled_and_init_tracker() -> None:
    level = 100.0
    f = HistoryField("e", "sensor s", "d", "delta", reset_callback=lambda: level, precision=1)
    active = False
    f.enabled = lambda check_paused: active
    f.update(150.0)  # no job: not counted
    f.reset()  # the job starts: counted from the sensor's value then
    active = True
    f.update(100.25)
    f.update(102.5)
    assert f.as_dict() == {
        "provider": "sensor s",
        "name": "e",
        "value": 2.5,
        "description": "d",
        "units": None,
    }
    with pytest.raises(FieldError, match="unknown strategy 'sum'"):
        HistoryField("x", "p", "d", "sum")
    with pytest.raises(FieldError, match="reserved"):
        HistoryField("x", "history", "d")


def test_sensor_section_and_readings() -> None:
    s = Sensor("psu", POWER)
    assert s.info() == {"id": "psu", "friendly_name": "Printer Power", "type": "feed", "values": {}}
    s.update({"power": "12.5", "energy": 3, "bad": "x"})
    assert s.last_measurements == {"power": 12.5, "energy": 3}
    assert s.sample() is True
    assert s.sample() is False  # unchanged since the last sample
    s.update({"power": 13.0, "energy": 3})
    assert s.sample() is True
    assert s.measurements() == {"power": [12.5, 12.5, 13.0], "energy": [3, 3, 3]}
    info = s.info(extended=True)
    assert info["parameter_info"] == [
        {"units": "W", "name": "power"},
        {"units": "kWh", "name": "energy"},
    ]
    assert info["history_fields"][0] == {
        "field": "energy_consumption",
        "provider": "sensor psu",
        "description": "Printer Power Consumption",
        "strategy": "delta",
        "units": "kWh",
        "init_tracker": True,
        "exclude_paused": True,
        "report_total": False,
        "report_maximum": False,
        "precision": 3,
        "parameter": "energy",
    }
    assert info["history_fields"][1]["parameter"] == "power"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "option 'type' is required"),
        ({"type": "x", "sensor_store_size": "many"}, "sensor_store_size"),
        ({"type": "x", "history_field_a": "desc=x"}, "key 'parameter' must be specified"),
        ({"type": "x", "history_field_a": "parameter=p\nstrategy=sum"}, "unknown strategy"),
        ({"type": "x", "parameter_p": "units"}, "key=value"),
        ({"type": "x", "history_field_a": "parameter=p\nreport_total=maybe"}, "true or false"),
    ],
)
def test_bad_sections(options: dict[str, str], message: str) -> None:
    with pytest.raises(SensorError, match=message):
        Sensor("s", options)


def test_store_size_bounds_the_measurements() -> None:
    s = Sensor("t", {"type": "feed", "sensor_store_size": "2"})
    for v in (1, 2, 3):
        s.update({"t": v})
        s.sample()
    assert s.measurements() == {"t": [2, 3]}


async def _call(registry: Registry, method: str, params: dict[str, Any] | None = None) -> Any:
    ep = registry.by_rpc(method)
    assert ep is not None, method
    return await registry.dispatch(ep, params or {}, Transport.WEBSOCKET)


async def test_component_samples_announces_and_serves(autojump_clock: Any) -> None:
    send, receive = trio.open_memory_channel[dict[str, Any]](10)

    async def feed(sensor: Sensor) -> None:
        async for measurements in receive:
            sensor.update(measurements)

    ws = FakeWebsockets()
    warnings: list[str] = []
    sections = {"psu": POWER, "mq": {"type": "mqtt"}, "bad": {"name": "no type"}}
    sensors = Sensors(sections, ws, sources={"FEED": feed}, warnings=warnings)
    assert list(sensors.sensors) == ["psu"]
    assert any("'mqtt'" in w and "[mqtt]" in w for w in warnings)
    assert any("[sensor bad]" in w and "'type'" in w for w in warnings)
    registry = Registry()
    registry.add_component(sensors)
    async with trio.open_nursery() as nursery:
        await nursery.start(sensors.run)
        await send.send({"power": 10.0, "energy": 1.0})
        await trio.sleep(1.5)
        assert ws.sent == [("notify_sensor_update", [{"psu": {"power": 10.0, "energy": 1.0}}])]
        await trio.sleep(2)  # unchanged: stored, not announced
        assert len(ws.sent) == 1
        await send.send({"power": 11.0, "energy": 1.0})
        await trio.sleep(1)
        assert ws.sent[-1] == ("notify_sensor_update", [{"psu": {"power": 11.0, "energy": 1.0}}])
        listed = await _call(registry, "server.sensors.list")
        assert listed == {
            "sensors": {
                "psu": {
                    "id": "psu",
                    "friendly_name": "Printer Power",
                    "type": "feed",
                    "values": {"power": 11.0, "energy": 1.0},
                }
            }
        }
        ext = await _call(registry, "server.sensors.list", {"extended": True})
        assert len(ext["sensors"]["psu"]["history_fields"]) == 2
        info = await _call(registry, "server.sensors.info", {"sensor": "psu", "extended": True})
        assert info == ext["sensors"]["psu"]
        one = await _call(registry, "server.sensors.measurements", {"sensor": "psu"})
        assert one == {"psu": {"power": [10.0, 10.0, 10.0, 11.0], "energy": [1.0] * 4}}
        assert await _call(registry, "server.sensors.measurements") == one
        for method, params in [
            ("server.sensors.info", {"sensor": "nope"}),
            ("server.sensors.measurements", {"sensor": "nope"}),
        ]:
            with pytest.raises(ApiError, match="No valid sensor named nope") as err:
                await _call(registry, method, params)
            assert err.value.status == 400
        with pytest.raises(ApiError, match="'sensor'"):
            await _call(registry, "server.sensors.info")
        nursery.cancel_scope.cancel()


async def test_a_failing_source_marks_its_sensor(autojump_clock: Any) -> None:
    async def broken(sensor: Sensor) -> None:
        sensor.update({"v": 1})
        raise RuntimeError("gone")

    sensors = Sensors({"s": {"type": "b"}}, FakeWebsockets(), sources={"b": broken})
    async with trio.open_nursery() as nursery:
        await nursery.start(sensors.run)
        await trio.sleep(0.5)
        assert sensors.sensors["s"].error_state == "source failed: gone"
        assert sensors.sensors["s"].last_measurements == {}
        nursery.cancel_scope.cancel()


async def test_history_fields_in_the_jobs_auxiliary_data(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        sensors = Sensors({"psu": POWER}, r.ws, r.history, sources={"feed": trio.sleep})
        psu = sensors.sensors["psu"]
        psu.update({"energy": 5.0, "power": 300.0})  # before the job: not counted
        (r.gcodes / "a.gcode").write_text("G28\n")
        await r.feed("printing", at=1000.0, filename="a.gcode", total_duration=0.0)
        psu.update({"energy": 5.5, "power": 120.0})
        psu.update({"energy": 6.25, "power": 110.0})
        await r.feed("paused", at=1010.0, total_duration=10.0)
        psu.update({"energy": 7.0, "power": 50.0})  # paused: the delta excludes it
        await r.feed("printing", at=1020.0, total_duration=20.0)
        psu.update({"energy": 7.5, "power": 130.0})
        await r.feed("complete", at=1030.0, total_duration=30.0)
        changes = await r.ws.wait_changes(2)
        added, finished = changes[0]["job"], changes[1]["job"]
        assert [a["value"] for a in added["auxiliary_data"]] == [0, 0]
        assert finished["auxiliary_data"] == [
            {
                "provider": "sensor psu",
                "name": "energy_consumption",
                "value": 1.75,
                "description": "Printer Power Consumption",
                "units": "kWh",
            },
            {
                "provider": "sensor psu",
                "name": "max_power",
                "value": 130.0,
                "description": "power tracker",
                "units": "W",
            },
        ]
        stored = await r.call("server.history.get_job", {"uid": finished["job_id"]})
        assert stored["job"]["auxiliary_data"] == finished["auxiliary_data"]
        warnings: list[str] = []
        Sensors({"psu": POWER}, r.ws, r.history, sources={"feed": trio.sleep}, warnings=warnings)
        assert any("already registered" in w for w in warnings)
