"""Request paths: everything that could leave a root is refused before any I/O."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.paths import (
    NAME_MAX,
    PathError,
    RootPath,
    clean_relative,
    confined,
    split_root,
)

ROOTS = frozenset({"gcodes", "config", "logs"})


def test_clean_paths_pass_normalised() -> None:
    assert clean_relative("a/b.gcode") == PurePosixPath("a/b.gcode")
    assert clean_relative("a//./b.gcode/") == PurePosixPath("a/b.gcode")
    assert clean_relative("") == PurePosixPath(".")
    assert clean_relative("ünïcode name.gcode") == PurePosixPath("ünïcode name.gcode")


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("../gcodes_evil/x.gcode", 403, "'..'"),
        ("a/../../etc/passwd", 403, "'..'"),
        ("/etc/passwd", 403, "absolute"),
        ("a\x00b", 400, "NUL"),
        ("a\\..\\b", 400, "backslash"),
        ("x" * (NAME_MAX + 1), 400, "over 255 bytes"),
        ("a/" * 2100, 400, "longer than 4096"),
        ("new\nline", 400, "control characters"),
    ],
)
def test_bad_paths_are_refused_with_a_reason(path: str, status: int, words: str) -> None:
    with pytest.raises(PathError) as exc:
        clean_relative(path)
    assert exc.value.status == status
    assert words in exc.value.message


def test_roots_are_split_and_checked() -> None:
    assert split_root("gcodes/a/b.gcode", ROOTS) == RootPath("gcodes", PurePosixPath("a/b.gcode"))
    assert split_root("/gcodes", ROOTS).text == "gcodes"
    assert split_root("config/printer.cfg", ROOTS).text == "config/printer.cfg"
    with pytest.raises(PathError, match="unknown root 'gcodes_evil'"):
        split_root("gcodes_evil/x.gcode", ROOTS)
    with pytest.raises(PathError, match=r"'\.\.'"):
        split_root("gcodes/../config/printer.cfg", ROOTS)


def test_confinement_compares_components_not_prefixes() -> None:
    root = PurePosixPath("/data/gcodes")
    assert confined(PurePosixPath("/data/gcodes"), root)
    assert confined(PurePosixPath("/data/gcodes/a/b.gcode"), root)
    # Moonraker's string-prefix check would let this sibling through
    assert not confined(PurePosixPath("/data/gcodes_evil/x.gcode"), root)
    assert not confined(PurePosixPath("/data"), root)
    assert not confined(PurePosixPath("/etc/passwd"), root)


@given(st.text(max_size=300))
def test_any_text_is_clean_or_refused_and_never_climbs(path: str) -> None:
    try:
        rel = clean_relative(path)
    except PathError as exc:
        status = exc.status
        rel = None
    if rel is None:
        assert status in (400, 403)
        return
    assert not rel.is_absolute()
    assert ".." not in rel.parts
    assert "\x00" not in str(rel)
    assert confined(PurePosixPath("/root") / rel, PurePosixPath("/root"))
