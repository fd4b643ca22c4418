"""Helpers for tests against a live server: in-process (real hypercorn on 127.0.0.1:0) or as
a subprocess started the way a user starts it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from trioprint.app import Instance, Options, Server


class Live:
    def __init__(self, server: Server, instance: Instance) -> None:
        self.server = server
        self.instance = instance

    @property
    def port(self) -> int:
        return self.instance.bound[0][1]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"


@asynccontextmanager
async def live_server(data_dir: Path, config: Path | None = None) -> AsyncIterator[Live]:
    server = Server(Options(data_dir=data_dir, config_file=config, host="127.0.0.1", port=0))
    async with trio.open_nursery() as nursery:
        instance = await nursery.start(server.run)
        yield Live(server, instance)
        server.stop()


class RpcClient:
    """A small JSON-RPC client over trio-websocket that keeps notifications aside."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.notifications: list[dict[str, Any]] = []
        self._next_id = 1

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        req_id = self._next_id
        self._next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
        if params is not None:
            msg["params"] = params
        await self.ws.send_message(json.dumps(msg))
        return await self.reply(req_id)

    async def reply(self, req_id: Any) -> dict[str, Any]:
        while True:
            message = json.loads(await self.ws.get_message())
            if isinstance(message, dict) and "method" in message:
                self.notifications.append(message)
                continue
            if isinstance(message, list) or message.get("id") == req_id:
                return message  # type: ignore[no-any-return]

    async def notification(self, method: str) -> dict[str, Any]:
        for i, note in enumerate(self.notifications):
            if note["method"] == method:
                return self.notifications.pop(i)
        while True:
            message = json.loads(await self.ws.get_message())
            if isinstance(message, dict) and message.get("method") == method:
                return message  # type: ignore[no-any-return]


@asynccontextmanager
async def rpc_client(url: str) -> AsyncIterator[RpcClient]:
    async with open_websocket_url(url) as ws:
        yield RpcClient(ws)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def trioprint_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m trioprint``."""
    script = Path(sys.executable).with_name("trioprint")
    if script.exists():
        return [str(script)]
    found = shutil.which("trioprint")
    return [found] if found else [sys.executable, "-m", "trioprint"]


def subprocess_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(home)
    src = Path(__file__).resolve().parent.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


async def call_until_closed(port: int, method: str) -> tuple[dict[str, Any], int | None, bool]:
    """Send one request over a bare wsproto client; read until the server closes.

    Returns the reply, the close code, and whether the server then closed the TCP connection.
    (trio-websocket's client leaves its socket open when the server closes first, so the
    restart test, which counts file descriptors, uses this client.)
    """
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

    reply: dict[str, Any] = {}
    code = None
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host="127.0.0.1", target="/websocket")))
        while True:
            data = await stream.receive_some()
            if not data:
                return reply, code, True
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    request = {"jsonrpc": "2.0", "method": method, "id": 1}
                    await stream.send_all(ws.send(TextMessage(json.dumps(request))))
                elif isinstance(event, TextMessage):
                    message = json.loads(event.data)
                    if message.get("id") == 1:
                        reply = message
                elif isinstance(event, CloseConnection):
                    code = event.code
                    await stream.send_all(ws.send(event.response()))
