"""OctoPrint's REST API, the part slicers use: PrusaSlicer, Cura (OctoPrint plugin) and forks.

Enough of https://docs.octoprint.org/en/master/api/ for a slicer to find the printer, upload
to it and start the print, and for Cura to show temperatures and the job: version, server,
login/current user, settings, ``POST /api/files/local`` and the file resource it points at
(``GET /api/files/local/<path>``), job, printer state, G-code commands and
the printer profile. The answers are OctoPrint's bodies, not wrapped in ``{"result": ...}``
(the HTTP transport answers every ``/api/...`` path that way). State comes from the printer
link's status cache; the upload is the file manager's own (``uploads.store_upload``).

Authentication is the HTTP transport's, as for every route: OctoPrint clients send their key
in ``X-Api-Key``, which is what that check reads.
"""

from __future__ import annotations

import logging
import os
import stat
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import trio

from .._version import __version__
from ..config import Config
from ..domain.paths import clean_relative
from ..errors import ApiError
from ..registry import Call, NoParams, Transport, endpoint
from .files.manager import Files
from .klippy import Klippy
from .printer import Printer
from .uploads import FileUploaded, store_upload

log = logging.getLogger(__name__)

#: The OctoPrint version trioprint answers as (the one its transcripts were recorded with).
OCTOPRINT_VERSION = "1.11.8"
#: The API version OctoPrint has reported since 1.x; PrusaSlicer only checks that it is there.
API_VERSION = "0.1"
#: The form fields of OctoPrint's upload (``root`` and ``checksum`` are not among them).
UPLOAD_FIELDS = ("path", "select", "print")
#: OctoPrint's true values for form flags.
TRUE_VALUES = frozenset({"true", "yes", "y", "1"})
#: print_stats fields the job and state answers need.
PRINT_STATS_FIELDS = ["state", "filename", "print_duration", "filament_used"]
SDCARD_FIELDS = ["progress", "file_position", "file_size"]
HEATER_FIELDS = ["temperature", "target"]

_HTTP = Transport.HTTP


def _flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUE_VALUES


@attrs.frozen
class Options:
    """``[octoprint_compat]``: the webcam block of /api/settings and the UFP advertisement."""

    enable_ufp: bool = False
    flip_h: bool = False
    flip_v: bool = False
    rotate_90: bool = False
    stream_url: str = "/webcam/?action=stream"
    webcam_enabled: bool = True

    @classmethod
    def from_section(cls, section: Mapping[str, str], warnings: list[str]) -> Options:
        """Read the section's options; a bad or unknown one is a warning, its default kept."""
        values: dict[str, Any] = {}
        fields = attrs.fields_dict(cls)
        for option, raw in section.items():
            field = fields.get(option)
            if field is None:
                warnings.append(f"[octoprint_compat] {option}: unknown option, ignored")
                continue
            if field.type in (bool, "bool"):
                lowered = raw.strip().lower()
                if lowered not in ("true", "false"):
                    warnings.append(
                        f"[octoprint_compat] {option}: expected true or false, got {raw!r};"
                        f" using {field.default}"
                    )
                    continue
                values[option] = lowered == "true"
            else:
                values[option] = raw.strip()
        return cls(**values)


@attrs.frozen
class CommandParams:
    """``POST /api/printer/command``: ``commands`` (a list) or ``command`` (one line)."""

    commands: list[str] = attrs.field(factory=list)
    command: str | None = None

    @classmethod
    def from_args(cls, raw: Mapping[str, Any]) -> CommandParams:
        commands = raw.get("commands", [])
        command = raw.get("command")
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise ApiError("invalid argument 'commands': expected a list of strings", 400)
        if command is not None and not isinstance(command, str):
            raise ApiError("invalid argument 'command': expected string", 400)
        return cls(list(commands), command)


def printer_state(klippy_state: str, print_state: str | None) -> str:
    """OctoPrint's state text from klippy's state and print_stats' state."""
    if klippy_state in ("disconnected", "startup"):
        return "Offline"
    if klippy_state != "ready":
        return "Error"
    return {"printing": "Printing", "paused": "Paused"}.get(print_state or "", "Operational")


