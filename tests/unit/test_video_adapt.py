"""Folding per-stream sender figures into one link report."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from teledrive.vehicle.camera import Camera, SyntheticSource
from teledrive.vehicle.session import Session
from teledrive.vehicle.video_adapt import (
    BudgetMemory,
    StreamSample,
    VideoAdapter,
    link_report,
    run_video_adaptation,
)
from teledrive.vehicle.video_budget import CameraSpec, VideoBudget, VideoBudgetConfig


def test_estimates_add_up_only_when_every_stream_has_one() -> None:
    both = [StreamSample(remb_bps=1_000_000), StreamSample(remb_bps=500_000)]
    assert link_report(both).estimate_bps == 1_500_000
    one = [StreamSample(remb_bps=1_000_000), StreamSample()]
    assert link_report(one).estimate_bps is None


def test_loss_is_weighted_by_packets_and_only_from_new_reports() -> None:
    samples = [
        StreamSample(fraction_lost=0.4, packets_sent=300),
        StreamSample(fraction_lost=0.0, packets_sent=100),
        StreamSample(fraction_lost=None, packets_sent=10_000),
    ]
    assert link_report(samples).fraction_lost == pytest.approx(0.3)
    assert link_report([StreamSample()]).fraction_lost is None


def test_rtt_is_the_worst_stream_else_the_fallback() -> None:
    samples = [StreamSample(rtt_ms=40.0), StreamSample(rtt_ms=90.0), StreamSample()]
    assert link_report(samples, fallback_rtt_ms=10.0).rtt_ms == 90.0
    assert link_report([StreamSample()], fallback_rtt_ms=10.0).rtt_ms == 10.0
    assert link_report([StreamSample()]).rtt_ms is None


def test_the_path_rtt_is_the_least_control_channel_round_trip() -> None:
    # Jitter spikes fall out; a queue that stood through the whole tick stays.
    report = link_report([StreamSample()], path_rtts_ms=[260.0, 210, 390])
    assert report.path_rtt_ms == 210.0
    assert link_report([StreamSample()]).path_rtt_ms is None


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


class _RecordingAdapter(VideoAdapter):
    """An adapter without tracks that records the round trips each tick was given."""

    def __init__(self) -> None:
        super().__init__([])
        self.given: list[Sequence[float]] = []

    async def tick(
        self,
        now_ms: float,
        *,
        fallback_rtt_ms: float | None = None,
        path_rtts_ms: Sequence[float] = (),
    ) -> None:
        self.ticks += 1
        self.given.append(path_rtts_ms)


async def test_the_loop_hands_each_tick_its_round_trips_and_drops_them_without_a_session() -> None:
    adapter = _RecordingAdapter()
    sessions = iter([adapter, None, adapter, adapter])
    batches = iter([[250.0, 240.0], [999.0], [], [300.0]])
    done = asyncio.Event()

    async def sleep(_: float) -> None:
        if adapter.ticks == 3:
            done.set()
            await asyncio.Event().wait()  # park until cancelled

    loop = asyncio.create_task(
        run_video_adaptation(
            lambda: next(sessions),
            now_ms=lambda: 0.0,
            send_status=lambda _: None,
            take_path_rtts_ms=lambda: next(batches),
            sleep=sleep,
        )
    )
    await asyncio.wait_for(done.wait(), timeout=5.0)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    # The batch taken while there was no session (999 ms) reaches no later session.
    assert adapter.given == [[250.0, 240.0], [], [300.0]]
