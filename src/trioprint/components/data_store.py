"""``server.temperature_store`` and ``server.gcode_store`` (Moonraker's ``data_store``).

The rings are pure (:mod:`trioprint.domain.stores`); this component feeds them from the klippy
link: each time klippy becomes ready it reads which sensors exist (the link's ``heaters``),
subscribes to them (an internal subscriber of the status fan-out) and samples their latest
values once a second. G-code commands sent through the API and klippy's responses go into the
G-code ring.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import trio

from ..domain.status import ObjectSpec, Status
from ..domain.stores import GcodeStore, TemperatureStore
from ..errors import ApiError
from ..registry import Call, endpoint
from .klippy import Klippy

#: Seconds between two temperature samples.
SAMPLE_INTERVAL = 1.0
TEMPERATURE_SAMPLES = 1200
GCODE_ENTRIES = 1000


@attrs.frozen
class TemperatureStoreParams:
    include_monitors: bool = False


@attrs.frozen
class GcodeStoreParams:
    count: int | None = None


class DataStore:
    name = "data_store"

    def __init__(self, klippy: Klippy) -> None:
        self._klippy = klippy
        self.temperatures = TemperatureStore(TEMPERATURE_SAMPLES)
        self.gcodes = GcodeStore(GCODE_ENTRIES)
        klippy.on_gcode(self._on_gcode)
        klippy.on_ready(self._configure)

    def _on_gcode(self, kind: str, message: str) -> None:
        self.gcodes.add(message, "command" if kind == "command" else "response", time.time())

    async def _configure(self) -> None:
        heaters = self._klippy.heaters
        sensors = [str(s) for s in heaters.get("available_sensors", [])]
        monitors = [str(s) for s in heaters.get("available_monitors", [])]
        spec: ObjectSpec = dict.fromkeys([*sensors, *monitors])
        self._klippy.set_internal_subscription("temperature_store", spec, self._on_status)
        await self._klippy.resubscribe()
        self.temperatures.configure(sensors, monitors, self._klippy.cache.get(spec))

    def _on_status(self, diff: Status, eventtime: float) -> None:
        self.temperatures.update(diff)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        deadline = trio.current_time()
        while True:
            deadline += SAMPLE_INTERVAL
            await trio.sleep_until(deadline)
            if self._klippy.connected:
                self.temperatures.sample()

    @endpoint("/server/temperature_store", "GET", params=TemperatureStoreParams)
    async def temperature_store(self, call: Call[TemperatureStoreParams]) -> dict[str, Any]:
        return self.temperatures.result(call.params.include_monitors)

    @endpoint("/server/gcode_store", "GET", params=GcodeStoreParams)
    async def gcode_store(self, call: Call[GcodeStoreParams]) -> dict[str, Any]:
        count = call.params.count
        if count is not None and count < 0:
            raise ApiError(f"invalid argument 'count': expected a count of 0 or more, got {count}")
        return {"gcode_store": self.gcodes.get(count)}
