"""FastJitterBuffer: RTP bytes in, whole frames out, over loss, reordering and wrap-around.

Besides teledrive's own cases this re-expresses every video case of aiortc's
tests/test_jitterbuffer.py (ordered/unordered adds, too-low drop and reset, too-high
discard and reset, frame assembly). aiortc's audio prefetch case does not apply: the buffer
is for video receivers only.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import math
import random
from dataclasses import dataclass

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs import depayload
from aiortc.codecs.h264 import H264Decoder, H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPacket, RtcpRtpfbPacket, RtpPacket

from teledrive.operator.rtp_payload import h264_starts_frame, vp8_is_keyframe, vp8_starts_frame
from teledrive.operator.video_receive import (
    DEFAULT_FEEDBACK_COPIES,
    DEFAULT_FEEDBACK_SPACING_MS,
    DEFAULT_FREEZE_BUDGET_MS,
    DEFAULT_KEYFRAME_ALLOWANCE_MS,
    DEFAULT_MAX_WAIT_MS,
    DEFAULT_MIN_KEYFRAME_INTERVAL_MS,
    AiortcInternalsError,
    FastJitterBuffer,
    ReceiverJitterBuffer,
    RetransmitTimer,
    install_fast_jitter_buffer,
    ts_diff,
)
from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import draw_frame_counter, read_frame_counter

H264_PT = 102
VP8_PT = 97
CODECS = {
    H264_PT: RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=H264_PT),
    VP8_PT: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=VP8_PT),
}
FRAME_TICKS = 3000  # 30 fps at 90 kHz
FRAME_MS = 1000.0 / 30.0


def fixed_wait(wait_ms: float) -> RetransmitTimer:
    """A retransmission timer that always waits ``wait_ms`` (it learns, but is clamped).

    Its round-trip estimate starts at 0, so no keyframe is asked for early unless it learns
    a long round trip.
    """
    return RetransmitTimer(initial_rtt_ms=0.0, min_wait_ms=wait_ms, max_wait_ms=wait_ms)


def frozen_clock() -> float:
    """A clock that never moves: waits never expire, only a full buffer gives up."""
    return 0.0


def codec_name(pt: int) -> str | None:
    codec = CODECS.get(pt)
    return codec.name if codec else None


@dataclass
class EncodedFrame:
    payloads: list[bytes]
    keyframe: bool
    counter: int


def encode_frames(encoder: object, count: int, keyframes: set[int]) -> list[EncodedFrame]:
    rng = np.random.default_rng(7)
    frames = []
    for i in range(count):
        # fresh noise each frame so that inter frames, too, span several packets
        image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        draw_frame_counter(image, 100 + i)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = i * FRAME_TICKS
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, i in keyframes)  # type: ignore[attr-defined]
        frames.append(EncodedFrame(payloads, i == 0 or i in keyframes, 100 + i))
    return frames


@pytest.fixture(scope="module")
def h264_frames() -> list[EncodedFrame]:
    # frame 0 is an IDR (first frame), frame 6 a forced keyframe, the rest inter frames
    frames = encode_frames(H264Encoder(), 9, keyframes={6})
    assert all(len(f.payloads) >= 2 for f in frames[:3]), "want multi-packet frames"
    return frames


@pytest.fixture(scope="module")
def vp8_frames() -> list[EncodedFrame]:
    return encode_frames(Vp8Encoder(), 5, keyframes={3})


def rtp_bytes(pt: int, seq: int, ts: int, payload: bytes, marker: bool) -> bytes:
    packet = RtpPacket(payload_type=pt, sequence_number=seq % 65536, timestamp=ts % (1 << 32))
    packet.ssrc = 1234
    packet.marker = int(marker)
    packet.payload = payload
    return packet.serialize()


def receive(data: bytes) -> RtpPacket:
    """What aiortc's receiver does before the jitter buffer: parse, then depayload."""
    packet = RtpPacket.parse(data)
    packet._data = depayload(CODECS[packet.payload_type], packet.payload)  # type: ignore[attr-defined]
    return packet


@dataclass
class Wire:
    """Packets of a stream as bytes, with the index of the frame each belongs to."""

    packets: list[bytes]
    frame_of: list[int]
    frames: list[EncodedFrame]
    first_ts: int

    def ts(self, frame_index: int) -> int:
        return (self.first_ts + frame_index * FRAME_TICKS) % (1 << 32)

    def expected_data(self, frame_index: int) -> bytes:
        return b"".join(
            receive(p)._data  # type: ignore[attr-defined]
            for p, f in zip(self.packets, self.frame_of, strict=True)
            if f == frame_index
        )

    def last_packet_of(self, frame_index: int) -> int:
        return max(i for i, f in enumerate(self.frame_of) if f == frame_index)


def packetize(
    frames: list[EncodedFrame], pt: int, first_seq: int = 1000, first_ts: int = 5000
) -> Wire:
    packets, frame_of = [], []
    seq = first_seq
    for index, frame in enumerate(frames):
        for j, payload in enumerate(frame.payloads):
            last = j == len(frame.payloads) - 1
            packets.append(rtp_bytes(pt, seq, first_ts + index * FRAME_TICKS, payload, last))
            frame_of.append(index)
            seq += 1
    return Wire(packets, frame_of, frames, first_ts)


