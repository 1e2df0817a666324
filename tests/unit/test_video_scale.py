"""Downscaling and frame-rate thinning of captured pictures."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import SyntheticSource, read_frame_counter
from teledrive.vehicle.video_scale import FramePacer, scale_to

CAMERA_PERIOD_S = 1.0 / 30.0


def admitted(pacer: FramePacer, frames: int, start_s: float = 0.0) -> list[int]:
    return [i for i in range(frames) if pacer.admit(start_s + i * CAMERA_PERIOD_S)]


def test_no_target_rate_sends_every_frame() -> None:
    pacer = FramePacer(30.0)
    assert admitted(pacer, 30) == list(range(30))
    assert pacer.dropped == 0


@pytest.mark.parametrize(("fps", "kept"), [(30.0, 30), (20.0, 20), (15.0, 15), (10.0, 10)])
def test_target_rate_keeps_that_many_frames_a_second(fps: float, kept: int) -> None:
    pacer = FramePacer(30.0)
    pacer.set_fps(fps)
    frames = admitted(pacer, 90)
    assert len(frames) == 3 * kept
    gaps = {b - a for a, b in itertools.pairwise(frames)}
    assert max(gaps) <= -(-30 // kept)  # evenly spread: no gap longer than one slot
    assert pacer.dropped == 90 - 3 * kept


def test_capture_jitter_does_not_drop_a_frame_due_now() -> None:
    pacer = FramePacer(30.0)
    pacer.set_fps(15.0)
    times = [0.0, 0.034, 0.064, 0.101, 0.131, 0.168]  # +-3 ms around the 30 fps grid
    assert [pacer.admit(t) for t in times] == [True, False, True, False, True, False]


def test_after_a_gap_the_schedule_restarts_without_a_burst() -> None:
    pacer = FramePacer(30.0)
    pacer.set_fps(10.0)
    assert admitted(pacer, 4) == [0, 3]
    after_gap = admitted(pacer, 7, start_s=2.0)
    assert after_gap == [0, 3, 6]


def test_bad_rates_are_rejected() -> None:
    with pytest.raises(ConfigError, match="camera fps"):
        FramePacer(0.0)
    with pytest.raises(ConfigError, match="fps must be > 0"):
        FramePacer(30.0).set_fps(float("nan"))


def test_scale_to_resizes_and_leaves_a_right_sized_picture_alone() -> None:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    assert scale_to(image, 640, 480) is image
    small = scale_to(image, 320, 240)
    assert small.shape == (240, 320, 3)
    assert small.dtype == np.uint8
    with pytest.raises(ConfigError, match="0x240"):
        scale_to(image, 0, 240)


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1280, 720)])
def test_bar_code_survives_240p_once_scaled_back(width: int, height: int) -> None:
    source = SyntheticSource(width, height, 30, name="front")
    picture = source.render(123_456)
    small = scale_to(picture, round(240 * width / height) // 2 * 2, 240)
    restored = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    assert read_frame_counter(restored) == 123_456
