"""Which video retransmissions the vehicle sends: once per round trip, fresh, within a budget.

aiortc's sender retransmits every packet a NACK names, every time it is named. On a long,
lossy link that turns one loss into a burst the uplink cannot carry:

- aiortc's receiver re-sends its whole list of missing packets (up to 128) with every new
  gap, and on long round trips teledrive's operator sends each NACK three times
  (``operator/video_receive.py``) so that one lost NACK does not cost a keyframe;
- after a cut the old session's video resumes for a moment and the whole cut is NACKed;
  retransmitting it replays video a second old, which nobody should drive by.

Under ``bad-cell`` (1.5 Mbit/s, a 300 ms queue) a 250 ms fade made ~75 retransmissions
(~90 kB, half a second of the link) and a cut up to 384: the queue overflowed, fresh video
waited behind copies, and the reconnect's handshake was dropped with them.

:class:`RetransmitBudget` (sans-I/O) decides for each requested packet, like libwebrtc's
packet history and retransmission rate limiter do:

1. **Three times per round trip, spaced.** Within a round trip of its first retransmission
   a packet goes out at most :data:`COPIES_PER_ROUND_TRIP` times, each at least
   :data:`COPY_SPACING_MS` after the one before: the operator's NACK copies come 50 ms apart,
   so each copy gets one unless the link's jitter brought two closer than that. A fade
   (exponential, 50 ms on average under ``bad-cell``) that takes one retransmission takes the
   next one 50 ms later with probability e^-1 and all three with e^-2, so three spaced copies
   more than halve the freezes a lost repair causes against two copies 60 ms apart
   (``benchmarks/repair_model.py``; the README has the figures), without the copies of every
   re-listed gap that overflowed the queue. The third copy costs 18 % more retransmissions,
   all within the budget of point 3. After a round trip it is a new request (the
   retransmissions were lost, and the receiver asks again after its wait).
2. **Fresh.** A packet whose picture is more than :data:`MAX_AGE_MS` older than the newest
   one sent is not retransmitted: the receiver gives such a frame up, and the keyframe it asks
   for instead replaces it.
3. **Within a budget.** Retransmissions spend from a token bucket filled at the video's
   bitrate cap (at least :data:`MIN_RATE_BPS`) holding :data:`BURST_S` of it, so loss can at
   most double the video's rate for a moment.

:func:`install_retransmit_guard` puts one in front of an aiortc sender's ``_retransmit``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiortc import RTCRtpSender
from aiortc.rtp import RTP_HISTORY_SIZE

from teledrive.shared.errors import ConfigError, TeledriveError

COPIES_PER_ROUND_TRIP = 3
"""Most retransmissions of one packet within a round trip of its first."""
COPY_SPACING_MS = 45.0
"""Least time between two retransmissions of one packet."""
MAX_AGE_MS = 1000.0
"""Oldest picture (behind the newest sent) a retransmission is still worth sending for."""
BURST_S = 0.25
"""The bucket holds this much of the bitrate: a 250 ms fade's packets go out at once."""
MIN_RATE_BPS = 300_000
"""Least refill rate of the bucket (the cap may be lower on a thin link)."""
DEFAULT_RTT_MS = 100.0
"""Round trip assumed until one is measured."""
RTP_VIDEO_CLOCK_KHZ = 90.0
_RTP_TIMESTAMP_MODULO = 1 << 32
_BITS_PER_BYTE = 8
_RTP_HEADER_BYTES = 12
_HISTORY_ATTR = "_RTCRtpSender__rtp_history"
_NEWEST_TIMESTAMP_ATTR = "_RTCRtpSender__rtp_timestamp"

logger = logging.getLogger(__name__)


RetransmitDecision = Literal["sent", "repeated", "too old", "over budget"]


class AiortcSenderError(TeledriveError, RuntimeError):
    """aiortc's sender no longer has the internals the guard relies on."""


