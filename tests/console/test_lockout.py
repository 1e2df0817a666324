"""Stale-video lockout: locks after 300 ms without a frame, unlocks only on a new deadman press."""

from __future__ import annotations

import pytest

from teledrive.operator.console.lockout import VideoLockout
from teledrive.shared.errors import ConfigError


def test_locked_until_the_first_frame() -> None:
    lockout = VideoLockout()
    status = lockout.update(0.0, deadman_held=False)
    assert status.locked
    assert "NO VIDEO" in status.reason
    assert status.video_age_ms is None


def test_fresh_video_and_released_deadman_unlock() -> None:
    lockout = VideoLockout()
    lockout.on_frame(100.0)
    assert not lockout.update(110.0, deadman_held=False).locked
    assert not lockout.update(120.0, deadman_held=True).locked


def test_no_frame_for_300_ms_locks_and_says_why() -> None:
    lockout = VideoLockout(stale_after_ms=300.0)
    lockout.on_frame(0.0)
    assert not lockout.update(10.0, deadman_held=False).locked
    assert not lockout.update(299.0, deadman_held=True).locked
    status = lockout.update(300.0, deadman_held=True)
    assert status.locked
    assert "FROZEN" in status.reason
    assert "300 ms" in status.reason
    assert lockout.engagements == 1


def test_frame_returning_while_deadman_held_stays_locked_until_re_press() -> None:
    lockout = VideoLockout()
    lockout.on_frame(0.0)
    lockout.update(1.0, deadman_held=False)
    assert lockout.update(400.0, deadman_held=True).locked
    lockout.on_frame(450.0)
    status = lockout.update(460.0, deadman_held=True)
    assert status.locked
    assert status.video_fresh
    assert "release and press" in status.reason
    assert not lockout.update(470.0, deadman_held=False).locked
    assert not lockout.update(480.0, deadman_held=True).locked


def test_release_during_the_freeze_does_not_count() -> None:
    """Releasing and re-pressing while still frozen must not unlock when video returns held."""
    lockout = VideoLockout()
    lockout.on_frame(0.0)
    lockout.update(1.0, deadman_held=False)
    lockout.update(400.0, deadman_held=False)
    lockout.update(420.0, deadman_held=True)
    lockout.on_frame(500.0)
    assert lockout.update(510.0, deadman_held=True).locked


def test_out_of_order_frame_time_is_ignored() -> None:
    lockout = VideoLockout()
    lockout.on_frame(1000.0)
    lockout.on_frame(500.0)
    assert lockout.update(1100.0, deadman_held=False).video_age_ms == pytest.approx(100.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_bound_rejected(bad: float) -> None:
    with pytest.raises(ConfigError, match="stale_after_ms"):
        VideoLockout(stale_after_ms=bad)
