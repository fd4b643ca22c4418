"""Errors that cross the API boundary.

An :class:`ApiError` carries an HTTP status and a message naming the problem. The HTTP
transport answers with that status; the websocket transport maps it to a JSON-RPC error code
the way Moonraker does (see :func:`trioprint.rpc.rpc_code_for_status`).
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request failed in a way the client should be told about."""

    def __init__(self, message: str, status: int = 400, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        #: Sent as the JSON-RPC error's ``data`` (an agent's own error), when not None.
        self.data = data

    def __repr__(self) -> str:
        return f"ApiError({self.message!r}, status={self.status})"


class ConfigError(Exception):
    """The configuration cannot be used; the message names file, section and option."""


class StartupError(Exception):
    """The server cannot start; the message is one line meant for a person."""
