"""trioprint's own state changes -> OctoPrint's events, in the order OctoPrint fires them.

:class:`OctoPrintMapper` is a state machine fed what happens (klippy's state, status diffs of
``print_stats``/``virtual_sdcard``/``gcode_move``/``toolhead``, G-code scripts sent through the
API, file manager changes); each call returns the OctoPrint events that follow from it, in
order. The orders follow OctoPrint 1.11.8 (recorded printing on its virtual printer):

* connect: ``Connecting``, state ``OPEN_SERIAL``, ``CONNECTING``; once klippy is ready
  ``OPERATIONAL``, ``Connected``, ``FirmwareData``, ``UpdatedFiles``
* print: ``FileSelected``, ``PrintJobSelected``, state ``STARTING``, ``PrintStarted``,
  ``ChartMarked`` (print), state ``PRINTING``
* pause: state ``PAUSING``, ``PrintPaused``, ``ChartMarked``, ``PositionUpdate``, ``PAUSED``
* resume: state ``RESUMING``, ``PrintResumed``, ``ChartMarked``, state ``PRINTING``
* done: state ``FINISHING``, ``ChartMarked``, ``PrintDone``, ``MetadataStatisticsUpdated``,
  state ``OPERATIONAL``
* cancel: ``PrintCancelling``, state ``CANCELLING``, ``PrintCancelled``, ``ChartMarked``,
  ``MetadataStatisticsUpdated``, ``PrintFailed`` (reason ``cancelled``), ``OPERATIONAL``
* files: ``FileAdded`` + ``UpdatedFiles`` (+ ``Upload``), ``FileDeselected`` (the selected
  file) + ``FileRemoved`` + ``UpdatedFiles``, folders alike; a move is a remove then an add

Klippy prints from its virtual SD card, so G-code triggered events (``Home``, ``Dwelling``, ...)
fire for scripts sent through the API only, as OctoPrint's do not fire for SD prints.
``ZChange`` follows klippy's commanded Z (``gcode_move.gcode_position``), in prints too.

Pure: no I/O, no Trio.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import octoprint_events as ev
from .events import OctoPrintEvent
from .stores import Ring

#: What the mapper needs from klippy's status (an internal subscription of the status fan-out).
STATUS_SPEC: dict[str, list[str]] = {
    "print_stats": ["state", "filename", "total_duration", "print_duration", "message"],
    "virtual_sdcard": ["file_position", "progress", "file_size"],
    "gcode_move": ["gcode_position", "speed"],
    "toolhead": ["position", "extruder"],
}

#: G-codes sent through the API that fire an event of their own (OctoPrint's ``gcodeToEvent``).
GCODE_EVENTS: dict[str, type[OctoPrintEvent]] = {
    "G28": ev.Home,
    "G4": ev.Dwell,
    "M0": ev.Waiting,
    "M1": ev.Waiting,
    "M226": ev.Waiting,
    "M245": ev.Cooling,
    "M240": ev.Conveyor,
    "M40": ev.Eject,
    "M300": ev.Alert,
    "M112": ev.EStop,
    "M80": ev.PowerOn,
    "M81": ev.PowerOff,
}

_TOOL = re.compile(r"T(\d+)$")
#: klippy's shutdown messages of an emergency stop (``M112``, ``printer.emergency_stop``).
_ESTOP_MESSAGES = ("M112", "webhooks request")
_ACTIVE = ("printing", "paused")


def _command(line: str) -> str:
    """The command word of one G-code line, upper case (``""`` for blank or comment)."""
    line = line.split(";", 1)[0].strip()
    if not line:
        return ""
    word = line.split(None, 1)[0].upper()
    # G-code numbers may carry leading zeros ("G04", "M01")
    match = re.fullmatch(r"([GM])0*(\d+)", word)
    return f"{match.group(1)}{match.group(2)}" if match else word


def _tool_index(extruder: Any) -> int | None:
    if not isinstance(extruder, str) or not extruder.startswith("extruder"):
        return None
    rest = extruder[len("extruder") :]
    return int(rest) if rest.isdigit() else 0 if not rest else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class OctoPrintMapper:
    """OctoPrint's view of trioprint: feed it what happens, emit what it returns."""

    def __init__(self, *, port: str = "", gcodes_path: str = "") -> None:
        self.port = port
        self.gcodes_path = gcodes_path.rstrip("/")
        #: OctoPrint's printer state id
        self.state_id = "OFFLINE"
        self.klippy_state = "disconnected"
        self._status: dict[str, dict[str, Any]] = {}
        self._print_state: str | None = None  # None until the first status after a connect
        self._job: str | None = None  # the selected file (gcodes-relative)
        self._z: float | None = None
        self._tool: int | None = None
        self._announced: set[str] = set()  # PAUSING / RESUMING / CANCELLING already sent
        self._estopped = False

    # -- helpers -----------------------------------------------------------------------------

    def _state(self, state_id: str, out: list[OctoPrintEvent]) -> None:
        if state_id != self.state_id:
            self.state_id = state_id
            out.append(ev.PrinterStateChanged(state_id))

    def _field(self, obj: str, key: str) -> Any:
        return self._status.get(obj, {}).get(key)

    def _job_args(self, path: str) -> dict[str, Any]:
        full = f"{self.gcodes_path}/{path}" if self.gcodes_path else ""
        return {"path": path, "full_path": full}

    def _size(self) -> int | None:
        size = self._field("virtual_sdcard", "file_size")
        return size if isinstance(size, int) and size > 0 else None

    def _position(self) -> ev.Position:
        pos = self._field("gcode_move", "gcode_position")
        if not isinstance(pos, list | tuple) or len(pos) < 4:
            pos = [None] * 4
        return ev.Position(
            x=_float(pos[0]),
            y=_float(pos[1]),
            z=_float(pos[2]),
            e=_float(pos[3]),
            t=self._tool,
            f=_float(self._field("gcode_move", "speed")),
        )

    def _progress(self) -> dict[str, Any]:
        position = self._field("virtual_sdcard", "file_position")
        progress = _float(self._field("virtual_sdcard", "progress"))
        return {
            "fileposition": position if isinstance(position, int) else None,
            "progress": None if progress is None else int(progress * 100),
        }

    def _elapsed(self) -> float:
        return _float(self._field("print_stats", "total_duration")) or 0.0

    # -- klippy's state ----------------------------------------------------------------------

    def klippy(
        self, state: str, message: str = "", info: Mapping[str, Any] | None = None
    ) -> list[OctoPrintEvent]:
        """Klippy's state changed (``startup``, ``ready``, ``shutdown``, ``error``,
        ``disconnected``); ``info`` is klippy's ``info`` result once connected."""
        out: list[OctoPrintEvent] = []
        previous, self.klippy_state = self.klippy_state, state
        if state == previous:
            return out
        if state == "startup":
            if previous == "disconnected":
                out.append(ev.Connecting())
                self._state("OPEN_SERIAL", out)
            self._state("CONNECTING", out)
        elif state == "ready":
            self._estopped = False
            self._state(
                {"printing": "PRINTING", "paused": "PAUSED"}.get(
                    self._print_state or "", "OPERATIONAL"
                ),
                out,
            )
            out.append(ev.Connected(port=self.port))
            version = str((info or {}).get("software_version", ""))
            out.append(
                ev.FirmwareData(
                    name="Klipper",
                    data={"FIRMWARE_NAME": "Klipper", "FIRMWARE_VERSION": version},
                )
            )
            out.append(ev.UpdatedFiles())
        elif state in ("shutdown", "error"):
            if any(m in message for m in _ESTOP_MESSAGES) and not self._estopped:
                self._estopped = True
                out.append(ev.EStop())
            self._fail_job("error", out)
            out.append(ev.Error(message or f"klippy {state}"))
            self._state("ERROR", out)
        elif state == "disconnected":
            self._fail_job("error", out)
            out.append(ev.Disconnected())
            self._state("OFFLINE", out)
            self._print_state = None
            self._status.clear()
            self._z = None
            self._estopped = False
        return out

    # -- status ------------------------------------------------------------------------------

    def status(self, diff: Mapping[str, Mapping[str, Any]]) -> list[OctoPrintEvent]:
        """A diff of klippy's status (the objects of :data:`STATUS_SPEC`)."""
        out: list[OctoPrintEvent] = []
        for obj, fields in diff.items():
            if isinstance(fields, Mapping):
                self._status.setdefault(obj, {}).update(fields)
        if "toolhead" in diff and "extruder" in diff["toolhead"]:
            tool = _tool_index(diff["toolhead"]["extruder"])
            if tool is not None:
                self._tool = tool
        state = self._field("print_stats", "state")
        if isinstance(state, str) and state != self._print_state:
            if self._print_state is None:
                self._adopt(state)
            else:
                self._print_transition(self._print_state, state, out)
        pos = self._field("gcode_move", "gcode_position")
        if isinstance(pos, list | tuple) and len(pos) >= 3 and _float(pos[2]) is not None:
            z = round(float(pos[2]), 6)
            if self._z is None:  # the first Z after a connect is where it is, not a change
                self._z = z
            elif z != self._z:
                out.append(ev.ZChange(new=z, old=self._z))
                self._z = z
        return out

    def _adopt(self, state: str) -> None:
        """The first print state after connecting: where klippy is, without events."""
        self._print_state = state
        filename = self._field("print_stats", "filename")
        if state in (*_ACTIVE, "complete", "cancelled", "error") and filename:
            self._job = str(filename)
        if self.klippy_state == "ready":
            # (the state is set when klippy's ready arrives otherwise)
            self.state_id = {"printing": "PRINTING", "paused": "PAUSED"}.get(state, self.state_id)

    def _print_transition(self, old: str, new: str, out: list[OctoPrintEvent]) -> None:
        self._print_state = new
        filename = str(self._field("print_stats", "filename") or "")
        if new == "printing" and old == "paused":
            path = self._job or filename
            if "RESUMING" not in self._announced:
                self._state("RESUMING", out)
            self._announced.clear()
            out.append(ev.PrintResumed(size=self._size(), **self._job_args(path)))
            out.append(ev.ChartMarked("resume", "Resume"))
            self._state("PRINTING", out)
        elif new == "printing":
            self._announced.clear()
            self._job = filename
            args = self._job_args(filename)
            out.append(ev.FileSelected(**args))
            out.append(ev.PrintJobSelected(**args))
            self._state("STARTING", out)
            out.append(ev.PrintStarted(size=self._size(), **args))
            out.append(ev.ChartMarked("print", "Start"))
            self._state("PRINTING", out)
        elif new == "paused" and old == "printing":
            path = self._job or filename
            if "PAUSING" not in self._announced:
                self._state("PAUSING", out)
            self._announced.clear()
            position = self._position()
            out.append(
                ev.PrintPaused(
                    size=self._size(),
                    position=position,
                    **self._progress(),
                    **self._job_args(path),
                )
            )
            out.append(ev.ChartMarked("pause", "Pause"))
            out.append(ev.PositionUpdate(reason="pause", **_position_fields(position)))
            self._state("PAUSED", out)
        elif new == "complete" and old in _ACTIVE:
            path = self._job or filename
            self._state("FINISHING", out)
            out.append(ev.ChartMarked("done", "Done"))
            out.append(
                ev.PrintDone(size=self._size(), time=self._elapsed(), **self._job_args(path))
            )
            out.append(ev.MetadataStatisticsUpdated(path))
            self._announced.clear()
            self._state("OPERATIONAL", out)
        elif new == "cancelled" and old in _ACTIVE:
            path = self._job or filename
            if "CANCELLING" not in self._announced:
                out.append(ev.PrintCancelling(size=self._size(), **self._job_args(path)))
                self._state("CANCELLING", out)
            self._announced.clear()
            common = {
                "size": self._size(),
                "position": self._position(),
                "time": self._elapsed(),
                **self._progress(),
                **self._job_args(path),
            }
            out.append(ev.PrintCancelled(**common))
            out.append(ev.ChartMarked("cancel", "Cancel"))
            out.append(ev.MetadataStatisticsUpdated(path))
            out.append(ev.PrintFailed(reason="cancelled", **common))
            self._state("OPERATIONAL", out)
        elif new == "error" and old in _ACTIVE:
            self._print_state = old  # _fail_job checks the active state
            self._fail_job("error", out)
            self._print_state = new
            if self.klippy_state == "ready":
                self._state("OPERATIONAL", out)
        elif new == "standby" and self._job is not None:
            if old in _ACTIVE:  # reset under a print (klippy says neither done nor cancelled)
                self._print_state = old
                self._fail_job("error", out)
                self._print_state = new
                if self.klippy_state == "ready":
                    self._state("OPERATIONAL", out)
            self._job = None
            out.append(ev.FileDeselected())

    def _fail_job(self, reason: str, out: list[OctoPrintEvent]) -> None:
        """A print that ends without klippy saying how (a shutdown, a lost link)."""
        if self._print_state not in _ACTIVE or self._job is None:
            return
        path = self._job
        out.append(
            ev.PrintFailed(
                size=self._size(),
                position=self._position(),
                time=self._elapsed(),
                reason=reason,
                **self._progress(),
                **self._job_args(path),
            )
        )
        out.append(ev.MetadataStatisticsUpdated(path))
        self._print_state = "error"
        self._announced.clear()

    # -- G-code sent through the API -----------------------------------------------------------

    def command(self, script: str) -> list[OctoPrintEvent]:
        """A G-code script sent to klippy through the API (one event per triggering line)."""
        out: list[OctoPrintEvent] = []
        for line in script.splitlines():
            word = _command(line)
            if not word:
                continue
            cls = GCODE_EVENTS.get(word)
            if cls is not None:
                if cls is ev.EStop:
                    if self._estopped:
                        continue
                    self._estopped = True
                out.append(cls())
                continue
            tool = _TOOL.match(word)
            if tool:
                new = int(tool.group(1))
                if new != self._tool:
                    out.append(ev.ToolChange(old=self._tool, new=new))
                    self._tool = new
            elif word == "M114":
                out.append(ev.PositionUpdate(**_position_fields(self._position())))
            elif word in ("PAUSE", "RESUME", "CANCEL_PRINT"):
                self._announce(word, out)
        return out

    def _announce(self, word: str, out: list[OctoPrintEvent]) -> None:
        """A pause, resume or cancel asked for: its in-between state, before klippy gets there."""
        if word == "PAUSE" and self._print_state == "printing":
            self._announced.add("PAUSING")
            self._state("PAUSING", out)
        elif word == "RESUME" and self._print_state == "paused":
            self._announced.add("RESUMING")
            self._state("RESUMING", out)
        elif word == "CANCEL_PRINT" and self._print_state in _ACTIVE and self._job:
            self._announced.add("CANCELLING")
            out.append(ev.PrintCancelling(size=self._size(), **self._job_args(self._job)))
            self._state("CANCELLING", out)

    # -- files -----------------------------------------------------------------------------

    def uploaded(
        self,
        root: str,
        path: str,
        *,
        select: bool = False,
        print_: bool = False,
        effective_select: bool = False,
        effective_print: bool = False,
    ) -> list[OctoPrintEvent]:
        """A file came in through an upload endpoint (after its ``create_file``): ``Upload``.

        Only uploads fire it, as in OctoPrint: not a copy, an archive or another program's file.
        """
        if root != "gcodes":
            return []
        return [
            ev.Upload(
                _name(path),
                path,
                select=select,
                print=print_,
                effective_select=effective_select,
                effective_print=effective_print,
            )
        ]

    def file_changed(
        self,
        action: str,
        root: str,
        path: str,
        source_root: str | None = None,
        source_path: str | None = None,
    ) -> list[OctoPrintEvent]:
        """A change of the file manager (Moonraker's ``notify_filelist_changed`` actions).

        Only the ``gcodes`` root is OctoPrint's ``local`` storage; other roots fire nothing.
        """
        out: list[OctoPrintEvent] = []
        here = root == "gcodes"
        there = source_root == "gcodes" and source_path is not None
        if action in ("create_file", "modify_file") and here:
            out += [ev.FileAdded(ev.LOCAL, path), ev.UpdatedFiles()]
        elif action == "delete_file" and here:
            self._deselect(path, out)
            out += [ev.FileRemoved(ev.LOCAL, path), ev.UpdatedFiles()]
        elif action == "create_dir" and here:
            out += [ev.FolderAdded(ev.LOCAL, path), ev.UpdatedFiles()]
        elif action == "delete_dir" and here:
            self._deselect(path, out, folder=True)
            out += [ev.FolderRemoved(ev.LOCAL, path), ev.UpdatedFiles()]
        elif action in ("move_file", "move_dir"):
            removed: type[ev.FileRemoved | ev.FolderRemoved] = (
                ev.FileRemoved if action == "move_file" else ev.FolderRemoved
            )
            added: type[ev.FileAdded | ev.FolderAdded] = (
                ev.FileAdded if action == "move_file" else ev.FolderAdded
            )
            if there:
                assert source_path is not None
                self._deselect(source_path, out, folder=action == "move_dir")
                out.append(removed(ev.LOCAL, source_path))
            if here:
                out.append(added(ev.LOCAL, path))
            if here or there:
                out.append(ev.UpdatedFiles())
        return out

    def _deselect(self, path: str, out: list[OctoPrintEvent], *, folder: bool = False) -> None:
        job = self._job
        if job is None or self._print_state in _ACTIVE:
            return
        if job == path or (folder and job.startswith(path.rstrip("/") + "/")):
            self._job = None
            out.append(ev.FileDeselected())


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _position_fields(position: ev.Position) -> dict[str, Any]:
    return {
        "x": position.x,
        "y": position.y,
        "z": position.z,
        "e": position.e,
        "t": position.t,
        "f": position.f,
    }


class EventLog(Ring):
    """The most recent events, oldest first, each ``{"event", "payload", "time"}``."""

    def __init__(self, maxlen: int = 500) -> None:
        super().__init__(maxlen)

    def add(self, event: OctoPrintEvent, time: float) -> dict[str, Any]:
        entry = {"event": event.NAME, "payload": event.payload(), "time": time}
        self._entries.append(entry)
        return entry

    def get(self, count: int | None = None, names: frozenset[str] = frozenset()) -> list[Any]:
        """The newest ``count`` entries (all if None) of ``names`` (all if empty), oldest first."""
        entries = [e for e in self._entries if not names or e["event"] in names]
        if count is not None:
            entries = entries[-count:] if count > 0 else []
        return [dict(e) for e in entries]
