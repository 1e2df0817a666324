"""teledrive's own H.264 encoder: keyframes, parameter sets, bitrate reopen, decodability."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import SyntheticSource, read_frame_counter
from teledrive.vehicle.h264_encoder import H264Settings, H264StreamEncoder


def nal_types(access_unit: bytes) -> list[int]:
    units = [u for u in access_unit.split(b"\x00\x00\x01") if u.strip(b"\x00")]
    return [u[0] & 0x1F for u in units]


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(320, 240, 30, name="enc")


def test_keyframe_interval_and_parameter_sets(source: SyntheticSource) -> None:
    encoder = H264StreamEncoder(H264Settings(keyframe_interval_s=0.5, fps=20))
    keyframes = []
    for i in range(25):
        types = nal_types(encoder.encode(source.render(i), i * 4500))
        if 5 in types:
            keyframes.append(i)
            assert {7, 8} <= set(types), "SPS and PPS travel with every IDR"
        else:
            assert 1 in types
    assert keyframes == [0, 10, 20]


def test_forced_keyframe(source: SyntheticSource) -> None:
    encoder = H264StreamEncoder(H264Settings())
    encoder.encode(source.render(0), 0)
    assert 5 not in nal_types(encoder.encode(source.render(1), 3000))
    assert 5 in nal_types(encoder.encode(source.render(2), 6000, keyframe=True))


def test_bitrate_changes_reopen_only_beyond_hysteresis(source: SyntheticSource) -> None:
    encoder = H264StreamEncoder(H264Settings(start_bitrate_bps=1_000_000))
    encoder.encode(source.render(0), 0)
    encoder.set_target_bitrate(1_100_000)  # +10%: ignored
    encoder.encode(source.render(1), 3000)
    assert encoder.reopened == 1
    encoder.set_target_bitrate(2_000_000)
    assert encoder.bitrate_bps == 2_000_000
    assert 5 in nal_types(encoder.encode(source.render(2), 6000))  # reopened: keyframe
    assert encoder.reopened == 2
    encoder.set_target_bitrate(50_000_000)
    assert encoder.bitrate_bps == H264Settings().max_bitrate_bps


def test_output_decodes_to_the_same_counter(source: SyntheticSource) -> None:
    encoder = H264StreamEncoder(H264Settings())
    decoder = av.CodecContext.create("h264", "r")
    counters = []
    for i in range(5):
        for frame in decoder.decode(av.Packet(encoder.encode(source.render(i), i * 3000))):
            counters.append(read_frame_counter(frame.to_ndarray(format="gray")))
    assert counters == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (H264Settings(preset="placebo"), "preset"),
        (H264Settings(threads=0), "threads"),
        (H264Settings(fps=0), "fps"),
        (H264Settings(min_bitrate_bps=5, max_bitrate_bps=4), "bitrate"),
        (H264Settings(vbv_buffer_s=0.0), "vbv_buffer_s"),
        (H264Settings(vbv_buffer_s=float("nan")), "vbv_buffer_s"),
    ],
)
def test_bad_settings_are_rejected(settings: H264Settings, match: str) -> None:
    with pytest.raises(ConfigError, match=f"camera 'x'.*{match}"):
        H264StreamEncoder(settings, where="camera 'x'")


def test_odd_picture_size_is_rejected() -> None:
    encoder = H264StreamEncoder(H264Settings())
    with pytest.raises(ConfigError, match="even"):
        encoder.encode(np.zeros((241, 320, 3), dtype=np.uint8), 0)


def keyframe_sizes(settings: H264Settings, frames: int = 45) -> list[int]:
    """Sizes of the keyframes after the first (the periodic ones) at 640x480."""
    source = SyntheticSource(640, 480, 30, name="vbv")
    encoder = H264StreamEncoder(settings)
    sizes = []
    for i in range(frames):
        access_unit = encoder.encode(source.render(i), i * 3000)
        if i and 5 in nal_types(access_unit):
            sizes.append(len(access_unit))
    return sizes


def test_rate_buffer_bounds_keyframe_size() -> None:
    # A keyframe crossing a rate-limited uplink holds up every frame behind it.
    settings = H264Settings(keyframe_interval_s=0.5, start_bitrate_bps=1_000_000)
    unbounded = keyframe_sizes(dataclasses.replace(settings, vbv_buffer_s=None))
    bounded = keyframe_sizes(dataclasses.replace(settings, vbv_buffer_s=0.25))
    assert len(bounded) == len(unbounded) == 2
    buffer_bytes = 1_000_000 * 0.25 / 8
    assert max(bounded) <= buffer_bytes
    assert max(bounded) < max(unbounded) / 2
