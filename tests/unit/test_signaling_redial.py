"""SignalingClient.redial: a fresh connection alongside the old one takes over (real hub)."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import AsyncIterator

import pytest

from teledrive.operator.hub import Hub
from teledrive.shared.messages import Error, ListVehicles, Register, SignalMessage
from teledrive.shared.signaling import SignalingClient

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE


class Client:
    """A vehicle's signaling client, running, with what it received."""

    def __init__(self, url: str, *, backoff_s: float = 0.05) -> None:
        self.messages: asyncio.Queue[SignalMessage] = asyncio.Queue()
        self.client = SignalingClient(
            url,
            Register(role="vehicle", id="v1"),
            on_message=self.messages.put_nowait,
            backoff_initial_s=backoff_s,
            backoff_max_s=backoff_s,
            rng=random.Random(1),
        )
        self.task = asyncio.create_task(self.client.run())

    async def stop(self) -> None:
        await self.client.close()
        async with asyncio.timeout(WAIT_S):
            await self.task


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with Hub(heartbeat_s=0.2) as hub:
        await hub.serve("127.0.0.1", 0)
        yield hub


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_redial_takes_over_a_live_connection(hub: Hub) -> None:
    url = f"ws://127.0.0.1:{hub.bound_port}"
    vehicle = Client(url)
    try:
        await vehicle.client.wait_registered(WAIT_S)
        assert await vehicle.client.redial(1.0)
        # The old socket is aborted; on loopback the hub may see it go before it is replaced.
        await hub.wait_stats(lambda s: s["registrations"] == 2 and s["vehicles"] == 1, WAIT_S)
        await vehicle.client.wait_registered(WAIT_S)
        assert vehicle.client.stats.redials == 1
        assert vehicle.client.stats.registrations == 2
        await vehicle.client.send(ListVehicles())  # the new connection carries traffic
        # A vehicle may not list vehicles: the hub counts it, and answers on the new socket.
        await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
        async with asyncio.timeout(WAIT_S):
            answer = await vehicle.messages.get()
        assert isinstance(answer, Error), answer
        assert answer.code == "bad_message", answer
    finally:
        await vehicle.stop()


async def test_overlapping_redials_take_over_once(hub: Hub) -> None:
    url = f"ws://127.0.0.1:{hub.bound_port}"
    vehicle = Client(url)
    try:
        await vehicle.client.wait_registered(WAIT_S)
        results = await asyncio.gather(*(vehicle.client.redial(1.0) for _ in range(3)))
        assert sorted(results) == [False, False, True]
        await hub.wait_stats(lambda s: s["registrations"] == 2, WAIT_S)
        assert vehicle.client.stats.redials == 1
        assert hub.stats()["vehicles"] == 1
    finally:
        await vehicle.stop()


async def test_redial_to_an_unreachable_hub_fails_and_the_client_keeps_trying() -> None:
    vehicle = Client(f"ws://127.0.0.1:{free_port()}")
    try:
        assert not await vehicle.client.redial(0.5)
        assert vehicle.client.stats.redials == 0
        assert not vehicle.task.done()
    finally:
        await vehicle.stop()


async def test_redial_cuts_a_long_reconnect_backoff_short() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    backoff_s = 30.0  # far longer than any wait below: only redial can bring it back in time
    vehicle = Client(url, backoff_s=backoff_s)
    try:
        async with Hub(heartbeat_s=0.2) as hub:
            await hub.serve("127.0.0.1", port)
            assert await vehicle.client.redial(1.0)
            registered = await vehicle.client.wait_registered(WAIT_S)
            assert registered.id == "v1"
            await vehicle.client.send(ListVehicles())
            await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
    finally:
        await vehicle.stop()
