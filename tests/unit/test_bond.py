"""Bonding: which extra paths a datagram takes, the offer's mark, and the send wrapper."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from teledrive.shared.bond import (
    BOND_ATTRIBUTE,
    Bonding,
    extra_paths,
    install_bonding,
    local_addresses,
    mark_offer,
    offer_is_bonded,
    worth_copying,
)
from teledrive.shared.handshake_resend import AiortcTransportError

WAIT_S = 10.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
OPERATOR = ("10.201.0.3", 40000)
STUN_REQUEST = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
DTLS_RECORD = b"\x17\xfe\xfd" + bytes(10)
SRTP = b"\x80\x66" + bytes(10)


def test_a_vehicle_on_two_modems_copies_from_its_other_interface() -> None:
    hosts = ["10.201.0.1", "10.201.0.4"]
    assert extra_paths(
        (0, OPERATOR), hosts, [OPERATOR], every_interface=True, every_address=False
    ) == [(1, OPERATOR)]
    # Whichever interface ICE nominated, the copy goes from the other one.
    assert extra_paths(
        (1, OPERATOR), hosts, [OPERATOR], every_interface=True, every_address=False
    ) == [(0, OPERATOR)]


def test_copies_stay_within_one_address_family_and_one_per_host() -> None:
    hosts = ["10.201.0.1", "fd00::2", "10.201.0.1", "10.201.0.4", "10.201.0.5"]
    # IPv6 cannot reach an IPv4 peer; a second socket on the same host is the same link.
    assert extra_paths(
        (0, OPERATOR), hosts, [], every_interface=True, every_address=False, max_extra=5
    ) == [(3, OPERATOR), (4, OPERATOR)]
    # Two modems: one extra copy by default.
    assert extra_paths((0, OPERATOR), hosts, [], every_interface=True, every_address=False) == [
        (3, OPERATOR)
    ]
    assert extra_paths((0, OPERATOR), hosts, [], every_interface=False, every_address=False) == []


def test_an_operator_copies_to_the_vehicles_other_address() -> None:
    vehicle_1, vehicle_2 = ("10.201.0.1", 50000), ("10.201.0.4", 50002)
    remotes = [vehicle_1, ("10.201.0.1", 50001), ("fd00::1", 50003), vehicle_2]
    assert extra_paths(
        (0, vehicle_1), ["10.201.0.3"], remotes, every_interface=False, every_address=True
    ) == [(0, vehicle_2)]
    assert extra_paths(
        (0, vehicle_2), ["10.201.0.3"], remotes, every_interface=True, every_address=True
    ) == [(0, vehicle_1)]


def test_the_offer_mark_is_read_at_session_level_only() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    marked = mark_offer(sdp)
    assert marked.split("\r\n")[4] == BOND_ATTRIBUTE
    assert offer_is_bonded(marked)
    assert not offer_is_bonded(sdp)
    assert not offer_is_bonded(sdp + BOND_ATTRIBUTE + "\r\n")  # inside a media section
    with pytest.raises(ValueError, match="t= line"):
        mark_offer("v=0\r\n")


def test_the_hub_is_dialled_from_addresses_of_its_own_family() -> None:
    for host in ("10.201.0.2", "hub.example.com", None):
        assert all(":" not in address for address in local_addresses(host))
    assert all(":" in address for address in local_addresses("fd00::1"))
    assert "127.0.0.1" not in local_addresses("10.201.0.2")  # loopback is no modem


def test_only_dtls_and_srtp_are_copied() -> None:
    assert worth_copying(DTLS_RECORD)
    assert worth_copying(SRTP)
    assert not worth_copying(STUN_REQUEST)
    assert not worth_copying(b"")


# -- the wrapper, on an injected stand-in for aioice's connection -----------------------------


@dataclass
class Socket:
    sent: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    closed: bool = False

    def is_closing(self) -> bool:
        return self.closed

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@dataclass
class Protocol:
    host: str
    transport: Socket = field(default_factory=Socket)

    @property
    def local_candidate(self) -> Any:
        return SimpleNamespace(host=self.host, component=1, type="host")


@dataclass
class Connection:
    """What :class:`Bonding` reads of an aioice connection, and a ``sendto`` like its own."""

    _protocols: list[Protocol]
    _remote_candidates: list[Any]
    _nominated: dict[int, Any] = field(default_factory=dict)

    async def sendto(self, data: bytes, component: int) -> None:
        pair = self._nominated[component]
        pair.protocol.transport.sendto(data, pair.remote_addr)

    def nominate(self, protocol: Protocol, remote: tuple[str, int]) -> None:
        candidate = next(c for c in self._remote_candidates if (c.host, c.port) == remote)
        self._nominated[1] = SimpleNamespace(
            protocol=protocol, remote_addr=remote, remote_candidate=candidate
        )


def remote(address: tuple[str, int], kind: str = "host") -> Any:
    return SimpleNamespace(host=address[0], port=address[1], component=1, type=kind)


async def test_every_datagram_but_stun_also_leaves_by_the_other_modem() -> None:
    modem_1, modem_2 = Protocol("10.201.0.1"), Protocol("10.201.0.4")
    connection = Connection([modem_1, modem_2], [remote(OPERATOR)])
    bonding = Bonding(connection, every_interface=True, every_address=False)
    connection.nominate(modem_1, OPERATOR)
    for datagram in (DTLS_RECORD, SRTP, STUN_REQUEST):
        await connection.sendto(datagram, 1)  # what aiortc calls, through aioice's send()
    assert modem_1.transport.sent == [
        (DTLS_RECORD, OPERATOR),
        (SRTP, OPERATOR),
        (STUN_REQUEST, OPERATOR),
    ]
    assert modem_2.transport.sent == [(DTLS_RECORD, OPERATOR), (SRTP, OPERATOR)]
    assert bonding.stats.copies == {"10.201.0.4 -> 10.201.0.3:40000": 2}
    assert bonding.stats.not_copied == 1
    # ICE may nominate another pair later: the copies follow it.
    connection.nominate(modem_2, OPERATOR)
    await connection.sendto(SRTP, 1)
    assert modem_1.transport.sent[-1] == (SRTP, OPERATOR)
    assert modem_2.transport.sent[-1] == (SRTP, OPERATOR)
    assert len(modem_2.transport.sent) == 3


async def test_nothing_is_copied_over_a_single_link() -> None:
    only = Protocol("10.201.0.1")
    connection = Connection([only], [remote(OPERATOR)])
    bonding = Bonding(connection, every_interface=True, every_address=True)
    connection.nominate(only, OPERATOR)
    await connection.sendto(SRTP, 1)
    assert only.transport.sent == [(SRTP, OPERATOR)]
    assert bonding.stats.copies == {}


def test_install_bonding_fails_loudly_when_aiortc_changes() -> None:
    dtls = SimpleNamespace(transport=SimpleNamespace(_connection=SimpleNamespace(sendto=None)))
    pc = SimpleNamespace(
        getTransceivers=lambda: [SimpleNamespace(sender=SimpleNamespace(transport=dtls))],
        sctp=None,
    )
    with pytest.raises(AiortcTransportError, match=r"shared/bond\.py"):
        install_bonding(pc, every_interface=True)


async def test_two_real_peers_talk_through_bonded_sends() -> None:
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    operator = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sent = vehicle.createDataChannel("d", negotiated=True, id=0)
        received = operator.createDataChannel("d", negotiated=True, id=0)
        arrived = asyncio.Event()
        received.on("message", lambda _message: arrived.set())
        opened = asyncio.Event()
        sent.on("open", opened.set)
        await vehicle.setLocalDescription(await vehicle.createOffer())
        vehicle_bond = install_bonding(vehicle, every_interface=True)
        await operator.setRemoteDescription(vehicle.localDescription)
        await operator.setLocalDescription(await operator.createAnswer())
        operator_bond = install_bonding(operator, every_address=True)
        await vehicle.setRemoteDescription(operator.localDescription)
        await asyncio.wait_for(opened.wait(), WAIT_S)
        sent.send("hello")
        await asyncio.wait_for(arrived.wait(), WAIT_S)
        for bond in (vehicle_bond, operator_bond):
            assert bond is not None
            # aiortc sends through the wrapper, which found aioice's state where it looks.
            assert bond.stats.not_copied + sum(bond.stats.copies.values()) > 0
    finally:
        await vehicle.close()
        await operator.close()


async def test_an_operator_copies_only_to_addresses_like_the_nominated_one() -> None:
    # Behind a carrier's NAT the vehicle's host addresses are private: with a server-reflexive
    # pair nominated, a copy goes to the other modem's reflexive address, never to a host one.
    socket = Protocol("10.201.0.3")
    modem_1, modem_2 = ("198.51.100.7", 40001), ("203.0.113.9", 40002)
    connection = Connection(
        [socket],
        [remote(("192.168.0.10", 50000)), remote(modem_1, "srflx"), remote(modem_2, "srflx")],
    )
    bonding = Bonding(connection, every_interface=False, every_address=True)
    connection.nominate(socket, modem_1)
    await connection.sendto(SRTP, 1)
    assert socket.transport.sent == [(SRTP, modem_1), (SRTP, modem_2)]
    assert list(bonding.stats.copies) == ["10.201.0.3 -> 203.0.113.9:40002"]


async def test_a_closed_socket_gets_no_copy() -> None:
    modem_1, modem_2 = Protocol("10.201.0.1"), Protocol("10.201.0.4")
    connection = Connection([modem_1, modem_2], [remote(OPERATOR)])
    Bonding(connection, every_interface=True, every_address=False)
    connection.nominate(modem_1, OPERATOR)
    modem_2.transport.closed = True
    await connection.sendto(SRTP, 1)
    assert modem_2.transport.sent == []
