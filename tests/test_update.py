"""The update manager's pure logic: versions, git's output, state, shapes, configuration."""

from __future__ import annotations

import json

import pytest

from trioprint.domain.update import (
    LOG_FORMAT,
    GitState,
    GitVersion,
    RateLimit,
    ReleaseInfoError,
    commits_listed,
    in_refresh_window,
    infer_current_version,
    infer_upstream_version,
    manifest_client,
    owner_of,
    parse_apt_upgradable,
    parse_branches,
    parse_github_release,
    parse_log,
    parse_pip_report,
    parse_porcelain_status,
    parse_release_info,
    parse_tag_refs,
    pick_release_tag,
    python_short_version,
    repo_name_of,
    status_result,
    system_status,
    update_response,
)
from trioprint.domain.update_config import ManagerOptions, parse_update_manager

# --- versions -------------------------------------------------------------------------------


def test_git_version_from_describe() -> None:
    v = GitVersion.parse("v0.11.0-12-gabcdef12")
    assert v.valid
    assert v.tag == "v0.11.0"
    assert v.dev_count == 12
    assert not v.dirty
    assert v.short == "v0.11.0-12"
    assert v.release == (0, 11, 0)
    assert not v.is_final
    dirty = GitVersion.parse("v1.2.3-0-g01234567-dirty")
    assert dirty.dirty
    assert dirty.short == "v1.2.3-0"
    assert dirty.is_final


def test_git_version_pre_releases_order() -> None:
    alpha = GitVersion.parse("v2.0.0-alpha1-0-g1234abcd")
    beta = GitVersion.parse("v2.0.0b2")
    rc = GitVersion.parse("v2.0.0rc1")
    final = GitVersion.parse("v2.0.0")
    assert alpha.is_alpha
    assert not beta.is_alpha
    assert alpha.key() < beta.key() < rc.key() < final.key()
    assert final.is_final
    assert not rc.is_final


def test_git_version_hash_only_and_garbage() -> None:
    bare = GitVersion.parse("abcdef12-dirty")
    assert not bare.valid
    assert bare.hash_only
    assert bare.dirty
    assert bare.short == "?"
    assert not GitVersion.parse("not a version").valid
    assert GitVersion.parse("?").short == "?"


def test_inferred_versions() -> None:
    current = infer_current_version(GitVersion.parse("abcdef12"), GitVersion.parse("?"), 7)
    assert current.valid
    assert current.inferred
    assert current.short == "v0.0.0-7"
    assert current.text == "v0.0.0-7-gabcdef12-inferred"
    dirty = infer_current_version(GitVersion.parse("abcdef12-dirty"), GitVersion.parse("?"), 3)
    assert dirty.dirty
    assert dirty.short == "v0.0.0-3"
    behind = infer_current_version(
        GitVersion.parse("abcdef12"), GitVersion.parse("v1.2.0-4-g0000aaaa"), 2
    )
    assert behind.tag == "v1.1.0"
    assert infer_upstream_version(current, 9).short == "v0.0.0-9"


def test_python_short_version() -> None:
    assert python_short_version("1.4.0") == "1.4.0"
    assert python_short_version("v2.0.0b1") == "v2.0.0b1"
    assert python_short_version("1.0.0.dev3") == "1.0.0-3"
    assert python_short_version("1.0.0+g1234") == "1.0.0"
    assert python_short_version("banana") == "?"


# --- git's output ---------------------------------------------------------------------------


def test_porcelain_status() -> None:
    text = "## master...origin/master [behind 2]\n M src/a.py\nMM b.txt\n?? new.py\n?? notes.md\n"
    modified, untracked = parse_porcelain_status(text)
    assert modified == ["src/a.py", "b.txt"]
    assert untracked == ["new.py"]


def test_branches() -> None:
    plain = parse_branches("  feature\n* master\n")
    assert plain.current == "master"
    assert plain.names == ("feature", "master")
    assert not plain.detached
    detached = parse_branches("* (HEAD detached at origin/master)\n  master\n")
    assert detached.detached
    assert detached.detached_at == "origin/master"
    assert detached.names == ("master",)
    rebasing = parse_branches("* (no branch)\n")
    assert rebasing.detached
    assert rebasing.detached_at == ""


def test_log_records() -> None:
    record = "sha:{sha}\x1dauthor:Ann\x1ddate:1700000000\x1dsubject:{s}\x1dmessage:{m}\x1e\n"
    text = record.format(sha="a" * 40, s="Fix: a: b", m="body\nline") + record.format(
        sha="b" * 40, s="Second", m=""
    )
    commits = parse_log(text)
    assert [c["sha"] for c in commits] == ["a" * 40, "b" * 40]
    assert commits[0]["subject"] == "Fix: a: b"  # only the first colon splits
    assert commits[0]["message"] == "body\nline"
    assert commits[0]["date"] == "1700000000"
    assert commits[0]["author"] == "Ann"
    assert "%x1D" in LOG_FORMAT
    assert "%x1E" in LOG_FORMAT


