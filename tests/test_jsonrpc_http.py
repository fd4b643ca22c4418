"""``POST /server/jsonrpc`` (JSON-RPC over HTTP) and ``server.logs.rollover``.

The whole server in process with real HTTP clients; the rollover also on its own, with the
logging set up as the command line sets it up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trioprint import logs
from trioprint.app import Instance
from trioprint.components.server import RolloverParams, ServerCore
from trioprint.registry import Call, Transport

from .live import live_server

LIMIT = 20


def req(method: str, req_id: Any = 1, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        msg["params"] = params
    return msg


async def test_one_request_and_a_batch(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient() as http:
        url = f"{live.http}/server/jsonrpc"
        with trio.fail_after(LIMIT):
            one = await http.post(url, json=req("server.info", 7))
            assert one.status_code == 200
            body = one.json()
            assert body["id"] == 7
            assert "klippy_state" in body["result"]
            batch = [
                req("server.info", "a"),
                {"jsonrpc": "2.0", "method": "server.info"},  # a notification: no answer
                req("no.such.method", "b"),
                req("server.database.get_item", "c", {"namespace": 5}),
                {"jsonrpc": "2.0", "result": 1, "id": 9},  # a reply: nothing waits for it here
            ]
            answers = (await http.post(url, json=batch)).json()
            assert [a["id"] for a in answers] == ["a", "b", "c"]
            assert "result" in answers[0]
            assert answers[1]["error"] == {
                "code": -32601,
                "message": "Method not found: no.such.method",
            }
            assert answers[2]["error"]["code"] == 400
            assert "namespace" in answers[2]["error"]["message"]
            only_notes = await http.post(url, json={"jsonrpc": "2.0", "method": "server.info"})
            assert (only_notes.status_code, only_notes.content) == (200, b"")
            broken = await http.post(
                url, content=b"{nope", headers={"Content-Type": "application/json"}
            )
            assert broken.json()["error"]["code"] == -32700


async def test_what_http_cannot_call(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient() as http:
        url = f"{live.http}/server/jsonrpc"
        ws_only = (await http.post(url, json=req("server.websocket.id"))).json()
        assert ws_only["error"]["code"] == -32601
        assert "transport HTTP" in ws_only["error"]["message"]
        sub = req("printer.objects.subscribe", 2, {"objects": {"toolhead": None}})
        subscribed = (await http.post(url, json=sub)).json()
        assert subscribed["error"] == {
            "code": -32601,
            "message": "Subscriptions not available for HTTP transport",
        }
        form = await http.post(url, data={"jsonrpc": "2.0"})
        assert form.status_code == 400
        assert "application/json" in form.json()["error"]["message"]
        wrong_verb = await http.get(url)
        assert wrong_verb.status_code == 405


async def test_each_method_is_authorized(tmp_path: Path) -> None:
    config = tmp_path / "trioprint.conf"
    config.write_text("[authorization]\ntrust_loopback: False\n")
    async with live_server(tmp_path, config) as live, httpx.AsyncClient() as http:
        url = f"{live.http}/server/jsonrpc"
        batch = [req("server.info", 1), req("access.info", 2)]
        answers = (await http.post(url, json=batch)).json()
        # the route answers; the method that needs credentials does not run
        assert answers[0]["error"] == {"code": -32602, "message": "Unauthorized"}
        assert "result" in answers[1]  # access.info needs none
        headers = {"X-Api-Key": live.instance.auth.api_key}
        with_key = (await http.post(url, json=batch, headers=headers)).json()
        assert "klippy_state" in with_key[0]["result"]
        # a page on another site cannot drive it (cross-site protection applies)
        foreign = await http.post(
            url, json=batch[0], headers={**headers, "Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403


async def test_logs_rollover_without_a_log_file(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient() as http:
        response = await http.post(f"{live.http}/server/logs/rollover")
        result = response.json()["result"]
        assert result["rolled_over"] == []
        assert set(result["failed"]) == {"moonraker", "klipper"}
        assert result["failed"]["moonraker"] == "File Logging Disabled"
        unknown = await http.post(
            f"{live.http}/server/logs/rollover", json={"application": "octoprint"}
        )
        assert unknown.status_code == 400
        assert "octoprint" in unknown.json()["error"]["message"]


async def test_logs_rollover_starts_a_new_file(tmp_path: Path) -> None:
    stop = logs.setup_logging(tmp_path / "logs")
    try:
        logging.getLogger("trioprint.test").warning("before the rollover")
        core = ServerCore(Instance.__new__(Instance))
        call = Call(RolloverParams("moonraker"), Transport.HTTP, "POST")
        result = await core.logs_rollover(call)
        assert result == {"rolled_over": ["moonraker"], "failed": {}}
        logging.getLogger("trioprint.test").warning("after the rollover")
    finally:
        stop()
    current = (tmp_path / "logs" / "trioprint.log").read_text()
    previous = (tmp_path / "logs" / "trioprint.log.1").read_text()
    assert "before the rollover" in previous
    assert "before the rollover" not in current
    assert "after the rollover" in current
    assert logs.log_file() is None  # stopped: nothing to roll over any more
    with pytest.raises(logs.RolloverError):
        logs.rollover()
