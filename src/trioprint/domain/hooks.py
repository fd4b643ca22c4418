"""Event hooks (OctoPrint's command triggers): parse ``[event_hook NAME]`` sections and expand
their placeholders into what to run.

A hook names OctoPrint events, a type (``system``: run a command on the host; ``gcode``: send
G-code to the printer) and one command per line. Placeholders are OctoPrint's (its
``CommandTrigger``): ``{__eventname}``, ``{__currentZ}``, ``{__filename}``, ``{__filepath}``,
``{__fileorigin}``, ``{__progress}``, ``{__data}``, ``{__json}``, ``{__now}`` and every key of
the payload, with the same fallbacks and the same value formatting (``str()`` of each value).
They use Python's ``str.format`` syntax, so ``{{`` and ``}}`` are literal braces.

Safety, which is where trioprint differs from OctoPrint (which formats the whole command
string and hands it to the shell): a payload value can never add an argument or a command.

* ``shell: false`` (the default): the command line is split into arguments with ``shlex``
  *before* any placeholder is expanded, and each placeholder is expanded inside its own
  argument; the result is an argv run without a shell. A placeholder may not be the program,
  nor code that a shell or another interpreter reads (``sh -c "... {name}"``, ``python3 -c``,
  ``perl -e``: :mod:`trioprint.domain.hook_argv`); values go after the code, as arguments.
* ``shell: true``: the line runs as ``/bin/sh -c LINE`` and every expanded value is quoted
  (``shlex.quote``'s quoting, applied to every value: a bare ``if`` or ``NAME`` before ``=``
  would change the line). The template is scanned as the shell will read it, so a placeholder inside
  '...' or "..." is closed, quoted and reopened (the value stays literal text there too); where
  quoting cannot be made safe (after a backslash or ``$``, in a comment, after a command
  substitution, backquote, ``$'...'`` or here-document on the same line) the hook is refused;
  each command of the line is checked for interpreters as an argv is.
* G-code: every line break in a value is replaced by a space, so a value cannot add a line.

Pure: no Trio, no I/O.
"""

from __future__ import annotations

import datetime
import math
import posixpath
import re
import shlex
import string
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from . import strictjson
from .hook_argv import check_argv, check_shell_words

__all__ = [
    "DEFAULT_TIMEOUT",
    "ExpansionError",
    "Hook",
    "HookConfigError",
    "JobState",
    "expand_gcode",
    "expand_system",
    "job_state",
    "parse_hook",
    "parse_hooks",
    "placeholders",
]

#: Seconds a hook's command may run before it is killed.
DEFAULT_TIMEOUT = 30.0
#: The shell of ``shell: true`` hooks.
SHELL = "/bin/sh"

HookType = Literal["system", "gcode"]
_OPTIONS = frozenset({"event", "type", "command", "enabled", "debug", "shell", "timeout"})
_EVENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BOOLEANS = {
    **dict.fromkeys(("1", "yes", "true", "on"), True),
    **dict.fromkeys(("0", "no", "false", "off"), False),
}
#: Every character ``str.splitlines`` breaks at (klippy splits scripts at ``\n``; the rest
#: are replaced too so no reader of the line sees two).
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029\x00"
_NO_BREAKS = str.maketrans(dict.fromkeys(_LINE_BREAKS, " "))


class HookConfigError(ValueError):
    """A ``[event_hook NAME]`` section that cannot be used; the message names it."""


class ExpansionError(ValueError):
    """A placeholder that cannot be expanded for this event (unknown key, unusable value)."""


# --- the current job (what OctoPrint's printer.get_current_data() gives the trigger) -------


@attrs.frozen
class JobState:
    """The printer state the generic placeholders read."""

    current_z: float | None = None
    file_name: str | None = None
    file_path: str | None = None
    file_origin: str | None = None
    progress: float | None = None  # percent


#: print_stats states in which klippy's G-code Z is the job's Z.
_JOB_STATES = frozenset({"printing", "paused", "complete", "cancelled", "error"})

#: What :func:`job_state` reads from klippy's status.
STATUS_SPEC: dict[str, list[str] | None] = {
    "print_stats": ["filename", "state"],
    "virtual_sdcard": ["progress"],
    "gcode_move": ["gcode_position"],
    "toolhead": ["position"],
}


def _axis_z(value: Any) -> float | None:
    if isinstance(value, list | tuple) and len(value) >= 3:
        z = value[2]
        if isinstance(z, int | float) and not isinstance(z, bool) and math.isfinite(z):
            return float(z)
    return None


