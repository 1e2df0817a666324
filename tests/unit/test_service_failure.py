"""A vehicle whose control loop dies stops as a whole, motor disarmed first; a hub link that
dies under a session request costs only that session."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve

from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.shared.messages import decode_signal, encode_text
from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.mcu_codec import FaultBit, State
from teledrive.vehicle.mcu_sim import PtyMcu
from teledrive.vehicle.motor_link import MotorLink
from teledrive.vehicle.service import VehicleService

CONFIG = """
[vehicle]
id = "doomed"
hub_url = "ws://127.0.0.1:9"

[motor]
url = "sim://"

[[cameras]]
name = "front"
width = 320
height = 240
fps = 10
"""


class CrashingAutonomy:
    """Drives slowly until told to crash, as a buggy autonomy stack might."""

    def __init__(self) -> None:
        self.crash = False

    def step(self, now_ms: float) -> AutonomyOutput:
        if self.crash:
            raise RuntimeError("autonomy crashed")
        return AutonomyOutput(AutonomyStatus.OK, 0.3, 0.0)


async def test_a_dying_control_loop_stops_the_service_and_disarms_the_motor() -> None:
    config = parse_config(CONFIG, VehicleConfig)
    autonomy = CrashingAutonomy()
    with PtyMcu() as mcu:
        service = VehicleService(config, motor_link=MotorLink(mcu.port_path), autonomy=autonomy)
        run = asyncio.create_task(service.run())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not service.supervisor.on_release_to_autonomy(service.now_ms()).granted:
            assert loop.time() < deadline, "release to autonomy never granted"
            await asyncio.sleep(0.02)
        armed = await asyncio.to_thread(mcu.wait_for, lambda snap: snap.state is State.ARMED, 10.0)
        assert armed, mcu.snapshot()
        autonomy.crash = True
        await asyncio.wait_for(run, timeout=20.0)
        assert service.failed
        # Told DISARM on the way out, not left to its watchdog (no LINK_TIMEOUT).
        assert mcu.wait_for(lambda snap: snap.state is State.DISARMED, timeout_s=2.0)
        assert not mcu.snapshot().faults & FaultBit.LINK_TIMEOUT


async def test_an_offer_that_cannot_be_sent_ends_the_session_quietly() -> None:
    # A hub connection that dies under a session request (a cut link delivered the request
    # late, then gave up): the vehicle drops that session, counts no callback error, and
    # registers again on a new connection.
    registers: asyncio.Queue[m.Register] = asyncio.Queue()
    connections = 0

    async def dying_hub(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        register = decode_signal(await ws.recv(), channel="test hub")
        assert isinstance(register, m.Register)
        await registers.put(register)
        if connections > 1:
            await ws.wait_closed()
            return
        await ws.send(encode_text(m.Registered(id=register.id, heartbeat_ms=1000.0)))
        await ws.send(
            encode_text(m.Connect(vehicle_id=register.id, session="s1", operator_id="op"))
        )
        ws.transport.close()  # no closing handshake: the TCP connection just ends

    async with serve(dying_hub, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = parse_config(CONFIG.replace("127.0.0.1:9", f"127.0.0.1:{port}"), VehicleConfig)
        with PtyMcu() as mcu:
            service = VehicleService(config, motor_link=MotorLink(mcu.port_path))
            run = asyncio.create_task(service.run())
            try:
                await asyncio.wait_for(registers.get(), 10.0)
                await asyncio.wait_for(registers.get(), 10.0)  # back, on a new connection
                assert service.session is None
                assert service.signaling.stats.callback_errors == 0
                assert not run.done()
            finally:
                service.stop()
                await asyncio.wait_for(run, 10.0)
