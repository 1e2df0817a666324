"""A vehicle reports its mode to the hub, so every operator's fleet view can see it."""

from __future__ import annotations

import asyncio

import pytest
from safety_rig import LONG_ROUTE, running_vehicle, wait_until

from teledrive.shared import messages as m
from teledrive.shared.signaling import SignalingClient

pytestmark = [pytest.mark.e2e]


async def test_vehicle_mode_reaches_a_watching_operator_through_the_hub(hub_url: str) -> None:
    seen: list[m.VehicleInfo] = []

    def keep(message: m.SignalMessage) -> None:
        if isinstance(message, m.Presence):
            seen.append(message.vehicle)

    watcher = SignalingClient(hub_url, m.Register(role="operator", id="watcher"), on_message=keep)
    task = asyncio.create_task(watcher.run())
    try:
        await watcher.wait_registered(10.0)
        async with running_vehicle(hub_url, LONG_ROUTE) as vehicle:
            await wait_until(
                lambda: any(i.id == vehicle.service.config.vehicle.id and i.mode for i in seen),
                10.0,
                "the vehicle's mode in presence",
            )
            info = next(i for i in seen if i.mode)
            assert info.mode == "STANDBY"
            assert info.reason
    finally:
        await watcher.close()
        task.cancel()
