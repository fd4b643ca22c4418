"""``[power NAME] type: mqtt`` as pure logic: the options and the templates (Moonraker 0.11's).

A command is ``command_payload`` rendered with ``command`` (``on`` or ``off``) and published on
``command_topic``; the device's state is each message on ``state_topic`` rendered by
``state_response_template`` (default ``{payload}``), which must give ``on`` or ``off`` (or
``discard``: the message is ignored). ``query_topic`` (with ``query_payload``) asks the device
for its state; ``query_after_command`` asks once more after each command. The templates are
Jinja2 in a sandbox with Moonraker's delimiters (:mod:`trioprint.domain.templates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import jinja2

from .power import PowerConfigError, read_bool, read_float, read_int, read_str
from .templates import ENVIRONMENT

#: What a state template may render besides a state: the message is ignored.
DISCARD = "discard"


class StateTemplateError(ValueError):
    """A state message the template cannot turn into ``on`` or ``off``."""


def _template(source: str, option: str) -> jinja2.Template:
    try:
        return ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise PowerConfigError(f"{option}: bad template: {exc.message}") from None


def _render(template: jinja2.Template, option: str, context: Mapping[str, Any]) -> str:
    try:
        return template.render(context)
    except jinja2.TemplateError as exc:
        raise StateTemplateError(f"{option} failed: {exc}") from None
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        raise StateTemplateError(f"{option} failed: {exc!r}") from None


@attrs.frozen
class MqttPowerSpec:
    command_topic: str
    command_payload: jinja2.Template
    state_topic: str
    state_response: jinja2.Template
    qos: int | None = None
    retain_command_state: bool = False
    state_timeout: float = 2.0
    query_topic: str | None = None
    query_payload: jinja2.Template | None = None
    query_after_command: bool = False

    def command(self, state: str) -> str:
        """The payload that asks the device to turn ``state`` (``on``/``off``)."""
        try:
            return _render(self.command_payload, "command_payload", {"command": state})
        except StateTemplateError as exc:
            raise PowerConfigError(str(exc)) from None

    def query(self) -> str | None:
        """The payload of a query (None: an empty message)."""
        if self.query_payload is None:
            return None
        try:
            return _render(self.query_payload, "query_payload", {})
        except StateTemplateError as exc:
            raise PowerConfigError(str(exc)) from None

    def state(self, payload: bytes, last_request: str = "", response_count: int = 0) -> str:
        """``on``, ``off`` or :data:`DISCARD` from one state message; raises
        :class:`StateTemplateError` for anything else."""
        text = payload.decode("utf-8", "replace")
        context = {"payload": text, "last_request": last_request, "response_count": response_count}
        rendered = _render(self.state_response, "state_response_template", context)
        state = rendered.strip().lower()
        if state not in ("on", "off", DISCARD):
            raise StateTemplateError(
                f"invalid state received: payload {text[:80]!r} rendered {rendered[:80]!r}"
            )
        return state


def _topic(options: Mapping[str, str], key: str) -> str | None:
    value = (options.get(key) or "").strip()
    if not value:
        return None
    if "+" in value or "#" in value:
        raise PowerConfigError(f"{key}: wildcards may not be used, got {value!r}")
    return value


def _required_topic(options: Mapping[str, str], key: str) -> str:
    value = _topic(options, key)
    if value is None:
        raise PowerConfigError(f"{key}: required for type mqtt")
    return value


def mqtt_spec(options: Mapping[str, str]) -> MqttPowerSpec:
    """A ``type: mqtt`` device's own options; raises :class:`PowerConfigError`."""
    command_topic = _required_topic(options, "command_topic")
    state_topic = _required_topic(options, "state_topic")
    payload = (options.get("command_payload") or "").strip()
    if not payload:
        raise PowerConfigError("command_payload: required for type mqtt")
    qos = read_int(options, "qos", None)
    if qos is not None and not 0 <= qos <= 2:
        raise PowerConfigError(f"qos: expected 0, 1 or 2, got {qos}")
    query_topic = _topic(options, "query_topic")
    query_source = (options.get("query_payload") or "").strip()
    state_timeout = read_float(options, "state_timeout", 2.0, above=0.0)
    assert state_timeout is not None
    return MqttPowerSpec(
        command_topic=command_topic,
        command_payload=_template(payload, "command_payload"),
        state_topic=state_topic,
        state_response=_template(
            read_str(options, "state_response_template", "{payload}"), "state_response_template"
        ),
        qos=qos,
        retain_command_state=bool(read_bool(options, "retain_command_state", False)),
        state_timeout=state_timeout,
        query_topic=query_topic,
        query_payload=_template(query_source, "query_payload") if query_source else None,
        # Moonraker: without a query topic there is nothing to ask
        query_after_command=bool(read_bool(options, "query_after_command", False))
        and query_topic is not None,
    )
