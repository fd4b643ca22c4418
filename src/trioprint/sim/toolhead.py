"""The toolhead of a cartesian printer: limits, homing, move checks and motion planning.

As klippy's toolhead, it plans moves ahead: ``print_time`` is where the planned motion ends,
on the MCU's clock, and ``clock()`` says what time it is now on that clock
(klippy's ``estimated_print_time``). When the toolhead gets work after it ran dry,
``print_time`` is put :data:`BUFFER_TIME_START` ahead of now (and ``on_sync`` is told: that
is what makes ``idle_timeout`` say "Printing").

A move runs at a constant velocity: the requested speed, limited by ``max_velocity``, by
``max_z_velocity`` along Z and by the extruder's limits for extrude-only moves and
retractions. The checks and their messages are klippy's (out of range, not homed, cold
extrusion, extrude-only distance, extrusion cross-section).

The carriage has a physical position too (where it is while an axis is not homed, e.g. after
``M84`` or a restart): homing travels from there to the endstop, then backs off and touches
again slower, as klippy's homing does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from .config import Config
from .gcode import GcodeError
from .motion import MotionQueue, Position, as_position

BUFFER_TIME_START: Final = 0.25
UNHOMED: Final = (1.0, -1.0)
RAILS: Final = ("stepper_x", "stepper_y", "stepper_z")


class Toolhead:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float],
        on_sync: Callable[[], None],
        carriage: list[float],
    ) -> None:
        self.printer = config.section("printer")
        self.rails = [config.section(name) for name in RAILS]
        self.extruder = config.section("extruder")
        self.clock = clock
        self.on_sync = on_sync
        self.pos: list[float] = [0.0, 0.0, 0.0, 0.0]
        self.print_time = 0.0
        self.limits: list[tuple[float, float]] = [UNHOMED] * 3
        self.max_velocity = float(self.printer["max_velocity"])
        self.max_accel = float(self.printer["max_accel"])
        self.min_cruise_ratio = float(self.printer["minimum_cruise_ratio"])
        self.square_corner_velocity = float(self.printer["square_corner_velocity"])
        self.queue = MotionQueue(as_position(self.pos))
        self.steppers = dict.fromkeys(("extruder", *RAILS), False)
        self.carriage = list(carriage)

    # -- state -----------------------------------------------------------------------------

    def homed(self, axis: int) -> bool:
        low, high = self.limits[axis]
        return low <= high

    @property
    def homed_axes(self) -> str:
        return "".join(axis for index, axis in enumerate("xyz") if self.homed(index))

    def buffered(self) -> float:
        """Planned motion still ahead of now, seconds."""
        return self.print_time - self.clock()

    def live(self) -> tuple[Position, float, float]:
        """Where the head is now, its XYZ and its extruder velocity."""
        return self.queue.sample(self.clock())

    def live_carriage(self) -> list[float]:
        """The physical XYZ position now."""
        position, _, _ = self.live()
        return [
            position[axis] if self.homed(axis) else value
            for axis, value in enumerate(self.carriage)
        ]

    def endstops(self) -> dict[str, str]:
        """Each endstop triggers with its carriage on it."""
        carriage = self.live_carriage()
        result = {}
        for axis, rail in enumerate(self.rails):
            endstop = rail["position_endstop"]
            if rail["homing_positive_dir"]:
                hit = carriage[axis] >= endstop - 0.000001
            else:
                hit = carriage[axis] <= endstop + 0.000001
            result[RAILS[axis]] = "TRIGGERED" if hit else "open"
        return result

    def status(self) -> dict[str, Any]:
        return {
            "homed_axes": self.homed_axes,
            "axis_minimum": [*(float(r["position_min"]) for r in self.rails), 0],
            "axis_maximum": [*(float(r["position_max"]) for r in self.rails), 0],
            "print_time": float(self.print_time),
            "stalls": 0,
            "estimated_print_time": float(self.clock()),
            "extruder": "extruder",
            "extra_axes": {"extruder": 3},
            "position": [float(v) for v in self.pos],
            "max_velocity": float(self.max_velocity),
            "max_accel": float(self.max_accel),
            "minimum_cruise_ratio": float(self.min_cruise_ratio),
            "square_corner_velocity": float(self.square_corner_velocity),
        }

    # -- planning ------------------------------------------------------------------------

    def sync(self) -> None:
        """The toolhead gets work: resynchronise print_time if it fell behind now."""
        floor = self.clock() + BUFFER_TIME_START
        if self.print_time < floor:
            self.print_time = floor
            self.on_sync()

    def dwell(self, delay: float) -> None:
        self.sync()
        self.print_time += max(0.0, delay)

    def _plan(self, start: list[float], end: list[float], duration: float) -> None:
        self.sync()
        self.queue.add(self.print_time, duration, as_position(start), as_position(end))
        self.print_time += duration
        for axis in range(3):
            if self.homed(axis):
                self.carriage[axis] = end[axis]

    def move(self, newpos: list[float], speed: float, *, can_extrude: bool) -> None:
        """Plan a move to ``newpos`` at ``speed`` mm/s, or raise klippy's GcodeError."""
        start = list(self.pos)
        end = list(newpos)
        delta = [e - s for s, e in zip(start, end, strict=True)]
        distance = math.sqrt(delta[0] ** 2 + delta[1] ** 2 + delta[2] ** 2)
        kinematic = distance >= 0.000000001
        if kinematic:
            velocity = min(speed, self.max_velocity)
        else:  # extrude only
            end[:3] = start[:3]
            delta[:3] = [0.0, 0.0, 0.0]
            distance = abs(delta[3])
            velocity = speed
        if not distance:
            return
        if kinematic:
            velocity = self._check_kinematics(end, delta, distance, velocity)
        if delta[3]:
            velocity = self._check_extrusion(delta, distance, velocity, can_extrude)
        if not velocity > 0.0:
            raise GcodeError(f"Invalid speed {speed!r} for move")
        self._plan(start, end, distance / velocity)
        self.pos = end
        for index, name in enumerate((*RAILS, "extruder")):
            if delta[index]:
                self.steppers[name] = True

    @staticmethod
    def _move_error(end: list[float], message: str = "Move out of range") -> GcodeError:
        return GcodeError(f"{message}: {end[0]:.3f} {end[1]:.3f} {end[2]:.3f} [{end[3]:.3f}]")

    def _check_kinematics(
        self, end: list[float], delta: list[float], distance: float, velocity: float
    ) -> float:
        for axis in range(3):
            low, high = self.limits[axis]
            if delta[axis] and (end[axis] < low or end[axis] > high):
                if low > high:
                    raise self._move_error(end, "Must home axis first")
                raise self._move_error(end)
        if delta[2]:
            ratio = distance / abs(delta[2])
            velocity = min(velocity, float(self.printer["max_z_velocity"]) * ratio)
        return velocity

    def _check_extrusion(
        self, delta: list[float], distance: float, velocity: float, can_extrude: bool
    ) -> float:
        cfg = self.extruder
        if not can_extrude:
            raise GcodeError(
                "Extrude below minimum temp\nSee the 'min_extrude_temp' config option for details"
            )
        radius = cfg["filament_diameter"] / 2.0
        filament_area = math.pi * radius * radius
        max_ratio = cfg["max_extrude_cross_section"] / filament_area
        ratio = delta[3] / distance
        if (not delta[0] and not delta[1]) or ratio < 0.0:
            max_distance = cfg["max_extrude_only_distance"]
            if abs(delta[3]) > max_distance:
                raise GcodeError(
                    f"Extrude only move too long ({delta[3]:.3f}mm vs {max_distance:.3f}mm)\n"
                    "See the 'max_extrude_only_distance' config option for details"
                )
            velocity = min(velocity, cfg["max_extrude_only_velocity"] / abs(ratio))
        elif ratio > max_ratio and delta[3] > cfg["nozzle_diameter"] * max_ratio:
            raise GcodeError(
                f"Move exceeds maximum extrusion ({ratio * filament_area:.3f}mm^2 vs "
                f"{max_ratio * filament_area:.3f}mm^2)\n"
                "See the 'max_extrude_cross_section' config option for details"
            )
        return float(velocity)

    def home(self, axes: list[int]) -> None:
        """Plan homing of ``axes`` (0..2), in order, after the moves already planned."""
        self.sync()
        carriage = [  # where the planned moves leave the carriage
            self.pos[axis] if self.homed(axis) else value
            for axis, value in enumerate(self.carriage)
        ]
        for axis in axes:
            rail = self.rails[axis]
            endstop = float(rail["position_endstop"])
            toward = 1.0 if rail["homing_positive_dir"] else -1.0
            retract = float(rail["homing_retract_dist"])
            start = list(self.pos)
            start[axis] = carriage[axis]
            phases = [(endstop, float(rail["homing_speed"]))]
            if retract > 0.0:
                phases += [
                    (endstop - toward * retract, float(rail["homing_retract_speed"])),
                    (endstop, float(rail["second_homing_speed"])),
                ]
            for target, speed in phases:
                end = list(start)
                end[axis] = target
                self._plan(start, end, abs(target - start[axis]) / speed)
                start = end
            self.pos = start
            self.limits[axis] = (float(rail["position_min"]), float(rail["position_max"]))
            self.carriage[axis] = endstop
            self.steppers[RAILS[axis]] = True

    def motor_off(self, stall: float) -> None:
        """M84: steppers off; no axis is homed any more."""
        self.dwell(stall)
        self.carriage = self.live_carriage()
        self.steppers = dict.fromkeys(self.steppers, False)
        self.limits = [UNHOMED] * 3
        self.dwell(stall)

    def stop(self) -> None:
        """A shutdown: the motion stops where it is now."""
        self.queue.stop(self.clock())
        self.carriage = self.live_carriage()
