"""The simulated world as the vehicle's fallback autonomy: a :class:`World` plus a route follower.

:class:`SimWorld` is what the vehicle service passes to the controller as its
:class:`~teledrive.vehicle.control.AutonomySource`. Each :meth:`SimWorld.step` advances the
bicycle model by the time elapsed since the previous step, driven by what the motor controller
*measures* (wheel speed and the steering in force, from its telemetry), so the world moves the
way the MCU actually drives, whoever commands it. Then the route follower computes its command
and status from the new pose and range readings.

The camera thread reads the world through :meth:`SimWorld.snapshot`, an immutable
:class:`SimSnapshot` replaced after every step. Obstacles can be added and removed at run time
from any thread.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from teledrive.shared.config import SimSection
from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus, Pose
from teledrive.vehicle.autonomy.route_follower import RouteFollower
from teledrive.vehicle.control import MotorPort
from teledrive.vehicle.world import Circle, VehicleParams, World, WorldMap

logger = logging.getLogger(__name__)

MeasuredMotion = Callable[[], tuple[float, float] | None]
"""Returns the measured ``(wheel_speed_mps, steer_rad)``, or None when nothing is known."""

SIM_VEHICLE_PARAMS = VehicleParams(max_accel_mps2=100.0)
"""The wheel speed is measured, so the model follows it at once; the steering keeps the
servo's rate limit (the MCU reports the steering setpoint in force, not the servo angle)."""

DEFAULT_MAX_SUBSTEP_MS = 20.0
DEFAULT_MAX_GAP_MS = 1000.0


def motor_motion(motor: MotorPort) -> MeasuredMotion:
    """A :data:`MeasuredMotion` reading the motor link's newest telemetry.

    Returns None (the vehicle stands) while the link is down or before the first telemetry.
    """

    def measured() -> tuple[float, float] | None:
        telemetry = motor.last_telemetry
        if telemetry is None or not motor.connected:
            return None
        return telemetry.wheel_speed_mmps / 1000.0, telemetry.steer_mrad / 1000.0

    return measured


@dataclass(frozen=True, slots=True)
class SimSnapshot:
    """The world after one step, for readers on other threads (camera, tests).

    Attributes:
        now_ms: Vehicle-clock time of the step (None before the first step).
        pose: Vehicle pose (rear axle) in the map frame.
        speed_mps: Actual speed of the model.
        steer_rad: Actual steering angle of the model.
        distance_m: Distance travelled since the start.
        obstacle_gap_m: Clearance to the nearest obstacle (inf without obstacles).
        collided: Whether the vehicle has ever touched an obstacle.
        status: The route follower's status at this step.
        detail: The route follower's reason when the status is not OK.
        route: The route being followed.
        obstacles: The obstacles now in the world.
        wheelbase_m: Axle distance (for drawing the vehicle).
        radius_m: Footprint radius around each axle (for drawing the vehicle).
    """

    now_ms: float | None
    pose: Pose
    speed_mps: float
    steer_rad: float
    distance_m: float
    obstacle_gap_m: float
    collided: bool
    status: AutonomyStatus
    detail: str
    route: tuple[tuple[float, float], ...]
    obstacles: tuple[Circle, ...]
    wheelbase_m: float
    radius_m: float


