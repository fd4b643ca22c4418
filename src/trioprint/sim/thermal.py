"""Heaters: a first-order thermal plant, a thermistor, and klippy-style control.

The plant is a lumped heat capacity ``C`` (J/K) heated by ``power * pwm`` (W) and losing
``loss * (T - ambient)`` (W) (more with the part fan blowing on a hotend):

    C dT/dt = P * pwm - k * (T - T_ambient)

Within a step the pwm is constant, so the step is integrated exactly (an exponential
approach to ``T_ambient + P * pwm / k``); steps are at most :data:`MAX_STEP` long.

The sensor is sampled every :data:`SAMPLE_TIME` (klippy's ADC report time) with a small,
bounded, seeded noise; the reported temperature is klippy's exponentially smoothed reading
(``smooth_time``), and the controller is a PID in klippy's units (gains divided by 255, a
derivative smoothed over ``smooth_time``, a clamped integral that stops growing while the
output saturates) or a bang-bang "watermark" controller. ``check_busy`` is the condition
M109 / M190 wait on: for PID, within 1 degree of target and settled (slope under 0.1 deg/s).
"""

from __future__ import annotations

import math
import random
from typing import Any, Final

import attrs

SAMPLE_TIME: Final = 0.3
MAX_STEP: Final = 0.1
AMBIENT: Final = 25.0
NOISE: Final = 0.1
PID_SCALE: Final = 255.0
SETTLE_DELTA: Final = 1.0
SETTLE_SLOPE: Final = 0.1


@attrs.frozen
class Plant:
    """Heater power (W), heat capacity (J/K) and loss to ambient (W/K)."""

    power: float
    capacity: float
    loss: float
    #: extra loss (as a fraction of ``loss``) with the part-cooling fan at full speed
    fan_loss: float = 0.0


#: 25 -> 200 C in about 75 s with klippy's stock PID gains; holds within 1.5 C after M109.
HOTEND: Final = Plant(power=40.0, capacity=9.0, loss=0.135, fan_loss=0.25)
#: 25 -> 60 C in about 80 s; tops out near 150 C.
BED: Final = Plant(power=250.0, capacity=450.0, loss=2.0)


class Heater:
    """One heater: ``name`` is klippy's object name ("extruder", "heater_bed")."""

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        plant: Plant,
        rng: random.Random,
        *,
        temperature: float = AMBIENT,
    ) -> None:
        self.name = name
        self.plant = plant
        self.rng = rng
        self.min_temp = float(settings["min_temp"])
        self.max_temp = float(settings["max_temp"])
        self.min_extrude_temp = float(settings.get("min_extrude_temp", 170.0))
        self.max_power = float(settings.get("max_power", 1.0))
        self.smooth_time = float(settings.get("smooth_time", 1.0))
        self.control = str(settings["control"])
        self.kp = float(settings.get("pid_kp", 0.0)) / PID_SCALE
        self.ki = float(settings.get("pid_ki", 0.0)) / PID_SCALE
        self.kd = float(settings.get("pid_kd", 0.0)) / PID_SCALE
        self.max_delta = float(settings.get("max_delta", 2.0))
        #: the physical temperature of the block
        self.temperature = temperature
        self.target = 0.0
        self.pwm = 0.0
        self.enabled = True  # False after a shutdown: the MCU holds the heater off
        self.smoothed = temperature
        self.can_extrude = self.min_extrude_temp <= 0.0 or temperature >= self.min_extrude_temp
        # controller state
        self._last_sample: float | None = None
        self._prev_reading = AMBIENT
        self._derivative = 0.0
        self._integral = 0.0
        self._heating = False

    # -- commands ------------------------------------------------------------------------------

    def check_target(self, degrees: float) -> str | None:
        """klippy's error for an out-of-range target, or None."""
        if degrees and (degrees < self.min_temp or degrees > self.max_temp):
            return (
                f"Requested temperature ({degrees:.1f}) out of range "
                f"({self.min_temp:.1f}:{self.max_temp:.1f})"
            )
        return None

    def set_target(self, degrees: float) -> None:
        self.target = degrees
        if degrees <= 0.0:
            self.pwm = 0.0

    def shutdown(self) -> None:
        self.enabled = False
        self.pwm = 0.0

    # -- simulation ------------------------------------------------------------------------------

    def integrate(self, dt: float, fan_speed: float = 0.0) -> None:
        """Advance the plant ``dt`` seconds with the current pwm (exact for a constant pwm)."""
        if dt <= 0.0:
            return
        loss = self.plant.loss * (1.0 + self.plant.fan_loss * fan_speed)
        drive = self.plant.power * self.pwm if self.enabled else 0.0
        settle = AMBIENT + drive / loss
        self.temperature = settle + (self.temperature - settle) * math.exp(
            -dt * loss / self.plant.capacity
        )

    def sample(self, now: float) -> None:
        """One sensor reading at ``now``: smoothing, extrude check and the controller."""
        reading = self.temperature + self.rng.uniform(-NOISE, NOISE)
        elapsed = SAMPLE_TIME if self._last_sample is None else now - self._last_sample
        self._last_sample = now
        self.smoothed += (reading - self.smoothed) * min(elapsed / self.smooth_time, 1.0)
        self.can_extrude = self.min_extrude_temp <= 0.0 or self.smoothed >= self.min_extrude_temp
        if self.control == "watermark":
            output = self._bang_bang(reading)
        else:
            output = self._pid(reading, elapsed)
        self.pwm = output if (self.enabled and self.target > 0.0) else 0.0

    def _pid(self, reading: float, elapsed: float) -> float:
        change = reading - self._prev_reading
        window = self.smooth_time
        if elapsed >= window:
            slope = change / elapsed
        else:
            slope = (self._derivative * (window - elapsed) + change) / window
        error = self.target - reading
        integral_max = self.max_power / self.ki if self.ki else 0.0
        integral = min(max(self._integral + error * elapsed, 0.0), integral_max)
        raw = self.kp * error + self.ki * integral - self.kd * slope
        output = min(max(raw, 0.0), self.max_power)
        self._prev_reading = reading
        self._derivative = slope
        if raw == output:  # no wind-up while saturated
            self._integral = integral
        return output

    def _bang_bang(self, reading: float) -> float:
        if self._heating and reading >= self.target + self.max_delta:
            self._heating = False
        elif not self._heating and reading <= self.target - self.max_delta:
            self._heating = True
        return self.max_power if self._heating else 0.0

    # -- status ----------------------------------------------------------------------------------

    def check_busy(self) -> bool:
        """Whether M109 / M190 still waits."""
        if self.control == "watermark":
            return self.smoothed < self.target - self.max_delta
        return (
            abs(self.target - self.smoothed) > SETTLE_DELTA or abs(self._derivative) > SETTLE_SLOPE
        )

    def status(self) -> dict[str, Any]:
        return {
            "temperature": round(self.smoothed, 2),
            "target": float(self.target),
            "power": float(self.pwm),
        }
