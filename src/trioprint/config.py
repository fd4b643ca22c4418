"""Configuration: a moonraker.conf-compatible INI file -> a tree of ``@attrs.frozen`` classes.

Reading is in two steps. :func:`read_sections` parses the file and its ``[include ...]`` files
into raw strings per section and option (the INI dialect Moonraker reads: ``#`` and ``;``
comments, inline comments after whitespace, indented continuation lines, sections merged across
files with the later option winning, a section or option repeated within one file is an error).
:func:`load_config` then structures the sections trioprint knows with cattrs; a bad value is a
:class:`ConfigError` naming the file, the section, the option, the expected type and the value.
Sections and options trioprint does not know are kept (``server.config`` shows them) and listed
as warnings (``server.info`` shows those).

No I/O beyond reading the files; no Trio.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from .errors import ConfigError

# --- the typed sections ---------------------------------------------------------------------


def _host(value: str) -> str:
    return "0.0.0.0" if value == "all" else value


@attrs.frozen
class ServerConfig:
    host: str = attrs.field(default="127.0.0.1", converter=_host)
    port: int = 7125
    klippy_uds_address: str | None = None
    max_upload_size: int = 1024  # MiB
    max_websocket_connections: int = 50
    enable_debug_logging: bool = False

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise _Invalid("a port number from 0 to 65535", str(self.port), "port")
        if self.max_upload_size < 1:
            raise _Invalid(
                "a size in MiB of at least 1", str(self.max_upload_size), "max_upload_size"
            )
        if self.max_websocket_connections < 1:
            raise _Invalid(
                "a number of at least 1",
                str(self.max_websocket_connections),
                "max_websocket_connections",
            )


@attrs.frozen
class AuthorizationConfig:
    enable_api_key: bool = True
    login_timeout: int = 90  # days
    force_logins: bool = False
    trusted_clients: tuple[str, ...] = ()
    cors_domains: tuple[str, ...] = ()
    default_source: str = "moonraker"
    max_login_attempts: int | None = None


@attrs.frozen
class FileManagerConfig:
    queue_gcode_uploads: bool = False
    enable_object_processing: bool = False
    check_klipper_config_path: bool = True
    enable_config_write_access: bool = True
    config_path: str | None = None
    log_path: str | None = None
    gcodes_path: str | None = None  # trioprint: Moonraker learns it from klippy


@attrs.frozen
class DatabaseConfig:
    database_path: str | None = None
    enable_database_debug: bool = False


@attrs.frozen
class HistoryConfig:
    pass


#: Sections trioprint structures, by name.
SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "authorization": AuthorizationConfig,
    "file_manager": FileManagerConfig,
    "database": DatabaseConfig,
    "history": HistoryConfig,
}

#: Section prefixes handled as groups (``[event_hook NAME]``), not warned about.
PREFIXES = ("event_hook", "power")

#: Moonraker sections that need no options of trioprint's and are accepted silently.
ACCEPTED = ("machine", "octoprint_compat", "announcements", "data_store", "secrets")

_PATH_OPTIONS = ("config_path", "log_path", "gcodes_path", "database_path")


@attrs.frozen
class Config:
    data_dir: Path
    source: Path | None = None
    server: ServerConfig = ServerConfig()
    authorization: AuthorizationConfig = AuthorizationConfig()
    file_manager: FileManagerConfig = FileManagerConfig()
    database: DatabaseConfig = DatabaseConfig()
    history: HistoryConfig = HistoryConfig()
    sections: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    warnings: tuple[str, ...] = ()

    def section(self, name: str) -> Mapping[str, str]:
        return self.sections.get(name, {})

    def sections_with_prefix(self, prefix: str) -> dict[str, Mapping[str, str]]:
        """``"event_hook"`` -> ``{"NAME": options}`` for every ``[event_hook NAME]``."""
        found = {}
        for name, options in self.sections.items():
            first, _, rest = name.partition(" ")
            if first == prefix and rest.strip():
                found[rest.strip()] = options
        return found

    def parsed(self) -> dict[str, dict[str, Any]]:
        """Every section for ``server.config``: known ones typed, the rest as read."""
        result: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            value = attrs.asdict(getattr(self, name))
            result[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        for name, options in self.sections.items():
            if name not in result:
                result[name] = dict(options)
        return result

    def with_overrides(self, *, host: str | None = None, port: int | None = None) -> Config:
        """The command line's ``--host``/``--port`` win over the file."""
        changes: dict[str, Any] = {}
        if host is not None:
            changes["host"] = host
        if port is not None:
            changes["port"] = port
        if not changes:
            return self
        return attrs.evolve(self, server=attrs.evolve(self.server, **changes))


