"""Configuration: a moonraker.conf-compatible INI file read into ``@attrs.frozen`` classes.

The dialect is Moonraker's: ``#``/``;`` comment lines, inline comments after whitespace (``\\#``
keeps a literal one), indented continuation lines, option names case-insensitive (stored in lower
case), ``[include PATTERN]`` reading other files in place (globs, relative to the including file)
and sections merged across files with the later option winning. A section or option repeated
within one file is an error; so is a file read twice (include loops included).

:func:`load_config` types the sections trioprint knows with a cattrs converter; any problem is a
one-line :class:`~trioprint.errors.ConfigError` naming the file, section, option, what was
expected and the value. Everything read is kept as raw strings (``server.config`` shows it) and
whatever trioprint ignores is listed in :attr:`Config.warnings`.

Pure: reads files; no Trio, no logging.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote

from .errors import ConfigError

__all__ = [
    "AnnouncementsConfig",
    "AuthorizationConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "FileManagerConfig",
    "HistoryConfig",
    "JobQueueConfig",
    "ServerConfig",
    "SimulatorConfig",
    "default_config_path",
    "load_config",
]

_T = TypeVar("_T")


class _BadValue(ValueError):
    """A value that does not fit; ``option`` is set when an attrs validator raised it."""

    def __init__(self, expected: str, option: str | None = None) -> None:
        super().__init__(f"expected {expected}")
        self.expected = expected
        self.option = option


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _between(low: int, high: int | None = None, what: str | None = None) -> _Validator:
    expected = what or (
        f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"
    )

    def check(_: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and (value < low or (high is not None and value > high)):
            raise _BadValue(expected, attribute.name)

    return check


def _one_of(*choices: str) -> _Validator:
    expected = "one of " + ", ".join(repr(c) for c in choices)

    def check(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
        if value not in choices:
            raise _BadValue(expected, attribute.name)

    return check


def _check_host(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise _BadValue("a host name or IP address, or 'all'", attribute.name)


def _host(value: str) -> str:
    return "0.0.0.0" if value.lower() == "all" else value


def _path(value: str | None) -> str | None:
    return None if value is None else os.path.expanduser(value)


def _lower(value: str) -> str:
    return value.lower()


# --- the typed sections ---------------------------------------------------------------------


@attrs.frozen
class ServerConfig:
    """``[server]``."""

    host: str = attrs.field(default="127.0.0.1", converter=_host, validator=_check_host)
    port: int = attrs.field(default=7125, validator=_between(0, 65535, "a port from 0 to 65535"))
    klippy_uds_address: str | None = attrs.field(default=None, converter=_path)
    max_upload_size: int = attrs.field(default=1024, validator=_between(1))  # MiB
    max_websocket_connections: int = attrs.field(default=50, validator=_between(1))
    enable_debug_logging: bool = False


@attrs.frozen
class AuthorizationConfig:
    """``[authorization]``."""

    enable_api_key: bool = True
    login_timeout: int = attrs.field(default=90, validator=_between(1))  # days
    force_logins: bool = False
    trusted_clients: tuple[str, ...] = ()
    #: trioprint's: loopback (127.0.0.0/8, ::1) is trusted unless this is false (set it to
    #: false behind a reverse proxy on the same machine).
    trust_loopback: bool = True
    cors_domains: tuple[str, ...] = ()
    default_source: str = attrs.field(
        default="moonraker", converter=_lower, validator=_one_of("moonraker", "ldap")
    )
    max_login_attempts: int | None = attrs.field(default=None, validator=_between(1))


@attrs.frozen
class FileManagerConfig:
    """``[file_manager]``; ``gcodes_path`` is trioprint's (Moonraker asks klippy)."""

    queue_gcode_uploads: bool = False
    enable_object_processing: bool = False
    check_klipper_config_path: bool = True
    enable_config_write_access: bool = True
    config_path: str | None = attrs.field(default=None, converter=_path)
    log_path: str | None = attrs.field(default=None, converter=_path)
    gcodes_path: str | None = attrs.field(default=None, converter=_path)
    #: trioprint's: seconds between two scans of the writable roots for changes other
    #: programs make (0: no scans).
    watch_interval: float = attrs.field(
        default=2.0, validator=_between(0, what="a number of seconds of at least 0")
    )


@attrs.frozen
class DatabaseConfig:
    """``[database]``."""

    database_path: str | None = attrs.field(default=None, converter=_path)
    enable_database_debug: bool = False


