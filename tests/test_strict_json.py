"""Strict JSON on every path: NaN, Infinity and numbers out of a double's range are refused on
input and never sent, so no client can make data unreadable to a browser's ``JSON.parse``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioprint import rpc
from trioprint.components import database as dbc
from trioprint.domain import database as dbm
from trioprint.domain.klippy import KlippyConnection, Notification
from trioprint.errors import ApiError
from trioprint.registry import Call, Registry, endpoint, structure_params
from trioprint.transport.http import create_http_app, query_args

from .live import live_server, rpc_client

NON_STANDARD = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "12345e-400000000000"]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]


def strict_loads(text: str | bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON sent: {name}")

    def finite(text: str) -> float:
        value = float(text)
        assert value - value == 0, f"non-finite number sent: {text}"
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite)


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("where", ["id", "params"])
def test_websocket_frames_with_non_standard_numbers_are_a_parse_error(
    literal: str, where: str
) -> None:
    if where == "id":
        frame = f'{{"jsonrpc":"2.0","method":"server.info","id":{literal}}}'
    else:
        frame = f'{{"jsonrpc":"2.0","method":"x","params":{{"v":[1,{literal}]}},"id":1}}'
    message = rpc.parse(frame)
    assert len(message.entries) == 1
    entry = message.entries[0]
    assert isinstance(entry, rpc.Invalid)
    assert entry.reply is not None
    assert entry.reply["error"]["code"] == rpc.PARSE_ERROR
    assert literal.lstrip("-") in entry.reply["error"]["message"]
    strict_loads(rpc.dumps(entry.reply))


def test_tiny_numbers_are_standard_json() -> None:
    # an underflow to 0.0 is a finite number: JSON allows it
    message = rpc.parse('{"jsonrpc":"2.0","method":"x","params":{"v":1e-400},"id":1}')
    assert isinstance(message.entries[0], rpc.Request)
    assert message.entries[0].params == {"v": 0.0}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_values_are_never_encoded(value: float) -> None:
    with pytest.raises(ValueError, match="JSON"):
        rpc.dumps({"value": value})


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-Infinity", "1e400"])
def test_float_arguments_must_be_finite(text: str) -> None:
    @attrs.frozen
    class P:
        x: float = 0.0

    with pytest.raises(ApiError) as exc:
        structure_params({"x": text}, P)
    assert exc.value.status == 400
    with pytest.raises(ApiError):
        structure_params({"x": float(text)}, P)
    with pytest.raises(ApiError) as hinted:
        query_args([("x:float", text)])
    assert "x:float" in hinted.value.message


@pytest.mark.parametrize("literal", NON_FINITE)
def test_json_query_arguments_must_be_standard(literal: str) -> None:
    with pytest.raises(ApiError) as exc:
        query_args([("value:json", f"[{literal}]")])
    assert literal.lstrip("-") in exc.value.message


@attrs.frozen
class EchoParams:
    value: Any = None


class Echo:
    @endpoint("/test/echo", "GET", "POST", params=EchoParams)
    async def echo(self, call: Call[EchoParams]) -> Any:
        return call.params.value

    @endpoint("/test/nan", "GET")
    async def nan(self, call: Call[EchoParams]) -> Any:
        return {"value": float("nan")}


def http_app() -> Any:
    registry = Registry()
    registry.add_component(Echo())
    return create_http_app(registry)


@pytest.mark.parametrize("literal", NON_FINITE)
async def test_http_json_bodies_must_be_standard(literal: str) -> None:
    client = http_app().test_client()
    response = await client.post(
        "/test/echo", data=f'{{"value": {literal}}}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    body = strict_loads(await response.get_data())
    assert literal.lstrip("-") in body["error"]["message"]


async def test_http_never_answers_non_standard_json() -> None:
    client = http_app().test_client()
    response = await client.get("/test/nan")
    assert response.status_code == 500
    strict_loads(await response.get_data())


def test_records_refuse_non_finite_numbers_and_old_ones_read_as_null() -> None:
    for value in (float("nan"), float("inf"), {"a": [float("-inf")]}):
        with pytest.raises(ApiError) as exc:
            dbm.encode_record(value)
        assert exc.value.status == 400
    # written by an earlier version (or by Moonraker, whose encoding allows them)
    assert dbm.decode_record(b'{"a":NaN,"b":[Infinity,1]}') == {"a": None, "b": [None, 1]}
    assert dbm.decode_record(b"d" + b"\x00\x00\x00\x00\x00\x00\xf8\x7f") is None


def test_klippy_non_finite_numbers_arrive_as_null() -> None:
    # klippy encodes with Python's json, which writes NaN and Infinity
    conn = KlippyConnection()
    conn.receive_data(
        b'{"method":"notify_status_update","params":[{"extruder":'
        b'{"temperature":NaN,"power":Infinity}}]}\x03'
    )
    event = conn.next_event()
    assert isinstance(event, Notification)
    assert event.params == [{"extruder": {"temperature": None, "power": None}}]


async def test_live_server_refuses_and_never_serves_non_standard_json(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live, rpc_client(live.ws) as client:
        with trio.fail_after(10):
            for i, literal in enumerate(NON_FINITE):
                frame = (
                    '{"jsonrpc":"2.0","method":"server.database.post_item","params":'
                    f'{{"namespace":"ns","key":"k{i}","value":{literal}}},"id":{i}}}'
                )
                await client.ws.send_message(frame)
                reply = await next_reply(client.ws)
                assert reply["error"]["code"] == rpc.PARSE_ERROR, reply
            await client.ws.send_message('{"jsonrpc":"2.0","method":"server.info","id":NaN}')
            reply = await next_reply(client.ws)
            assert reply == {
                "jsonrpc": "2.0",
                "error": {"code": rpc.PARSE_ERROR, "message": reply["error"]["message"]},
                "id": None,
            }
            async with httpx.AsyncClient(base_url=live.http) as http:
                body = await http.post(
                    "/server/database/item",
                    content=b'{"namespace":"ns","key":"a","value":NaN}',
                    headers={"Content-Type": "application/json"},
                )
                query = await http.post("/server/database/item?namespace=ns&key=b&value:float=nan")
                form = await http.post(
                    "/server/database/item",
                    data={"namespace": "ns", "key": "c", "value:json": "[Infinity]"},
                )
                for response in (body, query, form):
                    assert response.status_code == 400, response.text
                    strict_loads(response.content)
                # a value stored before: served as null, the namespace stays readable
                await live.instance.database.call(
                    lambda conn: _store_raw(conn, "ns", "old", b'{"t":NaN}')
                )
                listing = await http.get("/server/database/item?namespace=ns")
                assert listing.status_code == 200
                assert strict_loads(listing.content)["result"]["value"] == {"old": {"t": None}}
            reply = await client.call("server.database.get_item", {"namespace": "ns"})
            assert reply["result"]["value"] == {"old": {"t": None}}


async def next_reply(ws: Any) -> Any:
    while True:
        message = strict_loads(await ws.get_message())
        if "method" not in message:
            return message


def _store_raw(conn: sqlite3.Connection, namespace: str, key: str, record: bytes) -> None:
    dbc.op_insert(conn, namespace, key, "placeholder")
    table = dbc.NAMESPACE_TABLE
    conn.execute(
        f"UPDATE {table} SET value = ? WHERE namespace = ? AND key = ?", (record, namespace, key)
    )
    conn.commit()


# --- any accepted input encodes as strict JSON ------------------------------------------------

numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from([*NON_STANDARD, "1e308", "-0.0", "1E+2", "0.1e-999"]),
)
json_like = st.recursive(
    st.one_of(numbers, st.sampled_from(["null", "true", "false", '"s"'])),
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.dictionaries(st.sampled_from(["a", "b", "value", "id"]), inner, max_size=3).map(
            lambda d: "{" + ",".join(f'"{k}":{v}' for k, v in d.items()) + "}"
        )
    ),
    max_leaves=10,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(params=json_like, req_id=numbers)
def test_any_accepted_input_encodes_as_strict_json(params: str, req_id: str) -> None:
    frame = f'{{"jsonrpc":"2.0","method":"test.echo","params":{{"value":{params}}},"id":{req_id}}}'
    for entry in rpc.parse(frame).entries:
        if isinstance(entry, rpc.Request):
            strict_loads(rpc.dumps(rpc.result(entry.id, entry.params)))
        else:
            assert entry.reply is not None
            strict_loads(rpc.dumps(entry.reply))
    try:
        args = query_args([("value:json", params), ("id:float", req_id)])
    except ApiError:
        return
    strict_loads(rpc.dumps(args))


async def test_a_notification_that_is_not_json_is_dropped_and_the_rest_flow(
    nursery: trio.Nursery,
) -> None:
    from trioprint.bus import Bus, Notify
    from trioprint.transport.websocket import WebsocketManager

    from .asgi_peer import Peer

    bus = Bus()
    manager = WebsocketManager(Registry(), bus)
    await nursery.start(manager.run)
    peer = Peer()
    await nursery.start(peer.serve, manager)
    assert (await peer.next_message())["type"] == "websocket.accept"
    await trio.testing.wait_all_tasks_blocked()
    bus.publish(Notify("notify_bad", [{"t": float("nan")}]))
    bus.publish(Notify("notify_good", [1]))
    manager.connections()[0].send_notification("notify_bad", [float("inf")])
    manager.connections()[0].send_notification("notify_good", [2])
    with trio.fail_after(5):
        first, second = await peer.next(), await peer.next()
    assert {first["params"][0], second["params"][0]} == {1, 2}
