"""Event hooks, the pure part: parsing ``[event_hook NAME]``, OctoPrint's placeholders, and the
argv / shell line / G-code a payload expands into (a payload never adds an argument, a command
or a G-code line)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from trioprint.domain.hooks import (
    DEFAULT_TIMEOUT,
    ExpansionError,
    HookConfigError,
    JobState,
    expand_gcode,
    expand_system,
    job_state,
    parse_hook,
    parse_hooks,
    placeholders,
)

#: OctoPrint 1.11.8's hook output (a copy of ../shared/octoprint-transcripts/ for the tests)
TRANSCRIPT = Path(__file__).parent / "data" / "octoprint" / "event-hook-system-commands.txt"
NOW = datetime.datetime(2026, 11, 23, 15, 42, 29, 600521)

#: Values a payload may carry into an argument: anything but NUL and lone surrogates.
ARGUMENT_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
NASTY = "a b'c\"d $(touch pwned) `id` ;rm -rf x\n\\ \t${HOME} #x *"


def hook(command: str, **options: str) -> Any:
    found, warnings = parse_hook(
        "t", {"event": "PrintDone", "type": "system", "command": command, **options}
    )
    assert warnings == []
    return found


def params(**payload: Any) -> dict[str, str]:
    return placeholders("PrintDone", payload, JobState(), NOW)


# --- parsing --------------------------------------------------------------------------------


def test_a_hook_section_with_every_option() -> None:
    found, warnings = parse_hook(
        "notify",
        {
            "event": "PrintDone, PrintFailed\nPrintCancelled",
            "type": "System",
            "command": "\necho one\n\n  echo two {name}\n",
            "enabled": "no",
            "debug": "on",
            "shell": "true",
            "timeout": "2.5",
        },
    )
    assert warnings == []
    assert found.name == "notify"
    assert found.events == ("PrintDone", "PrintFailed", "PrintCancelled")
    assert found.type == "system"
    assert found.commands == ("echo one", "echo two {name}")
    assert (found.enabled, found.debug, found.shell, found.timeout) == (False, True, True, 2.5)


def test_defaults() -> None:
    found = hook("true")
    assert (found.enabled, found.debug, found.shell) == (True, False, False)
    assert found.timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"type": "system", "command": "x"}, "[event_hook bad] event: required"),
        ({"event": "PrintDone", "command": "x"}, "[event_hook bad] type: required"),
        ({"event": "PrintDone", "type": "system"}, "[event_hook bad] command: required"),
        (
            {"event": "PrintDone", "type": "shell", "command": "x"},
            "[event_hook bad] type: expected one of 'system', 'gcode', got 'shell'",
        ),
        (
            {"event": "Print Done", "type": "gcode", "command": "x"},
            "[event_hook bad] event: expected OctoPrint event names like PrintDone,"
            " got 'Print Done'",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "x", "enabled": "maybe"},
            "[event_hook bad] enabled: expected a boolean (true/false, yes/no, on/off, 1/0),"
            " got 'maybe'",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "x", "timeout": "0"},
            "[event_hook bad] timeout: expected a number of seconds greater than 0, got '0'",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "x", "timeout": "soon"},
            "[event_hook bad] timeout: expected a number of seconds greater than 0, got 'soon'",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "x", "timeout": "inf"},
            "[event_hook bad] timeout: expected a number of seconds greater than 0, got 'inf'",
        ),
        (
            {"event": "PrintDone", "type": "system", "command": 'echo "open'},
            "[event_hook bad] command line 1 ('echo \"open'): No closing quotation",
        ),
        (
            {"event": "PrintDone", "type": "system", "command": "true\n{__filename} x"},
            "[event_hook bad] command line 2 ('{__filename} x'): the program to run cannot be"
            " a placeholder",
        ),
        (
            {"event": "PrintDone", "type": "system", "command": "echo {0}"},
            "[event_hook bad] command line 1 ('echo {0}'): {0}: a placeholder needs a name,"
            " like {__eventname}",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "M117 {}"},
            "[event_hook bad] command line 1 ('M117 {}'): {}: a placeholder needs a name,"
            " like {__eventname}",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "M117 {name"},
            "[event_hook bad] command line 1 ('M117 {name'): expected '}' before end of string",
        ),
        (
            {"event": "PrintDone", "type": "gcode", "command": "M117 {name:d}"},
            "[event_hook bad] command line 1 ('M117 {name:d}'): {name:d}: Unknown format code"
            " 'd' for object of type 'str'",
        ),
    ],
)
def test_unusable_sections_name_the_section_and_option(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(HookConfigError) as info:
        parse_hook("bad", options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("echo `date` {name}", "comes after a `command substitution`"),
        ("echo $(date) {name}", "comes after a $(...) substitution"),
        ('echo "$(date)" {name}', "comes after a $(...) substitution"),
        ("echo ${{HOME:-x}} {name}", "comes after a ${...} expansion"),
        ("echo $'a' {name}", "comes after $'...' quoting"),
        ("cat <<EOF {name}", "comes after a here-document (<<)"),
        ("echo hi # {name}", "is inside a # comment"),
        ("echo \\{name}", "follows a backslash"),
        ('echo "\\{name}"', "follows a backslash"),
        ("echo ${name}", "follows a $"),
        ('echo "{name}', "unterminated quote"),
    ],
)
def test_shell_lines_where_a_value_cannot_be_quoted_are_refused(command: str, why: str) -> None:
    with pytest.raises(HookConfigError, match=re.escape(why)):
        parse_hook("s", {"event": "X", "type": "system", "shell": "yes", "command": command})


def test_shell_lines_that_are_fine() -> None:
    for command in (
        "echo $(date) ${{HOME}} $HOME",  # no placeholder after the substitution
        "echo {name} $(date)",
        "echo ${{HOME}}/{name} '$(not run) {name}' \"$HOME {name}\" a#{name}",
    ):
        parse_hook("s", {"event": "X", "type": "system", "shell": "yes", "command": command})


def test_unknown_options_and_shell_on_gcode_warn() -> None:
    found, warnings = parse_hook(
        "g", {"event": "X", "type": "gcode", "command": "G28", "shell": "yes", "cwd": "/tmp"}
    )
    assert found.shell is False
    assert warnings == [
        "[event_hook g] cwd: unknown option, ignored",
        "[event_hook g] shell: only system hooks run a shell, ignored",
    ]


def test_parse_hooks_keeps_the_good_ones_and_warns_about_the_rest() -> None:
    hooks, warnings = parse_hooks(
        {
            "good": {"event": "PrintDone", "type": "gcode", "command": "M117 done"},
            "bad": {"event": "PrintDone", "type": "sms", "command": "x"},
        }
    )
    assert [h.name for h in hooks] == ["good"]
    assert warnings == [
        "[event_hook bad] type: expected one of 'system', 'gcode', got 'sms'; the hook is disabled"
    ]


# --- placeholders -----------------------------------------------------------------------------


def test_fallbacks_without_a_job_are_octoprints() -> None:
    values = placeholders("Startup", None, JobState(), NOW)
    assert values == {
        "__currentZ": "-1",
        "__eventname": "Startup",
        "__filename": "NO FILE",
        "__filepath": "NO PATH",
        "__fileorigin": "NO FILE",
        "__progress": "0",
        "__data": "None",
        "__json": "{}",
        "__now": "2026-11-23T15:42:29.600521",
    }


def test_job_values_and_payload_keys() -> None:
    state = JobState(
        current_z=0.4,
        file_name="a.gcode",
        file_path="sub/a.gcode",
        file_origin="local",
        progress=42.5,
    )
    values = placeholders("ZChange", {"new": 0.4, "old": None, "n": [1, "x"]}, state, NOW)
    assert values["__currentZ"] == "0.4"
    assert (values["__filename"], values["__filepath"], values["__fileorigin"]) == (
        "a.gcode",
        "sub/a.gcode",
        "local",
    )
    assert values["__progress"] == "42"  # round(), as OctoPrint (half to even)
    assert values["__data"] == "{'new': 0.4, 'old': None, 'n': [1, 'x']}"
    assert values["__json"] == '{"new": 0.4, "old": null, "n": [1, "x"]}'
    assert (values["new"], values["old"], values["n"]) == ("0.4", "None", "[1, 'x']")


def test_progress_needs_a_file_and_json_needs_a_json_payload() -> None:
    values = placeholders("X", {"when": NOW}, JobState(progress=50.0), NOW)
    assert values["__progress"] == "0"
    assert values["__json"] == ""
    assert values["when"] == str(NOW)


def test_job_state_from_klippys_status() -> None:
    standby = {
        "print_stats": {"state": "standby", "filename": ""},
        "gcode_move": {"gcode_position": [1.0, 2.0, 3.0, 0.0]},
    }
    assert job_state(standby) == JobState()
    printing = {
        "print_stats": {"state": "printing", "filename": "parts/cube.gcode"},
        "virtual_sdcard": {"progress": 0.2345},
        "gcode_move": {"gcode_position": [10.0, 20.0, 0.6, 5.0]},
        "toolhead": {"position": [10.0, 20.0, 0.8, 5.0]},
    }
    assert job_state(printing) == JobState(0.6, "cube.gcode", "parts/cube.gcode", "local", 23.45)
    no_gcode_move = {
        "print_stats": {"state": "paused", "filename": "a.gcode"},
        "toolhead": {"position": [0, 0, 2, 0]},
    }
    assert job_state(no_gcode_move).current_z == 2.0
    assert job_state({}) == JobState()


def transcript() -> list[tuple[str, str, JobState, dict[str, Any], datetime.datetime]]:
    """Each recorded hook line with the event, job and payload OctoPrint had."""
    pattern = re.compile(
        r"(?P<now>\S+) (?P<event>\S+) z=(?P<z>\S+) file=(?P<file>.*) path=(?P<path>.*)"
        r" progress=(?P<progress>\d+) json=(?P<json>.*)"
    )
    rows = []
    for line in TRANSCRIPT.read_text().splitlines():
        m = pattern.fullmatch(line)
        assert m is not None, line
        has_file = m["file"] != "NO FILE"
        state = JobState(
            current_z=None if m["z"] == "-1" else float(m["z"]),
            file_name=m["file"] if has_file else None,
            file_path=m["path"] if has_file else None,
            file_origin="local" if has_file else None,
            progress=float(m["progress"]) if has_file else None,
        )
        rows.append(
            (
                line,
                m["event"],
                state,
                json.loads(m["json"]),
                datetime.datetime.fromisoformat(m["now"]),
            )
        )
    return rows


RECORDED = (
    "{__now} {__eventname} z={__currentZ} file={__filename} path={__filepath}"
    " progress={__progress} json={__json}"
)


def test_the_transcripts_hook_output_expands_the_same() -> None:
    rows = transcript()
    assert len(rows) == 14
    found = hook(f"printf '%s' \"{RECORDED}\"")
    for line, name, state, payload, now in rows:
        argv = expand_system(found, placeholders(name, payload, state, now))
        assert argv == [["printf", "%s", line]]


def test_the_transcripts_hook_output_through_the_shell() -> None:
    """OctoPrint's own hook was an unquoted ``echo`` line through the shell: same output."""
    found = hook(f"echo {RECORDED}", shell="true")
    expected, lines = [], []
    for line, name, state, payload, now in transcript():
        expected.append(line)
        [argv] = expand_system(found, placeholders(name, payload, state, now))
        assert argv[:2] == ["/bin/sh", "-c"]
        lines.append(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    assert "".join(lines).splitlines() == expected


def test_a_real_event_expands_as_recorded() -> None:
    from trioprint.domain.octoprint_events import FileAdded

    event = FileAdded(storage="local", path="trio_small.gcode")
    line = transcript()[0][0]
    found = hook(f"printf '%s' \"{RECORDED}\"")
    argv = expand_system(found, placeholders(event.NAME, event.payload(), JobState(), NOW))
    assert argv == [["printf", "%s", line]]


def test_an_unknown_placeholder_fails_that_event_only() -> None:
    found = hook("echo {name}")
    with pytest.raises(ExpansionError, match="no placeholder 'name' for this event"):
        expand_system(found, placeholders("Startup", None, JobState(), NOW))
    assert expand_system(found, params(name="x")) == [["echo", "x"]]


def test_a_nul_in_a_value_is_refused() -> None:
    with pytest.raises(ExpansionError, match="NUL"):
        expand_system(hook("echo {name}"), params(name="a\x00b"))


# --- a payload can never add an argument, a command or a G-code line ----------------------

ARGV_TEMPLATE = "printf %s|%s|%s|%s {a} pre-{b}-post \"x {a} y\" '{b}'{a}"


@given(a=ARGUMENT_TEXT, b=ARGUMENT_TEXT)
@example(a=NASTY, b="")
@example(a="", b="--flag")
def test_argv_structure_never_depends_on_the_payload(a: str, b: str) -> None:
    [argv] = expand_system(hook(ARGV_TEMPLATE), params(a=a, b=b))
    assert argv == ["printf", "%s|%s|%s|%s", a, f"pre-{b}-post", f"x {a} y", b + a]


SHELL_TEMPLATE = (
    "printf '%s\\0' {a} pre-{b}-post \"x {a} y\" 'p {b} q' {a}{b} \"{b}\"'{a}' ${{TP_T}}{a};"
    " printf 'end\\0'"
)


def run_shell(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv,
        capture_output=True,
        cwd=tmp_path,
        env={"TP_T": "t", "PATH": "/usr/bin:/bin"},
        timeout=20,
        check=False,
    )


@settings(max_examples=60)
@given(a=ARGUMENT_TEXT, b=ARGUMENT_TEXT)
@example(a=NASTY, b="'\"'\"'")
@example(a="'; touch pwned; '", b='"; touch pwned; "')
def test_shell_values_stay_literal(a: str, b: str, tmp_path_factory: Any) -> None:
    tmp = tmp_path_factory.mktemp("sh")
    [argv] = expand_system(hook(SHELL_TEMPLATE, shell="yes"), params(a=a, b=b))
    done = run_shell(argv, tmp)
    words = done.stdout.split(b"\0")[:-1]
    expected = [a, f"pre-{b}-post", f"x {a} y", f"p {b} q", a + b, b + a, "t" + a, "end"]
    assert [w.decode("utf-8", "surrogateescape") for w in words] == expected
    assert list(tmp.iterdir()) == []  # nothing ran that the template did not say


#: Pieces random shell lines are made of (harmless words only: every line runs).
SHELL_PIECES = [
    " ",
    "'",
    '"',
    "\\",
    "$",
    "#",
    ";",
    "(",
    ")",
    "x",
    "=",
    "{{",
    "}}",
    "{a}",
    "`",
    "$(",
    "<<",
    "|",
    "&&",
    "\t",
    "*",
    "~",
    "!",
    "&",
    "if",
    "then",
    "fi",
]


@settings(max_examples=150)
@given(
    pieces=st.lists(st.sampled_from(SHELL_PIECES), max_size=14),
    at=st.integers(min_value=0),
    value=ARGUMENT_TEXT,
)
@example(pieces=['"', '"'], at=1, value=NASTY)
@example(pieces=["'", "'"], at=1, value=NASTY)
def test_any_accepted_shell_line_keeps_a_value_literal(
    pieces: list[str], at: int, value: str, tmp_path_factory: Any
) -> None:
    """Whatever the line, if it is accepted, a value runs exactly like a harmless marker."""
    pieces.insert(at % (len(pieces) + 1), "{a}")
    line = "printf '<%s>' " + "".join(pieces)
    if "$$" in line:  # the shell's pid: differs between any two runs
        return
    try:
        found, _ = parse_hook("r", {"event": "X", "type": "system", "shell": "1", "command": line})
    except HookConfigError:
        event("refused")
        return
    event("accepted")
    marker = "Mq7"
    value = "@" + value  # never a command's name, where the line puts it in command position
    if marker in value:
        return
    tmp = tmp_path_factory.mktemp("sh")
    [with_marker] = expand_system(found, params(a=marker))
    [with_value] = expand_system(found, params(a=value))
    expected = run_shell(with_marker, tmp)
    got = run_shell(with_value, tmp)
    want = expected.stdout.decode("utf-8", "surrogateescape").replace(marker, value)
    assert got.stdout.decode("utf-8", "surrogateescape") == want
    assert got.returncode == expected.returncode


@given(values=st.dictionaries(st.sampled_from(["a", "b", "__data"]), st.text(), min_size=3))
@example(values={"a": "1\nG28\r\nM112", "b": "\u2028M84\x85", "__data": "\x00\x0b"})
def test_gcode_values_never_add_a_line(values: dict[str, str]) -> None:
    found, _ = parse_hook(
        "g", {"event": "X", "type": "gcode", "command": "M117 {a} {b}\nM118 {__data};{a}\nG4"}
    )
    lines = expand_gcode(found, placeholders("X", values, JobState(), NOW))
    assert len(lines) == 3
    script = "\n".join(lines)
    assert len(script.splitlines()) == 3
    assert lines[0].startswith("M117 ")
    assert lines[1].startswith("M118 ")
    assert lines[2] == "G4"


@pytest.mark.parametrize("doc", ["docs/hooks.md", "README.md"])
def test_the_documented_examples_parse(doc: str, tmp_path: Path) -> None:
    from trioprint.config import load_config

    text = (Path(__file__).resolve().parent.parent / doc).read_text()
    blocks = [b for b in re.findall(r"```ini\n(.*?)```", text, re.S) if "[event_hook" in b]
    assert blocks
    for block in blocks:
        conf = tmp_path / "example.conf"
        conf.write_text(block)
        sections = load_config(conf, tmp_path).sections_with_prefix("event_hook")
        hooks, warnings = parse_hooks(sections)
        assert warnings == []
        assert len(hooks) == len(sections) > 0
