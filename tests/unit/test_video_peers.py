"""Two real aiortc peers in one process: camera track out, fast jitter buffer in."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender

from teledrive.operator.video_receive import (
    FastJitterBuffer,
    install_fast_jitter_buffer,
    luma_plane,
)
from teledrive.vehicle.camera import Camera, SyntheticSource, read_frame_counter
from teledrive.vehicle.video_track import CameraVideoTrack, add_camera_track

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
FRAMES_WANTED = 20


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_camera_frames_cross_two_peers_and_decode_in_order(codec: str) -> None:
    camera = Camera(lambda: SyntheticSource(640, 480, 30, name="front"), name="front", fps=30)
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = CameraVideoTrack(camera)
    buffers: list[FastJitterBuffer] = []
    camera.start()
    try:
        transceiver = add_camera_track(sender_pc, track)
        if codec == "VP8":  # negotiation ended on the fallback codec
            capabilities = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in capabilities if c.mimeType in ("video/VP8", "video/rtx")]
            )
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        receivers: list[RTCRtpReceiver] = [
            t.receiver for t in receiver_pc.getTransceivers() if t.kind == "video"
        ]
        assert len(receivers) == 1
        buffers.append(install_fast_jitter_buffer(receivers[0]))
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        video_line = next(
            line for line in receiver_pc.localDescription.sdp.splitlines() if "rtpmap" in line
        )
        assert f" {codec}/90000" in video_line
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)

        remote = receivers[0].track
        counters: list[int | None] = []
        for _ in range(FRAMES_WANTED):
            frame = await asyncio.wait_for(remote.recv(), 10 * TIME_SCALE)
            assert (frame.width, frame.height) == (640, 480)
            counters.append(read_frame_counter(luma_plane(frame)))
    finally:
        await sender_pc.close()
        await receiver_pc.close()
        camera.stop()

    readable = [c for c in counters if c is not None]
    assert len(readable) == FRAMES_WANTED, counters
    assert all(b > a for a, b in itertools.pairwise(readable)), readable
    assert buffers[0].stats.frames_released >= FRAMES_WANTED
    assert buffers[0].stats.frames_dropped == 0
    assert track.frames_sent >= FRAMES_WANTED
    if codec == "H264":
        # aiortc encodes the first frame; teledrive's own H.264 encoder every later one
        assert track.frames_self_encoded >= FRAMES_WANTED - 1
    else:
        assert track.frames_self_encoded == 0
