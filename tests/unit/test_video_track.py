"""The sending track: newest frame only, never twice, pts from capture time, codec order."""

from __future__ import annotations

import asyncio
import os
import queue
from collections.abc import Iterator

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs.h264 import H264Encoder

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import Camera, Image, QueueSource, draw_frame_counter
from teledrive.vehicle.video_track import (
    VIDEO_CLOCK_HZ,
    CameraVideoTrack,
    KeyframeHoldoff,
    prefer_h264,
)

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE


def image_with(counter: int) -> Image:
    image = np.full((240, 320, 3), 60, dtype=np.uint8)
    draw_frame_counter(image, counter)
    return image


class Rig:
    """A camera on a scripted source whose capture clock the test sets per frame."""

    def __init__(self) -> None:
        self.source = QueueSource()
        self.capture_times: queue.Queue[float] = queue.Queue()
        self.camera = Camera(
            lambda: self.source, name="front", fps=30, clock=self.capture_times.get_nowait
        )
        self.camera.start()

    def publish(self, capture_time_s: float, counter: int) -> None:
        self.capture_times.put(capture_time_s)
        self.source.put(image_with(counter))

    async def wait_index(self, index: int) -> None:
        frame = await asyncio.to_thread(self.camera.wait_newer, index - 1, WAIT_S)
        assert frame is not None
        assert frame.index >= index


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig()
    yield rig
    rig.camera.stop()


async def test_recv_sends_each_frame_once_with_pts_from_capture_time(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera)
    rig.publish(10.0, 1)
    await rig.wait_index(1)
    first = await asyncio.wait_for(track.recv(), WAIT_S)
    assert first.pts == 0
    assert first.time_base.denominator == VIDEO_CLOCK_HZ
    assert (first.width, first.height) == (320, 240)

    # the same frame is never sent twice: recv waits for a new one
    pending = asyncio.ensure_future(track.recv())
    done, _ = await asyncio.wait({pending}, timeout=0.05)
    assert not done
    rig.publish(10.1, 2)
    second = await asyncio.wait_for(pending, WAIT_S)
    assert second.pts == round(0.1 * VIDEO_CLOCK_HZ)
    assert track.capture_time_for_pts(second.pts) == 10.1
    assert track.capture_time_for_pts(0) == 10.0
    assert track.frames_sent == 2
    track.stop()


async def test_recv_skips_to_the_newest_frame_never_queues(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera)
    for counter in range(1, 5):
        rig.publish(20.0 + counter / 30, counter)
    await rig.wait_index(4)
    frame = await asyncio.wait_for(track.recv(), WAIT_S)
    assert track.capture_time_for_pts(frame.pts) == pytest.approx(20.0 + 4 / 30)
    rig.publish(30.0, 5)
    await rig.wait_index(5)
    await asyncio.wait_for(track.recv(), WAIT_S)
    assert track.frames_sent == 2
    assert track.frames_skipped == 0  # the first three were before the first send
    for counter in range(6, 9):
        rig.publish(30.0 + counter, counter)
    await rig.wait_index(8)
    await asyncio.wait_for(track.recv(), WAIT_S)
    assert track.frames_skipped == 2
    track.stop()


async def test_pts_strictly_increase_even_for_equal_capture_times(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera)
    rig.publish(5.0, 1)
    await rig.wait_index(1)
    a = await asyncio.wait_for(track.recv(), WAIT_S)
    rig.publish(5.0, 2)
    await rig.wait_index(2)
    b = await asyncio.wait_for(track.recv(), WAIT_S)
    assert b.pts > a.pts
    track.stop()


async def test_pts_history_is_bounded(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera, pts_history=2)
    for counter in range(1, 4):
        rig.publish(float(counter), counter)
        await rig.wait_index(counter)
        await asyncio.wait_for(track.recv(), WAIT_S)
    assert [pts for pts, _ in track.recent_capture_times()] == [VIDEO_CLOCK_HZ, 2 * VIDEO_CLOCK_HZ]
    assert track.capture_time_for_pts(0) is None
    track.stop()


async def test_stopped_track_ends_a_pending_recv(rig: Rig) -> None:
    from aiortc.mediastreams import MediaStreamError

    track = CameraVideoTrack(rig.camera)
    pending = asyncio.ensure_future(track.recv())
    done, _ = await asyncio.wait({pending}, timeout=0.02)
    assert not done
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, WAIT_S)


class FakeEncoder:
    def __init__(self) -> None:
        self.target_bitrate = 3_000_000


class FakeSender:
    """Stands in for RTCRtpSender's private encoder slot (the real one is checked below)."""

    def __init__(self) -> None:
        self._RTCRtpSender__encoder: FakeEncoder | None = None


async def test_bitrate_cap_clamps_encoder_before_each_frame(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera, max_bitrate_bps=800_000)
    sender = FakeSender()
    track.bind_sender(sender)  # type: ignore[arg-type]
    rig.publish(1.0, 1)
    await rig.wait_index(1)
    await asyncio.wait_for(track.recv(), WAIT_S)
    assert not track.bitrate_cap_active  # encoder not created yet
    sender._RTCRtpSender__encoder = FakeEncoder()
    rig.publish(2.0, 2)
    await rig.wait_index(2)
    await asyncio.wait_for(track.recv(), WAIT_S)
    assert sender._RTCRtpSender__encoder.target_bitrate == 800_000
    assert track.bitrate_cap_active
    track.stop()


