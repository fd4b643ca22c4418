"""Authorization wired into a running server: real sockets, the real database, a restart.

``[authorization] trust_loopback: False`` makes the test client (on 127.0.0.1) an untrusted
one, so the credentials are what is tested.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from .live import live_server, rpc_client

UNAUTHORIZED = {"error": {"code": 401, "message": "Unauthorized"}}
IDENTIFY = {"client_name": "t", "version": "1", "type": "web", "url": "x"}


async def test_live_credentials_and_persistence_across_restart(tmp_path: Path) -> None:
    config = tmp_path / "trioprint.conf"
    config.write_text("[authorization]\ntrust_loopback: False\n")
    async with live_server(tmp_path, config) as live, httpx.AsyncClient() as http:
        with trio.fail_after(20):
            refused = await http.get(f"{live.http}/server/info")
            assert (refused.status_code, refused.json()) == (401, UNAUTHORIZED)
            key = live.instance.auth.api_key
            assert len(key) == 32
            headers = {"X-Api-Key": key}
            assert (await http.get(f"{live.http}/server/info", headers=headers)).status_code == 200

            async with rpc_client(live.ws) as client:
                assert (await client.call("server.info"))["error"]["code"] == -32602
                ok = await client.call("server.connection.identify", {**IDENTIFY, "api_key": key})
                assert "connection_id" in ok["result"]
                assert "klippy_state" in (await client.call("server.info"))["result"]

            token = (await http.get(f"{live.http}/access/oneshot_token", headers=headers)).json()
            async with rpc_client(f"{live.ws}?token={token['result']}") as client:
                assert "result" in await client.call("server.info")

            user = {"username": "ada", "password": "lovelace"}
            created = await http.post(f"{live.http}/access/user", headers=headers, json=user)
            assert created.status_code == 200
            jwt = created.json()["result"]["token"]

            restarted = await http.post(f"{live.http}/server/restart", headers=headers)
            assert restarted.json() == {"result": "ok"}
            second = await live.server.wait_serving(other_than=live.instance)
            base = f"http://127.0.0.1:{second.bound[0][1]}"
            # the key, the signing secret and the user came back from the database
            assert second.auth.api_key == key
            me = await http.get(f"{base}/access/user", headers={"Authorization": f"Bearer {jwt}"})
            assert me.json()["result"]["username"] == "ada"
            login = await http.post(f"{base}/access/login", json=user)
            assert login.json()["result"]["action"] == "user_logged_in"
