"""Event hooks: a placeholder is never code that a shell or another interpreter reads, one of
its options, or the program (issue #16, S2: ``sh -c "echo {__filename}"`` ran what the file
name said)."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from trioprint.domain.hooks import (
    HookConfigError,
    JobState,
    expand_system,
    parse_hook,
    placeholders,
)

NOW = datetime.datetime(2026, 11, 23, 15, 42, 29)
SAFE_FORM = "sh -c '... \"$1\"' sh {__filename}"
#: File names that ran commands through ``sh -c "... {__filename}"`` (issue #16).
HOSTILE_NAMES = [
    "$(touch pwned_1).gcode",
    "a;touch pwned_2;.gcode",
    "`touch pwned_3`.gcode",
    "a;touch${IFS}pwned_4;.gcode",
    "a|touch pwned_5|.gcode",
    "a&&touch pwned_6&&.gcode",
    "a'\"; touch pwned_7; \"'.gcode",
    "-c touch pwned_8",
]


def system(command: str, **options: str) -> Any:
    found, _ = parse_hook("t", {"event": "X", "type": "system", "command": command, **options})
    return found


def refused(command: str, **options: str) -> str:
    with pytest.raises(HookConfigError) as info:
        system(command, **options)
    return str(info.value)


@pytest.mark.parametrize(
    "command",
    [
        '/bin/sh -c "echo D {__filename} >> LOG"',  # the report's hook
        'sh -c "echo {__filename}"',
        "bash -c 'echo {__filename}'",
        "dash -c 'echo {__filename}'",
        "zsh -c 'echo {__filename}'",
        "ksh -c 'echo {__filename}'",
        "ash -c 'echo {__filename}'",
        "/usr/bin/bash -c 'echo {__filename}'",
        "/usr/local/bin/zsh -c 'echo {__filename}'",
        "busybox sh -c 'echo {__filename}'",
        "busybox ash -c 'echo {__filename}'",
        "env sh -c 'echo {__filename}'",
        "/usr/bin/env bash -c 'echo {__filename}'",
        "env -i PATH=/bin sh -c 'echo {__filename}'",
        "env -u HOME -- sh -c 'echo {__filename}'",
        "env -S 'sh -c' 'echo {__filename}'",
        "sh -ec 'echo {__filename}'",
        "bash -lc 'echo {__filename}'",
        "bash -xec 'echo {__filename}'",
        "sh -c -e 'echo {__filename}'",
        "sh -e -c 'echo {__filename}'",
        "sh -o errexit -c 'echo {__filename}'",
        "bash --norc -c 'echo {__filename}'",
        "sh -c -- 'echo {__filename}'",
        "sh -c 'echo '{__filename}",
        "sh -c {__filename}",
        "nice -n 5 sh -c 'echo {__filename}'",
        "timeout 10 sh -c 'echo {__filename}'",
        "sudo -u pi sh -c 'echo {__filename}'",
        "xargs sh -c 'echo {__filename}'",
        "sh -c 'exec \"$@\"' sh sh -c 'echo {__filename}'",
        "python -c 'print(\"{__filename}\")'",
        "python3 -c 'print(\"{__filename}\")'",
        "python3.11 -c 'print(\"{__filename}\")'",
        "/usr/bin/python3 -Bc 'print(\"{__filename}\")'",
        "python3 -W ignore -c 'print(\"{__filename}\")'",
        "python3 -cprint('{__filename}')",
        "python3 -m {__filename}",
        "perl -e 'print \"{__filename}\"'",
        "perl -le 'print \"{__filename}\"'",
        "perl -ne 'print \"{__filename}\"'",
        "perl -E 'say \"{__filename}\"'",
        "ruby -e 'puts \"{__filename}\"'",
        "node -e 'console.log(\"{__filename}\")'",
        "node --eval 'console.log(\"{__filename}\")'",
        "node -p '\"{__filename}\"'",
        "php -r 'echo \"{__filename}\";'",
        "lua -e 'print(\"{__filename}\")'",
        "awk 'BEGIN {{ print \"{__filename}\" }}'",
        "sed 's/a/{__filename}/'",
        "ssh printer-host echo {__filename}",
        "watch echo {__filename}",
        "su -c 'echo {__filename}' pi",
        "flock /tmp/lock -c 'echo {__filename}'",
    ],
)
def test_a_placeholder_in_an_interpreters_code_is_refused(command: str) -> None:
    message = refused(command)
    assert "{__filename}" in message
    assert "code" in message or "command line" in message or "options" in message
    assert "shell: true" in message


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        ('/bin/sh -c "echo D {__filename} >> LOG"', SAFE_FORM),
        ("python3 -c 'print(\"{__filename}\")'", "python3 -c 'import sys; ... sys.argv[1]'"),
        ("perl -e 'print 1' {__filename}", "perl -e '... $ARGV[0]' -- {__filename}"),
        ("node -e 'x' {__filename}", "-- {__filename}"),
        ("sh {__filename}", SAFE_FORM),
        ("sh x{__filename}", "names the script sh runs"),
        ("env {__filename}", "cannot be a placeholder"),
        ("busybox {__filename}", "cannot be a placeholder"),
    ],
)
def test_the_message_names_the_safe_form(command: str, hint: str) -> None:
    message = refused(command)
    assert message.startswith(f"[event_hook t] command line 1 ({command!r}): ")
    assert hint in message


@pytest.mark.parametrize(
    "command",
    [
        "sh -c 'echo \"$1\"' sh {__filename}",
        "/bin/sh -c 'echo D \"$1\" >> LOG' sh {__filename}",
        'bash -ec \'printf "%s\\n" "$@"\' bash {__filename} {name}',
        "sh -c 'echo \"$0\"' {__filename}",  # $0 is a name, not code
        "env -i PATH=/bin sh -c 'echo \"$1\"' sh {__filename}",
        "env NAME={__filename} sh -c 'echo \"$NAME\"'",
        "busybox sh -c 'echo \"$1\"' sh {__filename}",
        "sh -s {__filename}x",
        "sh /usr/local/bin/notify.sh {__filename}",
        "python3 -c 'import sys; print(sys.argv[1])' {__filename}",
        "python3 -c 'import sys; print(sys.argv[1])' -c {__filename}",
        "python3 /usr/local/bin/notify.py -m {__filename}",
        "perl -e 'print $ARGV[0]' -- {__filename}",
        "perl -le 'print $ARGV[0]' x{__filename}",
        "node -e 'console.log(process.argv[1])' -- {__filename}",
        "awk 'BEGIN {{ print ARGV[1] }}' {__filename}",
        "sed -e 's/a/b/' -- {__filename}",
        "flock /tmp/lock sh -c 'echo \"$1\"' sh {__filename}",
        "notify-send 'Print of {name}' '{__eventname}'",
        "curl -d 'file={__filename}' http://localhost/notify",
        "echo sh -c x",
    ],
)
def test_values_as_arguments_are_accepted(command: str) -> None:
    system(command)


@pytest.mark.parametrize(
    "command",
    [
        'sh -c "echo {__filename}"',
        "echo start >> log; bash -c 'echo {__filename}'",
        "printf x | FOO=1 exec python3 -c \"print('{__filename}')\"",
        'if true; then sh -c "echo {__filename}"; fi',
        "eval echo {__filename}",
        'sh -c "echo {__filename}" > /dev/null 2>&1',
    ],
)
def test_shell_true_lines_are_checked_command_by_command(command: str) -> None:
    message = refused(command, shell="true")
    assert "{__filename}" in message
    assert "use shell: true" not in message  # it is already


def test_shell_true_lines_with_values_as_arguments_are_accepted() -> None:
    for command in (
        "echo {__filename} >> log; sh -c 'echo \"$1\"' sh {__filename}",
        "printf '%s\\n' {__filename} | sh -c 'cat >> log'",
        "printf '%s %s %s\\n' {__now} {__eventname} \"{__filepath}\" >> ~/print.log",
    ):
        system(command, shell="true")


# --- hypothesis: over the command lines -------------------------------------------------------

#: (program names, flags that may come first, the flag whose value or operand is code)
INTERPRETERS = [
    (
        ["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"],
        ["-e", "-x", "-u", "-l", "-o errexit"],
        "c",
    ),
    (["python", "python3", "python3.12", "pypy3"], ["-B", "-u", "-I", "-W ignore", "-X dev"], "c"),
    (["perl", "perl5.36"], ["-w", "-l", "-n", "-p", "-a", "-I lib", "-Mstrict"], "e"),
    (["ruby"], ["-w", "-n", "-p", "-r json"], "e"),
    (["node", "nodejs"], ["--no-warnings", "-r dotenv/config"], "e"),
    (["php", "php8.2"], ["-n", "-d display_errors=1"], "r"),
]
PREFIXES = ["", "/bin/", "/usr/bin/", "/usr/local/bin/"]
WRAPPERS = [[], ["env"], ["/usr/bin/env"], ["env", "-i"], ["busybox"], ["nice"], ["timeout", "9"]]
CODE = st.sampled_from(["{a}", "echo {a}", "x{a}y", "print('{a}')", "{a} >> log", "'{a}'"])


@st.composite
def interpreter_lines(draw: st.DrawFn) -> str:
    names, flags, code_flag = draw(st.sampled_from(INTERPRETERS))
    program = draw(st.sampled_from(PREFIXES)) + draw(st.sampled_from(names))
    words = [*draw(st.sampled_from(WRAPPERS)), program, *draw(st.lists(st.sampled_from(flags)))]
    # the code flag alone, or last of a group (-ec), or (shells) anywhere in it (-ce)
    group = draw(st.sampled_from(["", "e", "x", "l", "u", "ex"]))
    shell = names[0] == "sh"
    if not shell:
        group = group.replace("e", "").replace("x", "").replace("l", "w")
    words.append("-" + (code_flag + group if shell and draw(st.booleans()) else group + code_flag))
    if names[0] == "sh" and draw(st.booleans()):
        words.append("--")
    words.append(shlex_quote(draw(CODE)))
    words += draw(st.lists(st.sampled_from(["sh", "x", "{b}", "--"]), max_size=3))
    return " ".join(words)


def shlex_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@settings(max_examples=300)
@given(line=interpreter_lines())
@example(line='/bin/sh -c "echo D {a} >> LOG"')
@example(line="env busybox sh -lc 'echo {a}'")
def test_any_interpreter_code_with_a_placeholder_is_refused(line: str) -> None:
    with pytest.raises(HookConfigError, match=re.escape("{a}")):
        system(line)
    with pytest.raises(HookConfigError, match=re.escape("{a}")):
        system(line, shell="true")


# --- hypothesis: over the values, on real interpreters ------------------------------------------

ARGUMENT_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
PYTHON = sys.executable if Path(sys.executable).name.startswith("python") else None
#: Each interpreter prints its arguments as <a><b>...; "{{" is a literal brace in a template.
PROGRAMS = {
    "sh": ["sh", "-c", 'printf \'<%s>\' "$0" "$@"'],
    "bash": ["bash", "-c", 'printf \'<%s>\' "$0" "$@"'],
    "dash": ["dash", "-c", 'printf \'<%s>\' "$0" "$@"'],
    "python3": [
        PYTHON or "python3",
        "-c",
        "import sys; sys.stdout.write(''.join('<%s>' % a for a in sys.argv[1:]))",
    ],
    "perl": ["perl", "-e", 'print map {{ "<$_>" }} @ARGV'],
    "node": [
        "node",
        "-e",
        "process.stdout.write(process.argv.slice(1).map(a => `<${{a}}>`).join(''))",
    ],
}
AVAILABLE = {name: argv for name, argv in PROGRAMS.items() if shutil.which(argv[0])}
#: What may go between the code and the end (or around it: the line is shuffled a little).
PIECES = [
    "{a}",
    "x{a}",
    "{a}y",
    "--",
    "-",
    "-e",
    "-c",
    "-x",
    "-l",
    "-n",
    "-w",
    "name",
    "-o",
    "errexit",
]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv,
        capture_output=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(not AVAILABLE, reason="no interpreter to run")
@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    program=st.sampled_from(sorted(AVAILABLE)),
    before=st.lists(st.sampled_from(["-e", "-x", "-l", "-w", "-u"]), max_size=2),
    after=st.lists(st.sampled_from(PIECES), max_size=5),
    where=st.integers(min_value=0, max_value=3),
    value=st.one_of(st.sampled_from(HOSTILE_NAMES), ARGUMENT_TEXT),
)
@example(program="sh", before=[], after=["name", "{a}"], where=3, value="$(touch pwned_1).gcode")
@example(program="perl", before=[], after=["--", "{a}"], where=3, value="-eprint 'pwned'")
def test_any_accepted_line_passes_a_value_as_data(
    program: str,
    before: list[str],
    after: list[str],
    where: int,
    value: str,
    tmp_path_factory: Any,
) -> None:
    """Whatever the line, if it is accepted, a hostile value runs as a harmless marker does."""
    name, flag, code = AVAILABLE[program]
    words = [name, *before, flag, shlex_quote(code), *after]
    if "{a}" not in " ".join(after):
        words.insert(min(where, len(words) - 1) + 1, "{a}")  # also among the options and code
    line = " ".join(w if w.startswith("'") else shlex_quote(w) for w in words)
    try:
        found = system(line)
    except HookConfigError:
        event("refused")
        return
    event("accepted")
    marker = "Mq7"
    if marker in value:
        return
    tmp = tmp_path_factory.mktemp("run")
    [with_marker] = expand_system(found, placeholders("X", {"a": marker}, JobState(), NOW))
    [with_value] = expand_system(found, placeholders("X", {"a": value}, JobState(), NOW))
    expected = run(with_marker, tmp)
    got = run(with_value, tmp)
    want = expected.stdout.decode("utf-8", "surrogateescape").replace(marker, value)
    assert got.stdout.decode("utf-8", "surrogateescape") == want
    assert got.returncode == expected.returncode
    assert list(tmp.iterdir()) == []
