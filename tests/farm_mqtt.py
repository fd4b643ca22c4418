"""A farm on one broker: N trioprint instances (in a few ``--instance`` processes, each on its
embedded simulated printer) bridged to one mosquitto, and the farm's controller: one MQTT
client that watches every printer's status and drives a print on each through the JSON-RPC
API over MQTT. Shared by tests/test_farm_mqtt.py and bench/bench_farm_mqtt.py (no pytest).

The controller keeps a persistent session (``clean_session`` off, a fixed client id) and the
instances ``persistent_session: true``, on a broker with persistence: across a restart of the
broker the sessions, their subscriptions and the QoS 1 messages queued for them survive.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import paho.mqtt.client as paho
import trio

from trioprint.transport.mqtt import MqttLink

#: A small print: a few moves and 800 s of dwell (16 s at the simulator's speed 50), long
#: enough for a broker restart in its middle.
GCODE = (
    "G28\nG1 Z5 F600\n"
    + "".join(f"G1 X{10 + i} Y{10 + i} F6000\nG4 P20000\n" for i in range(40))
    + "G1 X0 Y0\n"
)
FILENAME = "small.gcode"

CONF = """\
[server]
host: 127.0.0.1
port: 0

[machine]
provider: none

[authorization]
trusted_clients:
  127.0.0.0/8

[announcements]
enable_moonlight: False

[simulator]
speed: {speed}

[mqtt]
address: {host}
port: {port}
instance_name: {name}
default_qos: 1
api_qos: 1
status_objects:
  print_stats=state,filename,print_duration
  toolhead=position
status_interval: {interval}
{extra}"""


def instance_names(count: int) -> list[str]:
    return [f"p{i:02d}" for i in range(count)]


def write_instances(
    root: Path,
    names: list[str],
    broker: tuple[str, int],
    *,
    speed: float = 50,
    interval: float = 1,
    extra: str = "persistent_session: true\n",
) -> list[Path]:
    folders = []
    for name in names:
        data = root / name
        for sub in ("config", "gcodes", "logs"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        conf = CONF.format(
            speed=speed, host=broker[0], port=broker[1], name=name, interval=interval, extra=extra
        )
        (data / "config" / "trioprint.conf").write_text(conf)
        (data / "gcodes" / FILENAME).write_text(GCODE)
        folders.append(data)
    return folders


@asynccontextmanager
async def farm_processes(
    command: list[str],
    names: list[str],
    folders: list[Path],
    per_process: int,
    env: dict[str, str],
    logs: Path,
) -> AsyncIterator[list[trio.Process]]:
    """``trioprint --instance NAME=DIR ...`` processes of ``per_process`` instances each."""
    processes: list[trio.Process] = []
    pairs = list(zip(names, folders, strict=True))
    try:
        for index in range(0, len(pairs), per_process):
            chunk = pairs[index : index + per_process]
            args = [a for n, d in chunk for a in ("--instance", f"{n}={d}")]
            with (logs / f"farm-{index // per_process}.log").open("ab") as out:
                processes.append(
                    await trio.lowlevel.open_process(
                        [*command, *args], stdout=out, stderr=subprocess.STDOUT, env=env
                    )
                )
        yield processes
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                if process.returncode is None:
                    process.terminate()
            for process in processes:
                with trio.move_on_after(15):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


@attrs.define
class Printer:
    name: str
    #: arrival times (trio clock) of klipper/status messages
    status_times: list[float] = attrs.Factory(list)
    #: the merged klipper/status as seen by the controller
    status: dict[str, dict[str, Any]] = attrs.Factory(dict)
    #: arrival times of live (not retained) ``{"server": "online"}``
    online_times: list[float] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)


class Controller(MqttLink):
    """The farm's MQTT client: every printer's status, and API calls to any of them."""

    def __init__(self, host: str, port: int, names: list[str], client_id: str) -> None:
        super().__init__(host, port, client_id=client_id, clean_session=False)
        self.printers = {name: Printer(name) for name in names}
        self.messages = 0
        self._ids = itertools.count(1)
        #: id -> the first response; pending: id -> the event set when it arrives
        self.responses: dict[int, dict[str, Any]] = {}
        self.duplicates = 0
        self._pending: dict[int, trio.Event] = {}
        for topic in ("+/moonraker/status", "+/klipper/status", "+/moonraker/api/response"):
            self.subscribe(topic, 1)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        self.messages += 1
        name, _, rest = message.topic.partition("/")
        printer = self.printers.get(name)
        if printer is None:
            return
        now = trio.current_time()
        data = json.loads(message.payload)
        if rest == "moonraker/status":
            if data == {"server": "online"} and not message.retain:
                printer.online_times.append(now)
        elif rest == "klipper/status":
            printer.status_times.append(now)
            for obj, fields in data["status"].items():
                printer.status.setdefault(obj, {}).update(fields)
        elif rest == "moonraker/api/response":
            req_id = data.get("id")
            if req_id in self.responses:
                self.duplicates += 1  # a QoS 1 redelivery (or Moonraker's duplicate refusal)
            elif isinstance(req_id, int):
                self.responses[req_id] = data
                event = self._pending.pop(req_id, None)
                if event is not None:
                    event.set()
        changed, printer.changed = printer.changed, trio.Event()
        changed.set()

    def request(self, name: str, method: str, params: dict[str, Any] | None = None) -> int:
        """Publish one request (QoS 1, with Moonraker's ``mqtt_timestamp``); its id."""
        req_id = next(self._ids)
        params = {**(params or {}), "mqtt_timestamp": f"{name}-{req_id}"}
        message = {"jsonrpc": "2.0", "method": method, "params": params, "id": req_id}
        self._pending[req_id] = trio.Event()
        self.publish(f"{name}/moonraker/api/request", json.dumps(message).encode(), 1)
        return req_id

    async def response(self, req_id: int) -> dict[str, Any]:
        event = self._pending.get(req_id)
        if event is not None:
            await event.wait()
        return self.responses[req_id]

    async def call(self, name: str, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.response(self.request(name, method, params))
        if "error" in reply:
            raise RuntimeError(f"{name} {method}: {reply['error']}")
        return reply["result"]

    async def wait_printer(self, name: str, check: Any) -> None:
        printer = self.printers[name]
        while not check(printer):
            await printer.changed.wait()

    async def wait_all(self, check: Any) -> None:
        async with trio.open_nursery() as nursery:
            for name in self.printers:
                nursery.start_soon(self.wait_printer, name, check)


@asynccontextmanager
async def controlling(
    host: str, port: int, names: list[str], client_id: str = "farm-controller"
) -> AsyncIterator[Controller]:
    controller = Controller(host, port, names, client_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(controller.run)
        await controller.wait_connected()
        yield controller
        nursery.cancel_scope.cancel()


async def wait_ready(controller: Controller) -> None:
    """Every printer online and its klippy ready, asked over MQTT (server.info)."""
    await controller.wait_all(lambda p: bool(p.online_times))

    async def ready(name: str) -> None:
        while True:
            info = await controller.call(name, "server.info")
            if info["klippy_state"] == "ready":
                return
            await trio.sleep(0.2)

    async with trio.open_nursery() as nursery:
        for name in controller.printers:
            nursery.start_soon(ready, name)


def print_state(printer: Printer) -> str | None:
    state = printer.status.get("print_stats", {}).get("state")
    return state if isinstance(state, str) else None