class SimWorld:
    """A simulated world that is also the vehicle's fallback autonomy.

    Args:
        world_map: Route and obstacles. The follower drives this route; an empty route
            makes the autonomy report ``NO_ROUTE`` (then ``start`` is required).
        measured: Where the measured wheel speed and steering come from
            (:func:`motor_motion` for a motor link).
        start: Initial pose; default: the first waypoint, facing the second.
        params: Bicycle-model parameters (default :data:`SIM_VEHICLE_PARAMS`).
        follower: The route follower (a default one if None); its route is replaced.
        max_substep_ms: Longest integration step; a longer gap is split.
        max_gap_ms: A gap between steps longer than this is integrated as this long (a stalled
            loop must not teleport the vehicle).

    Raises:
        ConfigError: no route and no start pose, or a non-finite waypoint.
    """

    def __init__(
        self,
        world_map: WorldMap,
        *,
        measured: MeasuredMotion,
        start: Pose | None = None,
        params: VehicleParams = SIM_VEHICLE_PARAMS,
        follower: RouteFollower | None = None,
        max_substep_ms: float = DEFAULT_MAX_SUBSTEP_MS,
        max_gap_ms: float = DEFAULT_MAX_GAP_MS,
    ) -> None:
        if not (0 < max_substep_ms <= max_gap_ms and math.isfinite(max_gap_ms)):
            raise ConfigError(
                f"SimWorld: need 0 < max_substep_ms <= max_gap_ms, got {max_substep_ms} "
                f"and {max_gap_ms}"
            )
        self._world = World(world_map, start=start, params=params)
        self.follower = follower if follower is not None else RouteFollower()
        self.follower.set_route(world_map.route)
        self._measured = measured
        self._max_substep_s = max_substep_ms / 1000.0
        self._max_gap_ms = max_gap_ms
        self._lock = threading.Lock()
        self._last_ms: float | None = None
        self._collision_logged = False
        self.gaps_clamped = 0
        """How many times a gap between steps was longer than ``max_gap_ms``."""
        self._snapshot = self._make_snapshot(None, AutonomyStatus.OK, "")

    # ---- the AutonomySource ----------------------------------------------------------------

    def step(self, now_ms: float) -> AutonomyOutput:
        """Advance the world to ``now_ms`` with the measured motion; the follower's output."""
        with self._lock:
            if not math.isfinite(now_ms):
                return AutonomyOutput(AutonomyStatus.NO_ROUTE, 0.0, 0.0, "non-finite step time")
            self._advance(now_ms)
            out = self.follower.step(self._world.autonomy_input(now_ms))
            self._snapshot = self._make_snapshot(now_ms, out.status, out.detail)
        if self._snapshot.collided and not self._collision_logged:
            self._collision_logged = True
            logger.warning("sim world: the vehicle hit an obstacle at %s", self._snapshot.pose)
        return out

    def _advance(self, now_ms: float) -> None:
        last_ms = self._last_ms
        if last_ms is not None and now_ms <= last_ms:
            return  # a clock never runs backwards; a repeated time moves nothing
        self._last_ms = now_ms
        if last_ms is None:
            return
        gap_ms = now_ms - last_ms
        if gap_ms > self._max_gap_ms:
            self.gaps_clamped += 1
            logger.warning(
                "sim world: %.0f ms between steps, integrating %.0f ms", gap_ms, self._max_gap_ms
            )
            gap_ms = self._max_gap_ms
        motion = self._measured()
        speed_mps, steer_rad = motion if motion is not None else (0.0, 0.0)
        remaining_s = gap_ms / 1000.0
        while remaining_s > 1e-9:
            dt_s = min(self._max_substep_s, remaining_s)
            self._world.step(dt_s, speed_mps, steer_rad)
            remaining_s -= dt_s

    # ---- reading and changing the world ----------------------------------------------------

    def snapshot(self) -> SimSnapshot:
        """The world after the latest step (safe from any thread)."""
        return self._snapshot

    @property
    def route(self) -> tuple[tuple[float, float], ...]:
        """The route being followed."""
        return self._world.world_map.route

    def add_obstacle(self, obstacle: Circle) -> None:
        """Put an obstacle into the world (seen by the range sensor from the next step on)."""
        if not all(math.isfinite(v) for v in (obstacle.x_m, obstacle.y_m, obstacle.radius_m)):
            raise ConfigError(f"SimWorld.add_obstacle: non-finite obstacle {obstacle}")
        if obstacle.radius_m <= 0:
            raise ConfigError(f"SimWorld.add_obstacle: radius must be > 0, got {obstacle}")
        self._set_obstacles(lambda current: (*current, obstacle))

    def remove_obstacle(self, obstacle: Circle) -> bool:
        """Take an obstacle out of the world; False if it was not there."""
        removed = False

        def without(current: tuple[Circle, ...]) -> tuple[Circle, ...]:
            nonlocal removed
            kept = tuple(c for c in current if c != obstacle)
            removed = len(kept) != len(current)
            return kept

        self._set_obstacles(without)
        return removed

    def _set_obstacles(self, change: Callable[[tuple[Circle, ...]], tuple[Circle, ...]]) -> None:
        with self._lock:
            old = self._world.world_map
            self._world.world_map = WorldMap(old.route, change(old.obstacles))
            s = self._snapshot
            self._snapshot = self._make_snapshot(s.now_ms, s.status, s.detail)

    def _make_snapshot(
        self, now_ms: float | None, status: AutonomyStatus, detail: str
    ) -> SimSnapshot:
        world = self._world
        odo = world.odometry()
        return SimSnapshot(
            now_ms=now_ms,
            pose=odo.pose,
            speed_mps=odo.speed_mps,
            steer_rad=odo.steer_rad,
            distance_m=odo.distance_m,
            obstacle_gap_m=world.nearest_obstacle_gap_m(),
            collided=world.collided,
            status=status,
            detail=detail,
            route=world.world_map.route,
            obstacles=world.world_map.obstacles,
            wheelbase_m=world.params.wheelbase_m,
            radius_m=world.params.radius_m,
        )


def sim_world_from_config(section: SimSection, *, measured: MeasuredMotion) -> SimWorld:
    """Builds the world of a ``[sim]`` section.

    Raises:
        ConfigError: the section does not describe a usable world.
    """
    route = tuple((x, y) for x, y in section.route)
    obstacles = tuple(Circle(x, y, r) for x, y, r in section.obstacles)
    start = Pose(*section.start) if section.start is not None else None
    return SimWorld(WorldMap(route, obstacles), measured=measured, start=start)