def state_flags(state: str) -> dict[str, bool]:
    """OctoPrint's ``state.flags`` for a state text (every flag OctoPrint 1.11 sends)."""
    return {
        "operational": state in ("Operational", "Printing", "Paused"),
        "printing": state == "Printing",
        "paused": state == "Paused",
        "pausing": False,
        "resuming": False,
        "cancelling": False,
        "finishing": False,
        "error": state == "Error",
        "ready": state == "Operational",
        "closedOrError": state in ("Offline", "Error"),
        "sdReady": False,
    }


def temperatures(status: Mapping[str, Any], heaters: list[str]) -> dict[str, Any]:
    """``bed``/``toolN`` (and ``chamber``) entries from the heaters in the status cache."""
    temps: dict[str, Any] = {}
    for heater in heaters:
        data = status.get(heater)
        if not isinstance(data, Mapping):
            continue
        if heater.startswith("extruder"):
            suffix = heater[len("extruder") :]
            name = f"tool{int(suffix) if suffix.isdigit() else 0}"
        elif heater == "heater_bed":
            name = "bed"
        elif heater.split()[-1] == "chamber":
            name = "chamber"
        else:
            continue
        temps[name] = {
            "actual": round(float(data.get("temperature") or 0.0), 2),
            "target": float(data.get("target") or 0.0),
            "offset": 0,
        }
    return temps


