"""OctoPrint's typed events and the pure mapping from trioprint's state changes to them.

The payload keys are checked against OctoPrint's documentation as the seeds have it (parsed
here from the seed text) and against the payloads a real OctoPrint 1.11.8 sent (the recorded
websocket transcript); the mapper's event order against the order in that transcript.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.bus import OctoPrintEvent
from trioprint.domain import octoprint_events as ev
from trioprint.domain.octoprint_mapping import EventLog, OctoPrintMapper

SHARED = Path("/work/shared")
SEED_EVENTS = SHARED / "seeds" / "002_7ad53f8c951cfb2d.txt"
SEED_WEBSOCKET = SHARED / "seeds" / "000_6380a58e9169a4d3.txt"
TRANSCRIPT = SHARED / "octoprint-transcripts" / "ws-events-only.jsonl"

needs_seeds = pytest.mark.skipif(
    not (SEED_EVENTS.exists() and SEED_WEBSOCKET.exists() and TRANSCRIPT.exists()),
    reason="the OctoPrint seeds and transcripts are not on this machine",
)


# -- the reference material ------------------------------------------------------------------


def seed_events() -> dict[str, list[str]]:
    """OctoPrint's event documentation: event name -> the payload keys it lists."""
    text = SEED_EVENTS.read_text()
    text = text[text.index("Available Events ====") :]
    heads = list(re.finditer(r"(?:^|\s)([A-Z][A-Za-z]+) (?=(?:The|A|An|No|One|There)\b)", text))
    found = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        found[head.group(1)] = re.findall(r"\* ``([A-Za-z_]+)``", text[head.end() : end])
    return found


def seed_websocket_events() -> dict[str, tuple[list[str], dict[str, Any]]]:
    """The websocket event list: event name -> (its documented keys, its example payload)."""
    text = SEED_WEBSOCKET.read_text()
    found = {}
    for block in re.split(r"#### Event: ", text)[1:]:
        name = block.split("\n", 1)[0].strip()
        payload = block.split("#### Payload:", 1)[1].split("Example:", 1)[0]
        keys = re.findall(r"^(\w+): ", payload, flags=re.MULTILINE)
        example = re.search(r"```json\n(.*?)\n```|```json\n(.*)", block, flags=re.DOTALL)
        assert example is not None, name
        found[name] = (keys, json.loads(example.group(1) or example.group(2)))
    return found


def transcript() -> list[tuple[str, Any]]:
    """(event, payload) of every event the recorded OctoPrint sent, in order."""
    events = []
    for line in TRANSCRIPT.read_text().splitlines():
        msg = json.loads(line)["msg"]
        if "event" in msg:
            events.append((msg["event"]["type"], msg["event"]["payload"]))
    return events


def label(name: str, payload: Any) -> str:
    if name == "PrinterStateChanged":
        return f"{name}:{payload['state_id']}"
    return name


# -- sample events ----------------------------------------------------------------------------

SAMPLES: dict[type, Any] = {
    str: "folder/part.gcode",
    int: 3,
    float: 1.5,
    bool: True,
    dict: {"k": 1},
    ev.Position: ev.Position(1.0, 2.0, 0.3, 0.0, 0, 1500.0),
}


def sample(cls: type[OctoPrintEvent]) -> OctoPrintEvent:
    """An instance of ``cls`` with every field set (to a value of its non-None type)."""
    attrs.resolve_types(cls)
    args = {}
    for field in attrs.fields(cls):
        union = typing.get_origin(field.type) in (typing.Union, types.UnionType)
        kinds = typing.get_args(field.type) if union else (field.type,)
        kind = next(k for k in kinds if k is not type(None))
        kind = typing.get_origin(kind) or kind
        args[field.name] = SAMPLES[kind]
    return cls(**args)


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


# -- the events -------------------------------------------------------------------------------


@needs_seeds
def test_every_documented_event_is_defined() -> None:
    documented = set(seed_events()) | set(seed_websocket_events())
    missing = sorted(name for name in documented if ev.lookup(name) is None)
    assert missing == []
    assert len(documented) >= 60