def job_state(status: Mapping[str, Mapping[str, Any]]) -> JobState:
    """The job from klippy's status (objects of :data:`STATUS_SPEC`).

    The file is print_stats' file (klippy keeps it after the print ends, as OctoPrint keeps the
    selected file); progress is virtual_sdcard's, in percent, only with a file (as OctoPrint);
    Z is the G-code Z (gcode_move, else the toolhead's) while a job is printing, paused or just
    ended, unknown otherwise (OctoPrint knows it only from the moves of a job).
    """
    stats = status.get("print_stats") or {}
    filename = stats.get("filename")
    state = stats.get("state")
    current_z: float | None = None
    if state in _JOB_STATES:
        current_z = _axis_z((status.get("gcode_move") or {}).get("gcode_position"))
        if current_z is None:
            current_z = _axis_z((status.get("toolhead") or {}).get("position"))
    if not isinstance(filename, str) or not filename:
        return JobState(current_z=current_z)
    progress = (status.get("virtual_sdcard") or {}).get("progress")
    percent = None
    if (
        isinstance(progress, int | float)
        and not isinstance(progress, bool)
        and math.isfinite(progress)
    ):
        percent = float(progress) * 100
    return JobState(
        current_z=current_z,
        file_name=posixpath.basename(filename),
        file_path=filename,
        file_origin="local",
        progress=percent,
    )


def placeholders(
    event: str,
    payload: Mapping[str, Any] | None,
    state: JobState,
    now: datetime.datetime,
) -> dict[str, str]:
    """Every placeholder's value for one event, as OctoPrint computes them (all strings)."""
    json_string = "{}"
    if payload:
        try:
            json_string = strictjson.dumps(payload, compact=False)
        except (TypeError, ValueError):
            json_string = ""
    params: dict[str, Any] = {
        "__currentZ": "-1",
        "__eventname": event,
        "__filename": "NO FILE",
        "__filepath": "NO PATH",
        # OctoPrint documents "NO FILE" but sets nothing (the hook then fails with a warning)
        "__fileorigin": "NO FILE",
        "__progress": "0",
        "__data": str(dict(payload) if isinstance(payload, Mapping) else payload),
        "__json": json_string,
        "__now": now.isoformat(),
    }
    if state.current_z is not None:
        params["__currentZ"] = str(state.current_z)
    if state.file_name is not None:
        params["__filename"] = state.file_name
        params["__filepath"] = state.file_path
        params["__fileorigin"] = state.file_origin
        if state.progress is not None:
            params["__progress"] = str(round(state.progress))
    if isinstance(payload, Mapping):
        params.update({str(k): v for k, v in payload.items()})
    return {k: str(v) for k, v in params.items()}


# --- templates --------------------------------------------------------------------------------

#: How a placeholder's value is written into a shell line: bare, or closing and reopening the
#: single or double quotes it sits in. ``arg``: an argv argument or a G-code line (no quoting).
Context = Literal["arg", "bare", "single", "double"]


@attrs.frozen
class Field:
    source: str  # "{name!r:spec}", formatted on its own
    context: Context


Part = str | Field

_FORMATTER = string.Formatter()


class _Probe(Mapping[str, str]):
    """Any key is an empty string: checks a template's syntax without knowing the payload."""

    def __getitem__(self, key: str) -> str:
        return ""

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _field_source(name: str, spec: str | None, conversion: str | None) -> str:
    conversion_part = f"!{conversion}" if conversion else ""
    spec_part = f":{spec}" if spec else ""
    return "{" + name + conversion_part + spec_part + "}"


def _check_field(name: str, source: str) -> None:
    if not name or name[0].isdigit():
        raise ValueError(f"{source}: a placeholder needs a name, like {{__eventname}}")
    try:
        _FORMATTER.vformat(source, (), _Probe())
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"{source}: {exc}") from None


def _segments(template: str) -> list[tuple[str, str | None]]:
    """``template`` as (literal text, field source or None) pairs; literal braces undoubled."""
    result: list[tuple[str, str | None]] = []
    literal = ""
    for text, name, spec, conversion in _FORMATTER.parse(template):
        literal += text
        if name is not None:
            source = _field_source(name, spec, conversion)
            _check_field(name, source)
            result.append((literal, source))
            literal = ""
    result.append((literal, None))
    return result


def _arg_parts(template: str) -> tuple[Part, ...]:
    parts: list[Part] = []
    for literal, source in _segments(template):
        if literal:
            parts.append(literal)
        if source is not None:
            parts.append(Field(source, "arg"))
    return tuple(parts)


_WORD_START = frozenset(" \t;&|()<>")
_SIMPLE_PARAMETER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