class Harness:
    """Feeds packets by index and records what comes out after each one.

    The clock: by default a packet arrives at its frame's capture time (30 fps, no network
    delay), so time moves with the stream (and never backwards: a reordered packet arrives
    "now"); with ``stream_clock=False`` it stays where the test sets ``now_ms``.
    """

    def __init__(
        self,
        wire: Wire,
        *,
        wait_ms: float | None = 60.0,
        timer: RetransmitTimer | None = None,
        stream_clock: bool = True,
        **options: float,
    ) -> None:
        self.wire = wire
        self.now_ms = 0.0
        self.stream_clock = stream_clock
        if timer is None and wait_ms is not None:
            timer = fixed_wait(wait_ms)
        self.buffer = FastJitterBuffer(
            codec_name_for_payload_type=codec_name,
            clock_ms=lambda: self.now_ms,
            retransmit_timer=timer,
            **options,
        )
        self.released: list[tuple[int, JitterFrame]] = []  # (packet index fed, frame)
        self.plis: list[int] = []

    def feed(self, *indices: int) -> list[JitterFrame]:
        out = []
        for i in indices:
            if self.stream_clock:
                self.now_ms = max(self.now_ms, self.wire.frame_of[i] * FRAME_MS)
            pli, frame = self.buffer.add(receive(self.wire.packets[i]))
            if pli:
                self.plis.append(i)
            if frame is not None:
                self.released.append((i, frame))
                out.append(frame)
        return out

    def released_frames(self) -> list[int]:
        by_ts = {self.wire.ts(f): f for f in range(len(self.wire.frames))}
        return [by_ts[frame.timestamp] for _, frame in self.released]

    def check_data(self) -> None:
        for _, frame in self.released:
            index = self.released_frames()[self.released.index((_, frame))]
            assert frame.data == self.wire.expected_data(index)


def decode_counters(frames: list[JitterFrame]) -> list[int | None]:
    decoder = H264Decoder()
    counters = []
    for frame in frames:
        for picture in decoder.decode(JitterFrame(frame.data, frame.timestamp)):
            counters.append(read_frame_counter(picture.to_ndarray(format="gray")))
    return counters


# -- in order ------------------------------------------------------------------------------


def test_in_order_each_frame_released_on_its_marker_packet(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire)
    for i in range(len(wire.packets)):
        out = h.feed(i)
        is_last = i == wire.last_packet_of(wire.frame_of[i])
        assert len(out) == (1 if is_last else 0), f"packet {i}"
    assert h.released_frames() == list(range(len(h264_frames)))
    h.check_data()
    assert h.plis == []
    assert h.buffer.stats.frames_dropped == 0
    assert len(h.buffer) == 0
    assert decode_counters([f for _, f in h.released]) == [f.counter for f in h264_frames]


def test_frame_not_released_before_its_last_packet(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames[:1], H264_PT)
    h = Harness(wire)
    assert h.feed(*range(len(wire.packets) - 1)) == []
    assert len(h.feed(len(wire.packets) - 1)) == 1


# -- reordering ----------------------------------------------------------------------------


def test_reordered_within_a_frame(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames[:2], H264_PT)
    h = Harness(wire)
    n0 = wire.last_packet_of(0) + 1
    order = list(reversed(range(n0)))  # marker first, first packet last
    assert h.feed(*order[:-1]) == []
    assert len(h.feed(order[-1])) == 1
    h.feed(*range(n0, len(wire.packets)))
    assert h.released_frames() == [0, 1]
    h.check_data()
    assert h.plis == []


def test_reordered_across_frames_releases_both_in_order(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames[:3], H264_PT)
    h = Harness(wire)
    end0, end1 = wire.last_packet_of(0), wire.last_packet_of(1)
    h.feed(*range(end0 + 1))
    # frame 1's middle packet comes after all of frame 1's other packets
    held = end0 + 2
    h.feed(*[i for i in range(end0 + 1, end1 + 1) if i != held])
    assert h.released_frames() == [0]
    h.feed(held)
    assert h.released_frames() == [0, 1]
    h.feed(*range(end1 + 1, len(wire.packets)))
    assert h.released_frames() == [0, 1, 2]
    h.check_data()
    assert h.plis == []


def test_one_packet_completing_two_frames_releases_the_second_on_the_next_packet(
    h264_frames: list[EncodedFrame],
) -> None:
    wire = packetize(h264_frames[:3], H264_PT)
    h = Harness(wire)
    end0, end1 = wire.last_packet_of(0), wire.last_packet_of(1)
    h.feed(*range(end0))  # all of frame 0 but its marker packet
    h.feed(*range(end0 + 1, end1 + 1))  # all of frame 1 (an inter frame: must wait)
    assert h.released_frames() == []
    h.feed(end0)
    assert h.released_frames() == [0]
    h.feed(end1 + 1)
    assert h.released_frames() == [0, 1]


# -- loss ----------------------------------------------------------------------------------


def test_lost_packet_no_release_and_keyframe_requested(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire)
    lost = wire.last_packet_of(1) + 1  # first packet of frame 2
    h.feed(*[i for i in range(wire.last_packet_of(5) + 1) if i != lost])
    # frames 2..5 are never released: 2 is incomplete, 3..5 reference it
    assert h.released_frames() == [0, 1]
    assert len(h.plis) == 1
    assert h.buffer.awaiting_keyframe
    assert h.buffer.stats.keyframe_requests == 1
    # the keyframe (frame 6) is released as soon as it is complete, then 7 and 8 again
    h.feed(*range(wire.last_packet_of(5) + 1, len(wire.packets)))
    assert h.released_frames() == [0, 1, 6, 7, 8]
    assert not h.buffer.awaiting_keyframe
    assert h.buffer.stats.frames_dropped == 4
    h.check_data()
    assert decode_counters([f for _, f in h.released]) == [100, 101, 106, 107, 108]


def test_lost_packet_keyframe_request_waits_for_retransmission_time(
    h264_frames: list[EncodedFrame],
) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire, wait_ms=2 * FRAME_MS)
    lost = wire.last_packet_of(1)  # marker of frame 1: the loss shows with frame 2
    h.feed(*[i for i in range(wire.last_packet_of(3) + 1) if i != lost])
    assert h.plis == []  # one interval since the loss showed: still waiting
    h.feed(*range(wire.last_packet_of(3) + 1, wire.last_packet_of(4) + 1))
    assert h.plis == []  # two intervals: not more than the wait
    h.feed(wire.last_packet_of(4) + 1)
    assert len(h.plis) == 1
    assert h.released_frames() == [0]
    assert h.buffer.stats.waits_expired == 1


