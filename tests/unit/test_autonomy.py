"""Fallback autonomy in the simulated world: route following, obstacle stop, risk stop."""

from __future__ import annotations

import itertools
import math

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy import (
    AutonomyInput,
    AutonomyOutput,
    AutonomyProvider,
    AutonomyStatus,
    Pose,
    RangeReading,
    RiskStop,
    RouteFollower,
    RouteFollowerConfig,
)
from teledrive.vehicle.world import Circle, World, WorldMap

DT_S = 0.02
ROUTE = ((0.0, 0.0), (10.0, 0.0), (15.0, 5.0), (15.0, 15.0), (5.0, 15.0))


def drive(world: World, provider: AutonomyProvider, max_s: float) -> list[AutonomyOutput]:
    """Run the provider in the world at 50 Hz until it reports anything but OK and stands."""
    outputs: list[AutonomyOutput] = []
    for k in range(round(max_s / DT_S)):
        out = provider.step(world.autonomy_input(k * DT_S * 1000.0))
        outputs.append(out)
        world.step(DT_S, out.speed_mps, out.steer_rad)
        if out.status is not AutonomyStatus.OK and world.odometry().speed_mps == 0.0:
            break
    return outputs


def test_route_follower_completes_the_route() -> None:
    world = World(WorldMap(ROUTE))
    follower = RouteFollower()
    follower.set_route(ROUTE)
    outputs = drive(world, follower, 120.0)
    assert outputs[-1].status is AutonomyStatus.DONE
    pose = world.odometry().pose
    assert math.hypot(pose.x_m - 5.0, pose.y_m - 15.0) <= follower.config.goal_tolerance_m + 0.1
    assert not world.collided
    route_m = 10.0 + math.hypot(5.0, 5.0) + 10.0 + 10.0
    assert route_m - 1.0 < world.odometry().distance_m <= route_m
    assert max(o.speed_mps for o in outputs) <= follower.config.max_speed_mps
    assert {o.status for o in outputs} == {AutonomyStatus.OK, AutonomyStatus.DONE}


def test_route_follower_stays_near_the_route() -> None:
    world = World(WorldMap(ROUTE))
    follower = RouteFollower()
    follower.set_route(ROUTE)
    worst_m = 0.0
    for k in range(3000):
        out = follower.step(world.autonomy_input(k * 20.0))
        if out.status is not AutonomyStatus.OK:
            break
        world.step(DT_S, out.speed_mps, out.steer_rad)
        p = world.odometry().pose
        worst_m = max(
            worst_m, min(_segment_distance(p, a, b) for a, b in itertools.pairwise(ROUTE))
        )
    assert worst_m < 0.5


def _segment_distance(p: Pose, a: tuple[float, float], b: tuple[float, float]) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    u = max(0.0, min(1.0, ((p.x_m - a[0]) * dx + (p.y_m - a[1]) * dy) / (dx * dx + dy * dy)))
    return math.hypot(a[0] + u * dx - p.x_m, a[1] + u * dy - p.y_m)


@pytest.mark.parametrize("obstacle_x_m", [4.0, 7.0, 9.5])
def test_obstacle_on_the_route_stops_before_it_and_reports_blocked(obstacle_x_m: float) -> None:
    world = World(WorldMap(ROUTE, (Circle(obstacle_x_m, 0.0, 0.4),)))
    follower = RouteFollower()
    follower.set_route(ROUTE)
    outputs = drive(world, follower, 60.0)
    assert outputs[-1].status is AutonomyStatus.BLOCKED
    assert "obstacle" in outputs[-1].detail
    assert world.odometry().speed_mps == 0.0
    assert not world.collided
    assert world.nearest_obstacle_gap_m() > 0.0
    front_x = world.odometry().pose.x_m + world.params.wheelbase_m
    gap_m = obstacle_x_m - 0.4 - front_x
    assert 0.0 < gap_m <= follower.config.obstacle_margin_m + 0.2


def test_obstacle_beside_the_route_is_passed() -> None:
    world = World(WorldMap(ROUTE, (Circle(5.0, 1.5, 0.4),)))
    follower = RouteFollower()
    follower.set_route(ROUTE)
    outputs = drive(world, follower, 120.0)
    assert outputs[-1].status is AutonomyStatus.DONE
    assert not world.collided


