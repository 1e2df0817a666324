"""The hub against real websocket clients on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.uri import parse_uri

from teledrive.operator.hub import Hub, parse_listen, run_hub
from teledrive.operator.presence import Role
from teledrive.shared.errors import ConfigError
from teledrive.shared.messages import (
    MAX_MESSAGE_BYTES,
    Answer,
    Bye,
    Candidate,
    Connect,
    Error,
    ListVehicles,
    Message,
    Offer,
    Presence,
    Register,
    Registered,
    SignalMessage,
    Status,
    VehicleList,
    decode_signal,
    encode_text,
)
from teledrive.shared.signaling import CLOSE_REFUSED, CLOSE_REPLACED

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE
HEARTBEAT_S = 1.0  # the longest the hub allows: healthy peers on a loaded machine stay
SILENT_PEER_HEARTBEAT_S = 0.2  # only where a silent peer must be dropped quickly
REGISTER_TIMEOUT_S = 0.5 * TIME_SCALE

M = TypeVar("M", bound=Message)


class Peer:
    """A raw websocket client speaking the signaling messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: Message) -> None:
        await self.ws.send(encode_text(message))

    async def recv(self) -> SignalMessage:
        async with asyncio.timeout(WAIT_S):
            raw = await self.ws.recv()
        return decode_signal(raw)

    async def expect(self, kind: type[M]) -> M:
        """Next message of ``kind``; presence pushes are skipped unless asked for."""
        while True:
            message = await self.recv()
            if isinstance(message, Presence) and kind is not Presence:
                continue
            assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
            return message

    async def closed(self) -> int | None:
        async with asyncio.timeout(WAIT_S):
            await self.ws.wait_closed()
        return self.ws.close_code


PeerFactory = Callable[..., Awaitable[Peer]]


@pytest.fixture
def heartbeat_s() -> float:
    """The hub's heartbeat; a test overrides it with ``@pytest.mark.parametrize``."""
    return HEARTBEAT_S


@pytest.fixture
async def hub(heartbeat_s: float) -> AsyncIterator[Hub]:
    async with Hub(heartbeat_s=heartbeat_s, register_timeout_s=REGISTER_TIMEOUT_S) as hub:
        await hub.serve("127.0.0.1", 0)
        yield hub


@pytest.fixture
async def peer(hub: Hub) -> AsyncIterator[PeerFactory]:
    """Opens peers, registered as ``role``/``peer_id`` unless ``role`` is None."""
    opened: list[ClientConnection] = []

    async def open_peer(
        role: Role | None = None, peer_id: str = "x", *, cameras: list[str] | None = None
    ) -> Peer:
        ws = await connect(f"ws://127.0.0.1:{hub.bound_port}", ping_interval=None)
        opened.append(ws)
        p = Peer(ws)
        if role is not None:
            await p.send(Register(role=role, id=peer_id, cameras=cameras or []))
            registered = await p.expect(Registered)
            assert registered.id == peer_id
        return p

    yield open_peer
    for ws in opened:
        await ws.close()


async def open_session(vehicle: Peer, operator: Peer, vehicle_id: str) -> str:
    await operator.send(Connect(vehicle_id=vehicle_id))
    to_vehicle = await vehicle.expect(Connect)
    ack = await operator.expect(Connect)
    assert to_vehicle.session is not None
    assert ack.session == to_vehicle.session
    return to_vehicle.session


async def test_register_is_answered_with_id_and_heartbeat(peer: PeerFactory, hub: Hub) -> None:
    p = await peer()
    await p.send(Register(role="operator", id="op1"))
    registered = await p.expect(Registered)
    assert registered.id == "op1"
    assert registered.heartbeat_ms == pytest.approx(HEARTBEAT_S * 1000)
    assert hub.stats()["operators"] == 1