def test_retransmission_within_wait_recovers_without_keyframe(
    h264_frames: list[EncodedFrame],
) -> None:
    wire = packetize(h264_frames[:5], H264_PT)
    h = Harness(wire)
    lost = wire.last_packet_of(1) - 1
    h.feed(*[i for i in range(wire.last_packet_of(2) + 1) if i != lost])
    assert h.released_frames() == [0]
    h.feed(lost)  # NACKed packet comes back (RTX is unwrapped to the original seq)
    h.feed(*range(wire.last_packet_of(2) + 1, len(wire.packets)))
    assert h.released_frames() == [0, 1, 2, 3, 4]
    assert h.plis == []
    h.check_data()


def test_lost_marker_packet_never_releases_the_frame(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire)
    lost = wire.last_packet_of(3)
    h.feed(*[i for i in range(len(wire.packets)) if i != lost])
    assert 3 not in h.released_frames()
    assert h.released_frames() == [0, 1, 2, 6, 7, 8]
    assert len(h.plis) >= 1


def test_lost_whole_frame_is_detected_by_codec_start(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire)
    gone = {i for i, f in enumerate(wire.frame_of) if f == 2}
    h.feed(*[i for i in range(len(wire.packets)) if i not in gone])
    assert h.released_frames() == [0, 1, 6, 7, 8]


def test_keyframe_ahead_of_a_gap_is_released_without_waiting(
    h264_frames: list[EncodedFrame],
) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire, wait_ms=100 * FRAME_MS)
    lost = wire.last_packet_of(4)
    h.feed(*[i for i in range(wire.last_packet_of(6) + 1) if i != lost])
    assert h.released_frames() == [0, 1, 2, 3, 6]
    assert h.plis == []  # the keyframe made the request unnecessary


def test_stream_starting_with_inter_frames_waits_for_keyframe(
    h264_frames: list[EncodedFrame],
) -> None:
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire)
    h.feed(*range(wire.last_packet_of(0) + 1, len(wire.packets)))  # joined after frame 0
    assert h.released_frames() == [6, 7, 8]
    assert len(h.plis) == 1


# -- duplicates and late packets -------------------------------------------------------------


def test_duplicate_packets_are_counted_and_ignored(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames[:3], H264_PT)
    h = Harness(wire)
    for i in range(len(wire.packets)):
        h.feed(i)
        if i % 2 == 0 and i != wire.last_packet_of(wire.frame_of[i]):
            h.feed(i)
    assert h.released_frames() == [0, 1, 2]
    assert h.buffer.stats.packets_duplicate > 0
    h.check_data()


def test_late_packets_of_a_released_frame_are_dropped(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames[:3], H264_PT)
    h = Harness(wire)
    h.feed(*range(wire.last_packet_of(1) + 1))
    h.feed(0, 1, wire.last_packet_of(1))  # retransmissions arriving after release
    h.feed(*range(wire.last_packet_of(1) + 1, len(wire.packets)))
    assert h.released_frames() == [0, 1, 2]
    assert h.buffer.stats.packets_late == 3


# -- waiting for a retransmission: as long as one takes on this link ----------------------

ONE_WAY_MS = 40.0


@pytest.fixture(scope="module")
def long_h264() -> list[EncodedFrame]:
    # frame 0 and frame 10 are IDRs, the rest inter frames
    return encode_frames(H264Encoder(), 16, keyframes={10})


def arrivals(wire: Wire, *, lost: int, rtx_delay_ms: float) -> list[tuple[float, int]]:
    """(arrival ms, packet index): each frame one way after its capture, packet ``lost``
    retransmitted ``rtx_delay_ms`` after its absence showed (the next packet's arrival)."""
    times = [wire.frame_of[i] * FRAME_MS + ONE_WAY_MS for i in range(len(wire.packets))]
    schedule = [(t, i) for i, t in enumerate(times) if i != lost]
    schedule.append((times[lost + 1] + rtx_delay_ms, lost))
    return sorted(schedule)


def play(h: Harness, schedule: list[tuple[float, int]]) -> None:
    for t_ms, index in schedule:
        h.now_ms = t_ms
        h.feed(index)


def test_retransmission_one_lte_round_trip_late_still_recovers(
    long_h264: list[EncodedFrame],
) -> None:
    wire = packetize(long_h264, H264_PT)
    schedule = arrivals(wire, lost=wire.last_packet_of(1), rtx_delay_ms=115.0)
    h = Harness(wire, wait_ms=None, stream_clock=False)
    h.buffer.observe_rtt_ms(110.0)  # e.g. from clock sync
    play(h, schedule)
    # Nothing dropped; the backlog drains one frame per arriving packet (aiortc's add()
    # returns at most one frame), so the last frame or two are still to come.
    released = h.released_frames()
    assert released == list(range(len(released)))
    assert len(released) >= len(long_h264) - 2
    assert h.buffer.stats.frames_dropped == 0
    assert h.buffer.stats.waits_expired == 0
    # At most a keyframe asked for as insurance in case the retransmission was lost too
    # (with its copies: on this round trip feedback is repeated).
    stats = h.buffer.stats
    assert stats.keyframe_requests == stats.keyframe_requests_early <= 1
    assert len(h.plis) == stats.keyframe_requests + stats.keyframe_requests_repeated
    assert h.buffer.stats.packets_recovered == 1
    h.check_data()
    # The same link with a fixed 60 ms wait: the retransmission is thrown away.
    fixed = Harness(wire, wait_ms=60.0, stream_clock=False)
    play(fixed, schedule)
    assert fixed.released_frames()[:2] == [0, 10]  # 1..9 lost, until the next keyframe
    assert len(fixed.plis) == 1
    assert fixed.buffer.stats.packets_recovered_late == 1
    # The late marker packet ended the dropped frame: the inter frames after it were dropped
    # in order, with no second wait.
    assert fixed.buffer.stats.waits_expired == 1


