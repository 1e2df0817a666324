"""The simulated world as fallback autonomy: measured motion in, follower output out."""

from __future__ import annotations

import itertools
import math

import pytest

from teledrive.shared.config import (
    SimSection,
    VehicleConfig,
    default_route,
    parse_config,
    simulated_world,
)
from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyStatus, Pose
from teledrive.vehicle.mcu_codec import Telemetry
from teledrive.vehicle.sim_world import SimWorld, motor_motion, sim_world_from_config
from teledrive.vehicle.world import Circle, WorldMap

STRAIGHT = ((0.0, 0.0), (20.0, 0.0))


class Motion:
    """A settable measured motion (what the MCU telemetry would report)."""

    def __init__(self, speed_mps: float = 0.0, steer_rad: float = 0.0) -> None:
        self.value: tuple[float, float] | None = (speed_mps, steer_rad)

    def __call__(self) -> tuple[float, float] | None:
        return self.value


def run(world: SimWorld, start_ms: float, seconds: float, period_ms: float = 20.0) -> float:
    now_ms = start_ms
    for _ in range(round(seconds * 1000 / period_ms)):
        now_ms += period_ms
        world.step(now_ms)
    return now_ms


def test_world_moves_by_the_measured_motion_not_by_commands() -> None:
    motion = Motion(1.0)
    world = SimWorld(WorldMap(STRAIGHT), measured=motion)
    world.step(0.0)
    run(world, 0.0, 2.0)
    snap = world.snapshot()
    assert snap.pose.x_m == pytest.approx(2.0, abs=0.03)
    assert snap.pose.y_m == pytest.approx(0.0, abs=1e-9)
    assert snap.speed_mps == pytest.approx(1.0)
    assert snap.distance_m == pytest.approx(2.0, abs=0.03)


def test_no_measurement_means_standing_still() -> None:
    motion = Motion()
    motion.value = None
    world = SimWorld(WorldMap(STRAIGHT), measured=motion)
    run(world, 0.0, 1.0)
    assert world.snapshot().pose == Pose(0.0, 0.0, 0.0)


def test_steering_turns_left_for_positive_angles() -> None:
    world = SimWorld(WorldMap(STRAIGHT), measured=Motion(1.0, 0.3))
    run(world, 0.0, 1.0)
    pose = world.snapshot().pose
    assert pose.heading_rad > 0.2
    assert pose.y_m > 0.05


def test_irregular_steps_integrate_elapsed_time() -> None:
    world = SimWorld(WorldMap(STRAIGHT), measured=Motion(1.0))
    for now_ms in (0.0, 7.0, 80.0, 81.0, 500.0, 1000.0):
        world.step(now_ms)
    x_m = world.snapshot().pose.x_m
    assert x_m == pytest.approx(1.0, abs=0.01)
    world.step(990.0)  # time going backwards moves nothing, and is not integrated twice
    assert world.snapshot().pose.x_m == x_m
    world.step(1020.0)
    assert world.snapshot().pose.x_m == pytest.approx(x_m + 0.02)


def test_a_stalled_loop_does_not_teleport_the_vehicle() -> None:
    world = SimWorld(WorldMap(STRAIGHT), measured=Motion(1.0), max_gap_ms=500.0)
    world.step(0.0)
    world.step(10_000.0)
    assert world.snapshot().pose.x_m == pytest.approx(0.5, abs=0.01)
    assert world.gaps_clamped == 1


def test_follower_drives_the_route_and_reports_done_at_the_end() -> None:
    motion = Motion()
    world = SimWorld(WorldMap(((0.0, 0.0), (4.0, 0.0), (6.0, 2.0))), measured=motion)
    now_ms, statuses = 0.0, set()
    for _ in range(1500):
        now_ms += 20.0
        out = world.step(now_ms)
        statuses.add(out.status)
        motion.value = (out.speed_mps, out.steer_rad)  # an MCU that follows at once
        if out.status is AutonomyStatus.DONE:
            break
    assert statuses == {AutonomyStatus.OK, AutonomyStatus.DONE}
    pose = world.snapshot().pose
    assert math.hypot(pose.x_m - 6.0, pose.y_m - 2.0) < 0.5
    assert world.snapshot().status is AutonomyStatus.DONE


def test_obstacle_added_at_run_time_blocks_and_removing_it_clears() -> None:
    world = SimWorld(WorldMap(STRAIGHT), measured=Motion(1.5))
    run(world, 0.0, 0.5)
    assert world.snapshot().status is AutonomyStatus.OK
    rock = Circle(2.4, 0.0, 0.3)
    world.add_obstacle(rock)
    assert world.snapshot().obstacles == (rock,)
    out = world.step(520.0)
    assert out.status is AutonomyStatus.BLOCKED
    assert world.snapshot().obstacle_gap_m < 1.5
    assert world.remove_obstacle(rock)
    assert not world.remove_obstacle(rock)
    assert world.step(540.0).status is AutonomyStatus.OK


