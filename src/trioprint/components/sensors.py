"""``server.sensors.*``: ``[sensor NAME]`` sections (Moonraker 0.11's ``sensor`` component).

The readings and their checks are pure (:mod:`trioprint.domain.sensors`). Each sensor's type
names its source: an async function that this component runs for the sensor while it runs,
feeding :meth:`Sensor.update` (and :meth:`Sensor.fail` when it loses the sensor). Moonraker
0.11's only type is ``mqtt`` (:func:`mqtt_source`, given when ``[mqtt]`` is configured); a
section of a type without a source is reported in the warnings and left out, as Moonraker
leaves out a sensor of an unknown type. Other code (and the tests) give sources through
``sources``.

Once a second (:data:`SAMPLE_INTERVAL`) every sensor's latest measurements are stored, and
the sensors whose readings changed are announced with ``notify_sensor_update``
(``[{sensor_id: {parameter: value}}]``). A ``history_field_F`` option registers a field with
the history component: the sensor's value tracked per job, stored in the job's
``auxiliary_data``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs
import trio

from ..domain.history_fields import HistoryField
from ..domain.sensors import MqttSensorSpec, Sensor, SensorError
from ..errors import ApiError
from ..registry import Call, endpoint

log = logging.getLogger(__name__)

#: Seconds between two samples of every sensor (Moonraker's ``SENSOR_UPDATE_TIME``).
SAMPLE_INTERVAL = 1.0
NOTIFICATION = "notify_sensor_update"

#: A type's source: fed one sensor, it updates it until cancelled.
Source = Callable[[Sensor], Awaitable[None]]


class Broadcaster(Protocol):
    def broadcast(self, method: str, params: list[Any] | None = None) -> None: ...


class MqttClient(Protocol):
    """What an MQTT sensor needs of the ``[mqtt]`` component (components/mqtt.py)."""

    def subscribe(
        self, topic: str, callback: Callable[[bytes], None], qos: int | None = None
    ) -> Any: ...

    def unsubscribe(self, handle: Any) -> None: ...


def mqtt_source(mqtt: MqttClient) -> Source:
    """The ``mqtt`` type's source: each message on the sensor's ``state_topic`` is rendered by
    its ``state_response_template`` into measurements, as Moonraker's MQTT sensor does."""

    async def feed(sensor: Sensor) -> None:
        try:
            spec = MqttSensorSpec.from_options(sensor.id, sensor.options)
        except SensorError as exc:
            log.warning("%s", exc)
            sensor.fail(str(exc))
            return

        def on_message(payload: bytes) -> None:
            try:
                measurements = spec.measurements(payload)
            except SensorError as exc:
                log.warning("sensor %s: %s", sensor.id, exc)
                sensor.error_state = str(exc)
                return
            sensor.error_state = None
            sensor.update(measurements)

        handle = mqtt.subscribe(spec.state_topic, on_message, spec.qos)
        try:
            await trio.sleep_forever()
        finally:
            mqtt.unsubscribe(handle)

    return feed


class FieldRegistry(Protocol):
    def register_auxiliary_field(self, field: HistoryField) -> None: ...


@attrs.frozen
class ListParams:
    extended: bool = False


@attrs.frozen
class InfoParams:
    sensor: str | None = None
    extended: bool = False


@attrs.frozen
class MeasurementsParams:
    sensor: str = ""


class Sensors:
    """Moonraker's ``sensor`` component."""

    name = "sensor"

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, str]],
        websockets: Broadcaster,
        history: FieldRegistry | None = None,
        *,
        sources: Mapping[str, Source] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self._websockets = websockets
        self._sources = {k.lower(): v for k, v in (sources or {}).items()}
        self._warnings = warnings if warnings is not None else []
        self.sensors: dict[str, Sensor] = {}
        for name, options in sections.items():
            try:
                sensor = Sensor(name, options)
            except SensorError as exc:
                self._warnings.append(f"Failed to configure sensor [sensor {name}]: {exc}")
                continue
            if sensor.type.lower() not in self._sources:
                more = " (type mqtt needs an [mqtt] section)" * (sensor.type.lower() == "mqtt")
                self._warnings.append(
                    f"Failed to configure sensor [sensor {name}]: unsupported sensor type"
                    f" {sensor.type!r}{more}"
                )
                continue
            self._warnings.extend(sensor.warnings)
            if history is not None:
                for field in sensor.all_fields():
                    try:
                        history.register_auxiliary_field(field)
                    except ValueError as exc:
                        self._warnings.append(f"[sensor {name}]: {exc}; not tracked")
            self.sensors[name] = sensor

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for sensor in self.sensors.values():
                nursery.start_soon(self._feed, sensor)
            task_status.started()
            while True:
                await trio.sleep(SAMPLE_INTERVAL)
                self.sample()

    async def _feed(self, sensor: Sensor) -> None:
        source = self._sources[sensor.type.lower()]
        try:
            await source(sensor)
        except Exception as exc:  # a broken source loses its sensor, never the server
            log.exception("sensor %s: its source failed", sensor.id)
            sensor.fail(f"source failed: {exc}")

    def sample(self) -> None:
        """Store every sensor's latest readings; announce the changed ones."""
        changed = {name: dict(s.last_value) for name, s in self.sensors.items() if s.sample()}
        if changed:
            self._websockets.broadcast(NOTIFICATION, [changed])

    def _sensor(self, name: str | None) -> Sensor:
        if not name:
            raise ApiError("missing required argument 'sensor'", 400)
        sensor = self.sensors.get(name)
        if sensor is None:
            raise ApiError(f"No valid sensor named {name}", 400)
        return sensor

    @endpoint("/server/sensors/list", "GET", params=ListParams)
    async def list_sensors(self, call: Call[ListParams]) -> dict[str, Any]:
        extended = call.params.extended
        return {"sensors": {name: s.info(extended) for name, s in self.sensors.items()}}

    @endpoint("/server/sensors/info", "GET", params=InfoParams)
    async def sensor_info(self, call: Call[InfoParams]) -> dict[str, Any]:
        return self._sensor(call.params.sensor).info(call.params.extended)

    @endpoint("/server/sensors/measurements", "GET", params=MeasurementsParams)
    async def measurements(self, call: Call[MeasurementsParams]) -> dict[str, Any]:
        name = call.params.sensor
        if name:
            return {name: self._sensor(name).measurements()}
        return {name: s.measurements() for name, s in self.sensors.items()}
