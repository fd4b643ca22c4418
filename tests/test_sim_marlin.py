"""The simulated Marlin as a pure model: replies, line checks, resends, planner time, faults."""

from __future__ import annotations

import re

import pytest

from trioprint.sim.marlin import BUSY, KILLED, MarlinSim
from trioprint.sim.marlin_parts import (
    Checked,
    FaultRates,
    LineError,
    MarlinOptions,
    check_line,
    checksum,
    parse_words,
    with_checksum,
)

TEMPS = re.compile(r"^ok T:\d+\.\d\d /\d+\.\d\d B:\d+\.\d\d /\d+\.\d\d @:\d+ B@:\d+$")


class Host:
    """Sends numbered, checksummed lines to a model with a fake clock."""

    def __init__(self, sim: MarlinSim | None = None) -> None:
        self.sim = sim or MarlinSim()
        self.now = 0.0
        self.n = 0

    def raw(self, line: str) -> list[str]:
        self.sim.feed(line.encode() + b"\n", self.now)
        return self.lines()

    def send(self, command: str) -> list[str]:
        self.n += 1
        return self.raw(with_checksum(f"N{self.n} {command}"))

    def wait(self, seconds: float) -> list[str]:
        self.now += seconds
        self.sim.advance(self.now)
        return self.lines()

    def lines(self) -> list[str]:
        return self.sim.read().decode().splitlines()


def test_checksum_is_marlins_xor() -> None:
    assert checksum("N0 M110 N0") == 125  # the transcript's handshake line
    assert with_checksum("N1 M115") == "N1 M115*39"


def test_check_line_accepts_and_refuses() -> None:
    assert check_line("N1 M115*39", 0) == Checked(1, "M115")
    assert check_line("M105", 7) == Checked(None, "M105")
    assert check_line("N5 M110 N0*99", 12) == LineError("checksum mismatch")
    assert check_line(with_checksum("N5 M110 N0"), 12) == Checked(0, "M110 N0")
    assert check_line("N3 M105*1", 1) == LineError("Line Number is not Last Line Number+1")
    assert check_line("N2 M105", 1) == LineError("No Checksum with line number")


def test_parse_words() -> None:
    assert parse_words("G1 X10 Y-2.5 F3000") == ("G1", {"X": 10.0, "Y": -2.5, "F": 3000.0})
    assert parse_words("g01x1") == ("G1", {"X": 1.0})
    assert parse_words("G28 X Y") == ("G28", {"X": 0.0, "Y": 0.0})
    assert parse_words("hello") == ("", {})


def test_boot_handshake_and_m115() -> None:
    host = Host()
    host.sim.boot()
    assert host.lines()[0] == "start"
    assert host.raw("M110 N0") == ["ok"]
    reply = host.send("M115")
    assert reply[0].startswith("FIRMWARE_NAME:Marlin ")
    assert "PROTOCOL_VERSION:1.0" in reply[0]
    caps = dict(line[4:].rsplit(":", 1) for line in reply[1:-1])
    assert caps["AUTOREPORT_TEMP"] == "1"
    assert caps["AUTOREPORT_POS"] == "1"
    assert caps["EMERGENCY_PARSER"] == "1"
    assert caps["ADVANCED_OK"] == "0"
    assert caps["EXTENDED_M20"] == "0"
    assert reply[-1] == "ok"


def test_m105_temperature_report() -> None:
    host = Host()
    (reply,) = host.send("M105")
    assert TEMPS.match(reply), reply
    assert reply.startswith("ok T:25.")


def test_unknown_command_and_comments() -> None:
    host = Host()
    assert host.send("M4242 S1") == ['echo:Unknown command: "M4242 S1"', "ok"]
    assert host.raw("; only a comment") == []
    assert host.raw("G90 ; absolute") == ["ok"]


def test_line_errors_request_resends_and_drop_the_buffer() -> None:
    host = Host()
    host.send("G90")
    # a wrong checksum: error, resend, ok; the next line in the same burst is dropped
    host.sim.feed(b"N2 G91*1\n" + with_checksum("N3 M105").encode() + b"\n", host.now)
    assert host.lines() == ["Error:checksum mismatch, Last Line: 1", "Resend: 2", "ok"]
    assert host.raw(with_checksum("N3 G90")) == [
        "Error:Line Number is not Last Line Number+1, Last Line: 1",
        "Resend: 2",
        "ok",
    ]
    assert host.raw("N2 G90") == [
        "Error:No Checksum with line number, Last Line: 1",
        "Resend: 2",
        "ok",
    ]
    assert host.raw(with_checksum("N2 G90")) == ["ok"]
    assert host.sim.last_line == 2
    # M110 sets the line number, from the line itself or its N word
    assert host.raw(with_checksum("N7 M110 N100")) == ["ok"]
    assert host.raw(with_checksum("N101 G90")) == ["ok"]
    assert host.raw("M110 N0") == ["ok"]
    assert host.sim.last_line == 0


