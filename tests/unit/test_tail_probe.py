"""Tail probes: the plan, and pings on real websockets after the last message of a burst."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import pytest
from signaling_rig import TIME_SCALE, WAIT_S, Running, start
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from teledrive.operator.hub import Hub
from teledrive.shared.errors import ConfigError
from teledrive.shared.messages import ListVehicles, Register, VehicleList
from teledrive.shared.signaling import SignalingClient
from teledrive.shared.tail_probe import TailProber, TailProbes

PROBES_MS = (30.0, 60.0)


def test_probes_follow_the_last_message() -> None:
    plan = TailProbes((60.0, 160.0))
    assert plan.next_due_ms() is None  # nothing sent, nothing to probe
    plan.sent(1000.0)
    assert not plan.due(1059.0)
    assert plan.due(1060.0)
    assert plan.next_due_ms() == 1160.0
    plan.sent(1100.0)  # a new message: its own probes, the old one's are dropped
    assert plan.next_due_ms() == 1160.0
    assert plan.due(1160.0)
    assert plan.due(1300.0)
    assert plan.next_due_ms() is None
    assert not plan.due(5000.0)
    assert plan.probes == 3


def test_a_late_check_probes_once() -> None:
    plan = TailProbes((60.0, 160.0))
    plan.sent(0.0)
    assert plan.due(500.0)  # both times passed: one probe is enough
    assert plan.probes == 1
    assert plan.next_due_ms() is None


@pytest.mark.parametrize("delays", [(0.0,), (60.0, 60.0), (100.0, 50.0), (float("nan"),)])
def test_bad_delays_are_a_config_error(delays: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="tail probes"):
        TailProbes(delays)


def test_hub_and_client_name_themselves_in_a_bad_delay() -> None:
    with pytest.raises(ConfigError, match="hub: delays must be > 0"):
        Hub(tail_probes_ms=(100.0, 50.0))
    with pytest.raises(ConfigError, match=r"signaling ws://127\.0\.0\.1:1: delays must be > 0"):
        SignalingClient(
            "ws://127.0.0.1:1",
            Register(role="operator", id="op1"),
            on_message=lambda message: None,
            tail_probes_ms=(-1.0,),
        )


def test_no_delays_means_no_probes() -> None:
    plan = TailProbes(())
    plan.sent(0.0)
    assert plan.next_due_ms() is None


async def test_the_prober_pings_after_the_last_send_and_stops() -> None:
    loop = asyncio.get_running_loop()
    pinged: list[float] = []
    two = asyncio.Event()

    async def ping() -> None:
        pinged.append(loop.time())
        if len(pinged) == 2:
            two.set()

    prober = TailProber(ping, (20.0, 40.0))
    sent_at = loop.time()
    prober.sent()
    await asyncio.wait_for(two.wait(), WAIT_S)
    assert pinged[0] - sent_at >= 0.02
    assert pinged[1] - sent_at >= 0.04
    prober.sent()
    prober.stop()
    prober.sent()  # after stop: nothing
    stopped = loop.create_future()
    loop.call_later(0.1, stopped.set_result, None)  # past both probe times (timers run in order)
    await stopped
    assert len(pinged) == 2


class Recording(ClientConnection):
    """A client connection that notes the pings it sends and receives (monotonic s)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings_sent: list[float] = []
        self.pings_received: list[float] = []
        self.changed = asyncio.Event()

    async def ping(self, data: Any = None) -> Any:
        self.pings_sent.append(time.monotonic())
        self.changed.set()
        return await super().ping(data)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings_received.append(time.monotonic())
            self.changed.set()
        super().process_event(event)


async def wait_until(ws: Recording, done: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        while not done():
            ws.changed.clear()
            await ws.changed.wait()


async def test_client_and_hub_probe_after_their_messages(clients: list[Running]) -> None:
    connections: list[Recording] = []

    async def recording_connect(url: str, **options: Any) -> Recording:
        ws = await connect(url, create_connection=Recording, **options)
        assert isinstance(ws, Recording)
        connections.append(ws)
        return ws

    async with Hub(heartbeat_s=1.0, tail_probes_ms=PROBES_MS) as hub:
        await hub.serve("127.0.0.1", 0)
        op = start(
            clients,
            f"ws://127.0.0.1:{hub.bound_port}",
            "operator",
            "op1",
            tail_probes_ms=PROBES_MS,
            ping_interval_s=60.0,  # no keepalive pings from the client during the test
            connect=functools.partial(recording_connect),
        )
        await op.client.wait_registered(WAIT_S)
        (ws,) = connections
        sent_at = time.monotonic()
        await op.client.send(ListVehicles())
        assert await op.inbox.next(op.inbox.messages) == VehicleList(vehicles=[])
        replied_at = time.monotonic()
        await wait_until(ws, lambda: len([t for t in ws.pings_sent if t > sent_at]) >= 2)
        after_send = [t - sent_at for t in ws.pings_sent if t > sent_at]
        assert after_send[0] >= PROBES_MS[0] / 1000.0
        assert after_send[1] >= PROBES_MS[1] / 1000.0
        # The hub's reply is followed by its probes: two pings within half a second, which
        # its 1 s keepalive alone cannot give.
        await wait_until(ws, lambda: len([t for t in ws.pings_received if t > replied_at]) >= 2)
        after_reply = [t - replied_at for t in ws.pings_received if t > replied_at]
        assert after_reply[1] < 0.5 * TIME_SCALE
