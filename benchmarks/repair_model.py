"""The video repair loop over the link lab's link model, in simulated time.

A long run of ``benchmarks/link_lab.py`` takes ten minutes for about 14,000 gaps between
frames, and a freeze over 500 ms beyond fades under ``bad-cell`` comes about once in 9,000
of them: too rare to compare two settings of the repair in a session. This model runs the
same repair code without sockets, processes or a wall clock, about 60 times faster than
real time on one core:

- the link is the lab's own :class:`~teledrive.shared.linklab.impair.Impairment`, one per
  direction (with ``--links 2``, two per direction: every packet goes over both and the
  first copy counts, the way a bonded pair of modems would carry it; there is no reordering
  buffer, so a packet overtaken on the other path reads as lost until it comes, which costs
  NACKs and keyframe requests a real tunnel would save);
- the operator runs aiortc's ``NackGenerator`` (its receiver's first NACK of every gap) and
  teledrive's :class:`~teledrive.operator.video_receive.FastJitterBuffer` (repeated NACKs,
  keyframe requests, the frames it releases), fed the round trips of a clock sync that
  pings ten times a second over the same link;
- the vehicle answers NACKs through
  :class:`~teledrive.vehicle.retransmit_guard.RetransmitBudget` and keyframe requests through
  :class:`~teledrive.vehicle.video_track.KeyframeHoldoff`.

What it leaves out: the encoder (inter frames have one size, keyframes
:data:`KEYFRAME_RATIO` of them, one keyframe a second besides the forced ones), the bitrate
adaptation (the video runs at ``--bitrate-bps``), the control and telemetry channels, and
the host (no scheduling delays, no stalls). So it shows what the link and the repair
protocol alone make of losses: how often a setting of the repair, or a second link, lets
the picture freeze. It is calibrated against the lab, not a replacement for it: under
``bad-cell`` it gives about half the lab's freezes over 500 ms beyond fades (the lab adds
cuts, adaptation and a busy host) and about as many over 300 ms (see the README).

Gaps are measured as the lab benchmark measures them (``frame_gaps``: less the fades of
either direction, looking back one worst one-way delay) after a 5 s warm-up;
``freezes_over_ms`` counts whole gaps, as the vehicle's 300 ms video-freeze bound sees them.
Prints one JSON object (the last line).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import heapq
import itertools
import json
import math
import statistics
import sys
from collections.abc import Callable
from typing import Any

from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

from teledrive.operator.video_receive import (
    DEFAULT_FEEDBACK_COPIES,
    DEFAULT_FEEDBACK_SPACING_MS,
    FastJitterBuffer,
)
from teledrive.shared.linklab.impair import Impairment, Scheduled
from teledrive.shared.linklab.profiles import PROFILES, DirectionProfile
from teledrive.shared.linklab.system import frame_gaps
from teledrive.vehicle.retransmit_guard import (
    BURST_S,
    COPIES_PER_ROUND_TRIP,
    COPY_SPACING_MS,
    RetransmitBudget,
    picture_age_ms,
)
from teledrive.vehicle.video_track import KEYFRAME_HOLDOFF_S, KeyframeHoldoff

FPS = 30.0
KEYFRAME_EVERY = 30
"""Frames between two periodic keyframes (1 s, as the vehicle's encoder)."""
KEYFRAME_RATIO = 3.0
"""A keyframe's size in inter frames: measured with the vehicle's encoder and synthetic camera
at 640x480 and 700 kbit/s (keyframes 6-11 kB against 2.6 kB; its VBV keeps them small)."""
PAYLOAD_BYTES = 1200
"""Most H.264 bytes per RTP packet."""
WIRE_OVERHEAD_BYTES = 66
"""RTP, SRTP, UDP, IP and Ethernet headers: what the lab's relay counts besides the payload."""
FEEDBACK_BYTES = 90
"""An RTCP NACK or PLI on the wire (compound with a receiver report, SRTCP)."""
PING_BYTES = 120
"""A clock-sync request or reply on the wire (SCTP in DTLS)."""
PING_INTERVAL_MS = 100.0
FREEZE_THRESHOLDS_MS = (300.0, 500.0)
_VIDEO_CLOCK_PER_MS = 90
_SSRC = 1
_PT = 102

# H.264 payloads with the headers the buffer reads (RFC 6184). A keyframe starts with a
# STAP-A of SPS and PPS; slices are FU-A fragments or single NAL units; the byte after a
# slice header's first byte has its top bit set (first_mb_in_slice = 0).
_STAP_SPS_PPS = bytes([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])


def _slices(nal_type: int, size: int) -> list[bytes]:
    """RTP payloads of one slice NAL unit of ``size`` bytes (FU-A when it does not fit)."""
    nri = 0x60 if nal_type == 5 else 0x40
    if size <= PAYLOAD_BYTES:
        return [bytes([nri | nal_type, 0x80]) + bytes(max(0, size - 2))]
    count = math.ceil(size / PAYLOAD_BYTES)
    out = []
    for index in range(count):
        header = nal_type | (0x80 if index == 0 else 0) | (0x40 if index == count - 1 else 0)
        body = bytes([0x80]) if index == 0 else b""
        out.append(bytes([nri | 28, header]) + body + bytes(PAYLOAD_BYTES - len(body)))
    return out


class _FirstCopy:
    """Delivers a packet once, however many paths carry it (a bonding tunnel's de-duplication)."""

    __slots__ = ("_deliver",)

    def __init__(self, deliver: Callable[[], None]) -> None:
        self._deliver: Callable[[], None] | None = deliver

    def __call__(self) -> None:
        deliver, self._deliver = self._deliver, None
        if deliver is not None:
            deliver()


class Link:
    """One direction of the link: one impairment per path, delivering the first copy."""

    def __init__(self, sim: Sim, profile: DirectionProfile, seeds: list[int]) -> None:
        self.paths = [Impairment[Any](profile, seed=seed, epoch_ms=0.0) for seed in seeds]
        self._sim = sim
        self.fades: set[tuple[float, float]] = set()

    def send(self, size_bytes: int, deliver: Callable[[], None]) -> None:
        once = _FirstCopy(deliver)
        for path in self.paths:
            verdict = path.offer(self._sim.now_ms, once, size_bytes)
            if isinstance(verdict, Scheduled):
                self._sim.at(verdict.depart_ms, self._drain, path)

    def _drain(self, path: Impairment[Any]) -> None:
        for _, deliver in path.due(self._sim.now_ms):
            deliver()

    def collect_fades(self) -> None:
        for path in self.paths:
            self.fades.update((float(a), float(b)) for a, b in path.stats.fades)


class Sim:
    """A discrete-event loop in simulated milliseconds."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()

    def at(self, when_ms: float, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (when_ms, next(self._order), action, args))

    def run_until(self, end_ms: float) -> None:
        while self._heap and self._heap[0][0] <= end_ms:
            when_ms, _, action, args = heapq.heappop(self._heap)
            self.now_ms = when_ms
            action(*args)


class Model:
    """Vehicle, operator and link; see the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        profile = PROFILES[args.profile]
        self.sim = Sim()
        paths = range(args.links)
        self.up = Link(self.sim, profile.uplink, [1000 * args.seed + 2 * n for n in paths])
        self.down = Link(self.sim, profile.downlink, [1000 * args.seed + 2 * n + 1 for n in paths])
        self.bitrate_bps = args.bitrate_bps
        self.lookback_ms = max(
            profile.uplink.delay_ms + profile.uplink.jitter_ms,
            profile.downlink.delay_ms + profile.downlink.jitter_ms,
        )
        # vehicle
        self.guard = RetransmitBudget(
            copies_per_round_trip=args.copies_per_round_trip,
            copy_spacing_ms=args.copy_spacing_ms,
            burst_s=args.retransmit_burst_s,
        )
        self.holdoff = KeyframeHoldoff(args.keyframe_holdoff_s)
        self.history: dict[int, tuple[RtpPacket, int]] = {}
        self.seq = 0
        self.frame_index = 0
        self.force_keyframe = False
        self.newest_ts = 0
        self.vehicle_rtt_ms: float | None = None
        self.rtts_ms: list[float] = []
        self.keyframes = 0
        # operator
        self.nacks = NackGenerator()
        self.buffer = FastJitterBuffer(
            codec_name_for_payload_type=lambda _pt: "H264",
            clock_ms=lambda: self.sim.now_ms,
            feedback_copies=args.feedback_copies,
            feedback_spacing_ms=args.feedback_spacing_ms,
        )
        self.frame_times: list[float] = []

    # -- vehicle ------------------------------------------------------------------------

    def encode(self) -> None:
        index = self.frame_index
        self.frame_index += 1
        self.sim.at((index + 1) * 1000.0 / FPS, self.encode)
        keyframe = index % KEYFRAME_EVERY == 0 or self.force_keyframe
        self.force_keyframe = False
        # One keyframe a second on average: the rest of the bitrate goes to inter frames.
        inter_bytes = int(self.bitrate_bps / 8.0 / (FPS + KEYFRAME_RATIO - 1.0))
        if keyframe:
            self.keyframes += 1
            payloads = [_STAP_SPS_PPS, *_slices(5, int(KEYFRAME_RATIO * inter_bytes))]
        else:
            payloads = _slices(1, inter_bytes)
        timestamp = round(index * 1000.0 / FPS * _VIDEO_CLOCK_PER_MS) % (1 << 32)
        self.newest_ts = timestamp
        for n, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=_PT,
                marker=int(n == len(payloads) - 1),
                sequence_number=self.seq % (1 << 16),
                timestamp=timestamp,
                ssrc=_SSRC,
                payload=payload,
            )
            self.seq += 1
            size = len(payload) + WIRE_OVERHEAD_BYTES
            self.history[packet.sequence_number] = (packet, size)
            self.up.send(size, functools.partial(self.receive, packet))
        if len(self.history) > 1024:
            for old in list(self.history)[:512]:
                del self.history[old]

    def on_nack(self, seqs: list[int]) -> None:
        for seq in seqs:
            found = self.history.get(seq)
            if found is None:
                continue
            packet, size = found
            if self.guard.allow(
                self.sim.now_ms,
                seq=seq,
                size_bytes=size,
                age_ms=picture_age_ms(self.newest_ts, packet.timestamp),
                rate_bps=self.bitrate_bps,
                rtt_ms=self.vehicle_rtt_ms,
            ):
                self.up.send(size, functools.partial(self.receive, packet))

    def on_keyframe_request(self) -> None:
        if self.holdoff.allow(self.sim.now_ms / 1000.0):
            self.force_keyframe = True

    # -- operator -----------------------------------------------------------------------

    def receive(self, packet: RtpPacket) -> None:
        if self.nacks.add(packet):
            missing = sorted(self.nacks.missing)
            self.down.send(FEEDBACK_BYTES, functools.partial(self.on_nack, missing))
        keyframe_wanted, frame = self.buffer.add(packet)
        if frame is not None:
            self.frame_times.append(self.sim.now_ms)
        repeats = self.buffer.take_nacks()
        if repeats:
            self.down.send(FEEDBACK_BYTES, functools.partial(self.on_nack, repeats))
        if keyframe_wanted:
            self.down.send(FEEDBACK_BYTES, self.on_keyframe_request)

    def ping(self) -> None:
        self.sim.at(self.sim.now_ms + PING_INTERVAL_MS, self.ping)
        reply = functools.partial(self.pong, self.sim.now_ms)
        self.down.send(PING_BYTES, functools.partial(self.up.send, PING_BYTES, reply))

    def pong(self, sent_ms: float) -> None:
        rtt_ms = self.sim.now_ms - sent_ms
        self.buffer.observe_rtt_ms(rtt_ms)
        self.vehicle_rtt_ms = rtt_ms
        self.rtts_ms.append(rtt_ms)

    # -- the run ------------------------------------------------------------------------

    def run(self, minutes: float) -> dict[str, Any]:
        self.sim.at(0.0, self.encode)
        self.sim.at(0.0, self.ping)
        end_ms = minutes * 60_000.0
        step_ms = 10_000.0  # the impairments keep their latest 2048 fades: collect often
        t = 0.0
        while t < end_ms:
            t = min(end_ms, t + step_ms)
            self.sim.run_until(t)
            self.up.collect_fades()
            self.down.collect_fades()
        fades = sorted(self.up.fades | self.down.fades)
        warmup_ms = 5_000.0
        times = [t for t in self.frame_times if t >= warmup_ms]
        gaps = frame_gaps(times, [], fades=fades, lookback_ms=self.lookback_ms)
        beyond = [gap.beyond_fades_ms for gap in gaps]
        lengths = [gap.length_ms for gap in gaps]
        stats = self.buffer.stats
        return {
            "minutes": minutes,
            "gaps_measured": len(gaps),
            "longest_freeze_ms": round(max(lengths, default=0.0), 1),
            "longest_freeze_beyond_fades_ms": round(max(beyond, default=0.0), 1),
            "freezes_over_ms": {
                str(int(limit)): sum(g > limit for g in lengths) for limit in FREEZE_THRESHOLDS_MS
            },
            "freezes_beyond_fades_over_ms": {
                str(int(limit)): sum(g > limit for g in beyond) for limit in FREEZE_THRESHOLDS_MS
            },
            "freezes_beyond_fades_over_500_ms_each": [round(g) for g in beyond if g > 500.0],
            "frames_released_per_s": round(len(times) / max(1e-9, (end_ms - warmup_ms) / 1000), 2),
            "rtt_ms_median": round(statistics.median(self.rtts_ms or [0.0]), 1),
            "keyframes_per_s": round(self.keyframes / (end_ms / 1000.0), 2),
            "retransmissions": dataclasses.asdict(self.guard.stats),
            "video_recovery": dataclasses.asdict(stats),
            "uplink_dropped": [path.stats.dropped for path in self.up.paths],
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The repair settings default to the code's own.",
    )
    parser.add_argument("--profile", default="bad-cell", choices=sorted(PROFILES))
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--links", type=int, default=1, choices=(1, 2), help="bonded paths")
    parser.add_argument("--bitrate-bps", type=int, default=700_000)
    parser.add_argument("--feedback-copies", type=int, default=DEFAULT_FEEDBACK_COPIES)
    parser.add_argument("--feedback-spacing-ms", type=float, default=DEFAULT_FEEDBACK_SPACING_MS)
    parser.add_argument("--copies-per-round-trip", type=int, default=COPIES_PER_ROUND_TRIP)
    parser.add_argument("--copy-spacing-ms", type=float, default=COPY_SPACING_MS)
    parser.add_argument("--retransmit-burst-s", type=float, default=BURST_S)
    parser.add_argument("--keyframe-holdoff-s", type=float, default=KEYFRAME_HOLDOFF_S)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    result = {k: v for k, v in vars(args).items() if k != "json"}  # the settings, then figures
    result.update(Model(args).run(args.minutes))
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
