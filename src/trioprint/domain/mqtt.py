"""MQTT: the ``[mqtt]`` section, the topics, and the payloads (pure: no Trio, no I/O).

The options and their defaults are Moonraker's: ``address`` (required), ``port`` (1883),
``username``, ``password`` or ``password_file``, ``mqtt_protocol`` (``v3.1.1``, ``v3.1`` or
``v5``), ``instance_name`` (the host name), ``default_qos`` (0), ``api_qos`` (``default_qos``),
``enable_moonraker_api`` (True), ``status_objects`` (none), ``status_interval`` (0: every
update), ``publish_split_status`` (False) and ``client_id`` (paho's generated one). trioprint
adds Home Assistant discovery: ``discovery`` (False) and ``discovery_prefix``
(``homeassistant``), see :mod:`trioprint.domain.mqtt_discovery`; and ``persistent_session``
(False): a session the broker keeps while trioprint is away (its subscriptions, and the QoS 1
and 2 requests sent to it meanwhile), under a fixed client id (``client_id``, else
``trioprint-INSTANCE_NAME``). Without it a request that reaches the broker before trioprint has
subscribed again after a reconnect has no subscriber, and the broker drops it.

Topics, for ``instance_name`` I:

========================================  =================================================
``I/moonraker/api/request``               JSON-RPC requests in (the registry answers them)
``I/moonraker/api/response``              their answers
``I/moonraker/api/notification``          every notification a websocket client would get
``I/moonraker/status``                    ``{"server": "online"|"offline"}``, retained; the
                                          MQTT last will says offline
``I/klipper/status``                      ``{"eventtime", "status"}`` of ``status_objects``
``I/klipper/state/OBJECT/FIELD``          ``{"eventtime", "value"}``, retained (split status)
========================================  =================================================
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from .status import ObjectSpec, Status, merge_diff

PROTOCOLS = ("v3.1", "v3.1.1", "v5")
OPTIONS = frozenset(
    {
        "address",
        "port",
        "username",
        "password",
        "password_file",
        "mqtt_protocol",
        "instance_name",
        "default_qos",
        "api_qos",
        "enable_moonraker_api",
        "status_objects",
        "status_interval",
        "publish_split_status",
        "client_id",
        "enable_tls",
        "discovery",
        "discovery_prefix",
        "persistent_session",
    }
)


class MqttConfigError(ValueError):
    """A bad ``[mqtt]`` option: the message names the option, what was expected and the value."""


@attrs.frozen
class MqttConfig:
    address: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    protocol: str = "v3.1.1"
    instance_name: str = "localhost"
    default_qos: int = 0
    api_qos: int = 0
    enable_moonraker_api: bool = True
    status_objects: ObjectSpec = attrs.field(factory=dict)
    status_interval: float = 0.0
    publish_split_status: bool = False
    client_id: str = ""
    discovery: bool = False
    discovery_prefix: str = "homeassistant"
    persistent_session: bool = False

    @property
    def session_client_id(self) -> str:
        """The client id to connect with: a persistent session needs a fixed one."""
        if self.client_id or not self.persistent_session:
            return self.client_id
        return f"trioprint-{self.instance_name}"

    @property
    def topics(self) -> Topics:
        return Topics(self.instance_name)


@attrs.frozen
class Topics:
    instance: str

    @property
    def api_request(self) -> str:
        return f"{self.instance}/moonraker/api/request"

    @property
    def api_response(self) -> str:
        return f"{self.instance}/moonraker/api/response"

    @property
    def api_notification(self) -> str:
        return f"{self.instance}/moonraker/api/notification"

    @property
    def server_status(self) -> str:
        return f"{self.instance}/moonraker/status"

    @property
    def klipper_status(self) -> str:
        return f"{self.instance}/klipper/status"

    def klipper_state(self, obj: str, field: str) -> str:
        return f"{self.instance}/klipper/state/{obj}/{field}"


def _bool(option: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise MqttConfigError(f"[mqtt] {option}: expected true or false, got {value!r}")


def _int(option: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise MqttConfigError(
            f"[mqtt] {option}: expected an integer from {low} to {high}, got {value!r}"
        )
    return number


def parse_status_objects(text: str) -> ObjectSpec:
    """``status_objects``: one object a line, ``NAME`` (every field) or ``NAME=f1,f2``."""
    spec: ObjectSpec = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, fields = line.partition("=")
        name = name.strip()
        if not name:
            raise MqttConfigError(f"[mqtt] status_objects: no object name in {line!r}")
        wanted = [f.strip() for f in fields.split(",") if f.strip()] if sep else []
        spec[name] = wanted or None
    return spec


def parse_section(options: Mapping[str, str], hostname: str) -> tuple[MqttConfig, list[str]]:
    """The typed ``[mqtt]`` section and its warnings; raises :class:`MqttConfigError`."""
    warnings = [f"[mqtt] {o}: unknown option, ignored" for o in options if o not in OPTIONS]
    address = options.get("address", "").strip()
    if not address:
        raise MqttConfigError("[mqtt] address: required (the MQTT broker's host name or IP)")
    protocol = options.get("mqtt_protocol", "v3.1.1").strip()
    if protocol not in PROTOCOLS:
        raise MqttConfigError(
            f"[mqtt] mqtt_protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    instance = options.get("instance_name", "").strip() or hostname
    if "+" in instance or "#" in instance:
        raise MqttConfigError(
            f"[mqtt] instance_name: cannot contain the wildcards + or #, got {instance!r}"
        )
    qos = _int("default_qos", options.get("default_qos", "0"), 0, 2)
    api_qos = _int("api_qos", options["api_qos"], 0, 2) if "api_qos" in options else qos
    interval_text = options.get("status_interval", "0")
    try:
        interval = float(interval_text)
    except ValueError:
        interval = -1.0
    if not math.isfinite(interval) or interval < 0 or 0 < interval <= 0.25:
        raise MqttConfigError(
            "[mqtt] status_interval: expected 0 (every update) or seconds above 0.25, "
            f"got {interval_text!r}"
        )
    if "enable_tls" in options and _bool("enable_tls", options["enable_tls"]):
        warnings.append("[mqtt] enable_tls: TLS is not supported by trioprint yet, ignored")
    password = options.get("password")
    password_file = options.get("password_file")
    if password_file is not None:
        warnings.append("[mqtt] password_file: deprecated (as in Moonraker), use password")
    prefix = options.get("discovery_prefix", "homeassistant").strip().strip("/")
    if not prefix or "+" in prefix or "#" in prefix:
        raise MqttConfigError(f"[mqtt] discovery_prefix: not a topic prefix: {prefix!r}")
    config = MqttConfig(
        address=address,
        port=_int("port", options.get("port", "1883"), 1, 65535),
        username=options.get("username") or None,
        password=password,
        password_file=None if password is not None else password_file,
        protocol=protocol,
        instance_name=instance,
        default_qos=qos,
        api_qos=api_qos,
        enable_moonraker_api=_bool(
            "enable_moonraker_api", options.get("enable_moonraker_api", "true")
        ),
        status_objects=parse_status_objects(options.get("status_objects", "")),
        status_interval=interval,
        publish_split_status=_bool(
            "publish_split_status", options.get("publish_split_status", "false")
        ),
        client_id=options.get("client_id", "").strip(),
        discovery=_bool("discovery", options.get("discovery", "false")),
        discovery_prefix=prefix,
        persistent_session=_bool("persistent_session", options.get("persistent_session", "false")),
    )
    return config, warnings


# --- payloads ----------------------------------------------------------------------------


def encode_payload(value: Any) -> bytes:
    """What is published for ``value``: JSON for objects and arrays, ``true``/``false``,
    numbers as text, strings as they are, nothing for None. ValueError: not JSON."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def decode_payload(payload: bytes) -> Any:
    """A received payload: its JSON value if it is JSON, else its text."""
    text = payload.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_topic(topic: str, *, wildcards: bool = False) -> str | None:
    """Why ``topic`` cannot be published or subscribed to (None: it can)."""
    if not topic:
        return "the topic is empty"
    if len(topic.encode()) > 65535:
        return "the topic is longer than 65535 bytes"
    if "\x00" in topic:
        return "the topic contains a NUL character"
    if not wildcards and ("+" in topic or "#" in topic):
        return "wildcards (+ or #) may not be used"
    return None


def status_messages(
    topics: Topics, status: Status, eventtime: float, *, split: bool
) -> list[tuple[str, bytes, bool]]:
    """(topic, payload, retain) for one status update: one message, or one per field."""
    if not split:
        return [
            (
                topics.klipper_status,
                encode_payload({"eventtime": eventtime, "status": status}),
                False,
            )
        ]
    return [
        (
            topics.klipper_state(obj, field),
            encode_payload({"eventtime": eventtime, "value": value}),
            True,
        )
        for obj, fields in status.items()
        for field, value in fields.items()
    ]


class StatusBatch:
    """Status diffs gathered between two ``status_interval`` ticks (merged field by field)."""

    def __init__(self) -> None:
        self.pending: Status = {}
        self.eventtime = 0.0

    def add(self, diff: Mapping[str, Mapping[str, Any]], eventtime: float) -> None:
        merge_diff(self.pending, diff)
        self.eventtime = eventtime

    def take(self) -> tuple[Status, float] | None:
        if not self.pending:
            return None
        pending, self.pending = self.pending, {}
        return pending, self.eventtime
