"""Sans-I/O impairment of one link direction: frames in with arrival times, frames out when due.

:class:`Impairment` never reads a clock or touches a socket. The relay calls
:meth:`Impairment.offer` with each arriving frame and the time it arrived, asks
:meth:`Impairment.next_due_ms` how long it may sleep, and calls :meth:`Impairment.due` to
collect the frames whose departure time has come. All randomness comes from RNGs seeded from
the ``seed`` argument (one stream per decision, so that e.g. changing the jitter does not
change which frames are lost).

The stages a frame passes, in order:

1. outage (scheduled or :meth:`Impairment.cut`): dropped as ``outage``;
2. rate limit: the frame waits until the link has serialised what is ahead of it; if the
   bytes ahead plus the frame exceed the queue, it is dropped as ``queue`` (drop-tail);
3. random loss (``loss``), then Gilbert-Elliott bursty loss (``burst``, a chain stepped per
   frame), then fades (``fade``, a chain in time: a frame that leaves the rate limit while
   the link is faded is lost);
4. delay + jitter; the departure never precedes the previous frame's (no reordering) unless
   the frame is chosen for reordering, then it is held back so that later frames overtake it;
5. at departure: a frame due while the link is cut is dropped as ``outage`` too (a cut also
   loses what is in flight).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from teledrive.shared.errors import ConfigError
from teledrive.shared.linklab.profiles import DirectionProfile

T = TypeVar("T")

_BITS_PER_BYTE = 8
_MS_PER_S = 1000.0
_PARETO_SHAPE = 3.0
# Lomax(shape 3, scale k*bound) clipped at 2*bound has mean exactly bound when
# k^2 - 2k - 4 = 0, so shifting by -bound gives a clipped, right-skewed jitter with mean 0.
_PARETO_SCALE = 1.0 + math.sqrt(5.0)


FADES_KEPT = 2048
"""How many of the latest fades (and queue drops) :class:`DirectionStats` lists: about an
hour of ``bad-cell``, so a long run can take every gap's fades out."""


class DropReason(StrEnum):
    """Why a frame did not make it across."""

    OUTAGE = "outage"
    QUEUE = "queue"
    LOSS = "loss"
    BURST = "burst"
    FADE = "fade"


@dataclass(frozen=True)
class Scheduled:
    """The frame will depart at ``depart_ms`` (unless a cut catches it in flight)."""

    depart_ms: float
    reordered: bool = False


@dataclass(frozen=True)
class Dropped:
    """The frame was dropped on arrival."""

    reason: DropReason


Verdict = Scheduled | Dropped


@dataclass
class DirectionStats:
    """Counters of one direction.

    Attributes:
        offered: frames that arrived.
        passed: frames that departed.
        passed_bytes: bytes of the frames that departed.
        dropped: frames dropped, by :class:`DropReason` value.
        reordered: frames held back for reordering.
        in_flight: frames scheduled but not yet departed.
        longest_fade_ms: length of the longest fade (see ``DirectionProfile.fades``) that
            lost at least one frame; 0 if none did.
        fades: the latest fades that lost a frame (at most :data:`FADES_KEPT`), oldest first,
            as ``[start_ms, end_ms]`` on the caller's clock.
        queue_drops: arrival times of the latest frames the full queue dropped (at most
            :data:`FADES_KEPT`), oldest first: when the sender overran the link.
    """

    offered: int = 0
    passed: int = 0
    passed_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {r.value: 0 for r in DropReason})
    reordered: int = 0
    in_flight: int = 0
    longest_fade_ms: float = 0.0
    fades: list[list[float]] = field(default_factory=list)
    queue_drops: list[float] = field(default_factory=list)