class OctoPrintApi:
    """Moonraker's ``octoprint_compat``: OctoPrint's REST API for slicers."""

    name = "octoprint_compat"

    def __init__(
        self,
        config: Config,
        klippy: Klippy,
        files: Files,
        printer: Printer,
        *,
        warnings: list[str] | None = None,
    ) -> None:
        self._klippy = klippy
        self._files = files
        self._printer = printer
        self.options = Options.from_section(
            config.section("octoprint_compat"), warnings if warnings is not None else []
        )
        self.heaters: list[str] = []
        klippy.set_internal_subscription("octoprint_api", self._spec(), _ignore)
        klippy.on_ready(self._configure)

    def _spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "print_stats": PRINT_STATS_FIELDS,
            "virtual_sdcard": SDCARD_FIELDS,
        }
        spec.update(dict.fromkeys(self.heaters, HEATER_FIELDS))
        return spec

    async def _configure(self) -> None:
        """Each time klippy is ready: which heaters exist, then subscribe to them."""
        self.heaters = [str(h) for h in self._klippy.heaters.get("available_heaters", [])]
        self._klippy.set_internal_subscription("octoprint_api", self._spec(), _ignore)
        await self._klippy.resubscribe()

    @property
    def _status(self) -> Mapping[str, Any]:
        return self._klippy.cache.state

    def state(self) -> str:
        stats = self._status.get("print_stats", {})
        return printer_state(self._klippy.state, stats.get("state"))

    # -- version, server, user, settings --------------------------------------------------

    @endpoint("/api/version", "GET", transports=_HTTP)
    async def version(self, call: Call[NoParams]) -> dict[str, Any]:
        return {
            "api": API_VERSION,
            "server": OCTOPRINT_VERSION,
            "text": f"OctoPrint (trioprint {__version__})",
        }

    @endpoint("/api/server", "GET", transports=_HTTP)
    async def server(self, call: Call[NoParams]) -> dict[str, Any]:
        return {
            "version": OCTOPRINT_VERSION,
            "safemode": None if self._klippy.state == "ready" else "settings",
        }

    @endpoint("/api/login", "POST", transports=_HTTP)
    async def login(self, call: Call[NoParams]) -> dict[str, Any]:
        return _api_user()

    @endpoint("/api/currentuser", "GET", transports=_HTTP)
    async def current_user(self, call: Call[NoParams]) -> dict[str, Any]:
        return _api_user()

    @endpoint("/api/settings", "GET", transports=_HTTP)
    async def settings(self, call: Call[NoParams]) -> dict[str, Any]:
        opts = self.options
        plugins: dict[str, Any] = {}
        if opts.enable_ufp:
            plugins["UltimakerFormatPackage"] = {
                "align_inline_thumbnail": False,
                "inline_thumbnail": False,
                "inline_thumbnail_align_value": "left",
                "inline_thumbnail_scale_value": "50",
                "installed": True,
                "installed_version": "0.2.2",
                "scale_inline_thumbnail": False,
                "state_panel_thumbnail": True,
            }
        return {
            "plugins": plugins,
            "feature": {"sdSupport": False, "temperatureGraph": False},
            "webcam": {
                "flipH": opts.flip_h,
                "flipV": opts.flip_v,
                "rotate90": opts.rotate_90,
                "streamUrl": opts.stream_url,
                "webcamEnabled": opts.webcam_enabled,
            },
        }

    # -- job and printer --------------------------------------------------------------------

    @endpoint("/api/job", "GET", transports=_HTTP)
    async def job(self, call: Call[NoParams]) -> dict[str, Any]:
        stats = self._status.get("print_stats", {})
        sdcard = self._status.get("virtual_sdcard", {})
        state = self.state()
        filename = str(stats.get("filename") or "") or None
        file: dict[str, Any] = {
            "name": None,
            "path": None,
            "display": None,
            "origin": None,
            "size": None,
            "date": None,
        }
        if filename is not None:
            size, date = await self._stat(filename)
            file = {
                "name": os.path.basename(filename),
                "path": filename,
                "display": os.path.basename(filename),
                "origin": "local",
                "size": size,
                "date": date,
            }
        meta = await self._metadata(filename) if filename is not None else {}
        estimated = meta.get("estimated_time")
        filament_mm = meta.get("filament_total")
        completion = filepos = print_time = time_left = None
        left_origin = None
        if filename is not None and state in ("Printing", "Paused"):
            progress = float(sdcard.get("progress") or 0.0)
            completion = progress * 100.0
            filepos = int(sdcard.get("file_position") or 0)
            duration = float(stats.get("print_duration") or 0.0)
            print_time = int(duration)
            if progress > 0:
                time_left, left_origin = int(duration / progress - duration), "linear"
        return {
            "job": {
                "file": file,
                "estimatedPrintTime": estimated,
                "averagePrintTime": None,
                "lastPrintTime": None,
                "filament": (
                    {"tool0": {"length": filament_mm, "volume": None}}
                    if filament_mm is not None
                    else None
                ),
                "user": None,
            },
            "progress": {
                "completion": completion,
                "filepos": filepos,
                "printTime": print_time,
                "printTimeLeft": time_left,
                "printTimeLeftOrigin": left_origin,
            },
            "state": state,
        }

    async def _metadata(self, filename: str) -> Mapping[str, Any]:
        """The file's cached slicer metadata (nothing is extracted here), or nothing."""
        lookup = self._files.metadata_lookup
        if lookup is None:
            return {}
        return (await lookup([filename])).get(filename, {})

    async def _stat(self, filename: str) -> tuple[int | None, int | None]:
        roots = await self._files.roots()
        gcodes = roots.get("gcodes")
        if gcodes is None:
            return None, None
        full = os.path.join(gcodes.real, filename)
        try:
            st = await trio.to_thread.run_sync(os.stat, full)
        except OSError:
            return None, None
        return st.st_size, int(st.st_mtime)

    @endpoint("/api/printer", "GET", transports=_HTTP)
    async def printer(self, call: Call[NoParams]) -> dict[str, Any]:
        state = self.state()
        return {
            "temperature": temperatures(self._status, self.heaters),
            "sd": {"ready": False},
            "state": {"text": state, "flags": state_flags(state), "error": ""},
        }

    @endpoint("/api/printer/command", "POST", params=CommandParams, transports=_HTTP)
    async def command(self, call: Call[CommandParams]) -> dict[str, Any]:
        lines = list(call.params.commands)
        if call.params.command is not None:
            lines.insert(0, call.params.command)
        if not lines:
            raise ApiError("no 'commands' (or 'command') to send", 400)
        for line in lines:
            if any(c in line for c in "\n\r\x00"):
                raise ApiError(f"invalid command {line!r}: one G-code line each", 400)
        for line in lines:
            # OctoPrint queues commands and answers at once; a failing one is logged.
            try:
                await self._klippy.run_gcode(line)
            except ApiError as exc:
                log.info("G-code %r from the OctoPrint API failed: %s", line, exc.message)
                if exc.status == 503:
                    raise ApiError("Printer is not operational", 409) from None
        return {}

    @endpoint("/api/printerprofiles", "GET", transports=_HTTP)
    async def printer_profiles(self, call: Call[NoParams]) -> dict[str, Any]:
        axis = {"speed": 6000.0, "inverted": False}
        return {
            "profiles": {
                "_default": {
                    "id": "_default",
                    "name": "Default",
                    "color": "default",
                    "model": "Default",
                    "default": True,
                    "current": True,
                    "heatedBed": "heater_bed" in self.heaters,
                    "heatedChamber": any(h.split()[-1] == "chamber" for h in self.heaters),
                    "extruder": {
                        "count": max(1, sum(h.startswith("extruder") for h in self.heaters))
                    },
                    "axes": {
                        "x": dict(axis),
                        "y": dict(axis),
                        "z": dict(axis),
                        "e": {"speed": 300.0, "inverted": False},
                    },
                }
            }
        }

    # -- the upload (a streamed route of the HTTP transport) ----------------------------------

    async def upload(
        self, body: AsyncIterator[bytes], content_type: str, base_url: str
    ) -> dict[str, Any]:
        """``POST /api/files/local``: OctoPrint's 201 body (``refs.resource`` is the Location).

        The file goes through the file manager's upload (same path checks, spool, atomic
        rename, ``notify_filelist_changed``); ``print`` (with or without ``select``) starts it.
        """
        stored = await store_upload(self._files, body, content_type, accepted=UPLOAD_FIELDS)
        want_select = _flag(stored.fields.get("select"))
        want_print = _flag(stored.fields.get("print"))
        ready = self.state() == "Operational"
        # announced before the print starts, so that the print's events come after it
        self._files.publish(
            FileUploaded(
                stored.root,
                stored.relative,
                want_select,
                want_print,
                (want_select or want_print) and ready,
                want_print and ready,
            )
        )
        started = False
        if want_print and ready:
            try:
                await self._printer.start_print(stored.relative)
                started = True
            except ApiError as exc:
                log.info("upload %s: print not started: %s", stored.relative, exc.message)
        return {
            "done": True,
            # print implies select, as in OctoPrint: a started print is a selected file
            "effectiveSelect": (want_select and ready) or started,
            "effectivePrint": started,
            "files": {"local": self._file_refs(stored.relative, base_url)},
        }

    @staticmethod
    def _file_refs(relative: str, base_url: str) -> dict[str, Any]:
        base = base_url.rstrip("/")
        quoted = urllib.parse.quote(relative)
        return {
            "name": os.path.basename(relative),
            "path": relative,
            "origin": "local",
            "refs": {
                "resource": f"{base}/api/files/local/{quoted}",
                "download": f"{base}/server/files/gcodes/{quoted}",
            },
        }

    async def file_info(self, path: str, base_url: str) -> dict[str, Any]:
        """``GET /api/files/local/<path>``: OctoPrint's file information of a G-code file in
        the gcodes root (``gcodeAnalysis`` when its metadata is known); 404 for a missing one."""
        full = await self._files.locate(f"gcodes/{path}")  # checked: clean_relative is safe
        relative = str(clean_relative(path))
        try:
            st = await trio.to_thread.run_sync(os.stat, full)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise ApiError(f"File not found: {path}", 404)
        info = self._file_refs(relative, base_url)
        info.update(
            {
                "display": info["name"],
                "type": "machinecode",
                "typePath": ["machinecode", "gcode"],
                "size": st.st_size,
                "date": int(st.st_mtime),
            }
        )
        meta = await self._metadata(relative)
        if meta.get("size") not in (None, st.st_size):
            meta = {}  # metadata of an earlier version of the file
        analysis: dict[str, Any] = {}
        if meta.get("estimated_time") is not None:
            analysis["estimatedPrintTime"] = meta["estimated_time"]
        if meta.get("filament_total") is not None:
            analysis["filament"] = {"tool0": {"length": meta["filament_total"], "volume": None}}
        if analysis:
            info["gcodeAnalysis"] = analysis
        return info


def _api_user() -> dict[str, Any]:
    """The one user an API key stands for (OctoPrint's answer for a key login)."""
    return {
        "_is_external_client": False,
        "_login_mechanism": "apikey",
        "name": "_api",
        "active": True,
        "user": True,
        "admin": True,
        "apikey": None,
        "permissions": [],
        "groups": ["admins", "users"],
    }


def _ignore(diff: Mapping[str, Any], eventtime: float) -> None:
    """The status arrives in the link's cache; nothing else to do with a diff."""
