"""The floor for bench_api: hypercorn's Trio server and a raw ASGI app, no framework.

It answers ``GET /server/info`` and websocket ``server.info`` with the same JSON trioprint's
``server.info`` returns (read from trioprint once, passed in a file), so the difference between
this and trioprint is what trioprint and Quart add per request on top of hypercorn.

    python bench/bare_asgi.py PORT RESULT.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


def make_app(result: Any) -> Any:
    body = json.dumps({"result": result}, separators=(",", ":")).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while (message := await receive())["type"] == "websocket.receive":
                request = json.loads(message.get("text") or message.get("bytes") or b"")
                reply = {"jsonrpc": "2.0", "result": result, "id": request.get("id")}
                text = json.dumps(reply, separators=(",", ":"))
                await send({"type": "websocket.send", "text": text})

    return app


def main() -> int:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path) as f:
        result = json.load(f)
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    trio.run(serve, make_app(result), config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
