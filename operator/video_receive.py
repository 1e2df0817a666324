"""Low-latency video receive path: a jitter buffer that releases a frame as soon as it is whole.

Stock aiortc (1.16) assembles a video frame only when the first packet of the *next* frame
arrives, which adds one whole frame interval (33 ms at 30 fps) to every picture.
:class:`FastJitterBuffer` releases a frame the moment its last packet is in, and still never
hands the decoder an incomplete frame.

When is a frame whole? All its packets share one RTP timestamp and occupy consecutive
sequence numbers from its first packet to its last. The last packet is the one with the RTP
marker bit (or, for senders that do not set it, the one followed by a packet with a new
timestamp). The first packet is known when

- the previous sequence number was the end of the previous frame (released or present with
  the marker bit or another timestamp), or
- the payload says so: for H.264 (RFC 6184) the first NAL unit of the packet (single NAL,
  first unit of a STAP-A, or an FU-A with the start bit) is an access unit delimiter, SEI,
  SPS or PPS, or a slice with ``first_mb_in_slice == 0`` — each of which starts a new access
  unit (H.264 7.4.1.2.3) — but a first slice may have lost parameter sets before it, so
  after a gap only a self-contained keyframe (SPS, PPS and IDR all present) is released;
  for VP8 (RFC 7741) the payload descriptor has S=1 and partition index 0 (these payload rules
  are in :mod:`teledrive.operator.rtp_payload`).

Loss. A frame that cannot be released while newer packets exist is *blocked* (a packet is
missing: aiortc's receiver has just sent a NACK for it, or the frame's start or end was lost).
A blocked frame waits for the retransmission as long as one takes to come back on this link:
:class:`RetransmitTimer` learns that from the packets that do come back late (the time from
the moment their absence showed to their arrival, i.e. NACK -> RTX) and from round-trip
times the client reports (:meth:`FastJitterBuffer.observe_rtt_ms`), like TCP's
retransmission timer (RFC 6298): smoothed delay plus a multiple of its deviation, bounded.
A fixed wait shorter than the round trip (60 ms against ~110 ms over LTE) throws away
frames whose retransmission is already on its way and turns every loss into a keyframe
round trip. After the wait the incomplete frame is dropped, and since later inter frames
would reference it, the buffer releases nothing but a keyframe (H.264 IDR, VP8 key frame)
and asks for one (PLI). While it waits for that keyframe it asks again only after the
keyframe could have arrived (a round trip plus the time to send a keyframe, at least
``min_keyframe_interval_ms``), so a slow link is not stormed with keyframe requests, each
of which costs it a burst of intra-coded data. A complete keyframe found anywhere in the
buffer ends the wait at once and supersedes everything older. The buffer also waits for a
keyframe at start.

Lost feedback. aiortc sends each NACK once and each PLI once, and on a long round trip a lost
NACK, retransmission, PLI or keyframe packet cannot be asked for again within the freeze
budget (a second round trip does not fit: 2 x 250 ms under a bad cellular link). There the
buffer repeats its feedback instead: each NACK and keyframe request goes out
``feedback_copies`` times, ``feedback_spacing_ms`` apart, while the packet is still missing
or the keyframe still awaited. Spacing the copies in time gets them out of a loss burst, and
since the sender answers every copy (up to three per round trip,
:mod:`teledrive.vehicle.retransmit_guard`) the retransmissions are spaced the same way. The
sender forces at most one keyframe per copy spread
(:class:`~teledrive.vehicle.video_track.KeyframeHoldoff`). On short round trips nothing is
repeated: asking again after the wait still fits.

Time comes from the injected ``clock_ms`` (read once per packet): the buffer acts only when
a packet arrives.

Sequence numbers are unwrapped to 64 bits, RTP timestamps compared modulo 2**32, so both
wrap-arounds are invisible. A sequence jump beyond ``capacity`` (forward, or backward beyond
it: a restarted sender) resets the buffer.

The buffer is sans-I/O: RTP packets in (already depayloaded by the receiver into ``_data``,
as aiortc's receiver does) and a clock, ``(keyframe_wanted, frame)`` out, with the same
signature as aiortc's ``JitterBuffer.add``. :func:`install_fast_jitter_buffer` puts one into
an aiortc receiver.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from teledrive.operator.rtp_payload import CodecRules, codec_rules
from teledrive.shared.errors import ConfigError, TeledriveError

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY_PACKETS = 512
VIDEO_CLOCK_HZ = 90_000
DEFAULT_INITIAL_RTT_MS = 100.0
"""Round trip assumed before anything was measured (the first wait is this plus deviation)."""
DEFAULT_MIN_WAIT_MS = 30.0
"""Least wait for a retransmission (scheduling noise on a fast link)."""
DEFAULT_MAX_WAIT_MS = 350.0
"""Most wait for a retransmission: beyond it a keyframe round trip is the better bet."""
DEFAULT_WAIT_MARGIN_MS = 15.0
"""Added to the estimate: the sender's and the receiver's own scheduling."""
DEFAULT_DEVIATION_WEIGHT = 3.0
"""Wait = smoothed retransmission delay + this many mean deviations (+ margin)."""
DEFAULT_MIN_KEYFRAME_INTERVAL_MS = 200.0
DEFAULT_KEYFRAME_ALLOWANCE_MS = 150.0
"""Time to encode and send a keyframe, added to the round trip before asking again."""
DEFAULT_FREEZE_BUDGET_MS = 280.0
"""Longest freeze aimed for: the vehicle locks driving after 300 ms without a new picture
(ARCHITECTURE.md), less a margin for the timing of the operator's freshness reports."""
DEFAULT_FEEDBACK_COPIES = 3
"""Copies of each NACK and keyframe request on a long round trip (the first included)."""
DEFAULT_FEEDBACK_SPACING_MS = 50.0
"""Time between two copies: a fade's mean length under ``bad-cell``, so one fade seldom takes
two (30 ms let one fade take all three retransmissions twice as often;
``benchmarks/repair_model.py``). The wait for the last copy's retransmission grows by the
spread (100 ms)."""
_MISSING_MEMORY = 1024
"""Missing sequence numbers remembered for learning the retransmission delay."""

