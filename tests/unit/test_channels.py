"""The data channels between two real aiortc peers: typed, strict, and never fatal."""

from __future__ import annotations

import asyncio
import os

from aiortc import RTCConfiguration, RTCPeerConnection

from teledrive.shared import channels as ch
from teledrive.shared import messages as m

WAIT_S = 10.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))


async def test_a_failing_handler_costs_one_message_not_the_session() -> None:
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    operator = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: asyncio.Queue[m.DataMessage] = asyncio.Queue()

    def handler(message: m.DataMessage) -> None:
        if isinstance(message, m.Takeover):
            raise RuntimeError("a bug in a handler")
        got.put_nowait(message)

    try:
        vehicle_channels = ch.open_channels(vehicle, handler)
        await vehicle.setLocalDescription(await vehicle.createOffer())
        await operator.setRemoteDescription(vehicle.localDescription)
        operator_channels = ch.open_channels(operator, lambda _m: None)
        opened = asyncio.Event()
        operator_channels.events.raw.on("open", opened.set)
        await operator.setLocalDescription(await operator.createAnswer())
        await vehicle.setRemoteDescription(operator.localDescription)
        await asyncio.wait_for(opened.wait(), WAIT_S)

        assert operator_channels.events.send(m.Takeover())
        assert operator_channels.events.send(m.Estop(reason="after the bug"))
        after = await asyncio.wait_for(got.get(), WAIT_S)
        assert after == m.Estop(reason="after the bug")
        assert vehicle_channels.events.handler_errors == 1
        assert vehicle.connectionState == "connected"
        # Other planes still work too.
        assert operator_channels.telemetry.send(m.TimeRequest(id=1, t1=1.0))
        assert await asyncio.wait_for(got.get(), WAIT_S) == m.TimeRequest(id=1, t1=1.0)
    finally:
        await operator.close()
        await vehicle.close()
