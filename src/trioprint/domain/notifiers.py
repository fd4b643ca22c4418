"""``[notifier NAME]`` sections, job events and templates (Moonraker 0.11's ``notifier``).

:class:`JobEvents` turns klippy's ``print_stats`` diffs into Moonraker's job events, with the
print stats before and after: ``started`` (from an idle state to ``printing``, or inferred before
any other change out of an idle state), ``paused``, ``resumed`` (back to ``printing`` with the
same file and a grown ``total_duration``), ``complete``, ``error``, ``cancelled`` and
``standby`` (which no notifier hears, as in Moonraker).

:class:`Notifier` is one section: ``url`` (required, ``scheme://...``, an apprise URL), ``events``
(comma separated, ``*`` for all), ``title``, ``body`` (default: the event's name),
``body_format`` (``text``, ``html`` or ``markdown``), ``attach`` (files or ``http(s)`` URLs,
one a line). ``url``, ``title``, ``body`` and ``attach`` are Jinja2 templates with Moonraker's
delimiters (``{expression}``, ``{% statement %}``), rendered in Jinja2's sandbox with
``event_name``, ``event_args`` (``[previous print_stats, new print_stats]``) and
``event_message``: ``body: {event_args[1].filename} is {event_name}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import jinja2

from .templates import ENVIRONMENT

#: The events a notifier may hear (Moonraker's job events but ``standby``).
EVENTS = ("started", "paused", "resumed", "complete", "error", "cancelled")
IDLE_STATES = frozenset({"standby", "complete", "cancelled", "error"})
BODY_FORMATS = ("text", "html", "markdown")
_URL_RE = re.compile(r"\w+?://")

_ENV = ENVIRONMENT


class NotifierError(ValueError):
    """A section or a template is wrong."""


def _template(text: str, where: str) -> jinja2.Template:
    try:
        return _ENV.from_string(text.strip())
    except jinja2.TemplateSyntaxError as exc:
        raise NotifierError(f"{where}: bad template: {exc.message}") from None


def render(template: jinja2.Template, context: Mapping[str, Any], where: str) -> str:
    try:
        return template.render(**context)
    except jinja2.TemplateError as exc:
        raise NotifierError(f"{where}: template failed: {exc}") from None
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        raise NotifierError(f"{where}: template failed: {exc!r}") from None


JobEvent = tuple[str, dict[str, Any], dict[str, Any]]


class JobEvents:
    """print_stats diffs in, ``(event, previous stats, new stats)`` out."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None  # None: the next diff is the baseline

    def reset(self) -> None:
        self.last = None

    def feed(self, diff: Mapping[str, Any]) -> list[JobEvent]:
        if self.last is None:
            self.last = dict(diff)
            return []
        prev = dict(self.last)
        new = {**prev, **diff}
        self.last = new
        old_state, state = prev.get("state"), diff.get("state")
        if not isinstance(state, str) or state == old_state:
            return []
        events: list[JobEvent] = []
        if old_state in IDLE_STATES:
            if state == "printing":
                return [("started", prev, new)]
            if state != "standby":
                events.append(("started", prev, new))
        elif state == "printing":
            resumed = (
                old_state == "paused"
                and prev.get("filename") == new.get("filename")
                and _num(prev.get("total_duration")) < _num(new.get("total_duration"))
            )
            return [("resumed" if resumed else "started", prev, new)]
        events.append((state, prev, new))
        return events


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


@attrs.frozen
class Message:
    """One notification, rendered: what apprise is given."""

    url: str
    title: str
    body: str
    body_format: str
    attach: tuple[str, ...]


class Notifier:
    """One ``[notifier NAME]`` section."""

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        where = f"[notifier {name}]"
        self.name = name
        self.options = dict(options)
        raw_url = options.get("url")
        if not raw_url:
            raise NotifierError(f"{where}: option 'url' is required")
        self.url = render(_template(raw_url, f"{where} url"), {}, f"{where} url")
        if _URL_RE.match(self.url) is None:
            raise NotifierError(f"{where}: option 'url': invalid url {raw_url!r}")
        self.events = [e.strip() for e in options.get("events", "").split(",") if e.strip()]
        if not self.events:
            raise NotifierError(f"{where}: option 'events' is required")
        self.warnings: list[str] = []
        unknown = [e for e in self.events if e != "*" and e not in EVENTS]
        if unknown:
            self.warnings.append(
                f"{where}: option 'events': unknown event(s) {', '.join(unknown)}, never sent"
                f" (the events: {', '.join(EVENTS)} or *)"
            )
        body_format = options.get("body_format", "text").strip().lower()
        if body_format not in BODY_FORMATS:
            raise NotifierError(
                f"{where}: option 'body_format': expected one of {', '.join(BODY_FORMATS)},"
                f" got {body_format!r}"
            )
        self.body_format = body_format
        self._title = _template(options["title"], f"{where} title") if "title" in options else None
        self._body = _template(options["body"], f"{where} body") if "body" in options else None
        self._attach = (
            _template(options["attach"], f"{where} attach") if "attach" in options else None
        )

    def hears(self, event: str) -> bool:
        return event in EVENTS and ("*" in self.events or event in self.events)

    def as_dict(self) -> dict[str, Any]:
        """``server.notifiers.list``'s entry: the options as written."""
        return {
            "name": self.name,
            "url": self.options.get("url"),
            "title": self.options.get("title"),
            "body": self.options.get("body"),
            "body_format": self.options.get("body_format"),
            "events": list(self.events),
            "attach": self.options.get("attach"),
        }

    def message(self, event: str, args: list[Any], text: str = "") -> Message:
        """The notification for ``event``; :class:`NotifierError` if a template fails."""
        where = f"[notifier {self.name}]"
        context = {"event_name": event, "event_args": args, "event_message": text}
        title = "" if self._title is None else render(self._title, context, f"{where} title")
        body = event if self._body is None else render(self._body, context, f"{where} body")
        attach: tuple[str, ...] = ()
        if self._attach is not None:
            rendered = render(self._attach, context, f"{where} attach")
            attach = tuple(line.strip() for line in rendered.splitlines() if line.strip())
        return Message(self.url, title.strip(), body.strip(), self.body_format, attach)


def is_remote(item: str) -> bool:
    """Whether an attachment is a URL (sent as it is) rather than a file."""
    return re.match(r"https?://", item) is not None
