"""The update manager's pure logic: versions, git's output, a repository's state and the
shapes Moonraker 0.11's ``machine.update.*`` answers with.

Nothing here runs a command or reads a file: :mod:`trioprint.components.update_manager` runs
``git`` (and pip, and apt) and hands the text it printed to the parsers below; the state
classes turn what was learnt into the ``version_info`` entries Mainsail's update panel renders.
The configuration sections are read in :mod:`trioprint.domain.update_config`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

UNKNOWN = "?"

#: ``git log --format``: one record per commit (0x1E), fields split by 0x1D.
LOG_FORMAT = "sha:%H%x1Dauthor:%an%x1Ddate:%ct%x1Dsubject:%s%x1Dmessage:%b%x1E"
#: ``git for-each-ref --format``: ``commit SHA refs/tags/NAME`` (an annotated tag peeled).
TAG_FORMAT = (
    "%(if)%(*objecttype)%(then)%(*objecttype) %(*objectname)"
    "%(else)%(objecttype) %(objectname)%(end) %(refname)"
)
#: Commits of ``commits_behind`` listed (tagged ones beyond it are listed too), as Moonraker.
MAX_COMMITS_LISTED = 30
#: Commits asked of ``git log``.
MAX_LOG_COUNT = 100
#: Untracked files with these suffixes make a repository not pristine.
SOURCE_SUFFIXES = (".py", ".c", ".cpp")


# --- versions -----------------------------------------------------------------------------

_GIT_VERSION_RE = re.compile(
    r"""
    (?P<tag>v?(?P<release>\d+(?:\.\d+)*)
        (?:[-_.]?(?P<pre_l>alpha|beta|preview|pre|rc|a|b|c)[-_.]?(?P<pre_n>\d+)?)?)
    (?:-(?P<dev>\d+)(?:-g(?P<sha>[0-9a-f]+))?)?
    (?P<dirty>-dirty)?
    (?P<inferred>-(?:inferred|shallow))?
    """,
    re.VERBOSE | re.IGNORECASE,
)
_HASH_ONLY_RE = re.compile(r"(?P<sha>[0-9a-f]+)(?P<dirty>-dirty)?", re.IGNORECASE)
_PRE_RANK = {"a": 1, "alpha": 1, "b": 2, "beta": 2}  # rc, c, pre, preview: 3


@attrs.frozen
class GitVersion:
    """A ``git describe --tags --long --dirty`` answer (or an inferred one), parsed."""

    text: str
    valid: bool = False
    tag: str = UNKNOWN
    release: tuple[int, ...] = ()
    #: (0, rank, n) for a pre-release (alpha 1, beta 2, rc 3), (1, 0, 0) for a final one.
    pre: tuple[int, int, int] = (1, 0, 0)
    dev_count: int = 0
    dirty: bool = False
    inferred: bool = False
    #: Only an abbreviated hash (no tag reachable).
    hash_only: bool = False

    @classmethod
    def parse(cls, text: str) -> GitVersion:
        text = text.strip()
        match = _GIT_VERSION_RE.fullmatch(text)
        if match is None:
            bare = _HASH_ONLY_RE.fullmatch(text)
            if bare is None:
                return cls(text)
            return cls(text, dirty=bare["dirty"] is not None, inferred=True, hash_only=True)
        pre = (1, 0, 0)
        if match["pre_l"] is not None:
            pre = (0, _PRE_RANK.get(match["pre_l"].lower(), 3), int(match["pre_n"] or 0))
        return cls(
            text,
            valid=True,
            tag=match["tag"],
            release=tuple(int(p) for p in match["release"].split(".")),
            pre=pre,
            dev_count=int(match["dev"] or 0),
            dirty=match["dirty"] is not None,
            inferred=match["inferred"] is not None,
        )

    @property
    def short(self) -> str:
        """``TAG-COUNT`` (``v1.2.0-4``), ``?`` if not a version."""
        return f"{self.tag}-{self.dev_count}" if self.valid else UNKNOWN

    @property
    def is_final(self) -> bool:
        return self.valid and self.pre[0] == 1 and self.dev_count == 0

    @property
    def is_alpha(self) -> bool:
        return self.valid and self.pre[:2] == (0, 1)

    def key(self) -> tuple[tuple[int, ...], tuple[int, int, int], int]:
        return (self.release, self.pre, self.dev_count)

    def previous_tag(self) -> str:
        """The tag released before this one, guessed (``v1.2.0`` -> ``v1.1.0``)."""
        if not self.valid:
            return "v0.0.0"
        if self.inferred:
            return self.tag
        parts = list(self.release)
        for i in reversed(range(len(parts))):
            if parts[i] > 0:
                parts[i] -= 1
                break
        return "v" + ".".join(str(p) for p in parts)


def infer_current_version(described: GitVersion, upstream: GitVersion, count: int) -> GitVersion:
    """A version for a checkout no tag reaches: the tag before upstream's, ``count`` commits."""
    tag = upstream.previous_tag() if upstream.valid else "v0.0.0"
    sha = f"-g{described.text.removesuffix('-dirty')}" if described.hash_only else ""
    dirty = "-dirty" if described.dirty else ""
    return GitVersion.parse(f"{tag}-{count}{sha}{dirty}-inferred")


