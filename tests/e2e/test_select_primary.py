"""The operator picks the primary camera; the vehicle moves the bitrate and reports it.

Real parts: an in-process hub on loopback websockets, the vehicle service (two synthetic
cameras, the simulated motor ``sim://``) and an :class:`OperatorClient`, all in this event
loop, talking through real aiortc peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable

import pytest

from teledrive.operator.client import OperatorClient
from teledrive.operator.hub import Hub
from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.service import VehicleService

pytestmark = [pytest.mark.e2e]

SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
VEHICLE_ID = "budget-van"
WAIT_S = 20.0 * SCALE


class Inbox:
    """Every message the operator got, and a way to wait for one that matches."""

    def __init__(self) -> None:
        self.messages: list[m.Message] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: m.Message) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, match: Callable[[m.Message], bool], what: str) -> m.Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        seen = 0
        while True:
            for message in self.messages[seen:]:
                if match(message):
                    return message
            seen = len(self.messages)
            self._arrived.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {WAIT_S:.0f} s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)


def vehicle_config(hub_url: str) -> VehicleConfig:
    cameras = "".join(
        f'[[cameras]]\nname = "{name}"\nsource = "synthetic"\nwidth = 640\nheight = 480\n'
        "fps = 30\n\n"
        for name in ("front", "rear")
    )
    return parse_config(
        f'[vehicle]\nid = "{VEHICLE_ID}"\nhub_url = "{hub_url}"\n\n[motor]\nurl = "sim://"\n\n'
        + cameras,
        VehicleConfig,
        source="test vehicle.toml",
    )


@pytest.fixture
async def operator() -> AsyncIterator[tuple[OperatorClient, Inbox, VehicleService]]:
    async with Hub() as hub:
        await hub.serve("127.0.0.1", 0)
        hub_url = f"ws://127.0.0.1:{hub.bound_port}"
        service = VehicleService(vehicle_config(hub_url))
        vehicle_task = asyncio.create_task(service.run())
        inbox = Inbox()
        client = OperatorClient(hub_url, VEHICLE_ID, operator_id="budget-op", on_message=inbox)
        client.want_control = False
        client_task = asyncio.create_task(client.run())
        try:
            yield client, inbox, service
        finally:
            client_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client_task
            service.stop()
            await vehicle_task


def is_status(primary: str) -> Callable[[m.Message], bool]:
    return lambda msg: isinstance(msg, m.VideoStatus) and msg.primary == primary


def is_new_status(inbox: Inbox) -> Callable[[m.Message], bool]:
    seen = {id(message) for message in inbox.messages}
    return lambda msg: isinstance(msg, m.VideoStatus) and id(msg) not in seen


def is_ack(ok: bool) -> Callable[[m.Message], bool]:
    return lambda msg: isinstance(msg, m.Ack) and msg.ref == "select_primary" and msg.ok is ok


async def test_selecting_the_primary_moves_the_bitrate_to_it(
    operator: tuple[OperatorClient, Inbox, VehicleService],
) -> None:
    client, inbox, _ = operator
    first = await inbox.wait_for(is_status("front"), "a first video status")
    assert isinstance(first, m.VideoStatus)
    assert set(first.cameras) == {"front", "rear"}
    assert first.cameras["front"][3] > first.cameras["rear"][3]
    assert client.video_status is not None

    assert client.select_primary("rear")
    await inbox.wait_for(is_ack(True), "the ack of select_primary('rear')")
    status = await inbox.wait_for(is_status("rear"), "a status with the rear camera primary")
    assert isinstance(status, m.VideoStatus)
    assert status.cameras["rear"][3] > status.cameras["front"][3]
    width, height, fps, _ = status.cameras["rear"]
    assert (width, height, fps) == (640, 480, 30)

    assert client.select_primary("roof")
    refused = await inbox.wait_for(is_ack(False), "the refusal of an unknown camera")
    assert isinstance(refused, m.Ack)
    assert "roof" in refused.detail


async def test_the_control_channels_round_trips_reach_the_budget(
    operator: tuple[OperatorClient, Inbox, VehicleService],
) -> None:
    # The clock sync's round trips are the budget's queueing signal (vehicle/video_adapt.py).
    _, inbox, service = operator
    await inbox.wait_for(is_status("front"), "a first video status")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        session = service.session
        budget = session.video.budget if session is not None and session.video else None
        if budget is not None and budget.path_floor_ms is not None:
            break
        assert loop.time() < deadline, "the budget never saw a control-channel round trip"
        await inbox.wait_for(is_new_status(inbox), "the next video status")
    assert 0.0 <= budget.path_floor_ms < 1000.0
