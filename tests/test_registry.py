"""The endpoint registry: declarations, derived names, typed params; no I/O."""

from typing import Any

import attrs
import pytest

from trioprint.errors import ApiError
from trioprint.registry import (
    Call,
    NoParams,
    Registry,
    Transport,
    endpoint,
    rpc_names_for,
    structure_params,
)


@pytest.mark.parametrize(
    ("path", "verbs", "names"),
    [
        ("/server/info", ("GET",), {"GET": "server.info"}),
        ("/printer/gcode/script", ("POST",), {"POST": "printer.gcode.script"}),
        (
            "/server/database/item",
            ("GET", "POST", "DELETE"),
            {
                "GET": "server.database.get_item",
                "POST": "server.database.post_item",
                "DELETE": "server.database.delete_item",
            },
        ),
    ],
)
def test_moonraker_naming_rule(path: str, verbs: tuple[str, ...], names: dict[str, str]) -> None:
    assert rpc_names_for(path, verbs) == names


@attrs.frozen
class ItemParams:
    namespace: str
    key: str | list[str] | None = None
    count: int = 10
    ratio: float = 1.0
    flag: bool = False
    value: Any = None


def test_params_are_structured_with_types() -> None:
    p = structure_params(
        {"namespace": "ns", "count": "5", "ratio": 2, "flag": "true", "value": {"a": [1]}},
        ItemParams,
    )
    assert p == ItemParams("ns", None, 5, 2.0, True, {"a": [1]})


def test_extra_arguments_are_ignored() -> None:
    assert structure_params({"namespace": "n", "other": 1}, ItemParams).namespace == "n"


def test_missing_argument_is_named() -> None:
    with pytest.raises(ApiError) as info:
        structure_params({}, ItemParams)
    assert info.value.status == 400
    assert "namespace" in info.value.message
    assert "missing" in info.value.message


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"namespace": 5}, ["namespace", "string"]),
        ({"namespace": "n", "count": "abc"}, ["count", "int", "'abc'"]),
        ({"namespace": "n", "count": True}, ["count", "int"]),
        ({"namespace": "n", "ratio": "x"}, ["ratio", "float"]),
        ({"namespace": "n", "flag": "maybe"}, ["flag", "bool"]),
        ({"namespace": "n", "key": 3}, ["key"]),
    ],
)
def test_wrong_types_are_named(args: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ApiError) as info:
        structure_params(args, ItemParams)
    for word in words:
        assert word in info.value.message


class Component:
    def __init__(self) -> None:
        self.seen: list[Call[Any]] = []

    @endpoint("/server/thing", "GET", "POST", params=ItemParams)
    async def thing(self, call: Call[ItemParams]) -> dict[str, Any]:
        self.seen.append(call)
        return {"verb": call.verb, "namespace": call.params.namespace}

    @endpoint("/server/ws_only", "GET", transports=Transport.WEBSOCKET)
    async def ws_only(self, call: Call[NoParams]) -> None:
        return None

    @endpoint("/access/login", "POST", transports=Transport.HTTP, auth=False)
    async def http_only(self, call: Call[NoParams]) -> str:
        return "x"


def test_component_registration_serves_both_transports() -> None:
    reg = Registry()
    reg.add_component(Component())
    assert reg.rpc_names() == ["server.get_thing", "server.post_thing", "server.ws_only"]
    routes = reg.by_path("/server/thing")
    assert routes is not None
    assert set(routes) == {"GET", "POST"}
    assert routes["GET"] is reg.by_rpc("server.get_thing")
    # websocket-only endpoints have no HTTP route; HTTP-only ones no JSON-RPC name
    assert reg.by_path("/server/ws_only") is None
    assert reg.by_path("/access/login") is not None
    assert not reg.by_path("/access/login")["POST"].auth  # type: ignore[index]
    assert reg.by_rpc("access.login") is None


async def test_dispatch_structures_and_turns_none_into_ok() -> None:
    reg = Registry()
    comp = Component()
    reg.add_component(comp)
    ep = reg.by_rpc("server.post_thing")
    assert ep is not None
    result = await reg.dispatch(ep, {"namespace": "n"}, Transport.HTTP, remote="1.2.3.4")
    assert result == {"verb": "POST", "namespace": "n"}
    assert comp.seen[0].remote == "1.2.3.4"
    ws_ep = reg.by_rpc("server.ws_only")
    assert ws_ep is not None
    assert await reg.dispatch(ws_ep, {}, Transport.WEBSOCKET) == "ok"


def test_duplicate_declarations_are_refused() -> None:
    reg = Registry()
    reg.add_component(Component())
    with pytest.raises(ValueError, match="declared twice"):
        reg.add_component(Component())


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(ValueError, match="verb"):
        endpoint("/server/x", "PUT")
    with pytest.raises(ValueError, match="path"):
        endpoint("server/x", "GET")
    with pytest.raises(TypeError, match="attrs"):
        endpoint("/server/x", "GET", params=dict)
