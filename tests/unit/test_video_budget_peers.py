"""Two real aiortc peers: the bitrate budget changes what the receiver decodes, mid-stream."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import cv2
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from teledrive.operator.video_receive import (
    FastJitterBuffer,
    install_fast_jitter_buffer,
    luma_plane,
)
from teledrive.shared import messages as m
from teledrive.vehicle.camera import Camera, SyntheticSource, read_frame_counter
from teledrive.vehicle.video_adapt import VideoAdapter
from teledrive.vehicle.video_budget import LinkReport, VideoBudgetConfig
from teledrive.vehicle.video_track import CameraVideoTrack, add_camera_track

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
FRAME_WAIT_S = 10 * TIME_SCALE
NATIVE = (640, 480)
# Decoded frames allowed between a budget change and the first frame at the new size (the
# encoder may be busy with one or two frames of the old size when the change lands).
SWITCH_LAG_FRAMES = 5
# Counter gap allowed across a switch (camera frames skipped while the new keyframe is encoded).
SWITCH_GAP_FRAMES = round(15 * TIME_SCALE)
# Fast recovery and no rung hold: the test moves its injected clock, not real time.
CONFIG = VideoBudgetConfig(
    min_total_bps=50_000,
    camera_floor_bps=50_000,
    recovery_per_s=1.0,
    up_hold_ms=1_000.0,
    up_after_down_ms=1_000.0,
)


class Receiver:
    """The operator end: decoded frames as (size, counter read back at the camera's size)."""

    def __init__(self, track: Any, buffer: FastJitterBuffer) -> None:
        self.track = track
        self.buffer = buffer
        self.seen: list[tuple[tuple[int, int], int | None]] = []

    async def next(self) -> tuple[tuple[int, int], int | None]:
        frame = await asyncio.wait_for(self.track.recv(), FRAME_WAIT_S)
        luma = luma_plane(frame)
        if (frame.width, frame.height) != NATIVE:
            luma = cv2.resize(luma, NATIVE, interpolation=cv2.INTER_LINEAR)
        item = ((frame.width, frame.height), read_frame_counter(luma))
        self.seen.append(item)
        return item

    async def until_size(self, size: tuple[int, int], frames: int) -> list[int | None]:
        """Receive until ``frames`` frames of ``size`` arrived; their counters."""
        lag = 0
        while (await self.next())[0] != size:
            lag += 1
            assert lag <= SWITCH_LAG_FRAMES, self.seen[-lag:]
        counters = [self.seen[-1][1]]
        for _ in range(frames - 1):
            got, counter = await self.next()
            assert got == size, self.seen[-frames:]
            counters.append(counter)
        return counters


@pytest.fixture
async def link() -> Any:
    camera = Camera(lambda: SyntheticSource(*NATIVE, 30, name="front"), name="front", fps=30)
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = CameraVideoTrack(camera)
    camera.start()
    try:
        add_camera_track(sender_pc, track)
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        (transceiver,) = receiver_pc.getTransceivers()
        buffer = install_fast_jitter_buffer(transceiver.receiver)
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)
        yield track, Receiver(transceiver.receiver.track, buffer)
    finally:
        await sender_pc.close()
        await receiver_pc.close()
        camera.stop()


async def test_a_lower_budget_shrinks_the_decoded_picture_and_frames_keep_flowing(
    link: tuple[CameraVideoTrack, Receiver],
) -> None:
    track, receiver = link
    adapter = VideoAdapter([track], config=CONFIG)
    now_ms = 0.0
    full = await receiver.until_size(NATIVE, 5)
    assert adapter.apply_report(now_ms, LinkReport()) != {}  # every camera has a frame

    now_ms += 500.0
    points = adapter.apply_report(now_ms, LinkReport(estimate_bps=150_000))
    assert (points["front"].width_px, points["front"].height_px) == (320, 240)
    assert points["front"].fps == 30.0
    small = await receiver.until_size((320, 240), 20)

    now_ms += 500.0
    points = adapter.apply_report(now_ms, LinkReport(estimate_bps=80_000))
    assert (points["front"].height_px, points["front"].fps) == (240, 15.0)
    slow = await receiver.until_size((320, 240), 1)  # the size did not change...
    slow += [(await receiver.next())[1] for _ in range(12)]

    for _ in range(20):  # recovery, on the injected clock
        now_ms += 2_000.0
        points = adapter.apply_report(now_ms, LinkReport(estimate_bps=3_000_000))
    assert (points["front"].width_px, points["front"].height_px) == NATIVE
    back = await receiver.until_size(NATIVE, 10)

    counters = [c for _, c in receiver.seen]
    readable = [c for c in counters if c is not None]
    assert len(readable) == len(counters), receiver.seen  # bar code readable at every size
    assert all(b > a for a, b in itertools.pairwise(readable)), readable
    assert receiver.buffer.stats.frames_dropped == 0
    for before, after in ((full, small), (small, slow), (slow, back)):
        assert after[0] is not None
        assert before[-1] is not None
        assert after[0] - before[-1] <= SWITCH_GAP_FRAMES, receiver.seen
    # ...but the frame rate did: the camera's 30 fps thinned to 15 (every other frame).
    steps = [b - a for a, b in itertools.pairwise(c for c in slow[2:] if c is not None)]
    assert sum(steps) / len(steps) >= 1.8, slow
    assert track.frames_paced_out > 0
    status = adapter.status()
    assert isinstance(status, m.VideoStatus)
    assert status.primary == "front"
    assert status.cameras["front"][:3] == [640, 480, 30]
