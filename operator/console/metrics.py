"""Video figures for the HUD, sans-I/O: frame rate and glass-to-glass delay.

Glass-to-glass pairs two facts about one frame: when the vehicle captured it (``FrameTimes``
on the telemetry channel, vehicle clock, keyed by camera and RTP pts) and when the console
decoded it (operator clock). With the clock offset ``vehicle - operator`` from clock sync::

    glass_to_glass = decoded_ms + offset_ms - capture_ms

Either fact may arrive first, so both sides are remembered for a bounded number of frames.
(It is "decode-to-glass" only up to the paint, which follows within one UI frame.)
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Final

DEFAULT_FPS_WINDOW_MS: Final = 1000.0
DEFAULT_MATCH_HISTORY: Final = 256


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


class GlassToGlass:
    """Pairs capture and decode times of frames; keeps the latest glass-to-glass figure.

    Args:
        history: frames remembered on each side while waiting for the other.
    """

    def __init__(self, *, history: int = DEFAULT_MATCH_HISTORY) -> None:
        self._history = history
        self._decoded: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._captured: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.latest_ms: float | None = None
        self.matched = 0

    def on_decoded(self, camera: str, pts: int, decoded_ms: float, offset_ms: float | None) -> None:
        """A frame was decoded at ``decoded_ms`` (operator clock)."""
        key = (camera, pts)
        capture_ms = self._captured.pop(key, None)
        if capture_ms is not None and offset_ms is not None:
            self._match(decoded_ms + offset_ms - capture_ms)
            return
        if offset_ms is not None:
            self._remember(self._decoded, key, decoded_ms + offset_ms)

    def on_captured(self, camera: str, pts: int, capture_ms: float) -> None:
        """The vehicle reports a frame's capture time (vehicle clock)."""
        key = (camera, pts)
        decoded_vehicle_ms = self._decoded.pop(key, None)
        if decoded_vehicle_ms is not None:
            self._match(decoded_vehicle_ms - capture_ms)
            return
        self._remember(self._captured, key, capture_ms)

    def _match(self, g2g_ms: float) -> None:
        if g2g_ms >= 0:
            self.latest_ms = g2g_ms
            self.matched += 1

    def _remember(
        self, table: OrderedDict[tuple[str, int], float], key: tuple[str, int], value: float
    ) -> None:
        table[key] = value
        while len(table) > self._history:
            table.popitem(last=False)