@needs_seeds
def test_payload_keys_are_the_documented_ones() -> None:
    """Every documented key is in the payload; every payload key is documented or sent."""
    docs = seed_events()
    websocket = seed_websocket_events()
    sent: dict[str, set[str]] = {}
    for name, payload in transcript():
        sent.setdefault(name, set()).update(payload or {})
    for name, cls in ev.EVENTS.items():
        documented = set(docs.get(name, [])) | set(
            docs.get("Dwell" if name == "Dwelling" else "", [])
        )
        documented |= set(websocket.get(name, ([], {}))[0])
        script = re.fullmatch(r"GcodeScript(\w+?)(Running|Finished)", name)
        if script and ev.GCODE_SCRIPTS[script.group(1)]:
            # documented for one job script (the others carry the same job payload)
            documented |= set(websocket["GcodeScriptBeforePrintStartedRunning"][0])
        keys = set(ev.PAYLOAD_KEYS[name])
        assert documented <= keys, (name, documented - keys)
        assert keys <= documented | sent.get(name, set()), (name, keys - documented)
        payload = sample(cls).payload()
        if keys:
            assert payload is not None
            assert list(payload) == list(ev.PAYLOAD_KEYS[name])
        else:
            assert payload is None, name


@needs_seeds
def test_payload_types_match_what_octoprint_sent_and_documents() -> None:
    examples = [(n, p) for n, (_, p) in seed_websocket_events().items()]
    checked = set()
    for name, payload in [*transcript(), *examples]:
        cls = ev.lookup(name)
        if cls is None or not payload:
            continue  # ClientAuthed, UserLoggedIn: OctoPrint's users, not defined
        ours = sample(cls).payload()
        assert ours is not None, name
        for key, value in payload.items():
            if value is None:
                continue
            assert json_kind(ours[key]) == json_kind(value), (name, key, ours[key], value)
            if isinstance(value, dict) and key == "position":
                assert set(ours[key]) == set(value)
            checked.add(name)
    assert {"PrintPaused", "PrintDone", "FileAdded", "ZChange", "ChartMarked"} <= checked


def test_printer_state_ids_are_octoprints() -> None:
    assert ev.PrinterStateChanged("OPERATIONAL").payload() == {
        "state_id": "OPERATIONAL",
        "state_string": "Operational",
    }
    assert ev.PrinterStateChanged("OPEN_SERIAL").payload() == {
        "state_id": "OPEN_SERIAL",
        "state_string": "Opening serial connection",
    }
    for state in ("PRINTING", "PAUSED", "PAUSING", "RESUMING", "CANCELLING", "FINISHING"):
        assert state in ev.STATE_STRINGS


def test_job_payloads_carry_the_deprecated_keys() -> None:
    started = ev.PrintStarted("sub/part.gcode", size=10, full_path="/data/gcodes/sub/part.gcode")
    assert started.payload() == {
        "name": "part.gcode",
        "path": "sub/part.gcode",
        "origin": "local",
        "size": 10,
        "owner": ev.OWNER,
        "user": ev.OWNER,
        "file": "/data/gcodes/sub/part.gcode",
        "filename": "part.gcode",
    }
    assert ev.FileAdded("local", "a/b.stl").payload() == {
        "storage": "local",
        "path": "a/b.stl",
        "name": "b.stl",
        "type": ["model", "stl"],
        "operation": "add",
    }
    assert ev.lookup("Dwell") is ev.Dwell
    assert ev.Dwell.NAME == "Dwelling"


# -- the mapper ---------------------------------------------------------------------------------

#: Events trioprint fires where the recorded OctoPrint fired none or others (klippy prints from
#: its SD card: no Home from the file; the metadata analysis is its own component).
NOT_COMPARED = {
    "Home",
    "ZChange",
    "PrintJobSelected",
    "MetadataAnalysisStarted",
    "MetadataAnalysisFinished",
}


def recorded(first: str, last: str, start: int = 0) -> list[str]:
    """The recorded events from the first ``first`` (at or after ``start``) to ``last``."""
    labels = [label(n, p) for n, p in transcript()]
    i = labels.index(first, start)
    j = labels.index(last, i + 1)
    return [x for x in labels[i : j + 1] if x.split(":")[0] not in NOT_COMPARED]


def names(events: list[OctoPrintEvent]) -> list[str]:
    return [label(e.NAME, e.payload()) for e in events if e.NAME not in NOT_COMPARED]


def stats(state: str, **more: Any) -> dict[str, Any]:
    return {"print_stats": {"state": state, **more}}


def ready_mapper() -> tuple[OctoPrintMapper, list[OctoPrintEvent]]:
    mapper = OctoPrintMapper(port="/tmp/klippy.sock", gcodes_path="/data/gcodes")
    out = mapper.klippy("startup")
    out += mapper.status(
        {
            "print_stats": {"state": "standby", "filename": "", "total_duration": 0.0},
            "virtual_sdcard": {"file_position": 0, "progress": 0.0, "file_size": 0},
            "gcode_move": {"gcode_position": [0.0, 0.0, 0.0, 0.0], "speed": 1500.0},
            "toolhead": {"position": [0.0, 0.0, 0.0, 0.0], "extruder": "extruder"},
        }
    )
    out += mapper.klippy("ready", "Printer is ready", {"software_version": "v0.12.0"})
    return mapper, out


