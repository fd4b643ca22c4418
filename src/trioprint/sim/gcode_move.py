"""G-code coordinate state, as klippy's ``gcode_move`` keeps it.

``last_position`` is where G-code last asked the head to be, in toolhead coordinates;
``base_position`` the offset of G-code coordinates (G92, SET_GCODE_OFFSET, homing);
``homing_position`` the offset set by SET_GCODE_OFFSET. The extruder's G-code coordinate is
scaled by ``extrude_factor`` (M221). ``speed`` is in mm/s with the M220 factor applied, as
klippy stores it (``speed_factor`` is the percentage / 6000).

Moves go to ``move(newpos, speed, previous_e)``, the machine's move path (exclude_object,
toolhead, print_stats); ``toolhead_position()`` is where to restart from after an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from .gcode import GcodeError, GcodeLine

AXES: Final = "XYZE"

MoveFn = Callable[[list[float], float, float], None]


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


class GcodeMove:
    def __init__(self, move: MoveFn, toolhead_position: Callable[[], list[float]]) -> None:
        self.move = move
        self.toolhead_position = toolhead_position
        self.absolute_coord = True
        self.absolute_extrude = True
        self.base_position = [0.0, 0.0, 0.0, 0.0]
        self.last_position = [0.0, 0.0, 0.0, 0.0]
        self.homing_position = [0.0, 0.0, 0.0, 0.0]
        self.speed = 25.0
        self.speed_factor = 1.0 / 60.0
        self.extrude_factor = 1.0
        self.saved_states: dict[str, dict[str, Any]] = {}

    def gcode_position(self) -> list[float]:
        p = [lp - bp for lp, bp in zip(self.last_position, self.base_position, strict=True)]
        p[3] /= self.extrude_factor
        return p

    def reset_last_position(self) -> None:
        self.last_position = list(self.toolhead_position())

    def homed(self, axes: list[int]) -> None:
        """Homing finished on ``axes``."""
        self.reset_last_position()
        for axis in axes:
            self.base_position[axis] = self.homing_position[axis]

    def status(self) -> dict[str, Any]:
        return {
            "speed_factor": self.speed_factor * 60.0,
            "speed": self.speed / self.speed_factor,
            "extrude_factor": float(self.extrude_factor),
            "absolute_coordinates": self.absolute_coord,
            "absolute_extrude": self.absolute_extrude,
            "homing_origin": [float(v) for v in self.homing_position],
            "position": [float(v) for v in self.last_position],
            "gcode_position": [float(v) for v in self.gcode_position()],
            "axis_map": {"X": 0, "Y": 1, "Z": 2, "E": 3},
        }

    # -- commands (the machine wraps them: the moving ones then wait for buffer room) ------

    def G1(self, line: GcodeLine) -> None:
        params = line.params
        previous_e = self.last_position[3]
        try:
            for index, axis in enumerate(AXES):
                if axis not in params:
                    continue
                value = _number(params[axis])
                absolute = self.absolute_coord
                if axis == "E":
                    value *= self.extrude_factor
                    absolute = absolute and self.absolute_extrude
                if absolute:
                    self.last_position[index] = value + self.base_position[index]
                else:
                    self.last_position[index] += value
            if "F" in params:
                feed = _number(params["F"])
                if feed <= 0.0:
                    raise GcodeError(f"Invalid speed in '{line.raw}'")
                self.speed = feed * self.speed_factor
        except ValueError:
            raise GcodeError(f"Unable to parse move '{line.raw}'") from None
        self.move(self.last_position, self.speed, previous_e)

    def G92(self, line: GcodeLine) -> None:
        offsets = [line.get_float(axis, None) for axis in AXES]
        for index, offset in enumerate(offsets):
            if offset is not None:
                if index == 3:
                    offset *= self.extrude_factor
                self.base_position[index] = self.last_position[index] - offset
        if all(offset is None for offset in offsets):
            self.base_position = list(self.last_position)

    def M220(self, line: GcodeLine) -> None:
        value = line.get_float("S", 100.0, above=0.0) / (60.0 * 100.0)
        self.speed = self.speed / self.speed_factor * value
        self.speed_factor = value

    def M221(self, line: GcodeLine) -> None:
        factor = line.get_float("S", 100.0, above=0.0) / 100.0
        last_e = self.last_position[3]
        e_value = (last_e - self.base_position[3]) / self.extrude_factor
        self.base_position[3] = last_e - e_value * factor
        self.extrude_factor = factor

    def SET_GCODE_OFFSET(self, line: GcodeLine) -> None:
        delta = [0.0, 0.0, 0.0, 0.0]
        for index, axis in enumerate(AXES):
            offset = line.get_float(axis, None)
            if offset is None:
                adjust = line.get_float(f"{axis}_ADJUST", None)
                if adjust is None:
                    continue
                offset = adjust + self.homing_position[index]
            delta[index] = offset - self.homing_position[index]
            self.base_position[index] += delta[index]
            self.homing_position[index] = offset
        if line.get_int("MOVE", 0):
            speed = line.get_float("MOVE_SPEED", self.speed, above=0.0)
            previous_e = self.last_position[3]
            for index in range(4):
                self.last_position[index] += delta[index]
            self.move(self.last_position, speed, previous_e)

    def save_state(self, name: str) -> None:
        self.saved_states[name] = {
            "absolute_coord": self.absolute_coord,
            "absolute_extrude": self.absolute_extrude,
            "base_position": list(self.base_position),
            "last_position": list(self.last_position),
            "homing_position": list(self.homing_position),
            "speed": self.speed,
            "speed_factor": self.speed_factor,
            "extrude_factor": self.extrude_factor,
        }

    def SAVE_GCODE_STATE(self, line: GcodeLine) -> None:
        self.save_state(line.get("NAME", "default"))

    def RESTORE_GCODE_STATE(self, line: GcodeLine) -> None:
        name = line.get("NAME", "default")
        state = self.saved_states.get(name)
        if state is None:
            raise GcodeError(f"Unknown g-code state: {name}")
        self.absolute_coord = state["absolute_coord"]
        self.absolute_extrude = state["absolute_extrude"]
        self.base_position = list(state["base_position"])
        self.homing_position = list(state["homing_position"])
        self.speed = state["speed"]
        self.speed_factor = state["speed_factor"]
        self.extrude_factor = state["extrude_factor"]
        # keep the extruder where it is now, in the restored coordinates
        self.base_position[3] += self.last_position[3] - state["last_position"][3]
        if line.get_int("MOVE", 0):
            speed = line.get_float("MOVE_SPEED", self.speed, above=0.0)
            previous_e = self.last_position[3]
            self.last_position[:3] = state["last_position"][:3]
            self.move(self.last_position, speed, previous_e)

    def M114(self) -> str:
        x, y, z, e = self.gcode_position()
        return f"X:{x:.3f} Y:{y:.3f} Z:{z:.3f} E:{e:.3f}"
