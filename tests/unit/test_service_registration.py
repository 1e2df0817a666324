"""What the vehicle does when it registers with the hub: re-dials end, offers settle."""

from __future__ import annotations

from test_service_failure import CONFIG
from test_service_wake import SteppedClock

from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.redial import OPERATOR_LOST_MS
from teledrive.vehicle.service import VehicleService
from teledrive.vehicle.session import Session


async def test_a_registration_after_the_operator_was_lost_ends_its_redials() -> None:
    # The signaling client's own reconnect got through after a cut: a re-dial starting now
    # would register again (a new dial) and replace it at the hub, ending the session the
    # waiting operator may be opening on it.
    clock = SteppedClock()
    service = VehicleService(parse_config(CONFIG, VehicleConfig), clock=clock)
    lost, heard = Session("lost", "op"), Session("heard", "op")
    try:
        for session, silent_ms in ((lost, OPERATOR_LOST_MS + 50.0), (heard, 100.0)):
            session.last_data_ms = service.now_ms() - silent_ms
            service.session = session
            await service._on_registered()
        assert lost.redialled
        assert not heard.redialled  # the operator is still there: nothing to end
        # An attempt the re-dial loop started before the registration now dials nothing.
        service.session = lost
        assert await service._redial(5.0)
        assert service.signaling.stats.connects == 0
    finally:
        service.session = None
        for session in (lost, heard):
            await session.pc.close()