@needs_seeds
def test_connecting_is_announced_as_octoprint_does() -> None:
    mapper, out = ready_mapper()
    assert names(out) == recorded("Connecting", "UpdatedFiles")
    assert mapper.state_id == "OPERATIONAL"
    connected = next(e for e in out if isinstance(e, ev.Connected))
    assert connected.payload() == {"port": "/tmp/klippy.sock", "baudrate": 0}


def start_print(mapper: OctoPrintMapper) -> list[OctoPrintEvent]:
    return mapper.status(
        {
            "print_stats": {"state": "printing", "filename": "trio_long.gcode"},
            "virtual_sdcard": {"file_size": 55590, "file_position": 0},
        }
    )


@needs_seeds
def test_a_print_pause_resume_cancel_in_octoprints_order() -> None:
    mapper, _ = ready_mapper()
    out = start_print(mapper)
    assert names(out) == recorded("FileSelected", "PrinterStateChanged:PRINTING")
    started = next(e for e in out if isinstance(e, ev.PrintStarted)).payload()
    assert started is not None
    assert started["size"] == 55590
    assert started["file"] == "/data/gcodes/trio_long.gcode"

    mapper.status({"gcode_move": {"gcode_position": [90.0, 106.0, 0.3, 1.25], "speed": 1500.0}})
    mapper.status({"virtual_sdcard": {"file_position": 1725, "progress": 0.031}})
    paused = mapper.status(stats("paused"))
    assert names(paused) == recorded("PrinterStateChanged:PAUSING", "PrinterStateChanged:PAUSED")
    payload = next(e for e in paused if isinstance(e, ev.PrintPaused)).payload()
    assert payload is not None
    assert payload["position"] == {"x": 90.0, "y": 106.0, "z": 0.3, "e": 1.25, "t": 0, "f": 1500.0}
    assert (payload["fileposition"], payload["progress"]) == (1725, 3)

    resumed = mapper.status(stats("printing"))
    assert names(resumed) == recorded(
        "PrinterStateChanged:RESUMING", "PrinterStateChanged:PRINTING"
    )

    mapper.status({"print_stats": {"total_duration": 7.1}})
    cancelled = mapper.status(stats("cancelled"))
    assert names(cancelled) == recorded("PrintCancelling", "PrinterStateChanged:OPERATIONAL")
    failed = next(e for e in cancelled if isinstance(e, ev.PrintFailed)).payload()
    assert failed is not None
    assert (failed["reason"], failed["time"]) == ("cancelled", 7.1)


@needs_seeds
def test_a_print_done_in_octoprints_order() -> None:
    mapper, _ = ready_mapper()
    start_print(mapper)
    mapper.status({"print_stats": {"total_duration": 4.8}})
    done = mapper.status(stats("complete"))
    first_done = [label(n, p) for n, p in transcript()].index("PrinterStateChanged:FINISHING")
    assert names(done) == recorded(
        "PrinterStateChanged:FINISHING", "PrinterStateChanged:OPERATIONAL", first_done
    )
    payload = next(e for e in done if isinstance(e, ev.PrintDone)).payload()
    assert payload is not None
    assert payload["time"] == 4.8
    # a new print resets what was selected: no deselect while a print is shown as done
    assert mapper.status(stats("standby")) == [ev.FileDeselected()]


def test_a_cancel_asked_for_announces_cancelling_once() -> None:
    mapper, _ = ready_mapper()
    start_print(mapper)
    asked = mapper.command("CANCEL_PRINT")
    assert [e.NAME for e in asked] == ["PrintCancelling", "PrinterStateChanged"]
    out = mapper.status(stats("cancelled"))
    assert "PrintCancelling" not in [e.NAME for e in out]
    assert "PrintCancelled" in [e.NAME for e in out]


