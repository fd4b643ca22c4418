"""The composition root: one root nursery, one server instance at a time.

::

    trio.run(serve)
    └─ root nursery
       ├─ signal watcher: SIGINT/SIGTERM -> instance.stop(); a second signal cancels at once
       └─ instance loop: build an Instance from a freshly read config, run it, repeat on restart
          └─ Instance.run (its own cancel scope: restart and shutdown cancel the whole tree)
             └─ storage: the SQLite database (opened first, closed last)
                └─ components: websocket fan-out, authorization, machine (1 Hz proc stats),
                   │ klippy link, files, metadata, history, update manager, event hooks,
                   │ OctoPrint events ...
                   └─ hypercorn's Trio server with the ASGI router (Quart-Trio HTTP + /websocket)

Shutdown order for an instance: websockets are closed (their queued replies flushed, bounded),
hypercorn stops accepting and drains in-flight requests (bounded), then the components' nursery
is cancelled, and when every component has ended the database is closed. ``server.restart``
does the same and then builds a new instance from the config file read again.
"""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from .bus import Bus
from .components.announcements import Announcements
from .components.auth import Authorization
from .components.data_store import DataStore
from .components.database import Database
from .components.extensions import Extensions
from .components.files.download import serve_file
from .components.files.manager import Files
from .components.files.roots import printing_check
from .components.frontend import Frontend
from .components.history import History
from .components.hooks import EventHooks
from .components.job_queue import JobQueueComponent
from .components.klippy import Klippy
from .components.klippy_endpoints import KlippyEndpoints
from .components.machine import Machine
from .components.metadata import MetadataStore
from .components.mqtt import Mqtt, load_mqtt_config
from .components.notifiers import Notifiers
from .components.octoprint_api import OctoPrintApi
from .components.octoprint_events import OctoPrintEvents
from .components.power import Power, machine_service_action
from .components.printer import Printer
from .components.sensors import Sensors, mqtt_source
from .components.server import ServerCore
from .components.spoolman import Spoolman
from .components.uploads import handle_upload
from .components.webcams import Webcams
from .components.wled import Wled
from .config import Config, default_config_path, load_config
from .domain.spoolman import SpoolmanError
from .errors import ConfigError, StartupError
from .registry import Registry
from .transport import server_fixes
from .transport.http import Router, create_http_app
from .transport.klippy import open_unix
from .transport.websocket import CLOSE_GOING_AWAY, CLOSE_RESTART, WebsocketManager

# Imported where they are used, so that a server without them never loads them (idle RSS):
# the simulator (--sim, or no klippy configured), the serial printer ([serial], or the
# simulated Marlin) and the update manager ([update_manager]).
if TYPE_CHECKING:
    from .components.serial_printer import MarlinPrinter
    from .components.update_manager import UpdateManager
    from .sim.machine import SimMachine
    from .sim.server import SimKlippy

    #: What runs in the process as the printer: the simulated klippy, or a serial printer.
    LocalPrinter = SimKlippy | MarlinPrinter

log = logging.getLogger(__name__)

#: The simulated printer's socket, in ``<data>/comms`` (never klippy's own ``klippy.sock``).
SIM_SOCKET = "trioprint-sim.sock"
#: Where the serial printer ([serial]) is served to the klippy link.
SERIAL_SOCKET = "trioprint-serial.sock"

#: Bounds on each shutdown step, in seconds.
WEBSOCKET_FLUSH_TIMEOUT = 1.0
HTTP_DRAIN_TIMEOUT = 3.0


@attrs.frozen
class Options:
    """What the command line decides (the config file decides the rest)."""

    data_dir: Path
    config_file: Path | None = None
    host: str | None = None
    port: int | None = None
    verbose: bool = False
    sim: bool = False
    sim_speed: float | None = None
    #: ``--sim marlin``: the simulated firmware (overrides ``[simulator] firmware``).
    sim_firmware: str | None = None
    #: ``--frontend DIR``: a built web frontend served at ``/`` (overrides ``[frontend] path``).
    frontend: Path | None = None


