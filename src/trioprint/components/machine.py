"""``machine.system_info``, ``machine.proc_stats`` and the 1 Hz ``notify_proc_stat_update``.

The notification doubles as the websocket heartbeat: Mainsail drops a socket that hears nothing
for 10 s. The /proc figures are read in a worker thread, so a slow filesystem never blocks the
event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..bus import Notify
from ..domain import procstats
from ..registry import Call, NoParams, endpoint

if TYPE_CHECKING:
    from ..app import Instance

#: Seconds between two samples (and two heartbeats).
INTERVAL = 1.0


async def read_sources_in_thread() -> procstats.Sources:
    return await trio.to_thread.run_sync(procstats.read_sources)


async def read_system_info_in_thread() -> dict[str, Any]:
    return await trio.to_thread.run_sync(procstats.read_system_info)


class Machine:
    name = "machine"

    def __init__(
        self,
        instance: Instance,
        *,
        read_sources: Callable[[], Awaitable[procstats.Sources]] = read_sources_in_thread,
        read_system_info: Callable[[], Awaitable[dict[str, Any]]] = read_system_info_in_thread,
    ) -> None:
        self._instance = instance
        self._read_sources = read_sources
        self._read_system_info = read_system_info
        self._tracker = procstats.ProcStatsTracker()
        self._system_info: dict[str, Any] | None = None
        self._uptime = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._sample()
        task_status.started()
        deadline = trio.current_time()
        while True:
            deadline += INTERVAL
            await trio.sleep_until(deadline)
            payload = await self._sample()
            self._instance.bus.publish(Notify("notify_proc_stat_update", (payload,)))

    async def _sample(self) -> dict[str, Any]:
        src = await self._read_sources()
        self._uptime = procstats.parse_uptime(src.proc_uptime)
        return self._tracker.sample(
            src,
            now=time.time(),
            monotonic=trio.current_time(),
            websocket_connections=self._instance.websockets.count,
        )

    @endpoint("/machine/system_info", "GET")
    async def system_info(self, call: Call[NoParams]) -> dict[str, Any]:
        if self._system_info is None:
            self._system_info = await self._read_system_info()
        return self._system_info

    @endpoint("/machine/proc_stats", "GET")
    async def proc_stats(self, call: Call[NoParams]) -> dict[str, Any]:
        return self._tracker.proc_stats(
            system_uptime=self._uptime, websocket_connections=self._instance.websockets.count
        )
