"""The vehicle's control loop is woken when an input makes a watchdog due sooner."""

from __future__ import annotations

from test_service_failure import CONFIG

from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.command_gate import CommandArrival
from teledrive.vehicle.service import VehicleService


class SteppedClock:
    """A monotonic clock (seconds) that moves only when told."""

    def __init__(self) -> None:
        self.t_s = 1000.0

    def __call__(self) -> float:
        return self.t_s


async def test_a_video_report_that_brings_the_freeze_deadline_sooner_wakes_the_loop() -> None:
    clock = SteppedClock()
    service = VehicleService(parse_config(CONFIG, VehicleConfig), clock=clock)
    sup = service.supervisor
    for _ in range(60):  # 1.2 s of a healthy link, then a takeover
        clock.t_s += 0.02
        now_ms = service.now_ms()
        sup.on_link_heartbeat(now_ms)
        sup.on_latency(now_ms, 10.0, 20.0)
        sup.on_video_freshness(now_ms, 30.0)
        sup.on_autonomy_status(now_ms, AutonomyOutput(AutonomyStatus.OK, 0.0, 0.0))
        sup.tick(now_ms)
    now_ms = service.now_ms()
    command = CommandArrival(
        seq=1,
        sent_ms=now_ms,
        offset_ms=0.0,
        ttl_ms=500.0,
        speed_mps=0.0,
        steer_rad=0.0,
        estop=False,
        received_ms=now_ms,
    )
    assert sup.on_command(command).accepted
    assert sup.on_takeover_request(now_ms).granted
    sup.tick(now_ms)
    service._deadline_ms = sup.next_deadline_ms()  # what the control loop now waits for
    service._kick.clear()
    # The same freshness: its freeze deadline is later than the command's, nothing to do early.
    service._on_data(m.VideoFreshness(t_ms=0.0, age_ms=30.0))
    assert not service._kick.is_set()
    # The picture is 250 ms old already: frozen in 50 ms, before the deadline waited for.
    service._on_data(m.VideoFreshness(t_ms=0.0, age_ms=250.0))
    assert service._kick.is_set()
