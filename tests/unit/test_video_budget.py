"""The bitrate budget: figures and an injected clock in, operating points out."""

from __future__ import annotations

import itertools
import math

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.video_budget import (
    CameraSpec,
    LinkReport,
    OperatingPoint,
    VideoBudget,
    VideoBudgetConfig,
    ladder,
    split_budget,
)

VGA = (640, 480)
CAMERAS = [CameraSpec(name, *VGA, 30.0) for name in ("front", "rear", "left")]
TICK_MS = 500.0
LOSSY = LinkReport(fraction_lost=0.3)
CLEAN = LinkReport(fraction_lost=0.0, rtt_ms=40.0)


def sizes(points: dict[str, OperatingPoint]) -> dict[str, tuple[int, int, float]]:
    return {n: (p.width_px, p.height_px, p.fps) for n, p in points.items()}


class Run:
    """A budget driven tick by tick on its own clock."""

    def __init__(self, budget: VideoBudget, now_ms: float = 0.0) -> None:
        self.budget = budget
        self.now_ms = now_ms

    def tick(self, report: LinkReport, ticks: int = 1) -> list[dict[str, OperatingPoint]]:
        out = []
        for _ in range(ticks):
            self.now_ms += TICK_MS
            out.append(self.budget.update(self.now_ms, report))
        return out


def test_ladder_sheds_resolution_at_full_rate_before_frame_rate() -> None:
    rungs = ladder(CameraSpec("front", *VGA, 30.0), 0.06)
    assert [(r.width_px, r.height_px, r.fps) for r in rungs] == [
        (640, 480, 30.0),
        (480, 360, 30.0),
        (320, 240, 30.0),
        (320, 240, 20.0),
        (320, 240, 15.0),
        (320, 240, 10.0),
    ]
    assert all(a.cost_bps > b.cost_bps for a, b in itertools.pairwise(rungs))
    hd = ladder(CameraSpec("front", 1280, 720, 30.0), 0.06)
    assert [(r.width_px, r.height_px) for r in hd[:4]] == [
        (1280, 720),
        (960, 540),
        (640, 360),
        (426, 240),
    ]
    assert all(r.width_px % 2 == 0 and r.height_px % 2 == 0 for r in hd)


def test_split_gives_the_primary_most_and_the_others_equal_shares() -> None:
    shares = split_budget(
        3_000_000,
        ["front", "rear", "left"],
        "rear",
        primary_share=0.65,
        floor_bps=100_000,
        max_bps=3_000_000,
    )
    assert shares["rear"] == 1_950_000
    assert shares["front"] == shares["left"] == 525_000


def test_split_keeps_every_camera_at_its_floor_on_a_thin_link() -> None:
    shares = split_budget(
        200_000, ["a", "b", "c"], "a", primary_share=0.65, floor_bps=100_000, max_bps=1_000_000
    )
    assert shares == {"a": 100_000, "b": 100_000, "c": 100_000}


def test_split_gives_what_the_primary_cannot_use_to_the_others() -> None:
    shares = split_budget(
        5_000_000, ["a", "b"], "a", primary_share=0.65, floor_bps=100_000, max_bps=3_000_000
    )
    assert shares == {"a": 3_000_000, "b": 2_000_000}
    single = split_budget(
        5_000_000, ["a"], "a", primary_share=0.65, floor_bps=100_000, max_bps=3_000_000
    )
    assert single == {"a": 3_000_000}


def test_start_points_favour_the_primary() -> None:
    budget = VideoBudget(CAMERAS)
    points = budget.points
    assert budget.primary == "front"
    assert sizes(points)["front"] == (640, 480, 30.0)
    assert points["front"].bitrate_bps > 2 * points["rear"].bitrate_bps
    assert points["rear"].height_px < 480
    assert sum(p.bitrate_bps for p in points.values()) <= budget.config.start_bps


def test_loss_pushes_resolution_down_first_and_frame_rate_only_at_the_bottom() -> None:
    run = Run(VideoBudget(CAMERAS))
    history = run.tick(LOSSY, ticks=30)
    for camera in ("front", "rear"):
        trail = [(p[camera].height_px, p[camera].fps) for p in history]
        heights = [h for h, _ in trail]
        assert heights == sorted(heights, reverse=True), trail  # never back up under loss
        assert all(fps == 30.0 or h == 240 for h, fps in trail), trail
        assert trail[-1][1] < 30.0, trail  # it did reach the frame-rate rungs
    assert run.budget.available_bps == run.budget.config.min_total_bps


def test_loss_cuts_fast_and_the_first_cut_is_immediate() -> None:
    run = Run(VideoBudget(CAMERAS))
    before = run.budget.available_bps
    run.tick(LinkReport(fraction_lost=0.2))
    assert run.budget.available_bps == pytest.approx(before * 0.9)
    run.tick(LinkReport(fraction_lost=0.2), ticks=5)
    assert run.budget.available_bps == pytest.approx(before * 0.9**6)


