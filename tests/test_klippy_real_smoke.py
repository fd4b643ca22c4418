"""The real-klippy harness works: a klippy from PyPI reaches ready and answers the API.

Raw trio unix socket + the sans-I/O codec, nothing of trioprint's transport: this test pins
down the harness and the codec against the real peer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from trioprint.domain.klippy import NEED_DATA, KlippyConnection, Notification, Response

from .klippy_real import KLIPPY_PARAMS, KlippyFlavour, run_klippy

pytestmark = pytest.mark.slow


class RawClient:
    """One connection: requests in order, notifications kept aside."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = KlippyConnection()
        self.notifications: list[Notification] = []

    async def _next_event(self) -> Response | Notification:
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Response | Notification)
                return event
            data = await self.stream.receive_some()
            if not data:
                raise EOFError("klippy closed the socket")
            self.conn.receive_data(data)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Response:
        req_id, data = self.conn.send_request(method, params)
        await self.stream.send_all(data)
        while True:
            event = await self._next_event()
            if isinstance(event, Notification):
                self.notifications.append(event)
            elif event.id == req_id:
                return event

    async def notification(self, method: str) -> Notification:
        for i, note in enumerate(self.notifications):
            if note.method == method:
                return self.notifications.pop(i)
        while True:
            event = await self._next_event()
            if isinstance(event, Notification) and event.method == method:
                return event


async def wait_ready(client: RawClient) -> dict[str, Any]:
    """Poll ``info`` until klippy is ready (it may still be starting up)."""
    while True:
        reply = await client.call("info", {"client_info": {"program": "trioprint-test"}})
        assert reply.ok, reply
        if reply.result["state"] == "ready":
            return reply.result  # type: ignore[no-any-return]
        assert reply.result["state"] == "startup", reply.result
        await trio.sleep(0.1)  # klippy is another process: nothing to wait on but time


@pytest.mark.parametrize("flavour", KLIPPY_PARAMS)
async def test_real_klippy_answers(flavour: KlippyFlavour | None, tmp_path: Path) -> None:
    async with run_klippy(flavour, tmp_path) as klippy:
        assert klippy.socket_path.exists()
        assert (klippy.gcodes_dir / "test.gcode").exists()
        with trio.fail_after(30):
            stream = await trio.open_unix_socket(os.fspath(klippy.socket_path))
        async with stream:
            client = RawClient(stream)
            with trio.fail_after(30):
                info = await wait_ready(client)
            assert info["state_message"] == "Printer is ready"
            assert Path(info["config_file"]) == tmp_path / "printer.cfg"

            with trio.fail_after(10):
                objects = await client.call("objects/list")
            assert objects.ok, objects
            assert {"webhooks", "toolhead", "print_stats"} <= set(objects.result["objects"])

            with trio.fail_after(10):
                query = await client.call(
                    "objects/query", {"objects": {"virtual_sdcard": None, "print_stats": None}}
                )
            assert query.ok, query
            assert query.result["status"]["print_stats"]["state"] == "standby"

            with trio.fail_after(10):
                sub = await client.call(
                    "gcode/subscribe_output", {"response_template": {"method": "gcode_out"}}
                )
                assert sub.ok, sub
                m115 = await client.call("gcode/script", {"script": "M115"})
                assert m115.ok, m115
                assert m115.result == {}
                output = await client.notification("gcode_out")
            assert "FIRMWARE_VERSION" in output.params["response"], output

            with trio.fail_after(10):
                bad = await client.call("gcode/script", {"script": "G1 X9999"})
            assert bad.error == "WebRequestError", bad
            assert bad.message

        assert klippy.process.returncode is None, klippy.log_tail()
    assert klippy.process.returncode is not None