@dataclass
class RetransmitStats:
    """What the guard did with retransmission requests.

    Attributes:
        sent: retransmissions sent.
        repeated: refused: the packet went out too recently, or twice this round trip.
        too_old: refused: its picture is older than the age limit.
        over_budget: refused: the bucket was empty.
        unknown: the packet was no longer in aiortc's history (nothing to send).
    """

    sent: int = 0
    repeated: int = 0
    too_old: int = 0
    over_budget: int = 0
    unknown: int = 0


class RetransmitBudget:
    """Decides which requested retransmissions go out (sans-I/O; the caller passes the time).

    Args:
        max_age_ms: oldest picture, behind the newest sent, worth a retransmission.
        burst_s: seconds of the rate the bucket holds.
        min_rate_bps: least refill rate.
        copies_per_round_trip: most retransmissions of one packet per round trip (>= 1).
        copy_spacing_ms: least time between two retransmissions of one packet.

    Raises:
        ConfigError: if a limit is not positive.
    """

    def __init__(
        self,
        *,
        max_age_ms: float = MAX_AGE_MS,
        burst_s: float = BURST_S,
        min_rate_bps: float = MIN_RATE_BPS,
        copies_per_round_trip: int = COPIES_PER_ROUND_TRIP,
        copy_spacing_ms: float = COPY_SPACING_MS,
    ) -> None:
        if not (max_age_ms > 0.0 and burst_s > 0.0 and min_rate_bps > 0.0):
            raise ConfigError(
                "retransmit budget: max_age_ms, burst_s and min_rate_bps must be > 0, got"
                f" {max_age_ms!r}, {burst_s!r}, {min_rate_bps!r}"
            )
        if copies_per_round_trip < 1 or not copy_spacing_ms >= 0.0:
            raise ConfigError(
                "retransmit budget: need copies_per_round_trip >= 1 and copy_spacing_ms >= 0,"
                f" got {copies_per_round_trip!r}, {copy_spacing_ms!r}"
            )
        self._copies = copies_per_round_trip
        self._spacing_ms = copy_spacing_ms
        self._max_age_ms = max_age_ms
        self._burst_s = burst_s
        self._min_rate_bps = min_rate_bps
        self._tokens_bits: float | None = None  # full at the first request
        self._filled_ms = 0.0
        # seq -> (start of its round of retransmissions, copies sent in it, last copy's time)
        self._rounds: dict[int, tuple[float, int, float]] = {}
        self.stats = RetransmitStats()
        self.last_decision: RetransmitDecision | None = None
        """What the last :meth:`allow` decided (None before the first)."""

    def allow(
        self,
        now_ms: float,
        *,
        seq: int,
        size_bytes: int,
        age_ms: float,
        rate_bps: float | None,
        rtt_ms: float | None,
    ) -> bool:
        """Whether to retransmit packet ``seq`` now; counts the decision.

        Args:
            now_ms: the time now.
            seq: the packet's sequence number.
            size_bytes: the bytes the retransmission puts on the wire.
            age_ms: how much older its picture is than the newest one sent.
            rate_bps: the video's bitrate cap now (None: unknown, the floor applies).
            rtt_ms: the round trip now (None: :data:`DEFAULT_RTT_MS`).
        """
        rate = max(self._min_rate_bps, rate_bps or 0.0)
        capacity_bits = rate * self._burst_s
        if self._tokens_bits is None:
            self._tokens_bits = capacity_bits
        else:
            elapsed_s = max(0.0, now_ms - self._filled_ms) / 1000.0
            self._tokens_bits = min(capacity_bits, self._tokens_bits + rate * elapsed_s)
        self._filled_ms = now_ms
        round_trip_ms = DEFAULT_RTT_MS if rtt_ms is None else rtt_ms
        started_ms, copies, last_ms = self._rounds.get(seq, (now_ms, 0, -math.inf))
        if now_ms - started_ms >= round_trip_ms:  # a new request: a new round
            started_ms, copies = now_ms, 0
        if copies >= self._copies or now_ms - last_ms < self._spacing_ms:
            self.stats.repeated += 1
            self.last_decision = "repeated"
            return False
        if age_ms > self._max_age_ms:
            self.stats.too_old += 1
            self.last_decision = "too old"
            return False
        bits = size_bytes * _BITS_PER_BYTE
        if bits > self._tokens_bits:
            self.stats.over_budget += 1
            self.last_decision = "over budget"
            return False
        self._tokens_bits -= bits
        self._rounds.pop(seq, None)  # re-inserted last: the oldest entries come first
        self._rounds[seq] = (started_ms, copies + 1, now_ms)
        if len(self._rounds) > 2 * RTP_HISTORY_SIZE:  # only the history can be resent
            for old in list(self._rounds)[:RTP_HISTORY_SIZE]:
                del self._rounds[old]
        self.stats.sent += 1
        self.last_decision = "sent"
        return True