@attrs.frozen
class HistoryConfig:
    """``[history]``: Moonraker 0.11 reads no options from it."""


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 < value < float("inf"):
        raise _BadValue("a number greater than 0", attribute.name)


@attrs.frozen
class SimulatorConfig:
    """``[simulator]`` (trioprint's own): the embedded simulated printer.

    It runs when neither ``[server] klippy_uds_address`` nor ``[serial]`` is set (or with
    ``--sim``).
    """

    speed: float = attrs.field(default=1.0, validator=_positive)
    #: A Klipper printer.cfg to simulate (its axis limits, velocities, heaters, macros...)
    #: instead of the built-in machine.
    printer_config: str | None = attrs.field(default=None, converter=_path)
    #: ``klipper`` (the simulated klippy) or ``marlin`` (the simulated Marlin on a pty, driven
    #: through the serial link).
    firmware: str = attrs.field(
        default="klipper", converter=_lower, validator=_one_of("klipper", "marlin")
    )


@attrs.frozen
class JobQueueConfig:
    """``[job_queue]`` (Moonraker's)."""

    load_on_startup: bool = False
    automatic_transition: bool = False
    job_transition_delay: float = attrs.field(default=0.01, validator=_positive)
    job_transition_gcode: str = ""


def _check_feed_url(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (
        not value.startswith(("http://", "https://")) or "{name}" not in value
    ):
        raise _BadValue("an http:// or https:// URL with {name} in it", attribute.name)


def _lower_items(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(item.lower() for item in value)


@attrs.frozen
class AnnouncementsConfig:
    """``[announcements]`` (Moonraker's); ``feed_url`` is trioprint's."""

    subscriptions: tuple[str, ...] = attrs.field(default=(), converter=_lower_items)
    dev_mode: bool = False
    enable_moonlight: bool = True
    #: Where each feed is fetched from, ``{name}`` replaced by the feed's name (default:
    #: Moonraker's, or ``$TRIOPRINT_ANNOUNCEMENTS_URL``).
    feed_url: str | None = attrs.field(default=None, validator=_check_feed_url)


@attrs.frozen
class MachineConfig:
    """``[machine]`` (Moonraker's): how the host's services are controlled.

    ``provider`` None: ``systemd_cli`` where systemd runs (``systemctl`` on the PATH and
    ``/run/systemd/system``), else ``none``. ``systemd_dbus`` (Moonraker's default) is served by
    ``systemctl`` too; ``supervisord_cli`` is not supported (``none``, with a warning).
    """

    provider: str | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(_lower),
        validator=attrs.validators.optional(
            _one_of("systemd_cli", "systemd_dbus", "supervisord_cli", "none")
        ),
    )
    shutdown_action: str = attrs.field(
        default="poweroff", converter=_lower, validator=_one_of("poweroff", "halt")
    )


@attrs.frozen
class FrontendConfig:
    """``[frontend]`` (trioprint's): a built web frontend (Mainsail, Fluidd) served at ``/``."""

    #: The folder with its ``index.html`` (relative: to this config file's folder).
    path: str | None = attrs.field(default=None, converter=_path)


#: Typed sections: name in the file == attribute of :class:`Config`.
_TYPED: dict[str, type[Any]] = {
    "server": ServerConfig,
    "authorization": AuthorizationConfig,
    "file_manager": FileManagerConfig,
    "database": DatabaseConfig,
    "history": HistoryConfig,
    "simulator": SimulatorConfig,
    "job_queue": JobQueueConfig,
    "announcements": AnnouncementsConfig,
    "machine": MachineConfig,
    "frontend": FrontendConfig,
}
_FIELDS = {name: frozenset(a.name for a in attrs.fields(cls)) for name, cls in _TYPED.items()}

#: ``[PREFIX NAME]`` sections that components read themselves (``[include]`` is read here).
_PREFIXES = (
    "event_hook",
    "notifier",
    "power",
    "sensor",
    "spoolman",
    "update_manager",
    "webcam",
    "wled",
)
#: Prefixes whose bare section is fine too (``[update_manager]`` beside ``[update_manager NAME]``).
_BARE_PREFIXES = frozenset({"spoolman", "update_manager"})

#: Moonraker sections whose presence is fine: trioprint needs nothing from them.
_TOLERATED = frozenset(
    {
        "octoprint_compat",
        "mqtt",  # read by components/mqtt.py
        "serial",  # read by components/serial_printer.py
        "data_store",
        "proc_stats",
        "job_state",
        "klippy_apis",
        "extensions",
        "dbus_manager",
    }
)

_EMPTY: Mapping[Any, Any] = types.MappingProxyType({})


@attrs.frozen
class Config:
    """One reading of the configuration."""

    data_dir: Path
    source: Path | None = None
    server: ServerConfig = attrs.field(factory=ServerConfig)
    authorization: AuthorizationConfig = attrs.field(factory=AuthorizationConfig)
    file_manager: FileManagerConfig = attrs.field(factory=FileManagerConfig)
    database: DatabaseConfig = attrs.field(factory=DatabaseConfig)
    history: HistoryConfig = attrs.field(factory=HistoryConfig)
    simulator: SimulatorConfig = attrs.field(factory=SimulatorConfig)
    job_queue: JobQueueConfig = attrs.field(factory=JobQueueConfig)
    announcements: AnnouncementsConfig = attrs.field(factory=AnnouncementsConfig)
    machine: MachineConfig = attrs.field(factory=MachineConfig)
    frontend: FrontendConfig = attrs.field(factory=FrontendConfig)
    sections: Mapping[str, Mapping[str, str]] = _EMPTY
    files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    warnings: tuple[str, ...] = ()
    #: ``(section, option)`` -> ``"file:line"`` where it is written (option ``""``: the section)
    locations: Mapping[tuple[str, str], str] = _EMPTY

    def located(self, warning: str) -> str:
        """``warning`` about ``[section] option`` prefixed with the file and line it names."""
        return _located(warning, self.locations)

    def section(self, name: str) -> Mapping[str, str]:
        """The raw options of section ``name`` (empty if absent)."""
        return self.sections.get(name, _EMPTY)

    def sections_with_prefix(self, prefix: str) -> dict[str, Mapping[str, str]]:
        """``"event_hook"`` -> ``{"NAME": options}`` for every ``[event_hook NAME]``."""
        found: dict[str, Mapping[str, str]] = {}
        for name, options in self.sections.items():
            parts = name.split(None, 1)
            if len(parts) == 2 and parts[0] == prefix:
                found[parts[1]] = options
        return found

    def parsed(self) -> dict[str, dict[str, Any]]:
        """``server.config``'s ``config``: typed sections as JSON values, the rest raw."""
        result: dict[str, dict[str, Any]] = {}
        for name in _TYPED:
            values = attrs.asdict(getattr(self, name))
            result[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        for name, options in self.sections.items():
            result.setdefault(name, dict(options))
        return result

    def with_overrides(self, *, host: str | None = None, port: int | None = None) -> Config:
        """This configuration with the command line's ``--host``/``--port`` winning."""
        changes: dict[str, Any] = {}
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
        if not changes:
            return self
        try:
            server = attrs.evolve(self.server, **changes)
        except _BadValue as exc:
            option = exc.option or next(iter(changes))
            raise ConfigError(
                f"command line: --{option}: expected {exc.expected}, got {changes[option]!r}"
            ) from None
        return attrs.evolve(self, server=server)


# --- reading the files ----------------------------------------------------------------------

_SECTION_RE = re.compile(r"\[([^\]]+)\](.*)")
_INLINE_COMMENT_RE = re.compile(r" +[#;]")
_ESCAPED_COMMENT_RE = re.compile(r" \\([#;])")
_OPTION_RE = re.compile(r"(.*?)\s*[=:]")  # an option line's name, as configparser reads it
#: a warning about a section or one of its options: ``[section] option: ...``, ``[section]: ...``
_WARNING_RE = re.compile(r"\[([^\]]+)\](?: (\S+))?:")


@attrs.define
class _Chunk:
    """The lines of one section header in one file, with their line numbers."""

    name: str
    path: Path
    lines: list[str] = attrs.Factory(list)
    numbers: list[int] = attrs.Factory(list)
    starts: list[int] = attrs.Factory(list)  # the indexes of lines that begin an option


class _Reader:
    def __init__(self) -> None:
        self.sections: dict[str, dict[str, str]] = {}
        self.origins: dict[tuple[str, str], Path] = {}
        #: where each section ("" as option: its first header) and each option was written
        self.locations: dict[tuple[str, str], str] = {}
        self.files: list[tuple[Path, list[str]]] = []
        self.warnings: list[str] = []
        self._seen: dict[tuple[int, int], Path] = {}
        self._stack: list[Path] = []

    def read(self, path: Path, via: str | None = None) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        key = (stat.st_dev, stat.st_ino)
        first = self._seen.get(key)
        if first is not None:
            if first in self._stack:
                chain = [*self._stack[self._stack.index(first) :], path]
                raise ConfigError(f"{via}: include loop: {' -> '.join(map(str, chain))}")
            raise ConfigError(f"{via}: {path} is already read; a file can be included once")
        self._seen[key] = path
        text = _read_text(path)
        self._stack.append(path)
        try:
            self._parse(path, text)
        finally:
            self._stack.pop()

    def _parse(self, path: Path, text: str) -> None:
        names: list[str] = []
        self.files.append((path, names))
        first_seen: dict[str, int] = {}
        chunk: _Chunk | None = None
        after_include: str | None = None
        option_indent = -1
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            if not stripped or stripped[0] in "#;":
                continue
            line = raw.expandtabs(4)
            comment = _INLINE_COMMENT_RE.search(line)
            if comment is not None:
                line = line[: comment.start()]
            line = _ESCAPED_COMMENT_RE.sub(r" \1", line)
            indent = len(line) - len(line.lstrip())
            if chunk is not None and option_indent != -1 and indent > option_indent:
                chunk.lines.append(line)
                chunk.numbers.append(number)
                continue
            if not line.lstrip().startswith("["):
                if chunk is None:
                    where = f"after [{after_include}]" if after_include else "before any [section]"
                    raise ConfigError(
                        f"{path}:{number}: {stripped!r} is outside a section ({where})"
                    )
                option_indent = indent
                chunk.starts.append(len(chunk.lines))
                chunk.lines.append(line)
                chunk.numbers.append(number)
                continue
            self._flush(chunk)
            chunk, option_indent = None, -1
            match = _SECTION_RE.fullmatch(line.strip())
            name = match.group(1).strip() if match is not None else ""
            if match is None or not name:
                raise ConfigError(f"{path}:{number}: bad section header {stripped!r}")
            if match.group(2).strip():
                self.warnings.append(
                    f"{path}:{number}: text after [{name}] ignored: {match.group(2).strip()!r}"
                )
            if name.split()[0] == "include":
                self._include(path, number, name)
                after_include = name
                continue
            if name in first_seen:
                raise ConfigError(
                    f"{path}:{number}: section [{name}] appears twice in this file"
                    f" (first at line {first_seen[name]})"
                )
            first_seen[name] = number
            self.locations.setdefault((name, ""), f"{path}:{number}")
            names.append(name)
            chunk = _Chunk(name, path)
            self.sections.setdefault(name, {})
            after_include = None
        self._flush(chunk)

    def _flush(self, chunk: _Chunk | None) -> None:
        """Parse one section's lines with configparser and merge them (later options win)."""
        if chunk is None or not chunk.lines:
            return
        parser = configparser.ConfigParser(
            interpolation=None, strict=True, comment_prefixes=(), inline_comment_prefixes=None
        )

        def at(index: int) -> str:
            return f"{chunk.path}:{chunk.numbers[index]}: [{chunk.name}]"

        try:
            parser.read_string("[s]\n" + "\n".join(chunk.lines), source=str(chunk.path))
        except configparser.DuplicateOptionError as exc:
            raise ConfigError(
                f"{at((exc.lineno or 2) - 2)} {exc.option}: set twice in this section"
            ) from None
        except configparser.ParsingError as exc:
            index = exc.errors[0][0] - 2
            raise ConfigError(
                f"{at(index)} expected 'option: value', got {chunk.lines[index].strip()!r}"
            ) from None
        except configparser.Error as exc:  # not expected: header lines never reach the parser
            message = " ".join(str(exc).split())
            raise ConfigError(f"{at(0)} {message}") from None
        merged = self.sections[chunk.name]
        numbers: dict[str, int] = {}
        for index in chunk.starts:
            key = _OPTION_RE.match(chunk.lines[index].strip())
            if key is not None:
                numbers.setdefault(key.group(1).strip().lower(), chunk.numbers[index])
        for option, value in parser.items("s", raw=True):
            merged[option] = value
            self.origins[(chunk.name, option)] = chunk.path
            if option in numbers:
                self.locations[(chunk.name, option)] = f"{chunk.path}:{numbers[option]}"

    def _include(self, path: Path, number: int, name: str) -> None:
        where = f"{path}:{number}: [{name}]"
        pattern = name[len("include") :].strip()
        if not pattern:
            raise ConfigError(f"{where}: needs a file name or glob pattern")
        target = Path(os.path.expanduser(pattern))
        base = Path(target.anchor) if target.is_absolute() else path.parent
        relative = str(target.relative_to(target.anchor)) if target.is_absolute() else str(target)
        try:
            matches = sorted(p for p in base.glob(relative) if p.is_file())
        except (OSError, ValueError, LookupError, NotImplementedError) as exc:
            raise ConfigError(f"{where}: unusable pattern: {exc}") from None
        if not matches:
            raise ConfigError(f"{where}: no file matches")
        for match in matches:
            self.read(match, via=where)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise ConfigError(f"cannot read config file {path}: {reason}")


# --- typed conversion -----------------------------------------------------------------------

_BOOLEANS = {
    **dict.fromkeys(("1", "yes", "true", "on"), True),
    **dict.fromkeys(("0", "no", "false", "off"), False),
}


def _to_bool(value: str, _: Any) -> bool:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise _BadValue("a boolean (true/false, yes/no, on/off, 1/0)") from None


def _to_int(value: str, _: Any) -> int:
    try:
        return int(value)
    except ValueError:
        raise _BadValue("an integer") from None


def _to_float(value: str, _: Any) -> float:
    try:
        return float(value)
    except ValueError:
        raise _BadValue("a number") from None


def _to_str(value: str, _: Any) -> str:
    return value.strip()


def _to_tuple(value: str, _: Any) -> tuple[str, ...]:
    """One item per line and per comma; empty items dropped."""
    items = (item.strip() for line in value.splitlines() for item in line.split(","))
    return tuple(item for item in items if item)


def _is_optional(type_: Any) -> bool:
    return typing.get_origin(type_) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(type_)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True)

    def to_optional(value: str, type_: Any) -> Any:
        if not value.strip():
            return None
        (inner,) = (a for a in typing.get_args(type_) if a is not type(None))
        return converter.structure(value, inner)

    converter.register_structure_hook(bool, _to_bool)
    converter.register_structure_hook(int, _to_int)
    converter.register_structure_hook(float, _to_float)
    converter.register_structure_hook(str, _to_str)
    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _to_tuple)
    converter.register_structure_hook_func(_is_optional, to_optional)
    return converter


