"""``[update_manager]`` and ``[update_manager NAME]``, read as Moonraker 0.11 reads them.

Pure: the raw options in, typed options and warnings out. A section that cannot be used is
left out with a warning naming it (as Moonraker warns "Failed to load extension"); nothing
here raises for a user's mistake. Whether a path exists is checked by the component.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import attrs

#: The kinds of ``[update_manager NAME]`` section trioprint serves.
TYPES = ("git_repo", "web", "python")
#: Kinds Moonraker has that trioprint does not (the section is ignored with a warning).
UNSUPPORTED_TYPES = ("zip", "executable")
CHANNELS = ("stable", "beta", "dev")
#: Channels each type may follow (the first one is its default).
TYPE_CHANNELS = {
    "git_repo": ("dev", "stable", "beta"),
    "web": ("stable", "beta"),
    "python": ("stable", "beta", "dev"),
}
SERVICE_CHOICES = ("klipper", "moonraker", "trioprint")
#: Names an ``[update_manager NAME]`` section may not take.
RESERVED_NAMES = ("system",)

_MANAGER_OPTIONS = frozenset(
    {
        "enable_auto_refresh",
        "refresh_interval",
        "refresh_window",
        "enable_system_updates",
        "enable_packagekit",
        "channel",
        "enable_repo_debug",
    }
)
_COMMON = {"type", "channel", "info_tags", "report_anomalies", "refresh_interval"}
_APP_OPTIONS = {
    "git_repo": _COMMON
    | {
        "path",
        "origin",
        "moved_origin",
        "primary_branch",
        "pinned_commit",
        "managed_services",
        "is_system_service",
        "virtualenv",
        "env",
        "requirements",
        "venv_args",
        "system_dependencies",
        "install_script",
        "enable_node_updates",
        "pip_environment_variables",
    },
    "web": _COMMON | {"path", "repo", "persistent_files"},
    "python": _COMMON
    | {
        "virtualenv",
        "project_name",
        "primary_branch",
        "managed_services",
        "is_system_service",
        "pip_environment_variables",
    },
}


@attrs.frozen
class ManagerOptions:
    """``[update_manager]``."""

    enable_auto_refresh: bool = False
    #: Hours between two refreshes of one application.
    refresh_interval: int = 168
    #: Hours of the day (local time) when the automatic refresh may run: [start, end).
    refresh_window: tuple[int, int] = (0, 5)
    enable_system_updates: bool = True
    channel: str | None = None


@attrs.frozen
class AppOptions:
    """One ``[update_manager NAME]``."""

    name: str
    type: str
    channel: str
    channel_invalid: bool = False
    path: str | None = None
    origin: str | None = None
    moved_origin: str | None = None
    primary_branch: str | None = None
    pinned_commit: str | None = None
    managed_services: tuple[str, ...] = ()
    info_tags: tuple[str, ...] = ()
    report_anomalies: bool = True
    refresh_interval: int | None = None
    #: ``web``: ``OWNER/NAME`` of the GitHub project.
    repo: str | None = None
    persistent_files: tuple[str, ...] = ()
    virtualenv: str | None = None
    project_name: str | None = None
    #: A digest of the section: a change in it asks for a refresh.
    config_hash: str = ""


class _Problem(ValueError):
    pass


def _bool(options: Mapping[str, str], section: str, option: str, default: bool) -> bool:
    value = options.get(option)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise _Problem(f"[{section}] {option}: expected a boolean, got {value!r}")


def _int(options: Mapping[str, str], section: str, option: str, low: int = 0) -> int | None:
    value = options.get(option)
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        number = low - 1
    if number < low:
        raise _Problem(f"[{section}] {option}: expected an integer >= {low}, got {value!r}")
    return number


def _list(value: str | None, separator: str | None = "\n") -> tuple[str, ...]:
    if value is None:
        return ()
    parts = value.split(separator) if separator else value.split()
    return tuple(p.strip() for p in parts if p.strip())


def _refresh_window(value: str, section: str) -> tuple[int, int]:
    parts = value.split("-")
    try:
        start, end = (int(p.strip()) for p in parts)
    except ValueError:
        raise _Problem(
            f"[{section}] refresh_window: expected START-END hours, got {value!r}"
        ) from None
    if not (0 <= start <= 23 and 0 <= end <= 23) or start == end:
        raise _Problem(
            f"[{section}] refresh_window: the hours must be 0 to 23 and not the same, got {value!r}"
        )
    return start, end


def parse_manager(options: Mapping[str, str]) -> tuple[ManagerOptions, list[str]]:
    """``[update_manager]``: the options (a bad one keeps its default) and warnings."""
    warnings = [
        f"[update_manager] {o}: unknown option, ignored"
        for o in options
        if o not in _MANAGER_OPTIONS
    ]
    if "client_repo" in options or "client_path" in options:
        warnings.append(
            "[update_manager] client_repo/client_path were removed: configure each client in"
            " an [update_manager NAME] section"
        )
    values: dict[str, object] = {}
    checks: dict[str, Callable[[], object]] = {
        "enable_auto_refresh": lambda: _bool(
            options, "update_manager", "enable_auto_refresh", False
        ),
        "enable_system_updates": lambda: _bool(
            options, "update_manager", "enable_system_updates", True
        ),
        "refresh_interval": lambda: _int(options, "update_manager", "refresh_interval", 1),
        "refresh_window": lambda: _refresh_window(options["refresh_window"], "update_manager"),
    }
    for option, check in checks.items():
        if option not in options:
            continue
        try:
            values[option] = check()
        except _Problem as exc:
            warnings.append(f"{exc}; the default is used")
    channel = options.get("channel")
    if channel is not None:
        if channel.strip().lower() in CHANNELS:
            values["channel"] = channel.strip().lower()
        else:
            warnings.append(
                f"[update_manager] channel: expected one of {', '.join(CHANNELS)}, got"
                f" {channel!r}; ignored"
            )
    return ManagerOptions(**values), warnings  # type: ignore[arg-type]


def app_name(section_name: str) -> str:
    """``NAME`` of ``[update_manager NAME]`` (Moonraker's old ``client NAME`` form too)."""
    return section_name.removeprefix("client ").strip()


def parse_app(
    name: str, options: Mapping[str, str], manager: ManagerOptions
) -> tuple[AppOptions, list[str]]:
    """One ``[update_manager NAME]``; raises ValueError (the reason) if it cannot be used."""
    section = f"update_manager {name}"
    kind = options.get("type", "").strip().lower()
    if kind in UNSUPPORTED_TYPES:
        raise ValueError(f"type '{kind}' is not supported by trioprint")
    if kind not in TYPES:
        raise ValueError(f"Invalid type '{options.get('type', '')}' for section [{section}]")
    warnings = [
        f"[{section}] {o}: unknown option, ignored" for o in options if o not in _APP_OPTIONS[kind]
    ]
    allowed = TYPE_CHANNELS[kind]
    channel = (options.get("channel") or manager.channel or allowed[0]).strip().lower()
    channel_invalid = False
    if channel not in allowed:
        warnings.append(
            f"[{section}]: Invalid value '{channel}' for option 'channel'. Type '{kind}'"
            f" supports the following channels: {list(allowed)}.  Falling back to channel"
            f" '{allowed[0]}'"
        )
        channel, channel_invalid = allowed[0], True
    try:
        report = _bool(options, section, "report_anomalies", True)
        interval = _int(options, section, "refresh_interval", 1)
        system_service = _bool(options, section, "is_system_service", True)
    except _Problem as exc:
        raise ValueError(str(exc)) from None

    def required(option: str) -> str:
        value = (options.get(option) or "").strip()
        if not value:
            raise ValueError(f"[{section}]: option '{option}' is required")
        return value

    fields: dict[str, object] = {}
    if kind == "git_repo":
        fields["path"] = required("path")
        origin = required("origin")
        fields["origin"] = origin if origin.endswith(".git") else origin + ".git"
        fields["moved_origin"] = options.get("moved_origin")
        fields["primary_branch"] = (options.get("primary_branch") or "master").strip()
        pinned = options.get("pinned_commit")
        if pinned is not None:
            pinned = pinned.strip().lower()
            if len(pinned) < 8:
                raise ValueError(
                    f"[{section}]: Value for option 'pinned_commit' must be a minimum of"
                    " 8 characters."
                )
            fields["pinned_commit"] = pinned
    elif kind == "web":
        fields["path"] = required("path")
        repo = required("repo").strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"[{section}] repo: expected OWNER/NAME, got {repo!r}")
        fields["repo"] = repo
        persistent = tuple(p.strip("/") for p in _list(options.get("persistent_files")))
        for reserved in (".version", "release_info.json"):
            if reserved in persistent:
                raise ValueError(
                    f"[{section}] persistent_files: '{reserved}' can not be persistent"
                )
        fields["persistent_files"] = persistent
    else:
        fields["virtualenv"] = options.get("virtualenv")
        fields["project_name"] = (options.get("project_name") or name).strip()
        if options.get("primary_branch"):
            fields["primary_branch"] = options["primary_branch"].strip()
    if kind in ("git_repo", "python"):
        services, problems = _services(name, section, options, system_service)
        warnings.extend(problems)
        fields["managed_services"] = services
    digest = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()
    app = AppOptions(
        name=name,
        type=kind,
        channel=channel,
        channel_invalid=channel_invalid,
        info_tags=_list(options.get("info_tags")),
        report_anomalies=report,
        refresh_interval=interval,
        config_hash=digest,
        **fields,  # type: ignore[arg-type]
    )
    return app, warnings


