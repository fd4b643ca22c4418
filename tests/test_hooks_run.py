"""Event hooks running: real subprocesses, the timeout and kill, the EventHooks component on a
bus with a fake printer link, and a G-code hook on the live simulated printer."""

from __future__ import annotations

import datetime
import logging
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import attrs
import pytest
import trio
import trio.testing

from trioprint.bus import Bus, OctoPrintEvent
from trioprint.components import hooks as hooks_module
from trioprint.components.hooks import EventHooks, run_command
from trioprint.config import load_config
from trioprint.errors import ApiError

from .live import live_server

WAIT = 30.0
NOW = datetime.datetime(2026, 11, 23, 15, 42, 29, 600521)
NASTY = "a b'c\"d $(touch pwned) `id` ;x\n\\ ${HOME}"


@attrs.frozen
class Done(OctoPrintEvent):
    """A test event with a payload (the real ones live in domain/octoprint_events.py)."""

    NAME: ClassVar[str] = "PrintDone"
    name: str
    path: str = "x.gcode"


@attrs.frozen
class Bare(OctoPrintEvent):
    NAME: ClassVar[str] = "Startup"

    def payload(self) -> dict[str, Any] | None:
        return None


class FakeKlippy:
    """What EventHooks uses of the link: the status cache, a subscription, run_gcode."""

    def __init__(self, status: dict[str, Any] | None = None) -> None:
        self.cache = SimpleNamespace(state=status or {})
        self.subscriptions: dict[str, Any] = {}
        self.scripts: list[str] = []
        self.fail_next = False

    def set_internal_subscription(self, name: str, spec: Any, callback: Any) -> None:
        self.subscriptions[name] = spec

    async def run_gcode(self, script: str) -> Any:
        self.scripts.append(script)
        if self.fail_next:
            self.fail_next = False
            raise ApiError("Klippy Host not connected", 503)
        return {}


