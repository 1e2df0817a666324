"""Checks the link-lab system tests share (each profile's module has its own lab)."""

from __future__ import annotations

from teledrive.shared.linklab.profiles import PROFILES
from teledrive.shared.linklab.system import Cut, LabSystem, now_ms, time_scale

FREEZE_MS = 500.0  # [linklab]: no freeze longer than this except during outages
RECONNECT_MS = 2000.0  # [linklab]: the first frame within 2 s of the link's return
FPS = 30


def video_flows(
    system: LabSystem,
    window_s: float,
    *,
    freeze_bound_ms: float = FREEZE_MS,
    beyond_fades: bool = False,
) -> tuple[float, float]:
    """Drives for ``window_s`` and checks the video kept flowing; returns the window.

    Args:
        system: the lab.
        window_s: how long to watch.
        freeze_bound_ms: the longest gap between frames allowed.
        beyond_fades: count only what is left of each gap once the link's fades are taken
            out (``LabSystem.longest_freeze_beyond_fades_ms``).
    """
    system.wait_driving(since_ms=now_ms())
    start_ms = now_ms()
    system.hold(window_s)
    end_ms = now_ms()
    frames = system.frame_times(start_ms, end_ms)
    assert len(frames) >= 0.8 * FPS * window_s, f"{len(frames)} frames in {window_s} s"
    if beyond_fades:
        freeze_ms = system.longest_freeze_beyond_fades_ms(start_ms, end_ms)
    else:
        freeze_ms = system.longest_freeze_ms(start_ms, end_ms)
    assert freeze_ms <= freeze_bound_ms, f"video froze for {freeze_ms:.0f} ms"
    return start_ms, end_ms


def video_fits_the_uplink(system: LabSystem, profile: str) -> None:
    """Checks the vehicle sends video within the profile's uplink, and nothing went stale."""
    summary = system.summary()
    sent = summary["video"]
    assert sent, summary
    uplink_bps = PROFILES[profile].uplink.rate_bps
    assert sum(point[3] for point in sent.values()) < uplink_bps, sent
    assert summary["stale_commands_applied"] == 0, summary


def cut_and_reconnect(
    system: LabSystem, cut_s: float, *, reconnect_bound_ms: float = RECONNECT_MS
) -> Cut:
    """Cuts the link while driving and checks a new session shows video within the bound."""
    system.wait_driving(since_ms=now_ms())
    cut = system.cut(cut_s)
    system.wait_for(
        lambda: system.first_frame_after(cut) is not None,
        cut_s + 10.0,
        "the first frame of a new peer connection",
    )
    reconnect_ms = system.reconnect_first_frame_ms(cut)
    assert reconnect_ms is not None
    assert reconnect_ms <= reconnect_bound_ms * time_scale(), reconnect_ms
    assert system.sessions() > cut.sessions_before
    return cut