def test_wait_learns_the_retransmission_delay_from_late_packets(
    long_h264: list[EncodedFrame],
) -> None:
    wire = packetize(long_h264, H264_PT)
    first, second = wire.last_packet_of(2), wire.last_packet_of(12)
    schedule = arrivals(wire, lost=first, rtx_delay_ms=120.0)
    late_second = next(t for t, i in arrivals(wire, lost=second, rtx_delay_ms=120.0) if i == second)
    schedule = sorted([(t, i) for t, i in schedule if i != second] + [(late_second, second)])
    timer = RetransmitTimer(initial_rtt_ms=10.0, min_wait_ms=10.0)
    h = Harness(wire, timer=timer, stream_clock=False, feedback_copies=1)
    play(h, schedule)
    # The first loss outlived a 10 ms guess: dropped, a keyframe asked for (frame 10 came).
    assert h.buffer.stats.packets_recovered_late == 1
    assert len(h.plis) == 1
    assert timer.samples == 2
    assert timer.wait_ms > 120.0
    # The second, as slow, was waited for: nothing more dropped or asked for.
    released = h.released_frames()
    assert released[:3] == [0, 1, 10]
    assert released[2:] == list(range(10, 10 + len(released) - 2))
    assert len(released) >= 5
    assert h.buffer.stats.waits_expired == 1
    assert h.buffer.stats.packets_recovered == 1
    h.check_data()


def test_a_burst_of_newer_frames_does_not_cut_the_wait_short(
    h264_frames: list[EncodedFrame],
) -> None:
    # Frames queued behind a keyframe arrive together: RTP time jumps, the clock does not.
    wire = packetize(h264_frames, H264_PT)
    h = Harness(wire, wait_ms=100.0, stream_clock=False)
    lost = wire.last_packet_of(1) - 1
    h.feed(*range(lost))
    h.feed(*range(lost + 1, wire.last_packet_of(4) + 1))  # frames 1..4 at the same instant
    h.now_ms = 50.0
    h.feed(lost)
    h.feed(*range(wire.last_packet_of(4) + 1, len(wire.packets)))
    released = h.released_frames()
    assert released == list(range(len(released)))
    assert len(released) >= 6
    assert h.buffer.stats.frames_dropped == 0
    assert h.plis == []


def test_a_frame_still_arriving_is_never_given_up(h264_frames: list[EncodedFrame]) -> None:
    # A large keyframe crossing a slow link: no newer packet yet, nothing is missing.
    wire = packetize(h264_frames[:1], H264_PT)
    h = Harness(wire, wait_ms=30.0, stream_clock=False)
    half = len(wire.packets) // 2
    h.feed(*range(half))
    h.now_ms = 500.0
    h.feed(*range(half, len(wire.packets)))
    assert h.released_frames() == [0]
    assert h.buffer.stats.waits_expired == 0


@pytest.mark.parametrize(("rtt_ms", "early"), [(40.0, False), (110.0, True), (250.0, True)])
def test_long_round_trip_asks_for_a_keyframe_while_still_waiting(
    long_h264: list[EncodedFrame], rtt_ms: float, early: bool
) -> None:
    # The retransmission never comes. On a short round trip the wait ends before a keyframe
    # round trip would overrun the freeze budget; on longer ones the keyframe is asked for
    # while still waiting (at once when even that cannot hold the budget).
    wire = packetize(long_h264, H264_PT)
    lost = wire.last_packet_of(1) - 1  # not the marker: the give-up knows where frame 1 ends
    schedule = [(t, i) for t, i in arrivals(wire, lost=lost, rtx_delay_ms=0.0) if i != lost]
    # One copy of each request: copies are tested on their own.
    h = Harness(wire, wait_ms=None, stream_clock=False, feedback_copies=1)
    for _ in range(20):
        h.buffer.observe_rtt_ms(rtt_ms)
    shows_ms = schedule[lost][0]  # the packet after the lost one
    play(h, schedule)
    assert len(h.plis) == 1  # the give-up does not ask again so soon
    asked_ms = next(t for t, i in schedule if i == h.plis[0]) - shows_ms
    buffer = h.buffer
    assert buffer.stats.keyframe_requests_early == int(early)
    if early:
        assert buffer.early_keyframe_after_ms <= asked_ms < buffer.early_keyframe_after_ms + 34
        keyframe_ms = buffer.early_keyframe_after_ms + rtt_ms + DEFAULT_KEYFRAME_ALLOWANCE_MS
        assert keyframe_ms <= max(DEFAULT_FREEZE_BUDGET_MS, rtt_ms + 200.0)
        assert asked_ms < buffer.timer.wait_ms
    else:
        assert buffer.timer.wait_ms < asked_ms < buffer.timer.wait_ms + 34
    assert buffer.stats.waits_expired == 1
    assert h.released_frames()[:2] == [0, 10]


def inter_frames_only(h264_frames: list[EncodedFrame], count: int) -> Wire:
    return packetize([h264_frames[1]] * count, H264_PT)


