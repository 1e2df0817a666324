"""The vehicle hands each clock-sync round trip to the video budget once (its queue signal)."""

from __future__ import annotations

import pytest
from test_service_failure import CONFIG
from test_service_wake import SteppedClock

from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.service import VehicleService


def test_each_accepted_sync_reply_is_handed_over_once() -> None:
    clock = SteppedClock()
    service = VehicleService(parse_config(CONFIG, VehicleConfig), clock=clock)
    request_id, t1 = service.clock_sync.make_request(service.now_ms())
    clock.t_s += 0.25
    service._on_data(m.TimeResponse(id=request_id, t1=t1, t2=t1, t3=t1))
    service._on_data(m.TimeResponse(id=request_id, t1=t1, t2=t1, t3=t1))  # a repeat: rejected
    assert service._take_path_rtts_ms() == [pytest.approx(250.0)]
    assert service._take_path_rtts_ms() == []