async def test_list_vehicles_shows_online_vehicles(peer: PeerFactory) -> None:
    await peer("vehicle", "v2", cameras=["front", "rear"])
    await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    await op.send(ListVehicles())
    listing = await op.expect(VehicleList)
    assert [v.id for v in listing.vehicles] == ["v1", "v2"]
    assert listing.vehicles[1].cameras == ["front", "rear"]
    assert all(v.online and v.operator is None for v in listing.vehicles)


async def test_presence_is_pushed_when_a_vehicle_comes_and_goes(peer: PeerFactory) -> None:
    op = await peer("operator", "op1")
    vehicle = await peer("vehicle", "v1", cameras=["front"])
    came = await op.expect(Presence)
    assert (came.vehicle.id, came.vehicle.online, came.vehicle.cameras) == ("v1", True, ["front"])
    await vehicle.ws.close()
    went = await op.expect(Presence)
    assert (went.vehicle.id, went.vehicle.online) == ("v1", False)


async def test_session_relays_offer_answer_candidate_and_bye(peer: PeerFactory, hub: Hub) -> None:
    vehicle = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    await op.send(Connect(vehicle_id="v1"))
    to_vehicle = await vehicle.expect(Connect)
    assert to_vehicle.operator_id == "op1"
    assert to_vehicle.vehicle_id == "v1"
    ack = await op.expect(Connect)
    assert ack.session == to_vehicle.session
    assert ack.session is not None
    session = ack.session
    in_session = await op.expect(Presence)
    assert in_session.vehicle.operator == "op1"

    await vehicle.send(Offer(session=session, sdp="v=0 offer"))
    assert await op.expect(Offer) == Offer(session=session, sdp="v=0 offer")
    await op.send(Answer(session=session, sdp="v=0 answer"))
    assert await vehicle.expect(Answer) == Answer(session=session, sdp="v=0 answer")
    candidate = Candidate(session=session, candidate="candidate:1 1 udp 1 1.2.3.4 5 typ host")
    await op.send(candidate)
    assert await vehicle.expect(Candidate) == candidate
    assert hub.stats()["sessions"] == 1

    await op.send(Bye(session=session, reason="done"))
    assert await vehicle.expect(Bye) == Bye(session=session, reason="done")
    freed = await op.expect(Presence)
    assert freed.vehicle.operator is None
    assert hub.stats()["sessions"] == 0
    assert hub.stats()["relayed"] == 4


async def test_unknown_vehicle_is_an_error_not_a_hang(peer: PeerFactory) -> None:
    op = await peer("operator", "op1")
    await op.send(Connect(vehicle_id="nowhere"))
    error = await op.expect(Error)
    assert error.code == "unknown_vehicle"
    assert "nowhere" in error.message


async def test_vehicle_in_session_with_another_operator_is_busy(peer: PeerFactory) -> None:
    vehicle = await peer("vehicle", "v1")
    op1 = await peer("operator", "op1")
    op2 = await peer("operator", "op2")
    await open_session(vehicle, op1, "v1")
    await op2.send(Connect(vehicle_id="v1"))
    error = await op2.expect(Error)
    assert error.code == "busy"
    assert "op1" in error.message


async def test_same_operator_connecting_again_ends_its_old_session(peer: PeerFactory) -> None:
    vehicle = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    first = await open_session(vehicle, op, "v1")
    await op.send(Connect(vehicle_id="v1"))
    assert (await vehicle.expect(Bye)).session == first
    second = (await vehicle.expect(Connect)).session
    assert (await op.expect(Bye)).session == first
    assert (await op.expect(Connect)).session == second
    assert second != first


async def test_duplicate_vehicle_id_replaces_the_old_connection(
    peer: PeerFactory, hub: Hub
) -> None:
    old = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    session = await open_session(old, op, "v1")
    new = await peer("vehicle", "v1")

    assert await old.closed() == CLOSE_REPLACED
    bye = await op.expect(Bye)
    assert bye.session == session
    assert "reconnected" in bye.reason
    await hub.wait_stats(lambda s: s["disconnects"] >= 1, WAIT_S)  # old handler cleaned up

    stats = hub.stats()
    assert (stats["vehicles"], stats["replaced"], stats["sessions"]) == (1, 1, 0)
    await open_session(new, op, "v1")  # the new connection is the one registered


