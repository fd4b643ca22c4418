"""Which arguments of a hook's command line a placeholder may fill: never code that a shell or
another interpreter reads, an option, or the program to run.

A ``shell: false`` hook runs an argv: a value stays one argument. That argument can still be
*read as code* by the program: ``sh -c "echo {name}"`` hands the value to a shell as part of a
script, ``python3 -c``, ``perl -e``, ``node -e``, ``awk 'PROGRAM'``, ``ssh host CMD`` and the like
too. So an argv is checked when the hook is loaded: wherever one of these programs appears (as
the program, or after ``env``, ``busybox``, ``sudo``, ``xargs`` ... as any literal argument),
its options are read as it reads them and a placeholder is refused in

* its options and their values (a value beginning with ``-`` would be an option: ``-c CODE``),
* its code (``-c``/``-e``/``-r`` ... arguments, a shell's command string, awk's program), or the
  script file it runs,
* every argument of programs that join their arguments into a shell line (``ssh``, ``watch``,
  ``eval``, ``trap``).

What follows the code is a positional argument (``$1``, ``sys.argv[1]``), which is the safe
form: ``sh -c '... "$1"' sh {__filename}``. Where the interpreter keeps reading options after
its code (``perl``, ``ruby``, ``node``, ``php``, ``lua``) the values go after ``--``.

``shell: true`` lines are split into simple commands the same way and each is checked, so
``sh -c "... {name}"`` there is refused too (the outer shell's quoting would hand the value to
the inner one as code).

Pure: no Trio, no I/O.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from typing import Literal, Protocol

import attrs

__all__ = ["check_argv", "check_shell_words"]


class _Placeholder(Protocol):
    @property
    def source(self) -> str: ...


#: One argument: literal text and placeholders.
Arg = Sequence["str | _Placeholder"]

Kind = Literal["options", "shell", "all", "env", "busybox", "permute"]


@attrs.frozen
class _Family:
    kind: Kind
    language: str
    #: the safe form, shown in the message
    example: str
    #: short flags whose value (attached, else the next argument) is code or a code file
    code: str = ""
    #: ... and after which every argument is positional (python -c, -m)
    code_end: str = ""
    #: shell -c: the first operand is the code
    mode: str = ""
    #: shell -s: operands are positional
    stdin: str = ""
    #: short flags with a value (attached, else the next argument)
    value: str = ""
    #: short flags whose value is the rest of the group (perl -i.bak)
    rest: str = ""
    #: short flags followed by optional digits (perl -l0)
    digits: str = ""
    long_code: frozenset[str] = frozenset()
    long_value: frozenset[str] = frozenset()
    #: ``+o``-style options (shells)
    plus: bool = False
    #: the first operand is the program when no code flag was given (awk, sed)
    operand_is_code: bool = False
    #: options are read after the operands too (GNU getopt permutes: sed)
    permutes: bool = False
    #: options keep being read after a code flag, so values need ``--`` before them
    needs_dashes: bool = False
    #: code flags looked for after a script file (an option's value may have been taken for it)
    hidden: str = ""
    #: ``-c COMMAND`` may follow the first operand (flock FILE -c COMMAND)
    command_after_operand: bool = False


_SH_EXAMPLE = "sh -c '... \"$1\"' sh {__filename}"
_SHELL = _Family(
    "shell",
    "shell",
    _SH_EXAMPLE,
    mode="c",
    stdin="s",
    value="oO",
    long_code=frozenset({"command"}),
    long_value=frozenset({"rcfile", "init-file"}),
    plus=True,
    hidden="c",
)
_FISH = attrs.evolve(
    _SHELL,
    code="C",
    long_code=frozenset({"command", "init-command"}),
    example="fish -c '... $argv[1]' {__filename}",
)
_PYTHON = _Family(
    "options",
    "Python",
    "python3 -c 'import sys; ... sys.argv[1]' {__filename}",
    code_end="cm",
    value="WX",
    long_value=frozenset({"check-hash-based-pycs"}),
    hidden="c",
)
_PERL = _Family(
    "options",
    "Perl",
    "perl -e '... $ARGV[0]' -- {__filename}",
    code="eE",
    value="I",
    rest="iFMmxdDVC",
    digits="l0",
    needs_dashes=True,
    hidden="eE",
)
_RUBY = _Family(
    "options",
    "Ruby",
    "ruby -e '... ARGV[0]' -- {__filename}",
    code="e",
    value="IrCE",
    rest="iKFx",
    digits="0TW",
    long_value=frozenset(
        {"encoding", "external-encoding", "internal-encoding", "enable", "disable", "dump"}
    ),
    needs_dashes=True,
    hidden="e",
)
_NODE = _Family(
    "options",
    "JavaScript",
    "node -e '... process.argv[1]' -- {__filename}",
    code="ep",
    value="rC",
    long_code=frozenset({"eval", "print"}),
    long_value=frozenset(
        {"require", "import", "loader", "experimental-loader", "conditions", "input-type", "title"}
    ),
    needs_dashes=True,
    hidden="ep",
)
_PHP = _Family(
    "options",
    "PHP",
    "php -r '... $argv[1];' -- {__filename}",
    code="rBREfF",
    value="dcztS",
    long_value=frozenset({"define", "php-ini", "zend-extension"}),
    needs_dashes=True,
    hidden="r",
)
_LUA = _Family(
    "options",
    "Lua",
    "lua -e '... arg[1]' -- {__filename}",
    code="e",
    value="l",
    needs_dashes=True,
    hidden="e",
)
_SCRIPTING = _Family(
    "options",
    "script",
    "Rscript -e '... commandArgs(TRUE)[1]' {__filename}",
    code="eEc",
    value="LJ",
    needs_dashes=True,
    hidden="eEc",
)
_AWK = _Family(
    "options",
    "awk",
    "awk '... ARGV[1] ...' {__filename}",
    code="ef",
    value="FvW",
    long_code=frozenset({"source", "file", "exec"}),
    long_value=frozenset({"field-separator", "assign", "include", "load"}),
    operand_is_code=True,
)
_SED = _Family(
    "options",
    "sed",
    "sed -e 's/a/b/' -- {__filename}",
    code="ef",
    value="l",
    rest="i",
    long_code=frozenset({"expression", "file"}),
    long_value=frozenset({"line-length"}),
    operand_is_code=True,
    permutes=True,
)
_JOINS = _Family("all", "shell", "sh -c '... \"$1\"' sh {__filename}")
_SHELL_RUNNER = _Family(
    "permute",
    "shell",
    _SH_EXAMPLE,
    code="c",
    long_code=frozenset({"command", "session-command"}),
)
#: flock [OPTION]... FILE -c COMMAND, or FILE PROGRAM [ARGUMENT]...
_FLOCK = _Family(
    "options",
    "shell",
    "flock FILE sh -c '... \"$1\"' sh {__filename}",
    value="wE",
    command_after_operand=True,
)
_ENV = _Family("env", "", "")
_BUSYBOX = _Family("busybox", "", "")

_NAMES: list[tuple[str, _Family]] = [
    (r"(?:ba|rba|da|z|k|mk|pdk|lk|ok|a|hu|ya|po|c|tc)?sh|ksh93", _SHELL),
    (r"fish", _FISH),
    (r"python|pypy", _PYTHON),
    (r"perl", _PERL),
    (r"j?ruby|truffleruby", _RUBY),
    (r"node|nodejs|bun", _NODE),
    (r"php|php-cli", _PHP),
    (r"lua|luajit", _LUA),
    (r"Rscript|julia|expect|tclsh|wish", _SCRIPTING),
    (r"awk|gawk|mawk|nawk|original-awk|goawk", _AWK),
    (r"sed|gsed", _SED),
    (r"ssh|watch|eval|trap", _JOINS),
    (r"su|runuser|script", _SHELL_RUNNER),
    (r"flock", _FLOCK),
    (r"env", _ENV),
    (r"busybox", _BUSYBOX),
]
_PROGRAM = [(re.compile(rf"(?:{names})[0-9.]*"), family) for names, family in _NAMES]


def _family(program: str) -> _Family | None:
    name = posixpath.basename(program)
    for pattern, family in _PROGRAM:
        if pattern.fullmatch(name):
            return family
    return None


def _literal(arg: Arg) -> str | None:
    """The argument's text if it has no placeholder."""
    if all(isinstance(p, str) for p in arg):
        return "".join(p for p in arg if isinstance(p, str))
    return None


