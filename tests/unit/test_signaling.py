"""SignalingClient against a real hub (and a scripted websocket server) on loopback."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import pytest
from signaling_rig import HEARTBEAT_S, WAIT_S, Inbox, Running, start, url_of
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from teledrive.operator.hub import Hub
from teledrive.shared.errors import ConfigError, LinkError
from teledrive.shared.messages import (
    Answer,
    Connect,
    ListVehicles,
    Offer,
    Register,
    Registered,
    SignalMessage,
    VehicleList,
    decode_signal,
    encode_text,
)
from teledrive.shared.signaling import Backoff, SignalingClient


async def test_registers_sends_and_dispatches(hub: Hub, clients: list[Running]) -> None:
    op = start(clients, url_of(hub), "operator", "op1")
    registered = await op.client.wait_registered(WAIT_S)
    assert registered.id == "op1"
    assert op.client.connected.is_set()
    await op.inbox.next(op.inbox.connected)
    assert op.client.registered == registered
    await op.client.send(ListVehicles())
    assert await op.inbox.next(op.inbox.messages) == VehicleList(vehicles=[])
    assert op.client.stats.messages_sent == 1


async def test_vehicle_and_operator_clients_negotiate_through_the_hub(
    hub: Hub, clients: list[Running]
) -> None:
    vehicle = start(clients, url_of(hub), "vehicle", "v1")
    op = start(clients, url_of(hub), "operator", "op1")
    await vehicle.client.wait_registered(WAIT_S)
    await op.client.wait_registered(WAIT_S)
    await op.client.send(Connect(vehicle_id="v1"))
    request = await vehicle.inbox.next(vehicle.inbox.messages)
    assert isinstance(request, Connect)
    assert request.session is not None
    await vehicle.client.send(Offer(session=request.session, sdp="v=0 offer"))
    while not isinstance(message := await op.inbox.next(op.inbox.messages), Offer):
        pass
    assert message.sdp == "v=0 offer"
    await op.client.send(Answer(session=request.session, sdp="v=0 answer"))
    assert await vehicle.inbox.next(vehicle.inbox.messages) == Answer(
        session=request.session, sdp="v=0 answer"
    )


async def test_send_when_not_connected_raises_link_error() -> None:
    client = SignalingClient(
        "ws://127.0.0.1:9", Register(role="vehicle", id="v1"), on_message=Inbox().on_message
    )
    assert not client.connected.is_set()
    with pytest.raises(LinkError, match="not connected"):
        await client.send(ListVehicles())


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="http://hub"):
        SignalingClient("http://hub", Register(role="vehicle", id="v1"), on_message=print)


async def test_reconnects_after_the_hub_restarts(clients: list[Running]) -> None:
    first = Hub(heartbeat_s=HEARTBEAT_S)
    await first.serve("127.0.0.1", 0)
    port = first.bound_port
    vehicle = start(clients, url_of(first), "vehicle", "v1")
    await vehicle.inbox.next(vehicle.inbox.connected)

    await first.stop()
    await vehicle.inbox.next(vehicle.inbox.disconnected)
    assert vehicle.client.disconnect_reason
    assert not vehicle.client.connected.is_set()
    with pytest.raises(LinkError):
        await vehicle.client.send(ListVehicles())

    async with Hub(heartbeat_s=HEARTBEAT_S) as second:
        await second.serve("127.0.0.1", port)
        await vehicle.inbox.next(vehicle.inbox.connected)
        await second.wait_stats(lambda s: s["vehicles"] == 1, WAIT_S)
        assert vehicle.client.stats.reconnects >= 1
        assert vehicle.client.stats.registrations == 2
        await vehicle.stop()


async def test_keeps_retrying_while_the_hub_refuses(hub: Hub, clients: list[Running]) -> None:
    attempts = 0
    enough = asyncio.Event()

    async def counting_connect(url: str, **options: Any) -> ClientConnection:
        nonlocal attempts
        attempts += 1
        if attempts >= 3:
            enough.set()
        return await connect(url, **options)

    inbox = Inbox()
    client = SignalingClient(
        url_of(hub),
        Register(v=2, role="vehicle", id="v1"),
        on_message=inbox.on_message,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        connect=counting_connect,
    )
    clients.append(Running(client, inbox))
    async with asyncio.timeout(WAIT_S):
        await enough.wait()
    assert client.stats.errors_received >= 2
    assert client.stats.registrations == 0
    assert not client.connected.is_set()


async def test_close_ends_run_while_waiting_to_reconnect() -> None:
    # A server that accepts TCP connections and closes them at once: every upgrade fails.
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tried = asyncio.Event()

    async def failing_connect(url: str, **options: Any) -> ClientConnection:
        tried.set()
        return await connect(url, **options)

    client = SignalingClient(
        f"ws://127.0.0.1:{port}",
        Register(role="vehicle", id="v1"),
        on_message=Inbox().on_message,
        backoff_initial_s=60.0,
        backoff_max_s=60.0,
        connect=failing_connect,
    )
    task = asyncio.create_task(client.run())
    async with asyncio.timeout(WAIT_S):
        await tried.wait()
    await client.close()
    async with asyncio.timeout(WAIT_S):
        await task  # well before the 30-60 s backoff
    server.close()
    await server.wait_closed()


async def scripted_hub(ws: ServerConnection) -> None:
    """Registers the client, then sends garbage followed by a valid message."""
    register = decode_signal(await ws.recv())
    assert isinstance(register, Register)
    await ws.send(encode_text(Registered(id=register.id, heartbeat_ms=1000.0)))
    await ws.send("{garbage")
    await ws.send('{"type": "vehicle_list", "vehicles": [], "extra": 1}')
    await ws.send(encode_text(VehicleList(vehicles=[])))
    await ws.wait_closed()


async def test_malformed_messages_from_the_hub_are_counted_not_fatal(
    clients: list[Running],
) -> None:
    async with serve(scripted_hub, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        op = start(clients, f"ws://127.0.0.1:{port}", "operator", "op1")
        assert await op.inbox.next(op.inbox.messages) == VehicleList(vehicles=[])
        assert op.client.stats.bad_messages == 2
        assert op.client.connected.is_set()
        await op.stop()


async def test_failing_callback_does_not_end_the_link(hub: Hub, clients: list[Running]) -> None:
    received: asyncio.Queue[SignalMessage] = asyncio.Queue()
    calls = 0

    async def flaky(message: SignalMessage) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("callback bug")
        received.put_nowait(message)

    client = SignalingClient(url_of(hub), Register(role="operator", id="op1"), on_message=flaky)
    clients.append(Running(client, Inbox()))
    await client.wait_registered(WAIT_S)
    await client.send(ListVehicles())
    await client.send(ListVehicles())
    async with asyncio.timeout(WAIT_S):
        assert isinstance(await received.get(), VehicleList)
    assert client.stats.callback_errors == 1
    assert client.connected.is_set()


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.2, 5.0, random.Random(7))
    ceilings = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    delays = [backoff.next_delay_s() for _ in ceilings]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert 0.1 <= backoff.next_delay_s() <= 0.2
    assert 2.5 <= backoff.max_delay_s() <= 5.0


def test_backoff_resets_only_after_a_stable_connection() -> None:
    backoff = Backoff(0.2, 5.0, random.Random(7))
    for _ in range(4):
        backoff.next_delay_s()
    backoff.connection_ended(4.9)  # shorter than the stable period (max_s): keeps growing
    assert 1.6 <= backoff.next_delay_s() <= 3.2
    backoff.connection_ended(5.0)
    assert 0.1 <= backoff.next_delay_s() <= 0.2
    quick = Backoff(0.2, 5.0, random.Random(7), stable_s=1.0)
    quick.next_delay_s()
    quick.connection_ended(1.0)
    assert 0.1 <= quick.next_delay_s() <= 0.2


async def accept_then_drop(ws: ServerConnection) -> None:
    """A hub that registers every client and drops it at once (overloaded, or crashing)."""
    register = decode_signal(await ws.recv())
    assert isinstance(register, Register)
    await ws.send(encode_text(Registered(id=register.id, heartbeat_ms=1000.0)))
    await ws.close()


async def test_a_hub_that_accepts_then_drops_gets_growing_delays(clients: list[Running]) -> None:
    attempts_s: list[float] = []
    enough = asyncio.Event()

    async def counting_connect(url: str, **options: Any) -> ClientConnection:
        attempts_s.append(time.monotonic())
        if len(attempts_s) >= 7:
            enough.set()
        return await connect(url, **options)

    async with serve(accept_then_drop, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = start(
            clients,
            f"ws://127.0.0.1:{port}",
            "vehicle",
            "v1",
            backoff_initial_s=0.01,
            backoff_max_s=0.32,
            connect=counting_connect,
            clock=lambda: 0.0,  # no connection ever lasts: none may reset the backoff
        ).client
        async with asyncio.timeout(WAIT_S):
            await enough.wait()
    assert client.stats.registrations >= 6
    gaps_s = [b - a for a, b in itertools.pairwise(attempts_s)]
    # After the n-th drop the delay is at least half of min(0.32, 0.01 * 2**(n-1)).
    assert gaps_s[5] >= 0.16, gaps_s
    assert sum(gaps_s[:6]) >= 0.315, gaps_s


async def test_a_connection_that_stayed_up_resets_the_delays(clients: list[Running]) -> None:
    attempts = 0
    enough = asyncio.Event()
    now_s = 0.0

    def clock() -> float:
        nonlocal now_s
        now_s += 60.0  # every connection looks as if it lasted a minute
        return now_s

    async def counting_connect(url: str, **options: Any) -> ClientConnection:
        nonlocal attempts
        attempts += 1
        if attempts >= 12:
            enough.set()
        return await connect(url, **options)

    async with serve(accept_then_drop, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        start(
            clients,
            f"ws://127.0.0.1:{port}",
            "vehicle",
            "v1",
            backoff_initial_s=0.01,
            backoff_max_s=30.0,  # without resets, 12 attempts would take 10 s or more
            connect=counting_connect,
            clock=clock,
        )
        async with asyncio.timeout(WAIT_S):
            await enough.wait()


def test_backoff_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(2.0, 1.0)