async def test_real_sender_still_has_the_private_encoder_slot(rig: Rig) -> None:
    """Fails loudly if aiortc renames the attribute the bitrate cap relies on."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTrack(CameraVideoTrack(rig.camera))
        assert hasattr(sender, "_RTCRtpSender__encoder"), "aiortc internals changed"
    finally:
        await pc.close()


def test_bad_bitrate_cap_is_rejected(rig: Rig) -> None:
    with pytest.raises(ConfigError, match="max_bitrate_bps"):
        CameraVideoTrack(rig.camera, max_bitrate_bps=0)


async def test_prefer_h264_puts_h264_first_then_vp8() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="sendonly")
        order = prefer_h264(transceiver)
        assert order[0].lower() == "video/h264"
        assert "video/VP8" in order
        offer = await pc.createOffer()
        video_line = next(line for line in offer.sdp.splitlines() if line.startswith("m=video"))
        payload_types = video_line.split()[3:]
        rtpmap = {
            line.split()[0].split(":")[1]: line.split()[1]
            for line in offer.sdp.splitlines()
            if line.startswith("a=rtpmap:")
        }
        assert rtpmap[payload_types[0]].startswith("H264/")
        codecs_in_order = [rtpmap[pt].split("/")[0] for pt in payload_types]
        assert codecs_in_order.index("VP8") > max(
            i for i, c in enumerate(codecs_in_order) if c == "H264"
        )
    finally:
        await pc.close()


class FakeH264Sender:
    """Holds a real aiortc H264Encoder in the private slots the track reads."""

    def __init__(self) -> None:
        self._RTCRtpSender__encoder: H264Encoder | None = None
        self._RTCRtpSender__force_keyframe = False


def nal_types(access_unit: bytes) -> list[int]:
    return [u[0] & 0x1F for u in access_unit.split(b"\x00\x00\x01") if u.strip(b"\x00")]


async def test_own_h264_encoder_takes_over_once_aiortc_chose_h264(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera, max_bitrate_bps=700_000)
    sender = FakeH264Sender()
    track.bind_sender(sender)  # type: ignore[arg-type]
    rig.publish(1.0, 1)
    await rig.wait_index(1)
    first = await asyncio.wait_for(track.recv(), WAIT_S)
    assert isinstance(first, av.VideoFrame)  # aiortc's encoder does not exist yet

    sender._RTCRtpSender__encoder = H264Encoder()
    sender._RTCRtpSender__encoder.target_bitrate = 2_000_000  # as a REMB would set it
    rig.publish(1.1, 2)
    await rig.wait_index(2)
    second = await asyncio.wait_for(track.recv(), WAIT_S)
    assert isinstance(second, av.Packet)
    assert second.pts == round(0.1 * VIDEO_CLOCK_HZ)
    assert 5 in nal_types(bytes(second))  # a fresh encoder starts with an IDR
    assert track._h264 is not None
    assert track._h264.bitrate_bps == 700_000  # REMB target clamped by the cap

    rig.publish(1.2, 3)
    await rig.wait_index(3)
    third = await asyncio.wait_for(track.recv(), WAIT_S)
    assert 5 not in nal_types(bytes(third))

    sender._RTCRtpSender__force_keyframe = True  # a PLI arrived
    rig.publish(1.3, 4)
    await rig.wait_index(4)
    fourth = await asyncio.wait_for(track.recv(), WAIT_S)
    assert 5 in nal_types(bytes(fourth))
    assert sender._RTCRtpSender__force_keyframe is False

    # A copy of the same request 33 ms later (the operator repeats requests on long round
    # trips) forces nothing; a new request after the hold-off does.
    for time_s, index, idr in ((1.333, 5, False), (1.5, 6, True)):
        sender._RTCRtpSender__force_keyframe = True
        rig.publish(time_s, index)
        await rig.wait_index(index)
        picture = await asyncio.wait_for(track.recv(), WAIT_S)
        assert (5 in nal_types(bytes(picture))) is idr, f"frame {index}"
        assert sender._RTCRtpSender__force_keyframe is False
    assert track.keyframe_holdoff.held_off == 1
    assert track.frames_self_encoded == 5
    track.stop()


def test_keyframe_holdoff_answers_a_burst_of_requests_once() -> None:
    holdoff = KeyframeHoldoff(0.15)
    assert [holdoff.allow(t) for t in (10.0, 10.03, 10.149, 10.15, 10.2, 10.35)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    assert holdoff.held_off == 3
    no_holdoff = KeyframeHoldoff(0.0)
    assert [no_holdoff.allow(1.0), no_holdoff.allow(1.0)] == [True, True]
    with pytest.raises(ConfigError, match="hold-off"):
        KeyframeHoldoff(-0.1)


async def test_without_own_encoder_aiortc_encodes_every_frame(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera, h264=None)
    sender = FakeH264Sender()
    sender._RTCRtpSender__encoder = H264Encoder()
    track.bind_sender(sender)  # type: ignore[arg-type]
    rig.publish(1.0, 1)
    await rig.wait_index(1)
    assert isinstance(await asyncio.wait_for(track.recv(), WAIT_S), av.VideoFrame)
    track.stop()


async def test_real_sender_still_has_the_private_keyframe_flag(rig: Rig) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTrack(CameraVideoTrack(rig.camera))
        assert hasattr(sender, "_RTCRtpSender__force_keyframe"), "aiortc internals changed"
    finally:
        await pc.close()


async def test_capture_times_after_gives_only_the_newer_frames(rig: Rig) -> None:
    track = CameraVideoTrack(rig.camera)
    for counter in range(1, 5):
        rig.publish(float(counter), counter)
        await rig.wait_index(counter)
        await asyncio.wait_for(track.recv(), WAIT_S)
    every = track.recent_capture_times()
    assert track.capture_times_after(-1) == every
    assert track.capture_times_after(every[1][0]) == every[2:]
    assert track.capture_times_after(every[-1][0]) == []
    track.stop()
