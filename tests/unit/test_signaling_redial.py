"""SignalingClient.redial: a fresh connection alongside the old one takes over (real hub)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from signaling_rig import TIME_SCALE, WAIT_S, Running, start, url_of
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from teledrive.operator.hub import Hub
from teledrive.shared.messages import (
    Error,
    ListVehicles,
    Register,
    Registered,
    decode_signal,
    encode_text,
)
from teledrive.shared.register_header import REGISTER_HEADER, encode_register_header

REDIAL_S = 1.0 * TIME_SCALE
FAST_BACKOFF: dict[str, Any] = {"backoff_initial_s": 0.05, "backoff_max_s": 0.05}


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL that refuses connections: its port is bound, kept, and not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"


async def test_redial_takes_over_a_live_connection(hub: Hub, clients: list[Running]) -> None:
    vehicle = start(clients, url_of(hub), "vehicle", "v1", **FAST_BACKOFF)
    await vehicle.client.wait_registered(WAIT_S)
    assert await vehicle.client.redial(REDIAL_S)
    # The old socket is aborted; on loopback the hub may see it go before it is replaced.
    await hub.wait_stats(lambda s: s["registrations"] == 2 and s["vehicles"] == 1, WAIT_S)
    for _ in range(2):  # the first registration's, then the re-dial's
        await vehicle.inbox.next(vehicle.inbox.connected)
    assert vehicle.client.stats.redials == 1
    assert vehicle.client.stats.registrations == 2
    assert vehicle.client.stats.registered_in_upgrade == 2
    assert hub.stats()["registered_in_upgrade"] == 2
    await vehicle.client.send(ListVehicles())  # the new connection carries traffic
    # A vehicle may not list vehicles: the hub counts it, and answers on the new socket.
    await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
    answer = await vehicle.inbox.next(vehicle.inbox.messages)
    assert isinstance(answer, Error), answer
    assert answer.code == "bad_message", answer


async def test_overlapping_redials_take_over_once(hub: Hub, clients: list[Running]) -> None:
    vehicle = start(clients, url_of(hub), "vehicle", "v1", **FAST_BACKOFF)
    await vehicle.client.wait_registered(WAIT_S)
    results = await asyncio.gather(*(vehicle.client.redial(REDIAL_S) for _ in range(3)))
    assert sorted(results) == [False, False, True]
    await hub.wait_stats(lambda s: s["registrations"] == 2, WAIT_S)
    assert vehicle.client.stats.redials == 1
    # All three carried one dial id: the hub registered the first to arrive (in its upgrade)
    # and refused the other two, so they never replaced it.
    await hub.wait_stats(lambda s: s["duplicate_dials"] == 2, WAIT_S)
    assert vehicle.client.stats.duplicate_dials == 2
    assert hub.stats()["registrations"] == 2
    assert hub.stats()["replaced"] == 1
    assert hub.stats()["vehicles"] == 1


async def test_redial_to_an_unreachable_hub_fails_and_the_client_keeps_trying(
    refusing_url: str, clients: list[Running]
) -> None:
    vehicle = start(clients, refusing_url, "vehicle", "v1", **FAST_BACKOFF)
    assert not await vehicle.client.redial(REDIAL_S)
    assert vehicle.client.stats.redials == 0
    assert not vehicle.task.done()


async def test_redial_cuts_a_long_reconnect_backoff_short(hub: Hub, clients: list[Running]) -> None:
    hub_up = False
    refused = asyncio.Event()

    async def until_the_hub_is_up(url: str, **options: Any) -> ClientConnection:
        if not hub_up:
            refused.set()
            raise ConnectionRefusedError(f"{url}: the hub is not up yet")
        return await connect(url, **options)

    backoff_s = 10.0 * WAIT_S  # longer than any wait below: only redial can bring it back
    vehicle = start(
        clients,
        url_of(hub),
        "vehicle",
        "v1",
        backoff_initial_s=backoff_s,
        backoff_max_s=backoff_s,
        connect=until_the_hub_is_up,
    )
    async with asyncio.timeout(WAIT_S):
        await refused.wait()  # the first attempt failed: run() now waits out its backoff
    hub_up = True
    assert await vehicle.client.redial(REDIAL_S)
    registered = await vehicle.client.wait_registered(WAIT_S)
    assert registered.id == "v1"
    await vehicle.client.send(ListVehicles())
    await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
    assert vehicle.client.stats.reconnects == 1  # run() tried once, then redial took over


async def test_redial_leaves_a_connection_that_is_registering_alone(
    clients: list[Running],
) -> None:
    # The link came back and the client's own reconnect got through first: its Register is
    # at the hub (in-band: this hub does not read the upgrade's header), the answer on its
    # way. A re-dial opening now must not take over: a second registration would end the
    # session the hub may already have opened on the first.
    registers: asyncio.Queue[int] = asyncio.Queue()
    answer_first = asyncio.Event()
    connections = 0

    async def slow_first_answer(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        number = connections
        try:
            register = decode_signal(await ws.recv(), channel="test hub")
        except ConnectionClosed:
            return  # a connection closed unused
        assert isinstance(register, Register)
        await registers.put(number)
        if number == 1:
            await answer_first.wait()
        await ws.send(encode_text(Registered(id=register.id, heartbeat_ms=1000.0)))
        await ws.wait_closed()

    async with serve(slow_first_answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        vehicle = start(clients, f"ws://127.0.0.1:{port}", "vehicle", "v1", **FAST_BACKOFF)
        async with asyncio.timeout(WAIT_S):
            assert await registers.get() == 1
        assert not await vehicle.client.redial(REDIAL_S)
        answer_first.set()
        await vehicle.client.wait_registered(WAIT_S)
        assert connections == 2  # the re-dial did connect, and closed its connection
        assert registers.empty()  # without registering on it
        assert vehicle.client.stats.redials == 0
        assert vehicle.client.stats.registrations == 1
        assert vehicle.client.stats.registered_in_upgrade == 0


async def test_redial_gives_up_when_another_took_over_while_it_prepared(
    hub: Hub, clients: list[Running]
) -> None:
    # The vehicle builds its next offer before re-dialling; if another re-dial got through
    # meanwhile, dialling now would only take over the connection that just registered.
    dials = 0

    async def counting(url: str, **options: Any) -> ClientConnection:
        nonlocal dials
        dials += 1
        return await connect(url, **options)

    vehicle = start(clients, url_of(hub), "vehicle", "v1", connect=counting, **FAST_BACKOFF)
    await vehicle.client.wait_registered(WAIT_S)
    preparing = asyncio.Event()
    prepared = asyncio.Event()

    async def prepare() -> None:
        preparing.set()
        await prepared.wait()

    slow = asyncio.ensure_future(vehicle.client.redial(REDIAL_S, prepare=prepare))
    async with asyncio.timeout(WAIT_S):
        await preparing.wait()
    assert await vehicle.client.redial(REDIAL_S)
    assert dials == 2
    prepared.set()
    async with asyncio.timeout(WAIT_S):
        assert not await slow
    assert dials == 2  # it did not even dial
    assert vehicle.client.stats.redials == 1
    await hub.wait_stats(lambda s: s["registrations"] == 2 and s["vehicles"] == 1, WAIT_S)


async def test_redial_after_prepare_takes_over(hub: Hub, clients: list[Running]) -> None:
    vehicle = start(clients, url_of(hub), "vehicle", "v1", **FAST_BACKOFF)
    await vehicle.client.wait_registered(WAIT_S)
    calls: list[int] = []

    async def prepare() -> None:
        calls.append(vehicle.client.stats.connects)

    assert await vehicle.client.redial(REDIAL_S, prepare=prepare)
    assert calls == [1]  # prepared once, before the new connection was opened
    await hub.wait_stats(lambda s: s["registrations"] == 2 and s["vehicles"] == 1, WAIT_S)


class Proxy:
    """A TCP proxy in front of the hub that can stall one connection (a fade on the link).

    ``stall`` holds connection number ``n`` (from 1): ``"request"`` swallows what the client
    sends, ``"reply"`` forwards it but holds the hub's replies until :attr:`release` is set.
    """

    def __init__(self, hub_port: int, stall: dict[int, str]) -> None:
        self.hub_port = hub_port
        self.stall = stall
        self.connections = 0
        self.release = asyncio.Event()
        self.opened = asyncio.Queue[int]()
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.opened.put_nowait(number)
        hub_reader, hub_writer = await asyncio.open_connection("127.0.0.1", self.hub_port)
        mode = self.stall.get(number)
        up = self._pipe(reader, hub_writer, swallow=mode == "request")
        down = self._pipe(hub_reader, writer, hold=mode == "reply")
        for coro in (up, down):
            task = asyncio.create_task(coro)
            self._tasks.add(task)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        swallow: bool = False,
        hold: bool = False,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if swallow:
                    continue
                if hold:
                    await self.release.wait()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def proxies() -> AsyncIterator[list[Proxy]]:
    made: list[Proxy] = []
    yield made
    for proxy in made:
        await proxy.stop()


async def behind_proxy(
    hub: Hub, clients: list[Running], proxies: list[Proxy], stall: str
) -> tuple[Proxy, Running]:
    """A vehicle client dialling the hub through a proxy that stalls its first connection."""
    proxy = Proxy(hub.bound_port, stall={1: stall})
    proxies.append(proxy)
    return proxy, start(clients, await proxy.start(), "vehicle", "v1", **FAST_BACKOFF)


async def test_a_redial_gets_through_while_another_upgrade_is_stuck(
    hub: Hub, clients: list[Running], proxies: list[Proxy]
) -> None:
    # run()'s own connection lost its upgrade request in a fade: a re-dial must not wait for
    # it (its upgrade would take until its open timeout, 5 s).
    proxy, vehicle = await behind_proxy(hub, clients, proxies, "request")
    assert await vehicle.inbox.next(proxy.opened) == 1
    assert await vehicle.client.redial(REDIAL_S)  # the first attempt, within REDIAL_S
    await vehicle.inbox.next(vehicle.inbox.connected)
    assert hub.stats()["vehicles"] == 1


async def test_a_redial_is_a_duplicate_while_the_hub_registers_the_first(
    hub: Hub, clients: list[Running], proxies: list[Proxy]
) -> None:
    # run()'s connection reached the hub, which registered it in its upgrade, but the reply
    # is still on its way: a re-dial now must not replace it (that would end the session the
    # hub may open on it) and must not be closed as if it had not registered.
    proxy, vehicle = await behind_proxy(hub, clients, proxies, "reply")
    await hub.wait_stats(lambda s: s["vehicles"] == 1, WAIT_S)
    assert not await vehicle.client.redial(REDIAL_S)
    assert hub.stats()["duplicate_dials"] == 1
    assert vehicle.client.stats.duplicate_dials == 1
    proxy.release.set()
    await vehicle.inbox.next(vehicle.inbox.connected)
    stats = hub.stats()
    assert (stats["vehicles"], stats["registrations"], stats["replaced"]) == (1, 1, 0)
    assert vehicle.client.stats.registered_in_upgrade == 1


@pytest.mark.parametrize("own", [True, False])
async def test_a_connection_replaced_by_its_own_dial_is_not_a_duplicate_id(
    hub: Hub, clients: list[Running], caplog: pytest.LogCaptureFixture, own: bool
) -> None:
    # The hub registered a dial of this client (its re-dial, in its upgrade) before the client
    # dropped the old connection for it: that is no other process with the same id, which
    # would earn the longest backoff and a warning.
    vehicle = start(clients, url_of(hub), "vehicle", "v1", **FAST_BACKOFF)
    await vehicle.client.wait_registered(WAIT_S)
    instance = vehicle.client.instance if own else "another"
    register = Register(role="vehicle", id="v1", dial=f"{instance}.9")
    header = encode_register_header(register)
    assert header is not None
    caplog.set_level(logging.INFO, logger="teledrive.shared.signaling")
    async with connect(url_of(hub), additional_headers={REGISTER_HEADER: header}):
        await vehicle.inbox.next(vehicle.inbox.disconnected)
    verdicts = [
        (r.levelno, "duplicate id" in r.getMessage())
        for r in caplog.records
        if "duplicate id" in r.getMessage() or "this client's re-dial" in r.getMessage()
    ]
    assert verdicts == ([(logging.INFO, False)] if own else [(logging.WARNING, True)])


MODEM_1, MODEM_2 = "127.0.0.1", "127.0.0.2"  # two source addresses on loopback


def on_two_modems(
    clients: list[Running], url: str, connector: Any, modems: tuple[str, str] = (MODEM_1, MODEM_2)
) -> Running:
    """A vehicle client that dials from both loopback "modems", through ``connector``."""
    return start(
        clients, url, "vehicle", "v1", connect=connector, source_addresses=lambda: list(modems)
    )


async def test_a_client_on_two_modems_registers_over_the_one_that_works(
    hub: Hub, clients: list[Running]
) -> None:
    dead_dial_cancelled = asyncio.Event()

    async def modem_2_is_dead(url: str, **options: Any) -> ClientConnection:
        if options["local_addr"][0] == MODEM_2:
            try:
                await asyncio.Event().wait()  # its SYN goes nowhere
            finally:
                dead_dial_cancelled.set()
        return await connect(url, **options)

    vehicle = on_two_modems(clients, url_of(hub), modem_2_is_dead, (MODEM_2, MODEM_1))
    registered = await vehicle.client.wait_registered(WAIT_S)
    assert registered.id == "v1"
    async with asyncio.timeout(WAIT_S):
        await dead_dial_cancelled.wait()  # the dial from the dead modem is not left behind
    await vehicle.client.send(ListVehicles())  # the connection from modem 1 carries traffic
    await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
    assert hub.stats()["registrations"] == 1


async def test_dials_from_two_working_modems_register_once(
    hub: Hub, clients: list[Running]
) -> None:
    sources: list[str] = []

    async def recording(url: str, **options: Any) -> ClientConnection:
        sources.append(options["local_addr"][0])
        return await connect(url, **options)

    vehicle = on_two_modems(clients, url_of(hub), recording)
    await vehicle.client.wait_registered(WAIT_S)
    assert sorted(sources) == [MODEM_1, MODEM_2]
    # Both carried one dial: the hub registered one and refused the other, which therefore
    # replaced nothing, and the client kept the registered one.
    await vehicle.client.send(ListVehicles())
    await hub.wait_stats(lambda s: s["bad_messages"] == 1, WAIT_S)
    stats = hub.stats()
    assert (stats["registrations"], stats["replaced"], stats["vehicles"]) == (1, 0, 1)
    assert vehicle.client.stats.registrations == 1


async def test_a_dial_from_two_dead_modems_fails_and_names_both(
    hub: Hub, clients: list[Running], caplog: pytest.LogCaptureFixture
) -> None:
    async def both_dead(url: str, **options: Any) -> ClientConnection:
        raise ConnectionRefusedError(f"no route from {options['local_addr'][0]}")

    vehicle = on_two_modems(clients, url_of(hub), both_dead)
    with caplog.at_level(logging.DEBUG, logger="teledrive.shared.signaling"):
        assert not await vehicle.client.redial(REDIAL_S)
    text = next(r.getMessage() for r in caplog.records if "redial failed" in r.getMessage())
    assert f"from {MODEM_1}: no route from {MODEM_1}" in text
    assert f"from {MODEM_2}: no route from {MODEM_2}" in text
    assert not vehicle.task.done()  # it keeps trying
