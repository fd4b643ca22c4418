"""An in-memory ASGI websocket peer: drives WebsocketManager.serve without sockets."""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from trioprint.transport.websocket import WebsocketManager


class Peer:
    """One client connection: frames in through ``send_text``, frames out through ``next``."""

    def __init__(self, out_capacity: float = math.inf) -> None:
        self._in_send, self._in_recv = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._out_send, self._out_recv = trio.open_memory_channel[dict[str, Any]](out_capacity)
        self.closed: dict[str, Any] | None = None

    async def receive(self) -> dict[str, Any]:
        return await self._in_recv.receive()

    async def send(self, message: dict[str, Any]) -> None:
        if "text" in message:
            message["text"].encode("utf-8")  # what a real transport must be able to do
        await self._out_send.send(message)

    async def serve(self, manager: WebsocketManager, *, task_status: Any) -> None:
        self._in_send.send_nowait({"type": "websocket.connect"})
        scope = {"type": "websocket", "path": "/websocket", "client": ("127.0.0.1", 5000)}
        task_status.started()
        await manager.serve(scope, self.receive, self.send)

    def send_text(self, text: str) -> None:
        self._in_send.send_nowait({"type": "websocket.receive", "text": text})

    def request(self, method: str, params: Any = None, id: Any = 1) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            msg["params"] = params
        self.send_text(json.dumps(msg))

    def disconnect(self) -> None:
        self._in_send.send_nowait({"type": "websocket.disconnect", "code": 1000})

    async def next_message(self) -> dict[str, Any]:
        """The next ASGI message the server sent (accept, send or close)."""
        return await self._out_recv.receive()

    async def next(self) -> Any:
        """The next JSON frame the server sent (skipping the accept)."""
        while True:
            msg = await self._out_recv.receive()
            if msg["type"] == "websocket.send":
                return json.loads(msg["text"])
            if msg["type"] == "websocket.close":
                self.closed = msg
                raise ConnectionError(f"closed: {msg}")
