"""Folding per-stream sender figures into one link report."""

from __future__ import annotations

import pytest

from teledrive.vehicle.camera import Camera, SyntheticSource
from teledrive.vehicle.session import Session
from teledrive.vehicle.video_adapt import BudgetMemory, StreamSample, VideoAdapter, link_report
from teledrive.vehicle.video_budget import CameraSpec, VideoBudget, VideoBudgetConfig


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


def test_the_path_rtt_is_the_least_control_channel_round_trip() -> None:
    # Jitter spikes fall out; a queue that stood through the whole tick stays.
    report = link_report([StreamSample()], fallback_rtt_ms=None, path_rtts_ms=[260.0, 210, 390])
    assert report.path_rtt_ms == 210.0
    assert link_report([StreamSample()], fallback_rtt_ms=None).path_rtt_ms is None


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
