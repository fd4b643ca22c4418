"""The HTTP transport through Quart's test client (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart_trio import QuartTrio

from trioprint.errors import ApiError
from trioprint.registry import Call, NoParams, Registry, endpoint
from trioprint.transport.http import compile_origins, create_http_app, query_args


@attrs.frozen
class Args:
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    value: Any = None
    name: str = ""


class Fixture:
    @endpoint("/server/args", "GET", "POST", params=Args)
    async def args(self, call: Call[Args]) -> dict[str, Any]:
        return attrs.asdict(call.params) | {"verb": call.verb}

    @endpoint("/server/missing", "GET")
    async def missing(self, call: Call[NoParams]) -> None:
        raise ApiError("Namespace x not found", 404)

    @endpoint("/server/crash", "GET")
    async def crash(self, call: Call[NoParams]) -> None:
        raise RuntimeError("boom")

    @endpoint("/server/nothing", "POST")
    async def nothing(self, call: Call[NoParams]) -> None:
        return None


def make_app(cors: tuple[str, ...] = ()) -> QuartTrio:
    registry = Registry()
    registry.add_component(Fixture())
    return create_http_app(registry, cors_domains=cors)


async def get_json(app: QuartTrio, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    client = app.test_client()
    response = await client.open(path, method=method, **kwargs)
    assert response.content_type.startswith("application/json")
    return response.status_code, json.loads(await response.get_data())


async def test_query_string_with_type_hints() -> None:
    status, body = await get_json(
        make_app(),
        "GET",
        "/server/args?count:int=5&ratio:float=2.5&flag:bool=true&value:json=%7B%22a%22%3A1%7D",
    )
    assert status == 200
    assert body["result"] == {
        "count": 5,
        "ratio": 2.5,
        "flag": True,
        "value": {"a": 1},
        "name": "",
        "verb": "GET",
    }


async def test_plain_query_strings_are_converted_by_the_declared_type() -> None:
    status, body = await get_json(make_app(), "GET", "/server/args?count=7&flag=false&name=x")
    assert status == 200
    assert body["result"]["count"] == 7
    assert body["result"]["flag"] is False


async def test_json_body_takes_precedence_over_query_and_form() -> None:
    status, body = await get_json(
        make_app(), "POST", "/server/args?count=1&name=query", json={"count": 2}
    )
    assert status == 200
    assert (body["result"]["count"], body["result"]["name"]) == (2, "query")
    status, body = await get_json(
        make_app(), "POST", "/server/args?count=1&name=query", form={"name": "form"}
    )
    assert (body["result"]["count"], body["result"]["name"]) == (1, "form")


async def test_none_result_is_ok() -> None:
    assert await get_json(make_app(), "POST", "/server/nothing") == (200, {"result": "ok"})


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "words"),
    [
        ("GET", "/server/nope", {}, 404, ["/server/nope"]),
        ("GET", "/", {}, 404, ["Not Found"]),
        ("DELETE", "/server/args", {}, 405, ["DELETE"]),
        ("PUT", "/server/args", {}, 405, ["PUT"]),
        ("GET", "/server/args?count=abc", {}, 400, ["count", "int"]),
        ("GET", "/server/args?count:int=abc", {}, 400, ["count:int"]),
        ("GET", "/server/args?flag:bool=maybe", {}, 400, ["flag:bool"]),
        ("GET", "/server/args?value:json=%7B", {}, 400, ["value:json"]),
        (
            "POST",
            "/server/args",
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            ["JSON"],
        ),
        ("POST", "/server/args", {"json": [1, 2]}, 400, ["object"]),
        ("GET", "/server/missing", {}, 404, ["Namespace x not found"]),
        ("GET", "/server/crash", {}, 500, ["boom"]),
    ],
)
async def test_errors_are_json_with_real_status(
    method: str, path: str, kwargs: dict[str, Any], status: int, words: list[str]
) -> None:
    got, body = await get_json(make_app(), method, path, **kwargs)
    assert got == status
    assert body["error"]["code"] == status
    for word in words:
        assert word in body["error"]["message"]


async def test_cors_allows_only_configured_origins() -> None:
    app = make_app(("http://*.lan", "https://mainsail.example.com"))
    client = app.test_client()
    allowed = await client.get("/server/args", headers={"Origin": "http://printer.lan"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://printer.lan"
    denied = await client.get("/server/args", headers={"Origin": "http://printer.lan.evil.com"})
    assert "Access-Control-Allow-Origin" not in denied.headers
    preflight = await client.options(
        "/server/args", headers={"Origin": "https://mainsail.example.com"}
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://mainsail.example.com"
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]


def test_origin_patterns_match_whole_origins() -> None:
    pattern = compile_origins(["*.lan", "http://host:*"])
    assert pattern is not None
    assert pattern.match("http://a.lan")
    assert pattern.match("http://host:8080")
    assert not pattern.match("http://a.lan.evil.com")
    assert not pattern.match("http://hostile:8080")
    assert compile_origins([]) is None


def test_query_args_last_repeated_key_wins() -> None:
    assert query_args([("a", "1"), ("a", "2"), ("b:int", "3")]) == {"a": "2", "b": 3}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100)
@given(
    body=st.binary(max_size=200),
    query=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FF), max_size=60
    ),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", ""]
    ),
)
async def test_arbitrary_bodies_and_queries_get_json_answers(
    body: bytes, query: str, content_type: str
) -> None:
    from urllib.parse import quote

    client = make_app().test_client()
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post(
        "/server/args?" + quote(query, safe="=&:"), data=body, headers=headers
    )
    assert response.status_code in (200, 400)
    payload = json.loads(await response.get_data())
    assert ("result" in payload) != ("error" in payload)
    if "error" in payload:
        assert payload["error"]["code"] == response.status_code
        assert payload["error"]["message"]
