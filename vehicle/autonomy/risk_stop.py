"""Minimal-risk stop: decelerate at a fixed rate to standstill, then hold.

The speed profile is computed from the start time, not integrated per tick, so a late or
irregular tick never stretches the stop: ``|v(t)| = max(0, |v0| - a * (t - t0))``. Steering is
held where it was.
"""

from __future__ import annotations

import math

from teledrive.shared.errors import ConfigError

_STANDSTILL_MPS = 1e-9  # below this the ramp has reached zero (float rounding)


class RiskStop:
    """A deceleration ramp to zero.

    Args:
        decel_mps2: Deceleration, > 0.
    """

    def __init__(self, decel_mps2: float) -> None:
        if not (math.isfinite(decel_mps2) and decel_mps2 > 0):
            raise ConfigError(f"RiskStop: decel_mps2 must be > 0, got {decel_mps2!r}")
        self.decel_mps2 = decel_mps2
        self._start_ms = 0.0
        self._start_speed_mps = 0.0
        self._steer_rad = 0.0

    def begin(self, now_ms: float, speed_mps: float, steer_rad: float) -> None:
        """Start stopping from ``speed_mps`` (signed) at ``now_ms``, holding ``steer_rad``."""
        self._start_ms = now_ms
        self._start_speed_mps = speed_mps if math.isfinite(speed_mps) else 0.0
        self._steer_rad = steer_rad if math.isfinite(steer_rad) else 0.0

    def command(self, now_ms: float) -> tuple[float, float]:
        """The ``(speed_mps, steer_rad)`` setpoint at ``now_ms``."""
        elapsed_s = max(0.0, now_ms - self._start_ms) / 1000.0
        magnitude = abs(self._start_speed_mps) - self.decel_mps2 * elapsed_s
        if magnitude < _STANDSTILL_MPS:
            return 0.0, self._steer_rad
        return math.copysign(magnitude, self._start_speed_mps), self._steer_rad

    def stopped(self, now_ms: float) -> bool:
        """True once the ramp has reached standstill."""
        return self.command(now_ms)[0] == 0.0

    def stop_time_ms(self) -> float:
        """How long the whole ramp takes from its start."""
        return abs(self._start_speed_mps) / self.decel_mps2 * 1000.0