_SEQ_MODULO = 1 << 16
_TS_MODULO = 1 << 32
_TS_HALF = 1 << 31

_ATTR_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_ATTR_CODECS = "_RTCRtpReceiver__codecs"
_ATTR_KIND = "_RTCRtpReceiver__kind"
_ATTR_SEND_NACK = "_send_rtcp_nack"


class AiortcInternalsError(TeledriveError, RuntimeError):
    """aiortc's receiver no longer looks the way :func:`install_fast_jitter_buffer` expects."""


def ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, in (-2**31, 2**31], correct across wrap-around."""
    return ((a - b + _TS_HALF) % _TS_MODULO) - _TS_HALF


def _depayloaded(packet: RtpPacket) -> bytes:
    """The codec bitstream of a packet: aiortc's receiver stores it in ``_data``."""
    data = getattr(packet, "_data", None)
    return data if isinstance(data, bytes) else packet.payload


# -- the buffer ------------------------------------------------------------------------------


def monotonic_ms() -> float:
    """``time.monotonic()`` in ms: the buffer's default clock."""
    return time.monotonic() * 1000.0


class RetransmitTimer:
    """How long a missing packet may take to come back: smoothed delay plus deviation.

    Fed with retransmission delays (missing noticed -> packet arrived) and round-trip times;
    both estimate the same thing, the time from the receiver's NACK to the RTX packet. The
    smoothing is TCP's (RFC 6298: gains 1/8 and 1/4); the first sample replaces the initial
    guess and sets the deviation to half of itself.

    Args:
        initial_rtt_ms: the estimate before any sample.
        min_wait_ms: least wait.
        max_wait_ms: most wait.
        margin_ms: added to the estimate.
        deviation_weight: mean deviations added to the smoothed delay.

    Raises:
        ConfigError: a bound or weight is negative, or ``min_wait_ms > max_wait_ms``.
    """

    def __init__(
        self,
        *,
        initial_rtt_ms: float = DEFAULT_INITIAL_RTT_MS,
        min_wait_ms: float = DEFAULT_MIN_WAIT_MS,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        margin_ms: float = DEFAULT_WAIT_MARGIN_MS,
        deviation_weight: float = DEFAULT_DEVIATION_WEIGHT,
    ) -> None:
        values = (initial_rtt_ms, min_wait_ms, max_wait_ms, margin_ms, deviation_weight)
        if not all(v >= 0.0 for v in values) or min_wait_ms > max_wait_ms:
            raise ConfigError(
                "video jitter buffer: retransmit timer needs non-negative values and "
                f"min_wait_ms <= max_wait_ms, got initial_rtt_ms={initial_rtt_ms}, "
                f"min_wait_ms={min_wait_ms}, max_wait_ms={max_wait_ms}, "
                f"margin_ms={margin_ms}, deviation_weight={deviation_weight}"
            )
        self._min_ms = min_wait_ms
        self._max_ms = max_wait_ms
        self._margin_ms = margin_ms
        self._weight = deviation_weight
        self.srtt_ms = initial_rtt_ms
        """Smoothed retransmission delay (ms)."""
        self.deviation_ms = initial_rtt_ms / 2.0
        """Mean deviation of the samples from :attr:`srtt_ms` (ms)."""
        self.samples = 0
        """Samples taken."""

    def observe(self, delay_ms: float) -> bool:
        """Take one delay sample; a negative or non-finite one is refused (returns False)."""
        if not 0.0 <= delay_ms < math.inf:
            return False
        if self.samples == 0:
            self.srtt_ms = delay_ms
            self.deviation_ms = delay_ms / 2.0
        else:
            self.deviation_ms += (abs(self.srtt_ms - delay_ms) - self.deviation_ms) / 4.0
            self.srtt_ms += (delay_ms - self.srtt_ms) / 8.0
        self.samples += 1
        return True

    @property
    def wait_ms(self) -> float:
        """How long a blocked frame waits for its retransmission now."""
        wait = self.srtt_ms + self._weight * self.deviation_ms + self._margin_ms
        return min(self._max_ms, max(self._min_ms, wait))


