"""The events :class:`trioprint.domain.gcode_link.GcodeLink` gives for what the firmware sent.

Every event is a frozen attrs class; :data:`Event` is their union.
"""

from __future__ import annotations

import attrs

from .marlin_lines import ErrorKind, FirmwareData, Position, SdProgress, Temperatures


@attrs.frozen
class LineReceived:
    """Every non-empty line the firmware sent, as received (for notify_gcode_response)."""

    line: str


@attrs.frozen
class Ok:
    """An ``ok``; ADVANCED_OK's fields when given."""

    lineno: int | None = None
    planner: int | None = None
    buffer: int | None = None


@attrs.frozen
class CommandAcknowledged:
    """The firmware acknowledged the command sent with ``tag``."""

    tag: object
    command: str


@attrs.frozen
class CommandDropped:
    """The command sent with ``tag`` will never be acknowledged (``reason`` says why)."""

    tag: object
    command: str
    reason: str


@attrs.frozen
class TemperatureReport:
    temperatures: Temperatures


@attrs.frozen
class PositionReport:
    position: Position


@attrs.frozen
class SdStatus:
    status: SdProgress


@attrs.frozen
class ResendRequested:
    """The firmware asked for line ``lineno`` again; ``duplicate`` requests were ignored."""

    lineno: int
    duplicate: bool = False


@attrs.frozen
class ResendImpossible:
    """The firmware asked for a line no longer in the window: the stream cannot be repaired
    (the link resynchronises its line numbers with M110; the caller should fail the job)."""

    lineno: int


@attrs.frozen
class FirmwareError:
    """An ``Error:``/``!!`` line. ``kind`` is ``communication`` (a resend follows), ``fatal``
    (the printer halted; ``emergency_stop`` tells whether the link sends M112) or ``other``."""

    message: str
    kind: ErrorKind
    emergency_stop: bool = False


@attrs.frozen
class FirmwareInfo:
    firmware: FirmwareData


@attrs.frozen
class Capability:
    name: str
    enabled: bool


@attrs.frozen
class HandshakeComplete:
    """M115 was answered: what the firmware is and can do."""

    firmware: FirmwareData | None
    capabilities: dict[str, bool]


@attrs.frozen
class ActionCommand:
    """``//action:<name> <argument>`` (pause, resume, cancel, prompt_begin ...)."""

    name: str
    argument: str = ""


@attrs.frozen
class Busy:
    reason: str


@attrs.frozen
class Wait:
    """The firmware says it is idle and waiting for commands."""


@attrs.frozen
class FirmwareReset:
    """``start``: the firmware (re)started; everything in flight is lost, line numbers restart."""


@attrs.frozen
class Echo:
    text: str


@attrs.frozen
class Timeout:
    """Nothing heard for the timeout; ``in_flight`` commands were taken as acknowledged (lost
    ``ok``s). ``consecutive`` counts timeouts without a line received between them."""

    consecutive: int
    in_flight: int
    during_handshake: bool


Event = (
    LineReceived
    | Ok
    | CommandAcknowledged
    | CommandDropped
    | TemperatureReport
    | PositionReport
    | SdStatus
    | ResendRequested
    | ResendImpossible
    | FirmwareError
    | FirmwareInfo
    | Capability
    | HandshakeComplete
    | ActionCommand
    | Busy
    | Wait
    | FirmwareReset
    | Echo
    | Timeout
)
