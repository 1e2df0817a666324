"""The world camera: what it draws where, and the frame counter bar code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyStatus, Pose
from teledrive.vehicle.camera import read_frame_counter
from teledrive.vehicle.sim_world import SimSnapshot
from teledrive.vehicle.world import Circle
from teledrive.vehicle.world_camera import (
    OBSTACLE_BGR,
    ROUTE_BGR,
    VEHICLE_BGR,
    VEHICLE_SCREEN_Y,
    WorldCameraSource,
)

WIDTH, HEIGHT, PX_PER_M = 640, 480, 30.0


def snapshot(pose: Pose, obstacles: tuple[Circle, ...] = ()) -> SimSnapshot:
    return SimSnapshot(
        now_ms=0.0,
        pose=pose,
        speed_mps=1.0,
        steer_rad=0.0,
        distance_m=0.0,
        obstacle_gap_m=math.inf,
        collided=False,
        status=AutonomyStatus.OK,
        detail="",
        route=((-50.0, 0.0), (50.0, 0.0)),
        obstacles=obstacles,
        wheelbase_m=0.6,
        radius_m=0.3,
    )


def render(snap: SimSnapshot, counter: int = 7) -> np.ndarray:
    camera = WorldCameraSource(lambda: snap, WIDTH, HEIGHT, 30, pixels_per_m=PX_PER_M)
    return camera.render(counter)


def pixel(image: np.ndarray, ahead_m: float, left_m: float) -> tuple[int, int, int]:
    """The colour drawn at a point given relative to the vehicle's rear axle."""
    x = round(WIDTH / 2 - left_m * PX_PER_M)
    y = round(HEIGHT * VEHICLE_SCREEN_Y - ahead_m * PX_PER_M)
    b, g, r = image[y, x]
    return int(b), int(g), int(r)


@pytest.mark.parametrize("heading_rad", [0.0, math.pi / 2, -2.5])
def test_view_is_heading_up_with_obstacles_where_they_are(heading_rad: float) -> None:
    pose = Pose(3.0, -1.0, heading_rad)
    cos_h, sin_h = math.cos(heading_rad), math.sin(heading_rad)
    ahead = Circle(3.0 + 5.0 * cos_h, -1.0 + 5.0 * sin_h, 0.5)  # 5 m ahead
    left = Circle(3.0 + 2.0 * cos_h - 3.0 * sin_h, -1.0 + 2.0 * sin_h + 3.0 * cos_h, 0.5)
    image = render(snapshot(pose, (ahead, left)))
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert image.dtype == np.uint8
    assert pixel(image, 5.0, 0.0) == OBSTACLE_BGR
    assert pixel(image, 2.0, 3.0) == OBSTACLE_BGR
    assert pixel(image, 2.0, -3.0) != OBSTACLE_BGR  # not mirrored
    assert pixel(image, 0.3, 0.15) == VEHICLE_BGR


def test_route_is_drawn_through_the_map() -> None:
    # Facing +y while standing on the route along the x axis: the route crosses left-right.
    image = render(snapshot(Pose(0.0, -2.0, math.pi / 2)))
    assert pixel(image, 2.0, 4.0) == ROUTE_BGR
    assert pixel(image, 2.0, -4.0) == ROUTE_BGR
    assert pixel(image, 4.0, 4.0) != ROUTE_BGR


def test_frame_counter_bar_code_reads_back() -> None:
    image = render(snapshot(Pose(0.0, 0.0, 0.3)), counter=123_456)
    assert read_frame_counter(image) == 123_456


def test_read_is_paced_and_counts_frames() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    snap = snapshot(Pose(0.0, 0.0, 0.0))
    camera = WorldCameraSource(lambda: snap, 320, 240, 20, clock=lambda: now[0], sleep=sleep)
    frames = [camera.read() for _ in range(3)]
    assert [read_frame_counter(f) for f in frames if f is not None] == [0, 1, 2]
    assert slept == pytest.approx([0.05, 0.05])
    camera.close()
    assert camera.read() is None


def test_bad_scale_is_rejected() -> None:
    with pytest.raises(ConfigError, match="pixels_per_m"):
        WorldCameraSource(lambda: snapshot(Pose(0.0, 0.0, 0.0)), 640, 480, 30, pixels_per_m=0.0)
