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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from ..transport.klippy_server import CORE_ENDPOINTS, Client, KlippyApiServer, Refused
from .machine import GcodeError, LineDone, SimMachine, Sleep, Step, WaitFor

log = logging.getLogger(__name__)

#: Real seconds between two status pushes (klippy's cadence).
STATUS_INTERVAL = 0.25
#: Real seconds klippy takes to come back after RESTART / FIRMWARE_RESTART.
RESTART_DELAY = 1.0
#: Real seconds between two checks of a condition a G-code command waits for.
POLL_INTERVAL = 0.05

ENDPOINTS = [
    *CORE_ENDPOINTS,
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


class SimKlippy(KlippyApiServer):
    """A simulated klippy serving ``machine`` on ``socket_path``."""

    what = "simulated printer"
    request_errors = (GcodeError,)

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
        super().__init__(socket_path)
        self.log_file = log_file
        # klippy's log is its own: a logger outside the hierarchy, so nothing propagates
        self.klippy_log = logging.Logger("klippy")
        self.gcodes_dir = gcodes_dir
        self.speed = speed
        self._factory = machine_factory or (lambda gcodes, now: SimMachine(gcodes, now=now))
        self._real0 = 0.0
        self._sim0 = 0.0
        self.machine: SimMachine | None = None
        self._gcode_lock = trio.Lock()
        self._scripts: set[trio.CancelScope] = set()
        self._job_wakeup = trio.Event()
        self._restart_at: float | None = None
        self._nursery: trio.Nursery | None = None

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
        listener = self.listen()
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
                await self.accept(listener, nursery)
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
        self.push_status(machine.query, machine.now)

    def _output(self, line: str) -> None:
        if line.startswith("!!") or "Klipper state:" in line:  # what klippy logs of it
            self.klippy_log.info("%s", line)
            if "Klipper state: Shutdown" in line and self.machine is not None:
                reason = self.machine.state_message.splitlines()[0]
                self.klippy_log.info("Transition to shutdown state: %s", reason)
        self.broadcast_output(line)

    # -- one client ------------------------------------------------------------------------

    def drops_clients_after(self, method: str) -> bool:
        return method in ("gcode/restart", "gcode/firmware_restart") or (
            self._restart_at is not None and method == "gcode/script"
        )

    async def handle(self, client: Client, method: str, params: dict[str, Any]) -> Any:
        machine = self._advance()
        if method == "info":
            return machine.info()
        if method == "objects/list":
            return {"objects": machine.object_names()}
        done, result = self.answer_common(
            client, method, params, query=machine.query, eventtime=machine.now, endpoints=ENDPOINTS
        )
        if done:
            return result
        if method == "gcode/script":
            await self._run_script(self.script_argument(params))
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
                raise Refused("Missing Argument [name]")
            if name not in machine.query({"motion_report": [field]})["motion_report"][field]:
                raise Refused(f"The value '{name}' is not valid for name")
            return {"header": list(header)}
        if method in ("pause_resume/pause", "pause_resume/resume", "pause_resume/cancel"):
            action = method.rpartition("/")[2]
            async with self._gcode_lock:
                getattr(machine, action)()
            self._job_wakeup.set()
            return {}
        raise Refused(f"webhooks: No registered callback for path '{method}'")

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