def _source(arg: Arg) -> str:
    return next(p.source for p in arg if not isinstance(p, str))


def _may_be_option(arg: Arg, plus: bool) -> bool:
    """A placeholder argument whose value decides whether it is an option."""
    first = arg[0] if arg else ""
    if not isinstance(first, str):
        return True
    return first.startswith("-") or (plus and first.startswith("+"))


def _is_option(text: str, family: _Family) -> bool:
    if len(text) < 2:
        return text == "-"
    return text[0] == "-" or (family.plus and text[0] == "+")


class _Refused(ValueError):
    pass


@attrs.define
class _Walk:
    """Reads one interpreter's options: which arguments are code, where the arguments start."""

    family: _Family
    program: str
    args: Sequence[Arg]
    i: int
    has_code: bool = False
    mode: bool = False
    stdin: bool = False
    dashes: bool = False
    #: "or use shell: true" in the messages (shell: false hooks)
    hint: bool = True

    def or_shell(self) -> str:
        return " or use shell: true, which quotes them" if self.hint else ""

    def fail_code(self, arg: Arg, what: str) -> None:
        raise _Refused(
            f"{_source(arg)} is in {what}, where a value is read as"
            f" {self.family.language} code and can run commands; pass values as arguments"
            f" after the code ({self.family.example}){self.or_shell()}"
        )

    def fail_option(self, arg: Arg) -> None:
        after = "after the code and -- " if self.family.needs_dashes else "after the code "
        raise _Refused(
            f"{_source(arg)} is where {self.program} reads options: a value beginning with -"
            f" would be one (an option can run code); pass values {after}"
            f"({self.family.example}){self.or_shell()}"
        )

    def literal_value(self, flag: str, *, code: bool) -> None:
        """The next argument is ``flag``'s value: it must be literal."""
        if self.i >= len(self.args):
            return
        arg = self.args[self.i]
        self.i += 1
        if _literal(arg) is None:
            if code:
                self.fail_code(arg, f"the code of {self.program} {flag}")
            self.fail_option(arg)

    def short_group(self, text: str) -> bool:
        """Read ``-abc``; True when the options end after it."""
        family = self.family
        j = 1
        while j < len(text):
            c = text[j]
            rest = text[j + 1 :]
            if c in family.code or c in family.code_end:
                self.has_code = True
                if not rest:
                    self.literal_value(f"-{c}", code=True)
                return c in family.code_end
            if c in family.value:
                if not rest:
                    self.literal_value(f"-{c}", code=False)
                return False
            if c in family.rest:
                # its value is the rest of the group; a code flag in it is taken as one anyway
                for k, d in enumerate(rest):
                    if d in family.code or d in family.code_end:
                        self.has_code = True
                        if k == len(rest) - 1:
                            self.literal_value(f"-{d}", code=True)
                return False
            if c in family.digits:
                j += 1
                while j < len(text) and text[j].isdigit():
                    j += 1
                continue
            if c in family.mode:
                self.mode = True
            if c in family.stdin:
                self.stdin = True
            j += 1
        return False

    def long_option(self, text: str) -> None:
        name, equals, _ = text[2:].partition("=")
        if name in self.family.long_code:
            self.has_code = True
            if not equals:
                self.literal_value(f"--{name}", code=True)
        elif name in self.family.long_value and not equals:
            self.literal_value(f"--{name}", code=False)

    def run(self) -> int:
        """Check; the index from which the rest of the argv is scanned."""
        family, args = self.family, self.args
        while self.i < len(args):
            arg = args[self.i]
            text = _literal(arg)
            if text is None or not _is_option(text, family):
                break
            self.i += 1
            if text == "--" or (text == "-" and family.kind == "shell"):
                self.dashes = True
                break
            if text == "-":  # the script from stdin: the rest are its arguments
                return self.i
            if text.startswith("--"):
                self.long_option(text)
            elif self.short_group(text):  # python -c CODE: the rest are arguments
                return self.i
        if self.i >= len(args):
            return self.i
        arg = args[self.i]
        if (self.has_code or self.stdin) and not self.mode:
            # perl -e CODE ARGS, awk -f FILE FILES, sh -s ARGS: the rest are arguments
            return self.positional_from(self.i, options_follow=not self.dashes)
        # the first operand: the code (sh -c, awk, sed) or the script file
        if _literal(arg) is None:
            if not self.dashes and _may_be_option(arg, family.plus):
                self.fail_option(arg)
            if self.mode or family.operand_is_code:
                self.fail_code(arg, f"the code {self.program} runs")
            raise _Refused(
                f"{_source(arg)} names the script {self.program} runs, so a value chooses the"
                f" code; pass values as arguments after a fixed script ({family.example})"
            )
        self.i += 1
        if self.mode:
            return self.i + 1  # $0, then the positional parameters
        following = _literal(args[self.i]) if self.i < len(args) else None
        if family.command_after_operand and following in ("-c", "--command"):
            self.i += 1
            self.literal_value("-c", code=True)
            return self.i
        if not family.operand_is_code:
            self.check_hidden_code()
        return self.positional_from(self.i, options_follow=False)

    def positional_from(self, start: int, *, options_follow: bool) -> int:
        """The code's arguments start at ``start``; a placeholder there that may be an option
        is refused where the program still reads options (``options_follow``: perl -e CODE
        without ``--``) or reads them anywhere (GNU getopt's permutation: sed)."""
        family = self.family
        if self.dashes:
            return start
        if family.permutes or (options_follow and family.needs_dashes):
            for k in range(start, len(self.args)):
                arg = self.args[k]
                text = _literal(arg)
                if text == "--":
                    break
                if text is None:
                    if _may_be_option(arg, family.plus):
                        self.fail_option(arg)
                    if not family.permutes:
                        break
                elif not _is_option(text, family) and not family.permutes:
                    break
        return start

    def check_hidden_code(self) -> None:
        """After a script file: a code flag further on (an option value taken for the script)
        with a placeholder after it is refused."""
        family = self.family
        flags = family.hidden
        for k in range(self.i, len(self.args)):
            text = _literal(self.args[k])
            if text is None or not _is_option(text, family) or text in ("-", "--"):
                continue
            long_code = text.startswith("--") and text[2:].partition("=")[0] in family.long_code
            if long_code or (not text.startswith("--") and any(c in flags for c in text[1:])):
                for later in self.args[k + 1 :]:
                    if _literal(later) is None:
                        self.fail_code(later, f"what may be the code of {self.program} {text}")


