"""The sans-I/O serial line protocol core (domain/gcode_link.py).

Direct tests replay exchanges from ../shared/octoprint-transcripts/ (OctoPrint 1.11.8 against
its virtual printer); the property tests run the link against arbitrary bytes and against a
small pure firmware model that checks line numbers and checksums, drops replies, garbles lines
and asks for resends at random, and require every line of a job to reach it once and in order.
"""

from __future__ import annotations

import contextlib
import random
import re
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint.domain import gcode_events as ev
from trioprint.domain import marlin_lines as ml
from trioprint.domain.gcode_link import GcodeLink, LinkConfig, LinkShutdownError

T = TypeVar("T")

HANDSHAKE_REPLY = (
    b"FIRMWARE_NAME:Virtual Marlin 1.0 PROTOCOL_VERSION:1.0\n"
    b"Cap:AUTOREPORT_TEMP:1\nCap:AUTOREPORT_SD_STATUS:1\nCap:AUTOREPORT_POS:0\n"
    b"Cap:EMERGENCY_PARSER:1\nCap:EXTENDED_M20:0\nCap:LFN_WRITE:0\nok\n"
)  # transcript


def connected(config: LinkConfig | None = None, reply: bytes = HANDSHAKE_REPLY) -> GcodeLink:
    """A link through the transcript's handshake, its set-up commands acknowledged."""
    link = GcodeLink(config)
    link.start_handshake(0.0)
    assert link.bytes_to_send(0.0) == b"N0 M110 N0*125\n"
    link.receive_data(b"ok\n", 0.0)
    assert link.bytes_to_send(0.0) == b"N1 M115*39\n"
    events = link.receive_data(reply, 0.0)
    assert any(isinstance(event, ev.HandshakeComplete) for event in events)
    while data := link.bytes_to_send(0.0):
        assert data.count(b"\n") == 1
        link.receive_data(b"ok\n", 0.0)
    return link


def of_type(events: list[ev.Event], kind: type[T]) -> list[T]:
    return [event for event in events if isinstance(event, kind)]


# -- handshake and capabilities ----------------------------------------------------------------


def test_handshake_as_in_the_transcript() -> None:
    link = GcodeLink()
    link.start_handshake(0.0)
    assert link.bytes_to_send(0.0) == b"N0 M110 N0*125\n"
    events = link.receive_data(b"start\nMarlin: Virtual Marlin!\n\nSD card ok\nok\n", 0.0)
    assert of_type(events, ev.FirmwareReset) == [ev.FirmwareReset()]
    assert [e.line for e in of_type(events, ev.LineReceived)] == [
        "start",
        "Marlin: Virtual Marlin!",
        "SD card ok",
        "ok",
    ]
    # The reset threw the first M110 away: the handshake starts again, as OctoPrint does.
    assert link.bytes_to_send(0.0) == b"N0 M110 N0*125\n"
    link.receive_data(b"ok\n", 0.0)
    assert link.bytes_to_send(0.0) == b"N1 M115*39\n"
    events = link.receive_data(HANDSHAKE_REPLY, 0.0)
    (info,) = of_type(events, ev.FirmwareInfo)
    assert info.firmware.name == "Virtual Marlin 1.0"
    assert ev.Capability("AUTOREPORT_POS", False) in events
    (done,) = of_type(events, ev.HandshakeComplete)
    assert done.capabilities["AUTOREPORT_TEMP"] is True
    assert link.capabilities["EMERGENCY_PARSER"] is True
    assert link.handshake_complete
    assert link.bytes_to_send(0.0) == b"N2 M155 S2*97\n"


def test_autoreports_when_the_firmware_has_them() -> None:
    config = LinkConfig(temperature_interval=2, position_interval=1, sd_status_interval=5)
    link = GcodeLink(config)
    link.start_handshake(0.0)
    link.bytes_to_send(0.0)
    link.receive_data(b"ok\n", 0.0)
    link.bytes_to_send(0.0)
    link.receive_data(
        b"FIRMWARE_NAME:Marlin 2.1.2\nCap:AUTOREPORT_TEMP:1\nCap:AUTOREPORT_POS:1\n"
        b"Cap:AUTOREPORT_SD_STATUS:1\nok\n",
        0.0,
    )
    sent = []
    while data := link.bytes_to_send(0.0):
        sent.append(data.decode().split(" ", 1)[1].split("*")[0])
        link.receive_data(b"ok\n", 0.0)
    assert sent == ["M155 S2", "M154 S1", "M27 S5"]
    assert link.next_deadline() == pytest.approx(30.0)  # the communication timeout, no polls


