"""Stale-video lockout, sans-I/O: no new frame for a while -> no driving.

An operator who cannot see the road must not be able to move the vehicle. When no new video
frame has arrived for ``stale_after_ms`` (300 ms by default, the TUM camera watchdog is
200 ms), the lockout engages: the console's drive commands carry zero speed and no deadman,
and a banner says why.

Unlocking is deliberately harder than locking. A fresh frame alone does not unlock: an
operator who kept the deadman and the throttle held through a freeze would otherwise lurch
forward the moment the picture returns, on a picture they have not had time to read. The
lockout clears only when video is fresh *and* the deadman has been seen released after that;
the next press of the deadman then drives.

Times are in ms on any monotonic clock the caller chooses (passed in, never read here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from teledrive.shared.errors import ConfigError

DEFAULT_STALE_AFTER_MS: Final = 300.0


@dataclass(frozen=True)
class LockoutStatus:
    """The lockout at one instant.

    Attributes:
        locked: drive commands must be zeroed.
        reason: why, in words for the operator's banner ("" when not locked).
        video_age_ms: time since the last new frame, None before the first.
        video_fresh: a frame arrived within the staleness bound.
    """

    locked: bool
    reason: str
    video_age_ms: float | None
    video_fresh: bool


class VideoLockout:
    """Locks driving when the video goes stale; unlocks on fresh video plus a new deadman press.

    Args:
        stale_after_ms: how long without a new frame before driving locks.

    Raises:
        ConfigError: ``stale_after_ms`` is not a positive finite number.
    """

    def __init__(self, *, stale_after_ms: float = DEFAULT_STALE_AFTER_MS) -> None:
        if not (math.isfinite(stale_after_ms) and stale_after_ms > 0):
            raise ConfigError(f"lockout: stale_after_ms must be > 0, got {stale_after_ms}")
        self.stale_after_ms = stale_after_ms
        self._last_frame_ms: float | None = None
        self._latched = True
        self._engagements = 0

    @property
    def engagements(self) -> int:
        """How many times the lockout engaged after video had been fresh."""
        return self._engagements

    def on_frame(self, now_ms: float) -> None:
        """Records that a new frame was received (decoded) at ``now_ms``."""
        if self._last_frame_ms is None or now_ms >= self._last_frame_ms:
            self._last_frame_ms = now_ms

    def update(self, now_ms: float, *, deadman_held: bool) -> LockoutStatus:
        """Advances the lockout to ``now_ms`` and says whether driving is allowed.

        Call it for every drive command with the deadman state that command would carry.

        Args:
            now_ms: the current time.
            deadman_held: the operator holds the deadman control now.

        Returns:
            The lockout status; when ``locked`` the command must be zeroed.
        """
        age_ms = None if self._last_frame_ms is None else max(0.0, now_ms - self._last_frame_ms)
        fresh = age_ms is not None and age_ms < self.stale_after_ms
        if not fresh:
            if not self._latched:
                self._engagements += 1
            self._latched = True
            if age_ms is None:
                reason = "NO VIDEO YET: driving locked until the picture arrives"
            else:
                reason = f"VIDEO FROZEN {age_ms:.0f} ms: driving locked"
            return LockoutStatus(True, reason, age_ms, False)
        if self._latched and not deadman_held:
            self._latched = False
        if self._latched:
            return LockoutStatus(
                True, "VIDEO BACK: release and press the deadman to drive", age_ms, True
            )
        return LockoutStatus(False, "", age_ms, True)