def _env(args: Sequence[Arg], i: int, hint: bool) -> int:
    """``env [OPTION]... [NAME=VALUE]... PROGRAM``: the index of PROGRAM (checked there)."""
    value_flags = {"-u", "-C", "--unset", "--chdir"}
    while i < len(args):
        arg = args[i]
        text = _literal(arg)
        if text is None:
            first = arg[0]
            if isinstance(first, str) and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", first):
                i += 1  # NAME={value}: an environment variable
                continue
            raise _Refused(
                f"{_source(arg)} is where env reads its options or the program to run, which"
                " cannot be a placeholder"
            )
        split = re.fullmatch(r"(-S|--split-string=?)(.*)", text, re.S)
        if split is not None:
            value = split.group(2)
            i += 1
            if not value and i < len(args):
                value_arg = args[i]
                i += 1
                value_text = _literal(value_arg)
                if value_text is None:
                    raise _Refused(
                        f"{_source(value_arg)} is in env -S, which splits it into arguments"
                    )
                value = value_text
            try:
                words = shlex.split(value)
            except ValueError:
                raise _Refused("env -S: its string does not split into arguments") from None
            check_argv([[w] for w in words] + list(args[i:]), hint=hint)
            return len(args)
        if text in value_flags:
            if i + 1 < len(args) and _literal(args[i + 1]) is None:
                raise _Refused(f"{_source(args[i + 1])} is the value of env {text}")
            i += 2
        elif text.startswith("-") or "=" in text:
            i += 1
        else:
            return i
    return i


