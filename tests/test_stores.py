"""The G-code and temperature history stores behind server.gcode_store / temperature_store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trioprint.domain.stores import GcodeStore, TemperatureStore

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "klippy-transcripts"
STATE: dict[str, dict[str, Any]] = json.loads((TRANSCRIPTS / "objects_query_all.json").read_text())[
    "status"
]
RT_STATE: dict[str, dict[str, Any]] = json.loads(
    (TRANSCRIPTS / "rt-objects_query_all.json").read_text()
)["status"]


def klippy_ready(store: TemperatureStore, state: dict[str, dict[str, Any]]) -> None:
    """What the server does once klippy is ready: heaters' lists, then their status."""
    heaters = state["heaters"]
    store.configure(heaters["available_sensors"], heaters["available_monitors"], state)


# --- GcodeStore -------------------------------------------------------------------------------


def test_gcode_store_entry_shape() -> None:
    store = GcodeStore()
    assert store.add("M104 S200", "command", 1700000000.5)
    assert store.add("// Klipper state: Ready", "response", 1700000001.25)
    assert store.get() == [
        {"message": "M104 S200", "time": 1700000000.5, "type": "command"},
        {"message": "// Klipper state: Ready", "time": 1700000001.25, "type": "response"},
    ]
    assert list(store.get()[0]) == ["message", "time", "type"]


def test_gcode_store_keeps_scripts_and_responses_whole() -> None:
    store = GcodeStore()
    script = "G91\nG1 X1\nG90\nGET_POSITION"  # session-basic's multi-line script
    response = "// mcu: stepper_x:-27500\n// stepper: stepper_x:100.000000"
    store.add(script, "command", 1.0)
    store.add(response, "response", 2.0)
    assert [e["message"] for e in store.get()] == [script, response]


def test_gcode_store_skips_blank_commands_but_not_empty_responses() -> None:
    store = GcodeStore()
    assert not store.add("", "command", 1.0)
    assert not store.add("  \n\t", "command", 1.0)
    assert store.add("", "response", 2.0)
    assert store.add("  G28  ", "command", 3.0)  # kept as sent
    assert store.get() == [
        {"message": "", "time": 2.0, "type": "response"},
        {"message": "  G28  ", "time": 3.0, "type": "command"},
    ]


def test_gcode_store_is_bounded_at_maxlen() -> None:
    store = GcodeStore(maxlen=1000)
    for i in range(1005):
        store.add(f"ok {i}", "response", float(i))
    assert len(store) == 1000
    assert store.maxlen == 1000
    entries = store.get()
    assert len(entries) == 1000
    assert entries[0]["message"] == "ok 5"
    assert entries[-1]["message"] == "ok 1004"


def test_gcode_store_default_maxlen_is_moonrakers() -> None:
    assert GcodeStore().maxlen == 1000


def test_gcode_store_count_semantics() -> None:
    store = GcodeStore(maxlen=10)
    for i in range(5):
        store.add(f"M{i}", "command", float(i))
    messages = [e["message"] for e in store.get(2)]
    assert messages == ["M3", "M4"]  # the newest two, oldest first
    assert len(store.get(None)) == 5
    assert len(store.get(100)) == 5
    assert len(store.get(0)) == 5  # Moonraker slices [-0:]: everything
    assert [e["message"] for e in store.get(-2)] == ["M2", "M3", "M4"]  # and [2:]
    assert [e["message"] for e in store.get(1)] == ["M4"]


def test_gcode_store_returns_copies() -> None:
    store = GcodeStore()
    store.add("M105", "command", 1.0)
    store.get()[0]["message"] = "changed"
    assert store.get()[0]["message"] == "M105"


def test_gcode_store_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="maxlen"):
        GcodeStore(maxlen=0)
    store = GcodeStore()
    with pytest.raises(ValueError, match="kind"):
        store.add("M105", "reply", 1.0)  # type: ignore[arg-type]
    store.add("M105", "command", 1.0)
    store.clear()
    assert store.get() == []


# --- TemperatureStore -------------------------------------------------------------------------


def test_temperature_store_shape_on_real_printer() -> None:
    store = TemperatureStore()
    klippy_ready(store, STATE)
    assert store.tracked == ("heater_bed", "temperature_sensor chamber", "extruder")
    # one sample each (no pre-fill), only the fields the sensor reports, plural keys
    assert store.result() == {
        "heater_bed": {"powers": [0.0], "targets": [0.0], "temperatures": [0.0]},
        "temperature_sensor chamber": {"temperatures": [0.0]},
        "extruder": {"powers": [0.0], "targets": [0.0], "temperatures": [0.0]},
    }


def test_temperature_store_samples_latest_values_rounded() -> None:
    store = TemperatureStore()
    klippy_ready(store, STATE)
    store.update({"extruder": {"temperature": 25.456, "target": 200.0}, "heater_bed": {}})
    store.sample()
    store.update({"extruder": {"temperature": 30.004, "power": 0.98765}})
    store.sample()
    store.sample()  # nothing new: the last values repeat
    store.update({"extruder": {"temperature": None}})
    store.sample()
    extruder = store.result()["extruder"]
    assert extruder == {
        "temperatures": [0.0, 25.46, 30.0, 30.0, None],
        "targets": [0.0, 200.0, 200.0, 200.0, 200.0],
        "powers": [0.0, 0.0, 0.99, 0.99, 0.99],
    }
    assert store.result()["heater_bed"]["temperatures"] == [0.0] * 5


