"""NTP-style clock synchronisation over a data channel, sans-I/O.

The asking side (:class:`ClockSync`) stamps a request with its local time ``t1``; the
answering side (:func:`answer_request`) stamps receive time ``t2`` and send time ``t3`` on its
own clock; the asker stamps the reply's arrival ``t4``. From one exchange::

    rtt    = (t4 - t1) - (t3 - t2)            time on the wire, both ways
    offset = ((t2 - t1) + (t3 - t4)) / 2      peer_clock - local_clock

The offset error of one sample is at most ``rtt / 2`` (path asymmetry), so the sample with the
smallest RTT in the window is the best one; its offset is used. Drift (how fast the offset
moves, from crystal tolerance) is a least-squares slope of offset over local time across the
window, clamped to ``max_drift_ppm``, and :meth:`ClockSync.offset_at` extrapolates the best
sample's offset to the requested time with it.

``rtt_ms`` and ``one_way_ms`` report the **latest** accepted exchange (what the link does now,
which is what a safety decision needs), ``min_rtt_ms`` the best one in the window.

Rejected responses are counted by reason and never change the estimate: unknown id, ``t1``
not matching the request, a non-finite stamp, a negative RTT, or a peer that claims to have
sent before it received (``t3 < t2``).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import NamedTuple

from teledrive.shared.errors import ConfigError

ID_MODULUS = 1 << 32


class SyncReply(NamedTuple):
    """The answer to a sync request: the request's id and ``t1`` echoed, plus peer stamps."""

    request_id: int
    t1_ms: float
    t2_ms: float
    t3_ms: float


def answer_request(
    request_id: int, t1_ms: float, t2_ms: float, t3_ms: float | None = None
) -> SyncReply:
    """Build the responder's reply.

    Args:
        request_id: The id from the request, echoed.
        t1_ms: The asker's send time from the request, echoed.
        t2_ms: When the request arrived, responder clock.
        t3_ms: When the reply leaves, responder clock (defaults to ``t2_ms``).

    Returns:
        The reply to send back.
    """
    return SyncReply(request_id, t1_ms, t2_ms, t2_ms if t3_ms is None else t3_ms)


@dataclass(frozen=True, slots=True)
class SyncSample:
    """One accepted exchange.

    Attributes:
        local_ms: Midpoint of the exchange on the local clock, ``(t1 + t4) / 2``.
        rtt_ms: Round-trip time without the peer's processing time.
        offset_ms: ``peer_clock - local_clock`` from this exchange.
    """

    local_ms: float
    rtt_ms: float
    offset_ms: float


