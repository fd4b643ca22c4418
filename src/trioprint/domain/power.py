"""Power devices as pure logic: ``[power NAME]`` options, and each family's requests and answers.

A device's state is one of :data:`STATES`. :func:`device_options` reads the options every
family shares (Moonraker 0.11's names and defaults); the families' own options are read by
their ``*_spec`` functions into small frozen classes that build a request
(:class:`HttpCall`, or an argv for ``uhubctl``) for a command (``on``, ``off``, ``status``) and
turn the answer into a state. Nothing here does I/O; the component
(:mod:`trioprint.components.power`) sends the requests.

Templates (``http``'s ``response_template``) are Jinja2 with Moonraker's delimiters (``{ }``
for a value, ``{% %}`` for a statement), rendered in a sandbox.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
import jinja2
import jinja2.sandbox

#: A device's states: ``init`` until its first answer, ``error`` after a failed command.
STATES = ("init", "on", "off", "error")
#: The families served here (``mqtt``'s own options: :mod:`trioprint.domain.power_mqtt`).
TYPES = (
    "klipper_device",
    "gpio",
    "tasmota",
    "shelly",
    "homeassistant",
    "http",
    "hue",
    "uhubctl",
    "mqtt",
)
ACTIONS = ("on", "off", "toggle")


class PowerConfigError(ValueError):
    """A ``[power NAME]`` section that cannot be used (the message names the option)."""


class PowerResponseError(ValueError):
    """A device's answer that does not tell its state."""


# --- options --------------------------------------------------------------------------------

_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})


def _get(options: Mapping[str, str], key: str) -> str | None:
    value = options.get(key)
    return None if value is None else value.strip()


def read_bool(options: Mapping[str, str], key: str, default: bool | None) -> bool | None:
    value = _get(options, key)
    if value is None or value == "":
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise PowerConfigError(f"{key}: expected a boolean (true/false), got {value!r}")