@pytest.mark.parametrize("rtt_ms", [10.0, 250.0])
def test_keyframe_requests_wait_for_the_keyframe_to_arrive(
    h264_frames: list[EncodedFrame], rtt_ms: float
) -> None:
    wire = inter_frames_only(h264_frames, 45)  # 1.5 s of a stream joined without a keyframe
    h = Harness(wire, wait_ms=None, feedback_copies=1)  # copies are tested on their own
    for _ in range(20):
        h.buffer.observe_rtt_ms(rtt_ms)
    interval_ms = h.buffer.keyframe_interval_ms
    assert interval_ms >= max(DEFAULT_MIN_KEYFRAME_INTERVAL_MS, rtt_ms + 150.0)
    h.feed(*range(len(wire.packets)))
    times_ms = [wire.frame_of[i] * FRAME_MS for i in h.plis]
    gaps_ms = [b - a for a, b in itertools.pairwise(times_ms)]
    # Asked again as soon as the interval allows (frames come every FRAME_MS), never sooner.
    assert gaps_ms
    assert all(interval_ms <= gap < interval_ms + FRAME_MS + 1e-6 for gap in gaps_ms)
    assert h.buffer.stats.keyframe_requests == len(times_ms)


@pytest.mark.parametrize("lose", ["marker", "whole frame"])
def test_a_stream_stuck_after_a_loss_asks_for_a_keyframe_at_every_interval(
    h264_frames: list[EncodedFrame], lose: str
) -> None:
    # Frame 1 is lost (its end, or all of it) and neither its retransmission nor any keyframe
    # ever comes (the requests were lost). Every later frame is an inter frame that cannot be
    # released, so the stream stays blocked: the buffer must keep asking for a keyframe as
    # often as the interval allows, not only when a wait runs out again.
    frames = [h264_frames[0]] + [h264_frames[1]] * 60  # 2 s after the loss
    wire = packetize(frames, H264_PT)
    first, last = wire.frame_of.index(1), wire.last_packet_of(1)
    lost = {last} if lose == "marker" else set(range(first, last + 1))
    h = Harness(wire, wait_ms=None, feedback_copies=1)  # copies are tested on their own
    for _ in range(20):
        h.buffer.observe_rtt_ms(250.0)
    interval_ms = h.buffer.keyframe_interval_ms
    h.feed(*(i for i in range(len(wire.packets)) if i not in lost))
    assert h.released_frames() == [0]
    times_ms = [wire.frame_of[i] * FRAME_MS for i in h.plis]
    assert times_ms[0] - FRAME_MS <= h.buffer.wait_ms  # the first: early, or the give-up
    gaps_ms = [b - a for a, b in itertools.pairwise(times_ms)]
    assert len(gaps_ms) >= 2
    assert all(interval_ms <= gap < interval_ms + FRAME_MS + 1e-6 for gap in gaps_ms), (
        gaps_ms,
        interval_ms,
        h.buffer.wait_ms,
    )


def test_a_keyframe_under_repair_is_not_asked_for_again(long_h264: list[EncodedFrame]) -> None:
    # A keyframe arrives with one packet lost on a long round trip. Its retransmission is on
    # the way: a second keyframe asked for early would only load the link (on a thin uplink
    # a keyframe is most of a queue).
    wire = packetize(long_h264, H264_PT)
    first, last = wire.frame_of.index(10), wire.last_packet_of(10)
    assert last - first >= 2, "want a keyframe of three packets or more"
    lost = first + 1
    schedule = arrivals(wire, lost=lost, rtx_delay_ms=200.0)
    h = Harness(wire, wait_ms=None, stream_clock=False, feedback_copies=1)
    for _ in range(20):
        h.buffer.observe_rtt_ms(250.0)
    assert h.buffer.early_keyframe_after_ms == 0.0  # an inter frame would be asked for at once
    assert h.buffer.wait_ms > 200.0
    play(h, schedule)
    assert h.plis == []
    assert h.released_frames()[:11] == list(range(11))  # the repaired keyframe among them


def test_observe_rtt_refuses_nonsense() -> None:
    buffer = FastJitterBuffer(clock_ms=frozen_clock)
    before = buffer.timer.wait_ms
    for bad in (-1.0, math.nan, math.inf):
        buffer.observe_rtt_ms(bad)
    assert buffer.stats.rtt_rejected == 3
    assert buffer.timer.wait_ms == before
    assert buffer.timer.samples == 0


def test_retransmit_timer_smooths_and_bounds() -> None:
    timer = RetransmitTimer(initial_rtt_ms=100.0, min_wait_ms=30.0, max_wait_ms=350.0)
    assert timer.wait_ms == 100.0 + 3 * 50.0 + 15.0  # before any sample: cautious
    timer.observe(40.0)
    assert (timer.srtt_ms, timer.deviation_ms) == (40.0, 20.0)  # first sample replaces
    for _ in range(100):
        timer.observe(40.0)
    assert timer.srtt_ms == pytest.approx(40.0)
    assert timer.wait_ms == pytest.approx(40.0 + 15.0, abs=0.5)
    timer.observe(140.0)  # one slow sample moves it by an eighth, widens the deviation
    assert timer.srtt_ms == pytest.approx(52.5, abs=0.1)
    assert timer.wait_ms > 100.0
    for _ in range(100):
        timer.observe(1.0)
    assert timer.wait_ms == 30.0
    for _ in range(100):
        timer.observe(5000.0)
    assert timer.wait_ms == 350.0


@pytest.mark.parametrize(
    "options",
    [
        {"min_wait_ms": 200.0, "max_wait_ms": 100.0},
        {"margin_ms": -1.0},
        {"deviation_weight": -1.0},
        {"initial_rtt_ms": math.nan},
    ],
)
def test_retransmit_timer_rejects_bad_settings(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="retransmit timer"):
        RetransmitTimer(**options)


# -- wrap-around ---------------------------------------------------------------------------


def test_sequence_number_wrap_around(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT, first_seq=65536 - 7)
    h = Harness(wire)
    # reorder across the wrap too
    order = list(range(len(wire.packets)))
    order[6], order[7] = order[7], order[6]
    h.feed(*order)
    assert h.released_frames() == list(range(len(h264_frames)))
    assert h.plis == []
    h.check_data()


