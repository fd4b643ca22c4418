"""An acknowledged database write survives a kill -9 of the process right after it.

trioprint runs as a subprocess, as a user runs it. A client writes over the websocket in a
tight loop (many requests in flight), records every write the server acknowledged, and kills
the process with SIGKILL while writes are still arriving. A new process must open the database
and hold every acknowledged write.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url, wrap_client_stream

from .test_cli import start_trioprint, stop

#: Acknowledged writes before the kill; requests in flight at once.
ACKED_BEFORE_KILL = 300
IN_FLIGHT = 16
NAMESPACE = "durability"


def value_of(i: int) -> dict[str, Any]:
    return {"i": i, "pad": "x" * 64, "nested": {"list": [i, str(i)]}}


async def write_until_killed(port: int, kill: Any) -> dict[int, dict[str, Any]]:
    """Post items until the connection dies; the acknowledged ones, by index."""
    acked: dict[int, dict[str, Any]] = {}
    slots = trio.Semaphore(IN_FLIGHT)
    killed = False
    # the test owns the TCP stream: trio-websocket leaves it open when the peer dies
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream, trio.open_nursery() as ws_nursery:
        ws = await wrap_client_stream(ws_nursery, stream, "127.0.0.1", "/websocket")

        async def send() -> None:
            i = 0
            while True:
                await slots.acquire()
                request = {
                    "jsonrpc": "2.0",
                    "method": "server.database.post_item",
                    # every other write a nested key with a dotted list part
                    "params": {
                        "namespace": NAMESPACE,
                        "key": f"k{i}" if i % 2 else [f"k{i}", "v.1"],
                        "value": value_of(i),
                    },
                    "id": i,
                }
                await ws.send_message(json.dumps(request))
                i += 1

        async def receive() -> None:
            nonlocal killed
            while True:
                message = json.loads(await ws.get_message())
                if "id" not in message:
                    continue  # a notification
                assert "result" in message, message
                acked[message["id"]] = message["result"]
                slots.release()
                if len(acked) >= ACKED_BEFORE_KILL and not killed:
                    killed = True
                    kill()  # writes keep being sent and acknowledged until the socket dies

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(receive)
        except* (ConnectionClosed, trio.BrokenResourceError, OSError):
            pass
        ws_nursery.cancel_scope.cancel()
    assert killed
    return {i: r for i, r in acked.items()}


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    started = await start_trioprint(tmp_path, "-d", str(data))
    try:
        with trio.fail_after(60):
            acked = await write_until_killed(
                started.port, lambda: started.process.send_signal(signal.SIGKILL)
            )
            status = await started.process.wait()
    finally:
        if started.process.returncode is None:
            started.process.kill()
            await started.process.wait()
    assert status == -signal.SIGKILL
    assert len(acked) >= ACKED_BEFORE_KILL
    for i, result in acked.items():  # each acknowledgement is Moonraker's shape
        assert result["namespace"] == NAMESPACE
        assert result["value"] == value_of(i)

    restarted = await start_trioprint(tmp_path, "-d", str(data))
    try:
        with trio.fail_after(30):
            async with open_websocket_url(f"ws://127.0.0.1:{restarted.port}/websocket") as ws:
                request = {
                    "jsonrpc": "2.0",
                    "method": "server.database.get_item",
                    "params": {"namespace": NAMESPACE},
                    "id": 1,
                }
                await ws.send_message(json.dumps(request))
                while "id" not in (reply := json.loads(await ws.get_message())):
                    pass
    finally:
        assert await stop(restarted) == 0
    stored = reply["result"]["value"]
    lost = []
    for i in acked:
        expected = value_of(i) if i % 2 else {"v.1": value_of(i)}
        if stored.get(f"k{i}") != expected:
            lost.append(i)
    assert lost == []
    # and the file is sound after the second, clean, shutdown
    with sqlite3.connect(data / "database" / "trioprint.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
