"""OctoPrint's typed events: one frozen attrs class per event, named and shaped as OctoPrint's.

Every event of OctoPrint's event documentation and of its websocket event list is here, as a
subclass of :class:`trioprint.domain.events.OctoPrintEvent`: ``NAME`` is OctoPrint's event name and
:meth:`~trioprint.domain.events.OctoPrintEvent.payload` returns exactly the payload keys OctoPrint
documents for it (the deprecated ``file``/``filename`` keys included where the documentation
still lists them), plus the keys OctoPrint 1.11.8 sends beyond the documentation (``size``,
``owner``, ``user``, ``fileposition``, ``progress``, ... as recorded from a real OctoPrint);
``None`` for events without a payload. :data:`PAYLOAD_KEYS` is that table.

Which of them trioprint fires, and when, is in ``docs/octoprint-events.md``; the events of
features trioprint does not have (slicing, timelapses, SD transfers, OctoPrint's G-code scripts)
are defined so that hooks and clients can name them, and are not fired.

Pure: no I/O, no Trio.
"""

from __future__ import annotations

import posixpath
from typing import Any, ClassVar

import attrs

from .events import OctoPrintEvent

#: trioprint has no user accounts: the ``owner``/``user`` of files and jobs.
OWNER = "trioprint"
#: OctoPrint's storage of the files trioprint prints (its ``gcodes`` root).
LOCAL = "local"

#: OctoPrint's printer state ids (``PrinterInterface.get_state_id``) and their texts.
STATE_STRINGS: dict[str, str] = {
    "OFFLINE": "Offline",
    "OPEN_SERIAL": "Opening serial connection",
    "DETECT_SERIAL": "Detecting serial connection",
    "CONNECTING": "Connecting",
    "OPERATIONAL": "Operational",
    "STARTING": "Starting",
    "PRINTING": "Printing",
    "PAUSING": "Pausing",
    "PAUSED": "Paused",
    "RESUMING": "Resuming",
    "FINISHING": "Finishing",
    "CANCELLING": "Cancelling",
    "ERROR": "Error",
    "CLOSED": "Offline",
    "CLOSED_WITH_ERROR": "Offline after error",
    "TRANSFERING_FILE": "Transferring file to SD",
    "UNKNOWN": "Unknown",
}


def file_type(path: str) -> list[str]:
    """OctoPrint's type path of a file: ``["machinecode", "gcode"]``, ``["model", "stl"]``."""
    ext = posixpath.splitext(path)[1].lower().lstrip(".")
    if ext in ("gcode", "gco", "g"):
        return ["machinecode", "gcode"]
    if ext in ("stl", "3mf", "obj"):
        return ["model", ext]
    return [ext] if ext else []


@attrs.frozen
class Position:
    """The print head position of a pause or cancel, as OctoPrint reports it (``t``: the tool
    index, ``f``: the feed rate in mm/min); every value None when unknown."""

    x: float | None = None
    y: float | None = None
    z: float | None = None
    e: float | None = None
    t: int | None = None
    f: float | None = None