def test_z_changes_follow_the_commanded_z() -> None:
    mapper, _ = ready_mapper()
    assert mapper.status({"gcode_move": {"gcode_position": [5.0, 5.0, 0.0, 0.0]}}) == []
    out = mapper.status({"gcode_move": {"gcode_position": [5.0, 5.0, 0.2, 0.0]}})
    assert out == [ev.ZChange(new=0.2, old=0.0)]
    out = mapper.status({"gcode_move": {"gcode_position": [9.0, 5.0, 0.2, 0.0]}})
    assert out == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("G28", ["Home"]),
        ("g28 X Y", ["Home"]),
        ("G4 P100", ["Dwelling"]),
        ("G04 P1", ["Dwelling"]),
        ("M0", ["Waiting"]),
        ("M1", ["Waiting"]),
        ("M226", ["Waiting"]),
        ("M245", ["Cooling"]),
        ("M240", ["Conveyor"]),
        ("M40", ["Eject"]),
        ("M300 S440 P200", ["Alert"]),
        ("M80", ["PowerOn"]),
        ("M81", ["PowerOff"]),
        ("M112", ["EStop"]),
        ("G28\nG4 P10\nM300", ["Home", "Dwelling", "Alert"]),
        ("; G28 in a comment\nM117 hi", []),
        ("M2800", []),
        ("G1 X10", []),
        ("M114", ["PositionUpdate"]),
    ],
)
def test_gcode_sent_through_the_api_fires_octoprints_events(
    script: str, expected: list[str]
) -> None:
    mapper, _ = ready_mapper()
    assert [e.NAME for e in mapper.command(script)] == expected


def test_tool_changes_and_estop_once() -> None:
    mapper, _ = ready_mapper()
    assert mapper.command("T1") == [ev.ToolChange(old=0, new=1)]
    assert mapper.command("T1") == []
    assert mapper.command("M112") == [ev.EStop()]
    out = mapper.klippy("shutdown", "Shutdown due to M112 command")
    assert [label(e.NAME, e.payload()) for e in out] == ["Error", "PrinterStateChanged:ERROR"]
    assert out[0].payload() == {"error": "Shutdown due to M112 command"}


def test_an_emergency_stop_request_is_an_estop_and_fails_the_print() -> None:
    mapper, _ = ready_mapper()
    start_print(mapper)
    out = mapper.klippy("shutdown", "Shutdown due to webhooks request")
    assert [e.NAME for e in out] == [
        "EStop",
        "PrintFailed",
        "MetadataStatisticsUpdated",
        "Error",
        "PrinterStateChanged",
    ]
    failed = out[1].payload()
    assert failed is not None
    assert failed["reason"] == "error"
    # klippy's print_stats then says error: no second PrintFailed
    assert [e.NAME for e in mapper.status(stats("error"))] == []
    out = mapper.klippy("disconnected")
    assert names(out) == ["Disconnected", "PrinterStateChanged:OFFLINE"]


def test_a_lost_link_during_a_print_fails_it() -> None:
    mapper, _ = ready_mapper()
    start_print(mapper)
    out = mapper.klippy("disconnected")
    assert [e.NAME for e in out][:2] == ["PrintFailed", "MetadataStatisticsUpdated"]
    # reconnecting to klippy still printing adopts the print without starting it again
    out = mapper.klippy("startup")
    out += mapper.status(stats("printing", filename="trio_long.gcode"))
    out += mapper.klippy("ready")
    assert "PrintStarted" not in [e.NAME for e in out]
    assert mapper.state_id == "PRINTING"
    assert "PrintPaused" in [e.NAME for e in mapper.status(stats("paused"))]


@needs_seeds
def test_file_operations_in_octoprints_order() -> None:
    mapper, _ = ready_mapper()
    start_print(mapper)
    mapper.status(stats("cancelled"))
    out = mapper.file_changed("create_dir", "gcodes", "trio_folder")
    out += mapper.file_changed("delete_dir", "gcodes", "trio_folder")
    out += mapper.file_changed("delete_file", "gcodes", "trio_long.gcode")
    assert names(out) == recorded_from("FolderAdded", 7)
    assert names(out)[4:6] == ["FileDeselected", "FileRemoved"]
    upload = mapper.file_changed("create_file", "gcodes", "trio_small.gcode")
    upload += mapper.uploaded("gcodes", "trio_small.gcode")
    assert names(upload) == recorded("FileAdded", "Upload")
    assert mapper.file_changed("create_file", "config", "printer.cfg") == []
    moved = mapper.file_changed("move_file", "gcodes", "b/x.gcode", "gcodes", "a/x.gcode")
    assert moved == [
        ev.FileRemoved("local", "a/x.gcode"),
        ev.FileAdded("local", "b/x.gcode"),
        ev.UpdatedFiles(),
    ]


def recorded_from(first: str, count: int) -> list[str]:
    """``count`` recorded events from the first ``first`` on."""
    labels = [label(n, p) for n, p in transcript()]
    kept = [x for x in labels[labels.index(first) :] if x.split(":")[0] not in NOT_COMPARED]
    return kept[:count]


