"""Agents (Moonraker's extensions): identify as an agent, events, remote methods, requests.

Against the whole server in process, on its simulated printer, with real websocket clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from trioprint import rpc
from trioprint.app import Instance

from .live import RpcClient, live_server, rpc_client

LIMIT = 20  # seconds: every wait in these tests is bounded by this


def identity(name: str, kind: str = "agent") -> dict[str, str]:
    return {"client_name": name, "version": "0.1", "type": kind, "url": "https://example.com"}


@asynccontextmanager
async def agent(url: str, name: str) -> AsyncIterator[RpcClient]:
    async with rpc_client(url) as client:
        reply = await client.call("server.connection.identify", identity(name))
        assert "result" in reply, reply
        yield client


def agent_events(client: RpcClient) -> list[list[str]]:
    return [
        [n["params"][0]["agent"], n["params"][0]["event"]]
        for n in client.notifications
        if n["method"] == "notify_agent_event"
    ]


async def next_message(client: RpcClient) -> dict[str, Any]:
    with trio.fail_after(LIMIT):
        message: dict[str, Any] = json.loads(await client.ws.get_message())
    return message


async def test_agents_connect_list_and_disconnect(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, rpc_client(live.ws) as watcher:
        await watcher.call("server.connection.identify", identity("watcher", "web"))
        async with agent(live.ws, "my_agent") as first:
            connected = await watcher.notification("notify_agent_event")
            assert connected["params"] == [
                {
                    "agent": "my_agent",
                    "event": "connected",
                    "data": {
                        "name": "my_agent",
                        "version": "0.1",
                        "type": "agent",
                        "url": "https://example.com",
                    },
                }
            ]
            listed = await watcher.call("server.extensions.list")
            assert [a["name"] for a in listed["result"]["agents"]] == ["my_agent"]
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{live.http}/server/extensions/list")
            assert response.json()["result"] == listed["result"]
            # one connection per agent name; the refused one may identify again
            async with rpc_client(live.ws) as second:
                refused = await second.call("server.connection.identify", identity("my_agent"))
                assert refused["error"]["code"] == 400
                assert "my_agent" in refused["error"]["message"]
                again = await second.call("server.connection.identify", identity("other"))
                assert "result" in again
                assert (await watcher.notification("notify_agent_event"))["params"][0][
                    "agent"
                ] == "other"
            gone = await watcher.notification("notify_agent_event")
            assert gone["params"] == [{"agent": "other", "event": "disconnected"}]
            await first.call("server.websocket.id")  # reads what was queued for it so far
            assert agent_events(first) == [["other", "connected"], ["other", "disconnected"]]
        gone = await watcher.notification("notify_agent_event")
        assert gone["params"] == [{"agent": "my_agent", "event": "disconnected"}]
        listed = await watcher.call("server.extensions.list")
        assert listed["result"] == {"agents": []}


async def test_send_event(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, rpc_client(live.ws) as watcher:
        not_agent = await watcher.call("connection.send_event", {"event": "x"})
        assert not_agent["error"]["code"] == 400
        assert "agent" in not_agent["error"]["message"]
        async with agent(live.ws, "sender") as sender:
            await watcher.notification("notify_agent_event")  # connected
            reserved = await sender.call("connection.send_event", {"event": "connected"})
            assert reserved["error"]["code"] == 400
            assert "reserved" in reserved["error"]["message"]
            missing = await sender.call("connection.send_event", {})
            assert missing["error"]["code"] == 400
            assert "event" in missing["error"]["message"]
            sent = await sender.call("connection.send_event", {"event": "spool", "data": {"id": 3}})
            assert sent["result"] == "ok"
            event = await watcher.notification("notify_agent_event")
            assert event["params"] == [{"agent": "sender", "event": "spool", "data": {"id": 3}}]
            await sender.call("connection.send_event", {"event": "bare"})
            event = await watcher.notification("notify_agent_event")
            assert event["params"] == [{"agent": "sender", "event": "bare"}]
            await sender.call("server.websocket.id")
            assert agent_events(sender) == []  # an agent does not hear its own events
        async with httpx.AsyncClient() as http:  # websocket only
            response = await http.post(f"{live.http}/connection/send_event", json={"event": "x"})
        assert response.status_code == 404


async def answer_requests(client: RpcClient, count: int) -> list[dict[str, Any]]:
    """Act as the agent: answer ``count`` requests (``fail`` answers with an error)."""
    seen = []
    while len(seen) < count:
        message = await next_message(client)
        if "id" not in message or "method" not in message:
            continue
        seen.append(message)
        if message["method"] == "fail":
            error = {"code": -1, "message": "nope"}
            answer = {"jsonrpc": "2.0", "error": error, "id": message["id"]}
        else:
            result = {"echo": message.get("params")}
            answer = {"jsonrpc": "2.0", "result": result, "id": message["id"]}
        await client.ws.send_message(json.dumps(answer))
    return seen


async def test_extensions_request_reaches_the_agent(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, agent(live.ws, "helper") as helper:
        async with rpc_client(live.ws) as caller, trio.open_nursery() as nursery:
            seen: list[dict[str, Any]] = []

            async def serve() -> None:
                seen.extend(await answer_requests(helper, 3))

            nursery.start_soon(serve)
            ok = await caller.call(
                "server.extensions.request",
                {"agent": "helper", "method": "do.it", "arguments": {"a": 1}},
            )
            assert ok["result"] == {"echo": {"a": 1}}
            failed = await caller.call(
                "server.extensions.request", {"agent": "helper", "method": "fail"}
            )
            assert failed["error"] == {
                "code": 424,
                "message": "Agent helper RPC error",
                "data": {"code": -1, "message": "nope"},
            }
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    f"{live.http}/server/extensions/request",
                    json={"agent": "helper", "method": "list", "arguments": [1, 2]},
                )
            assert response.status_code == 200
            assert response.json() == {"result": {"echo": [1, 2]}}
        assert [m["method"] for m in seen] == ["do.it", "fail", "list"]
        assert "params" not in seen[1]  # no arguments: no params, as Moonraker
        async with rpc_client(live.ws) as caller:
            unknown = await caller.call(
                "server.extensions.request", {"agent": "nobody", "method": "x"}
            )
            assert unknown["error"] == {"code": 400, "message": "Agent nobody not connected"}
            bad = await caller.call(
                "server.extensions.request", {"agent": "helper", "method": "x", "arguments": 5}
            )
            assert bad["error"]["code"] == 400
            assert "arguments" in bad["error"]["message"]


async def test_a_request_fails_when_the_agent_goes_away(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, rpc_client(live.ws) as caller:
        async with agent(live.ws, "flaky") as flaky:
            request = {"agent": "flaky", "method": "slow"}
            await caller.ws.send_message(
                json.dumps(rpc.request(1, "server.extensions.request", request))
            )
            message = await next_message(flaky)  # it never answers
            assert message["method"] == "slow"
        reply = await caller.reply(1)
        assert reply["error"] == {"code": 500, "message": "Client Socket Disconnected"}


async def ready(instance: Instance) -> None:
    with trio.fail_after(LIMIT):
        await instance.klippy.wait_ready()


async def test_remote_method_called_by_klippy_reaches_the_agent(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        await ready(live.instance)
        sim = live.instance.simulator
        assert sim is not None
        async with rpc_client(live.ws) as other:
            refused = await other.call(
                "connection.register_remote_method", {"method_name": "agent_hello"}
            )
            assert refused["error"]["code"] == 400
            assert "agent" in refused["error"]["message"]
        async with agent(live.ws, "macro_target") as target:
            ok = await target.call(
                "connection.register_remote_method", {"method_name": "agent_hello"}
            )
            assert ok["result"] == "ok"
            twice = await target.call(
                "connection.register_remote_method", {"method_name": "agent_hello"}
            )
            assert twice["error"]["code"] == 400
            assert "already registered" in twice["error"]["message"]
            # klippy (here the simulator) has it: a macro's action_call_remote_method
            assert sim.call_remote_method("agent_hello", greeting="hi", n=2) == 1
            call = await target.notification("agent_hello")
            params = {"greeting": "hi", "n": 2}
            assert call == {"jsonrpc": "2.0", "method": "agent_hello", "params": params}
        # the agent is gone: its method is free again, for the next agent
        async with agent(live.ws, "macro_target_2") as target:
            ok = await target.call(
                "connection.register_remote_method", {"method_name": "agent_hello"}
            )
            assert ok["result"] == "ok"
            sim.call_remote_method("agent_hello")
            call = await target.notification("agent_hello")
            assert "params" not in call
