"""Home Assistant MQTT discovery for one printer (pure: no Trio, no I/O).

With ``[mqtt] discovery: true`` the printer is announced as one Home Assistant device: a
retained config message per entity on ``<prefix>/<component>/<node_id>/<object_id>/config``
(Home Assistant's discovery topic), each naming the device (identifiers, name, manufacturer,
model, sw_version) and the availability topic: the server status topic, whose retained
``{"server": "offline"}`` is also the MQTT last will, so Home Assistant shows the printer
unavailable when trioprint goes away without a goodbye.

Sensors read one retained JSON state message (``<instance>/trioprint/state``) with a value
template each; buttons and numbers send to ``<instance>/trioprint/command/<object_id>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .mqtt import Topics
from .status import ObjectSpec

#: What the state message is built from (one internal klippy subscription).
STATE_SPEC: ObjectSpec = {
    "extruder": ["temperature", "target"],
    "heater_bed": ["temperature", "target"],
    "print_stats": ["state", "filename", "print_duration"],
    "display_status": ["progress"],
    "virtual_sdcard": ["progress"],
}

#: object_id -> (name, unit, device_class, state field)
SENSORS: dict[str, tuple[str, str | None, str | None, str]] = {
    "extruder_temperature": ("Extruder temperature", "°C", "temperature", "extruder_temperature"),
    "extruder_target": ("Extruder target", "°C", "temperature", "extruder_target"),
    "bed_temperature": ("Bed temperature", "°C", "temperature", "bed_temperature"),
    "bed_target": ("Bed target", "°C", "temperature", "bed_target"),
    "print_state": ("Print state", None, None, "print_state"),
    "progress": ("Progress", "%", None, "progress"),
    "time_left": ("Time left", "s", "duration", "time_left"),
    "current_file": ("Current file", None, None, "current_file"),
}

#: object_id -> (name, the G-code it sends; None: the emergency stop)
BUTTONS: dict[str, tuple[str, str | None]] = {
    "pause": ("Pause", "PAUSE"),
    "resume": ("Resume", "RESUME"),
    "cancel": ("Cancel", "CANCEL_PRINT"),
    "emergency_stop": ("Emergency stop", None),
}

#: object_id -> (name, G-code command, the state field it shows, highest value)
NUMBERS: dict[str, tuple[str, str, str, float]] = {
    "extruder_target_set": ("Extruder target", "M104", "extruder_target", 350.0),
    "bed_target_set": ("Bed target", "M140", "bed_target", 150.0),
}

PRESS = "PRESS"


def node_id(instance_name: str) -> str:
    """Home Assistant's node_id: letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", instance_name) or "trioprint"


@attrs.frozen
class Discovery:
    topics: Topics
    prefix: str = "homeassistant"
    sw_version: str = ""
    model: str = "Klipper"

    @property
    def node(self) -> str:
        return node_id(self.topics.instance)

    @property
    def state_topic(self) -> str:
        return f"{self.topics.instance}/trioprint/state"

    def command_topic(self, object_id: str) -> str:
        return f"{self.topics.instance}/trioprint/command/{object_id}"

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node}/{object_id}/config"

    @property
    def ha_status_topic(self) -> str:
        """Home Assistant's birth message: "online" means it wants the configs again."""
        return f"{self.prefix}/status"

    def _base(self, object_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"{self.node}_{object_id}",
            "object_id": f"{self.node}_{object_id}",
            "device": {
                "identifiers": [f"trioprint_{self.node}"],
                "name": self.topics.instance,
                "manufacturer": "trioprint",
                "model": self.model,
                "sw_version": self.sw_version,
            },
            "availability_topic": self.topics.server_status,
            "availability_template": "{{ value_json.server }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }

    def configs(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, payload) of every entity's retained discovery config."""
        out: list[tuple[str, dict[str, Any]]] = []
        for object_id, (name, unit, device_class, field) in SENSORS.items():
            payload = self._base(object_id, name)
            payload["state_topic"] = self.state_topic
            payload["value_template"] = f"{{{{ value_json.{field} }}}}"
            if unit is not None:
                payload["unit_of_measurement"] = unit
                payload["state_class"] = "measurement"
            if device_class is not None:
                payload["device_class"] = device_class
            out.append((self.config_topic("sensor", object_id), payload))
        for object_id, (name, _) in BUTTONS.items():
            payload = self._base(object_id, name)
            payload["command_topic"] = self.command_topic(object_id)
            payload["payload_press"] = PRESS
            out.append((self.config_topic("button", object_id), payload))
        for object_id, (name, _, field, high) in NUMBERS.items():
            payload = self._base(object_id, name)
            payload.update(
                command_topic=self.command_topic(object_id),
                state_topic=self.state_topic,
                value_template=f"{{{{ value_json.{field} }}}}",
                min=0,
                max=high,
                step=1,
                mode="box",
                unit_of_measurement="°C",
                device_class="temperature",
            )
            out.append((self.config_topic("number", object_id), payload))
        return out

    def command_topics(self) -> list[str]:
        return [self.command_topic(o) for o in [*BUTTONS, *NUMBERS]]

    def command(self, topic: str, payload: bytes) -> Command:
        """What a message on a command topic asks for; :class:`CommandError` if nothing."""
        object_id = topic.rsplit("/", 1)[-1]
        text = payload.decode("utf-8", errors="replace").strip()
        if object_id in BUTTONS:
            if text != PRESS:
                raise CommandError(f"{object_id}: expected {PRESS!r}, got {text[:40]!r}")
            return Command(object_id, BUTTONS[object_id][1])
        if object_id in NUMBERS:
            _, gcode, _, high = NUMBERS[object_id]
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or not 0 <= value <= high:
                raise CommandError(
                    f"{object_id}: expected a number from 0 to {high:g}, got {text[:40]!r}"
                )
            return Command(object_id, f"{gcode} S{value:g}")
        raise CommandError(f"unknown command topic {topic!r}")


@attrs.frozen
class Command:
    object_id: str
    #: The G-code to run; None: the emergency stop.
    gcode: str | None


class CommandError(ValueError):
    pass


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def state(status: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The state message's fields from klippy's status (STATE_SPEC's objects)."""
    extruder = status.get("extruder", {})
    bed = status.get("heater_bed", {})
    stats = status.get("print_stats", {})
    progress = _number(status.get("display_status", {}).get("progress"))
    if not progress:
        progress = _number(status.get("virtual_sdcard", {}).get("progress"))
    duration = _number(stats.get("print_duration"))
    time_left: float | None = None
    if progress and duration is not None and 0 < progress <= 1:
        time_left = round(max(duration / progress - duration, 0.0))
    temps = {
        "extruder_temperature": _number(extruder.get("temperature")),
        "extruder_target": _number(extruder.get("target")),
        "bed_temperature": _number(bed.get("temperature")),
        "bed_target": _number(bed.get("target")),
    }
    return {
        **{k: None if v is None else round(v, 1) for k, v in temps.items()},
        "print_state": stats.get("state") or "unknown",
        "progress": round((progress or 0.0) * 100, 1),
        "time_left": time_left,
        "current_file": stats.get("filename") or "",
    }
