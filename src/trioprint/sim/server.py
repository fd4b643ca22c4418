"""The simulated printer's klippy: serves a :class:`SimMachine` on a Unix socket.

::

    SimKlippy.run
    ├─ accept loop: one task per client connection
    │  └─ client nursery: reader (server codec -> one task per request), writer (outbox)
    ├─ ticker: every 0.25 s advance the machine, push each client's changed fields
    │          (``process_status_update``), finish a restart after 1 s
    └─ job driver: runs the print job line by line under the G-code mutex, letting API
                   scripts in between lines, as klippy's virtual_sdcard does

The protocol is klippy's (:class:`~trioprint.domain.klippy.KlippyServerConnection`), so the
real link code runs end to end against it, and so can Moonraker. Time in the machine runs
``speed`` times faster than real time; ``eventtime`` is the machine's (simulated) clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from ..domain.klippy import NEED_DATA, KlippyServerConnection, RemoteProtocolError, Request
from ..errors import StartupError
from ..transport.outbox import Outbox
from .machine import GcodeError, LineDone, SimMachine, Sleep, Step, WaitFor

log = logging.getLogger(__name__)

#: Real seconds between two status pushes (klippy's cadence).
STATUS_INTERVAL = 0.25
#: Real seconds klippy takes to come back after RESTART / FIRMWARE_RESTART.
RESTART_DELAY = 1.0
#: Real seconds between two checks of a condition a G-code command waits for.
POLL_INTERVAL = 0.05
CLIENT_QUEUE = 4096

ENDPOINTS = [
    "list_endpoints",
    "info",
    "emergency_stop",
    "register_remote_method",
    "gcode/help",
    "gcode/script",
    "gcode/restart",
    "gcode/firmware_restart",
    "gcode/subscribe_output",
    "objects/list",
    "objects/query",
    "objects/subscribe",
    "pause_resume/cancel",
    "pause_resume/pause",
    "pause_resume/resume",
    "motion_report/dump_stepper",
    "query_endstops/status",
    "motion_report/dump_trapq",
]
#: klippy's motion_report dumps: the status field naming what may be dumped, and the header
#: of the samples (the simulator answers the header and streams no samples).
DUMPS = {
    "motion_report/dump_stepper": ("steppers", ["interval", "count", "add"]),
    "motion_report/dump_trapq": (
        "trapq",
        ["time", "duration", "start_velocity", "acceleration", "start_position", "direction"],
    ),
}


class _Client:
    def __init__(self, number: int, stream: trio.SocketStream) -> None:
        self.number = number
        self.stream = stream
        self.outbox: Outbox[bytes] = Outbox(CLIENT_QUEUE)
        self.subscription: dict[str, list[str] | None] | None = None
        self.status_template: dict[str, Any] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.output_template: dict[str, Any] | None = None
        self.remote_methods: dict[str, dict[str, Any]] = {}
        self.scope = trio.CancelScope()

    def send(self, data: bytes) -> None:
        if not self.outbox.put(data):
            log.warning("simulator: client %d does not read; dropping it", self.number)
            self.scope.cancel()

    def send_templated(self, template: dict[str, Any], params: Any) -> None:
        message = dict(template)
        message["params"] = params
        self.send(KlippyServerConnection.notify(message.pop("method", ""), params))


class SimKlippy:
    """A simulated klippy serving ``machine`` on ``socket_path``."""

    name = "simulator"
    #: What the machine's printer.cfg has that the simulator does not model (for server.info).
    config_warnings: tuple[str, ...] = ()

    def __init__(
        self,
        socket_path: Path,
        gcodes_dir: Path,
        *,
        speed: float = 1.0,
        machine_factory: Callable[[Path, float], SimMachine] | None = None,
        log_file: Path | None = None,
    ) -> None:
        """``log_file``: klippy's log (reported in ``info``): the start, restarts, shutdowns
        and G-code errors, as klippy logs them; without it ``info`` reports none."""
        self.socket_path = socket_path
        self.log_file = log_file
        # klippy's log is its own: a logger outside the hierarchy, so nothing propagates
        self.klippy_log = logging.Logger("klippy")
        self.gcodes_dir = gcodes_dir
        self.speed = speed
        self._factory = machine_factory or (lambda gcodes, now: SimMachine(gcodes, now=now))
        self._real0 = 0.0
        self._sim0 = 0.0
        self.machine: SimMachine | None = None
        self._clients: dict[int, _Client] = {}
        self._numbers = 0
        self._gcode_lock = trio.Lock()
        self._scripts: set[trio.CancelScope] = set()
        self._job_wakeup = trio.Event()
        self._restart_at: float | None = None
        self._nursery: trio.Nursery | None = None
        self._socket_id: tuple[int, int] | None = None

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        """The machine's clock: ``speed`` times real time."""
        return self._sim0 + (trio.current_time() - self._real0) * self.speed

    def _real_deadline(self, sim_time: float) -> float:
        return self._real0 + (sim_time - self._sim0) / self.speed

    def _advance(self) -> SimMachine:
        assert self.machine is not None
        self.machine.advance(max(self.now(), self.machine.now))
        return self.machine

    # -- the task tree ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.gcodes_dir.mkdir(parents=True, exist_ok=True)  # where users put files to print
        self._real0 = trio.current_time()
        self._sim0 = time.monotonic()  # eventtimes look like klippy's (seconds since boot)
        listener = self._listen()
        close_log = self._open_log()
        self.machine = self._new_machine()
        self.machine.finish_startup()
        try:
            async with listener, trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._job_driver)
                log.debug("simulated printer serving klippy's API at %s", self.socket_path)
                task_status.started()
                try:
                    while True:
                        stream = await listener.accept()
                        self._numbers += 1
                        nursery.start_soon(self._serve_client, _Client(self._numbers, stream))
                finally:
                    self._remove_socket()
        finally:
            self.klippy_log.info("Stopped (the simulated printer ends with trioprint)")
            close_log()

    def _open_log(self) -> Callable[[], None]:
        if self.log_file is None:
            return lambda: None
        from .. import __version__
        from ..logs import open_log_file

        banner = (
            f"Starting Klippy... (simulated by trioprint {__version__}, speed {self.speed:g}, "
            f"API socket {self.socket_path})"
        )
        try:
            return open_log_file(self.log_file, self.klippy_log, banner)
        except OSError as exc:
            log.warning("simulator: cannot write %s: %s", self.log_file, exc.strerror or exc)
            self.log_file = None
            return lambda: None

    def _new_machine(self) -> SimMachine:
        machine = self._factory(self.gcodes_dir, self.now())
        machine.output = self._output
        machine.log_file = None if self.log_file is None else str(self.log_file)
        return machine

    def _listen(self) -> trio.SocketListener:
        try:
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_socket()
        except OSError as exc:
            raise StartupError(
                f"cannot serve the simulated printer at {self.socket_path}: {exc.strerror or exc}"
            ) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(self.socket_path))
            self._socket_id = _file_id(self.socket_path)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise StartupError(
                f"cannot serve the simulated printer at {self.socket_path}: {exc.strerror or exc}"
            ) from None
        return trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    def _remove_stale_socket(self) -> None:
        """Unlink a socket left by a previous run; never one another process is serving."""
        if not os.path.lexists(self.socket_path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)  # a local connect answers at once, unless the backlog is full
        try:
            probe.connect(os.fspath(self.socket_path))
        except ConnectionRefusedError:  # nobody listens: stale
            self.socket_path.unlink(missing_ok=True)
            return
        except FileNotFoundError:
            return
        except TimeoutError:
            pass  # someone listens but is busy: in use all the same
        finally:
            probe.close()
        raise StartupError(
            f"cannot serve the simulated printer at {self.socket_path}: another process "
            "serves it (another trioprint on this data folder?)"
        )

    def _remove_socket(self) -> None:
        """Unlink the socket when stopping, if the path still is the one this simulator bound."""
        if self._socket_id is not None and _file_id(self.socket_path) == self._socket_id:
            with contextlib.suppress(OSError):
                self.socket_path.unlink()
        self._socket_id = None

    async def _ticker(self) -> None:
        deadline = trio.current_time()
        while True:
            deadline += STATUS_INTERVAL
            await trio.sleep_until(deadline)
            if self._restart_at is not None and trio.current_time() >= self._restart_at:
                self._restart_at = None
                assert self.machine is not None
                self.machine.finish_startup()
            self._push_status()

    def _push_status(self) -> None:
        machine = self._advance()
        eventtime = machine.now
        for client in list(self._clients.values()):
            if client.subscription is None:
                continue
            status = machine.query(client.subscription)
            diff: dict[str, dict[str, Any]] = {}
            for name, fields in status.items():
                old = client.last.get(name, {})
                changed = {k: v for k, v in fields.items() if k not in old or old[k] != v}
                if changed:
                    diff[name] = changed
            client.last = status
            if diff:
                client.send_templated(
                    client.status_template, {"eventtime": eventtime, "status": diff}
                )

    def _output(self, line: str) -> None:
        if line.startswith("!!") or "Klipper state:" in line:  # what klippy logs of it
            self.klippy_log.info("%s", line)
            if "Klipper state: Shutdown" in line and self.machine is not None:
                reason = self.machine.state_message.splitlines()[0]
                self.klippy_log.info("Transition to shutdown state: %s", reason)
        for client in list(self._clients.values()):
            if client.output_template is not None:
                client.send_templated(client.output_template, {"response": line})

    # -- one client ------------------------------------------------------------------------

    async def _serve_client(self, client: _Client) -> None:
        self._clients[client.number] = client
        codec = KlippyServerConnection()
        try:
            with client.scope:
                async with client.stream, trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, client)
                    while True:
                        data = await client.stream.receive_some(65536)
                        if not data:
                            break
                        codec.receive_data(data)
                        while (request := codec.next_event()) is not NEED_DATA:
                            assert isinstance(request, Request)
                            nursery.start_soon(self._answer, client, request)
                    nursery.cancel_scope.cancel()
        # the reader and the writer share a nursery: their errors arrive as a group
        except* RemoteProtocolError as group:
            log.warning("simulator: client %d: %s", client.number, group.exceptions[0])
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away (a reset included): only that client is done
        finally:
            self._clients.pop(client.number, None)

    async def _writer(self, client: _Client) -> None:
        while (data := await client.outbox.get()) is not None:
            await client.stream.send_all(data)
        client.scope.cancel()  # closed after a restart: what was queued is out, now EOF

    async def _answer(self, client: _Client, request: Request) -> None:
        params = request.params if isinstance(request.params, dict) else None
        try:
            if params is None:
                raise _Refused("Invalid Argument Type [params]")
            result = await self._handle(client, request.method, params)
        except _Refused as exc:
            if request.id is not None:
                client.send(KlippyServerConnection.error(request.id, str(exc)))
            return
        except GcodeError as exc:
            if request.id is not None:
                client.send(KlippyServerConnection.error(request.id, str(exc)))
            return
        except Exception as exc:  # a bug in the model must not take the printer down
            log.exception("simulator: %s failed", request.method)
            if request.id is not None:
                client.send(KlippyServerConnection.error(request.id, f"Internal error: {exc!r}"))
            return
        if request.id is not None:
            client.send(KlippyServerConnection.respond(request.id, result))
        if request.method in ("gcode/restart", "gcode/firmware_restart") or (
            self._restart_at is not None and request.method == "gcode/script"
        ):
            self._drop_clients()

    async def _handle(self, client: _Client, method: str, params: dict[str, Any]) -> Any:
        machine = self._advance()
        if method == "info":
            return machine.info()
        if method == "list_endpoints":
            return {"endpoints": list(ENDPOINTS)}
        if method == "objects/list":
            return {"objects": machine.object_names()}
        if method in ("objects/query", "objects/subscribe"):
            objects = params.get("objects")
            if not isinstance(objects, dict) or not all(
                v is None or isinstance(v, list) for v in objects.values()
            ):
                raise _Refused("Invalid Argument Type [objects]")
            status = machine.query(objects)
            if method == "objects/subscribe":
                client.subscription = dict(objects)
                template = params.get("response_template")
                client.status_template = dict(template) if isinstance(template, dict) else {}
                client.last = status
            return {"eventtime": machine.now, "status": status}
        if method == "gcode/subscribe_output":
            template = params.get("response_template")
            client.output_template = dict(template) if isinstance(template, dict) else {}
            return {}
        if method == "register_remote_method":
            name = params.get("remote_method")
            template = params.get("response_template")
            if not isinstance(name, str) or not isinstance(template, dict):
                raise _Refused("Invalid Argument Type [remote_method]")
            client.remote_methods[name] = template
            return {}
        if method == "gcode/script":
            script = params.get("script")
            if not isinstance(script, str):
                raise _Refused("Invalid Argument Type [script]")
            await self._run_script(script)
            return {}
        if method == "gcode/help":
            return machine.gcode_help()
        if method in ("gcode/restart", "gcode/firmware_restart"):
            self._restart(firmware=method == "gcode/firmware_restart")
            return {}
        if method == "emergency_stop":
            self.emergency_stop()
            return {}
        if method == "query_endstops/status":
            return machine.query_endstops()
        if method in DUMPS:
            field, header = DUMPS[method]
            name = params.get("name")
            if name is None:
                raise _Refused("Missing Argument [name]")
            if name not in machine.query({"motion_report": [field]})["motion_report"][field]:
                raise _Refused(f"The value '{name}' is not valid for name")
            return {"header": list(header)}
        if method in ("pause_resume/pause", "pause_resume/resume", "pause_resume/cancel"):
            action = method.rpartition("/")[2]
            async with self._gcode_lock:
                getattr(machine, action)()
            self._job_wakeup.set()
            return {}
        raise _Refused(f"webhooks: No registered callback for path '{method}'")

    # -- G-code ----------------------------------------------------------------------------

    async def _run_script(self, script: str) -> None:
        assert self.machine is not None
        async with self._gcode_lock:
            machine = self.machine
            state_before = machine.state
            try:
                await self._drive(machine.execute(script), machine)
            finally:
                if machine.state != state_before:
                    self._state_changed(machine)
        self._job_wakeup.set()

    def _state_changed(self, machine: SimMachine) -> None:
        """A script shut the machine down (M112) or restarted it (RESTART)."""
        if machine.state in ("shutdown", "startup"):
            for scope in list(self._scripts):
                scope.cancel()
        if machine.state == "startup":
            self.klippy_log.info("%s requested by a G-code command", machine.last_restart)
            self._restart_pending(machine)

    async def _drive(self, steps: Iterator[Step], machine: SimMachine) -> None:
        """Run a script's steps, waiting in real time for what the machine waits for."""
        scope = trio.CancelScope()
        self._scripts.add(scope)
        try:
            with scope:
                for step in steps:
                    await self._wait(step, machine)
            if scope.cancelled_caught:
                raise GcodeError(machine.state_message or "Script interrupted")
        finally:
            self._scripts.discard(scope)

    async def _wait(self, step: Step, machine: SimMachine) -> None:
        if isinstance(step, Sleep):
            await trio.sleep_until(self._real_deadline(step.until))
            machine.advance(max(self.now(), step.until))
        elif isinstance(step, WaitFor):
            while True:
                machine.advance(max(self.now(), machine.now))
                if step.predicate():
                    return
                await trio.sleep(POLL_INTERVAL)
        elif isinstance(step, LineDone):
            # let API scripts in between two lines of a print (trio.Lock is fair)
            self._gcode_lock.release()
            try:
                await trio.lowlevel.checkpoint()
            finally:
                await self._gcode_lock.acquire()

    async def _job_driver(self) -> None:
        while True:
            await self._job_wakeup.wait()
            self._job_wakeup = trio.Event()
            machine = self.machine
            if machine is None:
                continue
            job = machine.job()
            if job is None:
                continue
            async with self._gcode_lock:
                with contextlib.suppress(GcodeError):
                    await self._drive(job, machine)

    def call_remote_method(self, name: str, **kwargs: Any) -> int:
        """What a macro's ``action_call_remote_method(name, ...)`` does in klippy: every client
        that registered ``name`` is sent it; returns how many were (klippy errors on none)."""
        reached = 0
        for client in list(self._clients.values()):
            template = client.remote_methods.get(name)
            if template is not None:
                client.send_templated(template, kwargs)
                reached += 1
        return reached

    # -- stop and restart ------------------------------------------------------------------

    def emergency_stop(self) -> None:
        """Shut the machine down now: every waiting script fails with the shutdown message."""
        machine = self._advance()
        machine.emergency_stop()
        for scope in list(self._scripts):
            scope.cancel()

    def _restart(self, *, firmware: bool) -> None:
        self.klippy_log.info("%s requested", "FIRMWARE_RESTART" if firmware else "RESTART")
        machine = self._advance()
        for scope in list(self._scripts):
            scope.cancel()
        machine.restart(firmware)
        self._restart_pending(machine)

    def _restart_pending(self, machine: SimMachine) -> None:
        """klippy restarts: it drops every client, and is ready again after a while."""
        self._output("// Klipper state: Disconnect")
        self._restart_at = trio.current_time() + RESTART_DELAY

    def _drop_clients(self) -> None:
        for client in list(self._clients.values()):
            client.outbox.close()  # what is queued (the answer) goes out, then EOF


class _Refused(Exception):
    """A request klippy's webhooks would refuse; the message is klippy's."""


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
