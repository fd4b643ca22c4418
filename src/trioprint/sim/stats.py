"""Bookkeeping objects of a print: ``print_stats`` and ``idle_timeout``, in klippy's terms.

``print_stats``: ``total_duration`` runs from the start of the print to its end;
``print_duration`` is that minus the time paused and minus the time before the first positive
extrusion (heating, homing); ``filament_used`` is the extruder's net travel (divided by the
extrude factor) while printing and not paused. ``info`` holds what ``SET_PRINT_STATS_INFO``
said (klippy does not derive layers from Z).

klippy updates ``filament_used`` and the time before the first extrusion only when someone
asks for the status; here they are updated whenever the extruder position changes, so the
values do not depend on how often a client polls.

``idle_timeout``: "Printing" from the moment the toolhead gets work until it has been idle
(no planned motion, no command running) for half a second, then "Ready"; after ``timeout``
seconds of that its G-code runs (heaters and motors off) and the state is "Idle".
"""

from __future__ import annotations

from typing import Any, Final

NO_EXTRUSION: Final = 0.0000001
READY_TIMEOUT: Final = 0.5


class PrintStats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.filename = ""
        self.message = ""
        self.state = "standby"
        self.prev_pause_duration = 0.0
        self.last_epos = 0.0
        self.filament_used = 0.0
        self.total_duration = 0.0
        self.init_duration = 0.0
        self.print_start_time: float | None = None
        self.last_pause_time: float | None = None
        self.total_layer: int | None = None
        self.current_layer: int | None = None

    @property
    def active(self) -> bool:
        """Printing (not paused): extrusion counts."""
        return self.print_start_time is not None and self.last_pause_time is None

    def set_current_file(self, filename: str) -> None:
        self.reset()
        self.filename = filename

    def note_start(self, now: float, epos: float) -> None:
        if self.print_start_time is None:
            self.print_start_time = now
        elif self.last_pause_time is not None:
            self.prev_pause_duration += now - self.last_pause_time
            self.last_pause_time = None
        self.last_epos = epos
        self.state = "printing"
        self.message = ""

    def note_extrusion(self, now: float, epos: float, extrude_factor: float) -> None:
        """The extruder's planned position is now ``epos``."""
        if not self.active:
            return
        was_dry = self.filament_used < NO_EXTRUSION
        self.filament_used += (epos - self.last_epos) / extrude_factor
        self.last_epos = epos
        if was_dry and self.filament_used >= NO_EXTRUSION and self.print_start_time is not None:
            self.init_duration = now - self.print_start_time - self.prev_pause_duration

    def note_pause(self, now: float, epos: float, extrude_factor: float) -> None:
        if self.last_pause_time is None:
            self.note_extrusion(now, epos, extrude_factor)
            self.last_pause_time = now
        if self.state != "error":
            self.state = "paused"

    def note_finish(self, now: float, state: str, message: str = "") -> None:
        if self.print_start_time is None:
            return
        self.state = state
        self.message = message
        self.total_duration = now - self.print_start_time
        paused = self.prev_pause_duration
        if self.last_pause_time is not None:
            paused += now - self.last_pause_time
        self.prev_pause_duration = paused
        if self.filament_used < NO_EXTRUSION:
            self.init_duration = self.total_duration - paused
        self.print_start_time = None
        self.last_pause_time = None

    def set_info(self, total_layer: int | None, current_layer: int | None) -> None:
        """SET_PRINT_STATS_INFO: TOTAL_LAYER=0 clears; a new total restarts at layer 0."""
        if total_layer == 0:
            self.total_layer = self.current_layer = None
        elif total_layer is not None and total_layer != self.total_layer:
            self.total_layer = total_layer
            self.current_layer = 0
        if (
            self.total_layer is not None
            and current_layer is not None
            and current_layer != self.current_layer
        ):
            self.current_layer = min(current_layer, self.total_layer)

    def status(self, now: float) -> dict[str, Any]:
        paused = self.prev_pause_duration
        total = self.total_duration
        init = self.init_duration
        if self.print_start_time is not None:
            if self.last_pause_time is not None:
                paused += now - self.last_pause_time
            total = now - self.print_start_time
            if self.filament_used < NO_EXTRUSION:
                init = total - paused
        return {
            "filename": self.filename,
            "total_duration": float(total),
            "print_duration": float(max(total - init - paused, 0.0)),
            "filament_used": float(self.filament_used),
            "state": self.state,
            "message": self.message,
            "info": {"total_layer": self.total_layer, "current_layer": self.current_layer},
        }


class IdleTimeout:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.state = "Idle"
        self.print_start = 0.0
        #: sim time from which the toolhead has been idle (Ready state), or None
        self.ready_since: float | None = None

    def note_busy(self, now: float) -> None:
        """The toolhead got work (its print time was resynchronised)."""
        if self.state != "Printing":
            self.state = "Printing"
            self.print_start = now
            self.ready_since = None

    def update(self, now: float, motion_end: float, busy: bool) -> bool:
        """Advance to ``now``: ``motion_end`` is when planned motion ends (sim time), ``busy``
        whether a command is running. True when the idle G-code must run now."""
        if self.state == "Printing":
            if not busy and now >= motion_end + READY_TIMEOUT:
                self.state = "Ready"
                self.ready_since = max(motion_end, self.print_start)
            return False
        if self.state == "Ready" and not busy and self.ready_since is not None:
            return self.timeout > 0.0 and now - self.ready_since >= self.timeout
        return False

    def status(self, now: float) -> dict[str, Any]:
        printing_time = now - self.print_start if self.state == "Printing" else 0.0
        return {
            "state": self.state,
            "printing_time": float(printing_time),
            "idle_timeout": float(self.timeout),
        }
