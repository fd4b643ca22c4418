"""The sans-I/O Klippy API codec, against real traffic from klippy's socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioprint.domain.klippy import (
    ETX,
    NEED_DATA,
    KlippyConnection,
    KlippyServerConnection,
    LocalProtocolError,
    Notification,
    RemoteProtocolError,
    Request,
    Response,
    encode,
)

#: What klippy sent in ../shared/klippy-transcripts/session-basic.jsonl (the rx side).
RECORDED = Path(__file__).parent / "data" / "klippy" / "session-basic-rx.jsonl"


def events(conn: KlippyConnection) -> list[Response | Notification]:
    out: list[Response | Notification] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Response | Notification)
        out.append(event)
    return out


def test_request_encoding_and_matching_response() -> None:
    conn = KlippyConnection()
    req_id, data = conn.send_request("objects/query", {"objects": {"toolhead": None}})
    assert data.endswith(ETX)
    assert json.loads(data[:-1]) == {
        "id": req_id,
        "method": "objects/query",
        "params": {"objects": {"toolhead": None}},
    }
    assert conn.pending == {req_id}
    conn.receive_data(encode({"id": req_id, "result": {"eventtime": 1.5, "status": {}}}))
    assert events(conn) == [Response(req_id, result={"eventtime": 1.5, "status": {}})]
    assert conn.pending == frozenset()


def test_error_response_carries_klippys_message() -> None:
    conn = KlippyConnection()
    req_id, _ = conn.send_request("no/such/method")
    conn.receive_data(
        b'{"id": %d, "error": {"error": "WebRequestError", "message": "webhooks: No registered'
        b" callback for path 'no/such/method'\"}}\x03" % req_id
    )
    (event,) = events(conn)
    assert isinstance(event, Response)
    assert not event.ok
    assert event.error == "WebRequestError"
    assert event.message == "webhooks: No registered callback for path 'no/such/method'"


def test_notifications_and_unknown_or_forgotten_ids() -> None:
    conn = KlippyConnection()
    a, _ = conn.send_request("info")
    b, _ = conn.send_request("info")
    conn.forget(a)
    conn.receive_data(
        encode({"method": "process_gcode_response", "params": {"response": "// hello"}})
        + encode({"id": a, "result": {}})  # forgotten: dropped
        + encode({"id": 999, "result": {}})  # never sent: dropped
        + encode({"id": b, "result": {"state": "ready"}})
    )
    assert events(conn) == [
        Notification("process_gcode_response", {"response": "// hello"}),
        Response(b, result={"state": "ready"}),
    ]


def test_split_frames_wait_for_the_terminator() -> None:
    conn = KlippyConnection()
    data = encode({"method": "m", "params": {"x": 1}})
    conn.receive_data(data[:5])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[5:])
    assert conn.next_event() == Notification("m", {"x": 1})
    assert conn.next_event() is NEED_DATA


def test_a_push_from_an_empty_template_is_a_nameless_notification() -> None:
    conn = KlippyConnection()
    conn.receive_data(b'{"params": {"data": [[1.0]]}}\x03')
    assert conn.next_event() == Notification("", {"data": [[1.0]]})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not json\x03", "not JSON"),
        (b"[1, 2]\x03", "not a JSON object"),
        (b'{"foo": 1}\x03', "neither"),
        (b'{"id": "x", "result": 1}\x03', "not an integer"),
    ],
)
def test_garbage_is_a_remote_protocol_error_and_the_connection_is_done(
    data: bytes, words: str
) -> None:
    conn = KlippyConnection()
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=words):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_request("info")


def test_buffer_is_bounded() -> None:
    conn = KlippyConnection(max_frame=1000)
    conn.receive_data(b"{" + b" " * 999)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b" ")
    with pytest.raises(RemoteProtocolError, match="larger than 1000"):
        conn.next_event()


def transcript_frames() -> list[bytes]:
    """Everything klippy sent in the recorded basic session, as it was on the wire."""
    return [
        json.dumps(json.loads(line)["msg"]).encode() + ETX
        for line in RECORDED.read_text().splitlines()
    ]


def decode_all(stream: bytes, chunks: list[int]) -> list[Response | Notification]:
    conn = KlippyConnection(first_id=0)
    # pretend every id in the transcript is ours and pending
    for _ in range(200):
        conn.send_request("x")
    out = []
    pos = 0
    for size in [*chunks, len(stream)]:
        conn.receive_data(stream[pos : pos + size])
        pos += size
        out.extend(events(conn))
    return out


def test_real_transcript_decodes() -> None:
    stream = b"".join(transcript_frames())
    decoded = decode_all(stream, [])
    assert any(isinstance(e, Notification) and e.method == "process_status_update" for e in decoded)
    assert any(isinstance(e, Response) and not e.ok for e in decoded)


@given(st.lists(st.integers(min_value=1, max_value=4096), max_size=60))
def test_same_events_however_the_stream_is_split(chunks: list[int]) -> None:
    stream = b"".join(transcript_frames())
    assert decode_all(stream, chunks) == decode_all(stream, [])


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=1, max_value=64), max_size=40))
def test_arbitrary_bytes_only_ever_raise_remote_protocol_error(
    data: bytes, chunks: list[int]
) -> None:
    conn = KlippyConnection(max_frame=512)
    pos = 0
    try:
        for size in [*chunks, len(data)]:
            conn.receive_data(data[pos : pos + size])
            pos += size
            events(conn)
    except RemoteProtocolError:
        pass


# --- the server side ------------------------------------------------------------------------


def server_events(conn: KlippyServerConnection) -> list[Request]:
    out: list[Request] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Request)
        out.append(event)
    return out


def test_server_side_parses_requests_and_encodes_answers() -> None:
    server = KlippyServerConnection()
    client = KlippyConnection()
    req_id, data = client.send_request("objects/query", {"objects": {"toolhead": None}})
    server.receive_data(data + b'{"method":"gcode/script","params":{"script":"M115"}}\x03')
    first, second = server_events(server)
    assert first == Request(req_id, "objects/query", {"objects": {"toolhead": None}})
    assert second == Request(None, "gcode/script", {"script": "M115"})  # no id: no answer owed
    client.receive_data(KlippyServerConnection.respond(req_id, {"eventtime": 1.0, "status": {}}))
    client.receive_data(KlippyServerConnection.notify("process_gcode_response", {"response": "ok"}))
    assert events(client) == [
        Response(req_id, result={"eventtime": 1.0, "status": {}}),
        Notification("process_gcode_response", {"response": "ok"}),
    ]
    _, data = client.send_request("no/such")
    (bad,) = (server.receive_data(data), server_events(server))[1]
    client.receive_data(KlippyServerConnection.error(bad.id, "webhooks: No registered callback"))
    (answer,) = events(client)
    assert isinstance(answer, Response)
    assert answer.error == "WebRequestError"
    assert answer.message == "webhooks: No registered callback"


@pytest.mark.parametrize("frame", [b"[1,2]", b'{"id": 1}', b"{nope", b'{"method": 5}'])
def test_server_side_refuses_what_is_not_a_request(frame: bytes) -> None:
    server = KlippyServerConnection()
    server.receive_data(frame + ETX)
    with pytest.raises(RemoteProtocolError):
        server.next_event()


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_server_side_same_requests_however_split(chunks: list[int]) -> None:
    client = KlippyConnection()
    stream = b"".join(
        client.send_request(m, {"n": i})[1] for i, m in enumerate(["info", "objects/list"] * 5)
    )
    whole = KlippyServerConnection()
    whole.receive_data(stream)
    expected = server_events(whole)
    split = KlippyServerConnection()
    got: list[Request] = []
    pos = 0
    for size in [*chunks, len(stream)]:
        split.receive_data(stream[pos : pos + size])
        pos += size
        got.extend(server_events(split))
    assert got == expected
    assert len(got) == 10