def test_timestamp_wrap_around(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT, first_ts=(1 << 32) - 2 * FRAME_TICKS - 5)
    assert wire.ts(5) < wire.ts(0)
    h = Harness(wire)
    h.feed(*range(len(wire.packets)))
    assert h.released_frames() == list(range(len(h264_frames)))
    assert h.plis == []


def test_timestamp_wrap_around_with_loss_still_times_out(h264_frames: list[EncodedFrame]) -> None:
    wire = packetize(h264_frames, H264_PT, first_ts=(1 << 32) - FRAME_TICKS)
    h = Harness(wire, wait_ms=2 * FRAME_MS)
    lost = wire.last_packet_of(1)  # shows with frame 2; frame 5 comes after the wait
    h.feed(*[i for i in range(wire.last_packet_of(5) + 1) if i != lost])
    assert len(h.plis) == 1
    assert h.released_frames() == [0]


def test_ts_diff_is_signed_modulo_2_32() -> None:
    assert ts_diff(5, (1 << 32) - 5) == 10
    assert ts_diff((1 << 32) - 5, 5) == -10
    assert ts_diff(3000, 0) == 3000


# -- the cases of aiortc's own jitter buffer tests, re-expressed --------------------------


def plain(seq: int, ts: int, marker: bool = False, data: bytes | None = None) -> RtpPacket:
    """A packet of a payload type without codec rules (like aiortc's tests use)."""
    packet = RtpPacket(payload_type=111, sequence_number=seq % 65536, timestamp=ts)
    packet.marker = int(marker)
    packet.payload = data if data is not None else seq.to_bytes(4, "big")
    packet._data = packet.payload  # type: ignore[attr-defined]
    return packet


def test_capacity_is_reported_and_validated() -> None:
    assert FastJitterBuffer(capacity=4, clock_ms=frozen_clock).capacity == 4
    with pytest.raises(ConfigError, match="capacity"):
        FastJitterBuffer(capacity=1)
    with pytest.raises(ConfigError, match="min_keyframe_interval_ms"):
        FastJitterBuffer(min_keyframe_interval_ms=-1.0)


def test_add_ordered_without_frame_end_holds_everything() -> None:
    buffer = FastJitterBuffer(capacity=4, clock_ms=frozen_clock)
    for seq in range(4):
        assert buffer.add(plain(seq, 1234)) == (False, None)
    assert len(buffer) == 4


def test_add_unordered_holds_until_complete() -> None:
    buffer = FastJitterBuffer(clock_ms=frozen_clock)
    assert buffer.add(plain(1, 1234)) == (False, None)
    assert buffer.add(plain(3, 1234)) == (False, None)
    assert buffer.add(plain(2, 1234)) == (False, None)
    assert len(buffer) == 3


def test_video_frame_released_on_timestamp_change_without_marker() -> None:
    # a sender that never sets the marker bit: frames end where the timestamp changes
    buffer = FastJitterBuffer(clock_ms=frozen_clock)
    assert buffer.add(plain(0, 1000, data=b"0000"))[1] is None
    assert buffer.add(plain(1, 1234, data=b"0001"))[1] is None
    assert buffer.add(plain(2, 1234, data=b"0002"))[1] is None
    _, frame = buffer.add(plain(3, 1235, data=b"0003"))
    assert frame is not None
    assert (frame.data, frame.timestamp) == (b"00010002", 1234)


def test_video_frame_released_on_marker() -> None:
    buffer = FastJitterBuffer(clock_ms=frozen_clock)
    buffer.add(plain(9, 1000, marker=True))  # end of a previous frame: boundary known
    buffer.add(plain(10, 1234, data=b"a"))
    _, frame = buffer.add(plain(11, 1234, marker=True, data=b"b"))
    assert frame is not None
    assert (frame.data, frame.timestamp) == (b"ab", 1234)


def test_seq_too_low_is_dropped() -> None:
    buffer = FastJitterBuffer(capacity=4, clock_ms=frozen_clock)
    buffer.add(plain(1, 1000, marker=True))
    buffer.add(plain(2, 1234, marker=True))  # released
    assert buffer.stats.frames_released == 1
    assert buffer.add(plain(1, 1000, marker=True)) == (False, None)
    assert buffer.stats.packets_late == 1


def test_seq_too_low_resets_for_a_restarted_sender() -> None:
    buffer = FastJitterBuffer(capacity=4, clock_ms=frozen_clock)
    buffer.add(plain(2000, 1000, marker=True))
    buffer.add(plain(2001, 1234))
    buffer.add(plain(1, 50, marker=True))
    assert buffer.stats.resets == 1
    assert len(buffer) == 1
    _, frame = buffer.add(plain(2, 80, marker=True, data=b"new"))
    assert frame is not None
    assert frame.data == b"new"


@pytest.mark.parametrize("jump", [4, 5, 3000])
def test_seq_too_high_resets_and_requests_keyframe(jump: int) -> None:
    buffer = FastJitterBuffer(capacity=4, clock_ms=frozen_clock)
    for seq in range(3):
        buffer.add(plain(seq, 1234))
    pli, _ = buffer.add(plain(3 + jump, 99_000, marker=True))
    assert pli
    assert buffer.stats.resets == 1
    assert buffer.stats.frames_dropped == 1  # the frame of seqs 0..2
    _, frame = buffer.add(plain(4 + jump, 99_500, marker=True, data=b"x"))
    assert frame is not None
    assert frame.data == b"x"


def test_full_buffer_gives_up_the_oldest_frame() -> None:
    buffer = FastJitterBuffer(capacity=4, clock_ms=frozen_clock)
    buffer.add(plain(0, 1000))
    buffer.add(plain(2, 1000))  # seq 1 lost, frame never completes
    buffer.add(plain(3, 1000))
    assert buffer.add(plain(4, 2000)) == (False, None)  # 4 packets: full, not over
    pli, _ = buffer.add(plain(5, 2000))
    assert pli
    assert buffer.stats.frames_dropped == 1
    assert len(buffer) == 2


