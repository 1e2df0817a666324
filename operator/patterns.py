"""Where a headless operator's drive commands come from: a scripted pattern or stdin."""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass
from typing import Protocol, TextIO

from teledrive.shared.errors import ConfigError


@dataclass(frozen=True)
class Setpoint:
    """What the operator asks for now.

    Attributes:
        speed_mps: wanted speed.
        steer_rad: wanted steering angle.
        deadman: the deadman control is held.
        estop: the e-stop is pressed.
    """

    speed_mps: float
    steer_rad: float
    deadman: bool = True
    estop: bool = False


class CommandSource(Protocol):
    """Gives the operator's setpoint at a time (seconds since driving started)."""

    def setpoint(self, elapsed_s: float) -> Setpoint:
        """The setpoint at ``elapsed_s``."""
        ...


class ScriptedPattern:
    """A gentle slalom: speed ramps to ``speed_mps`` and the steering swings slowly.

    Args:
        speed_mps: cruise speed.
        steer_amplitude_rad: largest steering angle.
        period_s: one left-right swing.
        ramp_s: time to reach cruise speed.
    """

    def __init__(
        self,
        *,
        speed_mps: float = 1.0,
        steer_amplitude_rad: float = 0.2,
        period_s: float = 4.0,
        ramp_s: float = 1.0,
    ) -> None:
        self.speed_mps = speed_mps
        self.steer_amplitude_rad = steer_amplitude_rad
        self.period_s = period_s
        self.ramp_s = ramp_s

    def setpoint(self, elapsed_s: float) -> Setpoint:
        """The setpoint at ``elapsed_s``."""
        ramp = min(1.0, max(0.0, elapsed_s / self.ramp_s)) if self.ramp_s > 0 else 1.0
        steer = self.steer_amplitude_rad * math.sin(2 * math.pi * elapsed_s / self.period_s)
        return Setpoint(speed_mps=round(self.speed_mps * ramp, 3), steer_rad=round(steer, 4))


def parse_setpoint_line(line: str, *, where: str = "stdin") -> Setpoint | None:
    """Parses ``SPEED STEER`` (m/s, rad), ``stop`` or ``estop``; None for a blank line.

    Raises:
        ConfigError: the line is not understood; the message quotes it.
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text == "stop":
        return Setpoint(0.0, 0.0)
    if text == "estop":
        return Setpoint(0.0, 0.0, estop=True)
    parts = text.split()
    try:
        speed, steer = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
    except ValueError:
        speed = steer = math.nan
    if not (math.isfinite(speed) and math.isfinite(steer)):
        raise ConfigError(
            f"{where}: expected 'SPEED_MPS STEER_RAD', 'stop' or 'estop', got {text!r}"
        )
    return Setpoint(speed, steer)


class StdinPattern:
    """Setpoints typed on a text stream, one ``SPEED STEER`` line each; keeps the last one.

    A reader thread consumes the stream; a bad line is reported on stderr and ignored.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._lock = threading.Lock()
        self._current = Setpoint(0.0, 0.0)
        self.errors = 0
        self._thread = threading.Thread(target=self._read, name="stdin-commands", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            try:
                parsed = parse_setpoint_line(line)
            except ConfigError as err:
                self.errors += 1
                print(err, file=sys.stderr)
                continue
            if parsed is not None:
                with self._lock:
                    self._current = parsed

    def setpoint(self, elapsed_s: float) -> Setpoint:
        """The last setpoint typed."""
        with self._lock:
            return self._current