@attrs.frozen
class _Keyed(OctoPrintEvent):
    """An event whose payload is ``KEYS`` taken from its fields (and derived values)."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    def _values(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)

    def payload(self) -> dict[str, Any] | None:
        if not self.KEYS:
            return None
        values = self._values()
        return {key: values[key] for key in self.KEYS}


# -- server ----------------------------------------------------------------------------------


@attrs.frozen
class Startup(_Keyed):
    NAME = "Startup"


@attrs.frozen
class Shutdown(_Keyed):
    NAME = "Shutdown"


@attrs.frozen
class ClientOpened(_Keyed):
    NAME = "ClientOpened"
    KEYS = ("remoteAddress",)
    remoteAddress: str | None


@attrs.frozen
class ClientClosed(_Keyed):
    NAME = "ClientClosed"
    KEYS = ("remoteAddress",)
    remoteAddress: str | None


@attrs.frozen
class ConnectivityChanged(_Keyed):
    """Not fired: trioprint does not check internet connectivity."""

    NAME = "ConnectivityChanged"
    KEYS = ("old", "new")
    old: bool
    new: bool


# -- printer communication -------------------------------------------------------------------


@attrs.frozen
class Connecting(_Keyed):
    NAME = "Connecting"


@attrs.frozen
class Connected(_Keyed):
    NAME = "Connected"
    KEYS = ("port", "baudrate")
    port: str
    baudrate: int = 0


@attrs.frozen
class Disconnecting(_Keyed):
    """Not fired: trioprint never disconnects from klippy on purpose."""

    NAME = "Disconnecting"


@attrs.frozen
class Disconnected(_Keyed):
    NAME = "Disconnected"


@attrs.frozen
class Error(_Keyed):
    NAME = "Error"
    KEYS = ("error",)
    error: str


@attrs.frozen
class PrinterStateChanged(_Keyed):
    NAME = "PrinterStateChanged"
    KEYS = ("state_id", "state_string")
    state_id: str
    state_string: str = ""

    def _values(self) -> dict[str, Any]:
        text = self.state_string or STATE_STRINGS.get(self.state_id, self.state_id.title())
        return {"state_id": self.state_id, "state_string": text}


@attrs.frozen
class FirmwareData(_Keyed):
    """Not in the event documentation; OctoPrint sends it after ``Connected``."""

    NAME = "FirmwareData"
    KEYS = ("name", "data")
    name: str
    data: dict[str, Any] = attrs.field(factory=dict)


# -- file handling ---------------------------------------------------------------------------


@attrs.frozen
class Upload(_Keyed):
    NAME = "Upload"
    KEYS: ClassVar[tuple[str, ...]] = ("name", "path", "target", "select", "print")
    KEYS += ("effective_select", "effective_print", "file")  # file: deprecated, the path
    name: str
    path: str
    target: str = LOCAL
    select: bool = False
    print: bool = False
    effective_select: bool = False
    effective_print: bool = False

    def _values(self) -> dict[str, Any]:
        return {**super()._values(), "file": self.path}


@attrs.frozen
class _StorageItem(_Keyed):
    storage: str
    path: str

    def _values(self) -> dict[str, Any]:
        values = super()._values()
        values["name"] = posixpath.basename(self.path)
        values["type"] = file_type(self.path)
        return values


@attrs.frozen
class FileAdded(_StorageItem):
    NAME = "FileAdded"
    KEYS = ("storage", "path", "name", "type", "operation")
    operation: str = "add"


@attrs.frozen
class FileRemoved(_StorageItem):
    NAME = "FileRemoved"
    KEYS = ("storage", "path", "name", "type", "operation")
    operation: str = "remove"


@attrs.frozen
class FolderAdded(_StorageItem):
    NAME = "FolderAdded"
    KEYS = ("storage", "path", "name")


@attrs.frozen
class FolderRemoved(_StorageItem):
    NAME = "FolderRemoved"
    KEYS = ("storage", "path", "name")


@attrs.frozen
class UpdatedFiles(_Keyed):
    NAME = "UpdatedFiles"
    KEYS = ("type",)
    type: str = "printables"


@attrs.frozen
class MetadataAnalysisStarted(_Keyed):
    NAME = "MetadataAnalysisStarted"
    KEYS = ("name", "path", "origin", "type", "file")
    path: str
    origin: str = LOCAL

    def _values(self) -> dict[str, Any]:
        name = posixpath.basename(self.path)
        kind = (file_type(self.path) or [""])[-1]
        return {**super()._values(), "name": name, "type": kind, "file": self.path}


@attrs.frozen
class MetadataAnalysisFinished(_Keyed):
    NAME = "MetadataAnalysisFinished"
    KEYS = ("name", "path", "origin", "result", "file")
    path: str
    result: dict[str, Any] = attrs.field(factory=dict)
    origin: str = LOCAL

    def _values(self) -> dict[str, Any]:
        return {**super()._values(), "name": posixpath.basename(self.path), "file": self.path}


@attrs.frozen
class MetadataStatisticsUpdated(_Keyed):
    """Not in the event documentation; OctoPrint sends it when a print of a file ends."""

    NAME = "MetadataStatisticsUpdated"
    KEYS = ("storage", "path")
    path: str
    storage: str = LOCAL


@attrs.frozen
class FileDeselected(_Keyed):
    NAME = "FileDeselected"


@attrs.frozen
class TransferStarted(_Keyed):
    """Not fired: klippy prints from its own virtual SD card, there is no SD transfer."""

    NAME = "TransferStarted"
    KEYS = ("local", "remote")
    local: str
    remote: str


@attrs.frozen
class TransferDone(_Keyed):
    """Not fired: see :class:`TransferStarted`."""

    NAME = "TransferDone"
    KEYS = ("time", "local", "remote")
    time: float
    local: str
    remote: str


# -- the job ---------------------------------------------------------------------------------


@attrs.frozen
class _Job(_Keyed):
    """A job event: the file (``path`` in the ``local`` storage) and, per event, more."""

    path: str
    size: int | None = None
    origin: str = LOCAL
    owner: str = OWNER
    user: str = OWNER
    #: the file's full path on disk (the deprecated ``file`` key); its path when empty
    full_path: str = ""

    def _values(self) -> dict[str, Any]:
        values = super()._values()
        values["name"] = posixpath.basename(self.path)
        values["file"] = self.full_path or self.path
        values["filename"] = values["name"]
        return values


_JOB = ("name", "path", "origin", "size", "owner", "user")
_DEPRECATED = ("file", "filename")


@attrs.frozen
class FileSelected(_Job):
    NAME = "FileSelected"
    KEYS = _JOB + _DEPRECATED


@attrs.frozen
class PrintJobSelected(_Job):
    NAME = "PrintJobSelected"
    KEYS = ("origin", "path", "owner", "user")


@attrs.frozen
class PrintStarted(_Job):
    NAME = "PrintStarted"
    KEYS = _JOB + _DEPRECATED


@attrs.frozen
class PrintDone(_Job):
    NAME = "PrintDone"
    KEYS = ("name", "path", "origin", "size", "owner", "time", *_DEPRECATED)
    time: float = 0.0


@attrs.frozen
class PrintFailed(_Job):
    NAME = "PrintFailed"
    KEYS = (*_JOB, "position", "fileposition", "progress", "time", "reason", *_DEPRECATED)
    position: Position = Position()
    fileposition: int | None = None
    progress: int | None = None
    time: float = 0.0
    #: ``cancelled`` or ``error``
    reason: str = "error"


@attrs.frozen
class PrintCancelling(_Job):
    NAME = "PrintCancelling"
    KEYS = _JOB


@attrs.frozen
class PrintCancelled(_Job):
    NAME = "PrintCancelled"
    KEYS = (*_JOB, "position", "fileposition", "progress", "time", *_DEPRECATED)
    position: Position = Position()
    fileposition: int | None = None
    progress: int | None = None
    time: float = 0.0


@attrs.frozen
class PrintPaused(_Job):
    NAME = "PrintPaused"
    KEYS = (*_JOB, "position", "fileposition", "progress", *_DEPRECATED)
    position: Position = Position()
    fileposition: int | None = None
    progress: int | None = None


@attrs.frozen
class PrintResumed(_Job):
    NAME = "PrintResumed"
    KEYS = _JOB + _DEPRECATED


@attrs.frozen
class ChartMarked(_Keyed):
    NAME = "ChartMarked"
    KEYS = ("type", "label")
    type: str
    label: str


# -- G-code processing -----------------------------------------------------------------------


@attrs.frozen
class PowerOn(_Keyed):
    NAME = "PowerOn"


@attrs.frozen
class PowerOff(_Keyed):
    NAME = "PowerOff"


@attrs.frozen
class Home(_Keyed):
    NAME = "Home"


@attrs.frozen
class ZChange(_Keyed):
    NAME = "ZChange"
    KEYS = ("new", "old")
    new: float
    old: float | None = None


@attrs.frozen
class Dwell(_Keyed):
    """A ``G4``. OctoPrint's documentation calls it ``Dwell``; OctoPrint fires ``Dwelling``
    (its ``Events.DWELL``), and so does trioprint (:data:`EVENTS` knows both names)."""

    NAME = "Dwelling"


@attrs.frozen
class Waiting(_Keyed):
    NAME = "Waiting"


@attrs.frozen
class Cooling(_Keyed):
    NAME = "Cooling"


@attrs.frozen
class Alert(_Keyed):
    NAME = "Alert"


@attrs.frozen
class Conveyor(_Keyed):
    NAME = "Conveyor"


@attrs.frozen
class Eject(_Keyed):
    NAME = "Eject"


@attrs.frozen
class EStop(_Keyed):
    NAME = "EStop"


@attrs.frozen
class PositionUpdate(_Keyed):
    NAME = "PositionUpdate"
    KEYS = ("reason", "x", "y", "z", "e", "t", "f")
    x: float | None = None
    y: float | None = None
    z: float | None = None
    e: float | None = None
    t: int | None = None
    f: float | None = None
    reason: str | None = None


@attrs.frozen
class ToolChange(_Keyed):
    NAME = "ToolChange"
    KEYS = ("old", "new")
    old: int | None
    new: int


# -- OctoPrint's G-code scripts (not fired: klippy's macros take their place) -----------------


def _script_event(script: str, phase: str, with_job: bool) -> type[OctoPrintEvent]:
    name = f"GcodeScript{script}{phase}"
    doc = f"OctoPrint's ``{script[0].lower()}{script[1:]}`` G-code script {phase.lower()}."
    doc += " Not fired: trioprint has no OctoPrint G-code scripts."
    namespace: dict[str, Any] = {"NAME": name, "__doc__": doc, "__module__": __name__}
    if with_job:
        namespace["KEYS"] = _JOB
    base = _Job if with_job else _Keyed
    return attrs.frozen(type(name, (base,), namespace))


#: OctoPrint's scripts; the job ones carry the job's payload, the connection ones none.
GCODE_SCRIPTS: dict[str, bool] = {
    "AfterPrinterConnected": False,
    "BeforePrinterDisconnected": False,
    "BeforePrintStarted": True,
    "AfterPrintCancelled": True,
    "AfterPrintDone": True,
    "BeforePrintPaused": True,
    "AfterPrintResumed": True,
}
SCRIPT_EVENTS: dict[str, type[OctoPrintEvent]] = {
    f"GcodeScript{script}{phase}": _script_event(script, phase, job)
    for script, job in GCODE_SCRIPTS.items()
    for phase in ("Running", "Finished")
}


# -- timelapses (not fired: trioprint has no timelapse) ---------------------------------------


@attrs.frozen
class CaptureStart(_Keyed):
    NAME = "CaptureStart"
    KEYS = ("file",)
    file: str


@attrs.frozen
class CaptureDone(_Keyed):
    NAME = "CaptureDone"
    KEYS = ("file",)
    file: str


@attrs.frozen
class CaptureFailed(_Keyed):
    NAME = "CaptureFailed"
    KEYS = ("file", "error")
    file: str
    error: str


@attrs.frozen
class _Movie(_Keyed):
    gcode: str
    movie: str

    def _values(self) -> dict[str, Any]:
        return {**super()._values(), "movie_basename": posixpath.basename(self.movie)}


_MOVIE = ("gcode", "movie", "movie_basename")


@attrs.frozen
class MovieRendering(_Movie):
    NAME = "MovieRendering"
    KEYS = _MOVIE


@attrs.frozen
class MovieDone(_Movie):
    NAME = "MovieDone"
    KEYS = _MOVIE


@attrs.frozen
class MovieFailed(_Movie):
    NAME = "MovieFailed"
    KEYS = (*_MOVIE, "returncode", "reason")
    returncode: int = 0
    #: ``returncode``, ``no_frames`` or ``unknown``
    reason: str = "unknown"


# -- slicing (not fired: trioprint has no slicer) ----------------------------------------------


@attrs.frozen
class _Slicing(_Keyed):
    stl: str
    stl_location: str
    gcode: str
    gcode_location: str


_SLICING = ("stl", "stl_location", "gcode", "gcode_location")


@attrs.frozen
class SlicingStarted(_Slicing):
    NAME = "SlicingStarted"
    KEYS = (*_SLICING, "progressAvailable")
    progressAvailable: bool = False


@attrs.frozen
class SlicingDone(_Slicing):
    NAME = "SlicingDone"
    KEYS = (*_SLICING, "time")
    time: float = 0.0


@attrs.frozen
class SlicingCancelled(_Slicing):
    NAME = "SlicingCancelled"
    KEYS = _SLICING


@attrs.frozen
class SlicingFailed(_Slicing):
    NAME = "SlicingFailed"
    KEYS = (*_SLICING, "reason")
    reason: str = ""


@attrs.frozen
class _SlicingProfile(_Keyed):
    KEYS = ("slicer", "profile")
    slicer: str
    profile: str


@attrs.frozen
class SlicingProfileAdded(_SlicingProfile):
    NAME = "SlicingProfileAdded"


@attrs.frozen
class SlicingProfileModified(_SlicingProfile):
    NAME = "SlicingProfileModified"


@attrs.frozen
class SlicingProfileDeleted(_SlicingProfile):
    NAME = "SlicingProfileDeleted"


# -- settings ----------------------------------------------------------------------------------


@attrs.frozen
class SettingsUpdated(_Keyed):
    NAME = "SettingsUpdated"


# -- the registry ------------------------------------------------------------------------------


def _all_events() -> dict[str, type[OctoPrintEvent]]:
    found: dict[str, type[OctoPrintEvent]] = {}
    for value in list(globals().values()):
        if (
            isinstance(value, type)
            and issubclass(value, OctoPrintEvent)
            and not value.__name__.startswith("_")
            and value.NAME
        ):
            found[value.NAME] = value
    found.update(SCRIPT_EVENTS)
    return dict(sorted(found.items()))


#: Every event by OctoPrint's name.
EVENTS: dict[str, type[OctoPrintEvent]] = _all_events()
#: Other names of an event: the documentation's ``Dwell`` is OctoPrint's ``Dwelling``.
ALIASES: dict[str, str] = {"Dwell": "Dwelling"}
#: The payload keys of every event (empty: no payload).
PAYLOAD_KEYS: dict[str, tuple[str, ...]] = {
    name: getattr(cls, "KEYS", ()) for name, cls in EVENTS.items()
}


def lookup(name: str) -> type[OctoPrintEvent] | None:
    """The event class of an OctoPrint event name (or alias), else None."""
    return EVENTS.get(ALIASES.get(name, name))
