"""``[update_manager NAME]`` with ``type: git_repo``: a checkout kept up to date with ``git``.

Every step is the real ``git`` command run with :func:`trio.run_process` (``-C PATH``, never a
shell, no prompt for credentials): ``status``, ``branch``, ``fetch``, ``rev-parse``,
``describe``, ``rev-list``, ``log`` and ``for-each-ref`` for a refresh; ``pull --ff-only``
(or ``merge --ff-only`` to a tag or a pinned commit) for an update; ``reset --hard`` (or a new
clone) for a recovery; ``reset --hard`` to the commit before the last update for a rollback.
What git printed is parsed by :mod:`trioprint.domain.update`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from ..domain.update import (
    LOG_FORMAT,
    MAX_LOG_COUNT,
    TAG_FORMAT,
    UNKNOWN,
    GitState,
    GitVersion,
    commits_listed,
    infer_current_version,
    infer_upstream_version,
    owner_of,
    parse_branches,
    parse_log,
    parse_porcelain_status,
    parse_tag_refs,
    pick_release_tag,
    repo_name_of,
)
from ..domain.update_config import AppOptions
from .update_base import AppUpdater, Context, Output, UpdateError

log = logging.getLogger(__name__)

#: Seconds for a fetch, pull or clone (the network), and for any other git command.
GIT_NETWORK_TIMEOUT = 300.0
GIT_TIMEOUT = 20.0
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
    "GIT_HTTP_LOW_SPEED_TIME": "20",
    "LC_ALL": "C",
}


class GitError(UpdateError):
    def __init__(self, message: str, output: Output | None = None) -> None:
        super().__init__(message)
        self.output = output


class GitRepoUpdater(AppUpdater):
    kind = "git_repo"

    def __init__(self, options: AppOptions, context: Context, default_interval: float) -> None:
        super().__init__(options, context, default_interval)
        assert options.path is not None
        assert options.origin is not None
        self.path = Path(options.path).expanduser().resolve()
        self.origin = options.origin
        self.primary_branch = options.primary_branch or "master"
        self.pinned = options.pinned_commit
        self.state = GitState()
        self.prefix = f"Git Repo {self.name}: "
        self._refresh_lock = trio.Lock()

    # -- storage -----------------------------------------------------------------------

    def stored(self) -> dict[str, Any]:
        return {**super().stored(), **self.state.stored(), "is_valid": self.valid}

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        self.state = GitState.restore(data)
        self.valid = self.state.is_valid()

    # -- git ---------------------------------------------------------------------------

    async def git(self, *args: str, limit: float = GIT_TIMEOUT, check: bool = True) -> Output:
        argv = ["git", "-C", str(self.path), *args]
        out = await self.context.execute(argv, limit=limit, env=GIT_ENV)
        if check and out.returncode != 0:
            self._failed(args, out)
        return out

    def _failed(self, args: tuple[str, ...], out: Output) -> None:
        messages = [m for m in (out.stdout.strip(), out.stderr.strip()) if m]
        self.state.git_messages.extend(messages)
        if any("corrupt" in line.lower() for line in out.lines() if "fatal" in line.lower()):
            self.state.corrupt = True
        last = out.lines()[-1] if out.lines() else f"exit status {out.returncode}"
        raise GitError(f"Git Command '{' '.join(args)}' failed: {last}", out)

    async def _text(self, *args: str) -> str:
        return (await self.git(*args)).stdout.strip()

    async def _network(self, *args: str) -> None:
        """A fetch, pull or clone: its progress lines become notifications."""
        out = await self.git(*args, limit=GIT_NETWORK_TIMEOUT, check=False)
        for line in out.lines():
            self.context.notify(line)
        if out.returncode != 0:
            self._failed(args, out)

    async def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        out = await self.git("merge-base", "--is-ancestor", ancestor, descendant, check=False)
        if out.returncode not in (0, 1):
            self._failed(("merge-base", "--is-ancestor", ancestor, descendant), out)
        return out.returncode == 0

    async def _config_get(self, key: str) -> str | None:
        out = await self.git("config", "--get", key, check=False)
        if out.returncode == 1:
            return None
        if out.returncode != 0:
            self._failed(("config", "--get", key), out)
        return out.stdout.strip() or None

    def _has_git_dir(self) -> bool:
        dot_git = self.path / ".git"
        return dot_git.is_dir() or dot_git.is_file()

    @property
    def tracking(self) -> str:
        return f"{self.state.remote}/{self.state.branch}"

    # -- refresh -----------------------------------------------------------------------

    async def refresh(self) -> None:
        await self._refresh_state(fetch=True, raise_errors=False)

    async def _refresh_state(self, *, fetch: bool, raise_errors: bool = True) -> None:
        self.valid = False
        try:
            async with self._refresh_lock:
                await self._read_repo(fetch)
        except (UpdateError, OSError) as exc:
            log.info("%s refresh failed: %s", self.prefix, exc)
            if raise_errors:
                raise
        else:
            self.valid = self.state.is_valid()
        if not self.valid:
            log.info("%srepo validation failed, updates disabled", self.prefix)

    async def _read_repo(self, fetch: bool) -> None:
        state = self.state
        state.pinned_commit_valid = True
        state.current_commit = state.upstream_commit = UNKNOWN
        state.current_version = state.upstream_version = GitVersion(UNKNOWN)
        state.git_messages.clear()
        state.repo_valid = False
        if not await trio.to_thread.run_sync(self._has_git_dir):
            log.info("%spath %s is not a git repo", self.prefix, self.path)
            return
        status = await self.git("status", "--porcelain", "-b")
        state.modified_files, state.untracked_files = parse_porcelain_status(status.stdout)
        state.repo_valid = True
        await self._find_branch()
        if state.remote == UNKNOWN:
            raise GitError(f"Git Repo {self.name}: No valid git remote detected")
        state.upstream_url = await self._text("remote", "get-url", state.remote)
        if state.remote == "origin":
            state.recovery_url = state.upstream_url
        else:
            remotes = (await self._text("remote")).split()
            origin = "origin" in remotes
            state.recovery_url = await self._text("remote", "get-url", "origin") if origin else "?"
        if fetch:
            await self._network("fetch", state.remote, "--prune", "--progress")
        state.diverged = not state.detached and not await self._is_ancestor("HEAD", self.tracking)
        state.owner = owner_of(state.upstream_url)
        state.repo_name = repo_name_of(state.upstream_url)
        state.current_commit = await self._text("rev-parse", "HEAD")
        described = GitVersion.parse(
            await self._text("describe", "--always", "--tags", "--long", "--dirty", "--abbrev=8")
        )
        upstream = await self._upstream_version()
        await self._set_versions(described, upstream)
        state.commits_behind = []
        if state.commits_behind_count > 0:
            ref = self.tracking
            if self.options.channel != "dev" or self.pinned is not None:
                ref = state.upstream_commit
            text = await self._text(
                "log",
                f"{state.current_commit}..{ref}",
                f"--format={LOG_FORMAT}",
                f"--max-count={MAX_LOG_COUNT}",
            )
            state.commits_behind = commits_listed(parse_log(text), await self._tags())
        state.corrupt = False
        if UNKNOWN in (state.rollback_commit, state.rollback_branch):
            state.set_rollback(state.rollback_point())

    async def _find_branch(self) -> None:
        state = self.state
        branches = parse_branches(await self._text("branch", "--list", "--no-color"))
        state.branches = list(branches.names)
        state.detached = branches.detached
        if not branches.detached:
            state.branch = branches.current
            state.remote = await self._config_get(f"branch.{state.branch}.remote") or UNKNOWN
            return
        for remote in (await self._text("remote")).split():
            if branches.detached_at.startswith(remote + "/"):
                state.remote = remote
                state.branch = branches.detached_at[len(remote) + 1 :]
                return
        # not named by git: the previously tracked remote and branch (if any) are kept

    async def _tags(self) -> dict[str, str]:
        text = await self._text(
            "for-each-ref",
            "--count=100",
            "--sort=-creatordate",
            "--contains=HEAD",
            f"--merged={self.tracking}",
            f"--format={TAG_FORMAT}",
            "refs/tags",
        )
        return parse_tag_refs(text)

    async def _upstream_version(self) -> GitVersion:
        state = self.state
        state.commits_behind_count = 0
        described = UNKNOWN
        if self.pinned is not None:
            state.upstream_commit = state.current_commit
            if not state.current_commit.startswith(self.pinned):
                exists = await self.git("cat-file", "-e", f"{self.pinned}^{{commit}}", check=False)
                if exists.returncode != 0:
                    state.pinned_commit_valid = False
                elif await self._is_ancestor(state.current_commit, self.pinned):
                    state.upstream_commit = await self._text("rev-parse", self.pinned)
            described = await self._text(
                "describe", state.upstream_commit, "--always", "--tags", "--long", "--abbrev=8"
            )
        elif self.options.channel == "dev":
            state.upstream_commit = await self._text("rev-parse", self.tracking)
            described = await self._text(
                "describe", self.tracking, "--always", "--tags", "--long", "--abbrev=8"
            )
        else:
            picked = pick_release_tag(await self._tags(), self.options.channel)
            state.upstream_commit, described = picked if picked else (UNKNOWN, UNKNOWN)
        if state.upstream_commit != UNKNOWN:
            count = await self._text("rev-list", f"HEAD..{state.upstream_commit}", "--count")
            state.commits_behind_count = int(count or 0)
        return GitVersion.parse(described)

    async def _set_versions(self, current: GitVersion, upstream: GitVersion) -> None:
        state = self.state
        if not current.valid:
            count = int(await self._text("rev-list", "HEAD", "--count") or 0)
            current = infer_current_version(current, upstream, count)
        if self.options.channel == "dev" and self.pinned is None:
            if not upstream.valid:
                if current.inferred:
                    text = await self._text("rev-list", state.upstream_commit, "--count")
                    count = int(text or 0)
                else:
                    count = state.commits_behind_count + current.dev_count
                upstream = infer_upstream_version(current, count)
        elif not upstream.valid or upstream.key() <= current.key():
            state.upstream_commit = state.current_commit
            upstream = current if not upstream.valid else upstream
        state.current_version = current
        state.upstream_version = upstream

    # -- update, recover, rollback -------------------------------------------------------

    async def update(self) -> bool:
        if not self.valid:
            raise UpdateError("Update aborted, repo not valid")
        if self.state.is_dirty:
            raise UpdateError("Update aborted, repo has been modified")
        if self.state.is_current:
            return False
        self.context.notify(f"Updating Application {self.name}...")
        await self._pull()
        await self._refresh_state(fetch=False)
        await self.restart_services()
        self.notify("Update Finished...", complete=True)
        return True

    async def _pull(self) -> None:
        self.notify("Updating Repo...")
        point = self.state.rollback_point()
        state = self.state
        await self._network("fetch", state.remote, "--prune", "--progress")
        to_commit = self.options.channel != "dev" or self.pinned is not None
        if state.detached:
            await self.git("checkout", "-q", self.tracking)
            if to_commit:
                await self.git("reset", "--hard", state.upstream_commit)
        elif not await self._is_ancestor("HEAD", self.tracking):
            self.notify("Repo has diverged, attempting git reset")
            await self.git("reset", "--hard", state.upstream_commit if to_commit else self.tracking)
        elif to_commit:
            await self._network("merge", "--ff-only", state.upstream_commit)
        else:
            await self._network("pull", "--ff-only", "--progress")
        state.set_rollback(point)

    async def _recovery_ref(self, upstream_ref: str | None = None) -> str:
        """The current commit when the primary branch contains it, else the branch itself."""
        if upstream_ref is None:
            remote = await self._config_get(f"branch.{self.primary_branch}.remote")
            if remote is None:
                raise UpdateError(
                    f"Failed to find remote for primary branch '{self.primary_branch}'"
                )
            upstream_ref = f"{remote}/{self.primary_branch}"
        candidates = [c for c in (self.pinned, self.state.current_commit) if c]
        for commit in candidates:
            if commit != UNKNOWN and await self._is_ancestor(commit, upstream_ref):
                return commit
        return upstream_ref

    async def recover(self, hard: bool, update_deps: bool) -> None:
        self.notify("Attempting Repo Recovery...")
        if hard:
            await self._clone()
            await self._refresh_state(fetch=True)
        else:
            self.notify("Resetting Git Repo...")
            reset_ref = await self._recovery_ref()
            if self.state.is_dirty:
                await self.git("checkout", "--", ".", check=False)
            await self.git("checkout", "-q", self.primary_branch)
            await self.git("reset", "--hard", reset_ref)
            await self._refresh_state(fetch=True)
        self.state.set_rollback(self.state.rollback_point())
        if self.state.is_dirty or not self.valid:
            raise UpdateError("Recovery attempt failed, repo state not pristine")
        await self.restart_services()
        self.notify("Reinstall Complete", complete=True)

    async def _clone(self) -> None:
        url = self.state.recovery_url
        if url == UNKNOWN:
            raise UpdateError("Recovery url has not been detected, clone aborted")
        self.context.notify(f"Git Repo {self.name}: Starting Clone Recovery...")
        backup = self.path.parent / f".{self.path.name}_repo_backup"
        await trio.to_thread.run_sync(lambda: shutil.rmtree(backup, ignore_errors=True))
        argv = ["git", "clone", "--branch", self.primary_branch, "--filter=blob:none"]
        out = await self.context.execute(
            [*argv, url, str(backup)], limit=GIT_NETWORK_TIMEOUT, env=GIT_ENV
        )
        for line in out.lines():
            self.context.notify(line)
        if out.returncode != 0:
            self.context.notify(f"Git Repo {self.name}: Git Clone Failed")
            raise UpdateError("Git Clone Error")

        def swap() -> None:
            shutil.rmtree(self.path, ignore_errors=True)
            shutil.move(str(backup), str(self.path))

        await trio.to_thread.run_sync(swap)
        self.state.corrupt = False
        self.context.notify(f"Git Repo {self.name}: Git Clone Complete")
        previous = self.state.current_commit
        reset = await self._recovery_ref("HEAD")
        if reset != "HEAD":
            self.context.notify(f"Git Repo {self.name}: Moving HEAD to previous commit {previous}")
            await self.git("reset", "--hard", reset)

    async def rollback(self) -> bool:
        state = self.state
        if UNKNOWN in (state.rollback_commit, state.rollback_branch):
            raise UpdateError("Incomplete rollback data stored, cannot rollback")
        if state.rollback_branch != state.branch:
            await self.git("checkout", "-q", state.rollback_branch)
        elif state.rollback_commit == state.current_commit:
            self.notify("Rollback not performed", complete=True)
            return False
        await self.git("reset", "--hard", state.rollback_commit)
        await self._refresh_state(fetch=False)
        await self.restart_services()
        self.notify("Rollback Complete", complete=True)
        return True

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        warnings, anomalies = self.state.problems(self.origin, self.primary_branch, self.pinned)
        status = super().status()
        status.update(
            self.state.status(anomalies if self.options.report_anomalies else [], warnings)
        )
        status["name"] = self.name
        return status