def test_polling_without_autoreport() -> None:
    link = connected(
        LinkConfig(temperature_interval=2.0, position_interval=3.0),
        b"FIRMWARE_NAME:Old 1.0\nok\n",
    )
    assert link.next_deadline() == pytest.approx(2.0)
    link.timeout(2.0)
    assert link.bytes_to_send(2.0) == ml.frame(2, "M105")
    link.timeout(2.5)
    link.timeout(4.0)  # the first poll is unanswered: no second M105 behind it, only M114
    assert link.queued == 1
    events = link.receive_data(b"ok T:21.30 /0.00 B:21.30 /0.00 @:0 B@:0\n", 4.1)
    (report,) = of_type(events, ev.TemperatureReport)
    assert report.temperatures.readings["bed"] == ml.Reading(21.3, 0.0)
    assert link.bytes_to_send(4.1) == ml.frame(3, "M114")
    events = link.receive_data(b"X:1.00 Y:2.00 Z:3.00 E:0.00 Count X:0 Y:0 Z:0\nok\n", 4.2)
    assert of_type(events, ev.PositionReport)[0].position == ml.Position(1.0, 2.0, 3.0, 0.0)


def test_handshake_timeout_starts_it_again() -> None:
    link = GcodeLink()
    link.start_handshake(0.0)
    assert link.bytes_to_send(0.0) == b"N0 M110 N0*125\n"
    assert link.next_deadline() == pytest.approx(5.0)
    events = link.timeout(5.0)
    assert of_type(events, ev.Timeout) == [ev.Timeout(1, 1, True)]
    assert link.bytes_to_send(5.0) == b"N0 M110 N0*125\n"


# -- sending -----------------------------------------------------------------------------------


def test_comments_and_blanks_are_not_sent() -> None:
    link = connected()
    assert link.send("; a comment") is False
    assert link.send("   ") is False
    assert link.send("G1 X5 ; move") is True
    assert link.bytes_to_send(0.0) == ml.frame(3, "G1 X5")


def test_a_given_line_number_and_checksum_are_replaced() -> None:
    link = connected()
    link.send("N77 G28*12")
    assert link.bytes_to_send(0.0) == ml.frame(3, "G28")


def test_one_command_in_flight_by_default() -> None:
    link = connected()
    for index in range(3):
        link.send(f"G1 X{index}", tag=index)
    assert link.bytes_to_send(0.0) == ml.frame(3, "G1 X0")
    assert link.bytes_to_send(0.0) == b""
    events = link.receive_data(b"ok\n", 0.0)
    assert of_type(events, ev.CommandAcknowledged) == [ev.CommandAcknowledged(0, "G1 X0")]
    assert link.bytes_to_send(0.0) == ml.frame(4, "G1 X1")


def test_partial_lines_are_buffered() -> None:
    link = connected()
    link.send("G28", tag="home")
    link.bytes_to_send(0.0)
    assert link.receive_data(b"o", 0.0) == []
    events = link.receive_data(b"k\r\n", 0.0)
    assert ev.CommandAcknowledged("home", "G28") in events


def test_m110_resets_line_numbers() -> None:
    link = connected()
    link.send("M110 N100")
    assert (
        link.bytes_to_send(0.0)
        == b"N100 M110 N100*" + str(ml.checksum(b"N100 M110 N100")).encode() + b"\n"
    )
    link.receive_data(b"ok\n", 0.0)
    link.send("G28")
    assert link.bytes_to_send(0.0) == ml.frame(101, "G28")


def test_plain_lines_without_always_checksum() -> None:
    link = connected(LinkConfig(always_checksum=False))
    link.send("M105")
    assert link.bytes_to_send(0.0) == b"M105\n"
    link.receive_data(b"ok T:20 /0\n", 0.0)
    link.send("G1 X1", numbered=True)
    assert link.bytes_to_send(0.0).startswith(b"N")