def test_lines_queued_behind_a_numbered_m110_are_kept() -> None:
    host = Host()
    host.send("G4 S1")  # blocks: the next lines wait in the receive buffer
    burst = [with_checksum("N2 M110 N10"), with_checksum("N11 G90"), with_checksum("N12 G90")]
    host.sim.feed("\n".join(burst).encode() + b"\n", host.now)
    assert host.wait(1.0) == ["ok", "ok", "ok", "ok"]
    assert host.raw(with_checksum("N13 G90")) == ["ok"]  # M110 ran after N12 was checked
    assert [c.number for c in host.sim.executed] == [1, 10, 11, 12, 13]


def test_moves_take_their_time_in_a_four_deep_planner() -> None:
    host = Host()
    host.send("G28")
    host.wait(60)
    assert host.sim.homed == {0, 1, 2}
    # 10 mm at 10 mm/s: one second each; four fit in the planner, the fifth waits
    host.send("G91")
    for _ in range(4):
        assert host.send("G1 X10 F600") == ["ok"]
    assert host.sim.planner.planned(host.now) == 4
    assert host.send("G1 X10 F600") == []  # blocked: the planner is full
    assert host.wait(0.999) == []
    assert host.wait(0.002) == ["ok"]  # the first block ended: a slot is free
    assert host.send("M400") == []
    assert host.wait(3.9) == ["echo:busy: processing"]
    assert host.wait(0.11) == ["ok"]
    assert host.send("M114") == ["X:50.00 Y:0.00 Z:0.00 E:0.00 Count X:4000 Y:0 Z:0", "ok"]


def test_relative_moves_feedrate_limits_and_software_endstops() -> None:
    host = Host()
    host.send("G28")
    host.wait(60)
    host.send("G91")
    host.send("G1 Z10 F6000")  # Z is limited to 5 mm/s: 2 s
    assert host.wait(1.9) == []
    host.send("M400")
    assert host.wait(0.2) == ["ok"]
    host.send("G90")
    assert host.send("G1 X500 Y-3 F60000") == ["ok"]  # clamped to the bed
    assert host.sim.position[:3] == [220.0, 0.0, 10.0]
    host.wait(60)
    assert host.send("M114")[0].startswith("X:220.00 Y:0.00 Z:10.00 E:0.00 Count X:17600 ")


def test_g4_dwell_says_busy_every_two_seconds() -> None:
    host = Host()
    assert host.send("G4 S5") == []
    assert host.wait(2.0) == [BUSY]
    assert host.wait(2.0) == [BUSY]
    assert host.wait(1.0) == ["ok"]
    host.send("M113 S0")
    host.send("G4 P3000")
    assert host.wait(3.0) == ["ok"]


def test_m109_waits_with_temperature_lines() -> None:
    host = Host()
    assert host.send("M109 S60") == [" T:25.02 /60.00 B:25.02 /0.00 @:0 B@:0 W:?"]
    lines = host.wait(5.0)
    assert all(re.match(r"^ T:\d+\.\d\d /60\.00 .* W:\?$", line) for line in lines), lines
    assert len(lines) == 5
    lines = host.wait(300.0)
    assert lines[-1] == "ok"
    assert any(line.endswith(" W:9") for line in lines)
    assert abs(host.sim.hotend.smoothed - 60.0) < 1.5


def test_m190_and_m108_breaks_the_wait() -> None:
    host = Host()
    host.send("M190 S100")
    host.wait(3.0)
    assert host.raw("M108") == ["ok", "ok"]  # the wait ends, then M108 runs
    assert host.sim.bed.target == 100.0


def test_m104_m140_set_targets_and_m106_fan() -> None:
    host = Host()
    assert host.send("M104 S300") == ["ok"]  # clamped under MAXTEMP - 15
    assert host.sim.hotend.target == 260.0
    host.send("M140 S60")
    host.send("M106 S127.5")
    assert host.sim.fan_speed == 0.5
    host.send("M107")
    assert host.sim.fan_speed == 0.0
    (reply,) = host.send("M105")
    assert "/260.00 B:" in reply
    assert "/60.00 @:" in reply