def check_argv(args: Sequence[Arg], *, hint: bool = True) -> None:
    """ValueError (naming the placeholder and the safe form) where a placeholder of ``args``
    (an argv of templates) could be read as code, an option of an interpreter, or a program."""
    i = 0
    while i < len(args):
        text = _literal(args[i])
        family = _family(text) if text is not None else None
        i += 1
        if family is None:
            continue
        program = posixpath.basename(text or "")
        if family.kind in ("options", "shell"):
            i = _Walk(family, program, args, i, hint=hint).run()
        elif family.kind == "all":
            for arg in args[i:]:
                if _literal(arg) is None:
                    raise _Refused(
                        f"{_source(arg)} is an argument of {program}, which joins its arguments"
                        f" into a shell command line that a value could add commands to; pass"
                        f" values to a fixed script ({family.example})"
                        + (" or use shell: true, which quotes them" if hint else "")
                    )
            return
        elif family.kind == "permute":
            walk = _Walk(family, program, args, i, hint=hint)
            k = i
            while k < len(args):
                arg = args[k]
                k += 1
                text = _literal(arg)
                if text is None:
                    if _may_be_option(arg, False):
                        walk.fail_option(arg)
                elif text == "--":
                    break
                elif _is_option(text, family) and text != "-":
                    walk.i = k
                    if text.startswith("--"):
                        walk.long_option(text)
                    else:
                        walk.short_group(text)
                    k = walk.i
        elif family.kind == "env":
            i = _env(args, i, hint)
            if i < len(args) and _literal(args[i]) is None:
                raise _Refused(f"{_source(args[i])}: the program env runs cannot be a placeholder")
        elif family.kind == "busybox" and i < len(args) and _literal(args[i]) is None:
            raise _Refused(f"{_source(args[i])}: the applet busybox runs cannot be a placeholder")


