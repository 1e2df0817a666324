"""The skeleton's drive-command gate: the smallest rule that keeps a stale command off the motors.

A command is applied only while it is younger than ``command_timeout_ms`` (age measured with the
operator's clock-offset estimate) and newer than the last one; otherwise the output is zero.
The full safety supervisor (modes, speed cap, fallback to autonomy) replaces this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateOutput:
    """The one command for the motor controller this tick.

    Attributes:
        speed_mps: wheel speed setpoint.
        steer_rad: steering setpoint.
        seq: operator sequence number of the command in force, or None when stopped.
        reason: why the output is what it is.
    """

    speed_mps: float
    steer_rad: float
    seq: int | None
    reason: str


class DriveGate:
    """Keeps the newest fresh command; sans-I/O, the caller passes the clock.

    Args:
        command_timeout_ms: a command older than this is never applied.
        max_speed_mps: commands beyond it are dropped as out of range.
        max_steer_rad: likewise for steering.
        future_tolerance_ms: a command stamped further in the future is dropped.
    """

    def __init__(
        self,
        *,
        command_timeout_ms: float = 250.0,
        max_speed_mps: float = 3.0,
        max_steer_rad: float = 0.5,
        future_tolerance_ms: float = 50.0,
    ) -> None:
        self.command_timeout_ms = command_timeout_ms
        self.max_speed_mps = max_speed_mps
        self.max_steer_rad = max_steer_rad
        self.future_tolerance_ms = future_tolerance_ms
        self.drops: dict[str, int] = {}
        self.accepted = 0
        self._last_seq: int | None = None
        self._speed_mps = 0.0
        self._steer_rad = 0.0
        self._expires_ms = -math.inf
        self._estop = False

    def _drop(self, reason: str) -> bool:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return False

    def on_command(
        self,
        *,
        seq: int,
        sent_ms: float,
        offset_ms: float,
        ttl_ms: float,
        speed_mps: float,
        steer_rad: float,
        deadman: bool,
        estop: bool,
        now_ms: float,
    ) -> bool:
        """Offers a command that arrived at ``now_ms``; returns whether it was accepted."""
        values = (sent_ms, offset_ms, ttl_ms, speed_mps, steer_rad)
        if not all(math.isfinite(v) for v in values):
            return self._drop("non_finite")
        if estop:
            self._estop = True
        if self._last_seq is not None:
            delta = (seq - self._last_seq) % (1 << 32)
            if delta == 0:
                return self._drop("duplicate")
            if delta >= 1 << 31:
                return self._drop("out_of_order")
        age_ms = now_ms - (sent_ms + offset_ms)
        if age_ms < -self.future_tolerance_ms:
            return self._drop("future")
        bound_ms = min(self.command_timeout_ms, ttl_ms)
        if age_ms > bound_ms:
            return self._drop("stale")
        if abs(speed_mps) > self.max_speed_mps or abs(steer_rad) > self.max_steer_rad:
            return self._drop("out_of_range")
        self._last_seq = seq
        self.accepted += 1
        self._speed_mps = speed_mps if deadman else 0.0
        self._steer_rad = steer_rad
        self._expires_ms = now_ms + (bound_ms - max(age_ms, 0.0))
        return True

    def estop(self) -> None:
        """Latches a stop until :meth:`reset_estop`."""
        self._estop = True

    def reset_estop(self) -> None:
        """Clears a latched e-stop."""
        self._estop = False

    def reset_session(self) -> None:
        """Forgets the sequence and the command in force (a new operator session)."""
        self._last_seq = None
        self._expires_ms = -math.inf

    @property
    def estopped(self) -> bool:
        """Whether an e-stop is latched."""
        return self._estop

    def output(self, now_ms: float) -> GateOutput:
        """The command to send now: the last accepted one while fresh, else zero."""
        if self._estop:
            return GateOutput(0.0, 0.0, None, "e-stop latched")
        if now_ms >= self._expires_ms:
            return GateOutput(0.0, 0.0, None, "no fresh command")
        return GateOutput(self._speed_mps, self._steer_rad, self._last_seq, "teleop")
