"""The vehicle's control loop is woken when an input makes a watchdog due sooner."""

from __future__ import annotations

import pytest
from test_service_failure import CONFIG

from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.command_gate import CommandArrival
from teledrive.vehicle.service import VehicleService
from teledrive.vehicle.supervisor import Mode


class SteppedClock:
    """A monotonic clock (seconds) that moves only when told."""

    def __init__(self) -> None:
        self.t_s = 1000.0

    def __call__(self) -> float:
        return self.t_s


def _healthy_step(service: VehicleService, clock: SteppedClock, seq: int) -> None:
    """20 ms of a healthy link with a fresh command from the operator, then a tick."""
    clock.t_s += 0.02
    now_ms = service.now_ms()
    sup = service.supervisor
    sup.on_link_heartbeat(now_ms)
    sup.on_video_freshness(now_ms, 30.0)
    sup.on_autonomy_status(now_ms, AutonomyOutput(AutonomyStatus.OK, 0.0, 0.0))
    command = CommandArrival(
        seq=seq,
        sent_ms=now_ms,
        offset_ms=0.0,
        ttl_ms=500.0,
        speed_mps=0.0,
        steer_rad=0.0,
        estop=False,
        received_ms=now_ms,
    )
    assert sup.on_command(command).accepted
    sup.tick(now_ms)


def _driving_service() -> tuple[SteppedClock, VehicleService]:
    """A service whose supervisor is in TELEOP on a healthy link, loop waiting for a deadline."""
    clock = SteppedClock()
    service = VehicleService(parse_config(CONFIG, VehicleConfig), clock=clock)
    sup = service.supervisor
    for seq in range(1, 61):  # 1.2 s of a healthy link, then a takeover
        sup.on_latency(service.now_ms(), 10.0, 20.0)
        _healthy_step(service, clock, seq)
    assert sup.on_takeover_request(service.now_ms()).granted
    _healthy_step(service, clock, 61)
    assert sup.mode is Mode.TELEOP
    _wait_for_deadline(service)
    return clock, service


def _wait_for_deadline(service: VehicleService) -> None:
    """What the control loop does before it waits: note the deadline, clear the kick."""
    service._deadline_ms = service.supervisor.next_deadline_ms()
    service._kick.clear()


async def test_a_video_report_that_brings_the_freeze_deadline_sooner_wakes_the_loop() -> None:
    _, service = _driving_service()
    # The same freshness: its freeze deadline is later than the command's, nothing to do early.
    service._on_data(m.VideoFreshness(t_ms=0.0, age_ms=30.0))
    assert not service._kick.is_set()
    # The picture is 250 ms old already: frozen in 50 ms, before the deadline waited for.
    service._on_data(m.VideoFreshness(t_ms=0.0, age_ms=250.0))
    assert service._kick.is_set()


@pytest.mark.parametrize(("rtt_ms", "wakes"), [(40.0, False), (290.0, False), (310.0, True)])
async def test_a_latency_report_at_the_degrade_bound_wakes_the_loop_at_once(
    rtt_ms: float, wakes: bool
) -> None:
    clock, service = _driving_service()
    sup = service.supervisor
    assert sup.config.degrade_age_ms == 150.0  # one-way = rtt / 2: 20, 145, 155 ms
    request_id, t1 = service.clock_sync.make_request(service.now_ms())
    # Commands keep coming while the reply is on its way: only the latency can make it due.
    seq = 100
    while (service.now_ms() - t1) < rtt_ms - 20.0:
        seq += 1
        _healthy_step(service, clock, seq)
    clock.t_s += (rtt_ms - (service.now_ms() - t1)) / 1000.0
    _wait_for_deadline(service)
    service._on_data(m.TimeResponse(id=request_id, t1=t1, t2=t1, t3=t1))
    assert service.clock_sync.rtt_ms == pytest.approx(rtt_ms)
    assert service._kick.is_set() is wakes
    # The step the kick wakes is the one that degrades.
    sup.tick(service.now_ms())
    assert sup.mode is (Mode.DEGRADED if wakes else Mode.TELEOP)
