"""A small simulated world for the fallback autonomy and the synthetic camera, sans-I/O.

A flat map holds a route (waypoints) and circular obstacles. The vehicle is a kinematic bicycle
(pose at the rear axle) driven by the same ``(speed_mps, steer_rad)`` setpoints the MCU gets;
the actual speed and steering follow the setpoints within acceleration and steering-rate limits.
:meth:`World.step` advances time by ``dt_s``; nothing here reads a clock.

Sensors: odometry (pose, speed, distance travelled; exact) and a fan of range rays intersected
with the obstacle circles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyInput, Pose, RangeReading

DEFAULT_BEARINGS_RAD: tuple[float, ...] = tuple(math.radians(d) for d in range(-30, 31, 5))


@dataclass(frozen=True, slots=True)
class Circle:
    """A round obstacle."""

    x_m: float
    y_m: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class WorldMap:
    """The static world: a route to follow and obstacles."""

    route: tuple[tuple[float, float], ...]
    obstacles: tuple[Circle, ...] = ()


@dataclass(frozen=True, slots=True)
class VehicleParams:
    """Bicycle-model parameters.

    Attributes:
        wheelbase_m: Axle distance.
        radius_m: Footprint radius around the rear axle used for collision checks.
        max_accel_mps2: How fast the actual speed can follow a setpoint (both directions).
        max_steer_rad: Steering limit.
        steer_rate_radps: How fast the steering can follow a setpoint.
        sensor_range_m: Range reported by a ray that hits nothing.
    """

    wheelbase_m: float = 0.6
    radius_m: float = 0.3
    max_accel_mps2: float = 4.0
    max_steer_rad: float = 0.5
    steer_rate_radps: float = 3.0
    sensor_range_m: float = 15.0


@dataclass(slots=True)
class Odometry:
    """Vehicle state as its own sensors report it."""

    pose: Pose
    speed_mps: float
    steer_rad: float
    distance_m: float


@dataclass
class World:
    """The simulated world and the vehicle in it.

    Args:
        world_map: Route and obstacles.
        start: Initial pose (defaults to the first waypoint, heading to the second).
        params: Vehicle parameters.
    """

    world_map: WorldMap
    start: Pose | None = None
    params: VehicleParams = field(default_factory=VehicleParams)
    time_s: float = 0.0
    collided: bool = False

    def __post_init__(self) -> None:
        if self.start is None:
            self.start = _route_start(self.world_map.route)
        self._pose = self.start
        self._speed_mps = 0.0
        self._steer_rad = 0.0
        self._distance_m = 0.0

    def step(self, dt_s: float, speed_mps: float, steer_rad: float) -> None:
        """Advance ``dt_s`` seconds with the given setpoints (non-finite ones count as zero)."""
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise ConfigError(f"World.step: dt_s must be finite and >= 0, got {dt_s!r}")
        p = self.params
        target_v = speed_mps if math.isfinite(speed_mps) else 0.0
        target_s = steer_rad if math.isfinite(steer_rad) else 0.0
        target_s = max(-p.max_steer_rad, min(p.max_steer_rad, target_s))
        self._speed_mps = _approach(self._speed_mps, target_v, p.max_accel_mps2 * dt_s)
        self._steer_rad = _approach(self._steer_rad, target_s, p.steer_rate_radps * dt_s)
        x, y, h = self._pose.x_m, self._pose.y_m, self._pose.heading_rad
        travel_m = self._speed_mps * dt_s
        h_next = h + travel_m * math.tan(self._steer_rad) / p.wheelbase_m
        h_mid = (h + h_next) / 2
        self._pose = Pose(x + travel_m * math.cos(h_mid), y + travel_m * math.sin(h_mid), h_next)
        self._distance_m += abs(travel_m)
        self.time_s += dt_s
        if self.nearest_obstacle_gap_m() <= 0:
            self.collided = True

    def odometry(self) -> Odometry:
        """Pose, actual speed and steering, and distance travelled."""
        return Odometry(self._pose, self._speed_mps, self._steer_rad, self._distance_m)

    def ranges(
        self, bearings_rad: Sequence[float] = DEFAULT_BEARINGS_RAD
    ) -> tuple[RangeReading, ...]:
        """One range reading per bearing, from the vehicle's front (rear axle + wheelbase)."""
        h = self._pose.heading_rad
        fx = self._pose.x_m + self.params.wheelbase_m * math.cos(h)
        fy = self._pose.y_m + self.params.wheelbase_m * math.sin(h)
        return tuple(RangeReading(b, self.ray_cast(fx, fy, h + b)) for b in bearings_rad)

    def ray_cast(self, x_m: float, y_m: float, heading_rad: float) -> float:
        """Distance along a ray to the first obstacle, capped at the sensor range."""
        dx, dy = math.cos(heading_rad), math.sin(heading_rad)
        best = self.params.sensor_range_m
        for c in self.world_map.obstacles:
            hit = _ray_circle(x_m - c.x_m, y_m - c.y_m, dx, dy, c.radius_m)
            if hit is not None:
                best = min(best, hit)
        return best

    def autonomy_input(self, now_ms: float) -> AutonomyInput:
        """The input an autonomy provider gets at ``now_ms``."""
        odo = self.odometry()
        return AutonomyInput(now_ms, odo.pose, odo.speed_mps, self.ranges())

    def nearest_obstacle_gap_m(self) -> float:
        """Clearance between the vehicle footprint and the nearest obstacle (inf if none).

        The footprint is two circles of ``radius_m``, around the rear and the front axle.
        """
        h = self._pose.heading_rad
        axles = (
            (self._pose.x_m, self._pose.y_m),
            (
                self._pose.x_m + self.params.wheelbase_m * math.cos(h),
                self._pose.y_m + self.params.wheelbase_m * math.sin(h),
            ),
        )
        gaps = (
            math.hypot(c.x_m - ax, c.y_m - ay) - c.radius_m - self.params.radius_m
            for c in self.world_map.obstacles
            for ax, ay in axles
        )
        return min(gaps, default=math.inf)


def _route_start(route: tuple[tuple[float, float], ...]) -> Pose:
    if not route:
        raise ConfigError("World: a map without a route needs an explicit start pose")
    (x0, y0) = route[0]
    heading = 0.0
    if len(route) > 1:
        heading = math.atan2(route[1][1] - y0, route[1][0] - x0)
    return Pose(x0, y0, heading)


def _approach(current: float, target: float, max_step: float) -> float:
    return current + max(-max_step, min(max_step, target - current))


def _ray_circle(ox: float, oy: float, dx: float, dy: float, r: float) -> float | None:
    """Smallest t >= 0 with |o + t*d| = r (d a unit vector), or None."""
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    if c <= 0:
        return 0.0
    disc = b * b - c
    if disc < 0:
        return None
    t = -b - math.sqrt(disc)
    return t if t >= 0 else None