class _ShellScanner:
    """Follows the shell's quoting through a line's literal text (POSIX sh rules)."""

    def __init__(self) -> None:
        self.mode: Literal["bare", "single", "double", "comment"] = "bare"
        self.escape = False
        self.previous = " "
        self.unsafe: str | None = None  # a construct after which quoting is not followed

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            following = text[i + 1] if i + 1 < len(text) else ""
            if self.mode == "comment":
                pass
            elif self.escape:
                self.escape = False
            elif self.mode == "single":
                if c == "'":
                    self.mode = "bare"
            elif c == "\\":
                self.escape = True
            elif self.mode == "double" and c == '"':
                self.mode = "bare"
            elif self.mode == "bare" and c == '"':
                self.mode = "double"
            elif self.mode == "bare" and c == "'":
                self.mode = "single"
            elif self.mode == "bare" and c == "#" and self.previous in _WORD_START:
                self.mode = "comment"
            elif c == "`":
                self.unsafe = self.unsafe or "a `command substitution`"
            elif c == "$" and following == "{":
                simple = _SIMPLE_PARAMETER.match(text, i)
                if simple is None:
                    self.unsafe = self.unsafe or "a ${...} expansion"
                else:
                    i = simple.end()
                    self.previous = "}"
                    continue
            elif c == "$" and following == "(":
                self.unsafe = self.unsafe or "a $(...) substitution"
            elif c == "$" and following == "'":
                self.unsafe = self.unsafe or "$'...' quoting"
            elif self.mode == "bare" and c == "<" and following == "<":
                self.unsafe = self.unsafe or "a here-document (<<)"
            self.previous = c
            i += 1

    def context(self, source: str) -> Context:
        """Where a placeholder sits now; ValueError where its value cannot be quoted safely."""
        if self.unsafe is not None:
            raise ValueError(
                f"{source} comes after {self.unsafe} on the same line: its quoting cannot be"
                " checked (use shell: false, or move the placeholder before it)"
            )
        if self.mode == "comment":
            raise ValueError(f"{source} is inside a # comment")
        if self.escape:
            raise ValueError(f"{source} follows a backslash")
        if self.mode != "single" and self.previous == "$":
            raise ValueError(f"{source} follows a $")
        self.previous = "x"
        return "bare" if self.mode == "bare" else self.mode


def _shell_parts(template: str) -> tuple[Part, ...]:
    scanner = _ShellScanner()
    parts: list[Part] = []
    for literal, source in _segments(template):
        scanner.feed(literal)
        if literal:
            parts.append(literal)
        if source is not None:
            parts.append(Field(source, scanner.context(source)))
    if scanner.mode in ("single", "double"):
        raise ValueError("unterminated quote")
    return tuple(parts)


#: How a placeholder is written into a shell line for :func:`check_shell_words`.
_MARKER = "\ue000%d\ue001"


def _check_shell_commands(parts: tuple[Part, ...]) -> None:
    """Each command of a shell line, checked as an argv (``sh -c "... {name}"`` is refused)."""
    fields = [p for p in parts if isinstance(p, Field)]
    if not fields:
        return
    numbers = iter(range(len(fields)))
    line = "".join(p if isinstance(p, str) else _MARKER % next(numbers) for p in parts)
    check_shell_words(line, fields, _MARKER)