class Instance:
    """One server instance: the components built from one reading of the config."""

    def __init__(
        self,
        config: Config,
        *,
        extra_warnings: tuple[str, ...] = (),
        simulator: LocalPrinter | None = None,
        restarted: bool = False,
    ) -> None:
        self.config = config
        self.warnings: list[str] = [*config.warnings, *extra_warnings]
        if simulator is not None:
            self.warnings.extend(simulator.config_warnings)
        self.bus = Bus()
        self.registry = Registry()
        # The persistent key-value store every component persists through: opened by its run
        # before the components start (see run), so no component's __init__ may touch it.
        self.database = Database(
            Path(config.database.database_path or config.data_dir / "database"),
            config.data_dir / "backup" / "database",
            is_printing=self._klippy_printing,
            request_restart=self.request_restart,
        )
        self.websockets = WebsocketManager(
            self.registry,
            self.bus,
            max_connections=config.server.max_websocket_connections,
        )
        self.restart_requested = False
        self._stop = trio.Event()
        self.simulator = simulator
        if simulator is not None:
            address = str(simulator.socket_path)
        elif config.server.klippy_uds_address:
            address = config.server.klippy_uds_address
        else:  # the address was removed by a restart: the simulator only starts with the process
            address = str(config.data_dir / "comms" / "klippy.sock")
            self.warnings.append(
                "[server] klippy_uds_address is not set, but the simulated printer only starts "
                f"with the process: restart trioprint for it (until then: {address})"
            )
        self.klippy = Klippy(
            self.bus, self.websockets, functools.partial(open_unix, address), address=address
        )
        self.printer = Printer(self.klippy)
        # klippy's other endpoints (bed_mesh/dump_mesh, ...), added when the link lists them
        self.klippy_endpoints = KlippyEndpoints(self.klippy, self.registry)
        self.extensions = Extensions(self.websockets, self.klippy)
        self.files = Files(config, self.bus, self.websockets)
        self.printer.gcode_file_exists = self.files.gcode_file_exists
        self.files.is_printing = printing_check(self._printed_file)
        self.klippy.set_internal_subscription(
            "print_state", {"print_stats": ["filename", "state"]}, lambda diff, t: None
        )
        # Authentication for every transport: loads its keys and users from the database in
        # its run, so it starts right after the database.
        self.auth = Authorization(config.authorization, self.database, self.bus, self.websockets)
        self.websockets.authenticator = self.auth
        self.metadata = MetadataStore(
            self.files, self.bus, self.websockets, config.data_dir, self.database
        )
        self.files.metadata_lookup = self.metadata.cached
        self.octoprint = OctoPrintApi(
            config, self.klippy, self.files, self.printer, warnings=self.warnings
        )
        self.history = History(
            self.klippy, self.bus, self.websockets, self.database, self.metadata, self.files
        )
        self.job_queue = JobQueueComponent(
            config.job_queue,
            self.klippy,
            self.printer.start_print,
            self.files,
            self.websockets,
            self.database,
            self.bus,
        )
        self.machine = Machine(self)
        # [mqtt]: the API, klippy's status and Home Assistant discovery over a broker
        mqtt_config, mqtt_warnings = load_mqtt_config(config)
        self.warnings.extend(mqtt_warnings)
        self.mqtt = (
            Mqtt(mqtt_config, self.registry, self.klippy, self.websockets)
            if mqtt_config is not None
            else None
        )
        # [power NAME] sections: machine.device_power.* (only when some are configured)
        power_sections = config.sections_with_prefix("power")
        self.power = (
            Power(
                power_sections,
                self.klippy,
                self.websockets,
                self.bus,
                is_printing=lambda: self._printed_file() is not None,
                service_action=machine_service_action(self.machine),
                available_services=lambda: list(self.machine.services),
                own_service=lambda: self.machine.own_unit,
                mqtt=self.mqtt,
                warnings=self.warnings,
            )
            if power_sections
            else None
        )
        if self.power is not None:
            self.job_queue.jobs_added_listeners.append(self.power.jobs_added)
        # [wled NAME] sections: machine.wled.* (only when some are configured)
        wled_sections = config.sections_with_prefix("wled")
        self.wled = (
            Wled(wled_sections, self.klippy, warnings=self.warnings) if wled_sections else None
        )
        # feeds fetched in the background; answers from what it has stored
        self.announcements = Announcements(
            config.announcements,
            self.database,
            self.websockets,
            config.data_dir,
            warnings=self.warnings,
        )
        # machine.update.*: only with an [update_manager] section
        self.update_manager: UpdateManager | None = None
        if "update_manager" in config.sections:
            from .components.update_manager import UpdateManager

            self.update_manager = UpdateManager(
                config,
                self.database,
                self.websockets,
                is_printing=self._klippy_printing,
                warnings=self.warnings,
            )
        # [webcam NAME] sections and the cameras stored in the database
        self.webcams = Webcams(
            config.sections_with_prefix("webcam"),
            self.database,
            self.websockets,
            config.data_dir,
            warnings=self.warnings,
        )
        # [sensor NAME] sections (server.sensors.*): only when configured, as Moonraker
        sensor_sections = config.sections_with_prefix("sensor")
        self.sensors = (
            Sensors(
                sensor_sections,
                self.websockets,
                self.history,
                sources={"mqtt": mqtt_source(self.mqtt)} if self.mqtt is not None else None,
                warnings=self.warnings,
            )
            if sensor_sections
            else None
        )
        # [notifier NAME] sections: job events sent through apprise, in the background
        notifier_sections = config.sections_with_prefix("notifier")
        self.notifiers = (
            Notifiers(notifier_sections, self.klippy, warnings=self.warnings)
            if notifier_sections
            else None
        )
        # [spoolman]: the active spool and its filament use, reported to Spoolman
        self.spoolman: Spoolman | None = None
        if "spoolman" in config.sections:
            try:
                self.spoolman = Spoolman(
                    config.section("spoolman"),
                    self.klippy,
                    self.database,
                    self.websockets,
                    self.history,
                )
            except SpoolmanError as exc:
                self.warnings.append(f"{exc}; Spoolman not loaded")
        # [event_hook NAME] sections: OctoPrint events run commands (their warnings shown too)
        self.event_hooks = EventHooks(config, self.bus, self.klippy)
        self.warnings.extend(self.event_hooks.warnings)
        self.octoprint_events = OctoPrintEvents(
            self.bus,
            self.klippy,
            self.websockets,
            gcodes_path=str(config.file_manager.gcodes_path or config.data_dir / "gcodes"),
            restarted=restarted,
        )
        # Started in this order (each one's run has begun before the next starts) and stopped
        # together; the database is not among them: it opens before them and closes after all
        # of them have ended, so a component may still write while it stops.
        self.components: list[Any] = [
            self.auth,  # loads keys and users from the database before anything is served
            ServerCore(self),
            self.machine,
            self.klippy,
            self.printer,
            DataStore(self.klippy),
            self.files,
            self.metadata,
            self.octoprint,
            self.history,
            self.job_queue,
            *([self.power] if self.power is not None else []),
            *([self.wled] if self.wled is not None else []),
            self.announcements,
            *([self.update_manager] if self.update_manager is not None else []),
            self.webcams,
            *([self.sensors] if self.sensors is not None else []),
            *([self.notifiers] if self.notifiers is not None else []),
            *([self.spoolman] if self.spoolman is not None else []),
            self.event_hooks,  # before the OctoPrint events, so that the hooks hear Startup
            self.octoprint_events,
            self.extensions,
            *([self.mqtt] if self.mqtt is not None else []),
        ]
        for component in [self.database, *self.components]:
            self.registry.add_component(component)
        self.frontend = frontend_for(config)
        if self.frontend is not None and (problem := self.frontend.problem()) is not None:
            self.warnings.append(problem)
        # in place: components keep the list to add to it; each names the file and line
        self.warnings[:] = [config.located(warning) for warning in self.warnings]
        self.http_app = create_http_app(
            self.registry,
            cors_domains=config.authorization.cors_domains,
            max_body_size=config.server.max_upload_size * 1024 * 1024,
            serve_file=functools.partial(serve_file, self.files),
            delete_file=self.files.remove_file,
            upload_file=functools.partial(
                handle_upload,
                self.files,
                start_print=self.printer.start_print,
                can_print=self._can_print,
                queue_job=(
                    self.job_queue.queue_upload if config.file_manager.queue_gcode_uploads else None
                ),
            ),
            octoprint_upload=self.octoprint.upload,
            octoprint_file=self.octoprint.file_info,
            authenticator=self.auth,
            frontend=self.frontend,
        )
        self.bound: list[tuple[str, int]] = []
        self._listening: tuple[HypercornConfig, Any] | None = None

    @property
    def klippy_connected(self) -> bool:
        return self.klippy.connected

    @property
    def klippy_state(self) -> str:
        return self.klippy.state

    def component_names(self) -> list[str]:
        sim = [self.simulator.name] if self.simulator is not None else []
        names = (c.name for c in [self.database, *self.components])
        return ["application", "websockets", *names, *sim]

    def registered_directories(self) -> list[str]:
        return self.files.registered_directories()

    def _can_print(self) -> bool:
        """Whether a print can start now: klippy is ready and prints nothing (not even paused)."""
        return self.klippy.state == "ready" and self._printed_file() is None

    def _klippy_printing(self) -> bool:
        return bool(self.klippy.cache.state.get("print_stats", {}).get("state") == "printing")

    def _printed_file(self) -> str | None:
        """The file klippy is printing or has paused (gcodes-relative), else None."""
        stats = self.klippy.cache.state.get("print_stats", {})
        if stats.get("state") in ("printing", "paused"):
            return str(stats.get("filename") or "") or None
        return None

    def stop(self) -> None:
        self._stop.set()

    def request_restart(self) -> None:
        self.restart_requested = True
        self._stop.set()

    def _hypercorn_config(self) -> HypercornConfig:
        hc = HypercornConfig()
        host = self.config.server.host
        hc.bind = [
            f"[{host}]:{self.config.server.port}"
            if ":" in host
            else f"{host}:{self.config.server.port}"
        ]
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")
        hc.graceful_timeout = HTTP_DRAIN_TIMEOUT
        hc.keep_alive_timeout = 75
        # hypercorn closes a keep-alive connection after 1000 requests by default; clients of
        # a printer host poll for hours on one connection, as Moonraker lets them.
        hc.keep_alive_max_requests = 2**31
        hc.websocket_ping_interval = None
        hc.include_server_header = False
        return hc

    async def run(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until stopped (``restart_requested`` then tells why)."""
        hc, sockets = self.listen()
        for warning in self.warnings:  # on stderr and in the log, as in server.info
            log.warning("%s", " ".join(warning.splitlines()))
        server_fixes.install()  # close frames for websocket protocol errors (a hypercorn fault)
        app = wrap_app(Router(self.http_app, self.websockets), hc.wsgi_max_body_size, "asgi")
        try:
            async with trio.open_nursery() as storage:
                await storage.start(self.database.run)
                await self._run_components(app, hc, sockets, task_status)
                storage.cancel_scope.cancel()
        finally:
            self.close_listeners()

    def listen(self) -> tuple[HypercornConfig, Any]:
        """Bind the HTTP port (once): a port in use fails before the data folder is touched."""
        if self._listening is None:
            hc = self._hypercorn_config()
            try:
                sockets = hc.create_sockets()
            except OSError as exc:
                server_fixes.close_failed_sockets(exc)
                raise StartupError(
                    f"cannot listen on {hc.bind[0]}: {exc.strerror or exc}"
                ) from None
            for sock in sockets.insecure_sockets:
                sock.listen(hc.backlog)
                addr = sock.getsockname()
                self.bound.append((addr[0], addr[1]))
            self._listening = (hc, sockets)
        return self._listening

    def close_listeners(self) -> None:
        if self._listening is not None:
            for sock in self._listening[1].insecure_sockets:
                sock.close()

    async def _run_components(
        self, app: Any, hc: HypercornConfig, sockets: Any, task_status: trio.TaskStatus[Any]
    ) -> None:
        http_stop = trio.Event()
        async with trio.open_nursery() as components:
            await components.start(self.websockets.run)
            for component in self.components:
                if hasattr(component, "run"):
                    await components.start(component.run)
            async with trio.open_nursery() as http:
                await http.start(_serve_http, app, hc, sockets, http_stop.wait)
                log.info(
                    "trioprint listening on %s",
                    ", ".join(f"http://{h}:{p}" for h, p in self.bound),
                )
                task_status.started(self.bound)
                await self._stop.wait()
                log.info("%s", "restarting" if self.restart_requested else "shutting down")
                if self.restart_requested:
                    self.websockets.close_all(CLOSE_RESTART, "server restarting")
                else:
                    self.websockets.close_all(CLOSE_GOING_AWAY, "server shutting down")
                http_stop.set()
                http.cancel_scope.deadline = trio.current_time() + HTTP_DRAIN_TIMEOUT + 1
            components.cancel_scope.cancel()


async def _serve_http(
    app: Any,
    hc: HypercornConfig,
    sockets: Any,
    shutdown_trigger: Callable[[], Any],
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await worker_serve(
            app, hc, sockets=sockets, shutdown_trigger=shutdown_trigger, task_status=task_status
        )
    finally:
        for sock in sockets.insecure_sockets:
            sock.close()


def make_simulator(
    config: Config,
    *,
    force: bool = False,
    speed: float | None = None,
    firmware: str | None = None,
) -> LocalPrinter | None:
    """The printer run in the process: the serial printer of ``[serial]``, else the simulated
    printer when no klippy is configured (or ``force``); else None."""
    gcodes = Path(config.file_manager.gcodes_path or config.data_dir / "gcodes")
    if "serial" in config.sections and not force:
        from .components.serial_printer import MarlinPrinter, load_serial_config, serial_warnings

        serial = load_serial_config(config)
        assert serial is not None
        printer = MarlinPrinter(config.data_dir / "comms" / SERIAL_SOCKET, gcodes, serial)
        printer.config_warnings = serial_warnings(config)
        return printer
    if not force and config.server.klippy_uds_address:
        return None
    if (firmware or config.simulator.firmware) == "marlin":
        from .components.serial_printer import SimulatedMarlinPrinter
        from .sim.marlin_pty import default_link

        return SimulatedMarlinPrinter(
            config.data_dir / "comms" / SIM_SOCKET,
            gcodes,
            speed=speed or config.simulator.speed,
            link=default_link(config.data_dir),
        )
    from .sim.config import ConfigError as SimConfigError
    from .sim.config import read_printer_cfg
    from .sim.machine import SimMachine
    from .sim.server import SimKlippy

    factory = None
    warnings: list[str] = []
    if config.simulator.printer_config:
        # the user's own machine: read (with its includes) and checked once, here, so that a
        # bad file is a one-line start-up error, never a failure inside the running simulator
        path = Path(config.simulator.printer_config).expanduser()
        if not path.is_absolute() and config.source is not None:
            path = config.source.parent / path  # as written in the config file: beside it
        try:
            text = read_printer_cfg(path)
            warnings = SimMachine(gcodes, printer_cfg=text).config_warnings
        except SimConfigError as exc:
            raise StartupError(f"[simulator] printer_config: {path}: {exc}") from None
        factory = functools.partial(_user_machine, text)
    sim = SimKlippy(
        config.data_dir / "comms" / SIM_SOCKET,
        gcodes,
        speed=speed or config.simulator.speed,
        machine_factory=factory,
        # klippy's log where a Klipper install has it: in the logs root, as klippy.log
        log_file=Path(config.file_manager.log_path or config.data_dir / "logs") / "klippy.log",
    )
    sim.config_warnings = tuple(f"[simulator] printer_config: {w}" for w in warnings)
    return sim


def _user_machine(printer_cfg: str, gcodes: Path, now: float) -> SimMachine:
    from .sim.machine import SimMachine

    return SimMachine(gcodes, now=now, printer_cfg=printer_cfg)


def frontend_for(config: Config) -> Frontend | None:
    """``[frontend] path`` (relative: to the config file's folder) as a :class:`Frontend`."""
    if not config.frontend.path:
        return None
    path = Path(config.frontend.path)
    if not path.is_absolute() and config.source is not None:
        path = config.source.parent / path
    return Frontend(path)


def read_config(options: Options) -> Config:
    path = options.config_file or default_config_path(options.data_dir)
    config = load_config(path, options.data_dir)
    config = config.with_overrides(host=options.host, port=options.port)
    load_mqtt_config(config)  # a bad [mqtt] section is a start-up (or restart) error
    if "serial" in config.sections:  # and so is a bad [serial] section
        from .components.serial_printer import load_serial_config

        load_serial_config(config)
    if options.frontend is not None:
        config = attrs.evolve(
            config, frontend=attrs.evolve(config.frontend, path=str(options.frontend))
        )
    return config


class Server:
    """The process: runs instances one after the other until stopped."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.instance: Instance | None = None
        self.serving: Instance | None = None
        self.instances_started = 0
        self._changed = trio.Event()
        self._stopping = False

    def _set_serving(self, instance: Instance | None) -> None:
        self.serving = instance
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_serving(self, *, other_than: Instance | None = None) -> Instance:
        """Wait until an instance (other than ``other_than``) is serving; return it."""
        while self.serving is None or self.serving is other_than:
            await self._changed.wait()
        return self.serving

    def stop(self) -> None:
        self._stopping = True
        if self.instance is not None:
            self.instance.stop()

    async def run(
        self, *, task_status: trio.TaskStatus[Instance] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = read_config(self.options)
        # The simulated printer is the machine, not part of the host: it lives as long as the
        # process, so a server.restart does not reset a print or a heater.
        simulator = make_simulator(
            config,
            force=self.options.sim,
            speed=self.options.sim_speed,
            firmware=self.options.sim_firmware,
        )
        instance = Instance(config, simulator=simulator)
        # the port first: a server that cannot listen creates no socket in the data folder
        instance.listen()
        try:
            await self._run_instances(instance, simulator, task_status)
        finally:
            instance.close_listeners()

    async def _run_instances(
        self,
        instance: Instance,
        simulator: LocalPrinter | None,
        task_status: trio.TaskStatus[Instance],
    ) -> None:
        extra: tuple[str, ...] = ()
        config = instance.config
        async with trio.open_nursery() as machine:
            if simulator is not None:
                await machine.start(simulator.run)
            while True:
                if self.instances_started > 0:
                    instance = Instance(
                        config, extra_warnings=extra, simulator=simulator, restarted=True
                    )
                self.instance = instance
                if self._stopping:
                    instance.stop()
                async with trio.open_nursery() as nursery:
                    await nursery.start(instance.run)
                    self.instances_started += 1
                    self._set_serving(instance)
                    task_status.started(instance)
                    task_status = trio.TASK_STATUS_IGNORED
                self._set_serving(None)
                if not instance.restart_requested or self._stopping:
                    break
                try:
                    config = read_config(self.options)
                    extra = ()
                except ConfigError as exc:
                    log.error("restart: %s; keeping the previous configuration", exc)
                    extra = (f"Configuration error, previous configuration kept: {exc}",)
            machine.cancel_scope.cancel()


class _Stoppable(Protocol):
    def stop(self) -> None: ...


async def watch_signals(server: _Stoppable, cancel: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for signum in signals:
            count += 1
            if count == 1:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                server.stop()
            else:
                log.warning("second signal: stopping at once")
                cancel.cancel()


async def main(options: Options) -> None:
    """The process entry point: the root nursery."""
    server = Server(options)
    clean = False
    async with trio.open_nursery() as root:
        root.start_soon(watch_signals, server, root.cancel_scope)
        await server.run()
        clean = True  # (not after a second signal: that cancels the run instead)
        root.cancel_scope.cancel()
    if clean:
        log.info("trioprint stopped")
