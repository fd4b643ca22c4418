"""A Marlin-style printer on a serial line, served to trioprint as a klippy.

::

    MarlinPrinter.run
    ├─ accept loop (KlippyApiServer): trioprint's klippy link connects here, as to klippy;
    │  while the device is absent every client is closed at once (the link: ``disconnected``)
    ├─ ticker: every 0.25 s each subscriber's changed printer objects
    └─ port loop: open the device (``auto``: each candidate, each baud rate), then a session:
       ├─ reader: bytes -> GcodeLink.receive_data -> events -> the printer objects
       └─ writer: GcodeLink.bytes_to_send, timeouts at GcodeLink.next_deadline
       The device vanishing (EIO, EOF) ends the session; the loop retries with back-off.
       A job task streams the printed file into the link as its queue drains.

The printer objects (:class:`~trioprint.domain.serial_printer.SerialPrinterState`) are kept
from what was acknowledged and reported; ``gcode/script`` returns when each of its lines was
acknowledged; PAUSE, RESUME, CANCEL_PRINT, SDCARD_PRINT_FILE, SDCARD_RESET_FILE, M112,
FIRMWARE_RESTART and RESTART are host commands, as klippy's are.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ..config import Config
from ..domain import gcode_events as ev
from ..domain.gcode_link import GcodeLink, LinkConfig, LinkShutdownError
from ..domain.marlin_lines import ErrorKind, command_code
from ..domain.serial_config import SerialConfigError, SerialSettings, parse_serial_section
from ..domain.serial_printer import SerialPrinterState
from ..errors import ConfigError
from ..sim.marlin import MarlinSim
from ..sim.marlin_parts import MarlinOptions
from ..sim.marlin_pty import MarlinPty
from ..transport.klippy_server import CORE_ENDPOINTS, Client, KlippyApiServer, Refused
from ..transport.serial_port import candidate_ports, open_serial

log = logging.getLogger(__name__)

STATUS_INTERVAL = 0.25
#: Job lines queued in the link ahead of what is written (the file is read as they drain).
LOOKAHEAD = 16
READ_CHUNK = 65536
ENDPOINTS = list(CORE_ENDPOINTS)
HELP = {
    "PAUSE": "Pause the current print (host: stop streaming, run the pause script)",
    "RESUME": "Resume the print (host: the resume script, then streaming again)",
    "CANCEL_PRINT": "Cancel the print (host: stop streaming, M108, the cancel script)",
    "SDCARD_PRINT_FILE": "Stream a file from the gcodes folder to the printer",
    "SDCARD_RESET_FILE": "Clear the loaded file",
    "FIRMWARE_RESTART": "Reset the firmware (reopen the port) and reconnect",
    "RESTART": "Reconnect to the printer",
    "M112": "Emergency stop",
}
_FILENAME = re.compile(r"FILENAME\s*=\s*(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)


class _Pending:
    """A script line waiting for its ``ok``."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None


class _JobLine:
    __slots__ = ("end",)

    def __init__(self, end: int) -> None:
        self.end = end