def _quote(value: str) -> str:
    """``shlex.quote``, but always quoting: a "safe" bare word could still be a reserved word
    (``if``) or make an assignment of the text after it (``NAME`` before ``=x``)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _render(parts: tuple[Part, ...], params: Mapping[str, str], *, quote: bool) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        try:
            value = _FORMATTER.vformat(part.source, (), params)
        except KeyError as exc:
            raise ExpansionError(f"no placeholder {exc.args[0]!r} for this event") from None
        except (ValueError, IndexError, AttributeError, TypeError) as exc:
            raise ExpansionError(f"{part.source}: {exc}") from None
        if quote:
            value = _quote(value)
            if part.context == "single":
                value = f"'{value}'"
            elif part.context == "double":
                value = f'"{value}"'
        out.append(value)
    return "".join(out)


# --- hooks ----------------------------------------------------------------------------------


@attrs.frozen
class Hook:
    """One ``[event_hook NAME]`` section."""

    name: str
    events: tuple[str, ...]
    type: HookType
    commands: tuple[str, ...]
    enabled: bool = True
    debug: bool = False
    shell: bool = False
    timeout: float = DEFAULT_TIMEOUT
    #: per command: its argv templates (system, no shell), one shell line, or one G-code line
    templates: tuple[tuple[tuple[Part, ...], ...], ...] = ()


def _bool(where: str, option: str, value: str) -> bool:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise HookConfigError(
            f"{where} {option}: expected a boolean (true/false, yes/no, on/off, 1/0), got {value!r}"
        ) from None


def _lines(value: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in value.splitlines() if line.strip())


def parse_hook(name: str, options: Mapping[str, str]) -> tuple[Hook, list[str]]:
    """The hook of ``[event_hook name]`` and warnings about it; HookConfigError if unusable."""
    where = f"[event_hook {name}]"
    warnings = [
        f"{where} {option}: unknown option, ignored" for option in options if option not in _OPTIONS
    ]
    for option in ("event", "type", "command"):
        if not options.get(option, "").strip():
            raise HookConfigError(f"{where} {option}: required")
    events = tuple(
        item.strip()
        for line in options["event"].splitlines()
        for item in line.split(",")
        if item.strip()
    )
    for event in events:
        if not _EVENT_RE.fullmatch(event):
            raise HookConfigError(
                f"{where} event: expected OctoPrint event names like PrintDone, got {event!r}"
            )
    kind = options["type"].strip().lower()
    if kind not in ("system", "gcode"):
        raise HookConfigError(
            f"{where} type: expected one of 'system', 'gcode', got {options['type']!r}"
        )
    hook_type: HookType = "system" if kind == "system" else "gcode"
    enabled = _bool(where, "enabled", options.get("enabled", "true"))
    debug = _bool(where, "debug", options.get("debug", "false"))
    shell = _bool(where, "shell", options.get("shell", "false"))
    if "shell" in options and hook_type == "gcode":
        warnings.append(f"{where} shell: only system hooks run a shell, ignored")
        shell = False
    raw_timeout = options.get("timeout", str(DEFAULT_TIMEOUT))
    try:
        timeout = float(raw_timeout)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout < math.inf:
        raise HookConfigError(
            f"{where} timeout: expected a number of seconds greater than 0, got {raw_timeout!r}"
        )
    commands = _lines(options["command"])
    templates: list[tuple[tuple[Part, ...], ...]] = []
    for number, command in enumerate(commands, start=1):
        at = f"{where} command line {number} ({command!r})"
        try:
            if hook_type == "gcode":
                templates.append((_arg_parts(command),))
            elif shell:
                parts = _shell_parts(command)
                _check_shell_commands(parts)
                templates.append((parts,))
            else:
                args = shlex.split(command)
                argv = tuple(_arg_parts(arg) for arg in args)
                if any(isinstance(p, Field) for p in argv[0]):
                    raise ValueError("the program to run cannot be a placeholder")
                check_argv(argv)
                templates.append(argv)
        except ValueError as exc:
            raise HookConfigError(f"{at}: {exc}") from None
    hook = Hook(
        name=name,
        events=events,
        type=hook_type,
        commands=commands,
        enabled=enabled,
        debug=debug,
        shell=shell,
        timeout=timeout,
        templates=tuple(templates),
    )
    return hook, warnings


def parse_hooks(sections: Mapping[str, Mapping[str, str]]) -> tuple[list[Hook], list[str]]:
    """Every usable hook of ``{NAME: options}``, and warnings (unusable hooks are left out)."""
    hooks: list[Hook] = []
    warnings: list[str] = []
    for name, options in sections.items():
        try:
            hook, problems = parse_hook(name, options)
        except HookConfigError as exc:
            warnings.append(f"{exc}; the hook is disabled")
            continue
        warnings.extend(problems)
        hooks.append(hook)
    return hooks, warnings


def _check_argument(value: str) -> str:
    if "\x00" in value:
        raise ExpansionError("a value contains a NUL character, which no argument can hold")
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ExpansionError("a value is not encodable as an argument") from None
    return value


def expand_system(hook: Hook, params: Mapping[str, str]) -> list[list[str]]:
    """The argv of each of a system hook's commands (``/bin/sh -c LINE`` with ``shell``)."""
    result: list[list[str]] = []
    for templates in hook.templates:
        if hook.shell:
            line = _render(templates[0], params, quote=True)
            result.append([SHELL, "-c", _check_argument(line)])
        else:
            result.append(
                [_check_argument(_render(parts, params, quote=False)) for parts in templates]
            )
    return result


def expand_gcode(hook: Hook, params: Mapping[str, str]) -> list[str]:
    """A G-code hook's lines; line breaks in values become spaces (one line stays one)."""
    clean = {k: v.translate(_NO_BREAKS) for k, v in params.items()}
    return [_render(templates[0], clean, quote=False) for templates in hook.templates]
