"""Several printers in one process (``trioprint serve --instance DIR ...``): in process through
:class:`trioprint.farm.Farm`, and once through the command line."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint import logs
from trioprint.app import Options
from trioprint.errors import StartupError
from trioprint.farm import Farm, Member, parse_instance

from .live import RpcClient, free_port, rpc_client, subprocess_env, trioprint_command


def member(root: Path, name: str, config: str | None = None) -> Member:
    data = root / name
    if config is not None:
        (data / "config").mkdir(parents=True)
        (data / "config" / "trioprint.conf").write_text(config)
    data.mkdir(exist_ok=True)
    return Member(name, Options(data_dir=data, host="127.0.0.1", port=0))


@asynccontextmanager
async def running(members: list[Member], **kwargs: Any) -> AsyncIterator[Farm]:
    farm = Farm(members, **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(farm.run)
        yield farm
        farm.stop()


def ws_url(farm: Farm, name: str) -> str:
    serving = farm.servers[name].serving
    assert serving is not None
    return f"ws://127.0.0.1:{serving.bound[0][1]}/websocket"


async def ready(client: RpcClient) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            info = (await client.call("server.info"))["result"]
            if info["klippy_state"] == "ready":
                return info  # type: ignore[no-any-return]
            await trio.sleep(0.05)


async def extruder_target(client: RpcClient) -> float:
    reply = await client.call("printer.objects.query", {"objects": {"extruder": ["target"]}})
    return float(reply["result"]["status"]["extruder"]["target"])


async def test_each_instance_serves_its_own_printer_and_data(tmp_path: Path) -> None:
    members = [member(tmp_path, name) for name in ("a", "b", "c")]
    async with running(members) as farm:
        ports = {farm.servers[m.name].serving.bound[0][1] for m in members}  # type: ignore[union-attr]
        assert len(ports) == 3
        async with (
            rpc_client(ws_url(farm, "a")) as a,
            rpc_client(ws_url(farm, "b")) as b,
            rpc_client(ws_url(farm, "c")) as c,
        ):
            for client, name in ((a, "a"), (b, "b"), (c, "c")):
                info = await ready(client)
                assert info["websocket_count"] == 1
                serving = farm.servers[name].serving
                assert serving is not None
                assert serving.config.data_dir == tmp_path / name
                assert serving.klippy.address.startswith(str(tmp_path / name / "comms"))
            # each its own printer: a target set on a is not b's or c's
            ok = await a.call("printer.gcode.script", {"script": "M104 S50"})
            assert ok["result"] == "ok"
            assert await extruder_target(a) == 50
            assert await extruder_target(b) == 0
            assert await extruder_target(c) == 0
            # each its own database
            item = {"namespace": "farm", "key": "who", "value": "b"}
            assert "result" in await b.call("server.database.post_item", item)
            got = await b.call("server.database.get_item", {"namespace": "farm", "key": "who"})
            assert got["result"]["value"] == "b"
            other = await a.call("server.database.get_item", {"namespace": "farm", "key": "who"})
            assert other["error"]["code"] == -32601  # a 404, as Moonraker codes it
            assert "farm" in other["error"]["message"]
    for name in ("a", "b", "c"):
        assert (tmp_path / name / "database" / "trioprint.db").exists()


async def test_restart_of_one_leaves_the_others_serving(tmp_path: Path) -> None:
    members = [member(tmp_path, "a"), member(tmp_path, "b")]
    async with running(members) as farm:
        a_server, b_server = farm.servers["a"], farm.servers["b"]
        old_a, b_instance = a_server.serving, b_server.serving
        async with rpc_client(ws_url(farm, "b")) as b:
            await ready(b)
            async with rpc_client(ws_url(farm, "a")) as a:
                assert (await a.call("server.restart"))["result"] == "ok"
            with trio.fail_after(20):
                new_a = await a_server.wait_serving(other_than=old_a)
            assert a_server.instances_started == 2
            # b: the same instance, the same websocket, still answering
            assert b_server.serving is b_instance
            assert b_server.instances_started == 1
            info = (await b.call("server.info"))["result"]
            assert info["websocket_count"] == 1
            async with rpc_client(f"ws://127.0.0.1:{new_a.bound[0][1]}/websocket") as a:
                assert (await a.call("server.info"))["result"]["websocket_count"] == 1


async def test_a_crash_restarts_that_instance_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    members = [member(tmp_path, "a"), member(tmp_path, "b")]
    async with running(members, backoff_first=0.01) as farm:
        a_server, b_server = farm.servers["a"], farm.servers["b"]
        b_instance = b_server.serving
        async with rpc_client(ws_url(farm, "b")) as b:
            await ready(b)
            crashed = a_server.serving
            assert crashed is not None
            machine = next(c for c in crashed.components if c.name == "machine")

            async def boom() -> None:
                raise RuntimeError("a component of a failed")

            machine._read_sources = boom  # its 1 Hz sample: a's tree fails within a second
            with trio.fail_after(20):
                await farm.wait_serving("a", other_than=crashed)
            assert farm.crashes == {"a": 1, "b": 0}
            assert farm.servers["a"] is not a_server  # a new Server: a new simulator, too
            assert farm.servers["b"] is b_server
            assert b_server.serving is b_instance
            assert (await b.call("server.info"))["result"]["websocket_count"] == 1
            async with rpc_client(ws_url(farm, "a")) as a:
                await ready(a)
    crash = [r for r in caplog.records if "instance a crashed" in r.getMessage()]
    assert crash
    assert "a component of a failed" in crash[0].getMessage()
    assert crash[0].exc_info is not None


async def test_start_up_problems_name_the_instance_and_start_nothing(tmp_path: Path) -> None:
    good = member(tmp_path, "a")
    bad = member(tmp_path, "b", "[server]\nport: lots\n")
    with pytest.raises(StartupError, match=r"^instance 'b': .*port"):
        await Farm([good, bad]).run()
    assert not (tmp_path / "a" / "database").exists()  # nothing started

    same_folder = Member("again", good.options)
    with pytest.raises(StartupError, match="instances 'a' and 'again' both use the data folder"):
        await Farm([good, same_folder]).run()

    port = free_port()
    p = member(tmp_path, "p", f"[server]\nport: {port}\n")
    q = member(tmp_path, "q", f"[server]\nport: {port}\n")
    p, q = (Member(m.name, Options(data_dir=m.options.data_dir)) for m in (p, q))
    with pytest.raises(StartupError, match=f"instances 'p' and 'q' both listen on port {port}"):
        await Farm([p, q]).run()

    with pytest.raises(StartupError, match="two instances are named 'a'"):
        await Farm([good, Member("a", Options(data_dir=tmp_path / "x"))]).run()


async def test_a_port_in_use_fails_the_start_and_stops_the_started(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        first = member(tmp_path, "first")
        second = member(tmp_path, "second", f"[server]\nhost: 127.0.0.1\nport: {port}\n")
        second = Member("second", Options(data_dir=second.options.data_dir))
        with pytest.raises(StartupError, match=r"^instance 'second': cannot listen on"):
            with trio.fail_after(20):
                await Farm([first, second]).run()


def test_parse_instance(tmp_path: Path) -> None:
    assert parse_instance(str(tmp_path / "printer_1")) == ("printer_1", tmp_path / "printer_1")
    assert parse_instance(f"left={tmp_path}") == ("left", tmp_path)
    for bad in ("x=", "has space=/tmp/x"):
        with pytest.raises(ValueError, match="--instance"):
            parse_instance(bad)


async def test_log_lines_carry_the_instance_and_go_to_its_file(tmp_path: Path) -> None:
    stop = logs.setup_logging(
        None, instance_dirs={"a": tmp_path / "a" / "logs", "b": tmp_path / "b" / "logs"}
    )
    log = logging.getLogger("trioprint.test_farm")

    async def as_instance(name: str) -> None:
        logs.current_instance.set(name)
        log.warning("hello from %s", name)
        # a worker thread of the instance is the instance's too (a rollover, say)
        await trio.to_thread.run_sync(log.warning, f"thread of {name}")
        await trio.to_thread.run_sync(logs.rollover)
        log.warning("after %s's rollover", name)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(as_instance, "a")
            nursery.start_soon(as_instance, "b")
        log.warning("of the farm")
    finally:
        stop()
    for name, other in (("a", "b"), ("b", "a")):
        folder = tmp_path / name / "logs"
        current = (folder / "trioprint.log").read_text()
        previous = (folder / "trioprint.log.1").read_text()
        assert f"<{name}> [trioprint.test_farm] hello from {name}" in previous
        assert f"thread of {name}" in previous
        assert f"after {name}'s rollover" in current
        assert "hello" not in current
        assert "of the farm" in current
        assert f"<{name}>" in current
        for text in (previous, current):
            assert f"<{other}>" not in text
            assert f"from {other}" not in text
            assert f"thread of {other}" not in text


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*trioprint_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(home),
        cwd=home,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_cli_serves_each_instance_on_its_port(tmp_path: Path) -> None:
    ports = {"left": free_port(), "right": free_port()}
    for name, port in ports.items():
        (tmp_path / name / "config").mkdir(parents=True)
        (tmp_path / name / "config" / "trioprint.conf").write_text(
            f"[server]\nhost: 127.0.0.1\nport: {port}\n"
        )
    args = [f"--instance={tmp_path / 'left'}", "--instance", f"right={tmp_path / 'right'}"]
    process = await trio.lowlevel.open_process(
        [*trioprint_command(), "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=subprocess_env(tmp_path),
        cwd=tmp_path,
    )
    assert process.stderr is not None
    text = ""
    try:
        with trio.fail_after(30):
            while text.count("listening on") < 2:
                chunk = await process.stderr.receive_some()
                assert chunk, "trioprint exited early:\n" + text
                text += chunk.decode()
        for name, port in ports.items():
            url = f"ws://127.0.0.1:{port}/websocket"
            result = await trio.to_thread.run_sync(
                lambda url=url: run_cli(["call", "server.info", "--url", url], tmp_path)
            )
            assert result.returncode == 0, result.stderr
            info = json.loads(result.stdout)
            assert str(tmp_path / name / "gcodes") in json.dumps(info) or info["warnings"] == []
            listening = f"trioprint listening on http://127.0.0.1:{port}"
            assert f"<{name}> [trioprint.app] {listening}" in text
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            status = await process.wait()
    assert status == 0
    for name, other in (("left", "right"), ("right", "left")):
        log_text = (tmp_path / name / "logs" / "trioprint.log").read_text()
        assert f"<{name}> [trioprint.app] trioprint listening" in log_text
        assert f"<{other}>" not in log_text


def test_cli_start_up_errors(tmp_path: Path) -> None:
    (tmp_path / "b" / "config").mkdir(parents=True)
    (tmp_path / "b" / "config" / "trioprint.conf").write_text("[server]\nport: lots\n")
    bad = run_cli(["--instance", str(tmp_path / "a"), "--instance", str(tmp_path / "b")], tmp_path)
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert lines[-1].startswith("trioprint: error: instance 'b': ")
    assert "Traceback" not in bad.stderr
    mixed = run_cli(["--instance", str(tmp_path / "a"), "--port", "8000"], tmp_path)
    assert mixed.returncode == 1
    assert mixed.stderr.strip() == (
        "trioprint: error: --port cannot be combined with --instance: each instance's [server] port"
    )


async def test_a_farm_stopped_before_it_starts_ends_at_once(tmp_path: Path) -> None:
    farm = Farm([member(tmp_path, "a"), member(tmp_path, "b")])
    farm.stop()
    with trio.fail_after(20):
        await farm.run()
    assert farm.servers == {}


def test_an_instance_folder_another_trioprint_holds_is_refused(tmp_path: Path) -> None:
    # the data-folder lock of a single trioprint holds for a farm too: nothing starts
    from trioprint.datalock import DataFolderLock

    held, free = tmp_path / "held", tmp_path / "free"
    held.mkdir()
    lock = DataFolderLock(held)
    lock.acquire()
    try:
        done = run_cli(["serve", "--instance", f"a={free}", "--instance", f"b={held}"], tmp_path)
    finally:
        lock.release()
    assert done.returncode == 1
    assert "instance 'b'" in done.stderr
    assert f"pid {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (held / "logs").exists()  # nothing in the held folder was touched
