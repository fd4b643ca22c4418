"""The host's services and power, as pure logic: allow-lists, systemctl output, refusals.

Nothing here runs a command: ``components/init_system.py`` runs ``systemctl`` and hands its
output to these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

#: Services a client may start, stop or restart when ``<data>/moonraker.asvc`` is absent (the
#: same names as Moonraker's default list); moonraker, klipper and trioprint (with an optional
#: instance number) are always allowed.
DEFAULT_ALLOWED_SERVICES: tuple[str, ...] = (
    "klipper_mcu",
    "webcamd",
    "MoonCord",
    "KlipperScreen",
    "moonraker-telegram-bot",
    "moonraker-obico",
    "sonar",
    "crowsnest",
    "octoeverywhere",
    "ratos-configurator",
)

#: moonraker, klipper, trioprint and their numbered instances (``klipper-2``, ``moonraker_1``).
_ALWAYS_ALLOWED = re.compile(r"(?:moonraker|klipper|trioprint)(?:[_-]?\d+)?")

#: A systemd unit name without its suffix: never an option (no leading ``-``), no spaces.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,254}")

SERVICE_ACTIONS = ("start", "stop", "restart")

#: The state of a service before systemctl was asked about it.
UNKNOWN_STATE: Mapping[str, str] = {"active_state": "unknown", "sub_state": "unknown"}


def strip_service_suffix(name: str) -> str:
    return name[: -len(".service")] if name.endswith(".service") else name


def parse_allowed_services(text: str) -> tuple[str, ...]:
    """``moonraker.asvc``: one service a line, ``.service`` optional; blanks and ``#`` skipped."""
    names: list[str] = []
    for line in text.splitlines():
        name = strip_service_suffix(line.strip())
        if name and not name.startswith("#") and name not in names:
            names.append(name)
    return tuple(names)


def is_valid_service_name(name: str) -> bool:
    return _SERVICE_NAME.fullmatch(name) is not None


def is_service_allowed(name: str, allowed: Iterable[str]) -> bool:
    """Whether clients may control ``name``: in the allow-list, or moonraker/klipper/trioprint."""
    if not is_valid_service_name(name):
        return False
    return name in allowed or _ALWAYS_ALLOWED.fullmatch(name) is not None


def parse_list_units(output: str) -> list[str]:
    """``systemctl list-units --all --type=service --plain --no-legend``: the services' names."""
    names: list[str] = []
    for line in output.splitlines():
        fields = line.split()
        # a unit that failed to load is marked with a leading bullet in some versions
        if fields and fields[0] in ("●", "*"):
            fields = fields[1:]
        if fields and fields[0].endswith(".service"):
            name = strip_service_suffix(fields[0])
            if name not in names:
                names.append(name)
    return names


def parse_show_states(output: str) -> dict[str, dict[str, str]]:
    """``systemctl show -p Id,ActiveState,SubState UNIT...`` -> ``{name: service_state}``.

    Each unit is a block of ``Key=Value`` lines, blocks separated by a blank line; the ``Id``
    names the unit, so the order systemctl prints the blocks and properties in does not matter.
    """
    states: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", output.strip()):
        props: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep:
                props[key] = value.strip()
        unit = props.get("Id")
        if not unit:
            continue
        states[strip_service_suffix(unit)] = {
            "active_state": props.get("ActiveState") or "unknown",
            "sub_state": props.get("SubState") or "unknown",
        }
    return states


def changed_states(
    old: Mapping[str, Mapping[str, str]], new: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """The services of ``new`` whose state differs from ``old``'s."""
    return {name: dict(state) for name, state in new.items() if old.get(name) != state}


def own_unit_from_cgroup(text: str) -> str | None:
    """The systemd service this process runs in, from ``/proc/self/cgroup`` (None: none)."""
    for line in text.splitlines():
        path = line.rsplit(":", 1)[-1]
        for part in reversed(path.split("/")):
            if part.endswith(".service"):
                return strip_service_suffix(part)
    return None


def power_refusal(
    action: str, *, print_state: str | None, virt_type: str, virt_identifier: str
) -> tuple[str, int] | None:
    """Why ``action`` (``reboot``/``shutdown``) must not run now, with its HTTP status, or None.

    Refused inside a container (Moonraker's rule, 400) and, trioprint's, while a print is in
    progress or paused (409): powering the host off would ruin it.
    """
    if virt_type == "container":
        return f"Cannot {action} from within a {virt_identifier} container", 400
    if print_state in ("printing", "paused"):
        return (
            f"Cannot {action} while a print is in progress (print_stats state '{print_state}'):"
            " cancel the print first",
            409,
        )
    return None