@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["standby", "printing", "paused", "complete", "cancelled", "error"]
            ).map(lambda s: ("status", s)),
            st.sampled_from(["startup", "ready", "shutdown", "disconnected"]).map(
                lambda s: ("klippy", s)
            ),
            st.sampled_from(["PAUSE", "RESUME", "CANCEL_PRINT", "M112", "T2"]).map(
                lambda s: ("command", s)
            ),
        ),
        max_size=40,
    )
)
def test_any_sequence_gives_well_formed_events(steps: list[tuple[str, str]]) -> None:
    """Whatever happens, events are OctoPrint's, payloads serialise, no print starts twice
    without ending, and every end names the job (started, or found running on connecting)."""
    mapper = OctoPrintMapper(port="p")
    running = False
    for kind, value in steps:
        if kind == "status":
            out = mapper.status(stats(value, filename="f.gcode"))
        elif kind == "klippy":
            out = mapper.klippy(value, "Shutdown due to M112 command")
        else:
            out = mapper.command(value)
        for event in out:
            assert ev.EVENTS[event.NAME] is type(event)
            json.dumps(event.payload())
            if event.NAME == "PrintStarted":
                assert not running
                running = True
            elif event.NAME in ("PrintDone", "PrintFailed"):
                payload = event.payload()
                assert payload is not None
                assert payload["path"] == "f.gcode"
                running = False
        assert mapper.state_id in ev.STATE_STRINGS


def test_the_event_log_is_bounded_and_filters() -> None:
    log = EventLog(3)
    for i in range(5):
        log.add(ev.ZChange(new=float(i), old=None), float(i))
    log.add(ev.Home(), 9.0)
    assert len(log) == 3
    assert [e["time"] for e in log.get()] == [3.0, 4.0, 9.0]
    assert log.get(1) == [{"event": "Home", "payload": None, "time": 9.0}]
    assert [e["payload"]["new"] for e in log.get(names=frozenset({"ZChange"}))] == [3.0, 4.0]
    with pytest.raises(ValueError, match="at least 1"):
        EventLog(0)


def test_the_documentation_lists_every_event_with_its_payload() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "octoprint-events.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| .* \| `(.*)` \|$", doc, flags=re.MULTILINE))
    assert sorted(rows) == sorted(ev.EVENTS)
    for name, example in rows.items():
        payload = json.loads(example)
        if payload is None:
            assert ev.PAYLOAD_KEYS[name] == (), name
        else:
            assert tuple(payload) == ev.PAYLOAD_KEYS[name], name
        if "not fired" not in doc.split(f"| `{name}` |", 1)[1].split("\n", 1)[0]:
            assert name in FIRED, name


#: The events trioprint fires (the others are defined for features it does not have).
FIRED = {
    "Startup", "Shutdown", "ClientOpened", "ClientClosed", "Connecting", "Connected",
    "Disconnected", "Error", "PrinterStateChanged", "FirmwareData", "Upload", "FileAdded",
    "FileRemoved", "FolderAdded", "FolderRemoved", "UpdatedFiles", "MetadataAnalysisStarted",
    "MetadataAnalysisFinished", "MetadataStatisticsUpdated", "FileSelected", "PrintJobSelected",
    "FileDeselected", "PrintStarted", "PrintDone", "PrintFailed", "PrintCancelling",
    "PrintCancelled", "PrintPaused", "PrintResumed", "ChartMarked", "PowerOn", "PowerOff", "Home",
    "ZChange", "Dwelling", "Waiting", "Cooling", "Alert", "Conveyor", "Eject", "EStop",
    "PositionUpdate", "ToolChange", "SettingsUpdated",
}  # fmt: skip


def test_upload_fires_only_for_uploads_with_what_was_asked() -> None:
    mapper, _ = ready_mapper()
    # a copy, an archive or another program's file is added, not uploaded
    assert names(mapper.file_changed("create_file", "gcodes", "copy.gcode")) == [
        "FileAdded",
        "UpdatedFiles",
    ]
    out = mapper.uploaded(
        "gcodes", "sub/part.gcode", select=True, print_=True, effective_select=True
    )
    assert [e.payload() for e in out] == [
        {
            "name": "part.gcode",
            "path": "sub/part.gcode",
            "target": "local",
            "select": True,
            "print": True,
            "effective_select": True,
            "effective_print": False,
            "file": "sub/part.gcode",
        }
    ]
    assert mapper.uploaded("config", "printer.cfg") == []
