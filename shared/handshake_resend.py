"""Early re-sends while a peer connection's handshakes run (ICE checks, DTLS), for lossy links.

aioice retransmits a lost connectivity check after 500 ms and OpenSSL a lost DTLS flight after
1 s. Over a long, lossy link (a 250 ms round trip, a few per cent loss) a reconnect needs about
ten datagrams to cross, and one of them lost costs half a second to a second: the difference
between a first picture within 2 s of the link's return and one after. While the handshakes
run, :class:`HandshakeResender` re-sends what is still unanswered: once after
:data:`EARLY_COPY_MS` (past a typical fade), then after ``resend_after_ms`` (about a round trip
and a half), up to ``copies`` times in all: a STUN request until its
response comes (same transaction id), a DTLS datagram until new DTLS comes back from that
address. The copies are exact: a receiver drops one it already has (STUN by transaction id,
DTLS by record sequence number). A DTLS flight the peer sends again (its own copy, or OpenSSL's
retransmission) is not an answer but the sign that ours was lost: what is pending for that
address goes out again at once, and once more :data:`EARLY_COPY_MS` later in case the fade
that took ours is still on. (OpenSSL answers a repeated flight only when its own 1 s timer
runs out; taking the repeat for an answer cost a bad-cell reconnect that second.) Media
(RTP, RTCP) is never repeated. The resender removes itself once DTLS is connected, the data
channels' SCTP association is up (when the connection has one), and no DTLS datagram of its own
waits for an answer. The side whose DTLS completes first (the server) sent a final flight that
only the peer's next DTLS answers, and if that flight is lost the peer stays in its handshake.
The association's own handshake (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK; both peers start one,
RFC 8841) then goes as DTLS application data, and aiortc sends a lost chunk of it again only
after its initial retransmission timeout: two lost in one fade held a bad-cell session's data
channels for four seconds while its video flowed, and the vehicle gave the session up as silent
(``teledrive.vehicle.redial``). Until the resender is done, DTLS application data is tracked and
re-sent like a flight.

:class:`ResendPlan` is the decision (datagrams and a clock in, datagrams to re-send out);
:func:`install_handshake_resender` puts it between a peer connection and its UDP sockets. That
reaches into aiortc's and aioice's private state (``RTCIceTransport._connection``, the aioice
connection's ``_protocols``, each protocol's ``transport``), like the video receive path does,
and fails loudly when it changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from teledrive.shared.errors import ConfigError, TeledriveError
from teledrive.shared.handshake_datagrams import Address, dtls_records, handshake_key

log = logging.getLogger(__name__)


DEFAULT_RESEND_AFTER_MS = 300.0
"""Wait before a re-send when the round trip is not known (a bad cell's is about 250 ms)."""
MIN_RESEND_AFTER_MS = 60.0
"""Least wait: a peer needs a moment to answer (a DTLS flight is signed)."""
DEFAULT_COPIES = 4
"""Re-sends of one datagram at most: the early copy and up to three after round trips, or,
when the peer's flight comes again, a copy at once and an early one, and round trips after.
(The peer's own early copy often arrives after ours went and counts as a repeat: with three
copies, all of them could go within ~200 ms, inside one long fade.)"""
EARLY_COPY_MS = 100.0
"""The first re-send goes this soon, whatever the round trip: a fade (50 ms on average under
``bad-cell``) that took the datagram is mostly over by then (it outlasts 100 ms one time in
seven), so a lost datagram costs 100 ms instead of a round trip and a half (~370 ms there). On
a short round trip the answer usually comes first and cancels it."""
SCTP_INITIAL_RTO_S = 1.0
"""The data channels' SCTP association starts its retransmission timeout here, not at aiortc's
3 s (RFC 4960's RTO.Initial): its handshake chunks and first data are sent again after a
second when lost. TCP went from 3 s to 1 s for the same reason (RFC 6298); it is also aiortc's
least RTO, where a measured round trip under a second takes it anyway."""
MAX_PENDING = 16
"""Unanswered datagrams remembered per address (a DTLS flight is a few)."""
GIVE_UP_S = 15.0
"""The resender removes itself after this long even if the handshakes never ended."""


class AiortcTransportError(TeledriveError, RuntimeError):
    """aiortc's or aioice's transports no longer look the way this module expects."""


def resend_after_ms(rtt_ms: float | None) -> float:
    """The wait before a re-send for a measured round trip (None: not measured yet)."""
    if rtt_ms is None or not rtt_ms >= 0.0:
        return DEFAULT_RESEND_AFTER_MS
    return max(MIN_RESEND_AFTER_MS, 1.5 * rtt_ms)


MAX_SEEN_RECORDS = 64
"""DTLS records remembered per address, to tell a repeated flight from a new one."""
REPEAT_SPACING_MS = 20.0
"""Least time between a datagram and its copy sent for a repeat of the peer's flight."""
MAX_SEEN_ADDRESSES = 8
"""Addresses whose DTLS records are remembered (the peer's, and any stray sender's)."""


@dataclass(slots=True)
class _Pending:
    data: bytes
    sent_ms: float
    records: list[tuple[object, ...]]  # dtls_records(data), for DTLS (parsed once)
    resends: int = 0
    early: bool = True  # the next timed copy waits early_copy_ms (after a loss just seen)


def _copy(
    addr: Address, item: _Pending, now_ms: float, *, early_next: bool
) -> tuple[Address, bytes]:
    """Counts one more copy of ``item`` sent now; returns what to send."""
    item.resends += 1
    item.sent_ms = now_ms
    item.early = early_next
    return (addr, item.data)


@dataclass(slots=True)
class ResendStats:
    """What the resender did."""

    sent: int = 0
    """Datagrams that wait for an answer (STUN requests, DTLS)."""
    received: int = 0
    """Answers that settled some of them."""
    resent: int = 0
    """Copies sent (early, after a round trip and a half, or for a repeat)."""
    repeats_received: int = 0
    """DTLS flights the peer sent again (each re-sends what waits for it at once)."""


@dataclass
class ResendPlan:
    """Which datagrams to send again, and when (sans-I/O).

    Args:
        resend_after_ms: how long an address may stay silent after a datagram before it is
            sent again (> 0).
        copies: re-sends of one datagram at most (>= 0).
        early_copy_ms: the first re-send's wait if shorter than ``resend_after_ms`` (> 0), or
            None to wait ``resend_after_ms`` for every re-send. A copy sent at once for a
            repeat of the peer's flight is also followed by one after this wait.

    Raises:
        ConfigError: a value out of range.
    """

    resend_after_ms: float = DEFAULT_RESEND_AFTER_MS
    copies: int = DEFAULT_COPIES
    early_copy_ms: float | None = EARLY_COPY_MS
    stats: ResendStats = field(default_factory=ResendStats)
    _pending: dict[tuple[str, object], list[tuple[Address, _Pending]]] = field(default_factory=dict)
    _seen: dict[tuple[Address, object], dict[tuple[object, ...], None]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if not self.resend_after_ms > 0.0 or self.copies < 0:
            raise ConfigError(
                "handshake resender: need resend_after_ms > 0 and copies >= 0, got "
                f"{self.resend_after_ms} and {self.copies}"
            )
        if self.early_copy_ms is not None and not self.early_copy_ms > 0.0:
            raise ConfigError(
                f"handshake resender: early_copy_ms must be > 0 or None, got {self.early_copy_ms}"
            )

    def _wait_ms(self, item: _Pending) -> float:
        if item.early and self.early_copy_ms is not None:
            return min(self.early_copy_ms, self.resend_after_ms)
        return self.resend_after_ms

    def on_sent(self, addr: Address, data: bytes, now_ms: float) -> bool:
        """A datagram went to ``addr``; True if it waits for an answer (a timer may be due)."""
        key = handshake_key(addr, data, sent=True)
        if key is None:
            return False
        pending = self._pending.setdefault(key, [])
        records = dtls_records(data) if key[0] == "dtls" else []
        for _addr, item in pending:
            if item.data == data or (records and item.records == records):
                return False  # the stack's own retransmission of what is already pending
        self.stats.sent += 1
        pending.append((addr, _Pending(data, now_ms, records)))
        del pending[:-MAX_PENDING]
        return True

    def on_received(
        self, addr: Address, data: bytes, now_ms: float, *, via: object = None
    ) -> list[tuple[Address, bytes]]:
        """A datagram came from ``addr``: it may answer some of what was sent.

        ``via`` names the local socket it came in on. A repeat counts only on one socket: a
        bonded peer (``shared/bond.py``) sends each datagram to each of this host's addresses,
        and the copy on the other socket repeats nothing.

        Returns:
            What to send again now: the DTLS pending for ``addr`` when the datagram repeats a
            DTLS flight the peer sent before (ours did not get there). Counted as re-sent.
        """
        key = handshake_key(addr, data, sent=False)
        if key is None:
            return []
        if key[0] == "dtls" and self._repeats((addr, via), data):
            self.stats.repeats_received += 1
            log.debug(
                "handshake: %d B of DTLS from %s:%d repeat what came before", len(data), *addr
            )
            return self._resend_now(key, now_ms)
        if key[0] == "dtls" and self._came_on_another_socket(addr, via, data):
            return []  # a bonded peer's copy: neither a repeat nor an answer
        if self._pending.pop(key, None) is not None:
            self.stats.received += 1
            log.debug(
                "handshake: %d B (%d) from %s:%d answer what was sent", len(data), data[0], *addr
            )
        return []

    def _came_on_another_socket(self, addr: Address, via: object, data: bytes) -> bool:
        """Whether every record of a DTLS datagram came from ``addr`` on another socket."""
        records = dtls_records(data)
        return bool(records) and any(
            source[0] == addr and source[1] != via and all(r in seen for r in records)
            for source, seen in self._seen.items()
        )

    def _repeats(self, source: tuple[Address, object], data: bytes) -> bool:
        """Whether every record of a DTLS datagram came from ``source`` before (remembers them).

        ``source``: the peer's address and the local socket it came in on.
        """
        records = dtls_records(data)
        seen = self._seen.pop(source, {})  # re-inserted last: the oldest source comes first
        self._seen[source] = seen
        for old_addr in list(self._seen)[: max(0, len(self._seen) - MAX_SEEN_ADDRESSES)]:
            del self._seen[old_addr]
        repeat = bool(records) and all(record in seen for record in records)
        for record in records:
            seen.pop(record, None)
            seen[record] = None
        for old in list(seen)[: max(0, len(seen) - MAX_SEEN_RECORDS)]:
            del seen[old]
        return repeat

    def _resend_now(self, key: tuple[str, object], now_ms: float) -> list[tuple[Address, bytes]]:
        # Not again within REPEAT_SPACING_MS: repeats arriving together (a flight of several
        # datagrams) would otherwise spend every copy at once, all in the same fade.
        out = []
        for addr, item in self._pending.get(key, []):
            if item.resends < self.copies and now_ms - item.sent_ms >= REPEAT_SPACING_MS:
                # The repeat says ours was lost just now: the fade that took it may still be
                # on, so the next copy follows early too, not a round trip and a half later.
                out.append(_copy(addr, item, now_ms, early_next=True))
        self.stats.resent += len(out)
        return out

    def due(self, now_ms: float) -> list[tuple[Address, bytes]]:
        """The datagrams to send again now (each counted as re-sent)."""
        out = []
        for pending in self._pending.values():
            for addr, item in pending:
                if item.resends < self.copies and now_ms - item.sent_ms >= self._wait_ms(item):
                    out.append(_copy(addr, item, now_ms, early_next=False))
        self.stats.resent += len(out)
        return out

    def forget(self) -> None:
        """Drop what is pending and what was seen (the resender is done)."""
        self._pending.clear()
        self._seen.clear()

    def dtls_waiting(self) -> bool:
        """Whether a DTLS datagram still waits for an answer and may be re-sent."""
        return any(
            item.resends < self.copies
            for key, pending in self._pending.items()
            if key[0] == "dtls"
            for _addr, item in pending
        )

    def next_due_ms(self) -> float | None:
        """When :meth:`due` next has something, or None."""
        times = [
            item.sent_ms + self._wait_ms(item)
            for pending in self._pending.values()
            for _addr, item in pending
            if item.resends < self.copies
        ]
        return min(times) if times else None


class _ResendingTransport:
    """Stands in for one aioice socket's asyncio transport: sends, and remembers for the plan."""

    def __init__(self, inner: Any, on_sent: Callable[[Address, bytes], None]) -> None:
        self._inner = inner
        self._on_sent = on_sent

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._inner.sendto(data, addr)
        if addr is not None:
            self._on_sent((addr[0], addr[1]), bytes(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class HandshakeResender:
    """Re-sends unanswered handshake datagrams of one peer connection until its handshakes end.

    Done: DTLS connected, the SCTP association (if any) up, and no DTLS datagram of its own
    still unanswered; or DTLS failed or closed; or ``give_up_s`` passed. Made by
    :func:`install_handshake_resender`; :meth:`remove` puts everything back.
    """

    def __init__(
        self,
        plan: ResendPlan,
        protocols: list[Any],
        dtls: Any,
        *,
        association: Any = None,
        give_up_s: float = GIVE_UP_S,
    ) -> None:
        self.plan = plan
        self._protocols = protocols
        self._dtls = dtls
        self._association = association
        """The connection's ``RTCSctpTransport`` (None: no data channels)."""
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._send: dict[Address, Any] = {}
        self._removed = False
        self._connected = False
        self.removed_event = asyncio.Event()
        """Set when it removed itself (or was removed)."""
        for protocol in protocols:
            inner = protocol.transport
            protocol.transport = _ResendingTransport(inner, functools.partial(self._sent, inner))
            received = protocol.datagram_received

            def on_datagram(
                data: Any, addr: Any, received: Any = received, via: int = id(protocol)
            ) -> None:
                again = self.plan.on_received(
                    (addr[0], addr[1]), bytes(data), self._now_ms(), via=via
                )
                received(data, addr)
                if again:
                    self._send_all(again)
                if self._connected:
                    self._remove_if_settled()

            protocol.datagram_received = on_datagram
        dtls.on("statechange", self._on_dtls_state)
        self._give_up = self._loop.call_later(give_up_s, self.remove)

    @property
    def removed(self) -> bool:
        """Whether it stopped (handshakes done and answered, DTLS failed or closed, gave up)."""
        return self._removed

    def _now_ms(self) -> float:
        return self._loop.time() * 1000.0

    def _sent(self, inner: Any, addr: Address, data: bytes) -> None:
        self._send[addr] = inner
        if self.plan.on_sent(addr, data, self._now_ms()):
            self._schedule()  # (media passes by without touching the timer)

    def _schedule(self) -> None:
        if self._removed:
            return
        due_ms = self.plan.next_due_ms()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due_ms is not None:
            delay_s = max(0.0, due_ms - self._now_ms()) / 1000.0
            self._timer = self._loop.call_later(delay_s, self._resend)

    def _resend(self) -> None:
        self._timer = None
        self._send_all(self.plan.due(self._now_ms()))
        if self._connected:
            self._remove_if_settled()

    def _send_all(self, datagrams: list[tuple[Address, bytes]]) -> None:
        if datagrams and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "handshake: re-sending %s",
                ", ".join(
                    f"{len(data)} B ({data[0]}) to {addr[0]}:{addr[1]}" for addr, data in datagrams
                ),
            )
        for addr, data in datagrams:
            inner = self._send.get(addr)
            if inner is not None and not inner.is_closing():
                inner.sendto(data, addr)
        self._schedule()

    def _on_dtls_state(self) -> None:
        state = self._dtls.state
        if state == "connected":
            self._connected = True
            self._remove_if_settled()
        elif state in ("failed", "closed"):
            self.remove()

    def _remove_if_settled(self) -> None:
        # (aiortc processes a datagram after it is handed on, so the association may come up
        # just after the datagram that brought it; the next datagram or re-send looks again.)
        association_up = self._association is None or self._association.state == "connected"
        if not self._removed and association_up and not self.plan.dtls_waiting():
            self.remove()

    def remove(self) -> None:
        """Stops re-sending and gives the sockets back their own transport and receiver."""
        if self._removed:
            return
        self._removed = True
        if self._timer is not None:
            self._timer.cancel()
        self._give_up.cancel()
        self._dtls.remove_listener("statechange", self._on_dtls_state)
        for protocol in self._protocols:
            wrapper = protocol.transport
            if isinstance(wrapper, _ResendingTransport):
                protocol.transport = wrapper._inner
            # The instance attribute shadows the class's method: dropping it restores that.
            protocol.__dict__.pop("datagram_received", None)
        self.plan.forget()
        self.removed_event.set()
        if self.plan.stats.resent:
            log.info("handshake: %s", self.plan.stats)


def shorten_initial_rto(association: Any, rto_s: float = SCTP_INITIAL_RTO_S) -> None:
    """Starts an SCTP association's retransmission timeout at ``rto_s`` (before it starts).

    Args:
        association: an ``aiortc.RTCSctpTransport`` not started yet.
        rto_s: the initial retransmission timeout in seconds.

    Raises:
        AiortcTransportError: aiortc keeps its timeout somewhere else now.
    """
    current = getattr(association, "_rto", None)
    if not isinstance(current, (int, float)):
        raise AiortcTransportError(
            "aiortc internals changed: RTCSctpTransport._rto not found;"
            " shorten_initial_rto must be updated"
        )
    association._rto = min(float(current), rto_s)


def dtls_and_ice_connection(pc: Any) -> tuple[Any, Any] | None:
    """A peer connection's DTLS transport and the aioice connection under it.

    The first transceiver's (or the data channels') DTLS transport: aiortc bundles every
    media and the data channels over one. The connection is private state
    (``RTCIceTransport._connection``), None when aiortc no longer keeps it there; callers check
    the attributes they need.

    Returns:
        ``(RTCDtlsTransport, aioice Connection or None)``, or None when the peer connection
        has no transport yet (before its first description).
    """
    dtls = None
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        break
    if dtls is None and pc.sctp is not None:
        dtls = pc.sctp.transport
    if dtls is None:
        return None
    return dtls, getattr(getattr(dtls, "transport", None), "_connection", None)


def install_handshake_resender(
    pc: Any,
    *,
    rtt_ms: float | None = None,
    copies: int = DEFAULT_COPIES,
    early_copy_ms: float | None = EARLY_COPY_MS,
    give_up_s: float = GIVE_UP_S,
) -> HandshakeResender | None:
    """Re-sends a peer connection's unanswered handshake datagrams until its handshakes end.

    Call it right after ``setLocalDescription`` (aiortc gathers its ICE candidates, and so
    opens its sockets, there). With data channels, it also starts their SCTP association's
    retransmission timeout at :data:`SCTP_INITIAL_RTO_S` (:func:`shorten_initial_rto`).

    Args:
        pc: an ``aiortc.RTCPeerConnection``.
        rtt_ms: the round trip to the peer if known (the wait before a re-send follows it).
        copies: re-sends of one datagram at most.
        early_copy_ms: the first re-send's wait, if shorter than the round trip's (None:
            none early).
        give_up_s: when the handshakes are not done by then, stop and put the sockets back.

    Returns:
        The resender, or None when the connection has no transport yet (nothing to do).

    Raises:
        AiortcTransportError: aiortc's or aioice's private state is not as expected.
    """
    found = dtls_and_ice_connection(pc)
    if found is None:
        return None
    dtls, connection = found
    protocols = getattr(connection, "_protocols", None)
    if not isinstance(protocols, list) or not all(
        hasattr(p, "transport") and hasattr(p, "datagram_received") for p in protocols
    ):
        raise AiortcTransportError(
            "aiortc/aioice internals changed: RTCIceTransport._connection._protocols not found;"
            " install_handshake_resender must be updated"
        )
    plan = ResendPlan(
        resend_after_ms=resend_after_ms(rtt_ms), copies=copies, early_copy_ms=early_copy_ms
    )
    if pc.sctp is not None:
        shorten_initial_rto(pc.sctp)
    return HandshakeResender(plan, list(protocols), dtls, association=pc.sctp, give_up_s=give_up_s)
