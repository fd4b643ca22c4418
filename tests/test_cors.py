"""CORS as browsers need it: the preflights Chromium sends, on every route kind, answered for an
allowed origin without credentials and refused for any other; the CORS headers on every answer
to an allowed origin, errors included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from quart_trio import QuartTrio

from trioprint.app import Instance
from trioprint.config import load_config
from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Registry, endpoint
from trioprint.transport.http import create_http_app

ALLOWED = "https://ui.example"
FOREIGN = "http://evil.example"
UNTRUSTED = ("203.0.113.9", 40001)
LOOPBACK = ("127.0.0.1", 40000)


def whole_instance(tmp_path: Path) -> Instance:
    """Built, not started: a preflight never reaches a component."""
    conf = tmp_path / "trioprint.conf"
    conf.write_text(f"[authorization]\ncors_domains:\n  {ALLOWED}\n")
    return Instance(load_config(conf, tmp_path))


def chromium_preflight(
    origin: str, method: str, headers: str = "authorization,content-type,x-api-key"
) -> dict[str, str]:
    """What Chromium sends before a fetch with non-simple headers or method."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "cross-site",
        "Sec-Fetch-Dest": "empty",
        "Accept": "*/*",
    }


def header_list(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


#: (path, the method the page wants, the verbs served there)
ROUTES = [
    ("/server/database/item", "POST", {"GET", "POST", "DELETE"}),  # the registry
    ("/printer/gcode/script", "POST", {"GET", "POST"}),
    ("/server/files/gcodes/sub/a b.gcode", "DELETE", {"GET", "DELETE"}),  # file routes
    ("/server/files/config/printer.cfg", "GET", {"GET", "DELETE"}),
    ("/server/files/upload", "POST", {"POST"}),  # uploads
    ("/api/files/local", "POST", {"POST"}),
    ("/api/files/local/parts/cube.gcode", "GET", {"GET"}),  # OctoPrint's file resource
    ("/api/version", "GET", {"GET"}),  # the OctoPrint emulation
    ("/api/printer/command", "POST", {"POST"}),
    ("/access/login", "POST", {"POST"}),
]


@pytest.mark.parametrize(("path", "method", "verbs"), ROUTES)
async def test_preflight_is_answered_on_every_route_without_credentials(
    tmp_path: Path, path: str, method: str, verbs: set[str]
) -> None:
    app = whole_instance(tmp_path).http_app
    response = await app.test_client().options(
        path, headers=chromium_preflight(ALLOWED, method), scope_base={"client": UNTRUSTED}
    )
    assert response.status_code == 204, await response.get_data()
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    allowed_methods = header_list(response.headers["Access-Control-Allow-Methods"])
    assert allowed_methods == {v.lower() for v in verbs | {"OPTIONS"}}
    assert method.lower() in allowed_methods
    assert {"authorization", "content-type", "x-api-key"} <= header_list(
        response.headers["Access-Control-Allow-Headers"]
    )
    assert "Origin" in response.headers["Vary"]
    assert header_list(response.headers["Allow"]) == allowed_methods


@pytest.mark.parametrize(("path", "method", "verbs"), ROUTES)
async def test_preflight_from_a_foreign_origin_is_refused(
    tmp_path: Path, path: str, method: str, verbs: set[str]
) -> None:
    app = whole_instance(tmp_path).http_app
    for client in (UNTRUSTED, LOOPBACK):
        response = await app.test_client().options(
            path, headers=chromium_preflight(FOREIGN, method), scope_base={"client": client}
        )
        assert response.status_code == 403
        body = json.loads(await response.get_data())
        assert body["error"]["message"].startswith("Cross-origin request refused")
        for name, _value in response.headers.items():
            assert not name.lower().startswith("access-control-"), name


async def test_preflight_headers_requested_private_network_and_unknown_routes(
    tmp_path: Path,
) -> None:
    client = whole_instance(tmp_path).http_app.test_client()
    headers = chromium_preflight(ALLOWED, "POST", "content-type,x-client-version,bad header")
    headers["Access-Control-Request-Private-Network"] = "true"
    response = await client.options("/printer/gcode/script", headers=headers)
    assert response.status_code == 204
    allowed = header_list(response.headers["Access-Control-Allow-Headers"])
    assert {"content-type", "x-client-version"} <= allowed
    assert "bad header" not in allowed
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    # no such route: a 404 (with the CORS headers, so the page can see it)
    missing = await client.options("/no/such/route", headers=chromium_preflight(ALLOWED, "GET"))
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == ALLOWED
    # an OPTIONS without Origin (curl): the verbs, no CORS headers
    plain = await client.options("/server/files/upload")
    assert plain.status_code == 204
    assert plain.headers["Allow"] == "POST, OPTIONS"
    assert "Access-Control-Allow-Origin" not in plain.headers


@attrs.frozen
class Args:
    count: int = 0


class Fixture:
    @endpoint("/server/args", "GET", params=Args)
    async def args(self, call: Call[Args]) -> dict[str, Any]:
        return {"count": call.params.count}

    @endpoint("/server/missing", "GET")
    async def missing(self, call: Call[NoParams]) -> None:
        raise ApiError("Namespace x not found", 404)

    @endpoint("/server/crash", "GET")
    async def crash(self, call: Call[NoParams]) -> None:
        raise RuntimeError("boom")


def fixture_app() -> QuartTrio:
    from trioprint.bus import Bus
    from trioprint.components.auth import Authorization
    from trioprint.config import AuthorizationConfig
    from trioprint.domain.kv import MemoryStore

    registry = Registry()
    registry.add_component(Fixture())
    auth = Authorization(AuthorizationConfig(), MemoryStore(), Bus())

    async def serve_file(root: str, path: str, range_header: str | None) -> Any:
        raise OSError("disk on fire")

    async def delete_file(path: str) -> Any:
        raise ApiError(f"File {path} does not exist", 404)

    return create_http_app(
        registry,
        cors_domains=(ALLOWED,),
        serve_file=serve_file,
        delete_file=delete_file,
        authenticator=auth,
    )


@pytest.mark.parametrize(
    ("method", "path", "client", "status"),
    [
        ("GET", "/server/args", LOOPBACK, 200),
        ("GET", "/no/such/route", LOOPBACK, 404),
        ("GET", "/server/missing", LOOPBACK, 404),
        ("GET", "/server/args?count=abc", LOOPBACK, 400),
        ("GET", "/server/args?count:int=abc", LOOPBACK, 400),
        ("POST", "/server/args", LOOPBACK, 405),
        ("GET", "/server/args", UNTRUSTED, 401),
        ("GET", "/server/crash", LOOPBACK, 500),
        ("GET", "/server/files/gcodes/a.gcode", LOOPBACK, 500),
        ("DELETE", "/server/files/gcodes/a.gcode", LOOPBACK, 404),
    ],
)
async def test_cors_headers_are_on_every_answer_errors_included(
    method: str, path: str, client: tuple[str, int], status: int
) -> None:
    app = fixture_app()
    response = await app.test_client().open(
        path, method=method, headers={"Origin": ALLOWED}, scope_base={"client": client}
    )
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers["Vary"]
    body = json.loads(await response.get_data())
    if status >= 400:
        assert body["error"]["code"] == status
