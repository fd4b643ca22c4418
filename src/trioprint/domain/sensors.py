"""``[sensor NAME]`` sections and a sensor's readings (Moonraker 0.11's ``sensor`` component).

A sensor is fed whole measurements (``{"power": 12.5, "energy": 0.3}``) by its source (the
component starts one per type; Moonraker 0.11 has only ``mqtt``, which comes with ``[mqtt]``);
:meth:`Sensor.update` keeps the latest and passes each parameter's value to the history fields
tracking it. Once a second the component calls :meth:`Sensor.sample`: the latest measurements go
into the per-parameter store (``sensor_store_size`` samples) that
``server.sensors.measurements`` serves, and a change is announced.

Options (as Moonraker's): ``type`` (required), ``name`` (the friendly name, default the
section's), ``sensor_store_size`` (1200), ``parameter_P`` (``key=value`` lines describing
parameter ``P``, e.g. ``units=W``), ``history_field_F`` (``key=value`` lines: ``parameter``
(required), ``desc``, ``strategy``, ``units``, ``init_tracker``, ``exclude_paused``,
``report_total``, ``report_maximum``, ``precision``). Any other option belongs to the type.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs
import jinja2

from .history_fields import FieldError, HistoryField
from .templates import ENVIRONMENT

DEFAULT_STORE_SIZE = 1200
PARAMETER_PREFIX = "parameter_"
FIELD_PREFIX = "history_field_"
FIELD_KEYS = frozenset(
    {
        "parameter",
        "desc",
        "strategy",
        "units",
        "init_tracker",
        "exclude_paused",
        "report_total",
        "report_maximum",
        "precision",
    }
)

Number = int | float


class SensorError(ValueError):
    """A ``[sensor NAME]`` section is wrong (the message names the option)."""


def parse_dict(text: str, where: str) -> dict[str, str]:
    """``key=value`` lines (Moonraker's ``getdict``) as a dict."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SensorError(f"{where}: expected key=value lines, got {line!r}")
        result[key.strip()] = value.strip()
    return result


def _flag(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise SensorError(f"{where}: expected true or false, got {value!r}")


class Sensor:
    """One configured sensor: its latest measurements, its store, its history fields."""

    def __init__(self, sensor_id: str, options: Mapping[str, str]) -> None:
        where = f"[sensor {sensor_id}]"
        self.id = sensor_id
        self.options = dict(options)
        sensor_type = options.get("type", "").strip()
        if not sensor_type:
            raise SensorError(f"{where}: option 'type' is required")
        self.type = sensor_type
        self.friendly_name = options.get("name", sensor_id)
        size_text = options.get("sensor_store_size", str(DEFAULT_STORE_SIZE))
        try:
            size = int(size_text)
        except ValueError:
            raise SensorError(
                f"{where}: option 'sensor_store_size': expected an integer, got {size_text!r}"
            ) from None
        if size < 1:
            raise SensorError(f"{where}: option 'sensor_store_size': must be 1 or more")
        self.store_size = size
        self.error_state: str | None = None
        self.last_measurements: dict[str, Number] = {}
        self.last_value: dict[str, Number] = {}
        self.values: dict[str, deque[Number]] = {}
        self.parameter_info: list[dict[str, str]] = []
        self.fields: dict[str, list[HistoryField]] = {}
        self.warnings: list[str] = []
        for option, text in options.items():
            if option.startswith(PARAMETER_PREFIX):
                info = parse_dict(text, f"{where} option '{option}'")
                info["name"] = option[len(PARAMETER_PREFIX) :]
                self.parameter_info.append(info)
            elif option.startswith(FIELD_PREFIX):
                self._add_field(option, text, where)

    def _add_field(self, option: str, text: str, where: str) -> None:
        at = f"{where} option '{option}'"
        spec = parse_dict(text, at)
        parameter = spec.get("parameter")
        if not parameter:
            raise SensorError(f"{at}: key 'parameter' must be specified")
        precision_text = spec.get("precision")
        try:
            precision = int(precision_text) if precision_text is not None else None
        except ValueError:
            raise SensorError(
                f"{at}: key 'precision': expected an integer, got {precision_text!r}"
            ) from None
        init = _flag(spec.get("init_tracker", "false"), f"{at} key 'init_tracker'")
        try:
            field = HistoryField(
                option[len(FIELD_PREFIX) :],
                f"sensor {self.id}",
                spec.get("desc", f"{parameter} tracker"),
                spec.get("strategy", "basic"),
                units=spec.get("units"),
                reset_callback=(lambda: self.last_measurements.get(parameter, 0)) if init else None,
                exclude_paused=_flag(
                    spec.get("exclude_paused", "false"), f"{at} key 'exclude_paused'"
                ),
                report_total=_flag(spec.get("report_total", "false"), f"{at} key 'report_total'"),
                report_maximum=_flag(
                    spec.get("report_maximum", "false"), f"{at} key 'report_maximum'"
                ),
                precision=precision,
            )
        except FieldError as exc:
            raise SensorError(f"{at}: {exc}") from None
        for key in spec:
            if key not in FIELD_KEYS:
                self.warnings.append(f"{at}: unknown key {key!r}, ignored")
        self.fields.setdefault(parameter, []).append(field)

    def all_fields(self) -> list[HistoryField]:
        return [field for fields in self.fields.values() for field in fields]

    def update(self, measurements: Mapping[str, Any]) -> None:
        """New measurements from the source: numbers (or numeric text) by parameter name."""
        values: dict[str, Number] = {}
        for name, value in measurements.items():
            if isinstance(value, bool):
                value = int(value)
            elif not isinstance(value, int | float):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    self.error_state = f"parameter {name!r}: not a number: {value!r}"
                    continue
            if isinstance(value, float) and not math.isfinite(value):
                continue
            values[name] = value
        self.last_measurements = values
        for name, value in values.items():
            for field in self.fields.get(name, ()):
                field.update(value)

    def fail(self, message: str) -> None:
        """The source lost its sensor: no measurements until it comes back."""
        self.error_state = message
        self.last_measurements = {}

    def sample(self) -> bool:
        """Store the latest measurements (once a second); whether they changed since last."""
        for name, value in self.last_measurements.items():
            store = self.values.get(name)
            if store is None:
                store = self.values[name] = deque(maxlen=self.store_size)
            store.append(value)
        changed = self.last_value != self.last_measurements
        self.last_value = dict(self.last_measurements)
        return changed

    def info(self, extended: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "friendly_name": self.friendly_name,
            "type": self.type,
            "values": dict(self.last_measurements),
        }
        if extended:
            result["parameter_info"] = [dict(p) for p in self.parameter_info]
            result["history_fields"] = [
                {**field.configuration(), "parameter": parameter}
                for parameter, fields in self.fields.items()
                for field in fields
            ]
        return result

    def measurements(self) -> dict[str, list[Number]]:
        return {name: list(store) for name, store in self.values.items()}


@attrs.frozen
class MqttSensorSpec:
    """A ``type: mqtt`` sensor's options: ``state_topic`` (required), ``qos`` (0-2, default the
    ``[mqtt]`` section's) and ``state_response_template`` (required), as Moonraker's.

    The template is rendered for each message with ``payload`` (the message as text) and
    ``set_result(name, value)``, which records one measurement:
    ``{set_result("power", (payload|fromjson)["power"]|float)}``.
    """

    state_topic: str
    qos: int | None
    template: jinja2.Template

    @classmethod
    def from_options(cls, sensor_id: str, options: Mapping[str, str]) -> MqttSensorSpec:
        where = f"[sensor {sensor_id}]"
        topic = options.get("state_topic", "").strip()
        if not topic:
            raise SensorError(f"{where}: option 'state_topic' is required for type mqtt")
        text = options.get("state_response_template", "").strip()
        if not text:
            raise SensorError(
                f"{where}: option 'state_response_template' is required for type mqtt"
            )
        qos: int | None = None
        if "qos" in options:
            try:
                qos = int(options["qos"])
            except ValueError:
                qos = -1
            if not 0 <= qos <= 2:
                raise SensorError(f"{where}: option 'qos': expected 0, 1 or 2")
        try:
            template = ENVIRONMENT.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise SensorError(f"{where}: state_response_template: {exc.message}") from None
        return cls(topic, qos, template)

    def measurements(self, payload: bytes) -> dict[str, Number]:
        """What one message sets; a template that fails raises :class:`SensorError`."""
        found: dict[str, Number] = {}

        def set_result(name: str, value: Any) -> str:
            found[str(name)] = value if isinstance(value, int | float) else float(value)
            return ""

        try:
            self.template.render(payload=payload.decode("utf-8", "replace"), set_result=set_result)
        except jinja2.TemplateError as exc:
            raise SensorError(f"state_response_template failed: {exc}") from None
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            raise SensorError(f"state_response_template failed: {exc!r}") from None
        return found
