"""Folding per-stream sender figures into one link report."""

from __future__ import annotations

import pytest

from teledrive.vehicle.camera import Camera, SyntheticSource
from teledrive.vehicle.session import Session
from teledrive.vehicle.video_adapt import BudgetMemory, StreamSample, VideoAdapter, link_report
from teledrive.vehicle.video_budget import (
    CameraSpec,
    LinkReport,
    OperatingPoint,
    VideoBudget,
    VideoBudgetConfig,
)


def test_estimates_add_up_only_when_every_stream_has_one() -> None:
    both = [StreamSample(remb_bps=1_000_000), StreamSample(remb_bps=500_000)]
    assert link_report(both, fallback_rtt_ms=None).estimate_bps == 1_500_000
    one = [StreamSample(remb_bps=1_000_000), StreamSample()]
    assert link_report(one, fallback_rtt_ms=None).estimate_bps is None


def test_loss_is_weighted_by_packets_and_only_from_new_reports() -> None:
    samples = [
        StreamSample(fraction_lost=0.4, packets_sent=300),
        StreamSample(fraction_lost=0.0, packets_sent=100),
        StreamSample(fraction_lost=None, packets_sent=10_000),
    ]
    assert link_report(samples, fallback_rtt_ms=None).fraction_lost == pytest.approx(0.3)
    assert link_report([StreamSample()], fallback_rtt_ms=None).fraction_lost is None


def test_rtt_is_the_worst_stream_else_the_fallback() -> None:
    samples = [StreamSample(rtt_ms=40.0), StreamSample(rtt_ms=90.0), StreamSample()]
    assert link_report(samples, fallback_rtt_ms=10.0).rtt_ms == 90.0
    assert link_report([StreamSample()], fallback_rtt_ms=10.0).rtt_ms == 10.0


def test_a_new_session_starts_from_what_the_last_one_learned() -> None:
    # After a cut the new session meets the same link; the default start (2.5 Mbit/s) over a
    # 1.5 Mbit/s link filled its queue while the new budget learned.
    spec = CameraSpec("front", 640, 480, 30.0)
    last = VideoAdapter([])
    memory = BudgetMemory(keep_ms=60_000.0)
    assert memory.start_bps(0.0) is None  # nothing learned yet: the default
    memory.remember(last, 0.0)  # its budget never started: nothing to keep
    assert memory.start_bps(0.0) is None
    last.budget = VideoBudget([spec], now_ms=0.0)
    last.budget.available_bps = 612_345.6
    memory.remember(last, 1_000.0)
    assert memory.start_bps(2_000.0) == 612_346
    memory.remember(None, 3_000.0)  # a session without video keeps what was learned
    assert memory.start_bps(61_000.0) == 612_346
    assert memory.start_bps(61_001.0) is None  # a minute on, the link may have changed


async def test_a_session_starts_its_budget_where_it_is_told() -> None:
    camera = Camera(lambda: SyntheticSource(320, 240), name="front", fps=10)
    default = Session("s0", "op")
    default.add_cameras([camera], clock_ms=lambda: 0.0, rtt_ms=lambda: None)
    learned = Session("s1", "op")
    learned.add_cameras([camera], clock_ms=lambda: 0.0, rtt_ms=lambda: None, start_bps=600_000)
    tiny = Session("s2", "op")
    tiny.add_cameras([camera], clock_ms=lambda: 0.0, rtt_ms=lambda: None, start_bps=1)
    assert default.video is not None
    assert learned.video is not None
    assert tiny.video is not None
    assert default.video.config.start_bps == VideoBudgetConfig().start_bps
    assert learned.video.config.start_bps == 600_000
    assert tiny.video.config.start_bps == VideoBudgetConfig().min_total_bps
    for session in (default, learned, tiny):
        for track in session.tracks:
            track.stop()
        await session.pc.close()


class FakeTrack:
    """A camera track as the adapter sees it: a name, forced keyframes, what it was given."""

    def __init__(self, name: str) -> None:
        self.camera = SyntheticCameraName(name)
        self.keyframes_forced = 0
        self.applied: list[OperatingPoint] = []

    def apply_operating_point(self, point: OperatingPoint) -> None:
        self.applied.append(point)


class SyntheticCameraName:
    def __init__(self, name: str) -> None:
        self.name = name


def test_a_step_up_waits_while_the_camera_recovers_from_loss() -> None:
    # A new size restarts the encoder with a keyframe: not while a forced one (and its
    # retransmissions) is on the link.
    spec = CameraSpec("front", 640, 480, 30.0)
    track = FakeTrack("front")
    adapter = VideoAdapter([track])  # type: ignore[list-item]
    cfg = VideoBudgetConfig(recovery_per_s=2.0, recovery_hold_ms=0.0, up_hold_ms=0.0)
    adapter.budget = VideoBudget([spec], config=cfg, now_ms=0.0)
    now_ms = 0.0
    lossy, clean = LinkReport(fraction_lost=0.3), LinkReport(fraction_lost=0.0, rtt_ms=40.0)
    for _ in range(10):
        now_ms += 500.0
        adapter.apply_report(now_ms, lossy)
    low = track.applied[-1]
    assert low.height_px < 480
    budget_heights = []
    for _ in range(20):  # a keyframe forced at every tick: recovering all along
        track.keyframes_forced += 1
        now_ms += 500.0
        budget_heights.append(adapter.apply_report(now_ms, clean)["front"].height_px)
    assert max(budget_heights) > low.height_px  # the budget stepped up...
    assert track.applied[-1].height_px == low.height_px  # ...the camera waited
    assert adapter.step_ups_held > 0
    now_ms += 500.0
    adapter.apply_report(now_ms, clean)  # recovered: no keyframe forced since the last tick
    assert track.applied[-1].height_px == max(budget_heights)
    # A step down never waits: the camera follows the budget down at the tick it steps.
    for _ in range(20):
        track.keyframes_forced += 1
        now_ms += 500.0
        point = adapter.apply_report(now_ms, lossy)["front"]
        assert track.applied[-1] == point