@dataclass(slots=True)
class JitterStats:
    """Counters of what the buffer did; each bad or useless packet is counted, never raised."""

    frames_released: int = 0
    frames_dropped: int = 0
    """Frames given up (incomplete past the wait, or inter frames while awaiting a keyframe)."""
    packets_late: int = 0
    """Packets of frames already released or dropped."""
    packets_duplicate: int = 0
    keyframe_requests: int = 0
    resets: int = 0
    packets_recovered: int = 0
    """Missing packets that arrived while their frame still waited (retransmission or reorder)."""
    packets_recovered_late: int = 0
    """Missing packets that arrived after their frame had been given up (the wait was short)."""
    waits_expired: int = 0
    """Blocked frames given up after waiting for a retransmission."""
    keyframe_requests_early: int = 0
    """Keyframe requests sent while still waiting (long round trip, see ``freeze_budget_ms``)."""
    rtt_rejected: int = 0
    """Round-trip times passed to ``observe_rtt_ms`` that were negative or not finite."""
    nacks_repeated: int = 0
    """Copies of NACKs sent for packets still missing (long round trips only)."""
    keyframe_requests_repeated: int = 0
    """Copies of keyframe requests sent while the keyframe is still awaited."""


class FastJitterBuffer:
    """Reassembles video frames from RTP packets and releases each as soon as it is complete.

    Drop-in for aiortc's video ``JitterBuffer`` (``add(packet) -> (pli_flag, frame)``).

    Args:
        codec_name_for_payload_type: maps an RTP payload type to a codec name ("H264",
            "VP8", any case) or None. Frame starts and keyframes are read from payloads of
            known codecs; for others only sequence/timestamp evidence is used and every
            frame counts as a keyframe.
        capacity: most packets held; a sequence jump beyond it resets the buffer.
        clock_ms: monotonic clock in ms, read once per packet.
        retransmit_timer: how long a blocked frame waits (default: a
            :class:`RetransmitTimer` with the module's defaults).
        min_keyframe_interval_ms: least time between two keyframe requests; on a slow link
            the interval is a round trip plus ``keyframe_allowance_ms`` if that is longer.
        keyframe_allowance_ms: time for the sender to encode and send a keyframe.
        freeze_budget_ms: longest picture freeze to aim for. When a lost retransmission
            followed by a keyframe round trip would exceed it (long round trips), a blocked
            frame asks for a keyframe while it still waits for the retransmission.
        feedback_copies: how many times each NACK and keyframe request is sent when a
            second round trip does not fit in ``freeze_budget_ms`` (1: never repeat).
        feedback_spacing_ms: time between two copies.

    Raises:
        ConfigError: ``capacity`` below 2, a negative interval or ``feedback_copies`` < 1.
    """

    def __init__(
        self,
        *,
        codec_name_for_payload_type: Callable[[int], str | None] = lambda _pt: None,
        capacity: int = DEFAULT_CAPACITY_PACKETS,
        clock_ms: Callable[[], float] = monotonic_ms,
        retransmit_timer: RetransmitTimer | None = None,
        min_keyframe_interval_ms: float = DEFAULT_MIN_KEYFRAME_INTERVAL_MS,
        keyframe_allowance_ms: float = DEFAULT_KEYFRAME_ALLOWANCE_MS,
        freeze_budget_ms: float = DEFAULT_FREEZE_BUDGET_MS,
        feedback_copies: int = DEFAULT_FEEDBACK_COPIES,
        feedback_spacing_ms: float = DEFAULT_FEEDBACK_SPACING_MS,
    ) -> None:
        if capacity < 2:
            raise ConfigError(f"FastJitterBuffer: capacity must be >= 2, got {capacity}")
        if feedback_copies < 1:
            raise ConfigError(
                f"FastJitterBuffer: feedback_copies must be >= 1, got {feedback_copies}"
            )
        intervals = (
            min_keyframe_interval_ms,
            keyframe_allowance_ms,
            freeze_budget_ms,
            feedback_spacing_ms,
        )
        if not all(v >= 0.0 for v in intervals):
            raise ConfigError(
                "FastJitterBuffer: min_keyframe_interval_ms, keyframe_allowance_ms, "
                f"freeze_budget_ms and feedback_spacing_ms must be >= 0, got {intervals}"
            )
        self._codec_name = codec_name_for_payload_type
        self._capacity = capacity
        self._clock_ms = clock_ms
        self.timer = retransmit_timer or RetransmitTimer()
        """The retransmission wait estimator (its ``wait_ms`` is the wait now)."""
        self._min_kf_interval_ms = min_keyframe_interval_ms
        self._kf_allowance_ms = keyframe_allowance_ms
        self._freeze_budget_ms = freeze_budget_ms
        self._copies = feedback_copies
        self._spacing_ms = feedback_spacing_ms
        self.stats = JitterStats()
        self._now_ms = 0.0
        # Missing extended sequence number -> when its absence showed (aiortc NACKs then).
        self._missing_since: dict[int, float] = {}
        # Missing extended sequence number -> (when it was last NACKed, NACKs sent).
        self._nacked: dict[int, tuple[float, int]] = {}
        self._nacks_due: list[int] = []
        self._reset_state()

    def _reset_state(self) -> None:
        self._packets: dict[int, RtpPacket] = {}
        self._highest_ext: int | None = None
        # Every extended sequence number below _next_ext is consumed (released or dropped).
        self._next_ext: int | None = None
        # Whether _next_ext is known to be the first packet of a frame.
        self._boundary_known = False
        self._awaiting_keyframe = True
        self._keyframe_requested = False
        self._last_request_ms: float | None = None
        # Since when the oldest frame cannot be released although newer packets exist.
        self._blocked_since_ms: float | None = None
        # Whether a keyframe was asked for while the oldest frame (still) waits.
        self._asked_early = False
        self._given_up_ts: int | None = None
        # Copies of the current keyframe request sent, and when the last one went.
        self._request_copies = 0
        self._request_copy_ms = 0.0
        self._missing_since.clear()
        self._nacked.clear()

    @property
    def capacity(self) -> int:
        """Most packets held at once."""
        return self._capacity

    @property
    def awaiting_keyframe(self) -> bool:
        """True while only a keyframe can be released (at start and after a loss)."""
        return self._awaiting_keyframe

    def __len__(self) -> int:
        return len(self._packets)

    # -- input -----------------------------------------------------------------------------

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Take one RTP packet (with ``_data`` set by the depayloader).

        Returns:
            (keyframe_wanted, frame): whether the receiver should send a PLI now, and a
            complete frame for the decoder or None.
        """
        self._keyframe_requested = False
        self._nacks_due.clear()  # only this packet's copies: take_nacks() reads them after
        self._now_ms = self._clock_ms()
        frame = self._add(packet)
        self._repeat_feedback()
        return self._keyframe_requested, frame

    def take_nacks(self) -> list[int]:
        """Sequence numbers (16-bit) to NACK again now; each is returned once per copy.

        Call after each :meth:`add`. Empty unless feedback is repeated (see
        :attr:`repeats_feedback`): aiortc's receiver sends the first NACK itself.
        """
        if not self._nacks_due:
            return []
        due, self._nacks_due = self._nacks_due, []
        # Ascending, as aiortc's own NACKs: its packing of (PID, BLP) pairs expects it (a
        # list across the wrap-around would make it raise).
        return sorted(set(due))

    def _add(self, packet: RtpPacket) -> JitterFrame | None:
        ext = self._unwrap(packet.sequence_number)
        restarted = self._is_restart(ext)
        if restarted:
            self._reset(packet.sequence_number)
            ext = self._unwrap(packet.sequence_number)
        late = self._next_ext is not None and ext < self._next_ext
        # A packet of the frame given up last (its lost end, retransmitted too late).
        late = late or packet.timestamp == self._given_up_ts
        self._learn_from_arrival(ext, late=late)
        if late:
            self.stats.packets_late += 1
            if ext == self._next_ext:
                # It follows what was dropped: consume it, and its marker ends that frame.
                self._next_ext = ext + 1
                if self._highest_ext is None or ext > self._highest_ext:
                    self._highest_ext = ext
                self._boundary_known = bool(packet.marker)
                return self._release()
            return None
        if ext in self._packets:
            self.stats.packets_duplicate += 1
            return None
        self._store(ext, packet)
        if restarted:
            self._request_keyframe()
        return self._release()

    def observe_rtt_ms(self, rtt_ms: float) -> None:
        """Report a round-trip time to the sender measured elsewhere (e.g. clock sync).

        It tunes the retransmission wait before (and besides) the buffer's own samples.
        A negative or non-finite value is counted in ``stats.rtt_rejected`` and ignored.
        """
        if not self.timer.observe(rtt_ms):
            self.stats.rtt_rejected += 1

    def _learn_from_arrival(self, ext: int, *, late: bool) -> None:
        """A packet whose absence was noticed came: a retransmission-delay sample."""
        self._nacked.pop(ext, None)
        since_ms = self._missing_since.pop(ext, None)
        if since_ms is None:
            return
        self.timer.observe(self._now_ms - since_ms)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "video: packet %d came %.0f ms after it was missed%s",
                ext % _SEQ_MODULO,
                self._now_ms - since_ms,
                " (too late)" if late else "",
            )
        if late:
            self.stats.packets_recovered_late += 1
        else:
            self.stats.packets_recovered += 1

    def _unwrap(self, seq: int) -> int:
        if self._highest_ext is None:
            return seq
        base = self._highest_ext - (self._highest_ext % _SEQ_MODULO)
        candidate = base + seq
        if candidate - self._highest_ext > _SEQ_MODULO // 2:
            candidate -= _SEQ_MODULO
        elif self._highest_ext - candidate > _SEQ_MODULO // 2:
            candidate += _SEQ_MODULO
        return candidate

    def _is_restart(self, ext: int) -> bool:
        if self._highest_ext is None:
            return False
        return abs(ext - self._highest_ext) >= self._capacity

    def _reset(self, seq: int) -> None:
        # Keep the request timer so that a burst of resets does not flood the sender.
        last_request_ms = self._last_request_ms
        dropped = len({p.timestamp for p in self._packets.values()})
        self.stats.frames_dropped += dropped
        self.stats.resets += 1
        logger.info("video jitter buffer: sequence jump to %d, resetting", seq)
        self._reset_state()
        self._last_request_ms = last_request_ms

    def _store(self, ext: int, packet: RtpPacket) -> None:
        self._packets[ext] = packet
        if self._highest_ext is None or ext > self._highest_ext:
            if self._highest_ext is not None:
                self._note_missing(self._highest_ext + 1, ext)
            self._highest_ext = ext

    def _note_missing(self, first: int, end: int) -> None:
        """Sequence numbers ``first`` to ``end - 1`` are missing as of now (aiortc NACKs them)."""
        if end > first and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "video: packets %d-%d missing", first % _SEQ_MODULO, (end - 1) % _SEQ_MODULO
            )
        for missing in range(first, end):
            self._missing_since[missing] = self._now_ms
            self._nacked[missing] = (self._now_ms, 1)
        for memory in (self._missing_since, self._nacked):
            excess = len(memory) - _MISSING_MEMORY
            if excess > 0:  # (not a copy of 1024 keys on every packet once it is full)
                for forgotten in list(itertools.islice(memory, excess)):
                    del memory[forgotten]

    # -- frame structure -------------------------------------------------------------------

    def _rules(self, packet: RtpPacket) -> CodecRules | None:
        name = self._codec_name(packet.payload_type)
        return codec_rules(name)

    def _starts_frame(self, ext: int) -> bool:
        packet = self._packets[ext]
        if ext == self._next_ext and self._boundary_known:
            return True
        before = self._packets.get(ext - 1)
        if before is not None:
            # The packet before is here: it ends a frame, or this one continues its frame.
            return bool(before.marker) or before.timestamp != packet.timestamp
        rules = self._rules(packet)
        return rules is not None and rules.starts_frame(packet.payload)

    def _frame_end(self, start: int) -> int | None:
        """Extended seq of the last packet of the frame starting at ``start``, if all are in."""
        timestamp = self._packets[start].timestamp
        ext = start
        while True:
            packet = self._packets[ext]
            if packet.marker:
                return ext
            following = self._packets.get(ext + 1)
            if following is None:
                return None
            if following.timestamp != timestamp:
                return ext
            ext += 1

    def _is_keyframe(self, packets: list[RtpPacket]) -> bool:
        rules = self._rules(packets[0])
        return True if rules is None else rules.is_keyframe(packets)

    # -- release ---------------------------------------------------------------------------

    def _release(self) -> JitterFrame | None:
        while self._packets:
            progressed, frame = self._release_in_order()
            if frame is not None:
                return frame
            if progressed:
                continue
            frame = self._release_keyframe_ahead()
            if frame is not None:
                return frame
            if not self._give_up_oldest():
                return None
        return None

    def _take(self, start: int, end: int) -> list[RtpPacket]:
        packets = [self._packets.pop(ext) for ext in range(start, end + 1)]
        self._next_ext = end + 1
        self._boundary_known = True
        self._unblock()
        return packets

    def _emit(self, packets: list[RtpPacket]) -> JitterFrame:
        self.stats.frames_released += 1
        data = b"".join(_depayloaded(p) for p in packets)
        return JitterFrame(data=data, timestamp=packets[0].timestamp)

    def _release_in_order(self) -> tuple[bool, JitterFrame | None]:
        """Release the frame that directly follows the last one, if it is complete.

        Returns:
            (progressed, frame): progressed is True when a frame was consumed, released or
            (while awaiting a keyframe) dropped.
        """
        if not self._boundary_known or self._next_ext not in self._packets:
            return False, None
        start = self._next_ext
        end = self._frame_end(start)
        if end is None:
            return False, None
        packets = self._take(start, end)
        if self._awaiting_keyframe and not self._is_keyframe(packets):
            self.stats.frames_dropped += 1
            self._request_keyframe()
            return True, None
        self._awaiting_keyframe = False
        return True, self._emit(packets)

    def _release_keyframe_ahead(self) -> JitterFrame | None:
        """Jump over a gap to a complete keyframe, dropping everything older."""
        if (
            self._boundary_known
            and self._next_ext is not None
            and self._highest_ext is not None
            and self._highest_ext - self._next_ext + 1 == len(self._packets)
        ):
            # No gap anywhere: only the (incomplete) head frame is here, nothing to jump to.
            return None
        for ext in sorted(self._packets):
            if not self._starts_frame(ext):
                continue
            end = self._frame_end(ext)
            if end is None:
                continue
            candidate = [self._packets[e] for e in range(ext, end + 1)]
            if not self._is_keyframe(candidate):
                continue
            self._drop_below(ext)
            self._awaiting_keyframe = False
            logger.debug("video: jumped ahead to the keyframe at packet %d", ext % _SEQ_MODULO)
            return self._emit(self._take(ext, end))
        return None

    def _drop_below(self, ext: int) -> None:
        stale = [e for e in self._packets if e < ext]
        self.stats.frames_dropped += len({self._packets[e].timestamp for e in stale})
        for e in stale:
            del self._packets[e]

    def _head_blocked(self, oldest: int, timestamp: int) -> bool:
        """Whether the oldest frame waits on a missing packet rather than on packets in flight.

        True when a packet is missing before or among the ones held (aiortc has NACKed it), or
        a newer frame has begun while the oldest cannot be released (its end or its start was
        lost).
        """
        highest = self._highest_ext
        if highest is None:
            return False
        if highest - oldest + 1 != len(self._packets):
            return True
        if self._next_ext is not None and oldest > self._next_ext:
            return True
        return self._packets[highest].timestamp != timestamp

    def _give_up_oldest(self) -> bool:
        """Drop the oldest frame if it waited too long or the buffer is full; True if dropped."""
        oldest = min(self._packets)
        timestamp = self._packets[oldest].timestamp
        if len(self._packets) <= self._capacity:
            if not self._head_blocked(oldest, timestamp):
                self._unblock()
                return False
            if self._blocked_since_ms is None:
                self._blocked_since_ms = self._now_ms
            blocked_ms = self._now_ms - self._blocked_since_ms
            if blocked_ms <= self.wait_ms:
                if (
                    self._may_ask_early()
                    and blocked_ms >= self.early_keyframe_after_ms
                    and not self._holds_keyframe(timestamp)
                    and self._request_keyframe()
                ):
                    # Marked only once asked: a request the interval held back is retried.
                    self._asked_early = True
                    self.stats.keyframe_requests_early += 1
                return False
            self.stats.waits_expired += 1
            logger.debug("video: gave up a frame after waiting %.0f ms", blocked_ms)
        else:
            logger.debug("video: gave up a frame: buffer full")
        last = max(e for e, p in self._packets.items() if p.timestamp == timestamp)
        # The packet after this frame starts the next one only if this frame's end was seen.
        ends_frame = bool(self._packets[last].marker)
        self._drop_below(last + 1)
        self._next_ext = last + 1
        self._boundary_known = ends_frame
        self._unblock()
        self._given_up_ts = timestamp
        self._awaiting_keyframe = True
        self._request_keyframe()
        return True

    @property
    def wait_ms(self) -> float:
        """How long a blocked frame waits now.

        The retransmission timer's wait, plus the spread of the NACK copies when feedback is
        repeated (the last copy's retransmission may be the one that comes).
        """
        if not self.repeats_feedback:
            return self.timer.wait_ms
        return self.timer.wait_ms + (self._copies - 1) * self._spacing_ms

    @property
    def keyframe_interval_ms(self) -> float:
        """Least time between two keyframe requests now: long enough for one to arrive."""
        return max(self._min_kf_interval_ms, self.timer.wait_ms + self._kf_allowance_ms)

    @property
    def early_keyframe_after_ms(self) -> float:
        """How long a blocked frame waits before a keyframe is asked for as well.

        Late enough that the retransmission usually comes first, early enough that, should
        it be lost, the keyframe still arrives within ``freeze_budget_ms`` (it takes a round
        trip plus ``keyframe_allowance_ms``). Beyond the wait on short round trips (then only
        giving up asks); at once on very long ones. Only used once a round trip or a
        retransmission delay has been measured.
        """
        timer = self.timer
        keyframe_ms = timer.srtt_ms + timer.deviation_ms + self._kf_allowance_ms
        return max(0.0, self._freeze_budget_ms - keyframe_ms)

    def _holds_keyframe(self, timestamp: int) -> bool:
        """Whether a packet held of a frame shows it is a keyframe (one under repair).

        Its retransmission is on the way; asking for another keyframe as well would only load
        the link with a second one (the wait's give-up still asks if the repair fails).
        """
        for packet in self._packets.values():
            if packet.timestamp == timestamp:
                rules = self._rules(packet)
                if rules is not None and rules.marks_keyframe(packet.payload):
                    return True
        return False

    def _may_ask_early(self) -> bool:
        # Not before a round trip was measured: the initial guess is only a guess.
        return not self._asked_early and self.timer.samples > 0

    def _unblock(self) -> None:
        self._blocked_since_ms = None
        self._asked_early = False

    def _request_keyframe(self) -> bool:
        """Ask for a keyframe unless one was asked for too recently; True if asked."""
        last = self._last_request_ms
        if last is not None and 0.0 <= self._now_ms - last < self.keyframe_interval_ms:
            return False
        self._last_request_ms = self._now_ms
        self._keyframe_requested = True
        self.stats.keyframe_requests += 1
        logger.debug("video: keyframe requested")
        self._request_copies = 1
        self._request_copy_ms = self._now_ms
        return True

    # -- repeated feedback -----------------------------------------------------------------

    @property
    def repeats_feedback(self) -> bool:
        """Whether NACKs and keyframe requests are sent more than once now.

        True on a measured round trip so long that a lost NACK or retransmission, asked for
        again after the wait, would come back after ``freeze_budget_ms``.
        """
        timer = self.timer
        return (
            self._copies > 1
            and timer.samples > 0
            and timer.srtt_ms + timer.wait_ms > self._freeze_budget_ms
        )

    def _repeat_feedback(self) -> None:
        if not self.repeats_feedback:
            return
        now_ms, spacing_ms = self._now_ms, self._spacing_ms
        for ext, (sent_ms, copies) in list(self._nacked.items()):
            if self._next_ext is not None and ext < self._next_ext:
                del self._nacked[ext]  # its frame was given up (or it came and was used)
            elif now_ms - sent_ms >= spacing_ms:
                if copies + 1 >= self._copies:
                    del self._nacked[ext]  # its last copy: nothing more to do for it
                else:
                    self._nacked[ext] = (now_ms, copies + 1)
                self._nacks_due.append(ext % _SEQ_MODULO)
                self.stats.nacks_repeated += 1
        if (
            0 < self._request_copies < self._copies
            and (self._awaiting_keyframe or self._asked_early)
            and now_ms - self._request_copy_ms >= spacing_ms
        ):
            self._request_copies += 1
            self._request_copy_ms = now_ms
            self._keyframe_requested = True
            self.stats.keyframe_requests_repeated += 1


# -- installing it into aiortc -------------------------------------------------------------


def install_fast_jitter_buffer(receiver: Any, **options: Any) -> FastJitterBuffer:
    """Replace an aiortc video receiver's jitter buffer with a :class:`FastJitterBuffer`.

    This is the one place teledrive reaches into aiortc's private receiver state (aiortc has
    no hook for it). It reads ``RTCRtpReceiver.__kind`` and ``__codecs`` (to map payload
    types to codecs), replaces ``__jitter_buffer`` and sends the buffer's repeated NACKs
    with ``_send_rtcp_nack``; call it before RTP flows, e.g. from
    ``pc.on("track")`` (fired while the remote description is applied, before DTLS is up)
    or on ``transceiver.receiver`` before ``setRemoteDescription``.

    Args:
        receiver: an ``aiortc.RTCRtpReceiver`` of kind video.
        **options: passed to :class:`FastJitterBuffer` (``retransmit_timer`` ...).

    Returns:
        The installed buffer (its ``stats`` are the receive-path counters).

    Raises:
        AiortcInternalsError: if the receiver lacks the expected private attributes (aiortc
            changed: update this function) or is not a video receiver.
    """
    missing = [
        name
        for name in (_ATTR_JITTER_BUFFER, _ATTR_CODECS, _ATTR_KIND)
        if not hasattr(receiver, name)
    ]
    if missing:
        raise AiortcInternalsError(
            f"aiortc receiver {type(receiver).__name__} has no {', '.join(missing)}: "
            "aiortc internals changed, install_fast_jitter_buffer must be updated"
        )
    kind = getattr(receiver, _ATTR_KIND)
    if kind != "video":
        raise AiortcInternalsError(f"install_fast_jitter_buffer: receiver kind is {kind!r}")
    current = getattr(receiver, _ATTR_JITTER_BUFFER)
    if not isinstance(current, JitterBuffer | ReceiverJitterBuffer):
        raise AiortcInternalsError(
            f"aiortc receiver jitter buffer is a {type(current).__name__}, expected JitterBuffer"
        )
    send_nack = getattr(receiver, _ATTR_SEND_NACK, None)
    if not callable(send_nack):
        raise AiortcInternalsError(
            f"aiortc receiver {type(receiver).__name__} has no {_ATTR_SEND_NACK}(): "
            "aiortc internals changed, install_fast_jitter_buffer must be updated"
        )
    codecs: Mapping[int, Any] = getattr(receiver, _ATTR_CODECS)

    def codec_name(payload_type: int) -> str | None:
        codec = codecs.get(payload_type)
        return None if codec is None else str(codec.name)

    buffer = FastJitterBuffer(codec_name_for_payload_type=codec_name, **options)
    setattr(receiver, _ATTR_JITTER_BUFFER, ReceiverJitterBuffer(buffer, send_nack))
    return buffer


class ReceiverJitterBuffer:
    """What aiortc's receiver calls: the buffer, plus sending the NACK copies it asks for.

    aiortc calls ``add`` from its receive coroutine, so the copies are sent on that loop.

    Args:
        buffer: the buffer.
        send_nack: sends one RTCP NACK (media SSRC, 16-bit sequence numbers).
    """

    def __init__(
        self,
        buffer: FastJitterBuffer,
        send_nack: Callable[[int, list[int]], Coroutine[Any, Any, None]],
    ) -> None:
        self.buffer = buffer
        self._send_nack = send_nack
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """:meth:`FastJitterBuffer.add`, then send the NACK copies due (as a task)."""
        result = self.buffer.add(packet)
        nacks = self.buffer.take_nacks()
        if nacks:
            task = asyncio.get_running_loop().create_task(self._send_nack(packet.ssrc, nacks))
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return result

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("video: NACK copies not sent: %r", task.exception())


def luma_plane(frame: Any) -> npt.NDArray[np.uint8]:
    """The Y plane of a decoded ``av.VideoFrame`` (yuv420p and similar) as a 2-D array, no copy.

    Cheaper than ``frame.to_ndarray(format="bgr24")`` when only brightness is needed (bar
    codes, freeze detection).
    """
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]