def _services(
    name: str, section: str, options: Mapping[str, str], system_service: bool
) -> tuple[tuple[str, ...], list[str]]:
    default = (name,) if system_service else ()
    raw = options.get("managed_services")
    listed = _list(raw, None) if raw is not None else default
    choices = (name, *SERVICE_CHOICES)
    warnings = []
    for service in listed:
        if service not in choices:
            warnings.append(
                f"[{section}]: Option 'managed_services: {' '.join(listed)}' contains an"
                f" invalid value '{service}'.  All values must be one of the following"
                f" choices: {list(dict.fromkeys(choices))}"
            )
            break
    return tuple(s for s in dict.fromkeys(choices) if s in listed), warnings


def parse_update_manager(
    main: Mapping[str, str], apps: Mapping[str, Mapping[str, str]]
) -> tuple[ManagerOptions, list[AppOptions], list[str]]:
    """Every section: the manager's options, the applications kept, the warnings."""
    manager, warnings = parse_manager(main)
    kept: dict[str, AppOptions] = {}
    for section_name, options in apps.items():
        name = app_name(section_name)
        if name in RESERVED_NAMES or name in kept:
            warnings.append(f"[update_manager]: Extension {name} already added")
            continue
        try:
            app, problems = parse_app(name, options, manager)
        except ValueError as exc:
            warnings.append(f"[update_manager]: Failed to load extension {name}: {exc}")
            continue
        warnings.extend(problems)
        kept[name] = app
    return manager, list(kept.values()), warnings
