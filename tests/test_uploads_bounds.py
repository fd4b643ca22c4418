"""Multipart uploads never wait without bound: a wrong boundary is a prompt 400, a body that
stops arriving a 408, and a refused upload still gets its answer to a client that sends the
whole body before it reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from trioprint.components.uploads import UPLOAD_IDLE_TIMEOUT, Upload, receive
from trioprint.errors import ApiError

from .live import live_server

HEAD = (
    b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.gcode"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)


async def endless(first: bytes, then: bytes = b"") -> AsyncIterator[bytes]:
    """``first``, then ``then`` over and over (or, without it, nothing ever again)."""
    yield first
    while then:
        yield then
    await trio.sleep_forever()


async def test_a_wrong_boundary_is_a_prompt_400(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    upload = Upload(str(tmp_path))
    start = trio.current_time()
    try:
        with pytest.raises(ApiError) as exc, trio.fail_after(UPLOAD_IDLE_TIMEOUT * 10):
            # the body never ends: the answer cannot wait for its end
            await receive(upload, endless(HEAD, b"G1 X1\n" * 1000), b"OtherBoundary")
    finally:
        upload.discard()
    assert exc.value.status == 400
    assert "boundary" in exc.value.message
    assert trio.current_time() == start


async def test_a_body_that_stops_mid_part_times_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # (no file data: a write in a worker thread would let the mock clock jump meanwhile)
    upload = Upload(str(tmp_path))
    start = trio.current_time()
    try:
        with pytest.raises(ApiError) as exc, trio.fail_after(UPLOAD_IDLE_TIMEOUT * 10):
            await receive(upload, endless(HEAD), b"XyZ")
    finally:
        upload.discard()
    assert exc.value.status == 408
    assert "no data" in exc.value.message
    assert trio.current_time() - start == pytest.approx(UPLOAD_IDLE_TIMEOUT)


async def test_a_slow_body_that_keeps_coming_does_not_time_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow() -> AsyncIterator[bytes]:
        # the head a few bytes at a time (file data would be written in a worker thread, and
        # the mock clock would jump meanwhile), then the data and the end at once
        for i in range(0, len(HEAD), 20):
            await trio.sleep(UPLOAD_IDLE_TIMEOUT * 0.9)
            yield HEAD[i : i + 20]
        yield b"G28\n" * 5 + b"\r\n--XyZ--\r\n"

    upload = Upload(str(tmp_path))
    start = trio.current_time()
    try:
        await receive(upload, slow(), b"XyZ")
    finally:
        upload.discard()
    assert upload.size == 20
    assert trio.current_time() - start > UPLOAD_IDLE_TIMEOUT * 3


@pytest.mark.parametrize("size", [10_000, 3_000_000])
async def test_a_wrong_boundary_is_answered_to_a_client_that_sends_everything_first(
    tmp_path: Path, size: int
) -> None:
    (tmp_path / "gcodes").mkdir()
    body = HEAD + b"G1 X1\n" * (size // 6) + b"\r\n--XyZ--\r\n"
    async with live_server(tmp_path) as live:
        stream = await trio.open_tcp_stream("127.0.0.1", live.port)
        async with stream:
            with trio.fail_after(20):
                await stream.send_all(
                    b"POST /server/files/upload HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: multipart/form-data; boundary=Wrong\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body
                )
                answer = bytearray()
                while b"\r\n\r\n" not in answer:
                    data = await stream.receive_some(65536)
                    assert data, bytes(answer)
                    answer += data
    assert answer.startswith(b"HTTP/1.1 400"), bytes(answer[:300])
    assert list((tmp_path / "gcodes").rglob(".upload-*")) == []