async def test_duplicate_operator_id_replaces_and_ends_its_session(peer: PeerFactory) -> None:
    vehicle = await peer("vehicle", "v1")
    old = await peer("operator", "op1")
    session = await open_session(vehicle, old, "v1")
    new = await peer("operator", "op1")
    assert await old.closed() == CLOSE_REPLACED
    assert (await vehicle.expect(Bye)).session == session
    await open_session(vehicle, new, "v1")


async def test_frames_from_a_replaced_operator_connection_are_dropped(
    peer: PeerFactory, hub: Hub
) -> None:
    vehicle = await peer("vehicle", "v1")
    old = await peer("operator", "op1")
    old.ws.transport.pause_reading()  # a zombie: it has not seen the hub's close yet
    new = await peer("operator", "op1")
    session = await open_session(vehicle, new, "v1")

    await old.send(Connect(vehicle_id="v1"))  # sent before it learns it was replaced
    await old.send(Bye(session=session, reason="stale"))
    await hub.wait_stats(lambda s: s.get("stale_frames", 0) == 2, WAIT_S)

    # The new connection's session is untouched: its traffic still flows, no Bye, no new one.
    await new.send(Offer(session=session, sdp="v=0 still here"))
    assert (await vehicle.expect(Offer)).session == session
    await new.send(ListVehicles())
    assert await new.expect(VehicleList)  # not a Bye or a Connect first
    stats = hub.stats()
    assert (stats["sessions"], stats["sessions_opened"], stats["relayed"]) == (1, 1, 1)
    old.ws.transport.resume_reading()
    assert await old.closed() == CLOSE_REPLACED


async def test_status_from_a_replaced_vehicle_connection_is_dropped(
    peer: PeerFactory, hub: Hub
) -> None:
    op = await peer("operator", "op1")
    old = await peer("vehicle", "v1")
    old.ws.transport.pause_reading()
    new = await peer("vehicle", "v1")
    await new.send(Status(mode="AUTONOMY", reason="released"))
    assert (await _presence_with_mode(op)).vehicle.mode == "AUTONOMY"
    await old.send(Status(mode="TELEOP", reason="from the replaced connection"))
    await hub.wait_stats(lambda s: s.get("stale_frames", 0) == 1, WAIT_S)
    await op.send(ListVehicles())
    listed = (await op.expect(VehicleList)).vehicles
    assert [(v.id, v.mode, v.reason) for v in listed] == [("v1", "AUTONOMY", "released")]
    old.ws.transport.resume_reading()
    assert await old.closed() == CLOSE_REPLACED


async def test_vehicle_status_reaches_operators_in_presence(peer: PeerFactory, hub: Hub) -> None:
    op = await peer("operator", "op1")
    vehicle = await peer("vehicle", "v1")
    await vehicle.send(Status(mode="AUTONOMY", reason="released", battery_v=12.4))
    info = (await _presence_with_mode(op)).vehicle
    assert (info.mode, info.reason, info.battery_v) == ("AUTONOMY", "released", 12.4)
    # The same mode again only updates what a list shows; a new mode is pushed.
    await vehicle.send(Status(mode="AUTONOMY", reason="released", battery_v=12.3))
    await vehicle.send(Status(mode="MINIMAL_RISK_STOP", reason="blocked"))
    assert (await _presence_with_mode(op)).vehicle.mode == "MINIMAL_RISK_STOP"
    await op.send(ListVehicles())
    listed = (await op.expect(VehicleList)).vehicles
    assert [(v.id, v.mode, v.reason) for v in listed] == [("v1", "MINIMAL_RISK_STOP", "blocked")]


async def _presence_with_mode(op: Peer) -> Presence:
    while True:
        presence = await op.expect(Presence)
        if presence.vehicle.mode is not None:
            return presence