def test_advanced_ok_credit() -> None:
    link = connected()
    for index in range(10):
        link.send(f"G1 X{index}")
    assert link.bytes_to_send(0.0) == ml.frame(3, "G1 X0")
    link.receive_data(b"ok N3 P15 B3\n", 0.0)  # three free slots, nothing in transit
    assert link.uses_advanced_ok
    assert link.bytes_to_send(0.0).count(b"\n") == 3  # N4..N6
    assert link.in_flight == 3
    link.receive_data(b"ok N4 P14 B1\n", 0.0)  # N5, N6 were in transit: B1 - 2 -> none
    assert link.bytes_to_send(0.0) == b""
    link.receive_data(b"ok N6 P14 B3\n", 0.0)  # N5 acked; N6 arrived; 3 free
    assert link.bytes_to_send(0.0).count(b"\n") == 3


def test_immediate_commands_skip_the_credit() -> None:
    link = connected()
    link.send("M109 S200")
    link.bytes_to_send(0.0)
    link.send("M108", immediate=True)
    assert link.bytes_to_send(0.0) == b"M108\n"
    assert link.in_flight == 2


# -- resends -----------------------------------------------------------------------------------


def streaming(first: int = 100) -> GcodeLink:
    link = connected()
    link.send(f"M110 N{first - 1}")
    link.bytes_to_send(0.0)
    link.receive_data(b"ok\n", 0.0)
    return link


def test_resend_missing_checksum_as_in_the_transcript() -> None:
    link = streaming()
    link.send("G1 X106.180 Y119.021 E4.2500 F1500", tag="a")
    link.send("G1 X100.000 Y120.000 E4.3000 F1500", tag="b")
    assert link.bytes_to_send(0.0) == b"N100 G1 X106.180 Y119.021 E4.2500 F1500*54\n"
    events = link.receive_data(b"Error: Missing checksum\nResend:100\nok\n", 0.0)
    assert ev.ResendRequested(100) in events
    assert of_type(events, ev.FirmwareError)[0].kind is ml.ErrorKind.COMMUNICATION
    assert not of_type(events, ev.CommandAcknowledged)
    assert link.bytes_to_send(0.0) == b"N100 G1 X106.180 Y119.021 E4.2500 F1500*54\n"
    events = link.receive_data(b"ok\n", 0.0)
    assert of_type(events, ev.CommandAcknowledged) == [
        ev.CommandAcknowledged("a", "G1 X106.180 Y119.021 E4.2500 F1500")
    ]
    assert link.bytes_to_send(0.0) == b"N101 G1 X100.000 Y120.000 E4.3000 F1500*53\n"


def test_line_number_lost_without_resend_is_resent_after_the_grace() -> None:
    link = streaming(110)
    link.send("G1 X93.820 Y80.979 E4.7500 F1500")
    link.send("G1 X100.000 Y80.000 E4.8000 F1500")
    assert link.bytes_to_send(0.0) == b"N110 G1 X93.820 Y80.979 E4.7500 F1500*57\n"
    # The virtual printer answers a line that lost its N with this and nothing else.
    link.receive_data(b"Error: No Line Number with checksum, Last Line: 109\n", 0.0)
    assert link.bytes_to_send(0.0) == b""
    assert link.next_deadline() == pytest.approx(0.25)
    link.timeout(0.25)
    assert link.bytes_to_send(0.25) == b"N110 G1 X93.820 Y80.979 E4.7500 F1500*57\n"
    link.receive_data(b"ok\n", 0.3)
    assert link.bytes_to_send(0.3) == b"N111 G1 X100.000 Y80.000 E4.8000 F1500*4\n"


def test_marlin_error_with_its_resend_is_resent_once() -> None:
    link = streaming(2)
    link.send("G1 X1")
    link.send("G1 X2")
    link.bytes_to_send(0.0)
    link.receive_data(b"Error:checksum mismatch, Last Line: 1\nResend: 2\nok\n", 0.0)
    assert link.bytes_to_send(0.0) == ml.frame(2, "G1 X1")
    assert link.next_deadline() != pytest.approx(0.25)
    link.timeout(1.0)
    link.receive_data(b"ok\n", 1.0)
    assert link.bytes_to_send(1.0) == ml.frame(3, "G1 X2")