# --- reading the INI dialect ----------------------------------------------------------------

_SECTION_RE = re.compile(r"^\[([^\]]+)\]\s*$")
_OPTION_RE = re.compile(r"^([^:=\s][^:=]*?)\s*[:=]\s*(.*)$")
_INLINE_COMMENT_RE = re.compile(r"\s+[#;]")


@attrs.define
class _Reader:
    sections: dict[str, dict[str, str]] = attrs.field(factory=dict)
    origins: dict[tuple[str, str], Path] = attrs.field(factory=dict)
    files: list[tuple[Path, list[str]]] = attrs.field(factory=list)
    visiting: list[Path] = attrs.field(factory=list)

    def read(self, path: Path) -> None:
        resolved = path.resolve()
        if resolved in self.visiting:
            raise ConfigError(f"{path}: include loop: {resolved} includes itself")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"cannot read config file {path}: {reason}") from None
        self.visiting.append(resolved)
        try:
            self._parse(path, text)
        finally:
            self.visiting.pop()

    def _parse(self, path: Path, text: str) -> None:
        file_sections: list[str] = []
        self.files.append((path, file_sections))
        seen_options: set[tuple[str, str]] = set()
        section: str | None = None
        option: str | None = None
        option_indent = -1
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            if not stripped or stripped[0] in "#;":
                continue
            line = raw.expandtabs(4)
            comment = _INLINE_COMMENT_RE.search(line)
            if comment is not None:
                line = line[: comment.start()]
            line = re.sub(r" \\([#;])", r" \1", line)
            indent = len(line) - len(line.lstrip())
            if option is not None and section is not None and indent > option_indent:
                previous = self.sections[section][option]
                addition = line.strip()
                self.sections[section][option] = f"{previous}\n{addition}" if previous else addition
                continue
            match = _SECTION_RE.match(line.strip())
            if match is not None:
                name = match.group(1).strip()
                option = None
                if name.startswith("include "):
                    self._include(path, name, number)
                    section = None
                    continue
                if name in file_sections:
                    raise ConfigError(f"{path}:{number}: section [{name}] appears twice")
                file_sections.append(name)
                self.sections.setdefault(name, {})
                section = name
                continue
            match = _OPTION_RE.match(line.strip())
            if match is None:
                raise ConfigError(f"{path}:{number}: cannot parse line {stripped!r}")
            if section is None:
                raise ConfigError(f"{path}:{number}: option before any [section]: {stripped!r}")
            option = match.group(1).strip()
            if (section, option) in seen_options:
                raise ConfigError(f"{path}:{number}: [{section}] {option} is set twice")
            seen_options.add((section, option))
            option_indent = indent
            self.sections[section][option] = match.group(2).strip()
            self.origins[(section, option)] = path

    def _include(self, path: Path, name: str, number: int) -> None:
        pattern = name[len("include ") :].strip()
        if not pattern:
            raise ConfigError(f"{path}:{number}: [include] needs a file name or pattern")
        target = Path(pattern).expanduser()
        base = target.parent if target.is_absolute() else path.parent / target.parent
        matches = sorted(p for p in base.glob(target.name) if p.is_file())
        if not matches:
            raise ConfigError(f"{path}:{number}: no file matches [include {pattern}]")
        for match in matches:
            self.read(match)


def read_sections(path: Path) -> _Reader:
    """Raw sections of ``path`` and its includes, where each option was set, and which file
    holds which sections."""
    reader = _Reader()
    reader.read(path)
    return reader


# --- typed conversion -----------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, expected: str, value: str, option: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.option = option


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _to_bool(value: str, _: Any) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Invalid("a boolean (true/false)", value)