async def test_status_from_an_operator_is_refused(peer: PeerFactory, hub: Hub) -> None:
    op = await peer("operator", "op1")
    await op.send(Status(mode="TELEOP"))
    error = await op.expect(Error)
    assert (error.code, error.ref) == ("bad_message", "status")
    assert hub.stats()["bad_messages"] == 1


async def test_silent_client_is_refused_after_register_timeout(peer: PeerFactory, hub: Hub) -> None:
    p = await peer()
    error = await p.expect(Error)
    assert error.code == "not_registered"
    assert await p.closed() == CLOSE_REFUSED
    assert hub.stats()["register_timeouts"] == 1


async def test_first_message_other_than_register_is_refused(peer: PeerFactory) -> None:
    p = await peer()
    await p.send(ListVehicles())
    error = await p.expect(Error)
    assert (error.code, error.ref) == ("not_registered", "list_vehicles")
    assert await p.closed() == CLOSE_REFUSED


async def test_other_protocol_version_is_refused(peer: PeerFactory) -> None:
    p = await peer()
    await p.send(Register(v=2, role="vehicle", id="v1"))
    error = await p.expect(Error)
    assert error.code == "version"
    assert await p.closed() == CLOSE_REFUSED


@pytest.mark.parametrize(
    ("raw", "ref", "needle"),
    [
        ("{not json", None, "JSON"),
        ('{"type": "teleport"}', "teleport", "teleport"),
        ('{"type": "connect", "vehicle_id": 5}', "connect", "$.vehicle_id"),
        ('{"type": "connect", "vehicle_id": "v1", "force": true}', "connect", "force"),
        ('{"type": "connect", "vehicle_id": "bad id!"}', "connect", "$.vehicle_id"),
    ],
)
async def test_malformed_message_is_refused_counted_and_connection_kept(
    peer: PeerFactory, hub: Hub, raw: str, ref: str | None, needle: str
) -> None:
    op = await peer("operator", "op1")
    await op.ws.send(raw)
    error = await op.expect(Error)
    assert (error.code, error.ref) == ("bad_message", ref)
    assert needle in error.message
    assert "operator 'op1'" in error.message  # says where
    assert hub.stats()["bad_messages"] == 1
    await op.send(ListVehicles())
    await op.expect(VehicleList)


async def test_malformed_message_before_register_keeps_connection(peer: PeerFactory) -> None:
    p = await peer()
    await p.ws.send("[1, 2")
    assert (await p.expect(Error)).code == "bad_message"
    await p.send(Register(role="operator", id="op1"))
    await p.expect(Registered)


@pytest.mark.parametrize(
    "message",
    [
        ListVehicles(),
        Connect(vehicle_id="v1"),
        VehicleList(vehicles=[]),
        Register(role="vehicle", id="v1"),
        Registered(id="v1", heartbeat_ms=1.0),
    ],
)
async def test_message_not_allowed_for_a_vehicle_is_refused(
    peer: PeerFactory, hub: Hub, message: Message
) -> None:
    vehicle = await peer("vehicle", "v1")
    await vehicle.send(message)
    error = await vehicle.expect(Error)
    assert error.code == "bad_message"
    assert hub.stats()["bad_messages"] == 1
    assert hub.stats()["vehicles"] == 1


async def test_operator_may_not_set_session_fields_of_connect(peer: PeerFactory) -> None:
    await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    await op.send(Connect(vehicle_id="v1", session="mine", operator_id="someone"))
    error = await op.expect(Error)
    assert (error.code, error.ref) == ("bad_message", "connect")


async def test_relay_outside_a_session_is_refused(peer: PeerFactory, hub: Hub) -> None:
    vehicle = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    intruder = await peer("operator", "op2")
    session = await open_session(vehicle, op, "v1")

    await intruder.send(Offer(session=session, sdp="v=0"))
    error = await intruder.expect(Error)
    assert (error.code, error.ref) == ("bad_message", "offer")
    assert "not a member" in error.message

    await op.send(Answer(session="no-such-session", sdp="v=0"))
    error = await op.expect(Error)
    assert "unknown session" in error.message
    assert hub.stats()["relayed"] == 0
    assert hub.stats()["sessions"] == 1