def test_duplicate_resend_requests_are_ignored() -> None:
    link = streaming(10)
    for index in range(6):
        link.send(f"G1 X{index}")
    link.bytes_to_send(0.0)
    link.receive_data(b"ok N10 P15 B3\n", 0.0)
    assert link.bytes_to_send(0.0) == ml.frame(11, "G1 X1") + ml.frame(12, "G1 X2") + ml.frame(
        13, "G1 X3"
    )
    # N11 was damaged: Marlin asks for 11 once for it and once for each line after it.
    events = link.receive_data(b"Error:checksum mismatch, Last Line: 10\nResend: 11\nok\n", 0.0)
    assert ev.ResendRequested(11) in events
    written = link.bytes_to_send(0.0)
    events = link.receive_data(
        b"Error:Line Number is not Last Line Number+1, Last Line: 10\nResend: 11\nok\n", 0.0
    )
    assert ev.ResendRequested(11, duplicate=True) in events
    written += link.bytes_to_send(0.0)
    events = link.receive_data(
        b"Error:Line Number is not Last Line Number+1, Last Line: 10\nResend: 11\nok\n", 0.0
    )
    assert ev.ResendRequested(11, duplicate=True) in events
    written += link.bytes_to_send(0.0)
    assert re.findall(rb"N(\d+) ", written)[:3] == [b"11", b"12", b"13"]
    assert written.count(b"N11 ") == 1


def test_a_line_before_the_resent_one_is_still_acknowledged() -> None:
    """``Resend: 12`` says the firmware has N11: its ``ok`` is owed (here: lost), not refused."""
    link = streaming(10)
    for index in range(4):
        link.send(f"G1 X{index}", tag=index)
    link.bytes_to_send(0.0)
    acked = of_type(link.receive_data(b"ok N10 P15 B3\n", 0.0), ev.CommandAcknowledged)
    assert link.bytes_to_send(0.0) == ml.frame(11, "G1 X1") + ml.frame(12, "G1 X2") + ml.frame(
        13, "G1 X3"
    )
    # The ok of N11 is lost; N12 arrives damaged, N13 is thrown away after it.
    events = link.receive_data(b"Error:checksum mismatch, Last Line: 11\nResend: 12\nok\n", 0.0)
    acked += of_type(events, ev.CommandAcknowledged)
    written = link.bytes_to_send(0.0)
    events = link.receive_data(
        b"Error:Line Number is not Last Line Number+1, Last Line: 11\nResend: 12\nok\n", 0.0
    )
    assert ev.ResendRequested(12, duplicate=True) in events
    acked += of_type(events, ev.CommandAcknowledged)
    written += link.bytes_to_send(0.0)
    for reply in (b"ok N12 P15 B3\n", b"ok N13 P15 B3\n"):
        acked += of_type(link.receive_data(reply, 0.0), ev.CommandAcknowledged)
        written += link.bytes_to_send(0.0)
    assert re.findall(rb"N(\d+) ", written) == [b"12", b"13"]
    # One ok short (N11's): the silence takes what is in flight as acknowledged.
    acked += of_type(link.timeout(30.0), ev.CommandAcknowledged)
    assert sorted(event.tag for event in acked) == [0, 1, 2, 3]
    assert link.in_flight == 0


def test_resend_outside_the_window_is_reported() -> None:
    link = connected(LinkConfig(resend_window=4))
    for index in range(8):
        link.send(f"G1 X{index}")
        link.bytes_to_send(0.0)
        link.receive_data(b"ok\n", 0.0)
    events = link.receive_data(b"Resend: 3\nok\n", 0.0)
    assert ev.ResendImpossible(3) in events
    assert link.bytes_to_send(0.0) == ml.frame(10, "M110 N10")


# -- errors, e-stop, reset ---------------------------------------------------------------------


def test_emergency_stop_bytes_as_octoprint() -> None:  # transcript
    link = connected()
    link.send("M110 N162")
    link.bytes_to_send(0.0)
    link.receive_data(b"ok\n", 0.0)
    link.send("G1 X5", tag="pending")
    assert link.emergency_stop() == (b"M112\nN163 M112*37\nN164 M104 T0 S0*34\nN165 M140 S0*103\n")
    assert link.pop_events() == [ev.CommandDropped("pending", "G1 X5", "emergency stop")]
    assert link.is_shutdown
    with pytest.raises(LinkShutdownError):
        link.send("G28")
    assert link.bytes_to_send(0.0) == b""
    assert link.next_deadline() is None
    link.receive_data(b"start\n", 1.0)
    assert not link.is_shutdown
    assert link.bytes_to_send(1.0) == b"N0 M110 N0*125\n"


def test_heaters_off_per_tool() -> None:
    link = connected(reply=b"FIRMWARE_NAME:Marlin EXTRUDER_COUNT:2\nok\n")
    assert link.emergency_stop().count(b"M104 T") == 2


