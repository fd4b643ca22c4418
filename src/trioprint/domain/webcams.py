"""Webcams (Moonraker 0.11's ``webcam`` component), the pure part: a camera's fields, from a
``[webcam NAME]`` section, a request or a database record, and back.

A camera has two sources: ``config`` (a ``[webcam NAME]`` section, read-only through the API,
its uid a UUID5 of the instance's UUID and its name, so it stays the same across restarts) and
``database`` (added with ``server.webcams.post_item``, stored in namespace ``webcams`` under
its uid, with the record's field names the frontends' own: ``urlStream``, ``flipX``...).

No I/O here: the component (:mod:`trioprint.components.webcams`) reads and writes the database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from .coerce import as_int

ROTATIONS = (0, 90, 180, 270)
DEFAULT_HOST = "http://127.0.0.1"

#: Field -> its name in a database record (the others have the same name in both).
RECORD_NAMES = {
    "name": "name",
    "service": "service",
    "target_fps": "targetFps",
    "stream_url": "urlStream",
    "snapshot_url": "urlSnapshot",
    "flip_horizontal": "flipX",
    "flip_vertical": "flipY",
    "enabled": "enabled",
    "target_fps_idle": "targetFpsIdle",
    "aspect_ratio": "aspectRatio",
    "icon": "icon",
    "location": "location",
    "rotation": "rotation",
    "extra_data": "extra_data",
}

#: The fields a request may set, with their defaults (``stream_url`` has none in a section).
DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "icon": "mdiWebcam",
    "aspect_ratio": "4:3",
    "target_fps": 15,
    "target_fps_idle": 5,
    "location": "printer",
    "service": "mjpegstreamer",
    "stream_url": "",
    "snapshot_url": "",
    "flip_horizontal": False,
    "flip_vertical": False,
    "rotation": 0,
}
#: Fields never changed by an update.
PROTECTED = frozenset({"source", "uid"})
_ASPECT_RE = re.compile(r"^\d+:\d+$")
_URL_HOST_RE = re.compile(r"^\w+://[^/]+")


class WebcamError(ValueError):
    """A camera's value is invalid; the message names the field."""