_CONVERTER = _make_converter()


def _structure(
    cls: type[_T], options: Mapping[str, str], where: Mapping[str, tuple[Path, str]]
) -> _T:
    """``cls`` from raw options; ``where[option]`` is (file, section) for the message."""
    try:
        return _CONVERTER.structure(dict(options), cls)
    except cattrs.ClassValidationError as exc:
        problems: list[tuple[str, str]] = []
        for sub in exc.exceptions:
            if not isinstance(sub, _BadValue):
                raise
            notes = getattr(sub, "__notes__", [])
            names = [n.name for n in notes if isinstance(n, AttributeValidationNote)]
            option = sub.option or (names[0] if names else None)
            if option is None or option not in options:
                raise
            problems.append((option, sub.expected))
    order = list(options)
    option, expected = min(problems, key=lambda p: order.index(p[0]))
    file, section = where[option]
    raise ConfigError(f"{file}: [{section}] {option}: expected {expected}, got {options[option]!r}")


# --- checks Moonraker makes with warnings -----------------------------------------------------

_LABEL_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TLD_WILDCARD_RE = re.compile(r".\.[^:]*\*")


def _is_hostname(value: str) -> bool:
    labels = value.lower().removesuffix(".").split(".")
    return all(_LABEL_RE.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _trusted_client_problem(entry: str) -> str | None:
    try:
        ipaddress.ip_address(entry)
        return None
    except ValueError:
        pass
    try:
        ipaddress.ip_network(entry)
        return None
    except ValueError as exc:
        if "/" in entry:
            return f"not a valid CIDR range ({exc})"
    return None if _is_hostname(entry) else "not an IP address, a CIDR range or a host name"


def _cors_domain_problem(domain: str) -> str | None:
    if domain.endswith("/"):
        return "an origin cannot end with '/'"
    if _TLD_WILDCARD_RE.search(domain):
        return "wildcards are not allowed in the top-level domain"
    return None


def _checked(
    section: str, option: str, items: tuple[str, ...], problem: Callable[[str], str | None]
) -> tuple[tuple[str, ...], list[str]]:
    kept: list[str] = []
    warnings: list[str] = []
    for item in items:
        why = problem(item)
        if why is None:
            kept.append(item)
        else:
            warnings.append(f"[{section}] {option}: {item!r} ignored: {why}")
    return tuple(kept), warnings


def _section_warning(name: str) -> str | None:
    kind = name.split()[0]
    if kind in _PREFIXES:
        return (
            None
            if kind != name or kind in _BARE_PREFIXES
            else f"[{name}]: needs a name, like [{name} NAME]; ignored"
        )
    if name in _TOLERATED:
        return None
    message = f"[{name}]: section not supported by trioprint, ignored"
    lowered = name.lower()
    if lowered != name and (lowered in _TYPED or lowered in _TOLERATED):
        message += f" (section names are case-sensitive: [{lowered}]?)"
    return message


# --- loading --------------------------------------------------------------------------------


def default_config_path(data_dir: Path) -> Path | None:
    """``<data_dir>/config/trioprint.conf``, else ``.../moonraker.conf``, else None."""
    for name in ("trioprint.conf", "moonraker.conf"):
        candidate = data_dir / "config" / name
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None, data_dir: Path) -> Config:
    """The configuration in ``path`` and its includes (defaults when None). Raises ConfigError."""
    if path is None:
        return Config(data_dir=data_dir)
    main = path.expanduser().absolute()
    reader = _Reader()
    reader.read(main)
    raw = reader.sections
    warnings = list(reader.warnings)

    # Like Moonraker, a core section that is absent is read from [server] instead.
    moved: dict[str, str] = {}
    typed: dict[str, Any] = {}
    for name, cls in _TYPED.items():
        home = name if name in raw or name == "server" else "server"
        options = {k: v for k, v in raw.get(home, {}).items() if k in _FIELDS[name]}
        if home != name:
            moved.update(dict.fromkeys(options, name))
        where = {k: (reader.origins[(home, k)], home) for k in options}
        typed[name] = _structure(cls, options, where)

    for name, options in raw.items():
        if name not in _TYPED:
            section_warning = _section_warning(name)
            if section_warning is not None:
                warnings.append(section_warning)
            continue
        for option in options:
            if option in _FIELDS[name]:
                continue
            if name == "server" and option in moved:
                warnings.append(
                    f"[server] {option}: belongs in [{moved[option]}]; read from [server] for"
                    " now, please move it"
                )
                continue
            owner = next((s for s, fields in _FIELDS.items() if option in fields), None)
            if owner is not None:
                warnings.append(f"[{name}] {option}: belongs in [{owner}], ignored")
            else:
                warnings.append(f"[{name}] {option}: unknown option, ignored")

    auth: AuthorizationConfig = typed["authorization"]
    clients, problems = _checked(
        "authorization", "trusted_clients", auth.trusted_clients, _trusted_client_problem
    )
    warnings.extend(problems)
    domains, problems = _checked(
        "authorization", "cors_domains", auth.cors_domains, _cors_domain_problem
    )
    warnings.extend(problems)
    typed["authorization"] = attrs.evolve(auth, trusted_clients=clients, cors_domains=domains)
    if auth.default_source == "ldap":
        warnings.append(
            "[authorization] default_source: LDAP logins are not supported by trioprint"
        )
    if typed["machine"].provider == "supervisord_cli":
        warnings.append("[machine] provider: supervisord_cli is not supported; using 'none'")
    uds = typed["server"].klippy_uds_address
    if uds is not None and ("{{" in uds or "{%" in uds):
        warnings.append(
            "[server] klippy_uds_address: templates are not supported, the value is used as written"
        )

    return Config(
        data_dir=data_dir,
        source=main,
        sections=types.MappingProxyType(
            {name: types.MappingProxyType(options) for name, options in raw.items()}
        ),
        files=tuple((_shown(file, main), tuple(names)) for file, names in reader.files),
        warnings=tuple(_locate(warnings, reader.locations)),
        locations=types.MappingProxyType(reader.locations),
        **typed,
    )


def _locate(warnings: list[str], locations: Mapping[tuple[str, str], str]) -> list[str]:
    return [_located(warning, locations) for warning in warnings]


def _located(warning: str, locations: Mapping[tuple[str, str], str]) -> str:
    match = _WARNING_RE.match(warning)
    if match is None:
        return warning
    where = locations.get((match.group(1), match.group(2) or ""))
    if where is None:  # an option of a section: at least the section's line
        where = locations.get((match.group(1), ""))
    return f"{where}: {warning}" if where is not None else warning


def _shown(file: Path, main: Path) -> str:
    """``file`` relative to the main file's folder when it is inside it, else absolute."""
    for inner, outer in ((file.resolve(), main.resolve().parent), (file, main.parent)):
        try:
            return str(inner.relative_to(outer))
        except ValueError:
            continue
    return str(file)