def test_m112_sent_as_a_command_is_an_emergency_stop() -> None:
    link = connected()
    link.send("G28")
    link.bytes_to_send(0.0)
    link.send("M112")
    assert link.bytes_to_send(0.0).startswith(b"M112\nN")


@pytest.mark.parametrize(
    "line",
    [
        b"Error:MAXTEMP triggered, system stopped! Heater_ID: 0",
        b"Error: MINTEMP triggered!",
        b"Error:Thermal Runaway, system stopped! Heater_ID: bed",
        b"Error:Printer halted. kill() called!",
    ],
)
def test_fatal_errors_stop_the_printer(line: bytes) -> None:
    link = connected()
    link.send("G1 X1", tag=1)
    link.bytes_to_send(0.0)
    events = link.receive_data(line + b"\n", 0.0)
    (error,) = of_type(events, ev.FirmwareError)
    assert (error.kind, error.emergency_stop) == (ml.ErrorKind.FATAL, True)
    assert ev.CommandDropped(1, "G1 X1", "emergency stop") in events
    assert link.bytes_to_send(0.0).startswith(b"M112\n")


def test_fatal_error_without_emergency_stop_configured() -> None:
    link = connected(LinkConfig(emergency_stop_on_fatal_error=False))
    events = link.receive_data(b"Error: MAXTEMP triggered!\n", 0.0)
    assert of_type(events, ev.FirmwareError)[0].emergency_stop is False
    assert link.bytes_to_send(0.0) == b""


def test_old_marlin_two_line_maxtemp() -> None:
    link = connected()
    events = link.receive_data(b"Error:0\n: Extruder switched off. MAXTEMP triggered !\n", 0.0)
    assert [e.kind for e in of_type(events, ev.FirmwareError)] == [
        ml.ErrorKind.OTHER,
        ml.ErrorKind.FATAL,
    ]


def test_firmware_reset_drops_what_was_pending() -> None:
    link = connected()
    link.send("G1 X1", tag="a")
    link.send("G1 X2", tag="b")
    link.bytes_to_send(0.0)
    events = link.receive_data(b"start\n", 0.0)
    assert of_type(events, ev.CommandDropped) == [
        ev.CommandDropped("a", "G1 X1", "firmware reset"),
        ev.CommandDropped("b", "G1 X2", "firmware reset"),
    ]
    assert link.bytes_to_send(0.0) == b"N0 M110 N0*125\n"


def test_clear_queue_and_reset() -> None:
    link = connected()
    link.send("G1 X1", tag="a")
    link.send("G1 X2", tag="b")
    link.bytes_to_send(0.0)
    assert link.clear_queue() == [ev.CommandDropped("b", "G1 X2", "cleared")]
    assert link.reset() == [ev.CommandDropped("a", "G1 X1", "link reset")]
    assert link.next_deadline() is None


# -- timeouts, busy, wait ----------------------------------------------------------------------


def test_communication_timeout_probes_with_m105() -> None:
    link = connected()
    link.send("G1 X1", tag="a")
    link.send("G1 X2")
    link.bytes_to_send(10.0)
    assert link.next_deadline() == pytest.approx(40.0)
    events = link.timeout(40.0)
    assert ev.Timeout(1, 1, False) in events
    assert ev.CommandAcknowledged("a", "G1 X1") in events  # the ok is taken as lost
    assert link.bytes_to_send(40.0) == ml.frame(4, "M105")
    assert of_type(link.timeout(70.0), ev.Timeout) == [ev.Timeout(2, 1, False)]
    assert link.bytes_to_send(70.0) == ml.frame(5, "M105")  # the probe again
    link.receive_data(b"ok T:20 /0\n", 71.0)
    assert link.bytes_to_send(71.0) == ml.frame(6, "G1 X2")


@pytest.mark.parametrize("command", ["G28", "G29", "M109 S200", "M190 S60", "M400", "G4 P1000"])
def test_long_running_commands_get_the_long_timeout(command: str) -> None:
    link = connected()
    link.send(command)
    link.bytes_to_send(0.0)
    assert link.next_deadline() == pytest.approx(900.0)
    assert not of_type(link.timeout(899.0), ev.Timeout)


