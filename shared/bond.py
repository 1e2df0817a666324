"""Bonding: every datagram of a peer connection over two links at once.

A vehicle on one cellular modem cannot hold a 500 ms video-freeze bound every time: a fade
can take a lost packet's retransmission, and the keyframe asked for after it, as well as the
packet (README, "The 1200 km link, emulated"). Two modems on different networks fade
independently. Sending every datagram over both, and keeping the first copy to arrive, makes
a loss need both links at once.

The receiving side needs nothing new. aioice hands every datagram that is not STUN to the
connection, whatever address it came from, and DTLS and SRTP drop a copy whose sequence
number they have seen (their replay windows). So the sender does all the work: after ICE has
nominated a pair, each datagram it sends on that pair also goes over the *extra paths*:

- from each other local interface to the same remote address (``every_interface``: the
  vehicle, whose second interface is its second modem), and
- from the nominated socket to each other address the peer offered, of the nominated
  candidate's type (``every_address``: the operator, whose copies then reach the vehicle over
  its second modem).

One extra path by default (:data:`MAX_EXTRA_PATHS`: two modems). ``every_interface`` takes
the host's interfaces in aioice's order, so a vehicle that bonds is one whose interfaces are
its modems (the lab's is); a vehicle with other interfaces (Wi-Fi, a container bridge) would
need them named, which is not built.

Only DTLS and SRTP/SRTCP datagrams are copied (RFC 7983's first-byte ranges), never STUN: a
binding request from an unknown address would start new ICE checks at the peer. Consent
freshness (RFC 7675) stays on the nominated pair: when that link stays down for aioice's
30 s, the session ends and the vehicle re-dials.

A bonded vehicle says so in its offer (:data:`BOND_ATTRIBUTE`, a session-level SDP attribute
that aiortc ignores), and the operator bonds its answer's sending side only then: copies to
addresses a vehicle did not mean as paths could reach other hosts of the operator's network.

:func:`extra_paths` is the sans-I/O part (which paths, given the addresses);
:func:`install_bonding` puts it in front of aioice's ``Connection.sendto``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioice.ice import get_host_addresses

from teledrive.shared.handshake_resend import AiortcTransportError, dtls_and_ice_connection

logger = logging.getLogger(__name__)

BOND_ATTRIBUTE = "a=x-teledrive-bond"
"""The session-level SDP line by which a vehicle's offer asks the operator to bond."""
MAX_EXTRA_PATHS = 1
"""Extra paths per component by default: two modems, one extra copy of every datagram."""

Address = tuple[str, int]


def mark_offer(sdp: str) -> str:
    """An offer's SDP with :data:`BOND_ATTRIBUTE` added after its ``t=`` line.

    Raises:
        ValueError: the SDP has no ``t=`` line.
    """
    lines = sdp.split("\r\n")
    for index, line in enumerate(lines):
        if line.startswith("t="):
            lines.insert(index + 1, BOND_ATTRIBUTE)
            return "\r\n".join(lines)
    raise ValueError("bonding: the offer has no t= line to mark after")


def offer_is_bonded(sdp: str) -> bool:
    """Whether a vehicle's offer asks for bonding (has :data:`BOND_ATTRIBUTE` before its media)."""
    for line in sdp.splitlines():
        if line.startswith("m="):
            return False
        if line.strip() == BOND_ATTRIBUTE:
            return True
    return False


def local_addresses(remote_host: str | None) -> list[str]:
    """This host's addresses in the family of ``remote_host``: one per interface (modem).

    aioice's list, the one ICE gathers its host candidates from (loopback left out). A host
    name counts as IPv4. The vehicle dials the hub from each of them at once
    (:class:`~teledrive.shared.signaling.SignalingClient`'s ``source_addresses``), so its
    signaling, too, gets through while one modem is down.
    """
    ipv6 = remote_host is not None and _is_ipv6(remote_host)
    return get_host_addresses(use_ipv4=not ipv6, use_ipv6=ipv6)


def worth_copying(datagram: bytes) -> bool:
    """True for DTLS (first byte 20-63) and RTP/RTCP (128-191) datagrams; never STUN."""
    if not datagram:
        return False
    first = datagram[0]
    return 20 <= first <= 63 or 128 <= first <= 191


def extra_paths(
    nominated: tuple[int, Address],
    local_hosts: Sequence[str],
    remote_addresses: Sequence[Address],
    *,
    every_interface: bool,
    every_address: bool,
    max_extra: int = MAX_EXTRA_PATHS,
) -> list[tuple[int, Address]]:
    """The paths a datagram takes besides the nominated pair.

    Args:
        nominated: the nominated pair: (index of its local socket in ``local_hosts``, remote
            address).
        local_hosts: the host address of each local socket, in order.
        remote_addresses: the peer's candidate addresses.
        every_interface: add a path from each local socket on another host address to the
            nominated remote address.
        every_address: add a path from the nominated socket to each other remote address.
        max_extra: most paths returned, interfaces first.

    Returns:
        ``(local socket index, remote address)`` pairs, without duplicates, never the
        nominated pair, at most one per local host address or remote host, and only between
        addresses of one family (an IPv6 socket cannot send to an IPv4 address).
    """
    local_index, remote = nominated
    family = _is_ipv6(remote[0])
    paths: list[tuple[int, Address]] = []
    if every_interface:
        seen_hosts = {local_hosts[local_index]}
        for index, host in enumerate(local_hosts):
            if host not in seen_hosts and _is_ipv6(host) == family:
                seen_hosts.add(host)
                paths.append((index, remote))
    if every_address:
        seen_remote_hosts = {remote[0]}
        for address in remote_addresses:
            if address[0] not in seen_remote_hosts and _is_ipv6(address[0]) == family:
                seen_remote_hosts.add(address[0])
                paths.append((local_index, address))
    return paths[: max(0, max_extra)]


