"""Exact tests of the sans-I/O impairment core (no root, no sockets, no clock)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.shared.linklab.impair import (
    FADES_KEPT,
    Dropped,
    DropReason,
    Impairment,
    Scheduled,
)
from teledrive.shared.linklab.profiles import (
    DirectionProfile,
    Fades,
    GilbertElliott,
    OutageSchedule,
)


def make(profile: DirectionProfile, seed: int = 1) -> Impairment[str]:
    return Impairment(profile, seed=seed, epoch_ms=0.0)


def test_fixed_delay_departs_exactly_and_only_when_due() -> None:
    link = make(DirectionProfile(delay_ms=10.0))
    assert link.offer(0.0, "a", 100) == Scheduled(10.0)
    assert link.offer(1.0, "b", 100) == Scheduled(11.0)
    assert link.next_due_ms() == 10.0
    assert link.due(9.999) == []
    assert link.due(10.5) == [(10.0, "a")]
    assert link.due(11.0) == [(11.0, "b")]
    assert link.next_due_ms() is None
    stats = link.stats
    assert (stats.offered, stats.passed, stats.passed_bytes, stats.in_flight) == (2, 2, 200, 0)


def test_rate_limit_serialises_and_drop_tail_queue_overflows() -> None:
    # 8000 bit/s: one byte takes exactly 1 ms. Queue of 25 bytes.
    link = make(DirectionProfile(delay_ms=5.0, rate_bps=8000.0, queue_bytes=25))
    assert link.offer(0.0, "a", 10) == Scheduled(15.0)  # serialised at 10, + 5 ms delay
    assert link.offer(0.0, "b", 10) == Scheduled(25.0)  # waits behind a
    assert link.offer(0.0, "c", 10) == Dropped(DropReason.QUEUE)  # 20 queued + 10 > 25
    assert link.offer(15.0, "d", 10) == Scheduled(35.0)  # 5 bytes left ahead: fits
    assert link.offer(100.0, "e", 10) == Scheduled(115.0)  # idle link: no wait
    assert link.stats.dropped["queue"] == 1
    assert link.stats.queue_drops == [0.0]  # when: the sender overran the link then


def test_default_queue_is_100_ms_of_the_rate() -> None:
    assert DirectionProfile(rate_bps=20e6).effective_queue_bytes == 250_000
    assert DirectionProfile(rate_bps=8000.0).effective_queue_bytes == 2 * 1514


def test_random_loss_all_none_and_seeded() -> None:
    assert make(DirectionProfile(loss_ratio=1.0)).offer(0.0, "a", 1) == Dropped(DropReason.LOSS)
    assert isinstance(make(DirectionProfile(loss_ratio=0.0)).offer(0.0, "a", 1), Scheduled)

    def pattern(seed: int) -> list[bool]:
        link = make(DirectionProfile(loss_ratio=0.3), seed=seed)
        return [isinstance(link.offer(float(i), "x", 1), Dropped) for i in range(10_000)]

    first = pattern(5)
    assert first == pattern(5)  # same seed, same frames lost
    assert first != pattern(6)
    # 10 000 draws at p = 0.3: sigma = 46 frames; 5 sigma = 230.
    assert abs(sum(first) - 3000) < 230


def test_gilbert_elliott_alternates_when_transitions_are_certain() -> None:
    chain = GilbertElliott(p_good_to_bad=1.0, p_bad_to_good=1.0, loss_good=0.0, loss_bad=1.0)
    link = make(DirectionProfile(burst_loss=chain))
    verdicts = [link.offer(float(i), "x", 1) for i in range(6)]
    assert [isinstance(v, Dropped) for v in verdicts] == [False, True] * 3
    assert link.stats.dropped["burst"] == 3


def fade_pattern(link: Impairment[str], times_ms: list[float]) -> list[bool]:
    return [isinstance(link.offer(t, "x", 1), Dropped) for t in times_ms]


def test_fades_lose_a_steady_flow_in_bursts_of_the_mean_fade() -> None:
    fades = Fades.for_mean_loss(0.03, mean_fade_ms=50.0)
    assert math.isclose(fades.mean_loss_ratio, 0.03)
    link = make(DirectionProfile(fades=fades), seed=3)
    lost = fade_pattern(link, [float(t) for t in range(2_000_000)])  # a frame every ms
    bursts = sum(1 for i in range(1, len(lost)) if lost[i] and not lost[i - 1])
    assert 0.025 < sum(lost) / len(lost) < 0.035
    assert 45.0 < sum(lost) / bursts < 55.0  # frames per burst = fade length in ms
    assert link.stats.dropped["fade"] == sum(lost)
    runs, run = [], 0
    for lost_now in lost:
        run = run + 1 if lost_now else 0
        runs.append(run)
    # A frame every ms: the longest run of lost frames is the longest fade, to within a frame.
    assert abs(link.stats.longest_fade_ms - max(runs)) <= 1.0
    fades = link.stats.fades
    # Every fade (the latest FADES_KEPT), in order; two fades that touch make one run of losses.
    assert len(fades) <= FADES_KEPT
    assert 0 <= len(fades) - min(bursts, FADES_KEPT) <= 2
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(fades))
    last_fade_frames = [t for t in range(len(lost)) if lost[t] and t >= fades[-1][0]]
    assert last_fade_frames[0] - fades[-1][0] < 1.0  # a frame every ms: lost from its start
    assert last_fade_frames[-1] < fades[-1][1]  # and until its end


def test_a_fade_lasts_the_same_time_for_a_quiet_flow() -> None:
    """What a per-frame chain gets wrong: a re-send one round trip later is a fresh chance."""
    fades = Fades.for_mean_loss(0.03, mean_fade_ms=50.0)
    chain = GilbertElliott.for_mean_loss(0.03, mean_burst_frames=4.0)
    resend_ms = 300.0  # a datagram re-sent every 300 ms, alone on the link

    def lost_again(profile: DirectionProfile) -> float:
        link = make(profile, seed=4)
        lost = fade_pattern(link, [i * resend_ms for i in range(100_000)])
        after_loss = [lost[i] for i in range(1, len(lost)) if lost[i - 1]]
        return sum(after_loss) / len(after_loss)

    # 300 ms after a loss the fade (mean 50 ms) is nearly always over: the re-send is lost
    # about as often as any frame; the per-frame chain is still in its burst (3 in 4).
    assert lost_again(DirectionProfile(fades=fades)) < 0.06
    assert lost_again(DirectionProfile(burst_loss=chain)) > 0.7


def test_fades_follow_the_seed_and_pass_frames_outside_a_fade() -> None:
    fades = Fades(mean_fade_ms=10.0, mean_up_ms=10.0)
    times = [float(t) for t in range(1000)]
    first = fade_pattern(make(DirectionProfile(fades=fades), seed=5), times)
    assert first == fade_pattern(make(DirectionProfile(fades=fades), seed=5), times)
    assert first != fade_pattern(make(DirectionProfile(fades=fades), seed=6), times)
    assert 300 < sum(first) < 700


def test_a_fade_hits_a_frame_when_it_leaves_the_rate_limit() -> None:
    """A frame queued behind others reaches the air later, maybe inside a fade."""
    fades = Fades(mean_fade_ms=1e9, mean_up_ms=1e-6)  # up for a moment, then faded for good
    link = make(DirectionProfile(fades=fades, rate_bps=8000.0, queue_bytes=10_000))
    assert isinstance(link.offer(0.0, "a", 1), Scheduled)  # on the air at 1 ms: still up
    # Arrives at 0 ms too, but leaves the rate limit 1 s later, inside the fade.
    assert link.offer(0.0, "b", 1000) == Dropped(DropReason.FADE)


@pytest.mark.parametrize(
    ("fade_ms", "up_ms"), [(0.0, 10.0), (10.0, -1.0), (math.inf, 10.0), (math.nan, 1.0)]
)
def test_fades_reject_bad_numbers(fade_ms: float, up_ms: float) -> None:
    with pytest.raises(ConfigError, match="Fades"):
        Fades(mean_fade_ms=fade_ms, mean_up_ms=up_ms)


def test_fades_for_mean_loss_rejects_bad_numbers() -> None:
    with pytest.raises(ConfigError, match="for_mean_loss"):
        Fades.for_mean_loss(1.0, 50.0)
    with pytest.raises(ConfigError, match="for_mean_loss"):
        Fades.for_mean_loss(0.03, 0.0)


def test_gilbert_elliott_mean_loss_and_burst_length() -> None:
    chain = GilbertElliott.for_mean_loss(0.03, mean_burst_frames=4.0)
    assert math.isclose(chain.mean_loss_ratio, 0.03)
    link = make(DirectionProfile(burst_loss=chain), seed=3)
    lost = [isinstance(link.offer(float(i), "x", 1), Dropped) for i in range(200_000)]
    bursts = sum(1 for i in range(1, len(lost)) if lost[i] and not lost[i - 1])
    assert 0.025 < sum(lost) / len(lost) < 0.035
    assert 3.5 < sum(lost) / bursts < 4.5  # bursty: independent loss would give ~1.03


@pytest.mark.parametrize("distribution", ["normal", "uniform", "pareto"])
def test_jitter_stays_within_bound_and_never_reorders(distribution: str) -> None:
    profile = DirectionProfile(delay_ms=10.0, jitter_ms=5.0, jitter_distribution=distribution)  # type: ignore[arg-type]
    link = make(profile)
    departures = []
    for i in range(5000):
        arrival_ms = i * 0.1  # much denser than the jitter: the no-reorder clamp works hard
        verdict = link.offer(arrival_ms, "x", 1)
        assert isinstance(verdict, Scheduled)
        assert arrival_ms + 5.0 <= verdict.depart_ms <= arrival_ms + 15.0
        departures.append(verdict.depart_ms)
    assert departures == sorted(departures)
    assert link.stats.reordered == 0


@pytest.mark.parametrize("distribution", ["normal", "uniform", "pareto"])
def test_jitter_is_centred_on_the_delay_for_sparse_frames(distribution: str) -> None:
    profile = DirectionProfile(delay_ms=50.0, jitter_ms=10.0, jitter_distribution=distribution)  # type: ignore[arg-type]
    link = make(profile)
    extra_ms = []
    for i in range(20_000):
        verdict = link.offer(i * 1000.0, "x", 1)  # far apart: no clamping
        assert isinstance(verdict, Scheduled)
        extra_ms.append(verdict.depart_ms - i * 1000.0 - 50.0)
    mean_ms = sum(extra_ms) / len(extra_ms)
    assert -0.5 < mean_ms < 0.5
    assert max(extra_ms) > 5.0
    assert min(extra_ms) < -5.0


def test_reordered_frame_is_held_and_overtaken() -> None:
    link = make(DirectionProfile(delay_ms=10.0, reorder_ratio=1.0, reorder_delay_ms=5.0))
    assert link.offer(0.0, "a", 1) == Scheduled(15.0, reordered=True)
    link.set_profile(DirectionProfile(delay_ms=10.0), now_ms=0.5)
    assert link.offer(1.0, "b", 1) == Scheduled(11.0)  # not held back behind a
    assert link.due(20.0) == [(11.0, "b"), (15.0, "a")]
    assert link.stats.reordered == 1


def test_reorder_ratio_reorders_some_frames() -> None:
    link = make(DirectionProfile(delay_ms=10.0, reorder_ratio=0.1, reorder_delay_ms=3.5), seed=2)
    for i in range(1000):
        link.offer(float(i), i, 1)  # type: ignore[arg-type]
    link.set_profile(DirectionProfile(delay_ms=10.0), now_ms=1000.0)
    for i in range(1000, 1005):  # in-order frames that overtake the last held ones
        link.offer(float(i), i, 1)  # type: ignore[arg-type]
    order: list[int] = [frame for _, frame in link.due(10_000.0)]  # type: ignore[misc]
    # A frame is overtaken when a frame that arrived after it departs before it.
    overtaken = sum(1 for i, frame in enumerate(order) if i and max(order[:i]) > frame)
    assert link.stats.reordered == overtaken
    assert 50 < overtaken < 150


def test_scheduled_outage_drops_arrivals_inside_the_windows() -> None:
    schedule = OutageSchedule(start_ms=100.0, length_ms=50.0, period_ms=200.0)
    link = make(DirectionProfile(outages=schedule))
    arrivals = [99.0, 100.0, 149.9, 150.0, 299.0, 300.0, 349.0, 350.0]
    verdicts = [isinstance(link.offer(t, "x", 1), Dropped) for t in arrivals]
    assert verdicts == [False, True, True, False, False, True, True, False]
    assert link.stats.dropped["outage"] == 4


def test_cut_drops_arrivals_and_frames_in_flight_then_resumes() -> None:
    link = make(DirectionProfile(delay_ms=15.0))
    link.offer(0.0, "in-flight", 1)  # due at 15, inside the cut
    link.offer(1.0, "early", 1)  # due at 16, inside the cut
    link.cut(10.0, 20.0)  # [10, 30)
    assert link.offer(10.0, "during", 1) == Dropped(DropReason.OUTAGE)
    assert link.offer(29.9, "late", 1) == Dropped(DropReason.OUTAGE)
    assert link.offer(30.0, "after", 1) == Scheduled(45.0)
    assert link.due(100.0) == [(45.0, "after")]
    stats = link.stats
    assert (stats.passed, stats.dropped["outage"]) == (1, 4)


def test_cut_rejects_bad_durations() -> None:
    link = make(DirectionProfile())
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="duration_ms"):
            link.cut(0.0, bad)


def test_set_profile_restarts_the_outage_schedule() -> None:
    link = make(DirectionProfile())
    link.set_profile(DirectionProfile(outages=OutageSchedule(start_ms=10.0, length_ms=5.0)), 1000.0)
    assert isinstance(link.offer(1005.0, "x", 1), Scheduled)
    assert isinstance(link.offer(1010.0, "x", 1), Dropped)
    assert isinstance(link.offer(1015.0, "x", 1), Scheduled)


def test_counters_add_up_under_every_impairment() -> None:
    profile = DirectionProfile(
        delay_ms=20.0,
        jitter_ms=5.0,
        loss_ratio=0.05,
        burst_loss=GilbertElliott.for_mean_loss(0.05, 3.0),
        fades=Fades.for_mean_loss(0.05, 20.0),
        rate_bps=1e6,
        queue_bytes=20_000,
        reorder_ratio=0.02,
        outages=OutageSchedule(start_ms=500.0, length_ms=100.0, period_ms=1000.0),
    )
    link = make(profile, seed=9)
    rng = random.Random(0)
    now_ms = 0.0
    for _ in range(5000):
        now_ms += rng.expovariate(1.0)  # ~1 frame/ms, 1200 B: 9.6 Mbit/s into 1 Mbit/s
        link.offer(now_ms, "x", 1200)
        link.due(now_ms)
    stats = link.stats
    assert stats.offered == 5000
    assert stats.offered == stats.passed + sum(stats.dropped.values()) + stats.in_flight
    assert all(count > 0 for count in stats.dropped.values())