@pytest.mark.parametrize("bad", [Circle(math.nan, 0.0, 1.0), Circle(1.0, 0.0, 0.0)])
def test_bad_obstacles_are_rejected(bad: Circle) -> None:
    world = SimWorld(WorldMap(STRAIGHT), measured=Motion())
    with pytest.raises(ConfigError, match="add_obstacle"):
        world.add_obstacle(bad)
    assert world.snapshot().obstacles == ()


def test_collision_is_recorded() -> None:
    world = SimWorld(WorldMap(STRAIGHT, (Circle(2.0, 0.0, 0.3),)), measured=Motion(1.5))
    run(world, 0.0, 2.0)
    assert world.snapshot().collided


def test_empty_route_means_no_route_for_the_autonomy() -> None:
    world = SimWorld(WorldMap(()), measured=Motion(), start=Pose(1.0, 2.0, 0.5))
    assert world.step(0.0).status is AutonomyStatus.NO_ROUTE
    assert world.snapshot().pose == Pose(1.0, 2.0, 0.5)


class FakeMotor:
    """Just enough of a motor link for :func:`motor_motion`."""

    def __init__(self, telemetry: Telemetry | None, connected: bool = True) -> None:
        self.last_telemetry = telemetry
        self.connected = connected
        self.last_written_seq: int | None = None

    def arm(self) -> bool:
        return True

    def disarm(self) -> bool:
        return True

    def drive(self, speed_mps: float, steer_rad: float) -> bool:
        return True

    def heartbeat(self) -> bool:
        return True

    def estop(self) -> bool:
        return True


def telemetry(wheel_speed_mmps: int, steer_mrad: int) -> Telemetry:
    return Telemetry(
        state=1,
        faults=0,
        last_seq=0,
        wheel_speed_mmps=wheel_speed_mmps,
        speed_cmd_mmps=0,
        steer_mrad=steer_mrad,
        motor_duty=0,
        battery_mv=12000,
        rx_errors=0,
        uptime_ms=0,
        reset_cause=0,
    )


def test_motor_motion_reads_measured_speed_and_steering() -> None:
    assert motor_motion(FakeMotor(telemetry(-1250, 300)))() == (-1.25, 0.3)
    assert motor_motion(FakeMotor(None))() is None
    assert motor_motion(FakeMotor(telemetry(1000, 0), connected=False))() is None


def test_world_from_config_section() -> None:
    section = SimSection(route=[(0.0, 0.0), (5.0, 0.0)], obstacles=[(3.0, 1.0, 0.5)], start=None)
    world = sim_world_from_config(section, measured=Motion())
    assert world.route == ((0.0, 0.0), (5.0, 0.0))
    assert world.snapshot().obstacles == (Circle(3.0, 1.0, 0.5),)
    started = sim_world_from_config(
        SimSection(route=[(0.0, 0.0), (5.0, 0.0)], start=(1.0, 2.0, 3.0)), measured=Motion()
    )
    assert started.snapshot().pose == Pose(1.0, 2.0, 3.0)


# ---- the [sim] config section ------------------------------------------------------------


def test_sim_section_parses() -> None:
    config = parse_config(
        '[vehicle]\nid = "v"\n[motor]\nurl = "/dev/ttyACM0"\n'
        "[sim]\nroute = [[0, 0], [10, 0.5]]\nobstacles = [[5, 0, 0.4]]\nstart = [0, 0, 0.1]\n",
        VehicleConfig,
    )
    assert simulated_world(config) == SimSection(
        route=[(0.0, 0.0), (10.0, 0.5)], obstacles=[(5.0, 0.0, 0.4)], start=(0.0, 0.0, 0.1)
    )


def test_sim_motor_gets_the_built_in_loop_and_a_real_one_no_world() -> None:
    sim = parse_config('[vehicle]\nid = "v"\n', VehicleConfig)
    section = simulated_world(sim)
    assert section is not None
    assert section.route == default_route()
    route = section.route
    assert route[0] == route[-1]
    length_m = sum(math.dist(a, b) for a, b in itertools.pairwise(route))
    assert 30.0 < length_m < 100.0
    real = parse_config('[vehicle]\nid = "v"\n[motor]\nurl = "/dev/ttyACM0"\n', VehicleConfig)
    assert simulated_world(real) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sim]\nroute = [[0, 0]]\n", "[sim] route: Expected `array` of length >= 2"),
        ("[sim]\nroute = [[0, 0], [1, nan]]\n", "[sim] route[1][1]"),
        ("[sim]\nroute = [[0, 0], [1, 2, 3]]\n", "[sim] route[1]"),
        ("[sim]\nobstacles = [[1, 1, 0]]\n", "[sim] obstacles[0][2]: Expected `float` > 0.0"),
        ("[sim]\nstart = [0, 0]\n", "[sim] start"),
        ("[sim]\nroutes = []\n", "[sim]: Object contains unknown field `routes`"),
        (
            '[motor]\nurl = "/dev/ttyACM0"\n[[cameras]]\nname = "f"\nsource = "world"\n',
            "[cameras[0]] source: 'world' needs a simulated world",
        ),
    ],
)
def test_bad_sim_config_names_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config('[vehicle]\nid = "v"\n' + text, VehicleConfig, source="vehicle.toml")
    assert str(err.value).startswith("vehicle.toml: ")
    assert message in str(err.value)
