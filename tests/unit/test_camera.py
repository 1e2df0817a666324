"""Camera capture: bar code, synthetic source pacing, newest-frame slot, device recovery."""

from __future__ import annotations

import os
import queue

import numpy as np
import pytest

from teledrive.shared.errors import ConfigError, LinkError
from teledrive.vehicle.camera import (
    BARCODE_HEIGHT_PX,
    BARCODE_WIDTH_PX,
    Camera,
    FrameSource,
    Image,
    QueueSource,
    SyntheticSource,
    draw_frame_counter,
    read_frame_counter,
)

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE


def blank(width: int = 320, height: int = 240) -> Image:
    return np.full((height, width, 3), 90, dtype=np.uint8)


@pytest.mark.parametrize("counter", [0, 1, 255, 256, 65_535, 123_456, (1 << 24) - 1])
def test_barcode_round_trip(counter: int) -> None:
    image = blank()
    draw_frame_counter(image, counter)
    assert read_frame_counter(image) == counter
    # the luma plane alone reads the same
    assert read_frame_counter(image[:, :, 1].copy()) == counter


def test_barcode_wraps_at_24_bits() -> None:
    image = blank()
    draw_frame_counter(image, (1 << 24) + 5)
    assert read_frame_counter(image) == 5


def test_barcode_survives_noise_and_blur() -> None:
    image = blank()
    draw_frame_counter(image, 4242)
    rng = np.random.default_rng(1)
    noisy = np.clip(image.astype(np.int16) + rng.integers(-40, 40, image.shape), 0, 255)
    assert read_frame_counter(noisy.astype(np.uint8)) == 4242


def test_barcode_absent_or_damaged_reads_none() -> None:
    assert read_frame_counter(blank()) is None
    image = blank()
    draw_frame_counter(image, 77)
    image[0:16, 0:16] = 255 - image[0:16, 0:16]  # flip the first cell
    assert read_frame_counter(image) is None
    assert read_frame_counter(blank(BARCODE_WIDTH_PX - 1, BARCODE_HEIGHT_PX)) is None


def test_synthetic_source_draws_counter_and_paces_with_injected_clock() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    source = SyntheticSource(320, 240, 25, name="t", clock=lambda: now[0], sleep=sleep)
    frames = [source.read() for _ in range(4)]
    assert [read_frame_counter(f) for f in frames if f is not None] == [0, 1, 2, 3]
    assert sleeps == pytest.approx([0.04, 0.04, 0.04])
    # falling far behind does not produce a burst of frames
    now[0] += 1.0
    source.read()
    source.read()
    assert sleeps[-1] == pytest.approx(0.04)
    source.close()
    assert source.read() is None


@pytest.mark.parametrize(("width", "height", "fps"), [(100, 240, 30), (320, 40, 30), (320, 240, 0)])
def test_synthetic_source_rejects_bad_config(width: int, height: int, fps: float) -> None:
    with pytest.raises(ConfigError, match="camera 'x'"):
        SyntheticSource(width, height, fps, name="x")


class ScriptedFactory:
    """Opens QueueSources; fails the first `failures` opens."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.opened: queue.Queue[QueueSource] = queue.Queue()

    def __call__(self) -> FrameSource:
        if self.failures > 0:
            self.failures -= 1
            raise LinkError("scripted device: not plugged in")
        source = QueueSource()
        self.opened.put(source)
        return source


def image_with(counter: int) -> Image:
    image = blank()
    draw_frame_counter(image, counter)
    return image


def test_camera_keeps_only_the_newest_frame_and_stamps_it() -> None:
    ticks = iter(float(i) for i in range(1000))
    factory = ScriptedFactory()
    camera = Camera(factory, name="front", fps=30, clock=lambda: next(ticks))
    assert camera.latest() is None
    camera.start()
    try:
        source = factory.opened.get(timeout=WAIT_S)
        for counter in (10, 11, 12):
            source.put(image_with(counter))
        frame = camera.wait_newer(2, WAIT_S)
        assert frame is not None
        assert frame.index == 3
        assert read_frame_counter(frame.image) == 12
        # the older frames are gone: the newest is the only one left
        latest = camera.latest()
        assert latest is frame
        assert camera.wait_newer(0, WAIT_S) is frame
        # nothing newer yet: the wait times out
        assert camera.wait_newer(3, 0.01) is None
        assert latest.capture_time_s < 3.0
    finally:
        camera.stop()
    assert not camera.running


def test_camera_reports_fps_from_capture_times() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1 / 20
        return now[0]

    factory = ScriptedFactory()
    camera = Camera(factory, name="front", fps=20, clock=clock)
    camera.start()
    try:
        source = factory.opened.get(timeout=WAIT_S)
        assert camera.fps == 0.0
        for counter in range(10):
            source.put(image_with(counter))
        assert camera.wait_newer(9, WAIT_S) is not None
        assert camera.fps == pytest.approx(20.0)
    finally:
        camera.stop()


def test_camera_recovers_from_a_device_that_disappears() -> None:
    factory = ScriptedFactory(failures=2)
    camera = Camera(factory, name="rear", fps=30, retry_min_s=0.001, retry_max_s=0.01)
    camera.start()
    try:
        first = factory.opened.get(timeout=WAIT_S)
        assert camera.device_failures == 2  # two failed opens before this one
        first.put(image_with(1))
        assert camera.wait_newer(0, WAIT_S) is not None
        first.put(None)  # unplugged
        second = factory.opened.get(timeout=WAIT_S)
        assert first.closed
        assert camera.device_failures == 3
        second.put(image_with(2))
        frame = camera.wait_newer(1, WAIT_S)
        assert frame is not None
        assert frame.index == 2
        assert read_frame_counter(frame.image) == 2
    finally:
        camera.stop()
    assert second.closed


def test_camera_subscribers_are_told_of_each_frame() -> None:
    factory = ScriptedFactory()
    camera = Camera(factory, name="side", fps=30)
    seen: queue.Queue[int] = queue.Queue()
    unsubscribe = camera.subscribe(lambda f: seen.put(f.index))
    camera.start()
    try:
        source = factory.opened.get(timeout=WAIT_S)
        source.put(image_with(1))
        assert seen.get(timeout=WAIT_S) == 1
        unsubscribe()
        source.put(image_with(2))
        assert camera.wait_newer(1, WAIT_S) is not None
        assert seen.empty()
    finally:
        camera.stop()


def test_camera_with_synthetic_source_delivers_readable_frames() -> None:
    camera = Camera(lambda: SyntheticSource(320, 240, 60, name="syn"), name="syn", fps=60)
    camera.start()
    try:
        first = camera.wait_newer(0, WAIT_S)
        assert first is not None
        later = camera.wait_newer(first.index, WAIT_S)
        assert later is not None
        first_counter = read_frame_counter(first.image)
        later_counter = read_frame_counter(later.image)
        assert first_counter is not None
        assert later_counter is not None
        assert later_counter > first_counter
        assert later.capture_time_s > first.capture_time_s
    finally:
        camera.stop()


@pytest.mark.parametrize(("fps", "lo", "hi"), [(0, 0.1, 1), (30, 0, 1), (30, 2, 1)])
def test_camera_rejects_bad_config(fps: float, lo: float, hi: float) -> None:
    with pytest.raises(ConfigError, match="camera 'c'"):
        Camera(ScriptedFactory(), name="c", fps=fps, retry_min_s=lo, retry_max_s=hi)
