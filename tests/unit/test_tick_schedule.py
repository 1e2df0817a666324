"""The control loop's schedule: a 20 ms grid, kicks, and the supervisor's deadlines."""

from __future__ import annotations

import pytest
from test_supervisor import AUTONOMY_OK, Drive

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.supervisor import OPERATOR_MODES
from teledrive.vehicle.tick_schedule import DEADLINE_SLACK_S, TICK_S, TickSchedule

POST_STEP_S = 0.0003  # what the loop does after a step (events, telemetry) before it asks again


def test_without_deadlines_it_is_the_grid() -> None:
    schedule = TickSchedule(10.0)
    assert schedule.wait_s(10.0, None) == pytest.approx(TICK_S)
    assert schedule.after_step(10.0 + TICK_S, kicked=False)
    assert schedule.next_tick_s == pytest.approx(10.0 + 2 * TICK_S)
    # A kick before the tick: a step, not the tick (the grid does not move).
    assert schedule.wait_s(10.025, None) == pytest.approx(0.015)
    assert not schedule.after_step(10.026, kicked=True)
    assert schedule.next_tick_s == pytest.approx(10.0 + 2 * TICK_S)
    # Late (a busy loop): the grid restarts from now rather than catching up in a burst.
    assert schedule.wait_s(10.5, None) == 0.0
    assert schedule.after_step(10.5, kicked=False)
    assert schedule.next_tick_s == pytest.approx(10.5)


def test_a_deadline_before_the_tick_is_waited_for_and_is_not_the_tick() -> None:
    schedule = TickSchedule(0.0)
    assert schedule.wait_s(0.0, 0.007) == pytest.approx(0.007 + DEADLINE_SLACK_S)
    assert not schedule.after_step(0.0076, kicked=False)  # the deadline's step
    assert schedule.wait_s(0.0076, None) == pytest.approx(TICK_S - 0.0076)
    assert schedule.wait_s(0.0, 0.5) == pytest.approx(TICK_S)  # a later one waits its turn
    assert schedule.wait_s(0.01, 0.002) == 0.0  # one already due: step at once
    with pytest.raises(ConfigError, match="tick schedule"):
        TickSchedule(0.0, tick_s=0.0)


@pytest.mark.parametrize("phase_ms", [p / 2 for p in range(40)])
def test_a_stale_command_is_seen_when_it_turns_stale(phase_ms: float) -> None:
    """The loop's schedule with the real supervisor on a simulated clock, every grid phase."""
    drive = Drive()
    drive.teleop()
    sup, cfg = drive.sup, drive.sup.config
    start_s = drive.now_ms / 1000.0
    schedule = TickSchedule(start_s - phase_ms / 1000.0)
    arrivals = [start_s + 0.007 + n * 0.02 for n in range(25)]  # then the link is lost
    last_sent_ms: float | None = None
    now_s, ticks, steps, fallback_age_ms = start_s, 0, 0, None
    end_s = arrivals[-1] + 0.6
    while now_s < end_s:
        deadline = sup.next_deadline_ms()
        wake_s = now_s + schedule.wait_s(now_s, None if deadline is None else deadline / 1000.0)
        kicked = bool(arrivals) and arrivals[0] <= wake_s
        now_s = arrivals.pop(0) if kicked else wake_s
        now_ms = now_s * 1000.0
        if kicked:
            drive.now_ms = now_ms
            sup.on_command(drive.command())
            sup.on_link_heartbeat(now_ms)
            sup.on_video_freshness(now_ms, drive.video_age_ms)
            last_sent_ms = drive.sent_vehicle_ms[drive.seq]
        sup.on_autonomy_status(now_ms, AUTONOMY_OK)
        out = sup.tick(now_ms)
        steps += 1
        if fallback_age_ms is None and out.mode not in OPERATOR_MODES:
            assert last_sent_ms is not None
            fallback_age_ms = now_ms - last_sent_ms
        now_s += POST_STEP_S
        ticks += schedule.after_step(now_s, kicked=kicked)
    assert fallback_age_ms is not None
    # At the deadline plus the slack (and the post-step work of the step before), not up to a
    # 20 ms tick later as on the grid alone.
    assert fallback_age_ms <= cfg.fallback_age_ms + 1000.0 * (DEADLINE_SLACK_S + POST_STEP_S)
    duration_s = now_s - start_s
    assert abs(ticks - duration_s / TICK_S) <= 2  # the per-tick work: once per period
    assert steps <= ticks + 25 + 6  # plus the kicks and a few deadlines, no spinning