def infer_upstream_version(current: GitVersion, count: int) -> GitVersion:
    return GitVersion.parse(f"{current.tag}-{count}-inferred")


_PY_VERSION_RE = re.compile(
    r"""v?(?P<release>\d+(?:\.\d+)*)
    (?P<pre>[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?
    (?P<post>(?:-\d+)|(?:[-_.]?(?:post|rev|r)[-_.]?\d*))?
    (?:[-_.]?dev[-_.]?(?P<dev>\d*))?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?""",
    re.VERBOSE | re.IGNORECASE,
)


def python_short_version(version: str) -> str:
    """A package version as Moonraker shows it: ``1.4.0``, ``2.0.0b1``, ``1.0.0-3`` (dev 3)."""
    match = _PY_VERSION_RE.fullmatch(version.strip())
    if match is None:
        return UNKNOWN
    tag = ("v" if version.strip()[:1] in "vV" else "") + match["release"]
    tag += (match["pre"] or "") + (match["post"] or "")
    dev = int(match["dev"] or 0)
    return f"{tag}-{dev}" if dev else tag


# --- git's output -------------------------------------------------------------------------


def parse_porcelain_status(text: str) -> tuple[list[str], list[str]]:
    """``git status --porcelain -b``: (modified files, untracked source files)."""
    modified: list[str] = []
    untracked: list[str] = []
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or parts[0] == "##":
            continue
        code, name = parts[0], parts[1].strip()
        if code == "??":
            if name.endswith(SOURCE_SUFFIXES):
                untracked.append(name)
        else:
            modified.append(name)
    return modified, untracked


@attrs.frozen
class Branches:
    names: tuple[str, ...]
    current: str
    detached: bool
    #: For a detached HEAD: the ref git names (``origin/master`` in "HEAD detached at ...").
    detached_at: str = ""


def parse_branches(text: str) -> Branches:
    """``git branch --list --no-color``."""
    names: list[str] = []
    current = UNKNOWN
    for line in text.splitlines():
        name = line.strip()
        if not name:
            continue
        if name.startswith("*"):
            name = name[1:].strip()
            current = name
        if name.startswith("("):
            continue
        names.append(name)
    if current.startswith("("):
        at = ""
        if current.startswith("(HEAD detached"):
            at = current.rstrip(")").split()[-1]
        return Branches(tuple(names), current, True, at)
    return Branches(tuple(names), current, False)


def parse_log(text: str) -> list[dict[str, Any]]:
    """``git log --format=LOG_FORMAT``: one dict per commit (sha, author, date, subject,
    message), newest first."""
    commits: list[dict[str, Any]] = []
    for record in text.split("\x1e"):
        record = record.strip()
        if not record:
            continue
        commit: dict[str, Any] = {}
        for field in record.split("\x1d"):
            key, sep, value = field.strip().partition(":")
            if sep and key:
                commit[key] = value.strip()
        if "sha" in commit:
            commits.append(commit)
    return commits


def parse_tag_refs(text: str) -> dict[str, str]:
    """``git for-each-ref --format=TAG_FORMAT refs/tags``: commit sha -> tag, in git's order."""
    tags: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) == 3 and parts[0] == "commit":
            tags.setdefault(parts[1], parts[2].rsplit("/", 1)[-1])
    return tags


