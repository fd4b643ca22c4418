"""The update manager's other kinds: a web client's folder (``web``), an installed Python
package (``python``) and the system's packages (``system``, apt only).

``web``: the installed version is ``release_info.json``'s (else ``.version``, with Mainsail's or
Fluidd's manifest to name the project); a refresh asks GitHub's API for the latest release,
bounded by a deadline: unreachable, it keeps what it has and shows ``remote_version`` ``?``.
An update downloads the release's zip and unpacks it in place, keeping ``persistent_files``.

``python``: the version comes from the package's metadata in its virtualenv
(:mod:`importlib.metadata` over that venv's ``site-packages``); a refresh is pip's dry run, an
update ``pip install -U`` with that venv's interpreter.

``system``: ``apt list --upgradable`` where apt-get is found (and ``$TRIOPRINT_APT`` is not
``off``); elsewhere no provider, and always no packages, as Moonraker reports it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import trio

from ..domain.update import (
    UNKNOWN,
    RateLimit,
    Release,
    ReleaseInfoError,
    manifest_client,
    parse_apt_upgradable,
    parse_github_release,
    parse_pip_report,
    parse_release_info,
    python_short_version,
    system_status,
)
from ..domain.update_config import AppOptions
from ..transport.http_client import HttpError
from .update_base import AppUpdater, Context, Output, Runner, UpdateError, Updater

log = logging.getLogger(__name__)

#: Seconds a GitHub API request may take, and a release download.
API_TIMEOUT = 10.0
DOWNLOAD_TIMEOUT = 300.0
#: Largest release archive accepted, in bytes.
MAX_DOWNLOAD = 256 * 1024 * 1024
PIP_TIMEOUT = 1200.0
APT_ENV = "TRIOPRINT_APT"


async def github_get(context: Context, resource: str) -> Any:
    """A GitHub API resource as JSON (the rate limit noted); UpdateError if none came."""
    url = f"{context.github_api.rstrip('/')}/{resource.lstrip('/')}"
    headers = {"Accept": "application/vnd.github+json"}
    try:
        response = await context.fetch(url, headers, limit=API_TIMEOUT)
    except HttpError as exc:
        raise UpdateError(str(exc)) from None
    context.rate_limit = RateLimit.from_headers(response.headers, context.rate_limit)
    if response.status != 200:
        raise UpdateError(f"GitHub answered HTTP {response.status} for {resource}")
    try:
        return json.loads(response.body)
    except ValueError:
        raise UpdateError(f"GitHub's answer for {resource} is not JSON") from None


class WebUpdater(AppUpdater):
    kind = "web"

    def __init__(self, options: AppOptions, context: Context, default_interval: float) -> None:
        super().__init__(options, context, default_interval)
        assert options.path is not None
        assert options.repo is not None
        self.path = Path(options.path).expanduser().resolve()
        self.repo = options.repo
        self.owner, self.project_name = self.repo.split("/", 1)
        self.prefix = f"Web Client {self.name}: "
        self.version = UNKNOWN
        self.remote_version = UNKNOWN
        self.rollback_version = UNKNOWN
        self.rollback_repo = UNKNOWN
        self.last_error = ""
        self.asset_name: str | None = None
        self.release: Release | None = None
        self.warnings: list[str] = []
        self.anomalies: list[str] = []

    def stored(self) -> dict[str, Any]:
        return {
            **super().stored(),
            "version": self.version,
            "remote_version": self.remote_version,
            "rollback_version": self.rollback_version,
            "rollback_repo": self.rollback_repo,
            "last_error": self.last_error,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        for key in ("version", "remote_version", "rollback_version", "rollback_repo"):
            if isinstance(data.get(key), str):
                setattr(self, key, data[key])
        self.last_error = str(data.get("last_error") or "")

    async def validate(self) -> None:
        """Read the installed version from the folder (release_info.json, .version)."""
        self.valid = False
        self.warnings = []
        self.anomalies = []
        found = await trio.to_thread.run_sync(self._read_folder)
        if found is not None:
            owner, project, version, self.asset_name = found
            self.valid = True
            if version:
                self.version = version
            detected = f"{owner}/{project}"
            if detected.lower() != self.repo.lower():
                self.anomalies.append(
                    f"Value at option 'repo: {self.options.repo}' does not match detected repo"
                    f" '{detected}', falling back to detected version."
                )
                self.repo, self.owner, self.project_name = detected, owner, project
        if not self.valid:
            self.warnings.append("Failed to validate installation")
        if self.rollback_version == UNKNOWN and self.valid:
            self.rollback_version, self.rollback_repo = self.version, self.repo

    def _read_folder(self) -> tuple[str, str, str, str | None] | None:
        if not self.path.is_dir():
            self.warnings.append(f"Location at option 'path: {self.path}' is not a directory.")
            return None
        if not os.access(self.path, os.W_OK):
            self.warnings.append(f"Location at option 'path: {self.path}' is not writable.")
            return None
        for parent in (self.path, *self.path.parents):
            if (parent / ".git").exists() and parent != Path.home():
                self.warnings.append(
                    f"Location at option 'path: {self.path}' is within a git repo. Found .git"
                    f" folder at '{parent / '.git'}'"
                )
                return None
        with contextlib.suppress(OSError):
            try:
                info = parse_release_info((self.path / "release_info.json").read_bytes())
            except ReleaseInfoError as exc:
                log.warning("%srelease_info.json: %s", self.prefix, exc)
                return None
            return info.project_owner, info.project_name, info.version, info.asset_name
        version = ""
        with contextlib.suppress(OSError):
            version = (self.path / ".version").read_text().strip()
        for manifest in ("manifest.json", "manifest.webmanifest"):
            with contextlib.suppress(OSError):
                client = manifest_client((self.path / manifest).read_bytes())
                if client is not None:
                    return client[0], client[1], version, None
        return None

    async def refresh(self) -> None:
        await self.validate()
        self.remote_version = UNKNOWN
        self.release = None
        if not self.valid:
            return
        try:
            self.release = await self._fetch_release()
        except UpdateError as exc:
            log.info("%sno remote version: %s", self.prefix, exc)
            self.last_error = str(exc)
            return
        self.last_error = ""
        self.remote_version = self.release.version

    async def _fetch_release(self, tag: str | None = None, repo: str | None = None) -> Release:
        repo = repo or self.repo
        if tag is not None:
            resource = f"repos/{repo}/releases/tags/{tag}"
        elif self.options.channel == "stable":
            resource = f"repos/{repo}/releases/latest"
        else:
            resource = f"repos/{repo}/releases?per_page=1"
        release = parse_github_release(await github_get(self.context, resource), self.asset_name)
        if release is None:
            raise UpdateError(f"No release found for {repo}")
        return release

    async def update(self) -> bool:
        if not self.valid:
            raise UpdateError(f"{self.prefix}Invalid install detected, aborting update")
        if self.release is None or self.remote_version == UNKNOWN:
            await self.refresh()
            if self.release is None:
                raise UpdateError(f"{self.prefix}Unable to locate update")
        if self.version == self.remote_version:
            return False
        previous = self.version
        await self._install(self.release, "Updating...")
        self.rollback_version, self.rollback_repo = previous, self.repo
        self.notify("Update Finished...", complete=True)
        return True

    async def rollback(self) -> bool:
        if UNKNOWN in (self.rollback_version, self.rollback_repo):
            raise UpdateError("Incomplete Rollback Data")
        if self.rollback_version == self.version:
            self.notify("Rollback not performed", complete=True)
            return False
        release = await self._fetch_release(self.rollback_version, self.rollback_repo)
        await self._install(release, "Rolling Back...")
        self.notify("Rollback Complete", complete=True)
        return True

    async def recover(self, hard: bool, update_deps: bool) -> None:
        release = await self._fetch_release(self.version)
        await self._install(release, "Recovering...")
        self.notify("Update Finished...", complete=True)

    async def _install(self, release: Release, start: str) -> None:
        if release.url == UNKNOWN:
            raise UpdateError(f"{self.prefix}Invalid download url")
        self.notify(start)
        self.notify("Downloading Release...")
        try:
            response = await self.context.fetch(
                release.url,
                {"Accept": "application/octet-stream"},
                limit=DOWNLOAD_TIMEOUT,
                max_body=MAX_DOWNLOAD,
            )
        except HttpError as exc:
            raise UpdateError(f"{self.prefix}Download failed: {exc}") from None
        if response.status != 200:
            raise UpdateError(f"{self.prefix}Download failed: HTTP {response.status}")
        self.notify(f"Download Complete, extracting release to '{self.path}'")
        await trio.to_thread.run_sync(self._extract, response.body)
        self.version = release.version
        await self.validate()

    def _extract(self, data: bytes) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise UpdateError(f"{self.prefix}The release is not a zip archive") from None
        with archive, tempfile.TemporaryDirectory(prefix=f"{self.name}-") as temp:
            staging = Path(temp) / "new"
            for entry in archive.infolist():
                target = (staging / entry.filename).resolve()
                if staging.resolve() not in target.parents and target != staging.resolve():
                    raise UpdateError(f"{self.prefix}Unsafe path in the archive: {entry.filename}")
            archive.extractall(staging)
            for name in self.options.persistent_files:
                kept = self.path / name
                if kept.exists():
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.rmtree(staging / name, ignore_errors=True)
                    shutil.move(str(kept), str(staging / name))
            old = Path(temp) / "old"
            shutil.move(str(self.path), str(old))
            shutil.move(str(staging), str(self.path))

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            {
                "name": self.name,
                "repo_name": self.project_name,
                "owner": self.owner,
                "version": self.version,
                "remote_version": self.remote_version,
                "rollback_version": self.rollback_version,
                "last_error": self.last_error,
                "warnings": list(self.warnings),
                "anomalies": list(self.anomalies) if self.options.report_anomalies else [],
            }
        )
        return status


# --- python packages ----------------------------------------------------------------------


def site_packages(venv: Path) -> list[str]:
    found = sorted(str(p) for p in venv.glob("lib/python3*/site-packages") if p.is_dir())
    return found or [str(p) for p in venv.glob("Lib/site-packages")]


class PythonUpdater(AppUpdater):
    kind = "python"

    def __init__(self, options: AppOptions, context: Context, default_interval: float) -> None:
        super().__init__(options, context, default_interval)
        self.venv = Path(options.virtualenv or sys.prefix).expanduser()
        self.project = options.project_name or self.name
        self.prefix = f"Python Package {self.name}: "
        self.version = UNKNOWN
        self.remote_version = UNKNOWN
        self.rollback_version = UNKNOWN
        self.current_sha = UNKNOWN
        self.remote_sha = UNKNOWN
        self.source = "unknown"
        self.owner = UNKNOWN
        self.repo_name = UNKNOWN
        self.changelog = ""
        self.warnings: list[str] = []

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def stored(self) -> dict[str, Any]:
        return {
            **super().stored(),
            "upstream_version": self.remote_version,
            "upstream_commit": self.remote_sha,
            "rollback_version": self.rollback_version,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        for attr, key in (
            ("remote_version", "upstream_version"),
            ("remote_sha", "upstream_commit"),
            ("rollback_version", "rollback_version"),
        ):
            if isinstance(data.get(key), str):
                setattr(self, attr, data[key])

    async def read_installed(self) -> None:
        self.warnings = []
        await trio.to_thread.run_sync(self._read_metadata)
        self.valid = not self.warnings

    def _read_metadata(self) -> None:
        if not (self.venv / "bin" / "python").exists():
            self.warnings.append(f"No Python virtualenv at {self.venv}")
            return
        dists = list(
            importlib.metadata.distributions(name=self.project, path=site_packages(self.venv))
        )
        if not dists:
            self.warnings.append(f"Package {self.project} is not installed in {self.venv}")
            return
        dist = dists[0]
        self.version = dist.version or UNKNOWN
        if python_short_version(self.version) == UNKNOWN:
            self.warnings.append("Failed to parse package version")
        self.source = "pip"
        direct = dist.read_text("direct_url.json")
        if direct:
            with contextlib.suppress(ValueError):
                info = json.loads(direct)
                vcs = info.get("vcs_info", {}) if isinstance(info, dict) else {}
                if vcs.get("vcs") == "git":
                    self.source = "github"
                    self.current_sha = str(vcs.get("commit_id", UNKNOWN))
                elif isinstance(info, dict):
                    self.source = "unknown"
                    self.warnings.append(
                        f"Package installed from source other than pypi or git: {info}"
                    )
        if self.current_sha == UNKNOWN and self.source == "pip":
            self.current_sha = "not-specified"
        for entry in dist.metadata.get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            label = label.strip().lower()
            if label in ("repository", "repo", "source") and "github.com/" in url:
                owner_repo = url.strip().split("github.com/", 1)[1].removesuffix(".git")
                self.owner, _, self.repo_name = owner_repo.partition("/")
            elif label == "changelog":
                self.changelog = url.strip()

    async def refresh(self) -> None:
        await self.read_installed()
        if not self.valid or self.source != "pip":
            return
        args = ["-m", "pip", "install", "-U", "--quiet", "--dry-run", "--no-deps"]
        if self.options.channel == "beta":
            args.append("--pre")
        out = await self._pip([*args, "--report", "-", self.project], notify=False)
        try:
            remote = parse_pip_report(out.stdout, self.project)
        except ValueError as exc:
            log.info("%s%s", self.prefix, exc)
            return
        self.remote_version = remote or self.version
        self.remote_sha = "update-available" if remote else self.current_sha

    async def _pip(self, args: list[str], *, notify: bool = True) -> Output:
        run: Runner = self.context.execute
        out = await run([self.python, *args], limit=PIP_TIMEOUT)
        if notify:
            for line in out.lines():
                self.context.notify(line)
        if out.returncode != 0:
            lines = out.lines()
            raise UpdateError(f"pip failed: {lines[-1] if lines else out.returncode}")
        return out

    async def update(self, rollback: bool = False) -> bool:
        target = self.rollback_version if rollback else self.remote_version
        if target in (UNKNOWN, self.version):
            return False
        if self.source != "pip":
            raise UpdateError("Cannot update, package source is unknown")
        previous = self.version
        spec = f"{self.project}=={target}" if rollback else self.project
        self.notify(f"Updating Python Package {self.name} from PIP...")
        await self._pip(["-m", "pip", "install", "-U", "--upgrade-strategy", "eager", spec])
        await self.read_installed()
        if not rollback:
            self.rollback_version = previous
            self.remote_version, self.remote_sha = self.version, self.current_sha
        await self.restart_services()
        self.notify("Update Finished...", complete=True)
        return True

    async def rollback(self) -> bool:
        if self.rollback_version == UNKNOWN:
            return False
        return await self.update(rollback=True)

    async def recover(self, hard: bool, update_deps: bool) -> None:
        return None

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(
            {
                "detected_type": "python_package",
                "name": self.name,
                "branch": self.options.primary_branch,
                "owner": self.owner,
                "repo_name": self.repo_name,
                "version": python_short_version(self.version),
                "remote_version": python_short_version(self.remote_version),
                "rollback_version": python_short_version(self.rollback_version),
                "current_hash": self.current_sha,
                "remote_hash": self.remote_sha,
                "is_dirty": False,
                "changelog_url": self.changelog,
                "full_version_string": self.version,
                "pristine": True,
                "warnings": list(self.warnings),
            }
        )
        return status


# --- system packages ------------------------------------------------------------------------


class PackageProvider(Protocol):
    async def refresh(self) -> list[str]: ...

    async def upgrade(self) -> None: ...


class AptProvider:
    """apt-get through ``sudo -n`` (never a password prompt) unless already root."""

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]

    async def _apt(self, *args: str, limit: float) -> Output:
        argv = [*self._sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *args]
        out: Output = await self._run(argv, limit=limit)
        if out.returncode != 0:
            lines = out.lines()
            raise UpdateError(f"apt-get {args[0]} failed: {lines[-1] if lines else ''}")
        return out

    async def refresh(self) -> list[str]:
        await self._apt("update", limit=600.0)
        listed: Output = await self._run(["apt", "list", "--upgradable"], limit=60.0)
        return parse_apt_upgradable(listed.stdout)

    async def upgrade(self) -> None:
        await self._apt("upgrade", "--yes", limit=3600.0)


def detect_package_provider(run: Runner) -> PackageProvider | None:
    """apt where it is (and ``$TRIOPRINT_APT`` is not ``off``), else no provider."""
    if os.environ.get(APT_ENV, "").lower() in ("off", "0", "no", "false"):
        return None
    if shutil.which("apt-get") is None or shutil.which("apt") is None:
        return None
    return AptProvider(run)


class SystemUpdater(Updater):
    kind = "system"

    def __init__(self, context: Context, provider: PackageProvider | None, interval: float) -> None:
        super().__init__("system", context, interval, "")
        self.provider = provider
        self.packages: list[str] = []

    def stored(self) -> dict[str, Any]:
        return {**super().stored(), "packages": list(self.packages)}

    def restore(self, data: Mapping[str, Any]) -> None:
        super().restore(data)
        packages = data.get("packages")
        if isinstance(packages, list) and self.provider is not None:
            self.packages = [p for p in packages if isinstance(p, str)]

    async def refresh(self) -> None:
        if self.provider is None:
            self.packages = []
            return
        try:
            self.packages = await self.provider.refresh()
        except UpdateError as exc:
            log.warning("system packages: %s", exc)

    async def update(self) -> bool:
        if not self.packages or self.provider is None:
            return False
        self.context.notify("Updating packages...")
        try:
            await self.provider.upgrade()
        except UpdateError as exc:
            raise UpdateError(f"Error updating system packages: {exc}") from None
        self.packages = []
        self.context.notify("Package update finished...", complete=True)
        return True

    def status(self) -> dict[str, Any]:
        return system_status(self.packages)
