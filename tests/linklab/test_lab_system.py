"""The whole system over the emulated 1200 km link (wired-1200km): video, commands, a cut
while driving, a hub restart. Needs root; skips otherwise and says why.

One lab for the module (starting hub, vehicle and operator costs seconds); each test waits for
the state it needs (the operator driving) before acting, and asserts bounds with margins that
still fail when a bound is broken. Figures (g2g, latency percentiles) belong to
``benchmarks/link_lab.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_checks import FREEZE_MS, cut_and_reconnect, video_flows

from teledrive.shared.linklab import unavailable_reason
from teledrive.shared.linklab.system import VEHICLE_ID, LabSystem, now_ms

_REASON = unavailable_reason()
pytestmark = [
    pytest.mark.linklab,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=f"link lab unavailable: {_REASON}"),
]

PREFIX = "tdtest"  # never touches a developer's `tdlab` labs
ONE_WAY_MS = 12.5
JITTER_MS = 2.0
FALLBACK_BOUND_MS = 250.0  # [safety] command_timeout_ms
TICK_MS = 20.0  # the vehicle's control tick: the watchdog is evaluated once per tick
LOG_SLACK_MS = 10.0  # the vehicle's log line reaching this process
DEGRADE_MS = 150.0  # [safety] degrade_after_ms: a command this old is no longer "within bound"
CUT_S = 3.0


@pytest.fixture(scope="module")
def system() -> Iterator[LabSystem]:
    with LabSystem("wired-1200km", seed=7, prefix=PREFIX) as lab:
        lab.wait_driving(timeout_s=40.0)
        yield lab


def test_video_flows_and_commands_arrive_within_bound(system: LabSystem) -> None:
    start_ms, _end_ms = video_flows(system, 4.0)
    summary = system.summary()
    p50, p95 = summary["command_latency_ms_p50"], summary["command_latency_ms_p95"]
    # The commands really cross the emulated link (at least the one-way delay less jitter)...
    assert p50 is not None, summary
    assert p50 >= ONE_WAY_MS - JITTER_MS, summary
    # ...and arrive well within the bound at which the vehicle would start degrading.
    assert p95 is not None, summary
    assert p95 < DEGRADE_MS, summary
    assert summary["stale_commands_applied"] == 0, summary
    assert system.mode_changes(start_ms) == [], "the vehicle left TELEOP on a healthy link"


def test_cut_while_driving_falls_back_then_reconnects_without_stale_commands(
    system: LabSystem,
) -> None:
    cut = cut_and_reconnect(system, CUT_S)
    fallback_ms = system.fallback_ms(cut)
    assert fallback_ms is not None, system.mode_changes(cut.start_ms)
    assert fallback_ms <= FALLBACK_BOUND_MS + TICK_MS + LOG_SLACK_MS, fallback_ms
    # The vehicle re-dialled with the next session's offer made ahead, and the hub used it.
    assert system.log_lines("hub", cut.start_ms, containing=("with the offer",))
    # The operator takes over again and drives; nothing from before the return is applied.
    system.wait_driving(timeout_s=15.0, since_ms=cut.end_ms)
    assert system.commands_applied_from_before(cut) == 0
    assert system.summary()["stale_commands_applied"] == 0


def test_hub_restart_then_vehicle_and_operator_come_back(system: LabSystem) -> None:
    system.wait_driving(since_ms=now_ms())
    restarted_ms = system.restart_hub()
    expected = {("vehicle", VEHICLE_ID), ("operator", "lab-operator")}
    system.wait_for(
        lambda: expected <= set(system.registrations(restarted_ms)),
        15.0,
        "vehicle and operator registered with the new hub",
    )
    # The peer connection never needed the hub: video kept flowing.
    assert system.longest_freeze_ms(restarted_ms) <= FREEZE_MS
    # A session comes back through the new hub: cut the link, a new one is negotiated.
    cut = cut_and_reconnect(system, 2.0)
    system.wait_driving(timeout_s=15.0, since_ms=cut.end_ms)
    assert system.commands_applied_from_before(cut) == 0