async def test_vehicle_disconnect_sends_bye_and_presence(peer: PeerFactory, hub: Hub) -> None:
    vehicle = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    session = await open_session(vehicle, op, "v1")
    await vehicle.ws.close()
    bye = await op.expect(Bye)
    assert bye.session == session
    assert "disconnected" in bye.reason
    while (presence := await op.expect(Presence)).vehicle.online:
        pass
    assert presence.vehicle.id == "v1"
    assert hub.stats()["sessions"] == 0


async def test_operator_disconnect_sends_bye_to_vehicle(peer: PeerFactory, hub: Hub) -> None:
    vehicle = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    watcher = await peer("operator", "op2")
    session = await open_session(vehicle, op, "v1")
    await op.ws.close()
    assert (await vehicle.expect(Bye)).session == session
    while (presence := await watcher.expect(Presence)).vehicle.operator is not None:
        pass
    assert presence.vehicle.online


@pytest.mark.parametrize("heartbeat_s", [SILENT_PEER_HEARTBEAT_S])
async def test_peer_that_stops_answering_pings_is_dropped(peer: PeerFactory, hub: Hub) -> None:
    op = await peer("operator", "op1")
    zombie = await peer("vehicle", "v1")
    await op.expect(Presence)
    zombie.ws.transport.pause_reading()  # it no longer sees pings, so sends no pongs
    went = await op.expect(Presence)
    assert (went.vehicle.id, went.vehicle.online) == ("v1", False)
    zombie.ws.transport.resume_reading()


async def test_oversized_frame_closes_with_message_too_big(peer: PeerFactory) -> None:
    op = await peer("operator", "op1")
    await op.ws.send("x" * (MAX_MESSAGE_BYTES + 1))
    assert await op.closed() == 1009


async def test_healthz_answers_json_stats(peer: PeerFactory, hub: Hub) -> None:
    await peer("vehicle", "v1")
    await peer("operator", "op1")
    async with asyncio.timeout(WAIT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.bound_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: application/json" in head.lower()
    stats = json.loads(body)
    assert (stats["vehicles"], stats["operators"], stats["sessions"], stats["errors"]) == (
        1,
        1,
        0,
        0,
    )


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8765", "host:", ":80", "host:port", "host:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)


def test_heartbeat_above_one_second_is_refused() -> None:
    with pytest.raises(ConfigError, match="heartbeat_s"):
        Hub(heartbeat_s=2.0)


async def test_bye_for_an_ended_session_is_ignored(peer: PeerFactory, hub: Hub) -> None:
    vehicle = await peer("vehicle", "v1")
    op = await peer("operator", "op1")
    session = await open_session(vehicle, op, "v1")
    await op.send(Bye(session=session))
    await vehicle.expect(Bye)
    await vehicle.send(Bye(session=session))  # crossed in flight: not an error
    await vehicle.send(Offer(session=session, sdp="v=0"))  # but this one is
    error = await vehicle.expect(Error)
    assert error.ref == "offer"  # the first error is for the offer, none came for the bye
    assert hub.stats()["bad_messages"] == 1