def test_tags_and_channels() -> None:
    text = (
        f"commit {'c' * 40} refs/tags/v2.0.0a1\n"
        f"commit {'b' * 40} refs/tags/v1.1.0b1\n"
        f"tag {'x' * 40} refs/tags/odd\n"
        f"commit {'a' * 40} refs/tags/v1.0.0\n"
    )
    tags = parse_tag_refs(text)
    assert tags == {"c" * 40: "v2.0.0a1", "b" * 40: "v1.1.0b1", "a" * 40: "v1.0.0"}
    assert pick_release_tag(tags, "stable") == ("a" * 40, "v1.0.0")
    assert pick_release_tag(tags, "beta") == ("b" * 40, "v1.1.0b1")
    assert pick_release_tag({}, "stable") is None
    # the highest version wins, whatever git's order (tags of one second share a date)
    same_second = {"a" * 40: "v1.0.0", "e" * 40: "v1.1.0"}
    assert pick_release_tag(same_second, "stable") == ("e" * 40, "v1.1.0")
    listed = commits_listed([{"sha": "a" * 40}, {"sha": "d" * 40}], tags)
    assert listed == [{"sha": "a" * 40, "tag": "v1.0.0"}, {"sha": "d" * 40, "tag": None}]


def test_urls() -> None:
    assert owner_of("https://github.com/mainsail-crew/mainsail.git") == "mainsail-crew"
    assert owner_of("/tmp/origin.git") == "?"
    assert repo_name_of("https://github.com/Klipper3d/klipper.git") == "klipper"
    assert repo_name_of("/tmp/x/origin.git") == "origin"
    assert repo_name_of("git@github.com:me/thing.git") == "thing"


# --- state ----------------------------------------------------------------------------------


def good_state() -> GitState:
    return GitState(
        repo_valid=True,
        remote="origin",
        branch="master",
        upstream_url="/tmp/origin.git",
        current_commit="1" * 40,
        upstream_commit="2" * 40,
        current_version=GitVersion.parse("v1.0.0-1-g11111111"),
        upstream_version=GitVersion.parse("v1.0.0-3-g22222222"),
    )


def test_state_validity_and_problems() -> None:
    state = good_state()
    assert state.is_valid()
    assert not state.is_current
    assert state.problems("/tmp/origin.git", "master", None) == ([], [])
    state.branch = "dev"
    warnings, anomalies = state.problems("/tmp/origin.git", "master", None)
    assert warnings == []
    assert anomalies == [
        "Repo not on official remote/branch, expected: origin/master, detected: origin/dev"
    ]
    state.current_version = GitVersion.parse("v1.0.0-1-g11111111-dirty")
    state.modified_files = ["a.py"]
    assert not state.is_valid()
    warnings, _ = state.problems("/tmp/other.git", "master", None)
    assert "Repo is dirty.  Detected the following modified files: ['a.py']" in warnings
    assert not GitState().is_valid()
    assert "No git repo detected at configured path" in GitState().problems("x", "m", None)[0]


def test_state_status_shape_and_storage() -> None:
    state = good_state()
    state.set_rollback(state.rollback_point())
    status = state.status([], [])
    assert status["version"] == "v1.0.0-1"
    assert status["remote_version"] == "v1.0.0-3"
    assert status["rollback_version"] == "v1.0.0-1"
    assert status["current_hash"] == "1" * 40
    assert status["remote_hash"] == "2" * 40
    assert status["is_dirty"] is False
    assert status["pristine"] is True
    assert status["repo_name"] == "?"  # only set by a refresh
    for key in (
        "commits_behind",
        "commits_behind_count",
        "detached",
        "git_messages",
        "full_version_string",
        "corrupt",
        "warnings",
        "anomalies",
        "remote_url",
        "recovery_url",
        "owner",
        "branch",
        "remote_alias",
        "repo_detected",
    ):
        assert key in status
    stored = json.loads(json.dumps(state.stored()))
    again = GitState.restore(stored)
    assert again == state
    assert GitState.restore({"repo_valid": "junk", "current_version": 3}) == GitState()


def test_rollback_point_of_a_detached_head() -> None:
    state = good_state()
    state.detached = True
    assert state.rollback_point()[1] == "origin/master"


# --- web clients, GitHub, apt, pip ------------------------------------------------------------


def test_release_info() -> None:
    info = parse_release_info(
        b'{"project_name": "mainsail", "project_owner": "mainsail-crew", "version": "v2.13.2"}'
    )
    assert (info.project_owner, info.project_name, info.version) == (
        "mainsail-crew",
        "mainsail",
        "v2.13.2",
    )
    with pytest.raises(ReleaseInfoError, match="version"):
        parse_release_info('{"project_name": "a", "project_owner": "b"}')
    with pytest.raises(ReleaseInfoError, match="JSON"):
        parse_release_info(b"{")
    assert manifest_client('{"name": "Mainsail"}') == ("mainsail-crew", "mainsail")
    assert manifest_client('{"name": "other"}') is None