def test_busy_extends_the_timeout_and_configures_keepalive() -> None:
    link = connected(LinkConfig(host_keepalive_interval=2))
    link.send("G1 X1")
    link.bytes_to_send(0.0)
    events = link.receive_data(b"echo:busy: processing\n", 20.0)
    assert ev.Busy("processing") in events
    assert link.next_deadline() == pytest.approx(50.0)
    link.receive_data(b"ok\n", 21.0)
    assert link.bytes_to_send(21.0) == ml.frame(4, "M113 S2")
    link.receive_data(b"ok\nbusy: processing\n", 22.0)
    assert link.queued == 0  # only once


def test_wait_means_lost_oks() -> None:  # transcript: "wait" after a resent line got no ok
    link = connected()
    link.send("G1 X1")
    link.send("G1 X2")
    link.bytes_to_send(0.0)
    events = link.receive_data(b"Not SD printing\nwait\n", 1.0)
    assert ev.Wait() in events
    assert ev.SdStatus(ml.SdProgress(False)) in events
    assert link.bytes_to_send(1.0) == ml.frame(4, "G1 X2")


def test_action_commands() -> None:
    link = connected()
    events = link.receive_data(b"//action:pause\n//action:prompt_begin Filament runout\n", 0.0)
    assert of_type(events, ev.ActionCommand) == [
        ev.ActionCommand("pause"),
        ev.ActionCommand("prompt_begin", "Filament runout"),
    ]


def test_echo_and_every_line_received() -> None:  # transcript
    link = connected()
    events = link.receive_data(
        b"echo:hook says started trio_small.gcode\nT:21.30/ 0.00 B:21.30/ 0.00 @:64\n", 0.0
    )
    assert ev.Echo("hook says started trio_small.gcode") in events
    assert len(of_type(events, ev.LineReceived)) == 2
    assert len(of_type(events, ev.TemperatureReport)) == 1


def test_repetier_extra_ok_after_resend_is_swallowed() -> None:
    link = connected(reply=b"FIRMWARE_NAME:Repetier_1.0.3\nok\n")
    link.send("G1 X1", tag="a")
    link.send("G1 X2", tag="b")
    first = link.bytes_to_send(0.0)
    link.receive_data(b"Resend:2\nok\nok\n", 0.0)
    assert link.bytes_to_send(0.0) == first
    assert link.bytes_to_send(0.0) == b""


# -- properties --------------------------------------------------------------------------------


def check_written(data: bytes) -> None:
    """Every line written is a plain command or ``N<n> <cmd>*<xor>`` with a right checksum."""
    for line in data.split(b"\n")[:-1]:
        if line.startswith(b"N"):
            body, star, value = line.rpartition(b"*")
            assert star, line
            assert ml.checksum(body) == int(value), line
            assert re.fullmatch(rb"N\d+ \S.*", body), line
        else:
            assert line, line
            assert b"*" not in line, line


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    b"ok\n",
                    b"Resend: 3\n",
                    b"rs 1\n",
                    b"start\n",
                    b"wait\n",
                    b"ok N2 P1 B9\n",
                    b"Error:checksum mismatch, Last Line: 1\n",
                    b"Error:MAXTEMP\n",
                    b"busy: x\n",
                    b"FIRMWARE_NAME:X EXTRUDER_COUNT:99999999999\n",
                    b"Cap:ADVANCED_OK:1\n",
                    b"Resend: 99999999999999999999\n",
                    b"ok N-1 P-1 B-5\n",
                    b"\xff\xfe\x00\n",
                ]
            ),
        ),
        max_size=40,
    )
)
def test_arbitrary_bytes_never_crash(chunks: list[bytes]) -> None:
    link = GcodeLink()
    link.start_handshake(0.0)
    now = 0.0
    for index, chunk in enumerate(chunks):
        now += 0.5
        with contextlib.suppress(LinkShutdownError):
            link.send(f"G1 X{index}", tag=index)
        check_written(link.bytes_to_send(now))
        link.receive_data(chunk, now)
        check_written(link.bytes_to_send(now))
        deadline = link.next_deadline()
        if deadline is not None and index % 3 == 0:
            link.timeout(max(now, deadline))
        check_written(link.bytes_to_send(now))


