"""A virtual camera that draws the simulated world around the vehicle, heading up.

:class:`WorldCameraSource` is a :class:`~teledrive.vehicle.camera.FrameSource`: a top-down
map centred a little behind the vehicle and rotated so that the vehicle's heading points up,
so that "up" on the screen is "forward" for the operator. It shows the ground grid (1 m and
5 m lines), the route with its start and goal, the obstacles, the vehicle's footprint with its
front wheel angle, a north arrow, and a status line (speed, heading, autonomy status,
clearance). The frame counter is written as a bar code (:func:`draw_frame_counter`) like the
synthetic camera's, so latency tooling reads it back.

Cost: the static map (grid and route) is drawn once into a large background image; each frame
is one ``cv2.warpAffine`` of the view out of it plus a few primitives (about 1-2 ms at
640x480, see ``tests/unit/test_world_camera.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import cv2
import numpy as np

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyStatus
from teledrive.vehicle.camera import (
    BARCODE_HEIGHT_PX,
    Image,
    SyntheticSource,
    draw_frame_counter,
)
from teledrive.vehicle.sim_world import SimSnapshot

PIXELS_PER_M_AT_480 = 30.0
"""Map scale for a 480-pixel-high picture; scales with the picture height."""
VEHICLE_SCREEN_Y = 0.72
"""Where the rear axle sits, as a fraction of the picture height (more view ahead)."""
MAP_MARGIN_M = 40.0
"""Ground drawn around the route; beyond it the view shows plain ground."""
MAX_MAP_SIDE_PX = 4096

GROUND_BGR = (58, 74, 58)
GRID_MINOR_BGR = (70, 88, 70)
GRID_MAJOR_BGR = (92, 112, 92)
ROUTE_BGR = (40, 190, 230)
START_BGR = (230, 200, 60)
GOAL_BGR = (60, 60, 230)
OBSTACLE_BGR = (30, 30, 200)
OBSTACLE_EDGE_BGR = (255, 255, 255)
VEHICLE_BGR = (240, 240, 240)
WHEEL_BGR = (20, 20, 20)
TEXT_BGR = (255, 255, 255)
ALERT_BGR = (40, 40, 255)
STATUS_BAR_BGR = (25, 25, 25)

SnapshotSource = Callable[[], SimSnapshot]


class WorldCameraSource(SyntheticSource):
    """Draws the simulated world from the vehicle's pose; paced to ``fps`` like a camera.

    Args:
        snapshot: Returns the world's newest :class:`SimSnapshot` (``SimWorld.snapshot``);
            called from the camera thread.
        width: Picture width in pixels.
        height: Picture height in pixels.
        fps: Frame rate, > 0.
        name: Camera name (logs and errors).
        pixels_per_m: Map scale; default :data:`PIXELS_PER_M_AT_480` scaled to the height.
        clock: Monotonic clock in seconds (pacing).
        sleep: Sleep function (pacing).

    Raises:
        ConfigError: the size, frame rate or scale is out of range.
    """

    def __init__(
        self,
        snapshot: SnapshotSource,
        width: int,
        height: int,
        fps: float,
        *,
        name: str = "world",
        pixels_per_m: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(width, height, fps, name=name, clock=clock, sleep=sleep)
        scale = pixels_per_m if pixels_per_m is not None else PIXELS_PER_M_AT_480 * height / 480
        if not (math.isfinite(scale) and scale > 0):
            raise ConfigError(f"camera {name!r}: pixels_per_m must be > 0, got {scale!r}")
        self._snapshot = snapshot
        self._scale = scale
        self._centre_px = (width / 2.0, height * VEHICLE_SCREEN_Y)
        self._route: tuple[tuple[float, float], ...] | None = None
        self._map: Image = np.zeros((1, 1, 3), np.uint8)
        self._map_origin_m = (0.0, 0.0)  # (min x, max y): the map's top-left corner
        self._font_scale = max(0.4, height / 900.0)

    @staticmethod
    def _make_background(width: int, height: int) -> Image:
        # The synthetic camera's moving pattern is not used: the map replaces it.
        return np.zeros((1, 1, 3), np.uint8)

    # ---- the static map --------------------------------------------------------------------

    def _ensure_map(self, snap: SimSnapshot) -> None:
        if snap.route == self._route:
            return
        self._route = snap.route
        points = [*snap.route, (snap.pose.x_m, snap.pose.y_m)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        s = self._scale
        max_extent_m = MAX_MAP_SIDE_PX / s
        min_x = min(xs) - MAP_MARGIN_M
        max_y = max(ys) + MAP_MARGIN_M
        width_m = min(max_extent_m, max(xs) + MAP_MARGIN_M - min_x)
        height_m = min(max_extent_m, max_y - (min(ys) - MAP_MARGIN_M))
        self._map_origin_m = (min_x, max_y)
        image = np.empty((int(height_m * s) + 1, int(width_m * s) + 1, 3), np.uint8)
        image[:] = GROUND_BGR
        self._draw_grid(image, min_x, max_y)
        self._draw_route(image, snap.route)
        self._map = image

    def _map_px(self, x_m: float, y_m: float) -> tuple[int, int]:
        x0, y1 = self._map_origin_m
        return round((x_m - x0) * self._scale), round((y1 - y_m) * self._scale)

    def _draw_grid(self, image: Image, min_x: float, max_y: float) -> None:
        h_px, w_px = image.shape[:2]
        s = self._scale
        for major in (False, True):
            step_m = 5 if major else 1
            colour = GRID_MAJOR_BGR if major else GRID_MINOR_BGR
            for k in range(math.ceil(min_x / step_m), math.floor((min_x + w_px / s) / step_m) + 1):
                x_px = round((k * step_m - min_x) * s)
                cv2.line(image, (x_px, 0), (x_px, h_px - 1), colour, 1)
            for k in range(math.ceil((max_y - h_px / s) / step_m), math.floor(max_y / step_m) + 1):
                y_px = round((max_y - k * step_m) * s)
                cv2.line(image, (0, y_px), (w_px - 1, y_px), colour, 1)

    def _draw_route(self, image: Image, route: tuple[tuple[float, float], ...]) -> None:
        if not route:
            return
        s = self._scale
        pts = np.array([self._map_px(x, y) for x, y in route], np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], False, ROUTE_BGR, max(2, round(0.12 * s)), cv2.LINE_AA)
        for x, y in route:
            cv2.circle(image, self._map_px(x, y), max(2, round(0.1 * s)), ROUTE_BGR, -1)
        cv2.circle(image, self._map_px(*route[0]), round(0.5 * s), START_BGR, 2, cv2.LINE_AA)
        goal = self._map_px(*route[-1])
        cv2.circle(image, goal, round(0.35 * s), GOAL_BGR, max(2, round(0.1 * s)), cv2.LINE_AA)

    # ---- one frame -------------------------------------------------------------------------

    def render(self, counter: int) -> Image:
        """Draw the world as seen from the vehicle's pose now, with ``counter`` as bar code."""
        snap = self._snapshot()
        self._ensure_map(snap)
        image = self._view(snap)
        self._draw_obstacles(image, snap)
        self._draw_vehicle(image, snap)
        self._draw_north(image, snap.pose.heading_rad)
        self._draw_status(image, snap)
        draw_frame_counter(image, counter)
        return image

    def _view(self, snap: SimSnapshot) -> Image:
        """Warp the map so that the vehicle sits at the screen centre point, heading up."""
        s = self._scale
        h = snap.pose.heading_rad
        sin_h, cos_h = math.sin(h), math.cos(h)
        cx, cy = self._centre_px
        x0, y1 = self._map_origin_m
        # Screen (sx, sy) -> map pixel (u, v); see the module tests for the orientation.
        matrix = np.array(
            [
                [sin_h, -cos_h, s * (snap.pose.x_m - x0) + cy * cos_h - cx * sin_h],
                [cos_h, sin_h, s * (y1 - snap.pose.y_m) - cy * sin_h - cx * cos_h],
            ],
            np.float64,
        )
        out = cv2.warpAffine(
            self._map,
            matrix,
            (self._width, self._height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=GROUND_BGR,
        )
        return np.asarray(out, np.uint8)

    def _screen_px(self, snap: SimSnapshot, x_m: float, y_m: float) -> tuple[float, float]:
        """A map point in screen pixels."""
        dx, dy = x_m - snap.pose.x_m, y_m - snap.pose.y_m
        h = snap.pose.heading_rad
        ahead_m = dx * math.cos(h) + dy * math.sin(h)
        left_m = -dx * math.sin(h) + dy * math.cos(h)
        cx, cy = self._centre_px
        return cx - left_m * self._scale, cy - ahead_m * self._scale

    def _draw_obstacles(self, image: Image, snap: SimSnapshot) -> None:
        limit_px = self._width + self._height
        for c in snap.obstacles:
            sx, sy = self._screen_px(snap, c.x_m, c.y_m)
            r_px = max(2, round(c.radius_m * self._scale))
            if abs(sx) > limit_px + r_px or abs(sy) > limit_px + r_px:
                continue
            centre = (round(sx), round(sy))
            cv2.circle(image, centre, r_px, OBSTACLE_BGR, -1, cv2.LINE_AA)
            cv2.circle(image, centre, r_px, OBSTACLE_EDGE_BGR, 2, cv2.LINE_AA)

    def _draw_vehicle(self, image: Image, snap: SimSnapshot) -> None:
        s = self._scale
        cx, cy = self._centre_px
        half_w = snap.radius_m * s
        rear = cy + snap.radius_m * s
        front = cy - (snap.wheelbase_m + snap.radius_m) * s
        body = np.array(
            [(cx - half_w, rear), (cx + half_w, rear), (cx + half_w, front), (cx - half_w, front)],
            np.int32,
        )
        cv2.fillConvexPoly(image, body, VEHICLE_BGR, cv2.LINE_AA)
        cv2.polylines(image, [body.reshape(-1, 1, 2)], True, WHEEL_BGR, 1, cv2.LINE_AA)
        # Front wheel at the front axle, turned by the steering angle (+ = left).
        axle_y = cy - snap.wheelbase_m * s
        half_len = 0.18 * s
        dx, dy = -math.sin(snap.steer_rad) * half_len, -math.cos(snap.steer_rad) * half_len
        wheel_a = (round(cx - dx), round(axle_y - dy))
        wheel_b = (round(cx + dx), round(axle_y + dy))
        cv2.line(image, wheel_a, wheel_b, WHEEL_BGR, max(2, round(0.08 * s)), cv2.LINE_AA)
        cv2.circle(image, (round(cx), round(cy)), max(2, round(0.05 * s)), WHEEL_BGR, -1)

    def _draw_north(self, image: Image, heading_rad: float) -> None:
        """An arrow in the top-right corner pointing to map +y ("north")."""
        radius = max(12, self._height // 20)
        cx, cy = self._width - radius - 8, BARCODE_HEIGHT_PX + radius + 8
        # Map +y, seen from the vehicle: ahead = sin(h), left = cos(h).
        ahead, left = math.sin(heading_rad), math.cos(heading_rad)
        tip = (round(cx - left * radius), round(cy - ahead * radius))
        tail = (round(cx + left * radius * 0.6), round(cy + ahead * radius * 0.6))
        cv2.circle(image, (cx, cy), radius + 4, STATUS_BAR_BGR, -1, cv2.LINE_AA)
        cv2.arrowedLine(image, tail, tip, TEXT_BGR, 2, cv2.LINE_AA, tipLength=0.35)
        label = (cx - 5, cy + radius + 18)
        cv2.putText(image, "N", label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, TEXT_BGR, 1, cv2.LINE_AA)

    def _draw_status(self, image: Image, snap: SimSnapshot) -> None:
        bar_h = max(18, round(self._height * 0.06))
        top = self._height - bar_h
        image[top:, :] = STATUS_BAR_BGR
        heading_deg = math.degrees(snap.pose.heading_rad) % 360.0
        gap = f"{snap.obstacle_gap_m:.1f} m" if math.isfinite(snap.obstacle_gap_m) else "-"
        text = (
            f"{snap.speed_mps:+.2f} m/s  hdg {heading_deg:03.0f}  "
            f"route {snap.status.value}  clear {gap}"
        )
        baseline = self._height - bar_h // 3
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(image, text, (8, baseline), font, self._font_scale, TEXT_BGR, 1, cv2.LINE_AA)
        alert = ""
        if snap.collided:
            alert = "COLLISION"
        elif snap.status is not AutonomyStatus.OK:
            alert = snap.status.value.upper()
        if alert:
            org = (8, top - 10)
            cv2.putText(image, alert, org, font, self._font_scale * 1.6, ALERT_BGR, 2, cv2.LINE_AA)
