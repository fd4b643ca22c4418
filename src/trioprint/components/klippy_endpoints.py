"""Klippy's other endpoints, forwarded as Moonraker forwards them.

Once klippy has started, the link asks it for its endpoints (``list_endpoints``). Each one
that is not reserved for the link itself and not already served (``printer.info``,
``printer.gcode.script`` and the others :mod:`trioprint.components.printer` declares) is added
to the registry as Moonraker adds it: klippy's ``bed_mesh/dump_mesh`` is the JSON-RPC method
``printer.bed_mesh.dump_mesh`` and the HTTP route ``/printer/bed_mesh/dump_mesh``, GET and POST
alike. A call is sent to klippy with its arguments as they came; klippy's answer is the
result (``"ok"`` for an empty one), klippy's error a 400 with its message, and while the link
is down the call is a 503 ("Klippy Host not connected"). Once added, an endpoint stays for the
life of the server instance, as in Moonraker, through klippy restarts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ..registry import Call, Registry, Transport
from .klippy import Klippy

log = logging.getLogger(__name__)

#: Klippy's endpoints for the link only, never served to clients (Moonraker's list).
RESERVED = frozenset({"list_endpoints", "gcode/subscribe_output", "register_remote_method"})
#: HTTP arguments that are credentials or cache busters, never klippy's (Moonraker's list).
EXCLUDED_ARGS = frozenset({"_", "token", "access_token", "connection_id"})
_NAME_RE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")


@attrs.frozen
class ForwardedParams:
    """Whatever the client sent: klippy checks its own arguments."""

    args: dict[str, Any]

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> ForwardedParams:
        return cls(dict(raw))


def names_for(endpoint: str) -> tuple[str, str]:
    """Klippy's ``a/b`` -> the HTTP path ``/printer/a/b`` and the method ``printer.a.b``."""
    path = f"/printer/{endpoint.strip('/')}"
    return path, path[1:].replace("/", ".")


class KlippyEndpoints:
    """Adds klippy's endpoints to the registry each time the link lists them."""

    name = "klippy_endpoints"

    def __init__(self, klippy: Klippy, registry: Registry) -> None:
        self._klippy = klippy
        self._registry = registry
        #: klippy endpoint -> its JSON-RPC method, for those this added
        self.forwarded: dict[str, str] = {}
        klippy.on_endpoints(self.add)

    def add(self, endpoints: list[Any]) -> list[str]:
        """Serve every endpoint not served yet; returns the ones added now."""
        added = []
        for endpoint in endpoints:
            if not isinstance(endpoint, str) or endpoint in RESERVED:
                continue
            if endpoint in self.forwarded:
                continue
            if not _NAME_RE.match(endpoint):
                log.info("klippy endpoint %r not forwarded: not a valid path", endpoint)
                continue
            path, rpc_name = names_for(endpoint)
            if self._registry.by_path(path) is not None or self._registry.by_rpc(rpc_name):
                continue  # served already (printer.info, printer.gcode.script, ...)
            self._registry.add(
                path,
                ("GET", "POST"),
                self._handler(endpoint),
                params=ForwardedParams,
                rpc=rpc_name,
            )
            self.forwarded[endpoint] = rpc_name
            added.append(endpoint)
        if added:
            log.info("forwarding klippy endpoints: %s", ", ".join(added))
        return added

    def _handler(self, endpoint: str) -> Any:
        async def forward(call: Call[ForwardedParams]) -> Any:
            args = call.params.args
            if call.transport is Transport.HTTP:
                args = {k: v for k, v in args.items() if k not in EXCLUDED_ARGS}
            result = await self._klippy.request(endpoint, args)
            return "ok" if result in ({}, None) else result

        return forward