class MarlinPrinter(KlippyApiServer):
    """A serial printer behind klippy's socket API on ``socket_path``."""

    what = "serial printer"
    name = "serial"
    config_warnings: tuple[str, ...] = ()

    def __init__(
        self,
        socket_path: Path,
        gcodes_dir: Path,
        settings: SerialSettings,
        *,
        port: Callable[[], str] | None = None,
        reset_firmware: Callable[[], None] | None = None,
    ) -> None:
        """``port``: the device path when it is known only once running (the simulated
        Marlin's pty); ``reset_firmware``: what resets the firmware besides reopening the port
        (the simulated Marlin's reset, a pty having no DTR line)."""
        super().__init__(socket_path)
        self.gcodes_dir = gcodes_dir
        self.settings = settings
        self._port = port
        self._reset_firmware = reset_firmware
        self.printer = SerialPrinterState(settings)
        self.link = GcodeLink(
            LinkConfig(
                communication_timeout=settings.communication_timeout,
                long_running_timeout=settings.long_running_timeout,
                always_checksum=settings.always_checksum,
                max_in_flight=settings.max_in_flight,
                temperature_interval=settings.temperature_interval,
            )
        )
        self.device: str | None = None
        self.connected = False
        self._kick = trio.Event()
        self._reconnect = trio.Event()
        self._session_scope: trio.CancelScope | None = None
        self._job_scope: trio.CancelScope | None = None
        self._job_feed = trio.Event()
        self._job_acked = 0
        self._job_sent = 0
        self._nursery: trio.Nursery | None = None

    # -- the task tree ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = self.listen()
        async with listener, trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._port_loop)
            task_status.started()
            await self.accept(listener, nursery)

    async def _serve_client(self, client: Client) -> None:
        if not self.connected:  # no printer: the link sees klippy go away at once
            await client.stream.aclose()
            return
        await super()._serve_client(client)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(STATUS_INTERVAL)
            self.push_status(self._query, trio.current_time())

    def _query(self, objects: Any) -> dict[str, dict[str, Any]]:
        return self.printer.query(objects, trio.current_time())

    def _wake(self) -> None:
        self._kick.set()

    async def _port_loop(self) -> None:
        delay = self.settings.reconnect_interval
        logged = False
        while True:
            paths = (
                [self._port()] if self._port is not None else candidate_ports(self.settings.port)
            )
            for path in paths:
                for baudrate in self.settings.baudrates:
                    try:
                        stream = await open_serial(path, baudrate)
                    except OSError as exc:
                        if not logged:
                            log.info("serial: cannot open %s: %s; retrying", path, exc)
                            logged = True
                        break
                    logged = False
                    if await self._session(
                        stream, path, baudrate, len(self.settings.baudrates) > 1
                    ):
                        delay = self.settings.reconnect_interval
                        break
            else:
                pass
            with trio.move_on_after(delay):
                await self._reconnect.wait()
            self._reconnect = trio.Event()
            delay = min(delay * 2, self.settings.reconnect_max)

    async def _session(self, stream: trio.abc.Stream, path: str, baud: int, probing: bool) -> bool:
        """One connection; True when the firmware answered (so no other baud rate is tried)."""
        self.device = path
        self.link.reset()
        self.link.start_handshake(trio.current_time())
        self.printer.set_state("startup", f"Connecting to the printer on {path} at {baud} baud")
        self.connected = True
        answered = False
        try:
            async with trio.open_nursery() as nursery:
                self._session_scope = nursery.cancel_scope
                nursery.start_soon(self._writer_task, stream)
                if probing:
                    nursery.start_soon(self._probe_deadline, nursery.cancel_scope)
                while True:
                    data = await stream.receive_some(READ_CHUNK)
                    if not data:
                        break
                    answered = True
                    self._on_events(self.link.receive_data(bytes(data), trio.current_time()))
                    self._wake()
                nursery.cancel_scope.cancel()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("serial: %s: %s", path, exc)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            self._session_scope = None
            self.connected = False
            self._on_events(list(self.link.reset()))
            self._job_failed("Printer disconnected")
            self.printer.set_state("startup", f"Printer disconnected ({path})")
            self.drop_clients()
        return answered or self.link.handshake_complete

    async def _probe_deadline(self, scope: trio.CancelScope) -> None:
        await trio.sleep(self.link.config.handshake_timeout * 2)
        if not self.link.handshake_complete:
            scope.cancel()

    async def _writer_task(self, stream: trio.abc.Stream) -> None:
        while True:
            now = trio.current_time()
            data = self.link.bytes_to_send(now)
            if data:
                await stream.send_all(data)
            events = self.link.pop_events()
            if events:
                self._on_events(events)
            deadline = self.link.next_deadline()
            if self._kick.is_set():
                self._kick = trio.Event()
                continue
            with trio.move_on_at(deadline if deadline is not None else float("inf")):
                await self._kick.wait()
            self._kick = trio.Event()
            if deadline is not None and trio.current_time() >= deadline:
                self._on_events(self.link.timeout(trio.current_time()))

    # -- what the firmware said --------------------------------------------------------------

    def _on_events(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, ev.LineReceived):
                if event.line != "ok":
                    self.broadcast_output(event.line)
            elif isinstance(event, ev.CommandAcknowledged):
                self.printer.acknowledged(event.command)
                tag = event.tag
                if isinstance(tag, _JobLine):
                    self.printer.file_position = tag.end
                    self._job_acked += 1
                    self._job_feed.set()
                elif isinstance(tag, _Pending):
                    tag.done.set()
            elif isinstance(event, ev.CommandDropped):
                if isinstance(event.tag, _Pending):
                    event.tag.error = f"{event.command}: not executed ({event.reason})"
                    event.tag.done.set()
                elif isinstance(event.tag, _JobLine):
                    log.warning("serial: job line dropped: %s (%s)", event.command, event.reason)
                    self._job_feed.set()
            elif isinstance(event, ev.TemperatureReport):
                self.printer.temperatures(event.temperatures)
            elif isinstance(event, ev.PositionReport):
                self.printer.reported_position(event.position)
            elif isinstance(event, ev.HandshakeComplete):
                name = event.firmware.name if event.firmware is not None else "unknown firmware"
                self.printer.firmware_name = name
                self.printer.capabilities = dict(event.capabilities)
                self.printer.set_state("ready", "Printer is ready")
                log.info("serial: %s on %s is ready", name, self.device)
            elif isinstance(event, ev.FirmwareError) and event.kind is ErrorKind.FATAL:
                self._shutdown(event.message)
            elif isinstance(event, ev.FirmwareReset):
                self.printer.firmware_reset()
                self._job_failed("Firmware reset during the print")
                if self.printer.state != "startup":
                    self.printer.set_state("startup", "The firmware restarted")
                    self.drop_clients()
            elif isinstance(event, ev.ResendImpossible):
                self._job_failed(f"Line {event.lineno} could not be resent")
            elif isinstance(event, ev.ActionCommand):
                self._action(event.name)

    def _action(self, name: str) -> None:
        actions: dict[str, Callable[[], Any]] = {
            "pause": self.pause,
            "paused": self.pause,
            "resume": self.resume,
            "resumed": self.resume,
            "cancel": self.cancel,
        }
        action = actions.get(name)
        if action is not None and self._nursery is not None:
            self._nursery.start_soon(action)

    def _shutdown(self, message: str) -> None:
        self.printer.set_state("shutdown", message)
        self._job_failed(message)

    # -- the klippy API ----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "state": self.printer.state,
            "state_message": self.printer.state_message,
            "hostname": "trioprint-serial",
            "software_version": self.printer.firmware_name or "Marlin (serial)",
            "cpu_info": f"serial printer on {self.device or self.settings.port}",
            "klipper_path": "",
            "python_path": "",
            "log_file": None,
            "config_file": "",
        }

    async def handle(self, client: Client, method: str, params: dict[str, Any]) -> Any:
        now = trio.current_time()
        if method == "info":
            return self.info()
        if method == "objects/list":
            return {"objects": self.printer.object_names()}
        done, result = self.answer_common(
            client, method, params, query=self._query, eventtime=now, endpoints=ENDPOINTS
        )
        if done:
            return result
        if method == "gcode/script":
            await self.run_script(self.script_argument(params))
            return {}
        if method == "gcode/help":
            return dict(HELP)
        if method in ("gcode/restart", "gcode/firmware_restart"):
            self.restart(firmware=method.endswith("firmware_restart"))
            return {}
        if method == "emergency_stop":
            self.emergency_stop()
            return {}
        if method == "pause_resume/pause":
            await self.pause()
            return {}
        if method == "pause_resume/resume":
            await self.resume()
            return {}
        if method == "pause_resume/cancel":
            await self.cancel()
            return {}
        raise Refused(f"webhooks: No registered callback for path '{method}'")

    async def run_script(self, script: str) -> None:
        for raw in script.splitlines():
            line = raw.strip()
            word = line.split(None, 1)[0].upper() if line else ""
            if word in ("PAUSE", "RESUME", "CANCEL_PRINT"):
                await {"PAUSE": self.pause, "RESUME": self.resume, "CANCEL_PRINT": self.cancel}[
                    word
                ]()
            elif word == "SDCARD_PRINT_FILE":
                self.start_print(_filename(line))
            elif word == "SDCARD_RESET_FILE":
                if self.printer.active:
                    raise Refused("SDCARD_RESET_FILE cannot be run from the sdcard")
                self.printer.job_reset()
            elif word in ("FIRMWARE_RESTART", "RESTART"):
                self.restart(firmware=word == "FIRMWARE_RESTART")
            elif command_code(line) == "M112":
                self.emergency_stop()
            elif line and not line.startswith(";"):
                await self._send_and_wait(line)

    async def _send_and_wait(self, line: str) -> None:
        if self.printer.state != "ready":
            raise Refused(self.printer.state_message or "Printer is not ready")
        pending = _Pending()
        try:
            if not self.link.send(line, tag=pending):
                return
        except LinkShutdownError:
            raise Refused(self.printer.state_message) from None
        self._wake()
        await pending.done.wait()
        if pending.error is not None:
            raise Refused(pending.error)

    def emergency_stop(self) -> None:
        """M112 at once (never queued), then shutdown until a firmware restart."""
        if self.connected and not self.link.is_shutdown:
            self.link.send("M112")  # the link writes it ahead of everything
            self._wake()
        self._on_events(self.link.pop_events())
        self._shutdown("Emergency stop")

    def restart(self, *, firmware: bool) -> None:
        """Reconnect (RESTART) or reset the firmware and reconnect (FIRMWARE_RESTART)."""
        if firmware and self._reset_firmware is not None:
            self._reset_firmware()
        self.printer.set_state("startup", "Reconnecting to the printer")
        if self._session_scope is not None:
            self._session_scope.cancel()
        self._reconnect.set()

    def drops_clients_after(self, method: str) -> bool:
        return method in ("gcode/restart", "gcode/firmware_restart")

    # -- the job -----------------------------------------------------------------------------

    def start_print(self, filename: str) -> None:
        if self.printer.state != "ready":
            raise Refused(self.printer.state_message or "Printer is not ready")
        if self.printer.active:
            raise Refused("SD busy")
        path = (self.gcodes_dir / filename).resolve()
        root = self.gcodes_dir.resolve()
        if root not in path.parents or not path.is_file():
            raise Refused(f"Unable to open file {filename!r}")
        self.printer.job_started(filename, str(path), path.stat().st_size, trio.current_time())
        assert self._nursery is not None
        self._nursery.start_soon(self._stream_job, path)

    async def _stream_job(self, path: Path) -> None:
        self._job_sent = self._job_acked = 0
        with trio.CancelScope() as scope:
            self._job_scope = scope
            try:
                await self._run_script_quietly(self.settings.start_gcode)
                with path.open("rb") as file:
                    offset = 0
                    while chunk := file.readlines(READ_CHUNK):
                        for raw in chunk:
                            offset += len(raw)
                            await self._wait_for_room()
                            text = raw.decode("utf-8", "replace")
                            if self.link.send(text, tag=_JobLine(offset)):
                                self._job_sent += 1
                                self._wake()
                            elif self._job_acked == self._job_sent:
                                self.printer.file_position = offset
                while self._job_acked < self._job_sent:
                    self._job_feed = trio.Event()
                    await self._job_feed.wait()
                self.printer.file_position = self.printer.file_size
                self.printer.job_ended("complete", trio.current_time())
                self._job_scope = None
                await self._run_script_quietly(self.settings.end_gcode)
            except (Refused, LinkShutdownError) as exc:
                self._job_failed(str(exc))
            finally:
                self._job_scope = None

    async def _wait_for_room(self) -> None:
        while self.link.queued >= LOOKAHEAD or self.printer.paused:
            self._job_feed = trio.Event()
            await self._job_feed.wait()
        if self.printer.state != "ready":
            raise Refused(self.printer.state_message)

    async def _run_script_quietly(self, script: str) -> None:
        if script:
            await self.run_script(script)

    def _job_failed(self, message: str) -> None:
        if self.printer.active:
            self.printer.job_ended("error", trio.current_time(), message)
        if self._job_scope is not None:
            self._job_scope.cancel()
            self._job_scope = None

    async def pause(self) -> None:
        if self.printer.job_state != "printing":
            return
        self.printer.job_paused(trio.current_time())
        await self._run_script_quietly(self.settings.pause_gcode)

    async def resume(self) -> None:
        if self.printer.job_state != "paused":
            return
        await self._run_script_quietly(self.settings.resume_gcode)
        self.printer.job_resumed(trio.current_time())
        self._job_feed.set()

    async def cancel(self) -> None:
        if self.printer.job_state not in ("printing", "paused"):
            return
        if self._job_scope is not None:
            self._job_scope.cancel()
            self._job_scope = None
        self._on_events(list(self.link.clear_queue()))
        if not self.link.is_shutdown:
            self.link.send("M108", immediate=True)
            self._wake()
        self.printer.job_ended("cancelled", trio.current_time())
        await self._run_script_quietly(self.settings.cancel_gcode)


