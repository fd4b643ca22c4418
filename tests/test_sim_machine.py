"""The simulated printer's model (``trioprint.sim``), driven synchronously.

The reference for field sets, value types, messages and state transitions is the real klippy
traffic in ``/work/shared/klippy-transcripts``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.sim.config import load_config
from trioprint.sim.gcode import GcodeError, GcodeParseError, parse_line
from trioprint.sim.machine import LineDone, SimMachine, Sleep, Step, WaitFor

SHARED = Path(__file__).resolve().parents[2] / "shared"
TRANSCRIPTS = SHARED / "klippy-transcripts"
START = 1000.0


def load_status(name: str) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((TRANSCRIPTS / name).read_text())["status"]
    return status


needs_transcripts = pytest.mark.skipif(
    not TRANSCRIPTS.is_dir(), reason="shared klippy transcripts not available"
)


# -- driving the generators ---------------------------------------------------------------------


def drive(
    machine: SimMachine,
    steps: Iterator[Step],
    *,
    limit: float = 3600.0,
    max_sleep: float = math.inf,
) -> list[Step]:
    """Run ``steps``: sleep by advancing, poll a WaitFor every 0.1 s (for at most ``limit``).
    ``max_sleep`` cuts long sleeps short (for fuzzing: the steps go on regardless)."""
    seen = []
    for step in steps:
        seen.append(step)
        if isinstance(step, Sleep):
            assert step.until >= machine.now
            machine.advance(min(step.until, machine.now + max_sleep))
        elif isinstance(step, WaitFor):
            deadline = machine.now + limit
            while not step.predicate():
                assert machine.now < deadline, f"waited too long for {step.what}"
                machine.advance(machine.now + 0.1)
    return seen


class Printer:
    """A ready machine and everything it printed on its G-code output."""

    def __init__(self, gcodes: Path, seed: int = 0) -> None:
        self.gcodes = gcodes
        gcodes.mkdir(parents=True, exist_ok=True)
        self.m = SimMachine(gcodes, now=START, seed=seed)
        self.out: list[str] = []
        self.m.output = self.out.append
        self.m.finish_startup()
        assert self.drain() == ["// Klipper state: Ready"]
        self.job: Iterator[Step] | None = None

    def run(self, script: str) -> list[Step]:
        return drive(self.m, self.m.execute(script))

    def fails(self, script: str) -> str:
        with pytest.raises(GcodeError) as info:
            self.run(script)
        return str(info.value)

    def q(self, name: str) -> dict[str, Any]:
        return self.m.query({name: None})[name]

    def drain(self) -> list[str]:
        out, self.out[:] = list(self.out), []
        return out

    def print_file(self, name: str, text: str) -> Path:
        path = self.gcodes / name
        path.write_text(text)
        self.run(f'SDCARD_PRINT_FILE FILENAME="{name}"')
        return path

    def drive_job(self, stop_after: int | None = None) -> int:
        """Take the job the machine hands out and run it: ``stop_after`` lines, or until it
        stops. Returns the number of lines it ran."""
        job = self.m.job()
        assert job is not None
        self.job = job
        return self.continue_job(stop_after)

    def continue_job(self, stop_after: int | None = None) -> int:
        """Go on with the job taken before (as the server would after a LineDone)."""
        lines = 0
        if self.job is None:
            return lines
        for step in self.job:
            if isinstance(step, LineDone):
                lines += 1
                if lines == stop_after:
                    return lines
            else:
                drive(self.m, iter([step]))
        self.job = None
        return lines

    def heat(self) -> None:
        self.run("M104 S200\nM140 S60\nM190 S60\nM109 S200")


@pytest.fixture
def p(tmp_path: Path) -> Printer:
    return Printer(tmp_path / "printer_data" / "gcodes")


# -- the G-code parser -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command", "params"),
    [
        ("G1 X10 Y20 F3000", "G1", {"G": "1", "X": "10", "Y": "20", "F": "3000"}),
        ("g1 x10.5 e-.8 ; a comment", "G1", {"G": "1", "X": "10.5", "E": "-.8"}),
        ("M104 S200", "M104", {"M": "104", "S": "200"}),
        ("T0", "T0", {"T": "0"}),
        ("N12 G1 X5*34", "G1", {"N": "12", "G": "1", "X": "5", "*": "34"}),
        (
            "SET_HEATER_TEMPERATURE HEATER=extruder TARGET=200",
            "SET_HEATER_TEMPERATURE",
            {"HEATER": "extruder", "TARGET": "200"},
        ),
        ("set_heater_temperature heater=Bed", "SET_HEATER_TEMPERATURE", {"HEATER": "Bed"}),
        ('RESPOND MSG="hello world"', "RESPOND", {"MSG": "hello world"}),
        ('SDCARD_PRINT_FILE FILENAME="a b.gcode"', "SDCARD_PRINT_FILE", {"FILENAME": "a b.gcode"}),
        ("RESPOND MSG=hi # comment", "RESPOND", {"MSG": "hi"}),
        ("   ", "", {}),
        ("; only a comment", "", {}),
    ],
)
def test_parse_line(line: str, command: str, params: dict[str, str]) -> None:
    parsed = parse_line(line)
    assert parsed.command == command
    assert parsed.params == params
    assert parsed.raw == line.strip()


def test_parse_text_commands_keep_the_rest_of_the_line() -> None:
    assert parse_line("M117 Hello display").raw_params() == "Hello display"
    assert parse_line("M117 123 456").command == "M117"  # digits first: still M117
    assert parse_line("M117 123 456").raw_params() == "123 456"
    assert parse_line("N3 M118 Mixed Case*77").raw_params() == "Mixed Case"


@pytest.mark.parametrize(
    ("line", "command"),
    [('RESPOND MSG="open quote', "RESPOND"), ("SET_PIN PIN", "SET_PIN"), ("FOO 1 2", "FOO 1 2")],
)
def test_parse_malformed_extended_command(line: str, command: str) -> None:
    with pytest.raises(GcodeParseError, match=r"^Malformed command '") as info:
        parse_line(line)
    assert info.value.command == command


def test_parameter_errors_are_klippys() -> None:
    line = parse_line("M104 S1..2")
    with pytest.raises(GcodeError, match=r"^Error on 'M104 S1\.\.2': unable to parse 1\.\.2$"):
        line.get_float("S", 0.0)
    with pytest.raises(GcodeError, match=r"^Error on 'M104 S1\.\.2': missing T$"):
        line.get("T")
    assert parse_line("M104 SABC").get_float("S", 7.0) == 7.0  # "SABC" is a parameter name
    with pytest.raises(GcodeError, match=r"S must be above 0\.0"):
        parse_line("M220 S0").get_float("S", above=0.0)
    with pytest.raises(GcodeError, match="unable to parse nan"):
        parse_line("SET_HEATER_TEMPERATURE TARGET=nan").get_float("TARGET")


@given(st.text(max_size=80))
def test_parser_raises_only_its_own_error(text: str) -> None:
    for line in text.split("\n"):
        try:
            parsed = parse_line(line)
        except GcodeParseError:
            continue
        assert parsed.command == parsed.command.strip()
        assert all(key == key.upper() for key in parsed.params)
        parsed.raw_params()


# -- objects: names, field sets and types as klippy's -------------------------------------------


def test_object_names_cover_what_mainsail_needs(p: Printer) -> None:
    names = p.m.object_names()
    for needed in [
        "webhooks",
        "configfile",
        "toolhead",
        "gcode_move",
        "motion_report",
        "extruder",
        "heater_bed",
        "fan",
        "heaters",
        "idle_timeout",
        "print_stats",
        "virtual_sdcard",
        "pause_resume",
        "display_status",
        "gcode_macro PAUSE",
        "gcode_macro RESUME",
        "gcode_macro CANCEL_PRINT",
        "system_stats",
        "mcu",
        "gcode",
        "exclude_object",
    ]:
        assert needed in names
    assert len(set(names)) == len(names)
    assert p.m.query({"no_such_object": None}) == {"no_such_object": {}}
    assert p.m.query({"toolhead": ["position", "nope"]}) == {
        "toolhead": {"position": [0.0, 0.0, 0.0, 0.0]}
    }


def json_type(value: Any) -> str:
    for kind, name in [(bool, "bool"), (int, "int"), (float, "float"), (str, "str")]:
        if isinstance(value, kind):
            return name
    if value is None:
        return "null"
    if isinstance(value, list):
        return "list"
    assert isinstance(value, dict), value
    return "dict"


#: dicts whose keys are content (command names, endstops), not a field set
CONTENT = {
    "gcode.commands",
    "query_endstops.last_query",
    "toolhead.extra_axes",
    "mcu.mcu_constants",
}


def compare(mine: Any, ref: Any, path: str, *, strict: bool) -> None:
    """Same JSON types, recursively; ``strict``: a null in the reference must be null here."""
    if mine is None or ref is None:
        if strict:
            assert mine is None, path
            assert ref is None, path
        return
    assert json_type(mine) == json_type(ref), f"{path}: {mine!r} vs {ref!r}"
    if isinstance(ref, dict):
        if path in CONTENT:
            return
        if ref:
            assert set(mine) == set(ref), path
        for key in set(mine) & set(ref):
            compare(mine[key], ref[key], f"{path}.{key}", strict=strict)
    elif isinstance(ref, list) and mine and ref:
        if len(mine) == len(ref):
            for i, (a, b) in enumerate(zip(mine, ref, strict=True)):
                compare(a, b, f"{path}[{i}]", strict=strict)
        else:
            assert {json_type(v) for v in mine} <= {json_type(v) for v in ref}, path


def reference_name(mine: str, ref: dict[str, Any]) -> str | None:
    if mine in ref:
        return mine
    if mine.startswith("heater_fan "):
        return next((name for name in ref if name.startswith("heater_fan ")), None)
    return None


@needs_transcripts
def test_objects_have_klippys_fields_and_types(p: Printer) -> None:
    batch = load_status("objects_query_all.json")
    realtime = load_status("rt-objects_query_all.json")
    mine = p.m.query(dict.fromkeys(p.m.object_names()))
    compared = 0
    for name, status in mine.items():
        if name == "configfile":
            continue
        refs = [
            (ref[ref_name], strict)
            for ref, strict in ((batch, True), (realtime, False))
            if (ref_name := reference_name(name, ref)) is not None
        ]
        if not refs:
            continue
        compared += 1
        keys = [set(ref) for ref, _ in refs]
        # every field either klippy showed, and nothing neither showed
        assert set(status) >= set.union(*keys) - {"last_stats"} or name == "mcu", name
        assert set(status) <= set.union(*keys), name
        for ref, strict in refs:
            for key in set(status) & set(ref):
                compare(status[key], ref[key], f"{name}.{key}", strict=strict)
    assert compared >= 20
    assert set(mine["mcu"]) == set(realtime["mcu"])


@needs_transcripts
def test_configfile_matches_klippys_structure(p: Printer) -> None:
    mine = p.q("configfile")
    batch = load_status("objects_query_all.json")["configfile"]
    realtime = load_status("rt-objects_query_all.json")["configfile"]
    assert set(mine) == set(batch)
    assert mine["save_config_pending"] is False
    assert mine["save_config_pending_items"] == {}
    assert mine["warnings"] == []
    for section, options in mine["config"].items():
        assert all(isinstance(v, str) and k == k.lower() for k, v in options.items()), section
    assert mine["config"]["virtual_sdcard"]["path"] == str(p.gcodes)
    assert mine["settings"]["virtual_sdcard"]["path"] == str(p.gcodes)
    # the typed settings: same options as klippy reports for the same modules
    allowed = {"stepper_z": {"position_endstop"}}  # klippy's capture homes Z with a probe
    shared = set(mine["settings"]) & set(batch["settings"])
    assert {"printer", "stepper_x", "extruder", "heater_bed", "fan", "mcu"} <= shared
    assert {"gcode_macro pause", "gcode_macro resume", "gcode_macro cancel_print"} <= shared
    for section in shared:
        ours, theirs = mine["settings"][section], batch["settings"][section]
        assert set(ours) - allowed.get(section, set()) == set(theirs), section
        for key in set(ours) & set(theirs):
            compare(ours[key], theirs[key], f"settings.{section}.{key}", strict=False)
    for section in set(mine["settings"]) & set(realtime["settings"]):
        assert set(realtime["settings"][section]) <= set(mine["settings"][section]), section
    assert mine["settings"]["printer"]["max_velocity"] == 300.0
    assert mine["settings"]["stepper_x"]["microsteps"] == 16
    assert mine["settings"]["stepper_x"]["homing_positive_dir"] is False


def test_config_is_consistent() -> None:
    cfg = load_config()
    assert cfg.section("extruder")["pid_kp"] == 22.2
    assert cfg.config["extruder"]["pid_kp"] == "22.2"
    assert cfg.section("gcode_macro PAUSE")["rename_existing"] == "BASE_PAUSE"
    assert cfg.config["gcode_macro CANCEL_PRINT"]["gcode"].startswith("\n")


@needs_transcripts
def test_info_has_klippys_keys(p: Printer) -> None:
    assert p.m.info()["log_file"] is None  # as klippy started without -l
    p.m.log_file = "/data/logs/klippy.log"  # what the simulator sets: the log it writes
    info = p.m.info()
    assert info["log_file"] == "/data/logs/klippy.log"
    reference = json.loads((TRANSCRIPTS / "info.json").read_text())
    assert set(info) == set(reference)
    for key, value in reference.items():
        assert json_type(info[key]) == json_type(value), key
    assert info["state"] == "ready"
    assert info["state_message"] == "Printer is ready"
    assert info["software_version"].startswith("trioprint-sim-")


def test_a_new_machine_starts_up(tmp_path: Path) -> None:
    machine = SimMachine(tmp_path, now=5.0)
    assert machine.state == "startup"
    assert "Printer is not ready" in machine.state_message
    assert machine.now == 5.0
    machine.finish_startup()
    assert (machine.state, machine.state_message) == ("ready", "Printer is ready")


# -- heating ------------------------------------------------------------------------------------


def test_m109_takes_realistic_time_and_then_holds(p: Printer) -> None:
    t0 = p.m.now
    p.run("M109 S200")
    took = p.m.now - t0
    assert 30.0 <= took <= 180.0
    status = p.q("extruder")
    assert abs(status["temperature"] - 200.0) <= 1.0
    assert status["target"] == 200.0
    temps, powers = [], []
    for _ in range(600):  # a minute after, in 0.1 s steps
        p.m.advance(p.m.now + 0.1)
        status = p.q("extruder")
        temps.append(status["temperature"])
        powers.append(status["power"])
    assert max(abs(t - 200.0) for t in temps) <= 2.0
    assert all(0.0 <= w <= 1.0 for w in powers)
    assert 0.2 < sum(powers) / len(powers) < 0.95  # holding takes partial power
    # M109 reported the temperature about once a second while it waited (as klippy does)
    reports = [line for line in p.drain() if line.startswith("B:")]
    assert abs(len(reports) - took) <= 3
    assert reports[0].startswith("B:25.0 /0.0 T0:25.0 /200.0")


def test_heating_ramp_is_monotonic_and_noise_is_bounded(p: Printer) -> None:
    idle = []
    for _ in range(100):
        p.m.advance(p.m.now + 0.3)
        idle.append(p.q("heater_bed")["temperature"])
    assert all(abs(t - 25.0) <= 0.1 for t in idle)
    assert len(set(idle)) > 1  # there is noise
    p.run("M140 S60")
    ramp = []
    for _ in range(60):
        p.m.advance(p.m.now + 1.0)
        ramp.append(p.q("heater_bed")["temperature"])
    assert all(b >= a - 0.2 for a, b in itertools.pairwise(ramp))
    assert 30.0 < ramp[-1] < 60.5


def test_m190_bed_time(p: Printer) -> None:
    t0 = p.m.now
    p.run("M190 S60")
    assert 60.0 <= p.m.now - t0 <= 150.0
    assert abs(p.q("heater_bed")["temperature"] - 60.0) <= 1.0


def test_m104_and_set_heater_temperature_do_not_wait(p: Printer) -> None:
    assert p.run("M104 S200") == []
    assert p.run("SET_HEATER_TEMPERATURE HEATER=heater_bed TARGET=70") == []
    assert p.q("extruder")["target"] == 200.0
    assert p.q("heater_bed")["target"] == 70.0
    p.m.advance(p.m.now + 2.0)
    assert p.q("extruder")["power"] == 1.0  # full power while far below target
    p.run("SET_HEATER_TEMPERATURE HEATER=extruder")
    assert p.q("extruder")["target"] == 0.0
    p.m.advance(p.m.now + 1.0)
    assert p.q("extruder")["power"] == 0.0
    assert p.q("extruder")["temperature"] > 25.5  # it got warm meanwhile
    assert p.fails("M104 S300") == "Requested temperature (300.0) out of range (0.0:260.0)"
    assert (
        p.fails("SET_HEATER_TEMPERATURE HEATER=chamber TARGET=1")
        == "The value 'chamber' is not valid for HEATER"
    )


def test_temperature_wait(p: Printer) -> None:
    p.run("M104 S100")
    t0 = p.m.now
    p.run("TEMPERATURE_WAIT SENSOR=extruder MINIMUM=80")
    assert p.q("extruder")["temperature"] >= 80.0
    assert p.m.now - t0 > 10.0
    message = p.fails("TEMPERATURE_WAIT SENSOR=extruder")
    assert message == "Error on 'TEMPERATURE_WAIT': missing MINIMUM or MAXIMUM."
    assert p.fails("TEMPERATURE_WAIT SENSOR=nozzle MINIMUM=1") == "Unknown sensor 'nozzle'"


def test_the_seed_decides_the_noise(tmp_path: Path) -> None:
    def trace(seed: int) -> list[float]:
        printer = Printer(tmp_path / str(seed), seed=seed)
        values = []
        for _ in range(20):
            printer.m.advance(printer.m.now + 0.3)
            values.append(printer.q("extruder")["temperature"])
        return values

    assert trace(1) == trace(1)
    assert trace(1) != trace(2)


def test_advance_with_a_big_gap_and_never_backwards(p: Printer) -> None:
    p.run("M104 S200")
    p.m.advance(p.m.now + 300.0)  # one call: sub-stepped inside
    assert abs(p.q("extruder")["temperature"] - 200.0) < 2.0
    now = p.m.now
    p.m.advance(now - 50.0)
    assert p.m.now == now


def test_fan(p: Printer) -> None:
    assert p.q("fan") == {"speed": 0.0, "rpm": None}
    p.run("M106 S127.5")
    assert p.q("fan")["speed"] == 0.5
    p.run("M106")
    assert p.q("fan")["speed"] == 1.0
    p.run("M107")
    assert p.q("fan")["speed"] == 0.0
    assert p.q("heater_fan hotend_fan")["speed"] == 0.0
    p.run("M104 S200")
    assert p.q("heater_fan hotend_fan")["speed"] == 1.0


# -- motion ---------------------------------------------------------------------------------------


def test_moves_need_homing(p: Printer) -> None:
    assert p.fails("G1 X10") == "Must home axis first: 10.000 0.000 0.000 [0.000]"
    assert p.drain() == ["!! Must home axis first: 10.000 0.000 0.000 [0.000]"]
    assert p.q("gcode_move")["position"] == [0.0, 0.0, 0.0, 0.0]  # reset after the error
    t0 = p.m.now
    p.run("G28 X")
    assert p.q("toolhead")["homed_axes"] == "x"
    assert p.fails("G1 Y10") == "Must home axis first: 0.000 10.000 0.000 [0.000]"
    p.run("G1 X10 F6000")  # only X moves: fine
    p.run("G28")
    assert p.m.now - t0 > 3.0  # homing takes time: the carriage travels to the endstops
    toolhead = p.q("toolhead")
    assert toolhead["homed_axes"] == "xyz"
    assert toolhead["position"] == [0.0, 0.0, 0.0, 0.0]
    assert p.m.query_endstops() == {
        "stepper_x": "TRIGGERED",
        "stepper_y": "TRIGGERED",
        "stepper_z": "TRIGGERED",
    }
    p.run("G1 X50 F6000\nM400")
    assert p.m.query_endstops()["stepper_x"] == "open"
    assert p.q("query_endstops")["last_query"]["stepper_x"] == "open"
    p.run("M84")
    assert p.q("toolhead")["homed_axes"] == ""
    assert p.q("stepper_enable")["steppers"]["stepper_x"] is False


def test_out_of_range_is_klippys_message(p: Printer) -> None:
    p.run("G28\nG1 X100 Y100 Z10 F6000\nM400")
    assert p.fails("G1 X9999") == "Move out of range: 9999.000 100.000 10.000 [0.000]"
    assert p.fails("G1 Z-5") == "Move out of range: 100.000 100.000 -5.000 [0.000]"
    assert p.q("gcode_move")["gcode_position"] == [100.0, 100.0, 10.0, 0.0]
    assert p.fails("G1 X") == "Unable to parse move 'G1 X'"
    assert p.fails("G1 X1 F0") == "Invalid speed in 'G1 X1 F0'"


def planned(p: Printer, script: str) -> float:
    """How much print time ``script`` plans, queued behind other work (so that no idle-time
    buffer is added)."""
    p.run("G4 P500")
    before = p.q("toolhead")["print_time"]
    p.run(script)
    duration: float = p.q("toolhead")["print_time"] - before
    p.run("M400")
    return duration


def test_move_time_is_distance_over_feed_rate(p: Printer) -> None:
    p.run("G28\nM400")
    assert planned(p, "G1 X100 F6000") == pytest.approx(1.0)  # 100 mm at 100 mm/s
    assert planned(p, "G1 X50 Y50 F3000") == pytest.approx(math.hypot(50, 50) / 50)
    assert planned(p, "G1 X250 F60000") == pytest.approx(200 / 300)  # max_velocity
    assert planned(p, "G1 Z5 F6000") == pytest.approx(5 / 15)  # max_z_velocity
    assert planned(p, "G4 P1500") == pytest.approx(1.5)
    assert planned(p, "G1 X200\nG1 X250") == pytest.approx(50 / 100 * 2)  # F6000 sticks
    full = planned(p, "G1 X0 F6000")
    p.run("M220 S200")
    assert p.q("gcode_move")["speed_factor"] == 2.0
    assert p.q("gcode_move")["speed"] == 6000.0
    half = planned(p, "G1 X250 F6000")
    assert half == pytest.approx(full / 2)
    assert full == pytest.approx(2.5)


def test_moves_are_planned_ahead_and_interpolated(p: Printer) -> None:
    p.run("G28\nM400")
    t0 = p.m.now
    steps = p.run("G1 X100 F600")  # 10 s at 10 mm/s: klippy returns when <= 2 s are left
    assert [type(s) for s in steps] == [Sleep]
    toolhead = p.q("toolhead")
    assert toolhead["print_time"] - toolhead["estimated_print_time"] == pytest.approx(2.0)
    assert p.m.now - t0 == pytest.approx(10.25 - 2.0)
    report = p.q("motion_report")
    assert report["live_position"][0] == pytest.approx(100.0 - 20.0)  # 2 s from the end
    assert report["live_velocity"] == pytest.approx(10.0)
    assert p.q("toolhead")["position"][0] == 100.0  # the commanded (planned) position
    p.run("M400")
    assert p.q("motion_report")["live_position"][0] == 100.0
    assert p.q("motion_report")["live_velocity"] == 0.0


def test_coordinate_modes(p: Printer) -> None:
    p.run("G28\nM104 S200\nM109 S200")
    p.run("G1 X10 Y10 Z1 F6000\nG91\nG1 X5 Y-2")
    assert p.q("gcode_move")["gcode_position"][:3] == [15.0, 8.0, 1.0]
    assert p.q("gcode_move")["absolute_coordinates"] is False
    p.run("G90\nG92 X0 Y0")
    gm = p.q("gcode_move")
    assert gm["gcode_position"][:2] == [0.0, 0.0]
    assert gm["position"][:2] == [15.0, 8.0]
    p.run("G1 X10")
    assert p.q("toolhead")["position"][0] == 25.0
    p.run("M83\nG1 E2 F300\nG1 E3")
    assert p.q("gcode_move")["absolute_extrude"] is False
    assert p.q("gcode_move")["gcode_position"][3] == 5.0
    p.run("M82\nG92 E0\nG1 E1")
    gm = p.q("gcode_move")
    assert gm["gcode_position"][3] == 1.0
    assert gm["position"][3] == 6.0
    p.run("M221 S50\nG1 E3")  # 2 mm more at 50 %
    assert p.q("gcode_move")["extrude_factor"] == 0.5
    assert p.q("toolhead")["position"][3] == pytest.approx(7.0)
    p.run("M114")
    assert p.drain()[-1] == "X:10.000 Y:0.000 Z:1.000 E:3.000"


def test_cold_extrusion_is_refused(p: Printer) -> None:
    p.run("G28")
    message = p.fails("G1 X10 E1 F600")
    assert message == (
        "Extrude below minimum temp\nSee the 'min_extrude_temp' config option for details"
    )
    assert p.drain() == [
        "// Extrude below minimum temp\n// See the 'min_extrude_temp' config option for details",
        "!! Extrude below minimum temp",
    ]


def test_idle_timeout_states(p: Printer) -> None:
    assert p.q("idle_timeout") == {"state": "Idle", "printing_time": 0.0, "idle_timeout": 600.0}
    p.run("G28\nM104 S150")
    status = p.q("idle_timeout")
    assert status["state"] == "Printing"
    assert status["printing_time"] > 3.0
    p.m.advance(p.m.now + 0.7)  # M104 queued behind 0.25 s of buffer; Ready 0.5 s after
    assert p.q("idle_timeout")["state"] == "Printing"
    p.m.advance(p.m.now + 0.1)
    assert p.q("idle_timeout") == {"state": "Ready", "printing_time": 0.0, "idle_timeout": 600.0}
    p.m.advance(p.m.now + 598.0)
    assert p.q("idle_timeout")["state"] == "Ready"
    assert p.q("extruder")["target"] == 150.0
    p.m.advance(p.m.now + 2.0)
    assert p.q("idle_timeout")["state"] == "Idle"
    assert p.q("extruder")["target"] == 0.0  # the idle G-code turned the heaters off
    assert p.q("toolhead")["homed_axes"] == ""  # and the motors


# -- a print ----------------------------------------------------------------------------------

CUBE = """\
; a tiny three layer print
SET_PRINT_STATS_INFO TOTAL_LAYER=3
G28
M104 S200
M190 S60
M109 S200
G92 E0
M83
G1 Z0.2 F600
SET_PRINT_STATS_INFO CURRENT_LAYER=1
G1 X20 Y20 F6000
G1 X60 Y20 E2 F3000
G1 X60 Y60 E2
;LAYER_CHANGE
G1 Z0.4 F600
SET_PRINT_STATS_INFO CURRENT_LAYER=2
G1 X20 Y60 E2 F3000
G1 X20 Y20 E2
;LAYER_CHANGE
G1 Z0.6 F600
SET_PRINT_STATS_INFO CURRENT_LAYER=3
G1 X60 Y20 E1.5 F3000
G1 X60 Y60 E0.5
M400
M104 S0
M140 S0
"""

#: print time planned after the first extrusion is planned, each move at its feed rate: the
#: buffer klippy leaves before motion after an idle period, the travel still queued (Z to the
#: first layer, to X20 Y20), then the moves of the three layers
PRINTING = 0.25 + 0.2 / 10 + math.hypot(20, 20) / 100 + 3 * (40 / 50 * 2) + 2 * (0.2 / 10)


def test_print_runs_to_complete(p: Printer) -> None:
    assert p.q("print_stats")["state"] == "standby"
    path = p.print_file("cube.gcode", CUBE)
    size = path.stat().st_size
    assert p.drain()[-2:] == [f"File opened:cube.gcode Size:{size}", "File selected"]
    stats = p.q("print_stats")
    assert (stats["state"], stats["filename"]) == ("printing", "cube.gcode")
    assert p.q("virtual_sdcard")["is_active"] is True
    assert p.q("virtual_sdcard")["file_path"] == str(path)
    job = p.m.job()
    assert job is not None
    assert p.m.job() is None  # handed out once
    positions, layers = [], []
    for step in job:
        if isinstance(step, LineDone):
            positions.append(p.q("virtual_sdcard")["file_position"])
            layers.append(p.q("print_stats")["info"]["current_layer"])
            assert p.q("print_stats")["state"] == "printing"
        else:
            drive(p.m, iter([step]))
    assert positions == sorted(positions)
    assert positions[-1] == size
    assert layers[:2] == [None, 0]
    assert layers[-1] == 3
    assert [n for n in (1, 2, 3) if n in layers] == [1, 2, 3]
    stats = p.q("print_stats")
    assert stats["state"] == "complete"
    assert stats["info"] == {"total_layer": 3, "current_layer": 3}
    assert stats["filament_used"] == pytest.approx(10.0)
    assert stats["print_duration"] == pytest.approx(PRINTING, abs=0.05)
    assert stats["total_duration"] > stats["print_duration"] + 60.0  # heating came first
    sd = p.q("virtual_sdcard")
    assert sd == {
        "file_path": None,
        "progress": 1.0,
        "is_active": False,
        "file_position": size,
        "file_size": size,
    }
    assert p.q("display_status")["progress"] == 1.0
    assert p.drain()[-1] == "Done printing file"
    assert p.m.job() is None
    # the durations stop with the print
    p.m.advance(p.m.now + 10.0)
    assert p.q("print_stats")["total_duration"] == stats["total_duration"]
    p.run("SDCARD_RESET_FILE")
    assert p.q("print_stats")["state"] == "standby"
    assert p.q("virtual_sdcard")["file_size"] == 0


def test_pause_and_resume(p: Printer) -> None:
    p.heat()
    p.print_file("cube.gcode", CUBE)
    p.drive_job(stop_after=12)  # the first extrusion done
    position = p.q("virtual_sdcard")["file_position"]
    p.m.pause()
    assert p.q("pause_resume")["is_paused"] is True
    assert p.continue_job() == 0  # the job stops before its next line
    assert p.q("print_stats")["state"] == "paused"
    assert p.q("virtual_sdcard")["is_active"] is False
    assert p.q("virtual_sdcard")["file_position"] == position
    filament = p.q("print_stats")["filament_used"]
    duration = p.q("print_stats")["print_duration"]
    p.m.advance(p.m.now + 30.0)
    assert p.q("print_stats")["print_duration"] == pytest.approx(duration)  # paused time
    assert p.q("print_stats")["total_duration"] > duration + 30.0
    assert p.m.job() is None
    p.run("G91\nG1 Z5 F600\nG90")  # a park move while paused
    p.m.resume()
    assert p.q("pause_resume")["is_paused"] is False
    assert p.q("print_stats")["state"] == "printing"
    assert p.q("toolhead")["position"][2] == pytest.approx(0.2)  # RESUME moved back
    p.drive_job()
    stats = p.q("print_stats")
    assert stats["state"] == "complete"
    assert stats["filament_used"] == pytest.approx(10.0)
    assert filament < 10.0
    p.m.resume()  # not paused: klippy just says so
    assert p.drain()[-1] == "// Print is not paused, resume aborted"


def test_pause_from_the_file(p: Printer) -> None:
    p.heat()
    p.print_file("pause.gcode", "G28\nG1 X10 F6000\nPAUSE\nG1 X20\n")
    assert p.drive_job() == 3
    assert p.q("print_stats")["state"] == "paused"
    assert p.q("toolhead")["position"][0] == 10.0
    p.run("RESUME")
    assert p.drive_job() == 1
    assert p.q("print_stats")["state"] == "complete"
    assert p.q("toolhead")["position"][0] == 20.0


def test_cancel(p: Printer) -> None:
    p.heat()
    p.print_file("cube.gcode", CUBE)
    p.drive_job(stop_after=12)
    p.m.cancel()
    stats = p.q("print_stats")
    assert stats["state"] == "cancelled"
    assert stats["filename"] == "cube.gcode"
    assert p.q("virtual_sdcard") == {
        "file_path": None,
        "progress": 0.0,
        "is_active": False,
        "file_position": 0,
        "file_size": 0,
    }
    assert p.q("extruder")["target"] == 0.0  # the CANCEL_PRINT macro turned heaters off
    assert p.continue_job() == 0
    assert p.m.job() is None
    total = stats["total_duration"]
    p.m.advance(p.m.now + 5.0)
    assert p.q("print_stats")["total_duration"] == total


def test_cancel_while_paused(p: Printer) -> None:
    p.heat()
    p.print_file("cube.gcode", CUBE)
    p.drive_job(stop_after=12)
    p.run("PAUSE")
    p.continue_job()
    assert p.q("print_stats")["state"] == "paused"
    p.run("CANCEL_PRINT")
    assert p.q("print_stats")["state"] == "cancelled"
    assert p.q("pause_resume")["is_paused"] is False


def test_the_file_can_cancel_or_shut_down(p: Printer) -> None:
    p.print_file("c.gcode", "G4 P10\nCANCEL_PRINT\nG4 P10\n")
    assert p.drive_job() == 1
    assert p.q("print_stats")["state"] == "cancelled"
    assert p.q("virtual_sdcard")["file_position"] == 0
    p.print_file("s.gcode", "G4 P10\nM112\nG4 P10\n")
    assert p.drive_job() == 1
    assert p.m.state == "shutdown"
    assert p.q("print_stats")["state"] == "paused"
    assert p.q("virtual_sdcard")["file_position"] == len("G4 P10\n")


def test_error_in_the_file(p: Printer) -> None:
    p.heat()
    p.print_file("bad.gcode", "G28\nG1 X10 F6000\nG1 X9999\nG1 X20\n")
    assert p.drive_job() == 2
    stats = p.q("print_stats")
    assert stats["state"] == "error"
    assert stats["message"] == "Move out of range: 9999.000 0.000 0.000 [0.000]"
    assert p.drain()[-1] == "!! Move out of range: 9999.000 0.000 0.000 [0.000]"
    sd = p.q("virtual_sdcard")
    assert sd["is_active"] is False
    assert sd["file_position"] == len("G28\nG1 X10 F6000\n")
    assert sd["file_path"] is not None  # the file stays loaded, as in klippy
    assert p.q("extruder")["target"] == 0.0  # on_error_gcode
    p.run("SDCARD_RESET_FILE")
    assert p.q("print_stats") == {
        "filename": "",
        "total_duration": 0.0,
        "print_duration": 0.0,
        "filament_used": 0.0,
        "state": "standby",
        "message": "",
        "info": {"total_layer": None, "current_layer": None},
    }


def test_sdcard_errors(p: Printer) -> None:
    assert p.fails("SDCARD_PRINT_FILE FILENAME=missing.gcode") == (
        'Unable to open file "missing.gcode"'
    )
    assert p.fails("SDCARD_PRINT_FILE") == "Error on 'SDCARD_PRINT_FILE': missing FILENAME"
    p.print_file("a.gcode", "G4 P100\n")
    assert p.fails("SDCARD_PRINT_FILE FILENAME=a.gcode") == "SD busy"
    p.drive_job()
    (p.gcodes / "sub").mkdir()
    (p.gcodes / "sub" / "Part One.gcode").write_text("G4 P1\n")
    p.run('SDCARD_PRINT_FILE FILENAME="/sub/part one.gcode"')  # case-insensitive, leading /
    assert p.q("print_stats")["filename"] == "sub/part one.gcode"
    p.drive_job()
    assert p.q("print_stats")["state"] == "complete"


def test_reset_file_from_the_file_is_refused(p: Printer) -> None:
    p.print_file("r.gcode", "SDCARD_RESET_FILE\n")
    p.drive_job()
    assert p.q("print_stats")["message"] == "SDCARD_RESET_FILE cannot be run from the sdcard"


def test_display_status(p: Printer) -> None:
    p.run("M117 Hello display")
    assert p.q("display_status") == {"progress": 0.0, "message": "Hello display"}
    p.run("M73 P42")
    assert p.q("display_status")["progress"] == 0.42
    p.run("SET_DISPLAY_TEXT")
    assert p.q("display_status")["message"] is None


# -- shutdown and restart -----------------------------------------------------------------------

SHUTDOWN_TAIL = (
    '\nOnce the underlying issue is corrected, use the\n"FIRMWARE_RESTART" command to reset '
    "the firmware, reload the\nconfig, and restart the host software.\nPrinter is shutdown\n"
)


def test_emergency_stop(p: Printer) -> None:
    p.run("G28\nM104 S200")
    p.m.advance(p.m.now + 20.0)
    p.m.emergency_stop()
    assert p.m.state == "shutdown"
    assert p.m.state_message == "Shutdown due to webhooks request" + SHUTDOWN_TAIL
    assert p.q("webhooks") == {"state": "shutdown", "state_message": p.m.state_message}
    assert p.drain()[-1] == "// Klipper state: Shutdown"
    hot = p.q("extruder")["temperature"]
    p.m.advance(p.m.now + 30.0)
    assert p.q("extruder")["power"] == 0.0
    assert p.q("extruder")["temperature"] < hot  # the heater is off: it cools
    assert p.fails("G28") == p.m.state_message
    assert p.drain() == [
        "// Shutdown due to webhooks request\n// Once the underlying issue is corrected, use "
        'the\n// "FIRMWARE_RESTART" command to reset the firmware, reload the\n// config, and '
        "restart the host software.\n// Printer is shutdown",
        "!! Shutdown due to webhooks request",
    ]
    p.run("M105")  # still answered while shut down
    assert p.drain()[-1].startswith("B:")
    with pytest.raises(GcodeError):
        p.m.pause()


def test_m112_then_firmware_restart(p: Printer) -> None:
    p.heat()
    p.print_file("cube.gcode", CUBE)
    p.drive_job(stop_after=12)
    with pytest.raises(GcodeError) as info:
        p.run("M112\nG28")  # the line after M112 fails
    assert str(info.value) == "Shutdown due to M112 command" + SHUTDOWN_TAIL
    assert p.m.state == "shutdown"
    assert p.q("print_stats")["state"] == "paused"  # klippy's work handler stops as on pause
    assert p.q("virtual_sdcard")["is_active"] is False
    assert p.continue_job() == 0
    t0 = p.m.now
    p.m.restart(firmware=True)
    assert p.m.state == "startup"
    p.m.advance(t0 + 1.0)
    p.m.finish_startup()
    assert p.m.state == "ready"
    assert p.q("print_stats")["state"] == "standby"
    assert p.q("toolhead")["homed_axes"] == ""
    assert p.q("toolhead")["print_time"] == 0.0
    assert p.q("extruder")["target"] == 0.0
    assert p.q("extruder")["temperature"] > 150.0  # physically still hot
    assert p.q("virtual_sdcard")["file_path"] is None
    p.run("G28")  # works again


def test_restart_command_waits_for_moves(p: Printer) -> None:
    p.run("G28\nM400\nG1 X100 F6000")
    steps = p.run("RESTART\nG28")
    assert isinstance(steps[-1], Sleep)
    assert p.m.state == "startup"  # and the line after RESTART did not run
    assert p.q("toolhead")["homed_axes"] == ""


# -- G-code output --------------------------------------------------------------------------------


def test_unknown_command_is_not_an_error(p: Printer) -> None:
    assert p.run("NOT_A_COMMAND") == []
    assert p.run("T0") == []
    assert p.run("hello world") == []
    assert p.drain() == [
        '// Unknown command:"NOT_A_COMMAND"',
        '// Unknown command:"T0"',
        '// Unknown command:"HELLO"',
    ]


def test_output_lines(p: Printer) -> None:
    p.run("M140 S60\nM104 S200\nM105")
    assert p.drain()[-1] == "B:25.0 /60.0 T0:25.0 /200.0"
    p.run("M115")
    assert p.drain() == [
        "// FIRMWARE_NAME:Klipper FIRMWARE_VERSION:" + p.m.info()["software_version"]
    ]
    p.run("RESPOND MSG=hello\nRESPOND TYPE=command MSG=hi\nRESPOND TYPE=error MSG=oops")
    p.run('RESPOND PREFIX=tip: MSG="two words"\nM118 Plain text')
    assert p.drain() == ["echo: hello", "// hi", "!! oops", "tip: two words", "echo: Plain text"]
    assert p.fails("RESPOND TYPE=loud MSG=x").startswith("RESPOND TYPE 'loud' is invalid")
    p.run("G28\nM400\nM114")
    assert p.drain()[-1] == "X:0.000 Y:0.000 Z:0.000 E:0.000"
    p.run("STATUS\nECHO MSG=hi")
    assert p.drain() == ["// Klipper state: Ready", "// ECHO MSG=hi"]
    # ECHO is an extended command: klippy refuses words without "="
    assert p.fails("ECHO hi there") == "Malformed command 'ECHO hi there'"


def test_multi_line_script_stops_at_the_first_error(p: Printer) -> None:
    with pytest.raises(GcodeError):
        p.run("M117 first\nG1 X5\nM117 never")
    assert p.q("display_status")["message"] == "first"


def test_gcode_help_and_commands(p: Printer) -> None:
    helps = p.m.gcode_help()
    assert helps["SET_HEATER_TEMPERATURE"] == "Sets a heater temperature"
    assert helps["BASE_PAUSE"] == "Renamed builtin of 'PAUSE'"
    assert helps["PAUSE"] == "Pause the actual running print"
    commands = p.q("gcode")["commands"]
    assert commands["G1"] == {}
    assert commands["RESTART"] == {"help": "Reload config file and restart host software"}
    p.m.emergency_stop()
    assert "G1" not in p.q("gcode")["commands"]
    assert "FIRMWARE_RESTART" in p.q("gcode")["commands"]


def test_exclude_object(p: Printer) -> None:
    p.heat()
    p.run("G28\nM83\nG1 Z0.2 F600")
    p.run("EXCLUDE_OBJECT_DEFINE NAME=cube_1 CENTER=50,50 POLYGON=[[40,40],[60,60]]")
    p.run("EXCLUDE_OBJECT_DEFINE NAME=cube_2 CENTER=150,50")
    p.run("EXCLUDE_OBJECT NAME=cube_2")
    assert p.drain()[-1] == "// Excluding object CUBE_2"
    p.run("EXCLUDE_OBJECT_START NAME=cube_2\nG1 X150 Y50 E5 F3000\nEXCLUDE_OBJECT_END")
    assert p.q("toolhead")["position"][:2] == [0.0, 0.0]  # skipped
    p.run("EXCLUDE_OBJECT_START NAME=cube_1\nG1 X50 Y50 E1 F3000\nEXCLUDE_OBJECT_END")
    assert p.q("toolhead")["position"] == [50.0, 50.0, 0.2, 1.0]
    status = p.q("exclude_object")
    assert [o["name"] for o in status["objects"]] == ["CUBE_1", "CUBE_2"]
    assert status["objects"][0]["center"] == [50, 50]
    assert status["excluded_objects"] == ["CUBE_2"]
    assert status["current_object"] is None


# -- robustness -----------------------------------------------------------------------------------

LINES = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda cmd, rest: f"{cmd} {rest}",
        st.sampled_from(
            [
                "G1",
                "G0",
                "G28",
                "G92",
                "G4",
                "M104",
                "M140",
                "M106",
                "M220",
                "M221",
                "M117",
                "M73",
                "SET_HEATER_TEMPERATURE",
                "RESPOND",
                "SET_PRINT_STATS_INFO",
                "SET_VELOCITY_LIMIT",
                "EXCLUDE_OBJECT_DEFINE",
                "SAVE_GCODE_STATE",
                "RESTORE_GCODE_STATE",
                "SET_GCODE_OFFSET",
                "PAUSE",
                "RESUME",
                "CANCEL_PRINT",
            ]
        ),
        st.text(alphabet="XYZEFSPT=.-0123456789 \"'NAME_a", max_size=20),
    ),
)


@given(st.lists(LINES, max_size=6))
def test_execute_raises_only_gcode_errors(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str]
) -> None:
    machine = SimMachine(tmp_path_factory.getbasetemp() / "fuzz", now=START)
    machine.finish_startup()
    drive(machine, machine.execute("G28"))
    for line in lines:
        with contextlib.suppress(GcodeError):
            drive(machine, machine.execute(line), limit=600.0, max_sleep=60.0)
        assert not machine.state_message.startswith("Internal error"), machine.state_message
        status = machine.query(dict.fromkeys(machine.object_names()))
        json.dumps(status)
        assert all(math.isfinite(v) for v in status["toolhead"]["position"])
