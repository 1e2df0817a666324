"""Predictive overlay geometry, as pure functions.

The picture on the operator's screen is old (glass-to-glass), and a command sent now reaches
the wheels one uplink delay later. The overlay draws where the vehicle will be when the
command being sent now takes effect, relative to the pose the picture shows, so the operator
steers against the delay instead of into it; and how far it would travel before standing still
if the operator stopped now: ``d = v*T + v**2 / (2*a)``.

Motion model: a kinematic bicycle at constant speed and steering over the delay. Ground
coordinates are metres in the vehicle frame of the picture: ``x`` forward, ``y`` left. A
pinhole camera (height, pitch down, horizontal field of view) maps ground points to pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from teledrive.shared.errors import ConfigError

DEFAULT_WHEELBASE_M: Final = 0.6
DEFAULT_DECEL_MPS2: Final = 2.0
STRAIGHT_STEER_RAD: Final = 1e-4
"""Below this steering angle the path is treated as straight (no division by tan 0)."""


@dataclass(frozen=True)
class Pose:
    """A pose on the ground plane in the picture's vehicle frame.

    Attributes:
        x_m: forward.
        y_m: left.
        heading_rad: counter-clockwise from straight ahead.
    """

    x_m: float
    y_m: float
    heading_rad: float


@dataclass(frozen=True)
class CameraModel:
    """A forward camera looking at flat ground.

    Attributes:
        height_m: lens height above the ground.
        pitch_rad: downward tilt of the optical axis (positive looks down).
        hfov_rad: horizontal field of view.
        forward_m: lens position ahead of the vehicle reference point.
    """

    height_m: float = 1.0
    pitch_rad: float = math.radians(12.0)
    hfov_rad: float = math.radians(90.0)
    forward_m: float = 0.0


def top_down_camera(
    *,
    pixels_per_m: float = 30.0,
    vehicle_y_fraction: float = 0.72,
    width_px: float = 640.0,
    height_px: float = 480.0,
    lens_height_m: float = 10.0,
) -> CameraModel:
    """A camera looking straight down, heading up: a map view such as the simulator's.

    The defaults match teledrive's simulated world camera at 640x480 (30 px per metre, the
    rear axle at 72 % of the picture height). A pinhole looking straight down maps the ground
    to the picture at a constant scale, so the same projection serves both kinds of camera.

    Args:
        pixels_per_m: map scale at ``width_px`` x ``height_px``.
        vehicle_y_fraction: where the vehicle reference point is, as a fraction of the height.
        width_px: picture width the scale refers to.
        height_px: picture height the scale refers to.
        lens_height_m: any height (the scale fixes the field of view).

    Raises:
        ConfigError: a scale, size or height that is not positive.
    """
    for name, value in (
        ("pixels_per_m", pixels_per_m),
        ("width_px", width_px),
        ("height_px", height_px),
        ("lens_height_m", lens_height_m),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"top-down camera: {name} must be > 0, got {value}")
    focal_px = pixels_per_m * lens_height_m
    return CameraModel(
        height_m=lens_height_m,
        pitch_rad=math.pi / 2.0,
        hfov_rad=2.0 * math.atan((width_px / 2.0) / focal_px),
        forward_m=(vehicle_y_fraction - 0.5) * height_px / pixels_per_m,
    )


@dataclass(frozen=True)
class OverlayInputs:
    """What the overlay is computed from.

    Attributes:
        speed_mps: measured speed (telemetry).
        steer_rad: steering in force (+ left).
        video_delay_ms: age of the picture (glass-to-glass, or its best estimate).
        uplink_delay_ms: operator -> vehicle one-way delay of a command.
        command_period_ms: drive command period; half of it is added (mean wait for a tick).
        wheelbase_m: bicycle-model wheelbase.
        decel_mps2: braking deceleration used for the stopping distance.
    """

    speed_mps: float
    steer_rad: float
    video_delay_ms: float
    uplink_delay_ms: float
    command_period_ms: float = 20.0
    wheelbase_m: float = DEFAULT_WHEELBASE_M
    decel_mps2: float = DEFAULT_DECEL_MPS2


@dataclass(frozen=True)
class OverlayGeometry:
    """The overlay in ground coordinates.

    Attributes:
        delay_s: total delay from the picture to the command taking effect.
        path: poses from the pictured position to the predicted one.
        predicted: where the vehicle is when the command sent now takes effect.
        stopping_distance_m: distance from the pictured position to standstill if the
            operator stops now (``v*T + v^2/(2a)``).
        stop_pose: the pose at the stopping distance along the current arc.
        corridor: poses along the arc from the pictured position to ``stop_pose``.
    """

    delay_s: float
    path: tuple[Pose, ...]
    predicted: Pose
    stopping_distance_m: float
    stop_pose: Pose
    corridor: tuple[Pose, ...] = ()


def stopping_distance_m(speed_mps: float, delay_s: float, decel_mps2: float) -> float:
    """Distance covered until standstill: ``v*T + v**2 / (2*a)``.

    Args:
        speed_mps: current speed (its magnitude is used).
        delay_s: time before braking starts.
        decel_mps2: braking deceleration, > 0.

    Raises:
        ConfigError: the deceleration is not positive or an input is not finite.
    """
    if not all(math.isfinite(v) for v in (speed_mps, delay_s, decel_mps2)):
        raise ConfigError("overlay: stopping distance needs finite speed, delay and deceleration")
    if decel_mps2 <= 0:
        raise ConfigError(f"overlay: deceleration must be > 0, got {decel_mps2}")
    v = abs(speed_mps)
    return v * max(0.0, delay_s) + v * v / (2.0 * decel_mps2)


def advance_along_arc(distance_m: float, steer_rad: float, wheelbase_m: float) -> Pose:
    """The pose after driving ``distance_m`` (negative: reverse) at a constant steering angle.

    Kinematic bicycle: curvature ``tan(steer) / wheelbase``.
    """
    if wheelbase_m <= 0:
        raise ConfigError(f"overlay: wheelbase must be > 0, got {wheelbase_m}")
    if abs(steer_rad) < STRAIGHT_STEER_RAD:
        return Pose(distance_m, 0.0, 0.0)
    curvature = math.tan(steer_rad) / wheelbase_m
    heading = distance_m * curvature
    radius = 1.0 / curvature
    return Pose(radius * math.sin(heading), radius * (1.0 - math.cos(heading)), heading)


def predict_pose(
    speed_mps: float, steer_rad: float, delay_s: float, wheelbase_m: float = DEFAULT_WHEELBASE_M
) -> Pose:
    """Where the vehicle is after ``delay_s`` at constant speed and steering."""
    return advance_along_arc(speed_mps * max(0.0, delay_s), steer_rad, wheelbase_m)


def total_delay_s(inputs: OverlayInputs) -> float:
    """Picture age + uplink delay + half a command period, in seconds."""
    delay_ms = (
        max(0.0, inputs.video_delay_ms)
        + max(0.0, inputs.uplink_delay_ms)
        + max(0.0, inputs.command_period_ms) / 2.0
    )
    return delay_ms / 1000.0


def overlay_geometry(inputs: OverlayInputs, *, path_points: int = 16) -> OverlayGeometry:
    """Computes the predicted pose, the path to it and the stopping point.

    Args:
        inputs: speed, steering and delays.
        path_points: how many poses the path has (at least 2).

    Returns:
        The geometry in ground coordinates.

    Raises:
        ConfigError: an input is not finite, or the wheelbase/deceleration is not positive.
    """
    values = (inputs.speed_mps, inputs.steer_rad, inputs.video_delay_ms, inputs.uplink_delay_ms)
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"overlay: non-finite input in {inputs}")
    delay_s = total_delay_s(inputs)
    travel_m = inputs.speed_mps * delay_s
    count = max(2, path_points)
    path = tuple(
        advance_along_arc(travel_m * i / (count - 1), inputs.steer_rad, inputs.wheelbase_m)
        for i in range(count)
    )
    stop_m = stopping_distance_m(inputs.speed_mps, delay_s, inputs.decel_mps2)
    direction = -1.0 if inputs.speed_mps < 0 else 1.0
    corridor = tuple(
        advance_along_arc(
            direction * stop_m * i / (count - 1), inputs.steer_rad, inputs.wheelbase_m
        )
        for i in range(count)
    )
    return OverlayGeometry(delay_s, path, path[-1], stop_m, corridor[-1], corridor)


def project_ground_point(
    x_m: float, y_m: float, camera: CameraModel, width_px: float, height_px: float
) -> tuple[float, float] | None:
    """Projects a ground point into the image; None when it is behind or above the horizon.

    Args:
        x_m: forward distance from the vehicle reference point.
        y_m: leftward offset.
        camera: the camera model.
        width_px: image width.
        height_px: image height.

    Returns:
        ``(u, v)`` pixel coordinates (origin top left), possibly outside the image.
    """
    forward = x_m - camera.forward_m
    # camera frame: z along the optical axis, x right, y down
    cos_p, sin_p = math.cos(camera.pitch_rad), math.sin(camera.pitch_rad)
    z = forward * cos_p + camera.height_m * sin_p
    y_down = -forward * sin_p + camera.height_m * cos_p
    if z <= 1e-3:
        return None
    focal_px = (width_px / 2.0) / math.tan(camera.hfov_rad / 2.0)
    u = width_px / 2.0 + focal_px * (-y_m) / z
    v = height_px / 2.0 + focal_px * y_down / z
    return u, v


def ground_offset(pose: Pose, lateral_m: float) -> tuple[float, float]:
    """The ground point ``lateral_m`` to the left of ``pose`` (for drawing a vehicle's width)."""
    return (
        pose.x_m - lateral_m * math.sin(pose.heading_rad),
        pose.y_m + lateral_m * math.cos(pose.heading_rad),
    )