async def test_run_hub_listens_and_reports_its_url() -> None:
    urls: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        run_hub("127.0.0.1:0", heartbeat_s=HEARTBEAT_S, on_listening=urls.put_nowait)
    )
    async with asyncio.timeout(WAIT_S):
        url = await urls.get()
    assert url.startswith("ws://127.0.0.1:")
    async with connect(url) as ws:
        await ws.send(encode_text(Register(role="operator", id="op1")))
        async with asyncio.timeout(WAIT_S):
            assert isinstance(decode_signal(await ws.recv()), Registered)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("listen", "host"),
    [
        ("127.0.0.1:0", "127.0.0.1"),
        pytest.param(
            "[::1]:0",
            "::1",
            marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback"),
        ),
    ],
)
async def test_hub_command_prints_a_url_that_connects(listen: str, host: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "teledrive.shared.cli", "hub", "--listen", listen),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(WAIT_S * 2):  # a fresh interpreter imports the hub first
            line = (await proc.stdout.readline()).decode().rstrip("\n")
        prefix = "hub listening on "
        assert line.startswith(prefix), line
        url = line.removeprefix(prefix)
        uri = parse_uri(url)  # a valid websocket URI: IPv6 hosts in brackets
        assert (uri.host, uri.port > 0) == (host, True), url
        assert url == f"ws://{'[::1]' if ':' in host else host}:{uri.port}"
        async with connect(url) as ws:
            await ws.send(encode_text(Register(role="operator", id="op1")))
            async with asyncio.timeout(WAIT_S):
                assert isinstance(decode_signal(await ws.recv()), Registered)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(WAIT_S):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_hub_command_refuses_a_malformed_listen_address() -> None:
    argv = [sys.executable, "-m", "teledrive.shared.cli", "hub", "--listen", "localhost:70000"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S * 2, check=False)
    assert done.returncode == 2
    assert "--listen 'localhost:70000': expected HOST:PORT" in done.stderr


# -- offers made ahead -----------------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


async def register_with_offer(port: int, peer_id: str, role: Role, offer: str) -> Peer:
    p = Peer(await connect(f"ws://127.0.0.1:{port}", ping_interval=None))
    await p.send(Register(role=role, id=peer_id, offer=offer))
    await p.expect(Registered)
    return p


async def test_a_session_opens_with_the_offer_the_vehicle_made_ahead() -> None:
    clock = ManualClock()
    async with Hub(clock=clock) as hub:
        await hub.serve("127.0.0.1", 0)
        port = hub.bound_port
        vehicle = await register_with_offer(port, "v1", "vehicle", "v=0 ahead")
        op = Peer(await connect(f"ws://127.0.0.1:{port}", ping_interval=None))
        await op.send(Register(role="operator", id="op1"))
        await op.expect(Registered)
        clock.now_s += 4.9  # within OFFER_AHEAD_TTL_S

        await op.send(Connect(vehicle_id="v1"))
        to_vehicle = await vehicle.expect(Connect)
        ack = await op.expect(Connect)
        # The vehicle is told its offer was used; the operator gets it with no round trip.
        assert to_vehicle.offer_ahead is True
        assert ack.session == to_vehicle.session is not None
        assert await op.expect(Offer) == Offer(session=ack.session, sdp="v=0 ahead")
        assert hub.stats()["offers_ahead_used"] == 1
        # Used once: the next session is offered the usual way.
        await op.send(Connect(vehicle_id="v1"))
        assert (await vehicle.expect(Bye)).session == ack.session
        again = await vehicle.expect(Connect)
        assert again.offer_ahead is False
        assert (await op.expect(Bye)).session == ack.session
        await op.expect(Connect)
        await vehicle.send(Offer(session=str(again.session), sdp="v=0 fresh"))
        assert (await op.expect(Offer)).sdp == "v=0 fresh"
        await vehicle.ws.close()
        await op.ws.close()


async def test_an_offer_made_ahead_ages_out_and_operators_do_not_offer() -> None:
    clock = ManualClock()
    async with Hub(clock=clock) as hub:
        await hub.serve("127.0.0.1", 0)
        port = hub.bound_port
        vehicle = await register_with_offer(port, "v1", "vehicle", "v=0 ahead")
        op = await register_with_offer(port, "op1", "operator", "v=0 from an operator")
        refused = await op.expect(Error)
        assert refused.code == "bad_message"
        assert "only vehicles offer ahead" in refused.message
        clock.now_s += 5.1  # past OFFER_AHEAD_TTL_S: its ICE candidates may be stale
        await op.send(Connect(vehicle_id="v1"))
        to_vehicle = await vehicle.expect(Connect)
        assert to_vehicle.offer_ahead is False
        await op.expect(Connect)
        assert hub.stats()["offers_ahead_used"] == 0
        await vehicle.ws.close()
        await op.ws.close()
