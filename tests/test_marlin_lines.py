"""Per-line parsing of the Marlin serial protocol (domain/marlin_lines.py).

Lines marked "transcript" are copied from ../shared/octoprint-transcripts/ (OctoPrint 1.11.8
against its virtual printer); the others are the forms Marlin, Prusa and Repetier print.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain import marlin_lines as ml
from trioprint.domain.marlin_lines import ErrorKind, LineKind, Reading


@pytest.mark.parametrize(
    ("lineno", "command", "expected"),
    [  # transcript
        (0, "M110 N0", b"N0 M110 N0*125\n"),
        (1, "M115", b"N1 M115*39\n"),
        (12, "G1 X120.000 Y100.000 E0.0500 F1500", b"N12 G1 X120.000 Y100.000 E0.0500 F1500*4\n"),
        (1, "M117 hook says started trio_small.gcode",
         b"N1 M117 hook says started trio_small.gcode*59\n"),
        (163, "M112", b"N163 M112*37\n"),
        (165, "M140 S0", b"N165 M140 S0*103\n"),
    ],
)  # fmt: skip
def test_frame_matches_octoprint(lineno: int, command: str, expected: bytes) -> None:
    assert ml.frame(lineno, command) == expected


def test_checksum_is_xor_of_bytes_before_star() -> None:
    assert ml.checksum(b"N0 M110 N0") == 125
    assert ml.checksum(b"") == 0


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("G1 X10 ; move", "G1 X10"),
        ("  G28  ", "G28"),
        ("; only a comment", ""),
        ("", ""),
        ("G1 (inline) X5", "G1   X5"),
        ("G1 X5 (unterminated", "G1 X5"),
        ("M117 Hello (world)", "M117 Hello (world)"),
        ("M117 Hi ; gone", "M117 Hi"),
    ],
)
def test_clean_command(raw: str, clean: str) -> None:
    assert ml.clean_command(raw) == clean


@pytest.mark.parametrize(
    ("command", "code"),
    [("G28 X Y", "G28"), ("m109 S200", "M109"), ("G01 X1", "G1"), ("T1", "T1"), ("hello", None)],
)
def test_command_code(command: str, code: str | None) -> None:
    assert ml.command_code(command) == code


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("ok", LineKind.OK),
        ("ok N12 P15 B3", LineKind.OK),
        ("ok X:90.0 Y:106.0 Z:0.3 E:0 Count: A:9000 B:10600 C:30", LineKind.OK),  # transcript
        ("okay", LineKind.OTHER),
        ("Resend:100", LineKind.RESEND),  # transcript
        ("Resend: 12", LineKind.RESEND),
        ("rs N12", LineKind.RESEND),
        ("Error: Missing checksum", LineKind.ERROR),  # transcript
        ("!! MAXTEMP", LineKind.ERROR),
        ("echo:busy: processing", LineKind.BUSY),
        ("busy: paused for user", LineKind.BUSY),
        ("wait", LineKind.WAIT),  # transcript
        ("start", LineKind.START),  # transcript
        ("//action:pause", LineKind.ACTION),
        ("// just a comment", LineKind.OTHER),
        ("echo:hook says started trio_small.gcode", LineKind.ECHO),  # transcript
        ("FIRMWARE_NAME:Virtual Marlin 1.0 PROTOCOL_VERSION:1.0", LineKind.FIRMWARE_INFO),
        ("Cap:AUTOREPORT_TEMP:1", LineKind.CAPABILITY),
        ("SD card ok", LineKind.OTHER),
        ("", LineKind.EMPTY),
    ],
)
def test_classify(line: str, kind: LineKind) -> None:
    assert ml.classify(line) is kind


def test_parse_ok_forms() -> None:
    assert ml.parse_ok("ok") == ml.OkInfo()
    assert ml.parse_ok("ok N12 P15 B3") == ml.OkInfo(12, 15, 3)
    assert ml.parse_ok("ok 42") == ml.OkInfo(lineno=42)
    assert ml.parse_ok("ok T:21.30 /0.00") == ml.OkInfo(rest="T:21.30 /0.00")
    assert ml.parse_ok("Resend: 1") is None


@pytest.mark.parametrize(
    ("line", "lineno"),
    [("Resend:100", 100), ("Resend: 12", 12), ("Resend: N:12", 12), ("rs N110", 110),
     ("rs 7", 7), ("Resend", None), ("ok", None)],
)  # fmt: skip
def test_parse_resend(line: str, lineno: int | None) -> None:
    assert ml.parse_resend(line) == lineno


@pytest.mark.parametrize(
    ("line", "kind", "last_line"),
    [
        ("Error: Missing checksum", ErrorKind.COMMUNICATION, None),  # transcript
        ("Error: Checksum mismatch", ErrorKind.COMMUNICATION, None),  # transcript
        ("Error: expected line 110 got 111", ErrorKind.COMMUNICATION, None),  # transcript
        ("Error: No Line Number with checksum, Last Line: 109", ErrorKind.COMMUNICATION, 109),
        ("Error:checksum mismatch, Last Line: 5", ErrorKind.COMMUNICATION, 5),
        ("Error:Line Number is not Last Line Number+1, Last Line: 1", ErrorKind.COMMUNICATION, 1),
        ("Error:No Checksum with line number, Last Line: 1", ErrorKind.COMMUNICATION, 1),
        ("Error:MAXTEMP triggered, system stopped! Heater_ID: 0", ErrorKind.FATAL, None),
        ("Error: MINTEMP triggered!", ErrorKind.FATAL, None),
        ("Error:Thermal Runaway, system stopped! Heater_ID: bed", ErrorKind.FATAL, None),
        ("Error:Printer halted. kill() called!", ErrorKind.FATAL, None),
        ("Error:Heating failed, system stopped! Heater_ID: 0", ErrorKind.FATAL, None),
        ("!! Emergency stop", ErrorKind.FATAL, None),
        ("Error:Probing Failed", ErrorKind.OTHER, None),
    ],
)
def test_classify_error(line: str, kind: ErrorKind, last_line: int | None) -> None:
    info = ml.classify_error(line)
    assert info is not None
    assert (info.kind, info.last_line) == (kind, last_line)
    assert not info.message.startswith(":")


def test_classify_error_ignores_other_lines() -> None:
    assert ml.classify_error("echo:Unknown command") is None


def _temps(line: str) -> tuple[dict[str, Reading], dict[str, float]]:
    report = ml.parse_temperatures(line)
    assert report is not None, line
    return report.readings, report.powers


def test_temperatures_marlin_virtual_printer() -> None:  # transcript
    readings, powers = _temps("T:21.30/ 0.00 B:21.30/ 0.00 @:64")
    assert readings == {"tool0": Reading(21.3, 0.0), "bed": Reading(21.3, 0.0)}
    assert powers == {"tool0": 64.0}


def test_temperatures_while_waiting_without_target() -> None:  # transcript (M190)
    assert _temps("B:21.43") == ({"bed": Reading(21.43)}, {})
    assert _temps("T:200.0 E:0 W:?") == ({"tool0": Reading(200.0)}, {})


def test_temperatures_prusa_ok_form() -> None:
    readings, powers = _temps("ok T:20.0 /0.0 B:21.0 /60.0 T0:20.0 /0.0 @:0 B@:127 P:22.0 A:23.1")
    assert readings == {
        "tool0": Reading(20.0, 0.0),
        "bed": Reading(21.0, 60.0),
        "probe": Reading(22.0),
        "ambient": Reading(23.1),
    }
    assert powers == {"tool0": 0.0, "bed": 127.0}


def test_temperatures_repetier() -> None:
    readings, powers = _temps("T:20.00 /0.00 B:20.00 /0.00 B@:0 @:0")
    assert readings == {"tool0": Reading(20.0, 0.0), "bed": Reading(20.0, 0.0)}
    assert powers == {"tool0": 0.0, "bed": 0.0}


def test_temperatures_several_tools_and_chamber() -> None:
    readings, powers = _temps(
        "T:200.0 /210.0 T0:200.0 /210.0 T1:30.0 /0.0 B:60/60 C:30.5 /40 @0:10 @1:0 B@:20 C@:5"
    )
    assert readings == {
        "tool0": Reading(200.0, 210.0),
        "tool1": Reading(30.0, 0.0),
        "bed": Reading(60.0, 60.0),
        "chamber": Reading(30.5, 40.0),
    }
    assert powers == {"tool0": 10.0, "tool1": 0.0, "bed": 20.0, "chamber": 5.0}


def test_negative_and_bare_temperatures() -> None:
    assert _temps("T:-14.5 /0 B:-0.5") == (
        {"tool0": Reading(-14.5, 0.0), "bed": Reading(-0.5)},
        {},
    )


@pytest.mark.parametrize(
    "line",
    [
        "ok X:90.0 Y:106.0 Z:0.3 E:0 Count: A:9000 B:10600 C:30",  # transcript
        "echo:busy: processing",
        "ok",
        "Tool change done",
        "Not SD printing",
    ],
)
def test_not_temperatures(line: str) -> None:
    assert ml.parse_temperatures(line) is None


def test_position_reports() -> None:
    assert ml.parse_position("ok X:90.0 Y:106.0 Z:0.3 E:0 Count: A:9000 B:10600 C:30") == (
        ml.Position(90.0, 106.0, 0.3, 0.0)
    )  # transcript
    assert ml.parse_position("X:0.00 Y:0.00 Z:0.00 E:0.00 Count X:0 Y:0 Z:0") == ml.Position(
        0.0, 0.0, 0.0, 0.0
    )
    assert ml.parse_position("X:1 Y:2 Z:3") == ml.Position(1.0, 2.0, 3.0, None)
    assert ml.parse_position("T:21.30/ 0.00 B:21.30/ 0.00 @:64") is None


def test_sd_status() -> None:
    assert ml.parse_sd_status("Not SD printing") == ml.SdProgress(False)  # transcript
    assert ml.parse_sd_status("SD printing byte 123/456") == ml.SdProgress(True, 123, 456)
    assert ml.parse_sd_status("SD card ok") is None


@pytest.mark.parametrize(
    ("line", "name", "argument"),
    [
        ("//action:pause", "pause", ""),
        ("//action:resume", "resume", ""),
        ("//action:cancel", "cancel", ""),
        ("//action:paused", "paused", ""),
        ("//action:resumed", "resumed", ""),
        ("//action:disconnect", "disconnect", ""),
        ("//action:prompt_begin Filament runout", "prompt_begin", "Filament runout"),
        ("//action:prompt_button Continue", "prompt_button", "Continue"),
        ("//action:prompt_show", "prompt_show", ""),
        ("//action:prompt_end", "prompt_end", ""),
        ("// action:notification Heating...", "notification", "Heating..."),
    ],
)
def test_actions(line: str, name: str, argument: str) -> None:
    assert ml.parse_action(line) == ml.Action(name, argument)


def test_firmware_info_virtual_marlin() -> None:  # transcript
    info = ml.parse_firmware_info("FIRMWARE_NAME:Virtual Marlin 1.0 PROTOCOL_VERSION:1.0")
    assert info is not None
    assert info.fields == {"FIRMWARE_NAME": "Virtual Marlin 1.0", "PROTOCOL_VERSION": "1.0"}
    assert (info.name, info.flavor, info.extruder_count) == ("Virtual Marlin 1.0", "marlin", 1)


def test_firmware_info_values_with_blanks_and_urls() -> None:
    info = ml.parse_firmware_info(
        "FIRMWARE_NAME:Marlin 2.1.2.1 (Jun  5 2023 12:00:00) SOURCE_CODE_URL:"
        "github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 V2 "
        "EXTRUDER_COUNT:2 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff"
    )
    assert info is not None
    assert info.fields["FIRMWARE_NAME"] == "Marlin 2.1.2.1 (Jun  5 2023 12:00:00)"
    assert info.fields["MACHINE_TYPE"] == "Ender-3 V2"
    assert info.extruder_count == 2


@pytest.mark.parametrize(
    ("name", "flavor", "quirk"),
    [
        ("Prusa-Firmware 3.13.2 based on Marlin", "prusa", "identical_resends"),
        ("Repetier_1.0.3", "repetier", "ok_after_resend"),
        ("RepRapFirmware for Duet 3 MB6HC", "reprapfirmware", None),
        ("Marlin bugfix-2.1.x", "marlin", "identical_resends"),
        ("Something else", "unknown", None),
    ],
)
def test_firmware_flavors_and_quirks(name: str, flavor: str, quirk: str | None) -> None:
    info = ml.parse_firmware_info(f"FIRMWARE_NAME:{name} PROTOCOL_VERSION:1.0")
    assert info is not None
    assert info.flavor == flavor
    if quirk is not None:
        assert quirk in info.quirks


def test_capabilities() -> None:  # transcript
    assert ml.parse_capability("Cap:AUTOREPORT_TEMP:1") == ("AUTOREPORT_TEMP", True)
    assert ml.parse_capability("Cap:AUTOREPORT_POS:0") == ("AUTOREPORT_POS", False)
    assert ml.parse_capability("Cap:EMERGENCY_PARSER:1") == ("EMERGENCY_PARSER", True)
    assert ml.parse_capability("Cap:broken") is None


def test_busy_reason() -> None:
    assert ml.parse_busy("echo:busy: processing") == "processing"
    assert ml.parse_busy("busy: paused for user") == "paused for user"
    assert ml.parse_busy("ok") is None


@given(st.text(max_size=200))
def test_every_parser_takes_any_text(line: str) -> None:
    line = line.strip()
    ml.classify(line)
    ml.parse_ok(line)
    ml.parse_resend(line)
    ml.classify_error(line)
    ml.parse_temperatures(line)
    ml.parse_position(line)
    ml.parse_sd_status(line)
    ml.parse_action(line)
    ml.parse_firmware_info(line)
    ml.parse_capability(line)
    ml.parse_busy(line)
    ml.clean_command(line)
    ml.command_code(line)


@given(
    st.integers(min_value=0, max_value=10**9),
    st.text(
        st.characters(min_codepoint=32, max_codepoint=126).filter(lambda c: c not in "*;"),
        max_size=80,
    ),
)
def test_frame_parses_back(lineno: int, command: str) -> None:
    data = ml.frame(lineno, command)
    assert data.endswith(b"\n")
    body, _, value = data[:-1].rpartition(b"*")
    assert ml.checksum(body) == int(value)
    assert body.startswith(b"N%d " % lineno)
