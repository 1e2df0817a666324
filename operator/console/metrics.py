"""Video figures for the HUD, sans-I/O: frame rate, receive bitrate and packet loss.

Glass-to-glass comes from the client (:class:`teledrive.operator.g2g.GlassToGlass`). Bitrate
and loss come from aiortc's statistics (``RTCPeerConnection.getStats()``), which hold running
totals: :func:`counters_from_report` picks them out, :class:`VideoLinkMeter` turns two
samples into rates. aiortc's ``inbound-rtp`` entries count packets but not bytes, so the
bitrate is that of the whole (bundled) transport: video plus the small data channels.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

DEFAULT_FPS_WINDOW_MS: Final = 1000.0


class FrameRateMeter:
    """Frames per second over a sliding window.

    Args:
        window_ms: the window length.
    """

    def __init__(self, *, window_ms: float = DEFAULT_FPS_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._times: deque[float] = deque()
        self.total = 0

    def on_frame(self, now_ms: float) -> None:
        """Counts one frame at ``now_ms``."""
        self._times.append(now_ms)
        self.total += 1
        self._trim(now_ms)

    def fps(self, now_ms: float) -> float:
        """Frames per second over the window ending at ``now_ms``."""
        self._trim(now_ms)
        if len(self._times) < 2:
            return 0.0
        span_ms = max(self._times[-1] - self._times[0], 1e-6)
        return (len(self._times) - 1) * 1000.0 / span_ms

    def _trim(self, now_ms: float) -> None:
        while self._times and now_ms - self._times[0] > self.window_ms:
            self._times.popleft()


@dataclass(frozen=True)
class LinkCounters:
    """Running totals from one statistics report.

    Attributes:
        bytes_received: bytes received on the transport(s), all planes.
        packets_received: video RTP packets received.
        packets_lost: video RTP packets lost (as the receiver counts them).
    """

    bytes_received: int
    packets_received: int
    packets_lost: int


def counters_from_report(stats: Iterable[Any]) -> LinkCounters | None:
    """Sums an aiortc stats report's values (``report.values()``); None without video stats."""
    total_bytes = packets = lost = 0
    video = False
    for item in stats:
        kind = getattr(item, "type", None)
        if kind == "transport":
            total_bytes += int(getattr(item, "bytesReceived", 0))
        elif kind == "inbound-rtp" and getattr(item, "kind", None) == "video":
            video = True
            packets += int(getattr(item, "packetsReceived", 0))
            lost += int(getattr(item, "packetsLost", 0))
    return LinkCounters(total_bytes, packets, lost) if video else None


class VideoLinkMeter:
    """Receive bitrate and packet loss between the last two samples of running totals.

    A sample whose totals went down (a new session started counting from zero) starts over.
    """

    def __init__(self) -> None:
        self._last: tuple[float, LinkCounters] | None = None
        self.bitrate_kbps: float | None = None
        self.loss_fraction: float | None = None

    def on_sample(self, now_ms: float, counters: LinkCounters | None) -> None:
        """Takes the totals read at ``now_ms`` (None: no session; the figures are cleared)."""
        if counters is None:
            self._last, self.bitrate_kbps, self.loss_fraction = None, None, None
            return
        last, self._last = self._last, (now_ms, counters)
        if last is None:
            return
        then_ms, before = last
        span_ms = now_ms - then_ms
        d_bytes = counters.bytes_received - before.bytes_received
        d_packets = counters.packets_received - before.packets_received
        d_lost = counters.packets_lost - before.packets_lost
        if span_ms <= 0 or d_bytes < 0 or d_packets < 0:
            self.bitrate_kbps, self.loss_fraction = None, None
            return
        self.bitrate_kbps = d_bytes * 8.0 / span_ms  # bits per ms = kbit/s
        expected = d_packets + max(d_lost, 0)
        self.loss_fraction = max(d_lost, 0) / expected if expected > 0 else 0.0