def _as_bool(field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise WebcamError(f"Invalid value for '{field}': expected a boolean, got {value!r}")


def _as_int(field: str, value: Any) -> int:
    number = as_int(value)
    if number is None:
        raise WebcamError(f"Invalid value for '{field}': expected an integer, got {value!r}")
    return number


def _as_str(field: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise WebcamError(f"Invalid value for '{field}': expected a string, got {value!r}")


def _as_dict(field: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    raise WebcamError(f"Invalid value for '{field}': expected an object, got {value!r}")


_CONVERT = {
    "enabled": _as_bool,
    "flip_horizontal": _as_bool,
    "flip_vertical": _as_bool,
    "target_fps": _as_int,
    "target_fps_idle": _as_int,
    "rotation": _as_int,
    "extra_data": _as_dict,
}


def convert(field: str, value: Any) -> Any:
    """A request's (or section's) value for ``field``, typed; :class:`WebcamError` if not."""
    return _CONVERT.get(field, _as_str)(field, value)


@attrs.define
class Webcam:
    """One camera; :meth:`as_dict` is Moonraker's answer (field order included)."""

    name: str
    enabled: bool
    icon: str
    aspect_ratio: str
    target_fps: int
    target_fps_idle: int
    location: str
    service: str
    stream_url: str
    snapshot_url: str
    flip_horizontal: bool
    flip_vertical: bool
    rotation: int
    source: str
    extra_data: dict[str, Any]
    uid: str

    def __attrs_post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if not self.name:
            raise WebcamError("Invalid value for 'name': a webcam needs a name")
        if self.rotation not in ROTATIONS:
            raise WebcamError(f"Invalid value for 'rotation': {self.rotation}")
        if not _ASPECT_RE.match(self.aspect_ratio):
            raise WebcamError(f"Invalid value for 'aspect_ratio': {self.aspect_ratio}")

    def as_dict(self) -> dict[str, Any]:
        result = attrs.asdict(self)
        result["extra_data"] = dict(self.extra_data)
        return result

    def record(self) -> dict[str, Any]:
        """The database record (stored under the uid, in namespace ``webcams``)."""
        return {RECORD_NAMES[f]: getattr(self, f) for f in RECORD_NAMES}

    def updated(self, args: Mapping[str, Any]) -> Webcam:
        """A copy with the fields ``args`` names set (unknown and protected ones ignored)."""
        changes = {
            field: convert(field, value)
            for field, value in args.items()
            if field in _FIELD_NAMES and field not in PROTECTED
        }
        return attrs.evolve(self, **changes)


_FIELD_NAMES = frozenset(a.name for a in attrs.fields(Webcam))


def config_uid(instance_uuid: str, name: str) -> str:
    """A configured camera's uid: stable for one instance and one name."""
    return str(uuid.uuid5(uuid.UUID(instance_uuid), f"moonraker.webcam.{name}"))


def section_values(options: Mapping[str, str]) -> dict[str, Any]:
    """A ``[webcam NAME]`` section's options, typed, every one with its default if unset
    (``server.config`` shows them so, as Moonraker does)."""
    return {field: convert(field, options.get(field, d)) for field, d in DEFAULTS.items()}


def from_section(name: str, options: Mapping[str, str], instance_uuid: str) -> Webcam:
    """A ``[webcam NAME]`` section's camera (``stream_url`` is required)."""
    if "stream_url" not in options:
        raise WebcamError("Option 'stream_url' is required")
    values = section_values(options)
    return Webcam(
        name=name,
        **values,
        source="config",
        extra_data={},
        uid=config_uid(instance_uuid, name),
    )


def from_request(args: Mapping[str, Any], uid: str) -> Webcam:
    """A new camera from ``server.webcams.post_item``'s arguments (``name`` and
    ``stream_url`` are required)."""
    for required in ("name", "stream_url"):
        if required not in args:
            raise WebcamError(f"No data for argument: {required}")
    values = {field: convert(field, args.get(field, d)) for field, d in DEFAULTS.items()}
    return Webcam(
        name=convert("name", args["name"]),
        **values,
        source="database",
        extra_data=convert("extra_data", args.get("extra_data", {})),
        uid=uid,
    )


def from_record(uid: str, record: Mapping[str, Any]) -> Webcam:
    """A stored camera (records written by Moonraker or a frontend: missing fields default)."""
    values: dict[str, Any] = {}
    for field, default in DEFAULTS.items():
        key = RECORD_NAMES[field]
        value = record.get(key, default)
        if field == "rotation" and key not in record:
            value = record.get("rotate", default)  # the frontends' older name
        values[field] = convert(field, value)
    return Webcam(
        name=convert("name", record["name"]),
        **values,
        source="database",
        extra_data=convert("extra_data", record.get("extra_data", {})),
        uid=uid,
    )


def full_url(url: str, default_host: str = DEFAULT_HOST) -> str:
    """A partial URL (``/webcam/?action=snapshot``) on the default host; a full one as it is."""
    if not url:
        raise WebcamError("Empty URL Provided")
    if _URL_HOST_RE.match(url):
        return url
    return f"{default_host}/{url.lstrip('/')}"


def default_host(ip: str | None) -> str:
    """The host partial URLs are completed with: this machine's public address if known."""
    if not ip:
        return DEFAULT_HOST
    return f"http://[{ip}]" if ":" in ip else f"http://{ip}"


class Cameras:
    """The cameras by name: the configured ones first, then the stored ones."""

    def __init__(self, configured: list[Webcam] | None = None) -> None:
        self.by_name: dict[str, Webcam] = {cam.name: cam for cam in configured or []}

    def listed(self) -> list[dict[str, Any]]:
        return [cam.as_dict() for cam in self.by_name.values()]

    def uids(self) -> set[str]:
        return {cam.uid for cam in self.by_name.values()}

    def by_uid(self, uid: str) -> Webcam | None:
        return next((cam for cam in self.by_name.values() if cam.uid == uid), None)

    def load(self, records: Mapping[str, Any]) -> list[str]:
        """Add the stored cameras; the problems found (a record that is no camera, a name
        a configured camera already has), each skipped."""
        problems: list[str] = []
        for uid, record in records.items():
            try:
                if not isinstance(record, Mapping):
                    raise WebcamError("not an object")
                cam = from_record(uid, record)
            except (WebcamError, KeyError) as exc:
                problems.append(f"webcam {uid}: invalid record ({exc}), ignored")
                continue
            if cam.name in self.by_name:
                problems.append(
                    f"webcam {uid}: the name '{cam.name}' is taken by another webcam, ignored"
                )
                continue
            self.by_name[cam.name] = cam
        return problems

    def check_writable(self, cam: Webcam, verb: str) -> None:
        if cam.source == "config":
            raise WebcamError(
                f"Cannot {verb} webcam '{cam.name}' sourced from the configuration file"
            )

    def post(self, existing: Webcam | None, args: Mapping[str, Any], new_uid: str) -> Webcam:
        """``post_item``: ``existing`` updated (renamed if ``name`` differs), else a new one."""
        if existing is None:
            cam = from_request(args, new_uid)
            if cam.name in self.by_name:  # found by uid only when it was looked up by uid
                raise WebcamError(f"Webcam with name '{cam.name}' already exists")
            self.by_name[cam.name] = cam
            return cam
        self.check_writable(existing, "overwrite")
        cam = existing.updated(args)
        if cam.name != existing.name and cam.name in self.by_name:
            raise WebcamError(
                f"Cannot rename webcam from '{existing.name}' to '{cam.name}': a webcam with "
                f"the name '{cam.name}' already exists"
            )
        self.by_name.pop(existing.name, None)
        self.by_name[cam.name] = cam
        return cam

    def delete(self, cam: Webcam) -> None:
        self.check_writable(cam, "delete")
        self.by_name.pop(cam.name, None)