#: Words that start a simple command in a shell line without being its program.
_RESERVED = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "case", "esac"}
    | {"!", "{", "}", "time", "exec", "command", "builtin", "nohup", "in", "for"}
)
_REDIRECTIONS = frozenset({"<", ">", ">>", "<<", "<>", ">|", "<&", ">&", "&>", "&>>", "<<<"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def check_shell_words(line: str, fields: Sequence[_Placeholder], marker: str) -> None:
    """Check each simple command of a ``shell: true`` line as :func:`check_argv` does.

    ``line`` is the template with the ``n``-th placeholder written ``marker % n``; the line is
    split as the shell splits it (quotes removed), at ``;``, ``|``, ``&`` and parentheses.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:
        return  # the quoting check has refused what does not split
    pattern = re.compile(re.escape(marker).replace("%d", "([0-9]+)"))
    commands: list[list[Arg]] = [[]]
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in _REDIRECTIONS:
            skip = True
        elif word and all(c in ";&|()<>" for c in word):
            commands.append([])
        else:
            arg: list[str | _Placeholder] = []
            at = 0
            for found in pattern.finditer(word):
                if found.start() > at:
                    arg.append(word[at : found.start()])
                arg.append(fields[int(found.group(1))])
                at = found.end()
            if at < len(word) or not arg:
                arg.append(word[at:])
            commands[-1].append(arg)
    for command in commands:
        while command:
            first = _literal(command[0])
            if first is not None and (first in _RESERVED or _ASSIGNMENT.match(first)):
                command.pop(0)
            else:
                break
        if command and _literal(command[0]) is not None:
            check_argv(command, hint=False)
