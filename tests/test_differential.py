"""Differential test: the same calls, in the frontends' order, to trioprint and to Moonraker 0.11.

Both servers sit in front of a simulated klippy of their own (the same simulator, the same
configuration and files), and one websocket to each sends the scenario below: every method
Mainsail, Fluidd and KlipperScreen send, in the order they send them, then error cases. The
replies are compared by shape (object keys and JSON types, recursively; numbers are one type) and
by error code. A difference fails the test unless docs/api-coverage.md lists it, with its reason,
in its "Known differences" table; a listed difference that no longer occurs fails it too, so the
table stays true.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trio
from trio_websocket import open_websocket_url

from trioprint.sim.server import SimKlippy

from .klippy_real import _in_ci
from .live import RpcClient, live_server
from .test_sim_moonraker import (
    _NOT_INSTALLED,
    MOONRAKER,
    MOONRAKER_CONF,
    SPEED,
    WAIT,
    moonraker_on_sim,
    workdir,
)

__all__ = ["workdir"]  # the fixture, imported for its use below

#: Under CI a missing Moonraker fails the test (moonraker_on_sim), elsewhere it skips it.
needs_moonraker = pytest.mark.skipif(not MOONRAKER and not _in_ci(), reason=_NOT_INSTALLED)

DOC = Path(__file__).resolve().parent.parent / "docs" / "api-coverage.md"
#: A file as PrusaSlicer writes one, so that both servers have its slicer metadata.
PART = (Path(__file__).resolve().parent / "data" / "metadata" / "prusaslicer.gcode").read_text()

#: The sections both servers get beyond their own basics (the components the panels need).
EXTRA_CONF = """\
[job_queue]

[webcam cam1]
stream_url: /webcam/?action=stream
snapshot_url: /webcam/?action=snapshot
"""

MAINSAIL_OBJECTS = {
    "webhooks": None,
    "toolhead": None,
    "extruder": None,
    "heater_bed": None,
    "print_stats": None,
    "virtual_sdcard": None,
    "gcode_move": None,
    "display_status": None,
    "configfile": ["config"],
}


class Step(NamedTuple):
    method: str
    params: dict[str, Any] | None = None
    #: Paths (dotted, "*" for any key or index) whose object keys are data, not shape: their
    #: keys are not compared, only the shapes of their values.
    data_keys: tuple[str, ...] = ()
    #: Paths whose objects are compared only on the keys both sides have (server.config's
    #: sections: each server has sections of its own).
    common: tuple[str, ...] = ()
    #: Paths not compared (what the two configuration files say differently by design).
    skip: tuple[str, ...] = ()


# One scenario, sent to both. The client names are those the frontends identify with.
SCENARIO: list[Step] = [
    # Mainsail v2.18.2's start-up (../shared/mainsail/README.md lists it), in its order
    Step(
        "server.connection.identify",
        {"client_name": "mainsail", "version": "2.18.2", "type": "web", "url": "http://x"},
    ),
    Step("server.info"),
    Step("server.config", common=("config",), skip=("orig", "files")),
    Step("machine.system_info", data_keys=("system_info.network",)),
    Step("machine.proc_stats", data_keys=("system_cpu_usage",)),
    Step("server.database.list"),
    Step("server.database.get_item", {"namespace": "mainsail"}),
    Step("server.database.post_item", {"namespace": "mainsail", "key": "init", "value": True}),
    Step("server.database.get_item", {"namespace": "mainsail"}),
    Step("server.history.list", {"start": 0, "limit": 50}),
    Step("server.history.totals"),
    Step("server.files.get_directory", {"path": "config", "extended": True}),
    Step("server.files.get_directory", {"path": "gcodes", "extended": True}),
    Step("server.files.metadata", {"filename": "part.gcode"}),
    Step("server.webcams.list"),
    Step("printer.info"),
    Step("printer.objects.list"),
    Step("printer.objects.query", {"objects": MAINSAIL_OBJECTS}),
    Step("printer.objects.subscribe", {"objects": MAINSAIL_OBJECTS}),
    Step("server.gcode_store", {"count": 100}),
    Step("server.temperature_store", {"include_monitors": True}, data_keys=("",)),
    Step("server.job_queue.status"),
    Step("server.announcements.list"),
    # Fluidd's start-up adds these
    Step(
        "server.connection.identify",
        {"client_name": "fluidd", "version": "1.30.0", "type": "web", "url": "http://x"},
    ),
    Step("server.database.get_item", {"namespace": "fluidd"}),
    Step("server.files.roots"),
    Step("printer.gcode.help", data_keys=("",)),
    Step("server.files.list", {"root": "gcodes"}),
    # KlipperScreen's
    Step("server.files.list", {"root": "config"}),
    Step("printer.query_endpoints.list"),
    Step("printer.gcode.script", {"script": "G28"}),
    Step("machine.device_power.devices"),
    # A print, as a user starts one from any of them
    Step("printer.print.start", {"filename": "part.gcode"}),
    Step("server.job_queue.post_job", {"filenames": ["part.gcode"]}),
    Step("server.job_queue.status"),
    Step("server.job_queue.delete_job", {"all": True}),
    Step("server.history.list", {"limit": 1}),
    Step("printer.print.cancel"),
    # Bad input: missing arguments, unknown files, bad types, unknown methods
    Step("server.files.metadata", {}),
    Step("server.files.metadata", {"filename": "nope.gcode"}),
    Step("printer.print.start", {"filename": "nope.gcode"}),
    Step("server.database.get_item", {"namespace": "nope"}),
    Step("server.database.get_item", {"namespace": "mainsail", "key": "missing"}),
    Step("server.database.post_item", {"namespace": "mainsail"}),
    Step("printer.objects.query", {"objects": "toolhead"}),
    Step("server.files.get_directory", {"path": "nope"}),
    Step("server.files.delete_file", {"path": "gcodes/nope.gcode"}),
    Step("server.history.get_job", {"uid": "ffffff"}),
    Step("server.job_queue.delete_job", {"job_ids": ["nope"]}),
    Step("server.webcams.get_item", {"name": "nope"}),
    Step("no.such.method"),
]


# --- shapes -------------------------------------------------------------------------------


def shape(value: Any) -> Any:
    """The JSON type tree of ``value``: objects keep their keys, arrays the shapes they hold."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["array", sorted({json.dumps(shape(v), sort_keys=True) for v in value})]
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


