"""The wire, byte by byte, against a live server: websocket protocol errors end with the close
frame RFC 6455 asks for, and ``Connection: close`` closes the connection."""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from .live import Live, live_server

WAIT = 10.0


@asynccontextmanager
async def server(tmp_path: Path) -> AsyncIterator[Live]:
    async with live_server(tmp_path) as live:
        yield live


async def read_until(stream: trio.SocketStream, marker: bytes, buffer: bytearray) -> bytes:
    while marker not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(bytes(buffer))
        buffer += data
    head, _, rest = bytes(buffer).partition(marker)
    buffer[:] = rest
    return head


async def open_websocket(port: int) -> tuple[trio.SocketStream, bytearray]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all(
        (
            "GET /websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buffer = bytearray()
    head = await read_until(stream, b"\r\n\r\n", buffer)
    assert head.startswith(b"HTTP/1.1 101"), head
    return stream, buffer


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


async def next_frame(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """The next server frame (opcode, payload); EOFError if the connection ends first."""
    while True:
        if len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    length = -1
                else:
                    length, start = struct.unpack("!H", buffer[2:4])[0], 4
            if length >= 0 and len(buffer) >= start + length:
                opcode = buffer[0] & 0x0F
                payload = bytes(buffer[start : start + length])
                del buffer[: start + length]
                return opcode, payload
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("connection closed without a close frame")
        buffer += data


async def close_code_after(live: Live, frame: bytes) -> int:
    stream, buffer = await open_websocket(live.port)
    async with stream:
        await stream.send_all(frame)
        while True:
            opcode, payload = await next_frame(stream, buffer)
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x1, b'{"a":"\xff\xfe"}'), 1007),  # invalid UTF-8 text
        (client_frame(0x3, b"x"), 1002),  # a reserved opcode
        (client_frame(0x0, b"stray"), 1002),  # a continuation with nothing to continue
        (client_frame(0x1, b"ab", fin=False) + client_frame(0x1, b"cd"), 1002),
    ],
    ids=["invalid-utf8", "reserved-opcode", "stray-continuation", "text-inside-fragments"],
)
async def test_websocket_protocol_errors_get_a_close_frame(
    tmp_path: Path, frame: bytes, code: int
) -> None:
    async with server(tmp_path) as live:
        with trio.fail_after(WAIT):
            assert await close_code_after(live, frame) == code


async def test_the_connection_still_works_before_the_error(tmp_path: Path) -> None:
    async with server(tmp_path) as live:
        stream, buffer = await open_websocket(live.port)
        async with stream:
            with trio.fail_after(WAIT):
                await stream.send_all(
                    client_frame(0x1, b'{"jsonrpc":"2.0","method":"server.info","id":1}')
                )
                opcode, payload = await next_frame(stream, buffer)
                while b'"id":1' not in payload:
                    opcode, payload = await next_frame(stream, buffer)
                assert opcode == 0x1


async def test_connection_close_closes_the_connection_after_the_answer(tmp_path: Path) -> None:
    async with server(tmp_path) as live:
        stream = await trio.open_tcp_stream("127.0.0.1", live.port)
        async with stream:
            with trio.fail_after(WAIT):
                await stream.send_all(
                    b"GET /server/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                received = bytearray()
                while data := await stream.receive_some(65536):
                    received += data
            assert received.startswith(b"HTTP/1.1 200"), bytes(received[:200])
            assert b'"result"' in received
