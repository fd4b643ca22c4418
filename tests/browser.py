"""Driving the real Mainsail in Debian's Chromium through Playwright's sync API.

Shared by tests/test_browser_mainsail.py and bench/bench_dashboard.py. Playwright's own browser
download is never used (no ``playwright install``): Chromium is ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("TRIOPRINT_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]
#: Mainsail v2.18.2, built (see its README): ``<repo>/../shared/mainsail/dist``.
MAINSAIL_DIST = Path(
    os.environ.get("TRIOPRINT_MAINSAIL_DIST", str(REPO.parent / "shared" / "mainsail" / "dist"))
)

#: The dashboard is up: no "Initializing" dialog, and the temperatures panel shows the
#: extruder's current temperature.
DASHBOARD_READY = """() => {
    const text = document.body ? document.body.innerText : "";
    if (/Initializing/i.test(text)) return false;
    const rows = [...document.querySelectorAll("tr")];
    return rows.some(r => /Extruder/.test(r.innerText) && /\\d+\\.\\d\\s*°C/.test(r.innerText));
}"""


def missing_browser_parts() -> list[str]:
    """What this machine lacks to run the browser tests ([] when nothing)."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright; never `playwright install`)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not (MAINSAIL_DIST / "index.html").is_file():
        missing.append(f"Mainsail's build in {MAINSAIL_DIST}")
    return missing


@dataclass
class PageWatch:
    """Everything a page did that a test looks at: each JSON-RPC request and its reply, the
    console errors, the failed requests and the HTTP error answers."""

    methods: dict[Any, str] = field(default_factory=dict)
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rpc_errors: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    http_errors: list[tuple[int, str]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("websocket", self._on_websocket)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def _on_websocket(self, ws: Any) -> None:
        ws.on("framesent", self._sent)
        ws.on("framereceived", self._received)

    @staticmethod
    def _messages(payload: Any) -> list[dict[str, Any]]:
        try:
            data = json.loads(payload)
        except (TypeError, ValueError):
            return []
        items = data if isinstance(data, list) else [data]
        return [item for item in items if isinstance(item, dict)]

    def _sent(self, payload: Any) -> None:
        for msg in self._messages(payload):
            if "id" in msg and "method" in msg:
                self.methods[msg["id"]] = str(msg["method"])

    def _received(self, payload: Any) -> None:
        for msg in self._messages(payload):
            if "id" not in msg or "method" in msg:
                continue  # a notification
            method = self.methods.get(msg["id"], f"<id {msg['id']}>")
            self.replies.append((method, msg))
            if "error" in msg:
                self.rpc_errors.append((method, msg["error"]))

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _on_failed(self, request: Any) -> None:
        self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self.http_errors.append((response.status, response.url))

    def sent_methods(self) -> list[str]:
        return sorted(set(self.methods.values()))


@contextlib.contextmanager
def chromium_page(viewport: tuple[int, int] = (1280, 900)) -> Iterator[tuple[Any, PageWatch]]:
    """A fresh browser (no cache, no storage) with one page, and its :class:`PageWatch`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            watch = PageWatch()
            watch.attach(page)
            yield page, watch
        finally:
            browser.close()


def load_dashboard(page: Any, url: str, timeout: float = 60.0) -> float:
    """Open ``url`` and wait for the dashboard (see :data:`DASHBOARD_READY`); the seconds
    from navigation to it."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=timeout * 1000)
    page.wait_for_function(DASHBOARD_READY, timeout=timeout * 1000, polling="raf")
    return time.perf_counter() - started


def wait_http(url: str, timeout: float = 30.0, process: Any = None) -> None:
    """Wait until ``url`` answers (any status)."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())