def _to_int(value: str, _: Any) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise _Invalid("an integer", value) from None


def _to_float(value: str, _: Any) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise _Invalid("a number", value) from None


def _to_list(value: str, _: Any) -> tuple[str, ...]:
    parts = value.splitlines() if "\n" in value else value.split(",")
    return tuple(p.strip() for p in parts if p.strip())


def _optional(value: str, tp: Any) -> Any:
    if value.strip() == "":
        return None
    (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return _CONVERTER.structure(value, inner)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(tp)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook(int, _to_int)
    conv.register_structure_hook(float, _to_float)
    conv.register_structure_hook(str, lambda v, _: v)
    conv.register_structure_hook_func(lambda tp: tp == tuple[str, ...], _to_list)
    conv.register_structure_hook_func(_is_optional, _optional)
    return conv


_CONVERTER = _make_converter()

_TYPE_WORDS = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "text"}


def _first_problem(exc: BaseException) -> tuple[str | None, _Invalid | None]:
    """The option and the problem of the first error in a cattrs error tree."""
    if isinstance(exc, _Invalid):
        return exc.option, exc
    if isinstance(exc, cattrs.BaseValidationError):
        for sub in exc.exceptions:
            option, problem = _first_problem(sub)
            for note in getattr(sub, "__notes__", []):
                m = re.search(r"@ attribute (\w+)", str(note))
                if m and option is None:
                    option = m.group(1)
            if problem is not None:
                return option, problem
    return None, None


def _structure(
    cls: type[Any], name: str, options: Mapping[str, str], origins: Mapping[tuple[str, str], Path]
) -> Any:
    known = {a.name for a in attrs.fields(cls)}
    values: dict[str, Any] = {k: v for k, v in options.items() if k in known}
    for key in _PATH_OPTIONS:
        if isinstance(values.get(key), str) and values[key].strip():
            values[key] = str(Path(values[key].strip()).expanduser())
    first_file = next(iter(origins.values()))
    try:
        return _CONVERTER.structure(values, cls)
    except Exception as exc:  # a cattrs error tree, or _Invalid from a section's own checks
        option, problem = _first_problem(exc)
        if problem is None:
            raise ConfigError(f"{first_file}: [{name}]: {exc}") from None
    where = origins.get((name, option or ""), first_file)
    raise ConfigError(
        f"{where}: [{name}] {option}: expected {problem.expected}, got {problem.value!r}"
    )


# --- loading --------------------------------------------------------------------------------


def default_config_path(data_dir: Path) -> Path | None:
    """``<data>/config/trioprint.conf``, else ``<data>/config/moonraker.conf``, else None."""
    for name in ("trioprint.conf", "moonraker.conf"):
        candidate = data_dir / "config" / name
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None, data_dir: Path) -> Config:
    """The configuration from ``path`` (built-in defaults when None). Raises ConfigError."""
    if path is None:
        return Config(data_dir=data_dir)
    reader = read_sections(path)
    raw, files = reader.sections, reader.files
    typed: dict[str, Any] = {}
    warnings: list[str] = []
    for name, options in raw.items():
        cls = SECTIONS.get(name)
        if cls is not None:
            origins = {k: v for k, v in reader.origins.items() if k[0] == name} or {
                (name, ""): path
            }
            typed[name] = _structure(cls, name, options, origins)
            known = {a.name for a in attrs.fields(cls)}
            warnings.extend(
                f"[{name}] {option}: unknown option, ignored"
                for option in options
                if option not in known
            )
        elif name.partition(" ")[0] in PREFIXES or name in ACCEPTED:
            continue
        else:
            warnings.append(f"[{name}]: section not supported by trioprint, ignored")
    base = path.resolve().parent
    file_list = []
    for file, sections in files:
        try:
            shown = str(file.resolve().relative_to(base))
        except ValueError:
            shown = str(file)
        file_list.append((shown, tuple(sections)))
    return Config(
        data_dir=data_dir,
        source=path,
        sections=raw,
        files=tuple(file_list),
        warnings=tuple(warnings),
        **typed,
    )