class FirmwareModel:
    """A Marlin-like firmware: checks line numbers and checksums, answers Error + Resend + ok,
    and (with a seeded random) garbles what it receives, drops what it sends, rejects good
    lines with a resend request, and sometimes answers a lost N as old firmware does (an
    error, nothing else)."""

    LINE = re.compile(r"N(\d+) (.*)\*(\d+)")

    def __init__(self, rng: random.Random, faults: float, advanced: bool) -> None:
        self.rng = rng
        self.faults = faults
        self.advanced = advanced
        self.last_n = 0
        self.rx = b""
        self.out: list[bytes] = []
        self.executed: list[str] = []

    def fault(self) -> bool:
        return self.rng.random() < self.faults

    def reply(self, line: str) -> None:
        if not self.fault():
            self.out.append(line.encode() + b"\n")

    def ok(self) -> None:
        if self.advanced:
            self.reply(f"ok N{self.last_n} P15 B{self.rng.randint(0, 3)}")
        else:
            self.reply("ok")

    def resend(self, error: str) -> None:
        self.reply(f"Error:{error}, Last Line: {self.last_n}")
        self.reply(f"Resend: {self.last_n + 1}")
        self.ok()

    def receive(self, data: bytes) -> None:
        self.rx += data
        *lines, self.rx = self.rx.split(b"\n")
        for raw in lines:
            if self.fault() and raw:  # damaged on the wire
                index = self.rng.randrange(len(raw))
                raw = (
                    raw[:index]
                    + bytes([raw[index] ^ (1 << self.rng.randrange(7))])
                    + raw[index + 1 :]
                )
            self.line(raw.decode("ascii", "replace"))
        if self.fault():
            self.reply(
                self.rng.choice(
                    ["T:21.30/ 0.00 B:21.30/ 0.00 @:64", "echo:busy: processing", "wait"]
                )
            )

    def line(self, line: str) -> None:
        if not line.startswith("N"):
            if "*" in line:
                if self.rng.random() < 0.5:  # old firmware: just the error
                    self.reply(f"Error:No Line Number with checksum, Last Line: {self.last_n}")
                else:
                    self.resend("No Line Number with checksum")
                return
            if line.strip():
                self.execute(line.strip())
            return
        match = self.LINE.fullmatch(line)
        if match is None:
            self.resend("No Checksum with line number")
            return
        number, command = int(match.group(1)), match.group(2)
        if ml.checksum(f"N{number} {command}".encode()) != int(match.group(3)):
            self.resend("checksum mismatch")
            return
        is_m110 = command.startswith("M110")
        if number != self.last_n + 1 and not is_m110:
            self.resend("Line Number is not Last Line Number+1")
            return
        if not is_m110 and self.fault():  # a good line refused anyway
            self.resend("checksum mismatch")
            return
        self.last_n = number
        if is_m110:
            self.last_n = int(command.split("N")[1])
        self.execute(command)

    def execute(self, command: str) -> None:
        self.executed.append(command)
        if command == "M115":
            self.reply("FIRMWARE_NAME:Model 1.0")
            self.reply("Cap:AUTOREPORT_TEMP:1")
        self.ok()

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


def run_job(seed: int, faults: float, advanced: bool, lines: int) -> None:
    rng = random.Random(seed)
    firmware = FirmwareModel(rng, faults, advanced)
    link = GcodeLink(LinkConfig(temperature_interval=None))
    job = [f"G1 X{index} Y{index % 7}" for index in range(lines)]
    fed = 0
    now = 0.0
    link.start_handshake(now)
    for _ in range(20_000):
        while link.handshake_complete and fed < len(job) and link.queued < 4:
            link.send(job[fed], tag=fed)
            fed += 1
        written = link.bytes_to_send(now)
        check_written(written)
        firmware.receive(written)
        replies = firmware.take()
        while replies:  # delivered in random pieces
            cut = rng.randint(1, len(replies))
            link.receive_data(replies[:cut], now)
            replies = replies[cut:]
        done = [command for command in firmware.executed if command.startswith("G1 ")]
        if len(done) == len(job) and link.in_flight == 0 and link.queued == 0:
            break
        if not written:
            deadline = link.next_deadline()
            assert deadline is not None, "the link stalled without a deadline"
            now = max(now, deadline)
            link.timeout(now)
        now += 0.001
    else:
        pytest.fail("the job did not finish")
    assert done == job


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=2**32),
    st.sampled_from([0.0, 0.02, 0.1, 0.25]),
    st.booleans(),
)
def test_every_line_reaches_the_firmware_once_and_in_order(
    seed: int, faults: float, advanced: bool
) -> None:
    run_job(seed, faults, advanced, 150)


def test_a_long_job_against_a_lossy_firmware() -> None:
    run_job(12, 0.05, True, 3000)
    run_job(13, 0.05, False, 3000)
