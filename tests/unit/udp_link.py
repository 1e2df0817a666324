"""A UDP relay between two aiortc peers, for tests: it can stall, and drop chosen datagrams.

Each peer is told, in the other's session description, that its peer is at one of the relay's
sockets (:meth:`StallableLink.route`), so everything between them crosses the relay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

HOST = "127.0.0.1"


class _Side(asyncio.DatagramProtocol):
    """One socket of the relay: where one peer is told the other peer is."""

    def __init__(self, link: StallableLink, stands_for: str) -> None:
        self.link = link
        self.stands_for = stands_for
        self.transport: asyncio.DatagramTransport | None = None
        self.sender: tuple[str, int] | None = None  # the other peer, as seen sending here

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sender = addr
        self.link.arrived(self, data)


class StallableLink:
    """A UDP relay between two aiortc peers that can stall.

    While stalled it holds every datagram, and on release sends them all in order: a radio
    outage with queueing (a cellular handover), during which nothing is lost and nothing is
    acknowledged. Each peer is told, in the other's session description, that its peer is at
    one of the relay's sockets.
    """

    def __init__(
        self, drop: Callable[[str, bytes], bool] | None = None, *, delay_s: float = 0.0
    ) -> None:
        self.drop = drop
        """Called with (the peer a datagram goes to, the datagram): True drops it."""
        self.delay_s = delay_s
        """One-way delay added to every datagram (a long link's round trip is twice it)."""
        self._delayed: set[asyncio.TimerHandle] = set()
        self.dropped = 0
        self.stalled = False
        self.held: deque[tuple[_Side, bytes]] = deque()
        self.held_total = 0
        self._sides: dict[str, _Side] = {}
        self._advertised: dict[str, tuple[str, int]] = {}

    async def open(self) -> None:
        for peer in ("vehicle", "operator"):
            self._sides[peer] = await self._bind(peer)

    async def _bind(self, peer: str) -> _Side:
        side = _Side(self, peer)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: side, local_addr=(HOST, 0))
        return side

    def close(self) -> None:
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        for side in self._sides.values():
            if side.transport is not None:
                side.transport.close()

    def route(self, peer: str, sdp: str) -> str:
        """``peer``'s session description with its one IPv4 host candidate on the relay."""
        transport = self._sides[peer].transport
        assert transport is not None
        relay_host, relay_port = transport.get_extra_info("sockname")[:2]
        kept: list[str] = []
        for line in sdp.split("\r\n"):
            fields = line.split()
            if not line.startswith("a=candidate:"):
                kept.append(line)
            elif peer not in self._advertised and fields[2].lower() == "udp" and "." in fields[4]:
                self._advertised[peer] = (fields[4], int(fields[5]))
                fields[4:6] = [relay_host, str(relay_port)]
                kept.append(" ".join(fields))
        assert peer in self._advertised, f"no IPv4 UDP candidate from the {peer}"
        return "\r\n".join(kept)

    def stall(self) -> None:
        self.stalled = True

    def release(self) -> None:
        self.stalled = False
        while self.held:
            self._forward(*self.held.popleft())

    def arrived(self, side: _Side, data: bytes) -> None:
        if self.stalled:
            self.held.append((side, data))
            self.held_total += 1
        elif self.delay_s > 0.0:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle

            def forward() -> None:
                self._delayed.discard(handle)
                self._forward(side, data)

            handle = loop.call_later(self.delay_s, forward)
            self._delayed.add(handle)
        else:
            self._forward(side, data)

    def _forward(self, came_in: _Side, data: bytes) -> None:
        if self.drop is not None and self.drop(came_in.stands_for, data):
            self.dropped += 1
            return
        # Sent to the socket standing for peer X: it leaves through the socket standing for
        # the sender, so X sees it come from where it was told its peer is.
        out = next(side for side in self._sides.values() if side is not came_in)
        to = out.sender or self._advertised[came_in.stands_for]
        assert out.transport is not None
        out.transport.sendto(data, to)