def test_blocked_as_soon_as_the_obstacle_is_inside_stopping_distance_plus_margin() -> None:
    cfg = RouteFollowerConfig()
    follower = RouteFollower(cfg)
    follower.set_route(ROUTE)
    speed = 1.5
    inside_m = speed**2 / (2 * cfg.decel_mps2) + cfg.obstacle_margin_m
    pose = Pose(1.0, 0.0, 0.0)
    blocked = follower.step(AutonomyInput(0.0, pose, speed, (RangeReading(0.0, inside_m),)))
    clear = follower.step(AutonomyInput(0.0, pose, speed, (RangeReading(0.0, inside_m + 0.5),)))
    assert blocked.status is AutonomyStatus.BLOCKED
    assert clear.status is AutonomyStatus.OK
    assert clear.speed_mps <= math.sqrt(
        2 * cfg.decel_mps2 * (inside_m + 0.5 - cfg.obstacle_margin_m)
    )


def test_no_route_and_off_route() -> None:
    follower = RouteFollower()
    inp = AutonomyInput(0.0, Pose(0.0, 0.0, 0.0), 0.0)
    assert follower.step(inp).status is AutonomyStatus.NO_ROUTE
    follower.set_route(ROUTE)
    far = AutonomyInput(0.0, Pose(5.0, 8.0, 0.0), 0.0)
    out = follower.step(far)
    assert out.status is AutonomyStatus.NO_ROUTE
    assert out.speed_mps == 0.0
    assert "off the route" in out.detail


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        RouteFollower().set_route([(0.0, 0.0), (math.nan, 1.0)])
    with pytest.raises(ConfigError, match="decel_mps2"):
        RouteFollowerConfig(decel_mps2=0.0)
    with pytest.raises(ConfigError):
        RiskStop(decel_mps2=-1.0)
    follower = RouteFollower()
    follower.set_route(ROUTE)
    garbage = (RangeReading(math.nan, 0.1), RangeReading(0.0, math.inf))
    assert follower.step(AutonomyInput(0.0, Pose(1.0, 0.0, 0.0), 0.5, garbage)).status is (
        AutonomyStatus.OK
    )


@pytest.mark.parametrize("decel_mps2", [1.5, 2.5])
def test_risk_stop_from_2mps_in_the_world(decel_mps2: float) -> None:
    world = World(WorldMap(((0.0, 0.0), (100.0, 0.0))))
    while world.odometry().speed_mps < 2.0:
        world.step(DT_S, 2.0, 0.0)
    stop = RiskStop(decel_mps2)
    stop.begin(0.0, world.odometry().speed_mps, 0.0)
    start_m = world.odometry().distance_m
    t_ms = 0.0
    while world.odometry().speed_mps > 0.0 and t_ms < 10_000.0:
        t_ms += DT_S * 1000.0
        world.step(DT_S, *stop.command(t_ms))
    margin_s = 0.1
    assert t_ms / 1000.0 <= 2.0 / decel_mps2 + margin_s
    assert world.odometry().distance_m - start_m <= 2.0**2 / (2 * decel_mps2) + 2.0 * margin_s
    for _ in range(100):  # and holds
        t_ms += DT_S * 1000.0
        world.step(DT_S, *stop.command(t_ms))
    assert world.odometry().speed_mps == 0.0
    assert stop.stopped(t_ms)


def test_risk_stop_profile() -> None:
    stop = RiskStop(1.5)
    stop.begin(1000.0, -2.0, 0.3)
    assert stop.command(1000.0) == (-2.0, 0.3)
    assert stop.command(1500.0)[0] == pytest.approx(-1.25)
    assert stop.command(1000.0 + 2000.0 / 1.5)[0] == 0.0
    assert stop.command(9000.0) == (0.0, 0.3)
    assert stop.stop_time_ms() == pytest.approx(2000.0 / 1.5)
    assert not stop.stopped(1100.0)


def test_world_range_sensor_and_collision() -> None:
    world = World(WorldMap(((0.0, 0.0), (10.0, 0.0)), (Circle(5.0, 0.0, 1.0),)))
    ahead = {r.bearing_rad: r.range_m for r in world.ranges((0.0, math.pi / 2))}
    assert ahead[0.0] == pytest.approx(5.0 - 1.0 - world.params.wheelbase_m)
    assert ahead[math.pi / 2] == world.params.sensor_range_m
    while not world.collided and world.time_s < 10.0:
        world.step(DT_S, 1.0, 0.0)
    assert world.collided
    with pytest.raises(ValueError, match="dt_s"):
        world.step(-1.0, 0.0, 0.0)


def test_world_bicycle_turns_on_a_circle() -> None:
    world = World(WorldMap(((0.0, 0.0), (1.0, 0.0))))
    steer = 0.3
    radius_m = world.params.wheelbase_m / math.tan(steer)
    for _ in range(1000):
        world.step(0.005, 1.0, steer)
    pose = world.odometry().pose
    # centre of the turning circle is at (0, R) once the steering has settled
    assert math.hypot(pose.x_m - 0.0, pose.y_m - radius_m) == pytest.approx(radius_m, rel=0.05)