class ClockSync:
    """The asking side of the clock sync.

    Args:
        window: How many accepted samples to keep.
        min_samples: Samples needed before :attr:`ready` is True.
        max_pending: Outstanding requests remembered; older ones are forgotten.
        min_drift_span_ms: Local time the window must span before drift is estimated.
        max_drift_ppm: Clamp for the drift estimate (crystals are within about 100 ppm).
    """

    def __init__(
        self,
        *,
        window: int = 32,
        min_samples: int = 3,
        max_pending: int = 64,
        min_drift_span_ms: float = 2000.0,
        max_drift_ppm: float = 500.0,
    ) -> None:
        if window < 1 or min_samples < 1 or max_pending < 1:
            raise ConfigError(
                f"ClockSync: window ({window}), min_samples ({min_samples}) and "
                f"max_pending ({max_pending}) must be >= 1"
            )
        if min_samples > window:
            raise ConfigError(f"ClockSync: min_samples {min_samples} > window {window}")
        if not (math.isfinite(min_drift_span_ms) and min_drift_span_ms > 0):
            raise ConfigError(f"ClockSync: min_drift_span_ms must be > 0, got {min_drift_span_ms}")
        if not (math.isfinite(max_drift_ppm) and max_drift_ppm >= 0):
            raise ConfigError(f"ClockSync: max_drift_ppm must be >= 0, got {max_drift_ppm}")
        self._samples: deque[SyncSample] = deque(maxlen=window)
        self._pending: OrderedDict[int, float] = OrderedDict()
        self._max_pending = max_pending
        self._min_samples = min_samples
        self._min_drift_span_ms = min_drift_span_ms
        self._max_drift = max_drift_ppm * 1e-6
        self._next_id = 0
        self._latest: SyncSample | None = None
        self.rejected: Counter[str] = Counter()
        self.last_rejection = ""

    def make_request(self, now_ms: float) -> tuple[int, float]:
        """Start an exchange: returns ``(request_id, t1_ms)`` to send to the peer."""
        request_id = self._next_id
        self._next_id = (self._next_id + 1) % ID_MODULUS
        self._pending[request_id] = now_ms
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)
        return request_id, now_ms

    def on_response(
        self, request_id: int, t1_ms: float, t2_ms: float, t3_ms: float, t4_now_ms: float
    ) -> SyncSample | None:
        """Take a reply; returns the accepted sample, or None when it was rejected (counted)."""
        sent_ms = self._pending.get(request_id)
        where = f"clock sync reply id={request_id}"
        if sent_ms is None:
            return self._reject("unknown_id", f"{where}: no such request outstanding")
        stamps = (t1_ms, t2_ms, t3_ms, t4_now_ms)
        if not all(math.isfinite(t) for t in stamps):
            return self._reject("non_finite", f"{where}: non-finite stamp in {stamps}")
        if t1_ms != sent_ms:
            return self._reject("t1_mismatch", f"{where}: t1 {t1_ms} != sent {sent_ms}")
        if t3_ms < t2_ms:
            return self._reject("peer_reversed", f"{where}: t3 {t3_ms} < t2 {t2_ms}")
        rtt_ms = (t4_now_ms - t1_ms) - (t3_ms - t2_ms)
        if rtt_ms < 0:
            return self._reject("negative_rtt", f"{where}: rtt {rtt_ms:.3f} ms < 0")
        del self._pending[request_id]
        offset_ms = ((t2_ms - t1_ms) + (t3_ms - t4_now_ms)) / 2.0
        sample = SyncSample((t1_ms + t4_now_ms) / 2.0, rtt_ms, offset_ms)
        self._samples.append(sample)
        self._latest = sample
        return sample

    @property
    def ready(self) -> bool:
        """True once enough samples were accepted for the estimate to be used."""
        return len(self._samples) >= self._min_samples

    @property
    def samples(self) -> tuple[SyncSample, ...]:
        """The samples in the window, oldest first."""
        return tuple(self._samples)

    @property
    def rtt_ms(self) -> float | None:
        """RTT of the latest accepted exchange."""
        return None if self._latest is None else self._latest.rtt_ms

    @property
    def one_way_ms(self) -> float | None:
        """One-way delay estimate, half the latest RTT."""
        return None if self._latest is None else self._latest.rtt_ms / 2.0

    @property
    def min_rtt_ms(self) -> float | None:
        """Smallest RTT in the window."""
        best = self._best()
        return None if best is None else best.rtt_ms

    @property
    def offset_ms(self) -> float | None:
        """``peer_clock - local_clock`` from the minimum-RTT sample (not extrapolated)."""
        best = self._best()
        return None if best is None else best.offset_ms

    @property
    def drift_ppm(self) -> float:
        """Drift of the peer clock against the local one, in parts per million (0 if unknown)."""
        return self._drift() * 1e6

    def offset_at(self, now_ms: float) -> float | None:
        """``peer_clock - local_clock`` at local time ``now_ms``, drift-corrected."""
        best = self._best()
        if best is None:
            return None
        return best.offset_ms + self._drift() * (now_ms - best.local_ms)

    def _best(self) -> SyncSample | None:
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: s.rtt_ms)

    def _drift(self) -> float:
        samples = self._samples
        if len(samples) < 3:
            return 0.0
        span_ms = samples[-1].local_ms - samples[0].local_ms
        if span_ms < self._min_drift_span_ms:
            return 0.0
        mean_t = sum(s.local_ms for s in samples) / len(samples)
        mean_o = sum(s.offset_ms for s in samples) / len(samples)
        var_t = sum((s.local_ms - mean_t) ** 2 for s in samples)
        if var_t <= 0:
            return 0.0
        cov = sum((s.local_ms - mean_t) * (s.offset_ms - mean_o) for s in samples)
        return max(-self._max_drift, min(self._max_drift, cov / var_t))

    def _reject(self, reason: str, detail: str) -> SyncSample | None:
        self.rejected[reason] += 1
        self.last_rejection = detail
        return None
