"""The whole server in process: real hypercorn on 127.0.0.1:0, real HTTP and websocket clients."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import trio
import trio.testing

from trioprint.components.server import API_VERSION

from .live import call_until_closed, live_server, rpc_client

INFO_KEYS = {
    "klippy_connected",
    "klippy_state",
    "components",
    "failed_components",
    "registered_directories",
    "warnings",
    "websocket_count",
    "moonraker_version",
    "api_version",
    "api_version_string",
}


async def test_server_info_over_http_and_websocket(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{live.http}/server/info")
        assert response.status_code == 200
        info = response.json()["result"]
        assert set(info) >= INFO_KEYS
        # no klippy configured: the simulated printer is starting or up
        assert info["klippy_state"] in ("disconnected", "startup", "ready")
        assert info["api_version"] == list(API_VERSION)
        async with rpc_client(live.ws) as client:
            await client.ws.send_message('{"jsonrpc":"2.0","method":"server.info","id":0}')
            reply = await client.reply(0)
            assert reply["id"] == 0
            assert reply["result"]["websocket_count"] == 1
            assert set(reply["result"]) == set(info)


async def test_http_errors_are_json(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient() as http:
        missing = await http.get(f"{live.http}/server/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == 404
        wrong = await http.delete(f"{live.http}/server/info")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == 405


async def test_identify_and_websocket_id(tmp_path: Path) -> None:
    params = {"client_name": "test", "version": "1.0", "type": "web", "url": "http://x"}
    async with live_server(tmp_path) as live, rpc_client(live.ws) as client:
        ws_id = (await client.call("server.websocket.id"))["result"]["websocket_id"]
        identified = await client.call("server.connection.identify", params)
        assert identified["result"] == {"connection_id": ws_id}
        again = await client.call("server.connection.identify", params)
        assert again["error"]["code"] == 400
        assert "already identified" in again["error"]["message"]
        bad = await client.call("server.connection.identify", {**params, "type": "toaster"})
        assert bad["error"]["code"] == 400
        assert "type" in bad["error"]["message"]


async def test_websocket_only_methods_have_no_http_route(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, httpx.AsyncClient() as http:
        response = await http.get(f"{live.http}/server/websocket/id")
        assert response.status_code == 404


async def test_proc_stat_heartbeat_and_machine_methods(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, rpc_client(live.ws) as client:
        with trio.fail_after(5):
            note = await client.notification("notify_proc_stat_update")
        stats = note["params"][0]
        assert {"moonraker_stats", "network", "system_cpu_usage", "system_memory"} <= set(stats)
        assert stats["moonraker_stats"]["memory"] > 0
        assert stats["websocket_connections"] == 1
        proc = (await client.call("machine.proc_stats"))["result"]
        assert proc["throttled_state"] is None
        assert proc["system_uptime"] > 0
        assert isinstance(proc["moonraker_stats"], list)
        system = (await client.call("machine.system_info"))["result"]["system_info"]
        assert system["cpu_info"]["cpu_count"] == os.cpu_count()


async def test_server_config_reports_the_file(tmp_path: Path) -> None:
    config = tmp_path / "moonraker.conf"
    config.write_text("[server]\nhost: 127.0.0.1\nport: 7125\n\n[update_manager]\nx: 1\n")
    async with live_server(tmp_path, config) as live, rpc_client(live.ws) as client:
        result = (await client.call("server.config"))["result"]
        assert result["config"]["server"]["host"] == "127.0.0.1"
        assert result["orig"]["update_manager"] == {"x": "1"}
        info = (await client.call("server.info"))["result"]
        assert any("update_manager" in w for w in info["warnings"])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(c) for n in task.child_nurseries for c in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def test_restart_20_times_leaks_nothing(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        server = live.server

        async def one_restart() -> None:
            assert server.instance is not None
            port = server.instance.bound[0][1]
            old = server.instance
            with trio.fail_after(10):
                reply, code, eof = await call_until_closed(port, "server.restart")
                new = await server.wait_serving(other_than=old)
            # "ok" first, then close code 1012 (service restart), then the TCP close
            assert reply["result"] == "ok"
            assert code == 1012
            assert eof
            # the new instance answers
            new_port = new.bound[0][1]
            async with httpx.AsyncClient() as http:
                info = await http.get(f"http://127.0.0.1:{new_port}/server/info")
                assert info.status_code == 200

        await one_restart()  # warm up lazily created resources (thread pool, caches)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        fds, tasks = open_fds(), count_tasks()
        for _ in range(20):
            await one_restart()
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert server.instances_started == 22
        assert open_fds() <= fds
        assert count_tasks() <= tasks


async def test_arbitrary_frames_over_a_real_socket_leave_the_server_serving(
    tmp_path: Path,
) -> None:
    """Garbage over real hypercorn: every frame gets a well-formed answer, the connection and
    the server stay up (the in-memory fuzz tests cover many more inputs)."""
    frames = [
        "",
        "{",
        "[]",
        "[1,2,3]",
        "null",
        '{"jsonrpc":"2.0"}',
        '{"jsonrpc":"2.0","method":"server.info","params":[],"id":{}}',
        '{"jsonrpc":"2.0","method":"server.info","params":{"raw":"maybe"},"id":1}',
        '{"jsonrpc":"2.0","method":"server.info","id":' + "9" * 400 + "}",
        "[" * 10000 + "]" * 10000,
        '{"jsonrpc":"2.0","method":"\\ud800","id":2}',
        "\x00\x01\x02",
    ]
    async with live_server(tmp_path) as live, rpc_client(live.ws) as client:
        for i, frame in enumerate(frames):
            await client.ws.send_message(frame)
            sentinel = {"jsonrpc": "2.0", "method": "server.info", "id": f"s{i}"}
            await client.ws.send_message(json.dumps(sentinel))
            answers = []
            seen_sentinel = False
            # requests run concurrently: the answer may come before or after the sentinel's
            with trio.fail_after(10):
                while not (seen_sentinel and answers):
                    message = json.loads(await client.ws.get_message())
                    if isinstance(message, dict) and message.get("id") == f"s{i}":
                        seen_sentinel = True
                    elif isinstance(message, dict) and "method" in message:
                        continue  # a notification
                    else:
                        answers.append(message)
            assert len(answers) == 1, frame[:50]
            for item in answers[0] if isinstance(answers[0], list) else answers:
                assert item["jsonrpc"] == "2.0"
                assert ("result" in item) != ("error" in item)
        # binary frames are read as UTF-8 JSON as well
        await client.ws.send_message(b'{"jsonrpc":"2.0","method":"server.info","id":"b"}')
        assert (await client.reply("b"))["result"]["api_version"] == list(API_VERSION)
        assert (await client.call("server.info"))["result"]["websocket_count"] == 1


async def test_http_restart_rereads_config_and_keeps_the_old_one_if_broken(
    tmp_path: Path,
) -> None:
    config = tmp_path / "moonraker.conf"
    config.write_text("[server]\nmax_websocket_connections: 5\n")
    async with live_server(tmp_path, config) as live:
        server = live.server
        first = server.instance
        assert first is not None
        # a good change is picked up by the restart
        config.write_text("[server]\nmax_websocket_connections: 7\n[no_such_plugin]\n")
        async with httpx.AsyncClient() as http:
            reply = await http.post(f"{live.http}/server/restart")
        assert reply.json() == {"result": "ok"}
        with trio.fail_after(10):
            second = await server.wait_serving(other_than=first)
        assert second.config.server.max_websocket_connections == 7
        assert second.warnings == [
            f"{config}:3: [no_such_plugin]: section not supported by trioprint, ignored"
        ]
        # a broken one is refused: the previous config stays, and server.info says why
        config.write_text("[server]\nmax_websocket_connections: many\n")
        second.request_restart()
        with trio.fail_after(10):
            third = await server.wait_serving(other_than=second)
        assert third.config.server.max_websocket_connections == 7
        async with rpc_client(f"ws://127.0.0.1:{third.bound[0][1]}/websocket") as client:
            info = (await client.call("server.info"))["result"]
        assert any("max_websocket_connections" in w for w in info["warnings"])


async def test_host_control_errors_over_http(tmp_path: Path) -> None:
    # conftest: provider none, so nothing reaches the host's init system
    async with live_server(tmp_path) as live, rpc_client(live.ws) as client:
        async with httpx.AsyncClient() as http:
            denied = await http.post(f"{live.http}/machine/services/restart?service=ssh")
            assert denied.status_code == 400
            assert denied.json()["error"]["message"] == "Service 'ssh' not allowed"
            missing = await http.post(f"{live.http}/machine/services/stop")
            assert missing.status_code == 400
            unavailable = await http.post(f"{live.http}/machine/reboot")
            message = unavailable.json()["error"]["message"]
            if unavailable.status_code == 400:  # this host runs in a container: refused first
                assert "container" in message
            else:
                assert unavailable.status_code == 503
                assert "provider: none" in message
            canbus = await http.get(f"{live.http}/machine/peripherals/canbus?interface=a/b")
            assert canbus.status_code == 400
        answer = await client.call("machine.services.start", {"service": "crowsnest"})
        assert answer["error"]["code"] == 503
        system = (await client.call("machine.system_info"))["result"]["system_info"]
        assert (system["provider"], system["available_services"]) == ("none", [])