def read_float(
    options: Mapping[str, str],
    key: str,
    default: float | None,
    *,
    minval: float | None = None,
    above: float | None = None,
) -> float | None:
    value = _get(options, key)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise PowerConfigError(f"{key}: expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise PowerConfigError(f"{key}: expected a finite number, got {value!r}")
    if minval is not None and number < minval:
        raise PowerConfigError(f"{key}: expected a number of at least {minval:g}, got {value!r}")
    if above is not None and number <= above:
        raise PowerConfigError(f"{key}: expected a number above {above:g}, got {value!r}")
    return number


def read_int(options: Mapping[str, str], key: str, default: int | None) -> int | None:
    value = _get(options, key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise PowerConfigError(f"{key}: expected an integer, got {value!r}") from None


def read_str(options: Mapping[str, str], key: str, default: str | None = None) -> str:
    value = _get(options, key)
    if value is None or value == "":
        if default is None:
            raise PowerConfigError(f"{key}: required")
        return default
    return value


def read_list(options: Mapping[str, str], key: str) -> tuple[str, ...]:
    value = options.get(key) or ""
    items = (item.strip() for line in value.splitlines() for item in line.split(","))
    return tuple(item for item in items if item)


@attrs.frozen
class DeviceOptions:
    """The options every family shares."""

    name: str
    type: str
    locked_while_printing: bool = False
    off_when_shutdown: bool = False
    off_when_shutdown_delay: float = 0.0
    restart_klipper_when_powered: bool = False
    restart_delay: float = 1.0
    on_when_job_queued: bool = False
    initial_state: bool | None = None
    bound_services: tuple[str, ...] = ()
    restrict_action_processing: bool = True
    #: Seconds between two status polls (None: no polling); not for gpio and klipper_device.
    poll_interval: float | None = None
    #: gpio and klipper_device: seconds after which an ``on`` turns itself off.
    timer: float | None = None


def device_options(name: str, options: Mapping[str, str]) -> DeviceOptions:
    """The shared options of ``[power name]``; raises :class:`PowerConfigError`."""
    kind = (_get(options, "type") or "").lower()
    if not kind:
        raise PowerConfigError("type: required")
    if kind not in TYPES:
        raise PowerConfigError(f"type: unsupported device type {kind!r}")
    off_when_shutdown = bool(read_bool(options, "off_when_shutdown", False))
    restart = bool(read_bool(options, "restart_klipper_when_powered", False))
    if kind == "klipper_device":
        for option, value in (
            ("off_when_shutdown", off_when_shutdown),
            ("restart_klipper_when_powered", restart),
        ):
            if value:
                raise PowerConfigError(f"{option}: not supported for a klipper_device")
    services: list[str] = []
    legacy = _get(options, "bound_service")
    for svc in (*read_list(options, "bound_services"), *([legacy] if legacy else [])):
        svc = svc.removesuffix(".service")
        if svc not in services:
            services.append(svc)
    on_queued = read_bool(options, "on_when_job_queued", False)
    if "on_when_upload_queued" in options:  # the deprecated name
        on_queued = read_bool(options, "on_when_upload_queued", False)
    polls = kind not in ("gpio", "klipper_device", "mqtt")
    timer = None
    if kind in ("gpio", "klipper_device"):
        timer = read_float(options, "timer", None, above=0.000001)
    return DeviceOptions(
        name=name,
        type=kind,
        locked_while_printing=bool(read_bool(options, "locked_while_printing", False)),
        off_when_shutdown=off_when_shutdown,
        off_when_shutdown_delay=(
            read_float(options, "off_when_shutdown_delay", 0.0, minval=0.0) or 0.0
            if off_when_shutdown
            else 0.0
        ),
        restart_klipper_when_powered=restart,
        restart_delay=(
            read_float(options, "restart_delay", 1.0, above=0.000001) or 1.0 if restart else 1.0
        ),
        on_when_job_queued=bool(on_queued),
        initial_state=read_bool(options, "initial_state", None),
        bound_services=tuple(services),
        restrict_action_processing=bool(read_bool(options, "restrict_action_processing", True)),
        poll_interval=read_float(options, "poll_interval", None, minval=1.0) if polls else None,
        timer=timer,
    )


def device_info(
    opts: DeviceOptions, state: str, *, is_shutdown: bool | None = None
) -> dict[str, Any]:
    """A device as ``machine.device_power.devices`` lists it and ``notify_power_changed``
    announces it."""
    info: dict[str, Any] = {
        "device": opts.name,
        "status": state,
        "locked_while_printing": opts.locked_while_printing,
        "type": opts.type,
    }
    if is_shutdown is not None:
        info["is_shutdown"] = is_shutdown
    return info


def wanted_state(request: str, current: str) -> str:
    """``toggle`` resolved against the current state (anything but ``off`` toggles off)."""
    if request == "toggle":
        return "on" if current == "off" else "off"
    return request


# --- klipper_device -------------------------------------------------------------------------


@attrs.frozen
class KlipperSpec:
    object_name: str
    #: The command sent with `` VALUE=0|1``: ``SET_PIN PIN=name`` or the macro's name.
    command: str

    def script(self, state: str) -> str:
        return f"{self.command} VALUE={1 if state == 'on' else 0}"

    def state_from(self, status: Mapping[str, Any]) -> str | None:
        """The state from an object's status (None: no ``value`` in it)."""
        obj = status.get(self.object_name)
        if not isinstance(obj, Mapping) or obj.get("value") is None:
            return None
        return "on" if obj["value"] else "off"


def klipper_spec(options: Mapping[str, str]) -> KlipperSpec:
    object_name = read_str(options, "object_name")
    parts = object_name.split()
    if len(parts) != 2 or parts[0] not in ("output_pin", "gcode_macro"):
        raise PowerConfigError(
            f"object_name: expected 'output_pin NAME' or 'gcode_macro NAME', got {object_name!r}"
        )
    command = parts[1] if parts[0] == "gcode_macro" else f"SET_PIN PIN={parts[1]}"
    return KlipperSpec(object_name, command)


# --- gpio -----------------------------------------------------------------------------------

_GPIO_RE = re.compile(
    r"(?P<bias>[~^])?(?P<inverted>!)?(?:(?P<chip>gpiochip[0-9]+)/)?gpio(?P<line>[0-9]+)"
)


@attrs.frozen
class GpioPin:
    chip: str
    line: int
    inverted: bool = False

    @property
    def chip_path(self) -> str:
        return f"/dev/{self.chip}"

    @property
    def full_name(self) -> str:
        return f"{self.chip}:gpio{self.line}"


def parse_gpio_pin(text: str) -> GpioPin:
    """``[!][gpiochipN/]gpioM`` (Moonraker's pin format for an output)."""
    match = _GPIO_RE.fullmatch(text.strip())
    if match is None:
        raise PowerConfigError(f"pin: expected '[!][gpiochipN/]gpioM', got {text!r}")
    if match.group("bias"):
        raise PowerConfigError(f"pin: a bias flag is not available for an output: {text!r}")
    return GpioPin(
        match.group("chip") or "gpiochip0",
        int(match.group("line")),
        match.group("inverted") is not None,
    )


# --- HTTP families --------------------------------------------------------------------------


@attrs.frozen
class HttpCall:
    """One request to send."""

    method: str
    url: str
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes | None = None


@attrs.frozen
class HttpAnswer:
    """What came back: the status and the body."""

    status: int
    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)
    url: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise PowerResponseError(f"not JSON: {self.body[:80]!r}") from None


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _json_body(value: Any) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/json"}, json.dumps(value).encode()


@attrs.frozen
class Address:
    """``address`` (quoted per path part), ``port``, ``protocol``, ``user``, ``password``."""

    address: str
    port: int
    protocol: str
    user: str
    password: str

    @property
    def base(self) -> str:
        return f"{self.protocol}://{self.address}:{self.port}"


def read_address(
    options: Mapping[str, str],
    *,
    default_port: int = -1,
    default_user: str = "",
    default_password: str = "",
    default_protocol: str = "http",
) -> Address:
    parts = read_str(options, "address").strip("/").split("/")
    address = "/".join(urllib.parse.quote(part, safe=":[]") for part in parts)
    protocol = read_str(options, "protocol", default_protocol).lower()
    if protocol not in ("http", "https"):
        raise PowerConfigError(f"protocol: expected 'http' or 'https', got {protocol!r}")
    port = read_int(options, "port", default_port)
    if port is None or port == -1:
        port = 443 if protocol == "https" else 80
    if not 0 < port < 65536:
        raise PowerConfigError(f"port: expected a port from 1 to 65535, got {port}")
    return Address(
        address,
        port,
        protocol,
        _get(options, "user") or default_user,
        _get(options, "password") or default_password,
    )


def _require_ok(answer: HttpAnswer) -> None:
    if answer.status >= 400:
        raise PowerResponseError(f"HTTP status {answer.status}")


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PowerResponseError(f"expected a JSON object, got {value!r:.80}")
    return value


def _lower_state(value: Any) -> str:
    state = str(value).lower()
    if state not in ("on", "off"):
        raise PowerResponseError(f"unknown state {value!r}")
    return state


@attrs.frozen
class TasmotaSpec:
    addr: Address
    output_id: int = 1
    timer: str = ""
    status_after_set: bool = False

    def request(self, command: str) -> HttpCall:
        if command in ("on", "off"):
            cmnd = f"Power{self.output_id} {command}"
            if self.timer and command == "off":
                cmnd = f"Backlog Delay {self.timer}0; {cmnd}"
        else:
            cmnd = f"Power{self.output_id}"
        query = urllib.parse.urlencode(
            {"user": self.addr.user, "password": self.addr.password, "cmnd": cmnd}
        )
        return HttpCall("GET", f"{self.addr.protocol}://{self.addr.address}/cm?{query}")

    def parse(self, command: str, answer: HttpAnswer) -> str:
        _require_ok(answer)
        if command == "off" and self.timer:
            return "off"  # the plug turns off after the delay: Moonraker reports it off now
        data = _dict(answer.json())
        key = f"POWER{self.output_id}"
        if key not in data and self.output_id == 1:
            key = "POWER"
        if key not in data:
            raise PowerResponseError(f"no {key} in the answer")
        return _lower_state(data[key])


@attrs.frozen
class ShellySpec:
    addr: Address
    output_id: int = 0
    timer: str = ""
    status_after_set: bool = False

    def request(self, command: str) -> HttpCall:
        args: dict[str, str] = {}
        if command in ("on", "off"):
            args["turn"] = command
            if command == "off" and self.timer:
                args = {"turn": "on", "timer": self.timer}
        url = f"{self.addr.protocol}://{self.addr.address}/relay/{self.output_id}"
        if args:
            url += "?" + urllib.parse.urlencode(args)
        headers = basic_auth(self.addr.user, self.addr.password) if self.addr.password else {}
        return HttpCall("GET", url, headers)

    def parse(self, command: str, answer: HttpAnswer) -> str:
        _require_ok(answer)
        data = _dict(answer.json())
        if "ison" not in data:
            raise PowerResponseError("no 'ison' in the answer")
        remaining = data.get("timer_remaining", 0) if self.timer else 0
        return "on" if data["ison"] and not remaining else "off"


@attrs.frozen
class HomeAssistantSpec:
    addr: Address
    device: str
    token: str
    domain: str = "switch"
    status_delay: float = 1.0
    #: Home Assistant answers a service call with no state: ask for it after ``status_delay``.
    status_after_set: bool = True

    def request(self, command: str) -> HttpCall:
        headers = {"Authorization": f"Bearer {self.token}"}
        if command in ("on", "off"):
            extra, body = _json_body({"entity_id": self.device})
            path = f"api/services/{urllib.parse.quote(self.domain)}/turn_{command}"
            return HttpCall("POST", f"{self.addr.base}/{path}", {**headers, **extra}, body)
        path = f"api/states/{urllib.parse.quote(self.device)}"
        return HttpCall("GET", f"{self.addr.base}/{path}", headers)

    def parse(self, command: str, answer: HttpAnswer) -> str:
        _require_ok(answer)
        if command in ("on", "off"):
            return command  # the state is asked for afterwards
        data = _dict(answer.json())
        if "state" not in data:
            raise PowerResponseError("no 'state' in the answer")
        return str(data["state"])


@attrs.frozen
class HueSpec:
    addr: Address
    device_id: str
    device_type: str = "light"
    status_after_set: bool = False

    @property
    def _state_key(self) -> str:
        return "action" if self.device_type == "group" else "state"

    def _url(self) -> str:
        user = urllib.parse.quote(self.addr.user)
        device = urllib.parse.quote(self.device_id)
        return f"{self.addr.base}/api/{user}/{self.device_type}s/{device}"

    def request(self, command: str) -> HttpCall:
        if command in ("on", "off"):
            headers, body = _json_body({"on": command == "on"})
            url = f"{self._url()}/{urllib.parse.quote(self._state_key)}"
            return HttpCall("PUT", url, headers, body)
        return HttpCall("GET", self._url())

    def parse(self, command: str, answer: HttpAnswer) -> str:
        _require_ok(answer)
        data = answer.json()
        if command in ("on", "off"):
            key = f"/{self.device_type}s/{self.device_id}/{self._state_key}/on"
            try:
                return "on" if data[0]["success"][key] else "off"
            except (KeyError, IndexError, TypeError):
                raise PowerResponseError(f"no success for {key} in the answer") from None
        on_key = "all_on" if self.device_type == "group" else "on"
        try:
            return "on" if _dict(data)["state"][on_key] else "off"
        except (KeyError, TypeError):
            raise PowerResponseError(f"no state.{on_key} in the answer") from None


# Moonraker's template dialect: `{ value }` and `{% statement %}`.
_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(
    block_start_string="{%",
    block_end_string="%}",
    variable_start_string="{",
    variable_end_string="}",
    extensions=["jinja2.ext.do"],
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["fromjson"] = json.loads


def compile_template(source: str, option: str) -> jinja2.Template:
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateError as exc:
        raise PowerConfigError(f"{option}: bad template: {exc}") from None


class TemplateResponse:
    """What a response template sees as ``http_request.last_response()``."""

    def __init__(self, answer: HttpAnswer) -> None:
        self._answer = answer
        self.status_code = answer.status
        self.headers = dict(answer.headers)
        self.url = self.final_url = answer.url
        self.content = answer.body
        self.text = answer.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return self._answer.json()

    def has_error(self) -> bool:
        return self.status_code >= 400


class _LastRequest:
    def __init__(self, answer: HttpAnswer) -> None:
        self._response = TemplateResponse(answer)

    def last_response(self) -> TemplateResponse:
        return self._response


@attrs.frozen
class GenericHttpSpec:
    """``type: http``: a GET of ``on_url``/``off_url``/``status_url``; the answer read by
    ``response_template`` (which must render ``on`` or ``off``)."""

    urls: Mapping[str, str]
    response_template: jinja2.Template
    user: str = ""
    password: str = ""
    status_after_set: bool = False

    def request(self, command: str) -> HttpCall:
        headers = basic_auth(self.user, self.password) if self.user and self.password else {}
        return HttpCall("GET", self.urls[command], headers)

    def parse(self, command: str, answer: HttpAnswer) -> str:
        _require_ok(answer)
        context = {
            "command": command,
            "urls": dict(self.urls),
            "http_request": _LastRequest(answer),
        }
        try:
            rendered = self.response_template.render(context).strip().lower()
        except PowerResponseError:
            raise
        except Exception as exc:  # a template's own error (undefined names, bad JSON, ...)
            raise PowerResponseError(f"response_template: {type(exc).__name__}: {exc}") from None
        if rendered not in ("on", "off"):
            raise PowerResponseError(f"response_template rendered {rendered!r}, not on/off")
        return rendered


HttpSpec = TasmotaSpec | ShellySpec | HomeAssistantSpec | HueSpec | GenericHttpSpec


def http_spec(kind: str, options: Mapping[str, str]) -> HttpSpec:
    """The request builder of an HTTP family from its section's options."""
    if kind == "tasmota":
        addr = read_address(options, default_user="admin")
        return TasmotaSpec(
            addr, read_int(options, "output_id", 1) or 1, _get(options, "timer") or ""
        )
    if kind == "shelly":
        addr = read_address(options, default_user="admin")
        output = read_int(options, "output_id", 0)
        return ShellySpec(addr, output or 0, _get(options, "timer") or "")
    if kind == "homeassistant":
        addr = read_address(options, default_port=8123)
        return HomeAssistantSpec(
            addr,
            read_str(options, "device"),
            read_str(options, "token"),
            read_str(options, "domain", "switch"),
            read_float(options, "status_delay", 1.0, minval=0.0) or 0.0,
        )
    if kind == "hue":
        addr = read_address(options, default_port=80)
        device_type = read_str(options, "device_type", "light")
        if device_type not in ("light", "group"):
            raise PowerConfigError(f"device_type: expected 'light' or 'group', got {device_type!r}")
        return HueSpec(addr, read_str(options, "device_id"), device_type)
    if kind == "http":
        if _get(options, "request_template"):
            raise PowerConfigError(
                "request_template: not supported by trioprint (use on_url/off_url/status_url)"
            )
        urls = {}
        for command in ("on", "off", "status"):
            url = read_str(options, f"{command}_url")
            if not url.startswith(("http://", "https://")):
                raise PowerConfigError(f"{command}_url: expected an http:// or https:// URL")
            urls[command] = url
        source = read_str(options, "response_template")
        return GenericHttpSpec(
            urls,
            compile_template(source, "response_template"),
            _get(options, "user") or "",
            _get(options, "password") or "",
        )
    raise PowerConfigError(f"type: {kind!r} is not an HTTP device")


# --- uhubctl --------------------------------------------------------------------------------

_HUB_PORT_RE = re.compile(
    r"^\s*Port\s(?P<port>[0-9]+):\s(?P<bits>[0-9a-f]{4})\s(?P<pstate>power|off)"
    r"(?P<flags>(?:\s[0-9a-z.]+)+)?(?:\s\[(?P<desc>.+)\])?\s*$",
    re.IGNORECASE,
)


@attrs.frozen
class UhubctlSpec:
    location: str
    port: int | None = None

    def argv(self, command: str) -> list[str]:
        argv = ["uhubctl", "-l", self.location]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if command in ("on", "off"):
            argv += ["-a", command]
        return argv

    def parse(self, command: str, output: str) -> dict[str, Any]:
        """The port's record from uhubctl's output (after the hub's ``Current``/``New
        status`` line); raises :class:`PowerResponseError` when it is not there."""
        word = "New" if command in ("on", "off") else "Current"
        prefix = f"{word} status for hub {self.location}"
        found_hub = False
        for line in output.splitlines():
            if not found_hub:
                found_hub = line.startswith(prefix)
                continue
            match = _HUB_PORT_RE.match(line)
            if match is None:
                continue
            port = int(match.group("port"))
            if self.port is not None and port != self.port:
                continue
            flags = (match.group("flags") or "").split()
            return {
                "port": port,
                "status_bits": int(match.group("bits"), 16),
                "state": "on" if match.group("pstate").lower() == "power" else "off",
                "flags": flags,
                "desc": match.group("desc"),
            }
        raise PowerResponseError(
            f"no status for hub {self.location}, port {self.port} in uhubctl's output"
        )


def uhubctl_spec(options: Mapping[str, str]) -> UhubctlSpec:
    location = read_str(options, "location")
    if not re.fullmatch(r"[0-9A-Za-z.\-:]+", location):
        raise PowerConfigError(f"location: expected a hub location like '1-1.4', got {location!r}")
    return UhubctlSpec(location, read_int(options, "port", None))