def test_autoreports() -> None:
    host = Host()
    host.send("M155 S2")
    host.send("M154 S1")
    lines = host.wait(2.0)
    assert lines[0] == "X:110.00 Y:110.00 Z:10.00 E:0.00 Count X:8800 Y:8800 Z:4000"
    assert sum(line.startswith(" T:") for line in lines) == 1
    assert sum(line.startswith("X:") for line in lines) == 2
    host.send("M155 S0")
    host.send("M154 S0")
    assert host.wait(10.0) == []


def test_autoreports_unknown_without_the_capability() -> None:
    caps = {"AUTOREPORT_TEMP": False, "EMERGENCY_PARSER": True}
    host = Host(MarlinSim(MarlinOptions(capabilities=caps)))
    assert host.send("M155 S1") == ['echo:Unknown command: "M155 S1"', "ok"]


def test_advanced_ok() -> None:
    host = Host(MarlinSim(MarlinOptions(advanced_ok=True)))
    assert host.send("G28") == []
    host.wait(60)
    assert host.lines() == []
    assert host.send("G1 X10 F600") == ["ok N2 P3 B3"]
    assert host.raw("G1 X20") == ["ok P2 B3"]
    (reply,) = host.send("M105")
    assert TEMPS.match(reply)


def test_m112_kills_at_once_even_while_blocked() -> None:
    host = Host()
    host.send("M109 S200")
    host.wait(2.0)
    assert host.send("M112") == [KILLED]
    assert host.sim.halted
    assert host.sim.hotend.target == 0.0
    assert host.send("M105") == []
    assert host.wait(10.0) == []
    host.sim.reset(host.now)
    assert host.lines()[0] == "start"
    assert host.raw("M110 N0") == ["ok"]


def test_faults_drop_ok_garble_resend() -> None:
    host = Host()
    host.sim.drop_next_ok()
    assert host.send("G90") == []
    host.sim.garble_next_line()
    assert host.send("G90") == ["Error:checksum mismatch, Last Line: 1", "Resend: 2", "ok"]
    host.n = 1
    host.sim.request_resend()
    assert host.send("G90") == ["Resend: 2", "ok"]
    host.n = 1
    assert host.send("G90") == ["ok"]
    assert [c.number for c in host.sim.executed] == [1, 2]


def test_go_silent_and_maxtemp() -> None:
    host = Host()
    host.sim.go_silent(host.now, 5.0)
    assert host.send("M105") == []
    assert host.wait(5.0) == []
    host.n = 0
    assert TEMPS.match(host.send("M105")[0])
    host.sim.thermal_error(host.now, 0, "MAXTEMP")
    assert host.lines() == ["Error:MAXTEMP triggered, system stopped! Heater_ID: 0", KILLED]
    host.sim.reset(host.now)
    host.lines()
    host.sim.thermal_error(host.now, "bed", "RUNAWAY")
    assert host.lines()[0] == "Error:Thermal Runaway, system stopped! Heater_ID: bed"


@pytest.mark.parametrize("seed", range(5))
def test_random_faults_still_deliver_every_line_once_in_order(seed: int) -> None:
    """A naive host (resend on Resend:, re-poll on silence) gets every line through once."""
    faults = FaultRates(drop_ok=0.05, garble=0.1, resend=0.05, seed=seed)
    sim = MarlinSim(MarlinOptions(faults=faults))
    lines = [f"G1 X{i % 100} F60000" for i in range(300)]
    now, sent, next_n = 0.0, {}, 1
    while next_n <= len(lines):
        line = with_checksum(f"N{next_n} {lines[next_n - 1]}")
        sent[next_n] = line
        sim.feed(line.encode() + b"\n", now)
        reply: list[str] = []
        for _ in range(50):
            now += 0.05
            sim.advance(now)
            reply += sim.read().decode().splitlines()
            if "ok" in reply:
                break
        resend = [int(r.split()[1]) for r in reply if r.startswith("Resend:")]
        if resend:
            next_n = resend[0]
        elif "ok" in reply or sim.last_line >= next_n:
            next_n += 1
        # else: the ok was lost; the line got in iff last_line says so (checked above)
    assert [c.number for c in sim.executed] == list(range(1, len(lines) + 1))