def test_cuts_are_rate_limited() -> None:
    budget = VideoBudget(CAMERAS)
    before = budget.available_bps
    budget.update(100.0, LOSSY)
    budget.update(200.0, LOSSY)  # within decrease_interval_ms of the first cut
    assert budget.cuts == 1
    assert budget.available_bps == pytest.approx(before * 0.85)
    budget.update(450.0, LOSSY)
    assert budget.cuts == 2


def test_moderate_loss_holds_the_budget() -> None:
    run = Run(VideoBudget(CAMERAS))
    before = run.budget.available_bps
    run.tick(LinkReport(fraction_lost=0.05), ticks=20)
    assert run.budget.available_bps == before


def test_rtt_growth_over_the_recent_minimum_cuts() -> None:
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(rtt_ms=40.0), ticks=4)
    steady = run.budget.available_bps
    run.tick(LinkReport(rtt_ms=120.0))  # +80 ms: within rtt_rise_ms
    assert run.budget.cuts == 0
    run.tick(LinkReport(rtt_ms=200.0))
    assert run.budget.cuts == 1
    assert run.budget.available_bps == pytest.approx(steady * 0.85)


def test_a_standing_queue_on_the_control_channel_cuts_and_holds() -> None:
    cfg = VideoBudgetConfig()
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(fraction_lost=0.0, path_rtt_ms=200.0), ticks=4)
    steady = run.budget.available_bps
    # Over the minimum but under queue_low_ms: the budget grows.
    run.tick(LinkReport(fraction_lost=0.0, path_rtt_ms=200.0 + cfg.queue_low_ms - 5.0))
    assert run.budget.available_bps > steady
    grown = run.budget.available_bps
    # Between queue_low_ms and queue_high_ms: held, not cut.
    run.tick(LinkReport(fraction_lost=0.0, path_rtt_ms=200.0 + cfg.queue_low_ms + 5.0))
    assert (run.budget.available_bps, run.budget.cuts) == (grown, 0)
    run.tick(LinkReport(fraction_lost=0.0, path_rtt_ms=200.0 + cfg.queue_high_ms + 5.0))
    assert run.budget.cuts == 1
    assert run.budget.available_bps == pytest.approx(grown * cfg.rtt_cut)
    assert run.budget.queue_ms == pytest.approx(cfg.queue_high_ms + 5.0)
    assert run.budget.path_floor_ms == 200.0


def test_a_standing_queue_keeps_cutting_at_the_decrease_interval() -> None:
    # The next report's least round trip may have been asked before the cut; cutting on it
    # anyway is what kept the bad-cell uplink queue from overflowing (README).
    cfg = VideoBudgetConfig()
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(path_rtt_ms=200.0), ticks=4)
    run.tick(LinkReport(path_rtt_ms=200.0 + cfg.queue_high_ms + 50.0), ticks=2)
    assert run.budget.cuts == 2


def test_a_tick_without_a_round_trip_holds_the_budget() -> None:
    # Replies go missing in fades and behind a queue: silence is not good news.
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(fraction_lost=0.0, path_rtt_ms=200.0), ticks=4)
    held = run.budget.available_bps
    run.tick(LinkReport(fraction_lost=0.0), ticks=3)
    assert (run.budget.available_bps, run.budget.cuts) == (held, 0)
    run.tick(LinkReport(fraction_lost=0.0, path_rtt_ms=200.0))
    assert run.budget.available_bps > held


def test_the_queue_is_measured_against_the_control_channels_own_minimum() -> None:
    # RTCP's round trip and the control channel's differ by what each path adds; the
    # queue is the control channel's over its own minimum, not over RTCP's.
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(fraction_lost=0.0, rtt_ms=40.0, path_rtt_ms=300.0), ticks=4)
    assert run.budget.queue_ms == 0.0
    assert run.budget.cuts == 0


def test_the_queue_baseline_forgets_after_its_window() -> None:
    cfg = VideoBudgetConfig()
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(path_rtt_ms=100.0))
    # The path got longer (a handover): after rtt_window_ms its new delay is no queue.
    run.tick(LinkReport(path_rtt_ms=300.0), ticks=int(cfg.rtt_window_ms / TICK_MS) + 1)
    assert run.budget.queue_ms == 0.0


def test_receiver_estimate_is_followed_down_at_once_and_caps_growth() -> None:
    run = Run(VideoBudget(CAMERAS))
    run.tick(LinkReport(estimate_bps=900_000))
    assert run.budget.available_bps == 900_000
    run.tick(LinkReport(estimate_bps=900_000, fraction_lost=0.0), ticks=40)
    assert run.budget.available_bps == 900_000


def test_recovery_waits_then_grows_slowly() -> None:
    cfg = VideoBudgetConfig()
    run = Run(VideoBudget(CAMERAS))
    run.tick(LOSSY, ticks=10)
    low = run.budget.available_bps
    hold_ticks = int(cfg.recovery_hold_ms / TICK_MS)
    run.tick(CLEAN, ticks=hold_ticks - 1)
    assert run.budget.available_bps == low
    run.tick(CLEAN, ticks=1 + 20)  # then 10.5 s of growth at recovery_per_s
    grown = run.budget.available_bps
    assert grown == pytest.approx(low * (1 + cfg.recovery_per_s) ** 10.5)


