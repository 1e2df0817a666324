"""The interface between the supervisor and an autonomy provider.

A provider is sans-I/O: each control step it gets an :class:`AutonomyInput` (time, pose and
odometry speed, forward range readings) and returns an :class:`AutonomyOutput` (a speed and
steering command plus a status). The supervisor applies the command only in ``AUTONOMY`` and
goes to a minimal-risk stop when the status is anything but ``OK``. A real AV stack plugs in
by implementing :class:`AutonomyProvider`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class AutonomyStatus(enum.StrEnum):
    """Whether the provider can keep driving."""

    OK = "ok"
    BLOCKED = "blocked"
    NO_ROUTE = "no_route"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Pose:
    """Planar pose in the map frame (rear axle for a bicycle model)."""

    x_m: float
    y_m: float
    heading_rad: float


@dataclass(frozen=True, slots=True)
class RangeReading:
    """One ray of a range sensor, relative to the vehicle heading.

    Attributes:
        bearing_rad: Ray direction, + = left of the heading.
        range_m: Distance to the first hit, or the sensor's maximum range when nothing was hit.
    """

    bearing_rad: float
    range_m: float


@dataclass(frozen=True, slots=True)
class AutonomyInput:
    """What a provider sees each step."""

    now_ms: float
    pose: Pose
    speed_mps: float
    ranges: tuple[RangeReading, ...] = ()


@dataclass(frozen=True, slots=True)
class AutonomyOutput:
    """What a provider asks for each step; ``detail`` says why when the status is not OK."""

    status: AutonomyStatus
    speed_mps: float
    steer_rad: float
    detail: str = ""


class AutonomyProvider(Protocol):
    """An autonomy stack the supervisor can fall back to."""

    def set_route(self, waypoints: Sequence[tuple[float, float]]) -> None:
        """Replace the route: waypoints ``(x_m, y_m)`` in the map frame, in driving order."""
        ...

    def step(self, inp: AutonomyInput) -> AutonomyOutput:
        """Compute one command from the current pose, speed and range readings."""
        ...