def _is_ipv6(host: str) -> bool:
    return ":" in host


@dataclass
class BondStats:
    """What bonding sent.

    Attributes:
        copies: extra copies sent, per path (``"local host -> remote host:port"``).
        not_copied: datagrams sent on the nominated pair only (STUN, or no extra path).
    """

    copies: dict[str, int] = field(default_factory=dict)
    not_copied: int = 0


class Bonding:
    """Sends every DTLS/SRTP datagram of one aioice connection over the extra paths too.

    Made by :func:`install_bonding`; it replaces the connection's ``sendto`` for its lifetime.

    Args:
        connection: the aioice ``Connection``.
        every_interface: see :func:`extra_paths`.
        every_address: see :func:`extra_paths`.
        max_extra: see :func:`extra_paths`.
    """

    def __init__(
        self,
        connection: Any,
        *,
        every_interface: bool,
        every_address: bool,
        max_extra: int = MAX_EXTRA_PATHS,
    ) -> None:
        self._connection = connection
        self._every_interface = every_interface
        self._every_address = every_address
        self._max_extra = max_extra
        self._original: Callable[[bytes, int], Awaitable[None]] = connection.sendto
        # component -> (the nominated pair, socket and remote candidate counts, the paths)
        self._plans: dict[int, tuple[Any, tuple[int, int], list[tuple[Any, Address, str]]]] = {}
        self.stats = BondStats()
        connection.sendto = self.sendto

    async def sendto(self, data: bytes, component: int) -> None:
        """Send on the nominated pair (as aioice does), then a copy on each extra path."""
        await self._original(data, component)
        paths = self._paths(component) if worth_copying(data) else []
        if not paths:
            self.stats.not_copied += 1
            return
        for protocol, address, name in paths:
            transport = protocol.transport
            if transport.is_closing():  # that socket is closed
                continue
            transport.sendto(data, address)
            self.stats.copies[name] = self.stats.copies.get(name, 0) + 1

    def _paths(self, component: int) -> list[tuple[Any, Address, str]]:
        connection = self._connection
        pair = connection._nominated.get(component)
        if pair is None:
            return []
        # Once per datagram, so only a cheap look: aioice adds sockets and remote candidates
        # and never changes them, and a new nomination is a new pair.
        sizes = (len(connection._protocols), len(connection._remote_candidates))
        cached = self._plans.get(component)
        if cached is not None and cached[0] is pair and cached[1] == sizes:
            return cached[2]
        # Host sockets only (one per interface; a TURN relay is no modem), and only remote
        # candidates of the nominated one's type: behind a carrier's NAT (srflx nominated) a
        # vehicle's host address is private, and a copy sent there could reach another host.
        protocols = [
            p
            for p in connection._protocols
            if p.local_candidate.component == component and p.local_candidate.type == "host"
        ]
        remote_type = pair.remote_candidate.type
        remotes = [
            (c.host, c.port)
            for c in connection._remote_candidates
            if c.component == component and c.type == remote_type
        ]
        if pair.protocol not in protocols:
            plan: list[tuple[Any, Address, str]] = []
        else:
            chosen = extra_paths(
                (protocols.index(pair.protocol), tuple(pair.remote_addr)),
                [p.local_candidate.host for p in protocols],
                remotes,
                every_interface=self._every_interface,
                every_address=self._every_address,
                max_extra=self._max_extra,
            )
            plan = [
                (
                    protocols[index],
                    address,
                    f"{protocols[index].local_candidate.host} -> {address[0]}:{address[1]}",
                )
                for index, address in chosen
            ]
            nominated = f"{pair.protocol.local_candidate.host} -> {pair.remote_addr[0]}"
            extra = ", ".join(name for _, _, name in plan) or "none (no other path)"
            logger.info("bonding: nominated %s; every datagram also goes %s", nominated, extra)
        self._plans[component] = (pair, sizes, plan)
        return plan


def install_bonding(
    pc: Any,
    *,
    every_interface: bool = False,
    every_address: bool = False,
    max_extra: int = MAX_EXTRA_PATHS,
) -> Bonding | None:
    """Bond a peer connection's sending side (see the module docstring).

    Call it once the connection has its ICE transport (after the local description is set),
    before ICE completes; the copies start when a pair is nominated.

    Args:
        pc: an ``aiortc.RTCPeerConnection``.
        every_interface: copy from each other local interface (the vehicle's modems).
        every_address: copy to each other address the peer offered (the operator).
        max_extra: most extra paths.

    Returns:
        The bonding, or None when the connection has no transport yet.

    Raises:
        AiortcTransportError: aiortc's or aioice's private state is not as expected.
    """
    found = dtls_and_ice_connection(pc)
    if found is None:
        return None
    _dtls, connection = found
    if not all(
        hasattr(connection, name)
        for name in ("sendto", "_nominated", "_protocols", "_remote_candidates")
    ):
        raise AiortcTransportError(
            "aiortc/aioice internals changed: RTCIceTransport._connection has no sendto,"
            " _nominated, _protocols or _remote_candidates; shared/bond.py must be updated"
        )
    return Bonding(
        connection,
        every_interface=every_interface,
        every_address=every_address,
        max_extra=max_extra,
    )
