"""Applying an operating point to captured pictures: downscaling and frame-rate thinning.

Both are pure: :func:`scale_to` maps a picture to a size, :class:`FramePacer` decides from
capture times (no clock of its own) which camera frames to send for a lower frame rate.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import Image

# A frame counts as due this much (in camera frame periods) before its slot: capture times
# jitter, and a frame a hair early must not be dropped and leave a whole period empty.
_EARLY_SLACK_PERIODS = 0.4


def scale_to(image: Image, width_px: int, height_px: int) -> Image:
    """The picture at ``width_px`` x ``height_px`` (the same array if already that size).

    Shrinks with area averaging (``INTER_AREA``: no aliasing on fine texture such as road
    markings); enlarges, which an operating point never asks for, bilinearly.

    Raises:
        ConfigError: a size is not positive.
    """
    if width_px <= 0 or height_px <= 0:
        raise ConfigError(f"video scale: size {width_px}x{height_px} must be positive")
    height, width = image.shape[:2]
    if (width, height) == (width_px, height_px):
        return image
    shrinking = width_px <= width and height_px <= height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (width_px, height_px), interpolation=interpolation)
    return np.asarray(scaled, dtype=np.uint8)


class FramePacer:
    """Picks camera frames for a target frame rate at or below the camera's.

    Frames are kept on a schedule of ``1 / fps`` slots from the first one kept; a frame is
    sent if it is (nearly) due, otherwise dropped. After a gap the schedule restarts rather
    than bursting to catch up.

    Args:
        camera_fps: the camera's frame rate (sets the early slack).

    Raises:
        ConfigError: ``camera_fps`` is not positive.
    """

    def __init__(self, camera_fps: float) -> None:
        if not camera_fps > 0 or not math.isfinite(camera_fps):
            raise ConfigError(f"frame pacer: camera fps must be > 0, got {camera_fps}")
        self._slack_s = _EARLY_SLACK_PERIODS / camera_fps
        self._period_s = 0.0
        self._due_s: float | None = None
        self.dropped = 0
        """Frames dropped to hold the target frame rate."""

    @property
    def fps(self) -> float | None:
        """The target frame rate, or None for every frame."""
        return None if self._period_s == 0.0 else 1.0 / self._period_s

    def set_fps(self, fps: float | None) -> None:
        """Set the target frame rate (None: send every frame).

        Raises:
            ConfigError: ``fps`` is not positive.
        """
        if fps is None:
            self._period_s = 0.0
            return
        if not fps > 0 or not math.isfinite(fps):
            raise ConfigError(f"frame pacer: fps must be > 0, got {fps}")
        self._period_s = 1.0 / fps

    def admit(self, capture_time_s: float) -> bool:
        """Whether to send the frame captured at ``capture_time_s`` (non-decreasing)."""
        period = self._period_s
        due = self._due_s
        if period == 0.0 or due is None or capture_time_s >= due + period:
            # No pacing, first frame, or a gap of more than a slot: restart the schedule.
            self._due_s = capture_time_s + period
            return True
        if capture_time_s + self._slack_s < due:
            self.dropped += 1
            return False
        self._due_s = due + period
        return True