def differences(ours: Any, theirs: Any, path: str, step: Step) -> list[str]:
    """Where ``ours`` and ``theirs`` differ in shape: one ``path: what`` line per place."""
    if _matches(path, step.skip):
        return []
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if _matches(path, step.data_keys):
            merged_ours = _merge(list(ours.values()))
            merged_theirs = _merge(list(theirs.values()))
            if merged_ours is None or merged_theirs is None:
                return []  # one side holds no entries: nothing to compare
            return differences(merged_ours, merged_theirs, _join(path, "*"), step)
        found = []
        if not _matches(path, step.common):
            found += [f"{_join(path, key)}: missing" for key in sorted(set(theirs) - set(ours))]
            found += [f"{_join(path, key)}: extra" for key in sorted(set(ours) - set(theirs))]
        for key in sorted(set(ours) & set(theirs)):
            found += differences(ours[key], theirs[key], _join(path, key), step)
        return found
    if isinstance(ours, list) and isinstance(theirs, list):
        merged_ours, merged_theirs = _merge(ours), _merge(theirs)
        if merged_ours is None or merged_theirs is None:
            return []  # an empty array has no element shape to compare
        return differences(merged_ours, merged_theirs, _join(path, "*"), step)
    ours_type, theirs_type = _type(ours), _type(theirs)
    if ours_type != theirs_type:
        return [f"{path or '.'}: {ours_type} (Moonraker: {theirs_type})"]
    return []


def _merge(values: list[Any]) -> Any:
    """One value whose shape covers all of ``values`` (objects merged key by key)."""
    if not values:
        return None
    if all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for value in values:
            for key, item in value.items():
                merged.setdefault(key, item)
        return merged
    non_null = [v for v in values if v is not None]
    return non_null[0] if non_null else None


def _type(value: Any) -> str:
    s = shape(value)
    return s if isinstance(s, str) else ("object" if isinstance(value, dict) else "array")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    parts = path.split(".") if path else []
    for pattern in patterns:
        want = pattern.split(".") if pattern else []
        if len(want) == len(parts) and all(w in ("*", p) for w, p in zip(want, parts, strict=True)):
            return True
    return False


