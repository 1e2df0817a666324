"""Built-in fallback autonomy: pure pursuit along a waypoint route, with an obstacle stop.

Each step:

1. Project the pose onto the route (searching a few segments ahead of the last projection, so a
   route that passes near itself is not short-cut). Too far off the route -> ``NO_ROUTE``.
2. Pure pursuit: the goal point lies ``lookahead = max(lookahead_min_m, lookahead_gain_s * v)``
   further along the route; the arc through it has curvature ``k = 2 * y / d**2`` (``y`` its
   lateral offset, ``d`` its distance in the vehicle frame); steering ``atan(wheelbase * k)``.
3. Speed: the lowest of the route limit, the lateral-acceleration limit on that arc, a braking
   profile to the end of the route, and a braking profile to the nearest obstacle in the
   driving corridor (``sqrt(2 * decel * (distance - margin))``).
4. ``BLOCKED`` when that obstacle lies inside the stopping distance at the current speed plus
   the margin; ``DONE`` within ``goal_tolerance_m`` of the last waypoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import (
    AutonomyInput,
    AutonomyOutput,
    AutonomyStatus,
    RangeReading,
)

_SEARCH_SEGMENTS = 4


@dataclass(frozen=True, slots=True)
class RouteFollowerConfig:
    """Tuning of the route follower (defaults suit a small delivery robot).

    Attributes:
        wheelbase_m: Axle distance of the bicycle model.
        max_speed_mps: Route speed limit.
        max_steer_rad: Steering limit.
        max_lateral_accel_mps2: Limits speed on curves: ``v**2 * curvature``.
        decel_mps2: Braking used for the obstacle and end-of-route profiles.
        lookahead_min_m: Smallest pure-pursuit lookahead.
        lookahead_gain_s: Lookahead grows by this many seconds of travel.
        obstacle_margin_m: Distance kept to an obstacle when stopped.
        block_buffer_m: Slack added to the stopping distance before reporting ``BLOCKED``.
        corridor_half_width_m: Readings further sideways than this are not in the way.
        goal_tolerance_m: Distance to the last waypoint that counts as arrived.
        max_cross_track_m: Further than this from the route -> ``NO_ROUTE``.
    """

    wheelbase_m: float = 0.6
    max_speed_mps: float = 1.5
    max_steer_rad: float = 0.5
    max_lateral_accel_mps2: float = 1.0
    decel_mps2: float = 1.5
    lookahead_min_m: float = 0.8
    lookahead_gain_s: float = 0.6
    obstacle_margin_m: float = 0.6
    block_buffer_m: float = 0.1
    corridor_half_width_m: float = 0.45
    goal_tolerance_m: float = 0.3
    max_cross_track_m: float = 3.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            name, value = field.name, getattr(self, field.name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"RouteFollowerConfig: {name} must be > 0, got {value!r}")


class RouteFollower:
    """Pure-pursuit route follower implementing :class:`AutonomyProvider`."""

    def __init__(self, config: RouteFollowerConfig | None = None) -> None:
        self.config = config or RouteFollowerConfig()
        self._route: tuple[tuple[float, float], ...] = ()
        self._cum_m: list[float] = [0.0]
        self._segment = 0

    def set_route(self, waypoints: Sequence[tuple[float, float]]) -> None:
        """Replace the route and restart progress from its first segment."""
        points = tuple((float(x), float(y)) for x, y in waypoints)
        if not all(math.isfinite(v) for p in points for v in p):
            raise ConfigError("RouteFollower.set_route: non-finite waypoint")
        self._route = points
        self._cum_m = [0.0]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            self._cum_m.append(self._cum_m[-1] + math.hypot(x1 - x0, y1 - y0))
        self._segment = 0

    @property
    def route(self) -> tuple[tuple[float, float], ...]:
        """The current route."""
        return self._route

    def step(self, inp: AutonomyInput) -> AutonomyOutput:
        """Compute one command; see the module docstring for the steps."""
        cfg = self.config
        if len(self._route) < 2:
            return _halt(AutonomyStatus.NO_ROUTE, "no route (fewer than 2 waypoints)")
        px, py = inp.pose.x_m, inp.pose.y_m
        s_m, cross_m = self._project(px, py)
        if cross_m > cfg.max_cross_track_m:
            return _halt(AutonomyStatus.NO_ROUTE, f"{cross_m:.2f} m off the route")
        gx, gy = self._route[-1]
        to_goal_m = max(self._cum_m[-1] - s_m, math.hypot(gx - px, gy - py))
        if to_goal_m <= cfg.goal_tolerance_m:
            return _halt(AutonomyStatus.DONE, "route complete")

        speed = abs(inp.speed_mps)
        lookahead_m = max(cfg.lookahead_min_m, cfg.lookahead_gain_s * speed)
        tx, ty = self._point_at(s_m + lookahead_m)
        curvature = _pursuit_curvature(inp, tx, ty)
        steer = math.atan(cfg.wheelbase_m * curvature)
        steer = max(-cfg.max_steer_rad, min(cfg.max_steer_rad, steer))

        v_limit = cfg.max_speed_mps
        if abs(curvature) > 1e-9:
            v_limit = min(v_limit, math.sqrt(cfg.max_lateral_accel_mps2 / abs(curvature)))
        v_limit = min(v_limit, _brake_profile(to_goal_m - cfg.goal_tolerance_m / 2, cfg))

        obstacle_m = self._obstacle_distance(inp.ranges)
        status, detail = AutonomyStatus.OK, ""
        if obstacle_m is not None:
            v_limit = min(v_limit, _brake_profile(obstacle_m - cfg.obstacle_margin_m, cfg))
            stopping_m = speed * speed / (2 * cfg.decel_mps2)
            if obstacle_m <= stopping_m + cfg.obstacle_margin_m + cfg.block_buffer_m:
                status = AutonomyStatus.BLOCKED
                detail = f"obstacle {obstacle_m:.2f} m ahead, inside stopping distance + margin"
        return AutonomyOutput(status, v_limit, steer, detail)

    def _project(self, px: float, py: float) -> tuple[float, float]:
        """Arc length of the closest route point near the last progress, and the distance."""
        best = (math.inf, 0.0, self._segment)
        last = min(len(self._route) - 1, self._segment + _SEARCH_SEGMENTS)
        for i in range(self._segment, last):
            (x0, y0), (x1, y1) = self._route[i], self._route[i + 1]
            dx, dy = x1 - x0, y1 - y0
            length_sq = dx * dx + dy * dy
            u = 0.0 if length_sq == 0 else ((px - x0) * dx + (py - y0) * dy) / length_sq
            u = max(0.0, min(1.0, u))
            dist = math.hypot(x0 + u * dx - px, y0 + u * dy - py)
            if dist < best[0]:
                best = (dist, self._cum_m[i] + u * math.sqrt(length_sq), i)
        self._segment = best[2]
        return best[1], best[0]

    def _point_at(self, s_m: float) -> tuple[float, float]:
        """The route point at arc length ``s_m`` (clamped to the route)."""
        if s_m >= self._cum_m[-1]:
            return self._route[-1]
        i = self._segment
        while i + 1 < len(self._cum_m) - 1 and self._cum_m[i + 1] < s_m:
            i += 1
        seg_m = self._cum_m[i + 1] - self._cum_m[i]
        u = 0.0 if seg_m == 0 else (s_m - self._cum_m[i]) / seg_m
        (x0, y0), (x1, y1) = self._route[i], self._route[i + 1]
        return x0 + u * (x1 - x0), y0 + u * (y1 - y0)

    def _obstacle_distance(self, ranges: tuple[RangeReading, ...]) -> float | None:
        """Forward distance to the nearest reading inside the driving corridor."""
        nearest: float | None = None
        for r in ranges:
            if not (math.isfinite(r.range_m) and math.isfinite(r.bearing_rad)):
                continue
            ahead_m = r.range_m * math.cos(r.bearing_rad)
            aside_m = r.range_m * math.sin(r.bearing_rad)
            if ahead_m > 0 and abs(aside_m) <= self.config.corridor_half_width_m:
                nearest = ahead_m if nearest is None else min(nearest, ahead_m)
        return nearest


def _pursuit_curvature(inp: AutonomyInput, tx: float, ty: float) -> float:
    dx, dy = tx - inp.pose.x_m, ty - inp.pose.y_m
    cos_h, sin_h = math.cos(inp.pose.heading_rad), math.sin(inp.pose.heading_rad)
    lateral = -sin_h * dx + cos_h * dy
    dist_sq = dx * dx + dy * dy
    return 0.0 if dist_sq < 1e-12 else 2.0 * lateral / dist_sq


def _brake_profile(distance_m: float, cfg: RouteFollowerConfig) -> float:
    return math.sqrt(2.0 * cfg.decel_mps2 * max(0.0, distance_m))


def _halt(status: AutonomyStatus, detail: str) -> AutonomyOutput:
    return AutonomyOutput(status, 0.0, 0.0, detail)