def test_recovery_steps_up_one_rung_at_a_time_after_a_hold() -> None:
    cfg = VideoBudgetConfig(recovery_per_s=2.0)  # fast budget growth: the ladder must lag
    run = Run(VideoBudget(CAMERAS, config=cfg))
    run.tick(LOSSY, ticks=16)
    assert run.budget.points["front"].fps < 30.0
    trail = [p["front"] for p in run.tick(CLEAN, ticks=80)]
    changes = [
        (i, (a.height_px, a.fps), (b.height_px, b.fps))
        for i, (a, b) in enumerate(itertools.pairwise(trail))
        if (a.height_px, a.fps) != (b.height_px, b.fps)
    ]
    assert changes, trail
    rungs = ladder(CAMERAS[0], cfg.bits_per_pixel)
    order = [(r.height_px, r.fps) for r in rungs]
    for _, before, after in changes:
        assert order.index(after) == order.index(before) - 1  # one rung up, never down
    gaps_ms = [(b - a) * TICK_MS for (a, _, _), (b, _, _) in itertools.pairwise(changes)]
    assert all(gap >= cfg.up_hold_ms for gap in gaps_ms), gaps_ms
    assert (trail[-1].height_px, trail[-1].fps) == (480, 30.0)


def wobble_switches(**tuning: float) -> list[int]:
    """Heights of one camera whose budget swings between 0.95 and 1.2 x the 480p30 cost."""
    spec = CameraSpec("front", *VGA, 30.0)
    cost = ladder(spec, VideoBudgetConfig().bits_per_pixel)[0].cost_bps
    # Growth this fast makes the budget equal to the estimate at every tick.
    cfg = VideoBudgetConfig(start_bps=cost, recovery_per_s=100.0, **tuning)  # type: ignore[arg-type]
    run = Run(VideoBudget([spec], config=cfg))
    heights = []
    for i in range(40):
        estimate = round(cost * (1.2 if i % 2 else 0.95))
        heights.append(run.tick(LinkReport(estimate_bps=estimate))[0]["front"].height_px)
    return heights


def test_budget_wobbling_around_a_rung_does_not_oscillate() -> None:
    heights = wobble_switches()
    assert heights[0] == 360
    assert set(heights) == {360}, heights
    # The same wobble without the hysteresis flips every tick (the test can fail).
    loose = wobble_switches(up_margin=1.0, up_hold_ms=0.0, up_after_down_ms=0.0)
    assert sum(1 for a, b in itertools.pairwise(loose) if a != b) > 30, loose


def test_selecting_a_primary_moves_the_bitrate_at_once() -> None:
    run = Run(VideoBudget(CAMERAS))
    run.tick(CLEAN, ticks=4)
    before = run.budget.points
    after = run.budget.set_primary("rear", run.now_ms)
    assert run.budget.primary == "rear"
    assert after["rear"].bitrate_bps > before["rear"].bitrate_bps
    assert after["front"].bitrate_bps < before["front"].bitrate_bps
    assert after["rear"].height_px == 480  # jumped up without the usual hold
    assert after["front"].height_px < 480  # stepped down at once
    assert after["rear"].bitrate_bps > 2 * after["front"].bitrate_bps


def test_bad_figures_count_as_no_figures() -> None:
    bad, blank = Run(VideoBudget(CAMERAS)), Run(VideoBudget(CAMERAS))
    for report in (
        LinkReport(fraction_lost=math.nan, rtt_ms=math.inf),
        LinkReport(rtt_ms=-5.0, path_rtt_ms=math.nan),
    ):
        bad.tick(report)
        blank.tick(LinkReport(fraction_lost=0.0))
    assert bad.budget.cuts == 0
    assert bad.budget.rejected == 4
    assert bad.budget.available_bps == blank.budget.available_bps
    # The bad path RTT never entered the window: a standing queue still shows and cuts.
    bad.tick(LinkReport(path_rtt_ms=200.0))
    bad.tick(LinkReport(path_rtt_ms=350.0))
    assert bad.budget.cuts == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"primary_share": 0.0}, "primary_share"),
        ({"loss_low": 0.5, "loss_high": 0.1}, "loss_low"),
        ({"rtt_cut": 1.0}, "rtt_cut"),
        ({"queue_low_ms": 200.0}, "queue_low_ms"),
        ({"camera_floor_bps": 0}, "camera_floor_bps"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        VideoBudget(CAMERAS, config=VideoBudgetConfig(**kwargs))  # type: ignore[arg-type]


def test_unknown_or_duplicate_cameras_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown camera 'roof'"):
        VideoBudget(CAMERAS, primary="roof")
    budget = VideoBudget(CAMERAS)
    with pytest.raises(ConfigError, match="unknown camera 'roof'"):
        budget.set_primary("roof", 0.0)
    assert budget.primary == "front"
    with pytest.raises(ConfigError, match="duplicate"):
        VideoBudget([CAMERAS[0], CAMERAS[0]])
    with pytest.raises(ConfigError, match="no cameras"):
        VideoBudget([])