def config(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "trioprint.conf"
    path.write_text(text)
    return load_config(path, tmp_path)


async def start(nursery: trio.Nursery, hooks: EventHooks) -> None:
    await nursery.start(hooks.run)


# --- run_command ------------------------------------------------------------------------------


async def test_a_command_runs_with_its_output_captured() -> None:
    result = await run_command(["sh", "-c", "printf 'out '; printf err >&2; exit 3"], 30)
    assert result.returncode == 3
    assert result.output == "out err"
    assert not result.ok
    assert not result.timed_out
    ok = await run_command(["printf", "%s|", "a b", "$(x)"], 30)
    assert (ok.ok, ok.output) == (True, "a b|$(x)|")


async def test_a_missing_program_is_an_error_not_a_crash() -> None:
    result = await run_command(["/nonexistent/program"], 30)
    assert result.returncode is None
    assert result.error is not None
    assert not result.ok


async def test_output_is_capped() -> None:
    result = await run_command(["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"], 30)
    assert result.ok
    assert len(result.output) == 64 * 1024


async def test_the_timeout_kills_the_command(autojump_clock: trio.testing.MockClock) -> None:
    result = await run_command(["sleep", "60"], 30)
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL


async def test_a_cancelled_command_takes_what_it_started_with_it(tmp_path: Path) -> None:
    """The background ``sleep`` holds a FIFO open; EOF on it proves it died with the group
    (the timeout kills the same way: the process group)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = trio.lowlevel.FdStream(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    keep_open = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # no EOF before the child writes
    argv = ["/bin/sh", "-c", f"sleep 60 > {fifo} & echo $! > {fifo}; wait"]
    finished = []

    async def run() -> None:
        finished.append(await run_command(argv, 120))

    async with reader, trio.open_nursery() as nursery:
        nursery.start_soon(run)
        data = b""
        with trio.fail_after(WAIT):
            while b"\n" not in data:
                data += await reader.receive_some()
        os.close(keep_open)
        nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.fail_after(WAIT):
            while await reader.receive_some():  # EOF: every writer is gone, the sleep too
                pass
    assert finished == []
    assert int(data) > 0


# --- the component ----------------------------------------------------------------------------


async def test_a_system_hook_writes_its_expanded_arguments(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    cfg = config(
        tmp_path,
        "[event_hook argv]\n"
        "event: PrintDone\n"
        "type: system\n"
        f'command: sh -c \'printf "%s|%s|%s\\n" "$1" "$2" "$3" >> "$0"\' {out} {{name}}'
        " {__eventname} {__json}\n"
        "[event_hook shell]\n"
        "event: PrintDone, PrintFailed\n"
        "type: system\n"
        "shell: true\n"
        f"command: printf '%s|%s\\n' {{name}} \"{{__filename}} at {{__progress}}%\" >> {out}\n",
    )
    klippy = FakeKlippy(
        {
            "print_stats": {"state": "complete", "filename": "sub/part.gcode"},
            "virtual_sdcard": {"progress": 1.0},
        }
    )
    bus = Bus()
    hooks = EventHooks(cfg, bus, klippy, now=lambda: NOW)  # type: ignore[arg-type]
    assert hooks.warnings == []
    assert "event_hooks" in klippy.subscriptions
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        bus.publish(Done(name=NASTY))
        with trio.fail_after(WAIT):
            runs = await hooks.wait_completed(2)
        nursery.cancel_scope.cancel()
    assert sorted(r.hook for r in runs) == ["argv", "shell"]
    assert all(r.results[0].ok for r in runs), runs
    text = out.read_text()
    json_value = '{"name": "a b\'c\\"d $(touch pwned) `id` ;x\\n\\\\ ${HOME}", "path": "x.gcode"}'
    assert f"{NASTY}|PrintDone|{json_value}\n" in text
    assert f"{NASTY}|part.gcode at 100%\n" in text
    assert len(text) == len(f"{NASTY}|PrintDone|{json_value}\n{NASTY}|part.gcode at 100%\n")
    assert not (tmp_path / "pwned").exists()


async def test_job_placeholders_come_from_the_status_cache(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "[event_hook job]\nevent: ZChange\ntype: system\n"
        "command: printf '%s\\n' {__filename} {__filepath} {__fileorigin} {__progress}"
        " {__currentZ} {new}\n",
    )

    @attrs.frozen
    class ZChange(OctoPrintEvent):
        NAME: ClassVar[str] = "ZChange"
        new: float
        old: float | None

    klippy = FakeKlippy()
    bus = Bus()
    hooks = EventHooks(cfg, bus, klippy)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        bus.publish(ZChange(0.2, None))
        with trio.fail_after(WAIT):
            await hooks.wait_completed(1)
        klippy.cache.state.update(
            print_stats={"state": "printing", "filename": "cubes/cube.gcode"},
            virtual_sdcard={"progress": 0.4249},
            gcode_move={"gcode_position": [10.0, 10.0, 0.6, 1.0]},
        )
        bus.publish(ZChange(0.6, 0.2))
        with trio.fail_after(WAIT):
            runs = await hooks.wait_completed(2)
        nursery.cancel_scope.cancel()
    assert runs[0].results[0].output == "NO FILE\nNO PATH\nNO FILE\n0\n-1\n0.2\n"
    assert runs[1].results[0].output == "cube.gcode\ncubes/cube.gcode\nlocal\n42\n0.6\n0.6\n"


async def test_a_hanging_hook_blocks_no_other_hook_and_dies_with_the_component(
    tmp_path: Path,
) -> None:
    cfg = config(
        tmp_path,
        "[event_hook slow]\nevent: PrintDone\ntype: system\ncommand: sleep 60\ntimeout: 120\n"
        "[event_hook fast]\nevent: PrintDone\ntype: system\ncommand: printf fast\n",
    )
    bus = Bus()
    hooks = EventHooks(cfg, bus, FakeKlippy())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        bus.publish(Done(name="a"))
        bus.publish(Done(name="b"))
        with trio.fail_after(WAIT):
            runs = await hooks.wait_completed(2)
        nursery.cancel_scope.cancel()
    assert [(r.hook, r.results[0].output) for r in runs] == [("fast", "fast"), ("fast", "fast")]


async def test_failures_are_recorded_and_later_events_still_run(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "[event_hook fails]\nevent: PrintDone\ntype: system\n"
        "command:\n  sh -c 'exit 4'\n  printf never\n"
        "[event_hook missing]\nevent: PrintDone\ntype: system\ncommand: /no/such/program\n"
        "[event_hook needs_key]\nevent: Startup\ntype: system\ncommand: echo {name}\n"
        "[event_hook ok]\nevent: Startup\ntype: system\ncommand: printf {__eventname}\n",
    )
    bus = Bus()
    hooks = EventHooks(cfg, bus, FakeKlippy())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        bus.publish(Done(name="a"))
        with trio.fail_after(WAIT):
            await hooks.wait_completed(2)
        bus.publish(Bare())
        with trio.fail_after(WAIT):
            runs = {r.hook: r for r in await hooks.wait_completed(4)}
        nursery.cancel_scope.cancel()
    assert [r.returncode for r in runs["fails"].results] == [4]  # stops at the first failure
    assert runs["missing"].results[0].returncode is None
    assert runs["needs_key"].error == "no placeholder 'name' for this event"
    assert runs["needs_key"].results == ()
    assert runs["ok"].results[0].output == "Startup"


async def test_gcode_hooks_go_through_the_printer_link_in_order(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "[event_hook g]\nevent: PrintDone\ntype: gcode\n"
        "command:\n  M117 {name}\n  G4 P{__progress}\n",
    )
    klippy = FakeKlippy()
    bus = Bus()
    hooks = EventHooks(cfg, bus, klippy)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        klippy.fail_next = True
        bus.publish(Done(name="first"))
        bus.publish(Done(name="two\nG28\rM112"))
        with trio.fail_after(WAIT):
            runs = await hooks.wait_completed(2)
        nursery.cancel_scope.cancel()
    assert klippy.scripts == ["M117 first\nG4 P0", "M117 two G28 M112\nG4 P0"]
    assert runs[0].error == "Klippy Host not connected"
    assert runs[1].error is None
    assert runs[1].gcode == ("M117 two G28 M112", "G4 P0")


async def test_disabled_and_broken_hooks(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        "[event_hook off]\nevent: PrintDone\ntype: gcode\ncommand: M117 x\nenabled: false\n"
        "[event_hook broken]\nevent: PrintDone\ntype: gcode\ncommand: M117 x\ntimeout: -1\n",
    )
    klippy = FakeKlippy()
    bus = Bus()
    hooks = EventHooks(cfg, bus, klippy)  # type: ignore[arg-type]
    assert hooks.hooks == []
    assert hooks.warnings == [
        "[event_hook broken] timeout: expected a number of seconds greater than 0, got '-1';"
        " the hook is disabled"
    ]
    assert klippy.subscriptions == {}  # no hook: nothing asked of klippy


async def test_a_real_event_class_triggers_a_hook(tmp_path: Path) -> None:
    from trioprint.domain.octoprint_events import FileAdded

    cfg = config(
        tmp_path,
        "[event_hook added]\nevent: FileAdded\ntype: system\n"
        "command: printf '%s %s' {__eventname} {__json}\n",
    )
    bus = Bus()
    hooks = EventHooks(cfg, bus, FakeKlippy())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        bus.publish(FileAdded(storage="local", path="trio_small.gcode"))
        with trio.fail_after(WAIT):
            [run] = await hooks.wait_completed(1)
        nursery.cancel_scope.cancel()
    assert run.results[0].output == (
        'FileAdded {"storage": "local", "path": "trio_small.gcode", "name": "trio_small.gcode",'
        ' "type": ["machinecode", "gcode"], "operation": "add"}'
    )


async def test_a_gcode_hook_on_the_simulated_printer(tmp_path: Path) -> None:
    conf = tmp_path / "trioprint.conf"
    conf.write_text(
        "[simulator]\nspeed: 20\n"
        "[event_hook hello]\nevent: PrintDone\ntype: gcode\ncommand: M117 done {name}\n"
        "[event_hook typo]\nevent: PrintDone\ntype: gcod\ncommand: M117 x\n"
    )
    async with live_server(tmp_path, conf) as live:
        instance = live.instance
        with trio.fail_after(WAIT):
            await instance.klippy.wait_ready()
            instance.bus.publish(Done(name="cube\nM112"))
            [run] = await instance.event_hooks.wait_completed(1)
            query = {"objects": {"display_status": None}}
            status = (await instance.klippy.request("objects/query", query))["status"]
        assert instance.klippy.state == "ready"  # the M112 in the value stayed text
    assert run.error is None
    assert status["display_status"]["message"] == "done cube M112"
    assert (
        f"{conf}:9: [event_hook typo] type: expected one of 'system', 'gcode', got 'gcod'; the"
        " hook is disabled" in instance.warnings
    )
    assert "event_hooks" in instance.component_names()


async def test_runs_beyond_the_limit_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hooks_module, "MAX_PENDING", 2)
    cfg = config(
        tmp_path,
        "[event_hook slow]\nevent: PrintDone\ntype: system\ncommand: sleep 60\ntimeout: 120\n",
    )
    bus = Bus()
    hooks = EventHooks(cfg, bus, FakeKlippy())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        for name in "abcd":
            bus.publish(Done(name=name))
        await trio.testing.wait_all_tasks_blocked()
        assert hooks.dropped == 2
        nursery.cancel_scope.cancel()
    assert hooks._pending == 0  # the two running ones ended with the cancellation


async def test_debug_logs_the_expanded_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(
        tmp_path,
        "[event_hook loud]\nevent: PrintDone\ntype: system\ndebug: true\n"
        "command: printf '%s\\n' {name}\n"
        "[event_hook quiet]\nevent: PrintDone\ntype: system\ncommand: printf '%s\\n' {name}\n",
    )
    bus = Bus()
    hooks = EventHooks(cfg, bus, FakeKlippy())  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="trioprint.components.hooks")
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        bus.publish(Done(name="a b"))
        with trio.fail_after(WAIT):
            await hooks.wait_completed(2)
        nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records]
    assert "event hook loud: PrintDone: running printf '%s\\n' 'a b'" in messages
    assert "event hook quiet: PrintDone: running a system command" in messages
    assert "event hook loud: a b" in messages  # the output, logged
    assert "event hook quiet: a b" in messages


# --- a hostile file name through the safe form (issue #16, S2) --------------------------------

#: Upload names that ran commands (a file name cannot hold a /: the hook cds to the test's
#: directory, where a command that ran would leave its file).
HOSTILE = [
    "$(touch pwned_1).gcode",
    "a;touch pwned_2;.gcode",
    "`touch pwned_3`.gcode",
    "a;touch${IFS}pwned_4;.gcode",
    "a|touch pwned_5|.gcode",
    "a&&touch pwned_6&&.gcode",
    "-c touch pwned_7",
    "'; touch pwned_8; '.gcode",
]


async def test_the_unsafe_form_is_refused_and_the_safe_form_passes_one_argument(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.txt"
    cfg = config(
        tmp_path,
        "[event_hook unsafe]\n"
        "event: PrintDone\n"
        "type: system\n"
        f'command: /bin/sh -c "cd {tmp_path} && echo D {{__filename}} >> out.txt"\n'
        "[event_hook safe]\n"
        "event: PrintDone\n"
        "type: system\n"
        f"command: /bin/sh -c 'cd {tmp_path} && echo \"$1\" >> out.txt' sh {{__filename}}\n",
    )
    klippy = FakeKlippy()
    bus = Bus()
    hooks = EventHooks(cfg, bus, klippy, now=lambda: NOW)  # type: ignore[arg-type]
    assert [h.name for h in hooks.hooks] == ["safe"]
    [warning] = hooks.warnings
    assert warning.startswith("[event_hook unsafe] command line 1")
    assert "sh -c '... \"$1\"' sh {__filename}" in warning
    assert "shell: true" in warning
    names = HOSTILE
    async with trio.open_nursery() as nursery:
        await start(nursery, hooks)
        for count, name in enumerate(names, start=1):
            klippy.cache.state = {"print_stats": {"state": "complete", "filename": name}}
            bus.publish(Done(name=name))
            with trio.fail_after(WAIT):
                runs = await hooks.wait_completed(count)
        nursery.cancel_scope.cancel()
    assert all(r.results[0].ok for r in runs), runs
    assert out.read_text().splitlines() == names
    assert sorted(os.listdir(tmp_path)) == ["out.txt", "trioprint.conf"]
