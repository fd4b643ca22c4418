"""Authorization end to end: every endpoint that needs credentials refuses a request without
them from an untrusted address, on HTTP and on the websocket; keys, logins, JWTs and oneshot
tokens work as Moonraker's and fail safely.

Requests come from chosen addresses in-process: Quart's test client with a ``client`` in its
ASGI scope, and an ASGI websocket peer whose scope names its own ``client``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from quart_trio import QuartTrio

from trioprint.bus import Bus, Notify
from trioprint.components.auth import Authorization
from trioprint.config import AuthorizationConfig, load_config
from trioprint.domain.auth import API_USER, TRUSTED_USER
from trioprint.domain.kv import MemoryStore
from trioprint.registry import Call, NoParams, Registry, Transport, endpoint
from trioprint.transport.http import create_http_app
from trioprint.transport.websocket import WebsocketManager

from .asgi_peer import Peer

UNTRUSTED = ("203.0.113.9", 40000)
OTHER = ("198.51.100.4", 40001)
LOOPBACK = ("127.0.0.1", 40002)
CHEAP = {"n": 16, "r": 1, "p": 1}
UNAUTHORIZED = {"error": {"code": 401, "message": "Unauthorized"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Fixture:
    @endpoint("/server/secret", "GET")
    async def secret(self, call: Call[NoParams]) -> dict[str, Any]:
        assert call.user is not None  # the transports never run it without one
        return {"user": call.user.username}

    @endpoint("/server/public", "GET", auth=False)
    async def public(self, call: Call[NoParams]) -> dict[str, Any]:
        return {"user": None if call.user is None else call.user.username}


class ClientPeer(Peer):
    """A websocket peer connecting from ``client`` with a query string and headers."""

    def __init__(
        self,
        client: tuple[str, int],
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.query = urllib.parse.urlencode(query or {}).encode()
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]

    async def serve(self, manager: WebsocketManager, *, task_status: Any) -> None:
        self._in_send.send_nowait({"type": "websocket.connect"})
        scope = {
            "type": "websocket",
            "path": "/websocket",
            "client": self.client,
            "query_string": self.query,
            "headers": self.headers,
        }
        task_status.started()
        await manager.serve(scope, self.receive, self.send)

    async def call(self, method: str, params: Any = None) -> dict[str, Any]:
        self.request(method, params)
        while True:
            msg = await self.next()
            if "id" in msg:
                return msg  # type: ignore[no-any-return]


@attrs.define
class Stack:
    auth: Authorization
    app: QuartTrio
    websockets: WebsocketManager
    clock: Clock
    bus: Bus
    nursery: trio.Nursery

    async def http(
        self,
        method: str,
        path: str,
        *,
        client: tuple[str, int] = UNTRUSTED,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        response = await self.app.test_client().open(
            path,
            method=method,
            headers=headers,
            query_string=query,
            scope_base={"client": client},
            **kwargs,
        )
        return response.status_code, json.loads(await response.get_data())

    async def connect(
        self,
        client: tuple[str, int] = UNTRUSTED,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ClientPeer:
        peer = ClientPeer(client, query, headers)
        await self.nursery.start(peer.serve, self.websockets)
        assert (await peer.next_message())["type"] == "websocket.accept"
        await trio.testing.wait_all_tasks_blocked()  # the connection is registered
        return peer

    async def login(self, username: str = "alice", password: str = "pw") -> dict[str, Any]:
        status, body = await self.http(
            "POST", "/access/login", body={"username": username, "password": password}
        )
        assert status == 200, body
        return body["result"]  # type: ignore[no-any-return]

    async def create_user(self, username: str = "alice", password: str = "pw") -> dict[str, Any]:
        status, body = await self.http(
            "POST",
            "/access/user",
            headers=self.key(),
            body={"username": username, "password": password},
        )
        assert status == 200, body
        return body["result"]  # type: ignore[no-any-return]

    def key(self) -> dict[str, str]:
        return {"X-Api-Key": self.auth.api_key}


@asynccontextmanager
async def stack(
    config: AuthorizationConfig | None = None, store: MemoryStore | None = None
) -> AsyncIterator[Stack]:
    clock = Clock()
    bus = Bus()
    registry = Registry()
    websockets = WebsocketManager(registry, bus)
    auth = Authorization(
        config or AuthorizationConfig(),
        store or MemoryStore(),
        bus,
        websockets,
        clock=clock,
        hash_params=CHEAP,
    )
    websockets.authenticator = auth
    registry.add_component(auth)
    registry.add_component(Fixture())
    app = create_http_app(registry, authenticator=auth, cors_domains=("https://ui.example",))
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.run)
        yield Stack(auth, app, websockets, clock, bus, nursery)
        nursery.cancel_scope.cancel()


# --- the registry walk on a whole instance --------------------------------------------------


def whole_instance(tmp_path: Path) -> Any:
    from trioprint.app import Instance

    # built, not started: a request that got past authentication would reach a component
    # that is not running, and fail in some other way than 401
    return Instance(load_config(None, tmp_path))


async def test_every_http_endpoint_needing_auth_answers_401(tmp_path: Path) -> None:
    instance = whole_instance(tmp_path)
    client = instance.http_app.test_client()
    checked = []
    for ep in instance.registry.endpoints():
        if not ep.transports & Transport.HTTP:
            continue
        response = await client.open(ep.path, method=ep.verb, scope_base={"client": UNTRUSTED})
        body = json.loads(await response.get_data())
        if ep.auth:
            assert (response.status_code, body) == (401, UNAUTHORIZED), (ep.verb, ep.path)
            checked.append(ep.path)
        else:
            assert response.status_code != 401 or ep.path == "/access/refresh_jwt", ep.path
    assert len(checked) > 30
    assert "/access/api_key" in checked
    assert "/server/files/list" in checked


async def test_routes_outside_the_registry_need_auth_too(tmp_path: Path) -> None:
    instance = whole_instance(tmp_path)
    client = instance.http_app.test_client()
    refused = [
        ("GET", "/server/files/gcodes/part.gcode"),
        ("GET", "/server/files/config/printer.cfg"),
        ("DELETE", "/server/files/gcodes/part.gcode"),
        ("POST", "/server/files/upload"),
        ("POST", "/api/files/local"),
        ("GET", "/no/such/route"),
        ("GET", "/server/files/config/.thumbs/a.png"),  # thumbnails: the gcodes root only
        ("GET", "/server/files/gcodes/../config/.thumbs/a.png"),
        ("DELETE", "/server/files/gcodes/.thumbs/a.png"),
    ]
    for verb, path in refused:
        response = await client.open(path, method=verb, scope_base={"client": UNTRUSTED})
        assert response.status_code == 401, (verb, path)
        assert json.loads(await response.get_data()) == UNAUTHORIZED
    # thumbnails in the gcodes root are served without credentials, as Moonraker does
    response = await client.open(
        "/server/files/gcodes/sub/.thumbs/a-32x32.png", scope_base={"client": UNTRUSTED}
    )
    assert response.status_code != 401


async def test_every_websocket_method_needing_auth_answers_401(tmp_path: Path) -> None:
    instance = whole_instance(tmp_path)
    async with trio.open_nursery() as nursery:
        peer = ClientPeer(UNTRUSTED)
        await nursery.start(peer.serve, instance.websockets)
        checked = 0
        for i, name in enumerate(instance.registry.rpc_names()):
            ep = instance.registry.by_rpc(name)
            assert ep is not None
            if not ep.auth:
                continue
            peer.request(name, {}, id=i)
            reply = await peer.next()
            assert reply["id"] == i
            assert reply["error"] == {"code": -32602, "message": "Unauthorized"}, name
            checked += 1
        assert checked > 30
        info = await peer.call("access.info")
        assert info["result"]["trusted"] is False
        peer.disconnect()


# --- the API key, trusted addresses, CORS ----------------------------------------------------


async def test_api_key_header_and_rotation() -> None:
    async with stack() as s:
        assert await s.http("GET", "/server/secret") == (401, UNAUTHORIZED)
        assert await s.http("GET", "/server/secret", headers=s.key()) == (
            200,
            {"result": {"user": API_USER}},
        )
        status, body = await s.http("GET", "/server/secret", headers={"X-Api-Key": "wrong"})
        assert (status, body["error"]["message"]) == (401, "Invalid API Key")
        old = s.auth.api_key
        status, body = await s.http("POST", "/access/api_key", headers=s.key())
        assert status == 200
        assert body["result"] != old
        assert body["result"] == s.auth.api_key
        assert (await s.http("GET", "/server/secret", headers={"X-Api-Key": old}))[0] == 401
        assert (await s.http("GET", "/access/api_key", headers=s.key()))[1]["result"] == (
            s.auth.api_key
        )


async def test_disabled_api_key_is_refused() -> None:
    async with stack(AuthorizationConfig(enable_api_key=False)) as s:
        status, body = await s.http("GET", "/server/secret", headers=s.key())
        assert (status, body["error"]["message"]) == (401, "API Key authentication is disabled")


async def test_key_secret_and_users_persist_across_restarts() -> None:
    store = MemoryStore()
    async with stack(store=store) as first:
        await first.create_user("alice", "pw")
        await first.create_user("a.b ü", "pw2")  # a name with a dot is one key part
        token = (await first.login("alice", "pw"))["token"]
        key = first.auth.api_key
    async with stack(store=store) as second:
        assert second.auth.api_key == key
        headers = {"Authorization": f"Bearer {token}"}
        assert (await second.http("GET", "/server/secret", headers=headers))[1] == {
            "result": {"user": "alice"}
        }
        assert (await second.login("a.b ü", "pw2"))["username"] == "a.b ü"
    assert "password" in json.dumps(store.data)
    assert '"pw"' not in json.dumps(store.data)


async def test_loopback_trusted_by_default_and_configurable() -> None:
    async with stack() as s:
        assert await s.http("GET", "/server/secret", client=LOOPBACK) == (
            200,
            {"result": {"user": TRUSTED_USER}},
        )
        assert (await s.http("GET", "/access/info", client=LOOPBACK))[1]["result"] == {
            "default_source": "moonraker",
            "available_sources": ["moonraker"],
            "login_required": False,
            "trusted": True,
        }
    config = AuthorizationConfig(trust_loopback=False, trusted_clients=("10.1.0.0/16",))
    async with stack(config) as s:
        assert (await s.http("GET", "/server/secret", client=LOOPBACK))[0] == 401
        assert (await s.http("GET", "/server/secret", client=("10.1.2.3", 1)))[0] == 200
        assert (await s.http("GET", "/server/secret", client=("10.2.0.1", 1)))[0] == 401


async def test_trusted_host_names_are_resolved_at_start_up() -> None:
    bus = Bus()
    resolved: list[str] = []

    def resolve(name: str) -> list[str]:
        resolved.append(name)
        return ["192.0.2.44"]

    config = AuthorizationConfig(trusted_clients=("printer.example",), trust_loopback=False)
    auth = Authorization(config, MemoryStore(), bus, resolve=resolve)
    assert not auth.trusted.trusts("192.0.2.44")
    async with trio.open_nursery() as nursery:
        await nursery.start(auth.run)
    assert resolved == ["printer.example"]
    assert auth.trusted.trusts("192.0.2.44")
    assert not auth.trusted.trusts("192.0.2.45")


async def test_a_refused_request_still_gets_cors_headers() -> None:
    async with stack() as s:
        response = await s.app.test_client().open(
            "/server/secret", headers={"Origin": "https://ui.example"}, scope_base={"client": OTHER}
        )
        assert response.status_code == 401
        assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example"
        preflight = await s.app.test_client().open(
            "/server/secret", method="OPTIONS", scope_base={"client": OTHER}
        )
        assert preflight.status_code == 204


# --- users and JWTs -------------------------------------------------------------------------


async def test_login_tokens_refresh_logout_and_user_methods() -> None:
    async with stack() as s:
        with s.bus.subscribe(Notify) as notes:
            created = await s.create_user("alice", "pw")
            assert created["action"] == "user_created"
            assert created["username"] == "alice"
            note = notes.receive_nowait()
        assert note == Notify("notify_user_created", ({"username": "alice"},))
        login = await s.login("alice", "pw")
        assert set(login) == {"username", "token", "refresh_token", "source", "action"}
        assert login["action"] == "user_logged_in"
        assert login["source"] == "moonraker"
        bearer = {"Authorization": f"Bearer {login['token']}"}
        assert (await s.http("GET", "/access/user", headers=bearer))[1]["result"] == {
            "username": "alice",
            "source": "moonraker",
            "created_on": s.clock.now,
        }
        query = {"access_token": login["token"]}
        assert (await s.http("GET", "/server/secret", query=query))[1]["result"] == {
            "user": "alice"
        }
        users = (await s.http("GET", "/access/users/list", headers=bearer))[1]["result"]
        assert users == {
            "users": [{"username": "alice", "source": "moonraker", "created_on": s.clock.now}]
        }
        # a wrong password, an unknown user
        status, body = await s.http(
            "POST", "/access/login", body={"username": "alice", "password": "nope"}
        )
        assert (status, body["error"]["message"]) == (400, "Invalid Password")
        status, body = await s.http(
            "POST", "/access/login", body={"username": "bob", "password": "pw"}
        )
        assert (status, body["error"]["message"]) == (400, "Unregistered User: bob")

        # the refresh token gives a new access token, and is no access token itself
        refresh = {"refresh_token": login["refresh_token"]}
        status, body = await s.http("POST", "/access/refresh_jwt", body=refresh)
        assert status == 200
        assert body["result"]["action"] == "user_jwt_refresh"
        new_bearer = {"Authorization": f"Bearer {body['result']['token']}"}
        assert (await s.http("GET", "/server/secret", headers=new_bearer))[0] == 200
        as_access = {"Authorization": f"Bearer {login['refresh_token']}"}
        assert (await s.http("GET", "/server/secret", headers=as_access))[0] == 401

        # logout revokes every token of the user, refresh tokens included
        status, body = await s.http("POST", "/access/logout", headers=bearer)
        assert body["result"] == {"username": "alice", "action": "user_logged_out"}
        for headers in (bearer, new_bearer):
            assert (await s.http("GET", "/server/secret", headers=headers))[0] == 401
        status, body = await s.http("POST", "/access/refresh_jwt", body=refresh)
        assert (status, body["error"]["message"]) == (401, "Invalid Refresh Token")


async def test_password_change_and_delete_user() -> None:
    async with stack() as s:
        await s.create_user("alice", "old")
        await s.create_user("bob", "pw")
        bearer = {"Authorization": f"Bearer {(await s.login('alice', 'old'))['token']}"}
        status, body = await s.http(
            "POST",
            "/access/user/password",
            headers=bearer,
            body={"password": "wrong", "new_password": "new"},
        )
        assert (status, body["error"]["message"]) == (400, "Invalid Password")
        status, body = await s.http(
            "POST",
            "/access/user/password",
            headers=bearer,
            body={"password": "old", "new_password": "new"},
        )
        assert body["result"] == {"username": "alice", "action": "user_password_reset"}
        bad = {"username": "alice", "password": "old"}
        assert (await s.http("POST", "/access/login", body=bad))[0] == 400
        await s.login("alice", "new")
        # the API key user has no password to change
        status, _ = await s.http(
            "POST",
            "/access/user/password",
            headers=s.key(),
            body={"password": "a", "new_password": "b"},
        )
        assert status == 400

        status, body = await s.http(
            "DELETE", "/access/user", headers=bearer, query={"username": "alice"}
        )
        assert (status, body["error"]["message"]) == (400, "Cannot delete logged in user alice")
        bob = {"Authorization": f"Bearer {(await s.login('bob', 'pw'))['token']}"}
        status, body = await s.http(
            "DELETE", "/access/user", headers=bearer, query={"username": "bob"}
        )
        assert body["result"] == {"username": "bob", "action": "user_deleted"}
        assert (await s.http("GET", "/server/secret", headers=bob))[0] == 401
        assert "bob" not in s.auth.users
        status, _ = await s.http("POST", "/access/user", headers=s.key(), body={"username": "x"})
        assert status == 400  # a password is required
        status, body = await s.http(
            "POST",
            "/access/user",
            headers=s.key(),
            body={"username": "alice", "password": "pw"},
        )
        assert (status, body["error"]["message"]) == (400, "User alice already exists")


async def test_expired_tampered_and_foreign_jwts_are_rejected() -> None:
    async with stack() as s, stack() as other:
        await s.create_user()
        token = (await s.login())["token"]
        await other.create_user()
        foreign = (await other.login())["token"]  # same user name, another install's secret
        for bad in (foreign, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "x.y.z"):
            status, body = await s.http(
                "GET", "/server/secret", headers={"Authorization": f"Bearer {bad}"}
            )
            assert status == 401
            assert body["error"]["message"].startswith("Invalid token")
        bearer = {"Authorization": f"Bearer {token}"}
        s.clock.now += 3599
        assert (await s.http("GET", "/server/secret", headers=bearer))[0] == 200
        s.clock.now += 1
        status, body = await s.http("GET", "/server/secret", headers=bearer)
        assert (status, body["error"]["message"]) == (401, "Invalid token: JWT expired")


async def test_force_logins_and_max_login_attempts() -> None:
    config = AuthorizationConfig(force_logins=True, max_login_attempts=2)
    async with stack(config) as s:
        # no user yet: trusted addresses still work
        assert (await s.http("GET", "/server/secret", client=LOOPBACK))[0] == 200
        await s.create_user("alice", "pw")
        status, body = await s.http("GET", "/server/secret", client=LOOPBACK)
        assert (status, body["error"]["message"]) == (401, "Unauthorized, Force Logins Enabled")
        info = (await s.http("GET", "/access/info", client=LOOPBACK))[1]["result"]
        assert info["login_required"] is True
        assert (await s.http("GET", "/server/secret", headers=s.key()))[0] == 200
        for _ in range(2):
            bad = {"username": "alice", "password": "nope"}
            assert (await s.http("POST", "/access/login", body=bad))[0] == 400
        good = {"username": "alice", "password": "pw"}
        status, body = await s.http("POST", "/access/login", body=good)
        assert (status, body["error"]["message"]) == (
            401,
            "Unauthorized, Maximum Login Attempts Reached",
        )
        # counted per address
        assert (await s.http("POST", "/access/login", body=good, client=OTHER))[0] == 200


# --- oneshot tokens -------------------------------------------------------------------------


async def oneshot(s: Stack, client: tuple[str, int] = UNTRUSTED) -> str:
    status, body = await s.http("GET", "/access/oneshot_token", headers=s.key(), client=client)
    assert status == 200
    token: str = body["result"]
    return token


async def test_oneshot_token_single_use_short_lived_and_bound_to_its_address() -> None:
    async with stack() as s:
        token = await oneshot(s)
        assert (await s.http("GET", "/server/secret", query={"token": token}))[1] == {
            "result": {"user": API_USER}
        }
        assert (await s.http("GET", "/server/secret", query={"token": token}))[0] == 401

        token = await oneshot(s)
        s.clock.now += 5
        assert (await s.http("GET", "/server/secret", query={"token": token}))[0] == 401

        token = await oneshot(s)
        assert (await s.http("GET", "/server/secret", query={"token": token}, client=OTHER))[
            0
        ] == 401
        # an attempt from another address used it up
        assert (await s.http("GET", "/server/secret", query={"token": token}))[0] == 401

        token = await oneshot(s)
        s.clock.now += 4.9
        assert (await s.http("GET", "/server/secret", query={"token": token}))[0] == 200


async def test_oneshot_token_on_websocket_connect() -> None:
    async with stack() as s:
        token = await oneshot(s)
        peer = await s.connect(query={"token": token})
        assert (await peer.call("server.secret"))["result"] == {"user": API_USER}
        again = await s.connect(query={"token": token})
        assert (await again.call("server.secret"))["error"] == {
            "code": -32602,
            "message": "Unauthorized",
        }
        elsewhere = await s.connect(OTHER, query={"token": await oneshot(s)})
        assert "error" in await elsewhere.call("server.secret")
        for p in (peer, again, elsewhere):
            p.disconnect()


# --- websocket authentication ---------------------------------------------------------------


IDENTIFY = {"client_name": "t", "version": "1", "type": "web", "url": "x"}


async def test_websocket_connect_credentials() -> None:
    async with stack() as s:
        await s.create_user()
        token = (await s.login())["token"]
        by_header = await s.connect(headers={"X-Api-Key": s.auth.api_key})
        assert (await by_header.call("server.secret"))["result"] == {"user": API_USER}
        by_query = await s.connect(query={"access_token": token})
        assert (await by_query.call("access.get_user"))["result"]["username"] == "alice"
        trusted = await s.connect(LOOPBACK)
        assert (await trusted.call("server.secret"))["result"] == {"user": TRUSTED_USER}
        anonymous = await s.connect()
        assert (await anonymous.call("server.public"))["result"] == {"user": None}
        assert (await anonymous.call("access.get_user"))["error"]["code"] == -32602
        for p in (by_header, by_query, trusted, anonymous):
            p.disconnect()


async def test_identify_and_login_authenticate_a_websocket() -> None:
    from trioprint.components.server import ServerCore

    async with stack() as s:
        await s.create_user()
        token = (await s.login())["token"]

        class FakeInstance:
            auth = s.auth

        core = ServerCore(FakeInstance())  # type: ignore[arg-type]
        registry = Registry()
        registry.add_component(core)
        registry.add_component(Fixture())
        registry.add_component(s.auth)
        s.websockets._registry = registry

        peer = await s.connect()
        assert (await peer.call("server.secret"))["error"]["message"] == "Unauthorized"
        refused = await peer.call("server.connection.identify", IDENTIFY)
        assert refused["error"] == {"code": -32602, "message": "Unauthorized"}
        wrong = await peer.call("server.connection.identify", {**IDENTIFY, "api_key": "bad"})
        assert wrong["error"]["message"] == "Invalid API Key"
        ok = await peer.call("server.connection.identify", {**IDENTIFY, "access_token": token})
        assert "connection_id" in ok["result"]
        assert (await peer.call("server.secret"))["result"] == {"user": "alice"}

        by_key = await s.connect()
        ok = await by_key.call(
            "server.connection.identify", {**IDENTIFY, "api_key": s.auth.api_key}
        )
        assert "result" in ok
        assert (await by_key.call("server.secret"))["result"] == {"user": API_USER}

        # a failed attempt drops what the connection had, even a trusted address
        trusted = await s.connect(LOOPBACK)
        bad = await trusted.call("server.connection.identify", {**IDENTIFY, "api_key": "x"})
        assert "error" in bad
        assert (await trusted.call("server.secret"))["error"]["code"] == -32602

        by_login = await s.connect()
        login = await by_login.call("access.login", {"username": "alice", "password": "pw"})
        assert login["result"]["action"] == "user_logged_in"
        assert (await by_login.call("server.secret"))["result"] == {"user": "alice"}
        # logging out (from anywhere) ends the websocket's session
        await s.http("POST", "/access/logout", headers={"Authorization": f"Bearer {token}"})
        assert (await by_login.call("server.secret"))["error"]["code"] == -32602
        assert (await peer.call("server.secret"))["error"]["code"] == -32602
        for p in (peer, by_key, trusted, by_login):
            p.disconnect()


async def test_http_call_carries_the_user() -> None:
    async with stack() as s:
        assert await s.http("GET", "/access/user") == (401, UNAUTHORIZED)
        _status, body = await s.http("GET", "/access/user", headers=s.key())
        assert body["result"] == {
            "username": API_USER,
            "source": "moonraker",
            "created_on": s.clock.now,
        }


async def test_notifications_only_reach_authenticated_websockets() -> None:
    async with stack() as s:
        with trio.fail_after(10):
            anonymous = await s.connect()
            trusted = await s.connect(LOOPBACK)
            s.websockets.broadcast("notify_gcode_response", ["ok"])
            for conn in s.websockets.connections():
                conn.send_notification("notify_status_update", [{}, 1.0])
            assert (await trusted.next())["method"] == "notify_gcode_response"
            assert (await trusted.next())["method"] == "notify_status_update"
            # the next frame the anonymous client gets is the answer to its own call
            anonymous.request("server.public")
            assert await anonymous.next() == {
                "jsonrpc": "2.0",
                "result": {"user": None},
                "id": 1,
            }
            # once it authenticates, it gets them
            await s.create_user()
            login = await anonymous.call("access.login", {"username": "alice", "password": "pw"})
            assert login["result"]["action"] == "user_logged_in"
            s.websockets.broadcast("notify_gcode_response", ["after"])
            assert (await anonymous.next())["params"] == ["after"]
            for p in (anonymous, trusted):
                p.disconnect()
