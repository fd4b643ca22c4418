"""The JSON-RPC envelope codec, without I/O."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint import rpc


def only(msg: rpc.Message) -> rpc.Entry:
    assert len(msg.entries) == 1
    return msg.entries[0]


def test_request_with_params() -> None:
    msg = rpc.parse('{"jsonrpc":"2.0","method":"server.info","params":{"a":1},"id":7}')
    entry = only(msg)
    assert entry == rpc.Request("server.info", {"a": 1}, 7)
    assert not entry.is_notification
    assert not msg.batch


def test_params_may_be_left_out_or_null() -> None:
    assert only(rpc.parse('{"jsonrpc":"2.0","method":"m","id":1}')) == rpc.Request("m", {}, 1)
    entry = only(rpc.parse('{"jsonrpc":"2.0","method":"m","params":null,"id":1}'))
    assert entry == rpc.Request("m", {}, 1)


def test_id_zero_is_a_request_not_a_notification() -> None:
    entry = only(rpc.parse('{"jsonrpc":"2.0","method":"m","id":0}'))
    assert isinstance(entry, rpc.Request)
    assert entry.id == 0
    assert not entry.is_notification


def test_missing_id_is_a_notification() -> None:
    entry = only(rpc.parse('{"jsonrpc":"2.0","method":"m"}'))
    assert isinstance(entry, rpc.Request)
    assert entry.is_notification


def test_parse_error() -> None:
    entry = only(rpc.parse("not json"))
    assert entry == rpc.Invalid(rpc.error(None, rpc.PARSE_ERROR, "Parse error"))


@pytest.mark.parametrize(
    ("text", "code", "reply_id"),
    [
        ('{"jsonrpc":"2.0","method":"m","params":[1],"id":5}', rpc.INVALID_PARAMS, 5),
        ('{"jsonrpc":"2.0","method":"m","params":"x","id":5}', rpc.INVALID_PARAMS, 5),
        ('{"jsonrpc":"1.0","method":"m","id":5}', rpc.INVALID_REQUEST, 5),
        ('{"method":"m","id":5}', rpc.INVALID_REQUEST, 5),
        ('{"jsonrpc":"2.0","method":5,"id":5}', rpc.INVALID_REQUEST, 5),
        ('{"jsonrpc":"2.0","method":"m","id":[1]}', rpc.INVALID_REQUEST, None),
        ('{"jsonrpc":"2.0","method":"m","id":true}', rpc.INVALID_REQUEST, None),
        ("5", rpc.INVALID_REQUEST, None),
        ("[]", rpc.INVALID_REQUEST, None),
        ('"text"', rpc.INVALID_REQUEST, None),
    ],
)
def test_invalid_requests(text: str, code: int, reply_id: object) -> None:
    entry = only(rpc.parse(text))
    assert isinstance(entry, rpc.Invalid)
    assert entry.reply is not None
    assert entry.reply["error"]["code"] == code
    assert entry.reply["id"] == reply_id
    assert entry.reply["error"]["message"]


def test_notification_with_bad_params_is_owed_no_reply() -> None:
    entry = only(rpc.parse('{"jsonrpc":"2.0","method":"m","params":[1]}'))
    assert entry == rpc.Invalid(None)


def test_invalid_request_without_id_is_answered_with_null_id() -> None:
    # the JSON-RPC 2.0 specification's own example
    entry = only(rpc.parse('{"jsonrpc": "2.0", "method": 1, "params": "bar"}'))
    assert isinstance(entry, rpc.Invalid)
    assert entry.reply == rpc.error(
        None, rpc.INVALID_REQUEST, 'Invalid Request: "method" must be a string'
    )


def test_batch_keeps_order_and_marks_bad_entries() -> None:
    msg = rpc.parse('[{"jsonrpc":"2.0","method":"a","id":1}, 3, {"jsonrpc":"2.0","method":"b"}]')
    assert msg.batch
    a, bad, b = msg.entries
    assert a == rpc.Request("a", {}, 1)
    assert isinstance(bad, rpc.Invalid)
    assert isinstance(b, rpc.Request)
    assert b.is_notification


def test_oversized_batch_is_refused_whole() -> None:
    text = json.dumps(
        [{"jsonrpc": "2.0", "method": "m", "id": i} for i in range(rpc.MAX_BATCH + 1)]
    )
    entry = only(rpc.parse(text))
    assert isinstance(entry, rpc.Invalid)
    assert entry.reply is not None
    assert entry.reply["error"]["code"] == rpc.INVALID_REQUEST


@pytest.mark.parametrize(
    ("status", "code"), [(404, -32601), (401, -32602), (400, 400), (500, 500), (503, 503)]
)
def test_status_codes_map_as_moonraker(status: int, code: int) -> None:
    assert rpc.rpc_code_for_status(status) == code


def test_notification_shape() -> None:
    assert rpc.notification("notify_klippy_ready") == {
        "jsonrpc": "2.0",
        "method": "notify_klippy_ready",
    }
    assert rpc.notification("n", [{"a": 1}]) == {
        "jsonrpc": "2.0",
        "method": "n",
        "params": [{"a": 1}],
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.binary())
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    msg = rpc.parse(data)
    assert msg.entries


@given(json_values)
def test_arbitrary_json_never_raises_and_each_entry_is_classified(value: object) -> None:
    msg = rpc.parse(json.dumps(value))
    assert msg.entries
    for entry in msg.entries:
        assert isinstance(entry, rpc.Request | rpc.Invalid)
        if isinstance(entry, rpc.Invalid) and entry.reply is not None:
            assert set(entry.reply) == {"jsonrpc", "error", "id"}
            assert isinstance(entry.reply["error"]["code"], int)


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50))
def test_batch_of_n_requests_has_n_entries(ids: list[int]) -> None:
    batch = [{"jsonrpc": "2.0", "method": "m", "id": i} for i in ids]
    msg = rpc.parse(json.dumps(batch))
    assert msg.batch
    assert [e.id for e in msg.entries if isinstance(e, rpc.Request)] == ids


def test_a_reply_from_the_client_is_parsed_not_answered() -> None:
    entry = only(rpc.parse('{"jsonrpc":"2.0","result":{"a":1},"id":4}'))
    assert entry == rpc.Reply(4, {"a": 1}, None)
    assert not entry.failed
    failed = only(rpc.parse('{"jsonrpc":"2.0","error":{"code":-1,"message":"x"},"id":5}'))
    assert isinstance(failed, rpc.Reply)
    assert failed.failed
    assert failed.error == {"code": -1, "message": "x"}
    # neither a result nor an error, or no id: still an invalid request
    assert isinstance(only(rpc.parse('{"jsonrpc":"2.0","id":5}')), rpc.Invalid)
    assert isinstance(only(rpc.parse('{"jsonrpc":"2.0","result":1}')), rpc.Invalid)


def test_error_data_and_server_requests() -> None:
    data = {"x": 1}
    assert rpc.error(1, 424, "m", data)["error"] == {"code": 424, "message": "m", "data": data}
    assert rpc.request(None, "m", {}) == {"jsonrpc": "2.0", "method": "m"}
    assert rpc.request(3, "m", [1]) == {"jsonrpc": "2.0", "method": "m", "params": [1], "id": 3}
