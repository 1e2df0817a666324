"""The whole system over the emulated LTE link (lte-1200km): 40 ms one way, ±15 ms pareto
jitter, 1 % loss, a 4 Mbit/s uplink. Video keeps flowing within the freeze bound while the
budget fits the uplink, and a cut is recovered within 2 s. Needs root; skips otherwise.

Figures for every profile (and `bad-cell`, where retransmission cannot always beat the bounds)
are in ``benchmarks/link_lab.py`` and the README.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from teledrive.shared.linklab import unavailable_reason
from teledrive.shared.linklab.profiles import PROFILES
from teledrive.shared.linklab.system import LabSystem, now_ms, time_scale

_REASON = unavailable_reason()
pytestmark = [
    pytest.mark.linklab,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=f"link lab unavailable: {_REASON}"),
]

PREFIX = "tdlte"
SCALE = time_scale()
FREEZE_MS = 500.0  # [linklab]: no freeze longer than this except during outages
RECONNECT_MS = 2000.0
FPS = 30
UPLINK_BPS = PROFILES["lte-1200km"].uplink.rate_bps


@pytest.fixture(scope="module")
def system() -> Iterator[LabSystem]:
    with LabSystem("lte-1200km", seed=3, prefix=PREFIX) as lab:
        lab.wait_driving(timeout_s=40.0)
        yield lab


def test_video_flows_within_the_freeze_bound_and_fits_the_uplink(system: LabSystem) -> None:
    system.wait_driving(since_ms=now_ms())
    start_ms = now_ms()
    window_s = 6.0
    system.hold(window_s)
    end_ms = now_ms()
    frames = system.frame_times(start_ms, end_ms)
    assert len(frames) >= 0.8 * FPS * window_s, f"{len(frames)} frames in {window_s} s"
    freeze_ms = system.longest_freeze_ms(start_ms, end_ms)
    assert freeze_ms <= FREEZE_MS, f"video froze for {freeze_ms:.0f} ms"
    summary = system.summary()
    sent = summary["video"]
    assert sent, summary
    assert sum(point[3] for point in sent.values()) < UPLINK_BPS, sent
    assert summary["stale_commands_applied"] == 0, summary


def test_a_cut_is_recovered_within_two_seconds(system: LabSystem) -> None:
    system.wait_driving(since_ms=now_ms())
    cut = system.cut(2.0)
    system.wait_for(
        lambda: system.first_frame_after(cut) is not None,
        2.0 + 10.0,
        "the first frame of a new peer connection",
    )
    reconnect_ms = system.reconnect_first_frame_ms(cut)
    assert reconnect_ms is not None
    assert reconnect_ms <= RECONNECT_MS * SCALE, reconnect_ms
    system.wait_driving(timeout_s=15.0, since_ms=cut.end_ms)
    assert system.commands_applied_from_before(cut) == 0
    assert system.summary()["stale_commands_applied"] == 0
