"""domain/snapshots.py: two scans of a root turned into notify_filelist_changed items."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.snapshots import Change, Entry, Snapshot, diff, replace_subtree

FILE = Entry(False, 3, 100)
DIR = Entry(True)


def test_nothing_changed() -> None:
    snap = {"a": DIR, "a/b.gcode": FILE}
    assert diff(snap, dict(snap)) == []


def test_actions_and_order() -> None:
    old = {"gone.gcode": FILE, "old": DIR, "old/x.gcode": FILE, "same.gcode": FILE, "m.gcode": FILE}
    new = {
        "same.gcode": FILE,
        "m.gcode": Entry(False, 3, 200),
        "new": DIR,
        "new/deep": DIR,
        "new/deep/y.gcode": FILE,
        "n.gcode": FILE,
    }
    assert diff(old, new) == [
        Change("delete_file", "gone.gcode"),
        Change("delete_dir", "old"),
        Change("create_file", "n.gcode"),
        Change("create_dir", "new"),
        Change("modify_file", "m.gcode"),
    ]


def test_size_change_is_a_modification_and_dir_mtime_is_not() -> None:
    assert diff({"a": FILE}, {"a": Entry(False, 4, 100)}) == [Change("modify_file", "a")]
    assert diff({"d": DIR}, {"d": Entry(True, 0, 5)}) == []


def test_kind_change_is_delete_then_create() -> None:
    assert diff({"x": FILE}, {"x": DIR, "x/a": FILE}) == [
        Change("delete_file", "x"),
        Change("create_dir", "x"),
    ]
    assert diff({"x": DIR, "x/a": FILE}, {"x": FILE}) == [
        Change("delete_dir", "x"),
        Change("create_file", "x"),
    ]


def test_new_file_in_existing_folder() -> None:
    assert diff({"d": DIR}, {"d": DIR, "d/a": FILE}) == [Change("create_file", "d/a")]


def test_replace_subtree() -> None:
    snap = {"a": DIR, "a/b": FILE, "ab": FILE, "c": FILE}
    assert replace_subtree(snap, "a", {"a": DIR, "a/z": FILE}) == {
        "a": DIR,
        "a/z": FILE,
        "ab": FILE,
        "c": FILE,
    }
    assert replace_subtree(snap, "c", {}) == {"a": DIR, "a/b": FILE, "ab": FILE}
    assert replace_subtree(snap, "", {"q": FILE}) == {"q": FILE}


# --- properties -------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c.gcode"])


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Entry]:
    """A consistent tree: every parent of an entry is a folder in it."""
    paths = draw(st.sets(st.lists(NAMES, min_size=1, max_size=3).map("/".join), max_size=12))
    snap: dict[str, Entry] = {}
    for path in sorted(paths, key=lambda p: p.count("/")):
        parts = path.split("/")
        if any(snap.get("/".join(parts[:i]), DIR) != DIR for i in range(1, len(parts))):
            continue  # a parent is a file
        for i in range(1, len(parts)):
            snap["/".join(parts[:i])] = DIR
        if path in snap:
            continue
        if draw(st.booleans()):
            snap[path] = DIR
        else:
            snap[path] = Entry(False, draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    return snap


def _apply(old: Snapshot, changes: list[Change], new: Snapshot) -> set[str]:
    """What a client holds after the changes: a created folder brings its content (it lists
    it), a deleted one takes its content along."""
    paths = set(old)
    for change in changes:
        if change.action.startswith("delete_"):
            assert change.path in paths, change
            paths = {p for p in paths if p != change.path and not p.startswith(change.path + "/")}
        elif change.action == "create_dir":
            assert change.path not in paths, change
            paths |= {p for p in new if p == change.path or p.startswith(change.path + "/")}
        elif change.action == "create_file":
            assert change.path not in paths, change
            paths.add(change.path)
    return paths


@given(snapshots(), snapshots())
def test_changes_lead_from_old_to_new(old: dict[str, Entry], new: dict[str, Entry]) -> None:
    changes = diff(old, new)
    assert _apply(old, changes, new) == set(new)
    modified = {c.path for c in changes if c.action == "modify_file"}
    assert modified == {
        p for p, e in new.items() if p in old and not e.is_dir and not old[p].is_dir and old[p] != e
    }
    # deletes, then creates, then modifications
    kinds = [c.action.split("_")[0] for c in changes]
    assert kinds == sorted(kinds, key=["delete", "create", "modify"].index)


@given(snapshots())
def test_same_snapshot_no_changes(snap: dict[str, Entry]) -> None:
    assert diff(snap, snap) == []


@given(snapshots(), snapshots(), NAMES)
def test_replace_subtree_then_diff_sees_only_the_rest(
    old: dict[str, Entry], new: dict[str, Entry], top: str
) -> None:
    """After a subtree is refreshed from ``new``, no change inside it is reported."""
    inside = {p: e for p, e in new.items() if p == top or p.startswith(top + "/")}
    refreshed = replace_subtree(old, top, inside)
    for change in diff(refreshed, new):
        assert change.path != top
        assert not change.path.startswith(top + "/")