def test_temperature_store_ignores_untracked_objects_and_fields() -> None:
    store = TemperatureStore()
    klippy_ready(store, STATE)
    store.update(
        {
            "temperature_sensor chamber": {"measured_max_temp": 40.0, "temperature": 21.0},
            "toolhead": {"temperature": 5.0},
            "heater_fan nozzle_cooling_fan": {"speed": 1.0},
        }
    )
    store.sample()
    result = store.result()
    assert result["temperature_sensor chamber"] == {"temperatures": [0.0, 21.0]}
    assert set(result) == {"heater_bed", "temperature_sensor chamber", "extruder"}


def test_temperature_store_is_bounded_at_size() -> None:
    store = TemperatureStore(size=3)
    assert store.size == 3
    klippy_ready(store, RT_STATE)
    for i in range(10):
        store.update({"temperature_sensor fake_extruder": {"temperature": 25.0 + i}})
        store.sample()
    assert store.result()["temperature_sensor fake_extruder"] == {
        "temperatures": [32.0, 33.0, 34.0]
    }
    assert store.result()["temperature_sensor chamber"] == {"temperatures": [22.0, 22.0, 22.0]}


def test_temperature_store_default_size_is_moonrakers() -> None:
    store = TemperatureStore()
    klippy_ready(store, RT_STATE)
    for _ in range(1300):
        store.sample()
    assert len(store.result()["temperature_sensor chamber"]["temperatures"]) == 1200


def test_temperature_store_fans_report_speeds_and_monitors_are_hidden() -> None:
    initial = {
        "temperature_fan exhaust": {"temperature": 30.123, "target": 40.0, "speed": 0.5},
        "heater_generic chamber_heater": {"temperature": 20.0, "target": 0.0, "power": 0.0},
        "temperature_probe eddy": {"temperature": 35.0, "estimated_expansion": 0.0},
    }
    store = TemperatureStore()
    store.configure(
        ["temperature_fan exhaust", "heater_generic chamber_heater"],
        ["temperature_probe eddy"],
        initial,
    )
    assert store.tracked == (
        "temperature_fan exhaust",
        "heater_generic chamber_heater",
        "temperature_probe eddy",
    )
    assert store.monitors == {"temperature_probe eddy"}
    assert store.result() == {
        "temperature_fan exhaust": {
            "temperatures": [30.12],
            "targets": [40.0],
            "speeds": [0.5],
        },
        "heater_generic chamber_heater": {
            "temperatures": [20.0],
            "targets": [0.0],
            "powers": [0.0],
        },
    }
    assert store.result(include_monitors=True)["temperature_probe eddy"] == {"temperatures": [35.0]}


def test_temperature_store_skips_sensors_reporting_no_recorded_field() -> None:
    store = TemperatureStore()
    store.configure(["extruder", "ghost", "odd"], [], {"extruder": {"temperature": 1.0}, "odd": 3})
    assert store.tracked == ("extruder",)


def test_temperature_store_reconfigure_keeps_history_of_sensors_that_stay() -> None:
    store = TemperatureStore()
    klippy_ready(store, STATE)
    store.update({"extruder": {"temperature": 50.0}, "heater_bed": {"temperature": 40.0}})
    store.sample()
    # klippy restarted with a different config: no bed, extruder without power, a new sensor
    initial = {
        "extruder": {"temperature": 49.0, "target": 0.0, "can_extrude": False},
        "temperature_sensor chamber": {"temperature": 22.0},
        "temperature_sensor mcu": {"temperature": 45.0},
    }
    store.configure(
        ["extruder", "temperature_sensor chamber", "temperature_sensor mcu"], [], initial
    )
    assert store.tracked == ("extruder", "temperature_sensor chamber", "temperature_sensor mcu")
    assert store.result() == {
        "extruder": {"temperatures": [0.0, 50.0, 49.0], "targets": [0.0, 0.0, 0.0]},
        "temperature_sensor chamber": {"temperatures": [0.0, 0.0, 22.0]},
        "temperature_sensor mcu": {"temperatures": [45.0]},
    }
    store.sample()  # the latest values are the new initial ones
    assert store.result()["extruder"]["temperatures"] == [0.0, 50.0, 49.0, 49.0]
    store.configure([], [], {})
    assert not store.tracked
    assert store.result() == {}
    store.sample()
    assert store.result(include_monitors=True) == {}


def test_temperature_store_reconfigure_changes_monitor_set() -> None:
    store = TemperatureStore()
    initial = {"temperature_probe eddy": {"temperature": 35.0}}
    store.configure([], ["temperature_probe eddy"], initial)
    assert store.result() == {}
    store.configure(["temperature_probe eddy"], [], initial)  # no longer a monitor
    assert store.result() == {"temperature_probe eddy": {"temperatures": [35.0, 35.0]}}
    store.clear()
    assert store.tracked == ()


def test_temperature_store_follows_a_real_temperature_ramp() -> None:
    records = [
        json.loads(line)
        for line in (TRANSCRIPTS / "session-realtime.jsonl").read_text().splitlines()
        if line.strip()
    ]
    store = TemperatureStore()
    klippy_ready(store, RT_STATE)
    for record in records:
        msg = record["msg"]
        if isinstance(msg, dict) and msg.get("method") == "process_status_update":
            store.update(msg["params"]["status"])
            store.sample()
    temps = store.result()["temperature_sensor fake_extruder"]["temperatures"]
    # deduplicated in order, the samples follow the ramp klippy reported
    ramp = [t for i, t in enumerate(temps) if i == 0 or temps[i - 1] != t]
    assert ramp == [25.0, 60.0, 120.0, 200.0, 25.0]


def test_temperature_store_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        TemperatureStore(size=0)