def _filename(line: str) -> str:
    match = _FILENAME.search(line)
    if match is None:
        raise Refused("SDCARD_PRINT_FILE: FILENAME is required")
    value = match.group(1)
    if value[:1] in "\"'":
        parts = shlex.split(value)
        value = parts[0] if parts else ""
    return value


class SimulatedMarlinPrinter(MarlinPrinter):
    """``[simulator] firmware: marlin``: the simulated Marlin on a pty, and the real serial
    link to it. A firmware restart resets the model (what DTR does to a real board)."""

    name = "simulator"

    def __init__(self, socket_path: Path, gcodes_dir: Path, *, speed: float, link: Path) -> None:
        self.pty = MarlinPty(MarlinSim(MarlinOptions(advanced_ok=True)), speed=speed, link=link)
        super().__init__(
            socket_path,
            gcodes_dir,
            # the model's clock runs ``speed`` times real time: so do the link's timeouts
            SerialSettings(
                port=str(link),
                baudrates=(250000,),
                communication_timeout=max(30.0 / speed, 1.0),
                long_running_timeout=max(900.0 / speed, 5.0),
                temperature_interval=max(2.0 / speed, 0.5),
            ),
            port=lambda: self.pty.path,
            reset_firmware=lambda: self.pty.control(lambda sim, now: sim.reset(now)),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        gcodes = self.gcodes_dir
        gcodes.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.pty.run)
            await nursery.start(super().run)
            task_status.started()


def load_serial_config(config: Config) -> SerialSettings | None:
    """``[serial]`` (None without one); ConfigError naming the problem."""
    if "serial" not in config.sections:
        return None
    where = f"{config.source}: " if config.source is not None else ""
    if config.server.klippy_uds_address:
        raise ConfigError(
            f"{where}[serial] and [server] klippy_uds_address both name the printer link: "
            "keep one (a Marlin printer on a serial line, or a klippy socket)"
        )
    try:
        settings, _warnings = parse_serial_section(config.section("serial"))
    except SerialConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return settings


def serial_warnings(config: Config) -> tuple[str, ...]:
    if "serial" not in config.sections:
        return ()
    try:
        return tuple(parse_serial_section(config.section("serial"))[1])
    except SerialConfigError:
        return ()