def compare(step: Step, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The differences between two replies to ``step``, each ``method path: what``."""
    name = step.method
    if "error" in theirs or "error" in ours:
        our_code = ours.get("error", {}).get("code") if "error" in ours else "success"
        their_code = theirs.get("error", {}).get("code") if "error" in theirs else "success"
        if our_code != their_code:
            return [f"{name} error: {our_code} (Moonraker: {their_code})"]
        return []
    return [
        f"{name} {line}" for line in differences(ours.get("result"), theirs.get("result"), "", step)
    ]


def known_differences() -> dict[str, str]:
    """docs/api-coverage.md's "Known differences" table: difference -> reason."""
    text = DOC.read_text()
    _, _, section = text.partition("## Known differences")
    known = {}
    for line in section.splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            known[match.group(1)] = match.group(2)
    return known


# --- the servers --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def trioprint_on_sim(root: Path) -> AsyncIterator[str]:
    """trioprint in front of a simulated klippy of its own; the websocket URL."""
    data = root / "tp"
    (data / "gcodes").mkdir(parents=True)
    (data / "gcodes" / "part.gcode").write_text(PART)
    sock = root / "tp.sock"
    conf = root / "trioprint.conf"
    conf.write_text(f"[server]\nklippy_uds_address: {sock}\n\n[history]\n\n{EXTRA_CONF}")
    sim = SimKlippy(sock, data / "gcodes", speed=SPEED)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        async with live_server(data, conf) as live:
            with trio.fail_after(WAIT):
                await live.instance.klippy.wait_ready()
            yield live.ws
        nursery.cancel_scope.cancel()


async def run_scenario(url: str) -> list[dict[str, Any]]:
    replies = []
    async with open_websocket_url(url) as ws:
        client = RpcClient(ws)
        with trio.fail_after(WAIT):
            await _until_analysed(client, "part.gcode")
        for step in SCENARIO:
            with trio.fail_after(WAIT):
                replies.append(await client.call(step.method, step.params))
            if step.method == "printer.print.start" and "result" in replies[-1]:
                with trio.fail_after(WAIT):
                    await _until_printing(client)
    return replies


async def _until_analysed(client: RpcClient, filename: str) -> None:
    """Until the server has the file's slicer metadata (both analyse files as they come)."""
    while True:
        reply = await client.call("server.files.metadata", {"filename": filename})
        if "slicer" in reply.get("result", {}):
            return
        await trio.sleep(0.05)


async def _until_printing(client: RpcClient) -> None:
    """Until print_stats says printing and the job is in the history (``in_progress``, from
    the moment it starts): both servers then see the same job."""
    while True:
        reply = await client.call("printer.objects.query", {"objects": {"print_stats": None}})
        state = reply.get("result", {}).get("status", {}).get("print_stats", {}).get("state")
        if state in ("printing", "complete"):
            break
        await trio.sleep(0.05)
    while True:
        reply = await client.call("server.history.list", {"limit": 1})
        if reply.get("result", {}).get("count"):
            return
        await trio.sleep(0.05)


@pytest.mark.slow
@needs_moonraker
async def test_same_shapes_as_moonraker(workdir: Path) -> None:
    moon_conf = MOONRAKER_CONF + "\n" + EXTRA_CONF
    async with moonraker_on_sim(workdir, moon_conf) as rig:
        await rig.wait_ready()
        (rig.data / "gcodes" / "part.gcode").write_text(PART)
        await rig.wait_listed("part.gcode")
        port = rig.http.base_url.port
        theirs = await run_scenario(f"ws://127.0.0.1:{port}/websocket")
    async with trioprint_on_sim(workdir) as url:
        ours = await run_scenario(url)
    _dump(ours, theirs)
    found: list[str] = []
    for step, mine, reference in zip(SCENARIO, ours, theirs, strict=True):
        found += compare(step, mine, reference)
    known = known_differences()
    unlisted = [d for d in found if d not in known]
    gone = [d for d in known if d not in found]
    report = "\n".join(found)
    print(f"differences from Moonraker 0.11 ({len(found)}):\n{report}")
    assert not unlisted, "not in docs/api-coverage.md's Known differences:\n" + "\n".join(
        f"| `{d}` | ... |" for d in unlisted
    )
    assert not gone, "listed in docs/api-coverage.md but no longer seen:\n" + "\n".join(gone)


def _dump(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Both sides' replies in $TRIOPRINT_DIFF_DUMP, for a person reading the differences."""
    dump = os.environ.get("TRIOPRINT_DIFF_DUMP")
    if dump:
        Path(dump).write_text(json.dumps({"trioprint": ours, "moonraker": theirs}, indent=1))


# --- the comparison itself ----------------------------------------------------------------


def test_shapes_compare_keys_types_and_error_codes() -> None:
    step = Step("m", data_keys=("by_name",), common=("some",), skip=("ignored",))
    same = {"result": {"a": 1, "b": [1.5, 2], "by_name": {"x": {"v": 1}}}}
    other = {"result": {"a": 2.5, "b": [3], "by_name": {"y": {"v": 2}, "z": {"v": 3}}}}
    assert compare(step, same, other) == []
    assert compare(step, {"result": {"a": "1"}}, {"result": {"a": 1, "c": None}}) == [
        "m c: missing",
        "m a: string (Moonraker: number)",
    ]
    assert compare(step, {"result": {"by_name": {"x": {"w": 1}}}}, same) == [
        "m a: missing",
        "m b: missing",
        "m by_name.*.v: missing",
        "m by_name.*.w: extra",
    ]
    assert compare(step, {"error": {"code": 400}}, {"error": {"code": 404}}) == [
        "m error: 400 (Moonraker: 404)"
    ]
    assert compare(step, {"result": "ok"}, {"error": {"code": -32601}}) == [
        "m error: success (Moonraker: -32601)"
    ]
    assert compare(step, {"result": [1]}, {"result": []}) == []
    assert compare(step, {"result": {"some": {"a": 1}}}, {"result": {"some": {"b": 1}}}) == []
    assert compare(step, {"result": {"ignored": 1}}, {"result": {"ignored": [2]}}) == []
