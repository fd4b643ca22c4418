"""Planned motion: the moves the toolhead has queued, in print time, and where it is now.

klippy plans moves ahead of the machine: a ``G1`` returns as soon as the move is queued, and
the toolhead's ``print_time`` (the end of the planned motion) runs ahead of the
``estimated_print_time`` (now, on the MCU clock). :class:`MotionQueue` keeps the queued
segments so that ``motion_report`` can say where the head is *now* and how fast it moves.

Each move runs at a constant velocity (``distance / velocity``): no acceleration ramps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import attrs

Position = tuple[float, float, float, float]


def as_position(values: Sequence[float]) -> Position:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


@attrs.frozen
class Segment:
    """A straight move from ``start_pos`` to ``end_pos`` between two print times."""

    start: float
    end: float
    start_pos: Position
    end_pos: Position

    @property
    def duration(self) -> float:
        return self.end - self.start

    def position_at(self, t: float) -> Position:
        if self.duration <= 0.0:
            return self.end_pos
        f = min(max((t - self.start) / self.duration, 0.0), 1.0)
        a, b = self.start_pos, self.end_pos
        return (
            a[0] + (b[0] - a[0]) * f,
            a[1] + (b[1] - a[1]) * f,
            a[2] + (b[2] - a[2]) * f,
            a[3] + (b[3] - a[3]) * f,
        )

    def velocities(self) -> tuple[float, float]:
        """Toolhead (XYZ) and extruder velocity, mm/s."""
        if self.duration <= 0.0:
            return 0.0, 0.0
        a, b = self.start_pos, self.end_pos
        xyz = math.dist(a[:3], b[:3]) / self.duration
        return xyz, (b[3] - a[3]) / self.duration


class MotionQueue:
    """Queued segments, oldest first; ``rest`` is where the head is when none is running."""

    def __init__(self, position: Position = (0.0, 0.0, 0.0, 0.0)) -> None:
        self.segments: deque[Segment] = deque()
        self.rest: Position = position

    def add(self, start: float, duration: float, start_pos: Position, end_pos: Position) -> None:
        self.segments.append(Segment(start, start + duration, start_pos, end_pos))

    def expire(self, t: float) -> None:
        """Forget the segments that ended by print time ``t``."""
        while self.segments and self.segments[0].end <= t:
            self.rest = self.segments.popleft().end_pos

    def sample(self, t: float) -> tuple[Position, float, float]:
        """Position, XYZ velocity and extruder velocity at print time ``t``."""
        self.expire(t)
        for segment in self.segments:
            if segment.start <= t < segment.end:
                velocity, e_velocity = segment.velocities()
                return segment.position_at(t), velocity, e_velocity
            if segment.start > t:
                break
        return self.rest, 0.0, 0.0

    def stop(self, t: float) -> Position:
        """Halt at print time ``t`` (a shutdown): drop what is still to come."""
        position, _, _ = self.sample(t)
        self.segments.clear()
        self.rest = position
        return position

    def reset(self, position: Position) -> None:
        self.segments.clear()
        self.rest = position
