"""A scriptable klippy double on in-memory streams, for the link's unit tests.

It speaks klippy's API socket protocol (JSON + 0x03) from the server side: ``info``,
``objects/list``, ``objects/query``, ``objects/subscribe``, ``gcode/subscribe_output``,
``register_remote_method``, ``gcode/script`` and ``emergency_stop``. Methods named in
:attr:`KlippyDouble.stall` are received and never answered (a klippy busy with a long script).
``lockstep=True`` gives connections with no buffer at all, so a double that stops reading
stalls the writer mid-frame. Real klippy is tested in ``test_printer_real.py``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import attrs
import trio
import trio.testing

ETX = b"\x03"


def default_status() -> dict[str, dict[str, Any]]:
    return {
        "webhooks": {"state": "ready", "state_message": "Printer is ready"},
        "toolhead": {"position": [0.0, 0.0, 0.0, 0.0], "homed_axes": "", "print_time": 0.0},
        "gcode_move": {"speed": 1500.0, "speed_factor": 1.0},
        "heaters": {
            "available_heaters": ["extruder"],
            "available_sensors": ["extruder"],
            "available_monitors": [],
        },
        "extruder": {"temperature": 21.5, "target": 0.0, "power": 0.0},
    }


@attrs.define(eq=False)
class Peer:
    """The server side of one connection."""

    number: int
    stream: trio.abc.Stream
    reading: trio.Event = attrs.field(factory=trio.Event)
    subscription: dict[str, Any] | None = None
    subscribed_output: bool = False
    stalled: list[dict[str, Any]] = attrs.field(factory=list)
    send_lock: trio.Lock = attrs.field(factory=trio.Lock)


class KlippyDouble:
    def __init__(self, nursery: trio.Nursery, *, lockstep: bool = False) -> None:
        self._nursery = nursery
        self._lockstep = lockstep
        self.status = default_status()
        self.state = "ready"
        self.startup_polls = 0  # ``info`` answers "startup" this many times first
        self.refuse = 0  # connection attempts refused first
        self.attempts: list[float] = []
        self.stall: set[str] = set()
        #: what ``list_endpoints`` answers (None: the method is unknown, as an old klippy)
        self.endpoints: list[str] | None = None
        self.peers: list[Peer] = []
        self.received: list[tuple[int, dict[str, Any]]] = []
        self.eventtime = 100.0
        self.request_seen = trio.Event()

    # -- the client's connect() ------------------------------------------------------------

    async def connect(self) -> trio.abc.Stream:
        self.attempts.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if self.refuse > 0:
            self.refuse -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        if self._lockstep:
            client, server = trio.testing.lockstep_stream_pair()
        else:
            client, server = trio.testing.memory_stream_pair()
        peer = Peer(len(self.peers) + 1, server)
        peer.reading.set()
        self.peers.append(peer)
        self._nursery.start_soon(self._serve, peer)
        return client

    # -- what tests do ---------------------------------------------------------------------

    def methods(self, peer: int | None = None) -> list[str]:
        return [m["method"] for n, m in self.received if peer is None or n == peer]

    async def push_status(self, diff: dict[str, dict[str, Any]]) -> None:
        """Change the state and send the diff to the subscribed connection(s)."""
        self.eventtime += 0.25
        for name, fields in diff.items():
            self.status.setdefault(name, {}).update(fields)
        for peer in self.peers:
            if peer.subscription is not None:
                wanted = {
                    name: {
                        k: v
                        for k, v in fields.items()
                        if peer.subscription[name] is None or k in peer.subscription[name]
                    }
                    for name, fields in diff.items()
                    if name in peer.subscription
                }
                wanted = {k: v for k, v in wanted.items() if v}
                if wanted:
                    await self._send(
                        peer,
                        {
                            "method": "process_status_update",
                            "params": {"eventtime": self.eventtime, "status": wanted},
                        },
                    )

    async def push_gcode(self, line: str) -> None:
        for peer in self.peers:
            if peer.subscribed_output:
                await self._send(
                    peer, {"method": "process_gcode_response", "params": {"response": line}}
                )

    async def push_raw(self, peer: Peer, data: bytes) -> None:
        async with peer.send_lock:
            await peer.stream.send_all(data)

    def pause_reading(self, peer: Peer) -> None:
        """Stop taking bytes from this connection (with lockstep, its writer then blocks)."""
        peer.reading = trio.Event()

    async def drop(self, peer: Peer) -> None:
        """Close one connection, as klippy does on RESTART / FIRMWARE_RESTART."""
        await peer.stream.aclose()

    async def wait_for(self, method: str, count: int = 1) -> None:
        while self.methods().count(method) < count:
            self.request_seen = trio.Event()
            await self.request_seen.wait()

    # -- the server side -------------------------------------------------------------------

    async def _send(self, peer: Peer, message: dict[str, Any]) -> None:
        async with peer.send_lock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await peer.stream.send_all(json.dumps(message).encode() + ETX)

    async def _serve(self, peer: Peer) -> None:
        buffer = b""
        try:
            while True:
                await peer.reading.wait()
                data = await peer.stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                while ETX in buffer:
                    frame, _, buffer = buffer.partition(ETX)
                    message = json.loads(frame)
                    self.received.append((peer.number, message))
                    self.request_seen.set()
                    await self._handle(peer, message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    def _query(self, objects: dict[str, Any]) -> dict[str, Any]:
        status = {}
        for name, fields in objects.items():
            obj = self.status.get(name, {})  # klippy answers {} for an object it does not have
            status[name] = {k: v for k, v in obj.items() if fields is None or k in fields}
        return {"eventtime": self.eventtime, "status": status}

    async def _handle(self, peer: Peer, message: dict[str, Any]) -> None:
        method, params, req_id = message["method"], message.get("params", {}), message["id"]
        if method in self.stall:
            peer.stalled.append(message)
            return
        result: Any = {}
        if method == "info":
            state = self.state
            if self.startup_polls > 0:
                self.startup_polls -= 1
                state = "startup"
            result = {"state": state, "state_message": f"Printer is {state}", "app": "Double"}
        elif method == "list_endpoints":
            if self.endpoints is None:
                error = {"error": "WebRequestError", "message": "No registered callback"}
                await self._send(peer, {"id": req_id, "error": error})
                return
            result = {"endpoints": list(self.endpoints)}
        elif method == "bed_mesh/dump_mesh":
            result = {"current_mesh": {}, "profiles": {}, "args": params}
        elif method == "objects/list":
            result = {"objects": list(self.status)}
        elif method == "objects/query":
            result = self._query(params["objects"])
        elif method == "objects/subscribe":
            peer.subscription = dict(params["objects"])
            result = self._query(params["objects"])
        elif method == "gcode/subscribe_output":
            peer.subscribed_output = True
        elif method == "emergency_stop":
            self.state = "shutdown"
            await self._send(peer, {"id": req_id, "result": {}})
            await self.push_status(
                {"webhooks": {"state": "shutdown", "state_message": "Shutdown due to webhooks"}}
            )
            return
        elif method == "gcode/script":
            if self.state == "shutdown":
                await self._send(
                    peer,
                    {
                        "id": req_id,
                        "error": {"error": "WebRequestError", "message": "Printer is shutdown"},
                    },
                )
                return
            await self.push_gcode(f"// ran {params['script']}")
        await self._send(peer, {"id": req_id, "result": result})
