"""Glass-to-glass latency at the operator, sans-I/O.

The vehicle publishes each frame's capture time (vehicle clock) keyed by camera and pts; the
operator sees the decoded frame with the same pts (aiortc's receiver counts pts from the first
RTP timestamp, and the vehicle's track starts at pts 0). The two arrive in either order, so
both sides are kept, bounded, until they meet. With the clock offset
(``vehicle_clock - operator_clock``) a match gives ``decoded_at + offset - captured_at``.
"""

from __future__ import annotations

from collections import OrderedDict, deque

_KEEP = 256


class GlassToGlass:
    """Matches decoded frames with their capture times and keeps the latency samples.

    Args:
        keep_samples: how many latency samples to keep for percentiles.
    """

    def __init__(self, *, keep_samples: int = 10_000) -> None:
        self.samples_ms: deque[float] = deque(maxlen=keep_samples)
        self.last_ms: float | None = None
        self._decoded: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._captured: OrderedDict[tuple[str, int], float] = OrderedDict()

    def on_decoded(self, camera: str, pts: int, now_ms: float, offset_ms: float | None) -> None:
        """A frame was decoded at ``now_ms`` (operator clock)."""
        if offset_ms is None:
            return
        key = (camera, pts)
        captured = self._captured.pop(key, None)
        if captured is None:
            _remember(self._decoded, key, now_ms + offset_ms)
        else:
            self._add(now_ms + offset_ms - captured)

    def on_captured(self, camera: str, pts: int, capture_ms: float) -> None:
        """The vehicle says the frame ``pts`` of ``camera`` was captured at ``capture_ms``."""
        key = (camera, pts)
        decoded = self._decoded.pop(key, None)
        if decoded is None:
            _remember(self._captured, key, capture_ms)
        else:
            self._add(decoded - capture_ms)

    def _add(self, latency_ms: float) -> None:
        # A negative figure means the offset estimate is off; keep it visible, not hidden.
        self.samples_ms.append(latency_ms)
        self.last_ms = latency_ms

    def percentile(self, fraction: float) -> float | None:
        """The given percentile (0..1) of the kept samples, or None without samples."""
        if not self.samples_ms:
            return None
        ordered = sorted(self.samples_ms)
        index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
        return ordered[index]


def _remember(table: OrderedDict[tuple[str, int], float], key: tuple[str, int], v: float) -> None:
    table[key] = v
    while len(table) > _KEEP:
        table.popitem(last=False)
