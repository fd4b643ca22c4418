"""The update manager with real git: local bare repositories as origins, never the network."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.components.update_manager import (
    NAMESPACE,
    NameParams,
    RecoverParams,
    RequiredName,
    StatusParams,
    UpdateManager,
)
from trioprint.config import load_config
from trioprint.domain.kv import MemoryStore
from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Transport

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Tester",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "Tester",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


class Repos:
    """A bare origin, a clone to push from (``dev``) and the installed clone (``app``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.origin = root / "origin.git"
        self.dev = root / "dev"
        self.app = root / "app"
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", "--bare", "--initial-branch=master", str(self.origin))
        git(root, "clone", "-q", str(self.origin), str(self.dev))
        self.commit("first")
        git(self.dev, "tag", "v1.0.0")
        git(self.dev, "push", "-q", "origin", "master", "--tags")
        git(root, "clone", "-q", str(self.origin), str(self.app))

    def commit(self, subject: str, push: bool = False) -> str:
        (self.dev / f"{subject}.txt").write_text(subject)
        git(self.dev, "add", ".")
        git(self.dev, "commit", "-q", "-m", subject)
        if push:
            git(self.dev, "push", "-q", "origin", "master", "--tags")
        return git(self.dev, "rev-parse", "HEAD")

    def head(self) -> str:
        return git(self.app, "rev-parse", "HEAD")


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return Repos(tmp_path / "repos")


class Sockets:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def broadcast(self, method: str, params: list[Any] | None = None) -> None:
        assert params is not None
        self.sent.append((method, params[0]))

    def of(self, method: str) -> list[Any]:
        return [p for m, p in self.sent if m == method]


def call(params: Any, verb: str = "POST") -> Call[Any]:
    return Call(params, Transport.WEBSOCKET, verb)


class Harness:
    def __init__(self, manager: UpdateManager, sockets: Sockets, db: MemoryStore) -> None:
        self.manager = manager
        self.sockets = sockets
        self.db = db
        self.restarted: list[str] = []

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.manager.status(call(StatusParams(), "GET"))
        return result

    async def info(self, name: str = "app") -> dict[str, Any]:
        entry: dict[str, Any] = (await self.status())["version_info"][name]
        return entry

    async def refresh(self, name: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.manager.refresh(call(NameParams(name)))
        return result


def config_text(repos: Repos, extra: str = "") -> str:
    return (
        "[update_manager]\n"
        "[update_manager app]\n"
        "type: git_repo\n"
        f"path: {repos.app}\n"
        f"origin: {repos.origin}\n"
        "managed_services: app klipper\n"
        f"{extra}"
    )


def contextmanager_harness(
    tmp_path: Path, text: str, db: MemoryStore | None = None, **kwargs: Any
) -> Callable[[], Any]:
    import contextlib

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[Harness]:
        conf = tmp_path / "trioprint.conf"
        conf.write_text(text)
        config = load_config(conf, tmp_path)
        sockets = Sockets()
        store = db if db is not None else MemoryStore()
        harness: Harness

        async def restart(service: str) -> None:
            harness.restarted.append(service)

        kwargs.setdefault("package_provider", None)
        manager = UpdateManager(config, store, sockets, restart_service=restart, **kwargs)
        harness = Harness(manager, sockets, store)
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await manager.wait_initial_refresh()
            yield harness
            nursery.cancel_scope.cancel()

    return running


async def test_status_shape_and_initial_refresh(tmp_path: Path, repos: Repos) -> None:
    async with contextmanager_harness(tmp_path, config_text(repos))() as h:
        result = await h.status()
        assert set(result) == {
            "busy",
            "github_rate_limit",
            "github_requests_remaining",
            "github_limit_reset_time",
            "version_info",
        }
        assert result["busy"] is False
        assert result["version_info"]["system"] == {
            "name": "system",
            "configured_type": "system",
            "package_count": 0,
            "package_list": [],
        }
        app = result["version_info"]["app"]
        assert app["configured_type"] == "git_repo"
        assert app["name"] == "app"
        assert app["channel"] == "dev"
        assert app["is_valid"] is True
        assert app["version"] == "v1.0.0-0"
        assert app["remote_version"] == "v1.0.0-0"
        assert app["rollback_version"] == "v1.0.0-0"
        assert app["current_hash"] == app["remote_hash"] == repos.head()
        assert app["commits_behind"] == []
        assert app["is_dirty"] is False
        assert app["detached"] is False
        assert app["branch"] == "master"
        assert app["remote_alias"] == "origin"
        assert app["repo_name"] == "origin"
        assert app["warnings"] == []
        assert app["anomalies"] == []
        # the initial refresh was stored and announced
        stored = await h.db.get_item(NAMESPACE, ["app"])
        assert stored["current_commit"] == repos.head()
        assert h.sockets.of("notify_update_refreshed")


async def test_refresh_shows_commits_behind_and_upgrade_fast_forwards(
    tmp_path: Path, repos: Repos
) -> None:
    async with contextmanager_harness(tmp_path, config_text(repos))() as h:
        before = repos.head()
        repos.commit("second")
        newest = repos.commit("third", push=True)
        result = await h.refresh("app")
        app = result["version_info"]["app"]
        assert app["commits_behind_count"] == 2
        assert [c["subject"] for c in app["commits_behind"]] == ["third", "second"]
        assert app["commits_behind"][0]["sha"] == newest
        assert app["commits_behind"][0]["author"] == "Tester"
        assert app["remote_hash"] == newest
        assert app["remote_version"] == "v1.0.0-2"
        assert h.sockets.of("notify_update_refreshed")[-1]["version_info"]["app"] == app

        assert await h.manager.upgrade(call(NameParams("app"))) == "ok"
        assert repos.head() == newest
        app = await h.info()
        assert app["version"] == "v1.0.0-2"
        assert app["commits_behind_count"] == 0
        assert app["rollback_version"] == "v1.0.0-0"
        assert h.restarted == ["app", "klipper"]
        responses = h.sockets.of("notify_update_response")
        assert {r["application"] for r in responses} == {"app"}
        assert len({r["proc_id"] for r in responses}) == 1
        assert responses[0]["message"] == "Updating Application app..."
        assert [r["complete"] for r in responses].count(True) == 1
        assert responses[-1] == {
            "message": "Git Repo app: Update Finished...",
            "application": "app",
            "proc_id": responses[0]["proc_id"],
            "complete": True,
        }
        assert "Git Repo app: Restarting service klipper..." in [r["message"] for r in responses]

        # and back again
        assert await h.manager.rollback(call(RequiredName("app"))) == "ok"
        assert repos.head() == before
        app = await h.info()
        assert app["version"] == "v1.0.0-0"
        assert app["commits_behind_count"] == 2
        assert h.sockets.of("notify_update_response")[-1]["message"] == (
            "Git Repo app: Rollback Complete"
        )


async def test_upgrade_when_current_does_nothing(tmp_path: Path, repos: Repos) -> None:
    async with contextmanager_harness(tmp_path, config_text(repos))() as h:
        head = repos.head()
        assert await h.manager.upgrade(call(NameParams("app"))) == "ok"
        assert repos.head() == head
        assert h.restarted == []


async def test_older_klipper_and_moonraker_endpoints_are_upgrade(
    tmp_path: Path, repos: Repos
) -> None:
    text = config_text(repos).replace("[update_manager app]", "[update_manager klipper]")
    async with contextmanager_harness(tmp_path, text)() as h:
        newest = repos.commit("second", push=True)
        await h.refresh("klipper")
        assert await h.manager.klipper(call(NoParams())) == "ok"
        assert repos.head() == newest
        responses = h.sockets.of("notify_update_response")
        assert {r["application"] for r in responses} == {"klipper"}
        with pytest.raises(ApiError, match="Updater moonraker not available") as info:
            await h.manager.moonraker(call(NoParams()))
        assert info.value.status == 404


async def test_dirty_repo_refuses_and_recover_resets(tmp_path: Path, repos: Repos) -> None:
    async with contextmanager_harness(tmp_path, config_text(repos))() as h:
        repos.commit("second", push=True)
        (repos.app / "first.txt").write_text("local change")
        app = (await h.refresh())["version_info"]["app"]
        assert app["is_dirty"] is True
        assert app["is_valid"] is False
        assert app["version"].endswith("-0")
        assert app["full_version_string"].endswith("-dirty")
        assert any(w.startswith("Repo is dirty.") for w in app["warnings"])
        with pytest.raises(ApiError, match="Update aborted, repo not valid") as info:
            await h.manager.upgrade(call(NameParams("app")))
        assert info.value.status == 400
        last = h.sockets.of("notify_update_response")[-1]
        assert last["complete"] is True
        assert last["message"].startswith("Error updating app:")

        assert await h.manager.recover(call(RecoverParams("app"))) == "ok"
        assert (repos.app / "first.txt").read_text() == "first"
        app = await h.info()
        assert app["is_dirty"] is False
        assert app["is_valid"] is True
        assert app["commits_behind_count"] == 1  # a soft recovery stays on its commit
        assert h.sockets.of("notify_update_response")[-1]["message"] == (
            "Git Repo app: Reinstall Complete"
        )


async def test_hard_recovery_clones_again(tmp_path: Path, repos: Repos) -> None:
    async with contextmanager_harness(tmp_path, config_text(repos))() as h:
        head = repos.head()
        (repos.app / "stray.py").write_text("x = 1\n")
        app = (await h.refresh())["version_info"]["app"]
        assert app["pristine"] is False
        assert "Repo has untracked source files: ['stray.py']" in app["anomalies"]
        assert await h.manager.recover(call(RecoverParams("app", hard=True))) == "ok"
        assert not (repos.app / "stray.py").exists()
        assert repos.head() == head
        messages = [r["message"] for r in h.sockets.of("notify_update_response")]
        assert "Git Repo app: Starting Clone Recovery..." in messages
        assert (await h.info())["pristine"] is True


async def test_errors_name_the_problem(tmp_path: Path, repos: Repos) -> None:
    text = config_text(
        repos, "\n[update_manager site]\ntype: web\npath: /nonexistent/x\nrepo: a/b\n"
    )
    warnings: list[str] = []
    async with contextmanager_harness(tmp_path, text, warnings=warnings)() as h:
        assert any("Failed to load extension site" in w and "does not exist" in w for w in warnings)
        assert any("Unable to initialize System Update Provider" in w for w in warnings)
        with pytest.raises(ApiError, match="Updater nope not available") as info:
            await h.manager.upgrade(call(NameParams("nope")))
        assert info.value.status == 404
        with pytest.raises(ApiError, match="No updater registered for 'nope'"):
            await h.refresh("nope")
        with pytest.raises(ApiError, match="Updater system is not a Git Repo Type"):
            await h.manager.recover(call(RecoverParams("system")))
        with pytest.raises(ApiError, match="Rollback not available for system"):
            await h.manager.rollback(call(RequiredName("system")))
        assert await h.manager.system(call(NoParams())) == "ok"  # no packages: nothing to do


async def test_printing_refuses(tmp_path: Path, repos: Repos) -> None:
    printing = [False]
    run = contextmanager_harness(tmp_path, config_text(repos), is_printing=lambda: printing[0])
    async with run() as h:
        printing[0] = True
        with pytest.raises(ApiError, match="Update Refused: Klippy is printing") as info:
            await h.manager.upgrade(call(NameParams("app")))
        assert info.value.status == 503
        with pytest.raises(ApiError, match="Server is busy, cannot perform refresh"):
            await h.refresh()
        with pytest.raises(ApiError, match="Rollback Attempt Refused"):
            await h.manager.rollback(call(RequiredName("app")))
        with pytest.raises(ApiError, match="Recovery Attempt Refused"):
            await h.manager.recover(call(RecoverParams("app")))


async def test_one_update_at_a_time(tmp_path: Path, repos: Repos) -> None:
    gate = trio.Event()
    entered = trio.Event()

    async def slow_restart(service: str) -> None:
        entered.set()
        await gate.wait()

    async with contextmanager_harness(tmp_path, config_text(repos))() as h:
        h.manager._restart_service = slow_restart
        repos.commit("second", push=True)
        await h.refresh()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.manager.upgrade, call(NameParams("app")))
            await entered.wait()
            assert (await h.status())["busy"] is True
            with pytest.raises(ApiError, match="Item app is currently updating") as info:
                await h.manager.upgrade(call(NameParams("app")))
            assert info.value.status == 503
            with pytest.raises(ApiError, match="Server is busy"):
                await h.refresh()
            gate.set()
        assert (await h.status())["busy"] is False


async def test_full_update_and_state_kept_across_restarts(tmp_path: Path, repos: Repos) -> None:
    db = MemoryStore()
    async with contextmanager_harness(tmp_path, config_text(repos), db=db)() as h:
        before = repos.head()
        newest = repos.commit("second", push=True)
        await h.refresh()
        assert await h.manager.full(call(NoParams())) == "ok"
        assert repos.head() == newest
        responses = h.sockets.of("notify_update_response")
        assert {r["application"] for r in responses} == {"full"}
        assert responses[0]["message"] == "Preparing full software update..."
        completes = [r for r in responses if r["complete"]]
        assert [r["message"] for r in completes] == ["Full Update Complete"]
        # klipper's restart waits for the end of a full update; the app's own does not
        assert h.restarted == ["app", "klipper"]
        messages = [r["message"] for r in responses]
        assert "Git Repo app: Service klipper restart postponed..." in messages
    # a new instance: the rollback point came from the database
    async with contextmanager_harness(tmp_path, config_text(repos), db=db)() as h:
        assert (await h.info())["rollback_version"] == "v1.0.0-0"
        assert h.sockets.of("notify_update_refreshed") == []  # nothing needed a refresh
        await h.manager.rollback(call(RequiredName("app")))
        assert repos.head() == before


async def test_stable_channel_follows_tags(tmp_path: Path, repos: Repos) -> None:
    text = config_text(repos, "channel: stable\n")
    async with contextmanager_harness(tmp_path, text)() as h:
        repos.commit("untagged", push=True)
        app = (await h.refresh())["version_info"]["app"]
        assert app["channel"] == "stable"
        assert app["commits_behind_count"] == 0  # no newer release yet
        assert app["remote_hash"] == app["current_hash"]
        tagged = repos.commit("release")
        git(repos.dev, "tag", "v1.1.0")
        git(repos.dev, "push", "-q", "origin", "master", "--tags")
        repos.commit("after-release", push=True)
        app = (await h.refresh())["version_info"]["app"]
        assert app["remote_version"] == "v1.1.0-0"
        assert app["remote_hash"] == tagged
        assert app["commits_behind_count"] == 2
        assert app["commits_behind"][0]["tag"] == "v1.1.0"
        await h.manager.upgrade(call(NameParams("app")))
        assert repos.head() == tagged
        assert (await h.info())["version"] == "v1.1.0-0"


async def test_not_a_repository(tmp_path: Path, repos: Repos) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    text = f"[update_manager]\n[update_manager app]\ntype: git_repo\npath: {plain}\norigin: x\n"
    async with contextmanager_harness(tmp_path, text)() as h:
        app = await h.info()
        assert app["repo_detected"] is False
        assert app["is_valid"] is False
        assert "No git repo detected at configured path" in app["warnings"]
        with pytest.raises(ApiError, match="repo not valid"):
            await h.manager.upgrade(call(NameParams("app")))


# --- web clients and python packages -------------------------------------------------------


def zipped(files: dict[str, str]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def release_info(version: str) -> str:
    import json

    return json.dumps(
        {"project_name": "mainsail", "project_owner": "mainsail-crew", "version": version}
    )


class FakeGitHub:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.releases = {
            "v2.14.0": zipped({"index.html": "new", "release_info.json": release_info("v2.14.0")}),
            "v2.13.0": zipped({"index.html": "old", "release_info.json": release_info("v2.13.0")}),
        }

    async def fetch(self, url: str, headers: Any = None, **kwargs: Any) -> Any:
        import json

        from trioprint.transport.http_client import HttpResponse

        self.requests.append(url)
        await trio.lowlevel.checkpoint()
        limits = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "42"}
        if url.endswith("/releases/latest") or "/releases/tags/" in url:
            tag = url.rsplit("/", 1)[-1] if "/tags/" in url else "v2.14.0"
            body = {"name": tag, "assets": [{"browser_download_url": f"http://dl/{tag}.zip"}]}
            return HttpResponse(200, limits, json.dumps(body).encode(), url)
        if url.startswith("http://dl/"):
            tag = url.rsplit("/", 1)[-1].removesuffix(".zip")
            return HttpResponse(200, {}, self.releases[tag], url)
        return HttpResponse(404, {}, b"{}", url)


def web_config(site: Path) -> str:
    return (
        "[update_manager]\n[update_manager mainsail]\ntype: web\n"
        f"path: {site}\nrepo: mainsail-crew/mainsail\npersistent_files: config.json\n"
    )


def make_site(tmp_path: Path) -> Path:
    site = tmp_path / "mainsail"
    site.mkdir()
    (site / "index.html").write_text("old")
    (site / "config.json").write_text("{}")
    (site / "release_info.json").write_text(release_info("v2.13.0"))
    return site


async def test_web_client_status_upgrade_and_rollback(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    github = FakeGitHub()
    async with contextmanager_harness(tmp_path, web_config(site), fetch=github.fetch)() as h:
        result = await h.status()
        assert result["github_rate_limit"] == 60
        assert result["github_requests_remaining"] == 42
        info = result["version_info"]["mainsail"]
        assert info == {
            "channel": "stable",
            "debug_enabled": False,
            "channel_invalid": False,
            "is_valid": True,
            "configured_type": "web",
            "info_tags": [],
            "name": "mainsail",
            "repo_name": "mainsail",
            "owner": "mainsail-crew",
            "version": "v2.13.0",
            "remote_version": "v2.14.0",
            "rollback_version": "v2.13.0",
            "last_error": "",
            "warnings": [],
            "anomalies": [],
        }
        assert github.requests == [
            "http://127.0.0.1:9/repos/mainsail-crew/mainsail/releases/latest"
        ]
        assert await h.manager.upgrade(call(NameParams("mainsail"))) == "ok"
        assert (site / "index.html").read_text() == "new"
        assert (site / "config.json").read_text() == "{}"  # persistent
        info = await h.info("mainsail")
        assert info["version"] == "v2.14.0"
        assert info["rollback_version"] == "v2.13.0"
        messages = [r["message"] for r in h.sockets.of("notify_update_response")]
        assert messages[0] == "Web Client mainsail: Updating..."
        assert messages[-1] == "Web Client mainsail: Update Finished..."
        assert await h.manager.rollback(call(RequiredName("mainsail"))) == "ok"
        assert (site / "index.html").read_text() == "old"
        assert (await h.info("mainsail"))["version"] == "v2.13.0"


async def test_web_client_without_network_answers_with_what_it_has(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    # the default fetch: to $TRIOPRINT_GITHUB_API, a loopback port nothing listens on
    async with contextmanager_harness(tmp_path, web_config(site))() as h:
        info = await h.info("mainsail")
        assert info["version"] == "v2.13.0"
        assert info["remote_version"] == "?"
        assert info["is_valid"] is True
        assert info["last_error"]
        with pytest.raises(ApiError, match="Unable to locate update"):
            await h.manager.upgrade(call(NameParams("mainsail")))
        assert (site / "index.html").read_text() == "old"


async def test_web_client_folder_problems(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "release_info.json").write_text("{broken")
    github = FakeGitHub()
    async with contextmanager_harness(tmp_path, web_config(site), fetch=github.fetch)() as h:
        info = await h.info("mainsail")
        assert info["is_valid"] is False
        assert info["warnings"] == ["Failed to validate installation"]
        assert info["remote_version"] == "?"
        assert github.requests == []  # an invalid install is not looked up


async def test_python_package_status(tmp_path: Path) -> None:
    import importlib.metadata
    import json
    import sys

    from trioprint.components.update_base import Output

    commands: list[list[str]] = []

    async def execute(argv: list[str], **kwargs: Any) -> Output:
        commands.append(argv)
        await trio.lowlevel.checkpoint()
        report = {"install": [{"metadata": {"name": "trio", "version": "99.0.0"}}]}
        return Output(0, json.dumps(report), "")

    text = (
        "[update_manager]\nenable_system_updates: False\n[update_manager trio]\ntype: python\n"
        f"virtualenv: {sys.prefix}\nis_system_service: False\n"
    )
    async with contextmanager_harness(tmp_path, text, execute=execute)() as h:
        result = await h.status()
        assert list(result["version_info"]) == ["trio"]
        info = result["version_info"]["trio"]
        assert info["configured_type"] == "python"
        assert info["detected_type"] == "python_package"
        assert info["version"] == importlib.metadata.version("trio")
        assert info["remote_version"] == "99.0.0"
        assert info["remote_hash"] == "update-available"
        assert info["is_valid"] is True
        assert info["warnings"] == []
        assert commands[0][:4] == [f"{sys.prefix}/bin/python", "-m", "pip", "install"]
        assert "--dry-run" in commands[0]


# --- wiring -----------------------------------------------------------------------------------


async def test_instance_has_the_component_only_when_configured(tmp_path: Path) -> None:
    from trioprint.app import Instance

    await trio.lowlevel.checkpoint()  # Instance needs a running Trio loop
    plain = Instance(load_config(None, tmp_path))
    assert "update_manager" not in plain.component_names()
    assert not any(ep.path.startswith("/machine/update") for ep in plain.registry.endpoints())
    conf = tmp_path / "trioprint.conf"
    conf.write_text("[update_manager]\n")
    configured = Instance(load_config(conf, tmp_path))
    assert "update_manager" in configured.component_names()
    names = {ep.rpc_name for ep in configured.registry.endpoints()}
    assert {
        "machine.update.status",
        "machine.update.refresh",
        "machine.update.upgrade",
        "machine.update.recover",
        "machine.update.rollback",
        "machine.update.client",
        "machine.update.full",
        "machine.update.system",
        "machine.update.moonraker",
        "machine.update.klipper",
    } <= names
    assert not [w for w in configured.warnings if "[update_manager]" in w]


async def test_auto_refresh_every_hour_inside_the_window(
    tmp_path: Path, autojump_clock: Any
) -> None:
    import time

    base = time.mktime((2024, 5, 1, 1, 0, 0, 0, 0, -1))  # 01:00 local time

    class Provider:
        def __init__(self) -> None:
            self.calls = 0

        async def refresh(self) -> list[str]:
            self.calls += 1
            await trio.lowlevel.checkpoint()
            return [f"pkg{i}" for i in range(self.calls)]

        async def upgrade(self) -> None:
            raise AssertionError("no upgrade in this test")

    provider = Provider()
    printing = [False]
    text = "[update_manager]\nenable_auto_refresh: True\nrefresh_interval: 1\nrefresh_window: 0-4\n"
    run = contextmanager_harness(
        tmp_path,
        text,
        package_provider=provider,
        clock=lambda: base + trio.current_time(),
        is_printing=lambda: printing[0],
    )
    async with run() as h:
        assert (await h.info("system"))["package_count"] == 1
        await h.manager.wait_refresh_passes(2)  # 02:00
        assert (await h.info("system"))["package_list"] == ["pkg0", "pkg1"]
        printing[0] = True
        await h.manager.wait_refresh_passes(3)  # 03:00, printing: no refresh
        assert provider.calls == 2
        printing[0] = False
        await h.manager.wait_refresh_passes(5)  # 04:00 is outside the window, 05:00 too
        assert provider.calls == 2
        assert len(h.sockets.of("notify_update_refreshed")) == 2


async def test_served_on_http_and_websocket(tmp_path: Path, repos: Repos) -> None:
    import httpx

    from .live import live_server, rpc_client

    config = tmp_path / "moonraker.conf"
    config.write_text(f"[server]\nhost: 127.0.0.1\nport: 0\n\n{config_text(repos)}")
    async with live_server(tmp_path, config) as live, rpc_client(live.ws) as client:
        info = (await client.call("server.info"))["result"]
        assert "update_manager" in info["components"]
        async with httpx.AsyncClient() as http:
            reply = await http.get(f"{live.http}/machine/update/status")
        assert reply.status_code == 200
        assert set(reply.json()["result"]["version_info"]) == {"system", "app"}
        missing = await client.call("machine.update.rollback", {})
        assert "name" in missing["error"]["message"]
        unknown = await client.call("machine.update.upgrade", {"name": "nope"})
        assert unknown["error"]["message"] == "Updater nope not available"
        async with httpx.AsyncClient() as http:
            reply = await http.post(f"{live.http}/machine/update/moonraker")
        assert reply.status_code == 404
        assert reply.json()["error"]["message"] == "Updater moonraker not available"
