"""The 1 Hz proc-stat heartbeat, on a mock clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from trioprint.bus import Bus, Notify
from trioprint.components.machine import Machine
from trioprint.config import Config
from trioprint.domain.procstats import Sources


class FakeWebsockets:
    count = 3


class FakeInstance:
    def __init__(self) -> None:
        self.bus = Bus()
        self.websockets = FakeWebsockets()
        self.config = Config(data_dir=Path("/nonexistent-trioprint-data"))


async def test_one_notification_a_second(autojump_clock: trio.testing.MockClock) -> None:
    instance = FakeInstance()
    reads = 0

    async def read_sources() -> Sources:
        nonlocal reads
        reads += 1
        return Sources(proc_uptime="100.5 1.0", proc_self_status="VmRSS: 42 kB\n")

    machine = Machine(instance, read_sources=read_sources)  # type: ignore[arg-type]
    received: list[Notify] = []
    with instance.bus.subscribe(Notify) as events:
        async with trio.open_nursery() as nursery:
            await nursery.start(machine.run)
            start = trio.current_time()
            with trio.move_on_after(10.5):
                async for event in events:
                    assert isinstance(event, Notify)
                    received.append(event)
            nursery.cancel_scope.cancel()
    assert len(received) == 10
    assert trio.current_time() - start >= 10.5
    payload: dict[str, Any] = received[-1].params[0]  # type: ignore[index]
    assert received[-1].method == "notify_proc_stat_update"
    assert payload["websocket_connections"] == 3
    assert payload["moonraker_stats"]["memory"] == 42
    assert reads == 11  # one at start-up, then one a second


async def test_system_info_is_read_once() -> None:
    calls = 0

    async def read_system_info() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"system_info": {"n": calls}}

    machine = Machine(FakeInstance(), read_system_info=read_system_info)  # type: ignore[arg-type]
    from trioprint.registry import Call, NoParams, Transport

    call = Call(NoParams(), Transport.HTTP, "GET")
    first = await machine.system_info(call)
    assert first["system_info"]["n"] == 1
    assert (await machine.system_info(call))["system_info"]["n"] == 1
    assert calls == 1