# -- codec rules ---------------------------------------------------------------------------


def test_h264_frame_starts_are_recognised(h264_frames: list[EncodedFrame]) -> None:
    for frame in h264_frames:
        assert h264_starts_frame(frame.payloads[0])
        # FU-A continuations and later slices never look like a start
        for payload in frame.payloads[1:]:
            if payload[0] & 0x1F == 28 and not payload[1] & 0x80:
                assert not h264_starts_frame(payload)
    assert not h264_starts_frame(b"")
    assert not h264_starts_frame(b"\x7c")


def test_vp8_frame_starts_and_keyframes(vp8_frames: list[EncodedFrame]) -> None:
    for frame in vp8_frames:
        assert vp8_starts_frame(frame.payloads[0])
        assert vp8_is_keyframe(frame.payloads[0]) == frame.keyframe
        assert not any(vp8_starts_frame(p) for p in frame.payloads[1:])
    assert not vp8_starts_frame(b"")
    assert not vp8_is_keyframe(b"\x90")


def test_vp8_stream_with_loss(vp8_frames: list[EncodedFrame]) -> None:
    wire = packetize(vp8_frames, VP8_PT)
    h = Harness(wire)
    lost = wire.last_packet_of(1)
    h.feed(*[i for i in range(len(wire.packets)) if i != lost])
    assert h.released_frames() == [0, 3, 4]
    h.check_data()


# -- fuzz: whatever the network does, no corrupt or out-of-order frame -----------------