def picture_age_ms(newest_timestamp: int, timestamp: int) -> float:
    """How far (ms) a packet's picture is behind the newest sent, from 90 kHz RTP timestamps.

    Modulo 2**32 (timestamps wrap); a timestamp ahead of the newest counts as 0.
    """
    behind = (newest_timestamp - timestamp) % _RTP_TIMESTAMP_MODULO
    if behind > _RTP_TIMESTAMP_MODULO // 2:
        return 0.0
    return behind / RTP_VIDEO_CLOCK_KHZ


def install_retransmit_guard(
    sender: RTCRtpSender,
    *,
    clock_ms: Callable[[], float],
    rate_bps: Callable[[], float | None],
    rtt_ms: Callable[[], float | None],
    budget: RetransmitBudget | None = None,
) -> RetransmitBudget:
    """Put a :class:`RetransmitBudget` in front of an aiortc video sender's retransmissions.

    Args:
        sender: the video sender (before its first NACK).
        clock_ms: monotonic time in ms.
        rate_bps: the track's bitrate cap now.
        rtt_ms: the round trip to the receiver now, if measured.
        budget: the budget to use (default: a new one with the module's limits).

    Returns:
        The budget (its ``stats`` count the decisions).

    Raises:
        AiortcSenderError: if aiortc's sender lacks the packet history or ``_retransmit``.
    """
    guard = budget if budget is not None else RetransmitBudget()
    history: Any = getattr(sender, _HISTORY_ATTR, None)
    original = getattr(sender, "_retransmit", None)
    if (
        not isinstance(history, dict)
        or original is None
        or not hasattr(sender, _NEWEST_TIMESTAMP_ATTR)
    ):
        raise AiortcSenderError(
            f"aiortc RTCRtpSender has no {_HISTORY_ATTR}, {_NEWEST_TIMESTAMP_ATTR} or"
            " _retransmit: update vehicle/retransmit_guard.py for this aiortc version"
        )

    async def guarded(sequence_number: int) -> None:
        packet = history.get(sequence_number % RTP_HISTORY_SIZE)
        if packet is None or packet.sequence_number != sequence_number:
            guard.stats.unknown += 1
            logger.debug("retransmission of %d: no longer in the history", sequence_number)
            return
        newest = getattr(sender, _NEWEST_TIMESTAMP_ATTR)
        allowed = guard.allow(
            clock_ms(),
            seq=sequence_number,
            size_bytes=len(packet.payload) + _RTP_HEADER_BYTES,
            age_ms=picture_age_ms(newest, packet.timestamp),
            rate_bps=rate_bps(),
            rtt_ms=rtt_ms(),
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("retransmission of %d: %s", sequence_number, guard.last_decision)
        if allowed:
            await original(sequence_number)

    sender._retransmit = guarded  # type: ignore[method-assign]
    return guard