class Impairment(Generic[T]):
    """Impairs one direction of a link according to a :class:`DirectionProfile`.

    Args:
        profile: what to do to frames.
        seed: seeds the random streams; the same seed and the same arrivals give the same
            result.
        epoch_ms: the time the profile starts (its outage schedule counts from here).
    """

    def __init__(self, profile: DirectionProfile, *, seed: int, epoch_ms: float) -> None:
        self._profile = profile
        self._epoch_ms = epoch_ms
        self._loss_rng = random.Random(f"{seed}/loss")
        self._burst_rng = random.Random(f"{seed}/burst")
        self._jitter_rng = random.Random(f"{seed}/jitter")
        self._reorder_rng = random.Random(f"{seed}/reorder")
        self._burst_bad = False
        self._fade_rng = random.Random(f"{seed}/fade")
        self._faded = False
        self._fade_flip_ms: float | None = None  # when the fade chain next changes state
        self._fade_start_ms = 0.0  # when the current (or last) fade began
        self._fades: deque[tuple[float, float]] = deque(maxlen=FADES_KEPT)
        self._queue_drops: deque[float] = deque(maxlen=FADES_KEPT)
        self._link_free_ms = -math.inf  # when the rate limiter has serialised all queued bytes
        self._fifo_tail_ms = -math.inf  # departure of the latest in-order frame
        self._cuts: list[tuple[float, float]] = []  # on-demand cuts as [start, end) in ms
        self._heap: list[tuple[float, int, int, T]] = []
        self._sequence = 0
        self._stats = DirectionStats()

    @property
    def profile(self) -> DirectionProfile:
        """The profile in force."""
        return self._profile

    @property
    def stats(self) -> DirectionStats:
        """A snapshot of the counters."""
        snapshot = dataclasses.replace(
            self._stats,
            dropped=dict(self._stats.dropped),
            fades=[[start, end] for start, end in self._fades],
            queue_drops=list(self._queue_drops),
        )
        snapshot.in_flight = len(self._heap)
        return snapshot

    def set_profile(self, profile: DirectionProfile, now_ms: float) -> None:
        """Switch to another profile; frames already scheduled keep their departure times.

        The new profile's outage schedule counts from ``now_ms``; the rate limiter's backlog
        and the bursty-loss state carry over.
        """
        self._profile = profile
        self._epoch_ms = now_ms

    def cut(self, now_ms: float, duration_ms: float) -> None:
        """Cut the link from ``now_ms`` for ``duration_ms``: nothing arrives or departs.

        Raises:
            ConfigError: if the duration is negative or not finite.
        """
        if not (math.isfinite(duration_ms) and duration_ms >= 0.0):
            raise ConfigError(f"cut: duration_ms must be finite and >= 0, got {duration_ms!r}")
        self._cuts.append((now_ms, now_ms + duration_ms))

    def is_cut(self, at_ms: float) -> bool:
        """Tell whether the link is cut at ``at_ms`` (scheduled outage or on-demand cut)."""
        outages = self._profile.outages
        if outages is not None and outages.is_cut(at_ms - self._epoch_ms):
            return True
        return any(start <= at_ms < end for start, end in self._cuts)

    def offer(self, now_ms: float, frame: T, size_bytes: int) -> Verdict:
        """Take a frame that arrived at ``now_ms``; say when it will depart or why it is lost."""
        self._stats.offered += 1
        verdict = self._decide(now_ms, size_bytes)
        if isinstance(verdict, Dropped):
            self._stats.dropped[verdict.reason.value] += 1
            return verdict
        if verdict.reordered:
            self._stats.reordered += 1
        self._sequence += 1
        heapq.heappush(self._heap, (verdict.depart_ms, self._sequence, size_bytes, frame))
        return verdict

    def next_due_ms(self) -> float | None:
        """The earliest departure time of a frame in flight, or None if there is none."""
        return self._heap[0][0] if self._heap else None

    def due(self, now_ms: float) -> list[tuple[float, T]]:
        """Remove and return ``(depart_ms, frame)`` for frames due by ``now_ms``, in order.

        A frame whose departure time falls in a cut is dropped (reason ``outage``) instead.
        """
        out: list[tuple[float, T]] = []
        while self._heap and self._heap[0][0] <= now_ms:
            depart_ms, _, size_bytes, frame = heapq.heappop(self._heap)
            if self.is_cut(depart_ms):
                self._stats.dropped[DropReason.OUTAGE.value] += 1
                continue
            self._stats.passed += 1
            self._stats.passed_bytes += size_bytes
            out.append((depart_ms, frame))
        self._forget_old_cuts(now_ms)
        return out

    def _forget_old_cuts(self, now_ms: float) -> None:
        horizon_ms = min(now_ms, self._heap[0][0]) if self._heap else now_ms
        self._cuts = [(start, end) for start, end in self._cuts if end > horizon_ms]

    def _decide(self, now_ms: float, size_bytes: int) -> Verdict:
        profile = self._profile
        if self.is_cut(now_ms):
            return Dropped(DropReason.OUTAGE)
        ready_ms = now_ms
        if profile.rate_bps > 0.0:
            backlog_ms = max(0.0, self._link_free_ms - now_ms)
            backlog_bytes = backlog_ms * profile.rate_bps / (_BITS_PER_BYTE * _MS_PER_S)
            if backlog_bytes + size_bytes > profile.effective_queue_bytes:
                self._queue_drops.append(now_ms)
                return Dropped(DropReason.QUEUE)
            serialise_ms = size_bytes * _BITS_PER_BYTE * _MS_PER_S / profile.rate_bps
            self._link_free_ms = max(now_ms, self._link_free_ms) + serialise_ms
            ready_ms = self._link_free_ms
        if profile.loss_ratio > 0.0 and self._loss_rng.random() < profile.loss_ratio:
            return Dropped(DropReason.LOSS)
        if profile.burst_loss is not None and self._step_burst():
            return Dropped(DropReason.BURST)
        fade = self._fade_at(ready_ms)
        if fade is not None:
            if not self._fades or self._fades[-1] != fade:
                self._fades.append(fade)
            self._stats.longest_fade_ms = max(self._stats.longest_fade_ms, fade[1] - fade[0])
            return Dropped(DropReason.FADE)
        depart_ms = ready_ms + profile.delay_ms + self._jitter_ms()
        depart_ms = max(depart_ms, ready_ms)
        if profile.reorder_ratio > 0.0 and self._reorder_rng.random() < profile.reorder_ratio:
            held_ms = max(depart_ms, self._fifo_tail_ms) + profile.effective_reorder_delay_ms
            return Scheduled(depart_ms=held_ms, reordered=True)
        depart_ms = max(depart_ms, self._fifo_tail_ms)
        self._fifo_tail_ms = depart_ms
        return Scheduled(depart_ms=depart_ms)

    def _step_burst(self) -> bool:
        chain = self._profile.burst_loss
        if chain is None:
            return False
        rng = self._burst_rng
        lost = rng.random() < (chain.loss_bad if self._burst_bad else chain.loss_good)
        if self._burst_bad:
            self._burst_bad = rng.random() >= chain.p_bad_to_good
        else:
            self._burst_bad = rng.random() < chain.p_good_to_bad
        return lost

    def _fade_at(self, at_ms: float) -> tuple[float, float] | None:
        """The fade ``(start_ms, end_ms)`` the link is in at ``at_ms``, or None if it is up."""
        fades = self._profile.fades
        if fades is None:
            return None
        rng = self._fade_rng
        if self._fade_flip_ms is None:  # the first frame finds the link up
            self._fade_flip_ms = at_ms + rng.expovariate(1.0 / fades.mean_up_ms)
        while at_ms >= self._fade_flip_ms:
            self._faded = not self._faded
            if self._faded:
                self._fade_start_ms = self._fade_flip_ms
            mean_ms = fades.mean_fade_ms if self._faded else fades.mean_up_ms
            self._fade_flip_ms += rng.expovariate(1.0 / mean_ms)
        return (self._fade_start_ms, self._fade_flip_ms) if self._faded else None

    def _jitter_ms(self) -> float:
        bound_ms = self._profile.jitter_ms
        if bound_ms == 0.0:
            return 0.0
        rng = self._jitter_rng
        distribution = self._profile.jitter_distribution
        if distribution == "uniform":
            return rng.uniform(-bound_ms, bound_ms)
        if distribution == "pareto":
            draw = math.pow(1.0 - rng.random(), -1.0 / _PARETO_SHAPE) - 1.0
            tail_ms = _PARETO_SCALE * bound_ms * draw
            return min(tail_ms, 2.0 * bound_ms) - bound_ms
        sample_ms: float = rng.gauss(0.0, bound_ms / 2.0)
        return min(bound_ms, max(-bound_ms, sample_ms))