def network_orders(n: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """A random mix of loss, reordering (local swaps or a full shuffle) and duplicates."""
    lost = {rng.randrange(n) for _ in range(rng.randrange(7))}
    order = [i for i in range(n) if i not in lost]
    if rng.random() < 0.3:
        rng.shuffle(order)
    else:
        for _ in range(rng.randrange(6)):
            if len(order) > 2:
                a = rng.randrange(len(order) - 1)
                order[a], order[a + 1] = order[a + 1], order[a]
    duplicates = [rng.choice(order) for _ in range(rng.randrange(4))] if order else []
    return order, duplicates


def test_never_releases_corrupt_or_out_of_order_frames(h264_frames: list[EncodedFrame]) -> None:
    rng = random.Random(20261127)  # fixed seed: the same 400 networks every run
    for _ in range(400):
        wire = packetize(
            h264_frames, H264_PT, first_seq=rng.randrange(65536), first_ts=rng.randrange(1 << 32)
        )
        order, duplicates = network_orders(len(wire.packets), rng)
        h = Harness(wire)
        h.feed(*order, *duplicates)
        released = h.released_frames()
        assert released == sorted(set(released)), f"out of order or twice: {order}"
        h.check_data()
        if order == list(range(len(wire.packets))):
            assert released == list(range(len(h264_frames)))


# -- installing into aiortc ----------------------------------------------------------------


async def test_install_replaces_the_receiver_buffer() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        buffer = install_fast_jitter_buffer(receiver)
        assert receiver._RTCRtpReceiver__jitter_buffer.buffer is buffer
    finally:
        await pc.close()


async def test_install_refuses_audio_receivers() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        with pytest.raises(AiortcInternalsError, match="kind"):
            install_fast_jitter_buffer(receiver)
    finally:
        await pc.close()


def test_install_fails_loudly_when_aiortc_internals_change() -> None:
    class NotAReceiver:
        pass

    with pytest.raises(AiortcInternalsError, match="_RTCRtpReceiver__jitter_buffer"):
        install_fast_jitter_buffer(NotAReceiver())


def test_default_wait_is_bounded_for_teleop() -> None:
    # Beyond the vehicle's 300 ms freeze bound a keyframe round trip is the better bet; the
    # bound leaves room for one frame interval on top.
    assert DEFAULT_MAX_WAIT_MS <= 350.0
    timer = RetransmitTimer()
    timer.observe(10_000.0)
    assert timer.wait_ms == DEFAULT_MAX_WAIT_MS


def test_the_buffer_waits_at_most_the_bound_plus_the_spread_of_its_copies() -> None:
    # With copies the buffer also waits for the retransmission its last NACK copy asks for,
    # sent (copies - 1) x spacing after the first: 450 ms by default, on any round trip.
    buffer = FastJitterBuffer()
    buffer.observe_rtt_ms(10_000.0)
    assert buffer.repeats_feedback
    spread_ms = (DEFAULT_FEEDBACK_COPIES - 1) * DEFAULT_FEEDBACK_SPACING_MS
    assert buffer.wait_ms == DEFAULT_MAX_WAIT_MS + spread_ms


# -- repeated feedback on long round trips -------------------------------------------------


def play_collecting_nacks(h: Harness, schedule: list[tuple[float, int]]) -> list[list[int]]:
    """Like :func:`play`, collecting what the buffer asks to NACK again after each packet."""
    nacks = []
    for t_ms, index in schedule:
        h.now_ms = t_ms
        h.feed(index)
        due = h.buffer.take_nacks()
        if due:
            nacks.append(due)
    return nacks


@pytest.mark.parametrize(
    ("rtt_ms", "repeats"), [(20.0, False), (110.0, False), (160.0, True), (250.0, True)]
)
def test_feedback_is_repeated_when_a_second_round_trip_does_not_fit(
    long_h264: list[EncodedFrame], rtt_ms: float, repeats: bool
) -> None:
    # The retransmission never comes. On a long round trip a lost NACK, retransmission or
    # keyframe request could not be asked for again in time: each NACK and keyframe request
    # goes out three times, spaced. On a short one, once (asking again fits), and so
    # on a 110 ms one once the round trip is steady.
    wire = packetize(long_h264, H264_PT)
    lost = wire.last_packet_of(1) - 1
    lost_seq = RtpPacket.parse(wire.packets[lost]).sequence_number
    schedule = [(t, i) for t, i in arrivals(wire, lost=lost, rtx_delay_ms=0.0) if i != lost]
    h = Harness(wire, wait_ms=None, stream_clock=False)
    for _ in range(20):
        h.buffer.observe_rtt_ms(rtt_ms)
    assert h.buffer.repeats_feedback is repeats
    nacks = play_collecting_nacks(h, schedule)
    stats = h.buffer.stats
    if not repeats:
        assert nacks == []
        assert stats.nacks_repeated == stats.keyframe_requests_repeated == 0
        return
    assert nacks == [[lost_seq], [lost_seq]]
    assert stats.nacks_repeated == 2
    # The keyframe request (early, the retransmission may be lost) and its two copies, each
    # on the first packet DEFAULT_FEEDBACK_SPACING_MS after the one before; then frame 10, a
    # keyframe, ends it.
    times_ms = [next(t for t, i in schedule if i == pli) for pli in h.plis]
    assert len(times_ms) == 3
    assert stats.keyframe_requests == 1
    assert stats.keyframe_requests_repeated == 2
    spacing = DEFAULT_FEEDBACK_SPACING_MS
    assert all(spacing <= b - a < spacing + FRAME_MS for a, b in itertools.pairwise(times_ms))
    assert h.released_frames()[:2] == [0, 10]


def test_copies_stop_when_the_retransmission_comes(long_h264: list[EncodedFrame]) -> None:
    wire = packetize(long_h264, H264_PT)
    lost = wire.last_packet_of(1) - 1
    lost_seq = RtpPacket.parse(wire.packets[lost]).sequence_number
    # The retransmission of the first NACK is lost, that of the first copy comes.
    schedule = arrivals(wire, lost=lost, rtx_delay_ms=250.0 + 35.0)
    h = Harness(wire, wait_ms=None, stream_clock=False)
    for _ in range(20):
        h.buffer.observe_rtt_ms(250.0)
    nacks = play_collecting_nacks(h, schedule)
    assert nacks == [[lost_seq], [lost_seq]]  # the third copy went before it came
    released = h.released_frames()
    assert released == list(range(len(released)))  # recovered: nothing dropped
    assert h.buffer.stats.frames_dropped == 0
    assert h.buffer.stats.packets_recovered == 1
    # The keyframe request copies stopped when the frame could be released.
    assert h.buffer.stats.keyframe_requests == 1
    assert 1 + h.buffer.stats.keyframe_requests_repeated == len(h.plis) <= 3


def test_one_copy_means_no_repeats(long_h264: list[EncodedFrame]) -> None:
    wire = packetize(long_h264, H264_PT)
    lost = wire.last_packet_of(1) - 1
    schedule = [(t, i) for t, i in arrivals(wire, lost=lost, rtx_delay_ms=0.0) if i != lost]
    h = Harness(wire, wait_ms=None, stream_clock=False, feedback_copies=1)
    for _ in range(20):
        h.buffer.observe_rtt_ms(250.0)
    assert not h.buffer.repeats_feedback
    assert play_collecting_nacks(h, schedule) == []
    with pytest.raises(ConfigError, match="feedback_copies"):
        FastJitterBuffer(feedback_copies=0)
    with pytest.raises(ConfigError, match="feedback_spacing_ms"):
        FastJitterBuffer(feedback_spacing_ms=-1.0)


async def test_installed_buffer_sends_the_nack_copies(long_h264: list[EncodedFrame]) -> None:
    # What aiortc's receiver calls: the buffer's add(), and the copies sent on its loop.
    wire = packetize(long_h264, H264_PT)
    lost = wire.last_packet_of(1) - 1
    lost_seq = RtpPacket.parse(wire.packets[lost]).sequence_number
    sent: list[tuple[int, list[int]]] = []
    all_sent = asyncio.Event()

    async def send_nack(ssrc: int, seqs: list[int]) -> None:
        sent.append((ssrc, seqs))
        if len(sent) == 2:
            all_sent.set()

    clock = {"ms": 0.0}
    buffer = FastJitterBuffer(codec_name_for_payload_type=codec_name, clock_ms=lambda: clock["ms"])
    for _ in range(20):
        buffer.observe_rtt_ms(250.0)
    receiver_side = ReceiverJitterBuffer(buffer, send_nack)
    for t_ms, index in arrivals(wire, lost=lost, rtx_delay_ms=10_000.0)[: len(wire.packets) - 1]:
        clock["ms"] = t_ms
        receiver_side.add(receive(wire.packets[index]))
    await asyncio.wait_for(all_sent.wait(), timeout=5.0)
    assert sent == [(1234, [lost_seq]), (1234, [lost_seq])]


def test_nack_copies_across_the_sequence_wrap_are_ascending(long_h264: list[EncodedFrame]) -> None:
    # aiortc packs NACKs as (PID, bitmask) pairs from an ascending list; one across the
    # wrap-around in arrival order (65535 before 0) would make it raise.
    first_seq = 65536 - 3
    wire = packetize(long_h264, H264_PT, first_seq=first_seq)
    lost = {2, 3}  # sequence numbers 65535 and 0
    schedule = [(t, i) for t, i in arrivals(wire, lost=0, rtx_delay_ms=0.0) if i not in lost]
    h = Harness(wire, wait_ms=None, stream_clock=False)
    for _ in range(20):
        h.buffer.observe_rtt_ms(250.0)
    nacks = play_collecting_nacks(h, schedule)
    assert nacks == [[0, 65535], [0, 65535]]
    packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=1234)
    packet.lost = nacks[0]
    assert RtcpPacket.parse(bytes(packet))[0].lost == [0, 65535]
