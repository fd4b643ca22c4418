"""Jinja2 templates in a sandbox, with Moonraker's delimiters (``{name}``, ``{% if %}``).

Moonraker's config templates (a notifier's title and body, an MQTT sensor's
``state_response_template``) are Jinja2 with single braces; a user's template is rendered in
Jinja2's immutable sandbox, so it can read what it is given and call the functions it is given,
and nothing else.
"""

from __future__ import annotations

import jinja2
import jinja2.sandbox

from . import strictjson

ENVIRONMENT = jinja2.sandbox.ImmutableSandboxedEnvironment(
    block_start_string="{%",
    block_end_string="%}",
    variable_start_string="{",
    variable_end_string="}",
    autoescape=False,
    undefined=jinja2.StrictUndefined,
)
#: As Moonraker's: ``{(payload|fromjson).power}`` reads a JSON message.
ENVIRONMENT.filters["fromjson"] = strictjson.loads