def test_github_release() -> None:
    latest = {
        "name": "v2.14.0",
        "prerelease": False,
        "assets": [
            {
                "name": "mainsail.zip",
                "browser_download_url": "https://x/m.zip",
                "content_type": "application/zip",
                "size": 1234,
            }
        ],
    }
    release = parse_github_release(latest)
    assert release is not None
    assert release.version == "v2.14.0"
    assert (release.url, release.content_type, release.size) == (
        "https://x/m.zip",
        "application/zip",
        1234,
    )
    assert parse_github_release([latest]) == release
    assert parse_github_release([]) is None
    assert parse_github_release({"message": "Not Found"}) is not None  # version "?"
    rate = RateLimit.from_headers(
        {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59", "x-ratelimit-reset": "1700"},
        RateLimit(),
    )
    assert rate.stats() == {
        "github_rate_limit": 60,
        "github_requests_remaining": 59,
        "github_limit_reset_time": 1700.0,
    }
    assert RateLimit.from_headers({}, rate) == rate


def test_apt_and_pip() -> None:
    text = (
        "Listing... Done\nlibc6/stable 2.36-9 amd64 [upgradable from: 2.36-8]\ngit/stable 1 all\n"
    )
    assert parse_apt_upgradable(text) == ["libc6", "git"]
    report = {"install": [{"metadata": {"name": "Trio_Print", "version": "1.2.0"}}]}
    assert parse_pip_report(json.dumps(report), "trio-print") == "1.2.0"
    assert parse_pip_report('{"install": []}', "x") is None
    with pytest.raises(ValueError, match="no JSON"):
        parse_pip_report("oops", "x")


def test_answers() -> None:
    result = status_result({"system": system_status([])}, False, RateLimit())
    assert list(result) == [
        "github_rate_limit",
        "github_requests_remaining",
        "github_limit_reset_time",
        "version_info",
        "busy",
    ]
    assert result["version_info"]["system"] == {
        "name": "system",
        "configured_type": "system",
        "package_count": 0,
        "package_list": [],
    }
    assert update_response(" Done \n", "app", 7, True) == {
        "message": "Done",
        "application": "app",
        "proc_id": 7,
        "complete": True,
    }
    assert in_refresh_window(3, (0, 5))
    assert not in_refresh_window(5, (0, 5))
    assert in_refresh_window(23, (22, 2))
    assert in_refresh_window(1, (22, 2))
    assert not in_refresh_window(12, (22, 2))


# --- configuration ----------------------------------------------------------------------------


def test_config_sections() -> None:
    manager, apps, warnings = parse_update_manager(
        {"enable_auto_refresh": "True", "refresh_interval": "24", "refresh_window": "1-4"},
        {
            "klipper_macros": {"type": "git_repo", "path": "~/m", "origin": "https://g/x/y"},
            "mainsail": {"type": "web", "path": "~/mainsail", "repo": "mainsail-crew/mainsail"},
            "tool": {"type": "python", "virtualenv": "~/venv", "is_system_service": "False"},
        },
    )
    assert warnings == []
    assert manager == ManagerOptions(True, 24, (1, 4))
    git, web, tool = apps
    assert git.origin == "https://g/x/y.git"
    assert git.primary_branch == "master"
    assert git.channel == "dev"
    assert git.managed_services == ("klipper_macros",)
    assert web.channel == "stable"
    assert web.repo == "mainsail-crew/mainsail"
    assert tool.project_name == "tool"
    assert tool.managed_services == ()
    assert git.config_hash
    assert git.config_hash != web.config_hash


def test_config_problems_are_warnings() -> None:
    manager, apps, warnings = parse_update_manager(
        {"refresh_window": "3-3", "enable_auto_refresh": "maybe", "bogus": "1"},
        {
            "a": {"type": "zip", "path": "x"},
            "b": {"type": "git_repo", "path": "x"},
            "c": {"type": "web", "path": "x", "repo": "noslash", "channel": "dev"},
            "system": {"type": "web"},
            "client d": {"type": "web", "path": "p", "repo": "o/n", "channel": "dev"},
            "e": {
                "type": "git_repo",
                "path": "x",
                "origin": "o",
                "managed_services": "e nope",
                "surprise": "1",
            },
        },
    )
    assert manager == ManagerOptions()
    assert [a.name for a in apps] == ["d", "e"]
    assert apps[0].channel == "stable"
    assert apps[0].channel_invalid
    assert apps[1].managed_services == ("e",)
    text = "\n".join(warnings)
    for fragment in (
        "[update_manager] bogus: unknown option",
        "refresh_window",
        "enable_auto_refresh: expected a boolean",
        "Failed to load extension a: type 'zip' is not supported by trioprint",
        "Failed to load extension b: [update_manager b]: option 'origin' is required",
        "Failed to load extension c: [update_manager c] repo: expected OWNER/NAME",
        "Extension system already added",
        "Invalid value 'dev' for option 'channel'",
        "contains an invalid value 'nope'",
        "[update_manager e] surprise: unknown option, ignored",
    ):
        assert fragment in text, fragment