def pick_release_tag(tags: Mapping[str, str], channel: str) -> tuple[str, str] | None:
    """The highest version among ``tags`` fit for ``channel``: (sha, tag), else None.

    (The highest, not the newest: tags made within one second have the same date.)
    """
    best: tuple[GitVersion, str, str] | None = None
    for sha, tag in tags.items():
        version = GitVersion.parse(tag)
        if not version.valid:
            continue
        fits = (channel == "stable" and version.is_final) or (
            channel == "beta" and not version.is_alpha
        )
        if fits and (best is None or version.key() > best[0].key()):
            best = (version, sha, tag)
    return (best[1], best[2]) if best else None


def owner_of(url: str) -> str:
    match = re.match(r"https?://[^/]+/([^/]+)", url)
    return match.group(1) if match else UNKNOWN


def repo_name_of(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name.removesuffix(".git")
    return name or UNKNOWN


def same_url(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        url = url.strip().lower()
        return url if url.endswith(".git") else url + ".git"

    return norm(a) == norm(b)


# --- a git repository's state ----------------------------------------------------------------


@attrs.define
class GitState:
    """What is known of one ``git_repo`` checkout (kept in the database between runs)."""

    repo_valid: bool = False
    owner: str = UNKNOWN
    repo_name: str = UNKNOWN
    remote: str = UNKNOWN
    branch: str = UNKNOWN
    upstream_url: str = UNKNOWN
    recovery_url: str = UNKNOWN
    branches: list[str] = attrs.Factory(list)
    detached: bool = False
    git_messages: list[str] = attrs.Factory(list)
    commits_behind: list[dict[str, Any]] = attrs.Factory(list)
    commits_behind_count: int = 0
    diverged: bool = False
    corrupt: bool = False
    modified_files: list[str] = attrs.Factory(list)
    untracked_files: list[str] = attrs.Factory(list)
    current_commit: str = UNKNOWN
    upstream_commit: str = UNKNOWN
    current_version: GitVersion = GitVersion(UNKNOWN)
    upstream_version: GitVersion = GitVersion(UNKNOWN)
    rollback_commit: str = UNKNOWN
    rollback_branch: str = UNKNOWN
    rollback_version: GitVersion = GitVersion(UNKNOWN)
    pinned_commit_valid: bool = True

    # -- persistence -------------------------------------------------------------------

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in attrs.fields(GitState):
            value = getattr(self, field.name)
            out[field.name] = value.text if isinstance(value, GitVersion) else value
        return out

    @classmethod
    def restore(cls, data: Mapping[str, Any]) -> GitState:
        state = cls()
        for field in attrs.fields(GitState):
            if field.name not in data:
                continue
            value = data[field.name]
            default = getattr(state, field.name)
            if isinstance(default, GitVersion):
                if isinstance(value, str):
                    setattr(state, field.name, GitVersion.parse(value))
            elif isinstance(value, type(default)):
                setattr(state, field.name, value)
        if "rollback_commit" not in data:
            state.set_rollback(state.rollback_point())
        return state

    # -- rollback ----------------------------------------------------------------------

    def rollback_point(self) -> tuple[str, str, GitVersion]:
        """(commit, branch, version) to come back to: where the checkout is now."""
        branch = self.branch
        if self.detached:
            known = UNKNOWN not in (self.remote, self.branch)
            branch = f"{self.remote}/{self.branch}" if known else UNKNOWN
        return self.current_commit, branch, self.current_version

    def set_rollback(self, point: tuple[str, str, GitVersion]) -> None:
        self.rollback_commit, self.rollback_branch, self.rollback_version = point

    # -- judgement ---------------------------------------------------------------------

    @property
    def is_dirty(self) -> bool:
        return self.current_version.dirty

    @property
    def is_current(self) -> bool:
        return self.current_commit == self.upstream_commit

    def is_valid(self) -> bool:
        """Whether an update may be tried (Moonraker's rule)."""
        return (
            UNKNOWN not in (self.branch, self.remote, self.upstream_commit)
            and self.repo_valid
            and not self.corrupt
            and not (self.diverged or self.is_dirty or self.detached)
        )

    def problems(
        self, origin: str, primary_branch: str, pinned_commit: str | None
    ) -> tuple[list[str], list[str]]:
        """(warnings, anomalies), worded as Moonraker words them."""
        warnings: list[str] = []
        anomalies: list[str] = []
        if pinned_commit is not None and not self.pinned_commit_valid:
            anomalies.append(f"Pinned Commit {pinned_commit} does not exist")
        if not self.repo_valid:
            warnings.append("No git repo detected at configured path")
        if self.corrupt:
            warnings.append("Repo is corrupt")
        if self.branch == UNKNOWN:
            warnings.append("Failed to detect git branch")
        elif self.remote == UNKNOWN:
            warnings.append(f"Failed to detect tracking remote for branch {self.branch}")
        elif self.branch != primary_branch or self.remote != "origin":
            anomalies.append(
                "Repo not on official remote/branch, expected: "
                f"origin/{primary_branch}, detected: {self.remote}/{self.branch}"
            )
        if self.upstream_url == UNKNOWN:
            warnings.append("Failed to detect repo url")
        elif not same_url(self.upstream_url, origin):
            anomalies.append(f"Unofficial remote url: {self.upstream_url}")
        if self.untracked_files:
            anomalies.append(f"Repo has untracked source files: {self.untracked_files}")
        if self.diverged:
            anomalies.append("Repo has diverged from remote")
        if self.detached:
            warnings.append("Detached HEAD detected")
        if self.is_dirty:
            warnings.append(
                f"Repo is dirty.  Detected the following modified files: {self.modified_files}"
            )
        return warnings, anomalies

    def status(self, anomalies: list[str], warnings: list[str]) -> dict[str, Any]:
        """The repository part of a ``git_repo`` entry of ``version_info``."""
        return {
            "detected_type": "git_repo",
            "repo_detected": self.repo_valid,
            "remote_alias": self.remote,
            "branch": self.branch,
            "owner": self.owner,
            "repo_name": self.repo_name,
            "remote_url": self.upstream_url,
            "recovery_url": self.recovery_url,
            "version": self.current_version.short,
            "remote_version": self.upstream_version.short,
            "rollback_version": self.rollback_version.short,
            "current_hash": self.current_commit,
            "remote_hash": self.upstream_commit,
            "is_dirty": self.is_dirty,
            "detached": self.detached,
            "commits_behind": self.commits_behind,
            "commits_behind_count": self.commits_behind_count,
            "git_messages": self.git_messages,
            "full_version_string": self.current_version.text,
            "pristine": not self.untracked_files and not self.is_dirty,
            "corrupt": self.corrupt,
            "warnings": warnings,
            "anomalies": anomalies,
        }


def commits_listed(commits: list[dict[str, Any]], tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The first :data:`MAX_COMMITS_LISTED` commits behind and any tagged one, with ``tag``."""
    listed: list[dict[str, Any]] = []
    for i, commit in enumerate(commits):
        tag = tags.get(commit["sha"])
        if i < MAX_COMMITS_LISTED or tag is not None:
            listed.append({**commit, "tag": tag})
    return listed


# --- web clients ----------------------------------------------------------------------------


class ReleaseInfoError(ValueError):
    pass


@attrs.frozen
class ReleaseInfo:
    project_name: str
    project_owner: str
    version: str
    asset_name: str | None = None


def parse_release_info(data: bytes | str) -> ReleaseInfo:
    """A web client's ``release_info.json``."""
    try:
        info = json.loads(data)
    except ValueError as exc:
        raise ReleaseInfoError(f"not JSON: {exc}") from None
    if not isinstance(info, dict):
        raise ReleaseInfoError("not a JSON object")
    for key in ("project_name", "project_owner", "version"):
        value = info.get(key)
        if not isinstance(value, str) or not value:
            raise ReleaseInfoError(f"no {key!r}")
    asset = info.get("asset_name")
    return ReleaseInfo(
        info["project_name"],
        info["project_owner"],
        info["version"],
        asset_name=asset if isinstance(asset, str) else None,
    )


#: Web clients recognised by their manifest when they have no release_info.json.
KNOWN_WEB_CLIENTS = {"mainsail": "mainsail-crew", "fluidd": "fluidd-core"}


def manifest_client(data: bytes | str) -> tuple[str, str] | None:
    """(owner, name) of a known web client from its ``manifest.json``, else None."""
    try:
        manifest = json.loads(data)
        name = str(manifest["name"]).lower()
    except (ValueError, KeyError, TypeError):
        return None
    owner = KNOWN_WEB_CLIENTS.get(name)
    return (owner, name) if owner else None


@attrs.frozen
class Release:
    """What a GitHub release says: its name and its (first, or named) asset."""

    version: str
    url: str = UNKNOWN
    content_type: str = UNKNOWN
    size: int = 0
    prerelease: bool = False


def parse_github_release(data: Any, asset_name: str | None = None) -> Release | None:
    """A ``/repos/O/R/releases/latest`` (an object) or ``/releases?per_page=1`` (a list)."""
    if isinstance(data, list):
        data = data[0] if data else None
    if not isinstance(data, dict):
        return None
    assets = data.get("assets")
    assets = [a for a in assets if isinstance(a, dict)] if isinstance(assets, list) else []
    asset: dict[str, Any] = assets[0] if assets else {}
    if asset_name is not None:
        asset = next((a for a in assets if a.get("name") == asset_name), asset)
    size = asset.get("size")
    return Release(
        version=str(data.get("name") or UNKNOWN),
        url=str(asset.get("browser_download_url") or UNKNOWN),
        content_type=str(asset.get("content_type") or UNKNOWN),
        size=size if isinstance(size, int) else 0,
        prerelease=bool(data.get("prerelease")),
    )


@attrs.frozen
class RateLimit:
    limit: int | None = None
    remaining: int | None = None
    reset_time: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], previous: RateLimit) -> RateLimit:
        def number(name: str) -> int | None:
            try:
                return int(headers[name])
            except (KeyError, ValueError):
                return None

        limit = number("x-ratelimit-limit")
        if limit is None:
            return previous
        reset = number("x-ratelimit-reset")
        return cls(limit, number("x-ratelimit-remaining"), float(reset) if reset else None)

    def stats(self) -> dict[str, Any]:
        return {
            "github_rate_limit": self.limit,
            "github_requests_remaining": self.remaining,
            "github_limit_reset_time": self.reset_time,
        }


# --- system packages and pip --------------------------------------------------------------


def parse_apt_upgradable(text: str) -> list[str]:
    """``apt list --upgradable``: the package names (``Listing...`` and notes skipped)."""
    return [
        line.split("/", 1)[0].strip()
        for line in text.splitlines()
        if "/" in line and not line.startswith(("Listing", "WARNING"))
    ]


def parse_pip_report(text: str, project: str) -> str | None:
    """``pip install --dry-run --report -``: the version pip would install of ``project``
    (None: nothing to install, it is current)."""
    try:
        report = json.loads(text)
    except ValueError:
        raise ValueError("pip printed no JSON report") from None
    installs = report.get("install") if isinstance(report, dict) else None
    if not isinstance(installs, list):
        return None
    wanted = normalize_project(project)
    for item in installs:
        meta = item.get("metadata") if isinstance(item, dict) else None
        if isinstance(meta, dict) and normalize_project(str(meta.get("name", ""))) == wanted:
            version = meta.get("version")
            return str(version) if version else None
    return None


def normalize_project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the answers ----------------------------------------------------------------------------


def status_result(version_info: Mapping[str, Any], busy: bool, rate: RateLimit) -> dict[str, Any]:
    """``machine.update.status`` / ``refresh`` and ``notify_update_refreshed``."""
    return {**rate.stats(), "version_info": dict(version_info), "busy": busy}


def update_response(message: str, application: str, proc_id: int, complete: bool) -> dict[str, Any]:
    """One ``notify_update_response``."""
    return {
        "message": message.strip(),
        "application": application,
        "proc_id": proc_id,
        "complete": complete,
    }


def system_status(packages: list[str]) -> dict[str, Any]:
    return {
        "name": "system",
        "configured_type": "system",
        "package_count": len(packages),
        "package_list": list(packages),
    }


def in_refresh_window(hour: int, window: tuple[int, int]) -> bool:
    start, end = window
    if start < end:
        return start <= hour < end
    return hour >= start or hour < end
