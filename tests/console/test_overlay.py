"""Predictive overlay geometry: bicycle model, stopping distance, projection."""

from __future__ import annotations

import math

import pytest

from teledrive.operator.console.overlay import (
    CameraModel,
    OverlayInputs,
    advance_along_arc,
    overlay_geometry,
    predict_pose,
    project_ground_point,
    stopping_distance_m,
    top_down_camera,
    total_delay_s,
)
from teledrive.shared.errors import ConfigError


def test_stopping_distance_formula() -> None:
    # d = v*T + v^2/(2a): 2 m/s, 0.2 s, 2 m/s^2 -> 0.4 + 1.0
    assert stopping_distance_m(2.0, 0.2, 2.0) == pytest.approx(1.4)
    assert stopping_distance_m(-2.0, 0.2, 2.0) == pytest.approx(1.4)
    assert stopping_distance_m(0.0, 5.0, 2.0) == 0.0


def test_stopping_distance_rejects_bad_deceleration() -> None:
    with pytest.raises(ConfigError, match="deceleration"):
        stopping_distance_m(1.0, 0.1, 0.0)
    with pytest.raises(ConfigError, match="finite"):
        stopping_distance_m(float("nan"), 0.1, 1.0)


def test_straight_ahead() -> None:
    pose = predict_pose(2.0, 0.0, 0.5)
    assert (pose.x_m, pose.y_m, pose.heading_rad) == pytest.approx((1.0, 0.0, 0.0))


def test_left_turn_follows_the_bicycle_arc() -> None:
    wheelbase = 0.5
    steer = 0.3
    radius = wheelbase / math.tan(steer)
    quarter = math.pi / 2 * radius
    pose = advance_along_arc(quarter, steer, wheelbase)
    assert pose.x_m == pytest.approx(radius)
    assert pose.y_m == pytest.approx(radius)
    assert pose.heading_rad == pytest.approx(math.pi / 2)


def test_right_turn_is_mirror_of_left() -> None:
    left = advance_along_arc(1.0, 0.2, 0.6)
    right = advance_along_arc(1.0, -0.2, 0.6)
    assert right.x_m == pytest.approx(left.x_m)
    assert right.y_m == pytest.approx(-left.y_m)


def test_total_delay_adds_picture_age_uplink_and_half_a_period() -> None:
    inputs = OverlayInputs(
        speed_mps=1.0, steer_rad=0.0, video_delay_ms=80, uplink_delay_ms=40, command_period_ms=20
    )
    assert total_delay_s(inputs) == pytest.approx(0.13)


def test_overlay_predicts_travel_over_the_delay_and_the_stop_beyond() -> None:
    inputs = OverlayInputs(
        speed_mps=2.0,
        steer_rad=0.0,
        video_delay_ms=100,
        uplink_delay_ms=90,
        command_period_ms=20,
        decel_mps2=2.0,
    )
    geometry = overlay_geometry(inputs, path_points=5)
    assert geometry.delay_s == pytest.approx(0.2)
    assert geometry.predicted.x_m == pytest.approx(0.4)
    assert len(geometry.path) == 5
    assert geometry.path[0].x_m == 0.0
    assert geometry.stopping_distance_m == pytest.approx(1.4)
    assert geometry.stop_pose.x_m == pytest.approx(1.4)


def test_more_delay_moves_the_prediction_further() -> None:
    near = overlay_geometry(OverlayInputs(1.0, 0.1, 50, 25))
    far = overlay_geometry(OverlayInputs(1.0, 0.1, 300, 150))
    assert far.predicted.x_m > near.predicted.x_m
    assert far.predicted.y_m > near.predicted.y_m > 0


def test_reverse_stops_behind() -> None:
    geometry = overlay_geometry(OverlayInputs(-1.0, 0.0, 100, 50))
    assert geometry.predicted.x_m < 0
    assert geometry.stop_pose.x_m < 0


def test_non_finite_input_rejected() -> None:
    with pytest.raises(ConfigError, match="non-finite"):
        overlay_geometry(OverlayInputs(float("nan"), 0.0, 100, 50))


def test_projection_centre_line_and_perspective() -> None:
    cam = CameraModel(height_m=1.0, pitch_rad=math.radians(10), hfov_rad=math.radians(90))
    near = project_ground_point(2.0, 0.0, cam, 640, 480)
    far = project_ground_point(10.0, 0.0, cam, 640, 480)
    assert near is not None
    assert far is not None
    assert near[0] == pytest.approx(320.0)
    assert far[0] == pytest.approx(320.0)
    assert near[1] > far[1]  # nearer ground is lower in the picture
    left = project_ground_point(4.0, 1.0, cam, 640, 480)
    assert left is not None
    assert left[0] < 320.0


def test_projection_of_points_behind_the_camera_is_none() -> None:
    assert project_ground_point(-5.0, 0.0, CameraModel(pitch_rad=0.0), 640, 480) is None


def test_top_down_camera_is_a_map_at_the_simulators_scale() -> None:
    cam = top_down_camera()
    origin = project_ground_point(0.0, 0.0, cam, 640.0, 480.0)
    ahead = project_ground_point(2.0, 0.0, cam, 640.0, 480.0)
    left = project_ground_point(0.0, 1.0, cam, 640.0, 480.0)
    assert origin == pytest.approx((320.0, 0.72 * 480.0))
    assert ahead == pytest.approx((320.0, 0.72 * 480.0 - 60.0))
    assert left == pytest.approx((290.0, 0.72 * 480.0))
    # twice the picture size: the same map, twice the pixels
    assert project_ground_point(2.0, 0.0, cam, 1280.0, 960.0) == pytest.approx(
        (640.0, 2 * (0.72 * 480.0 - 60.0))
    )
