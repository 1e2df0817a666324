"""The operations hub: registry, presence and signaling relay over websockets.

Vehicles and operators dial in, send ``Register`` (in the upgrade request's header, see
:mod:`~teledrive.shared.register_header`, or as the first message) and get ``Registered``.
Operators list the vehicles, are pushed ``Presence`` changes and ask to ``Connect`` to one;
the hub then opens a session and relays ``Offer``/``Answer``/``Candidate``/``Bye`` between its
two members. Media and drive commands never pass through the hub: they go peer to peer over
WebRTC.

Policy, in one place each (so authentication and control leases can be added there):

* :meth:`Hub._admit` decides who may register (today: the protocol version).
* :meth:`Hub._may_control` decides whether an operator may open a session with a vehicle
  (today: the vehicle is not in a session with another operator).

A client registering with an id that is already online *replaces* the old connection: after a
network cut the old socket is usually a zombie that the heartbeat has not yet timed out, and
refusing the newcomer would lock a vehicle out for several seconds. The old connection's
session is ended with ``Bye`` to both members, and the old socket is closed with
:data:`~teledrive.shared.signaling.CLOSE_REPLACED`. Connections a client dialled together for
one registration (``Register.dial``, carried in the upgrade request) do not replace each
other: the first to arrive registers, the others are refused as duplicates. An operator is in
at most one session: connecting again (to the same or another vehicle) ends its previous
session first.

A vehicle that re-dials after losing its operator registers with an offer made ahead
(``Register.offer``). The hub keeps it for :data:`OFFER_AHEAD_TTL_S` and opens the next session
with it: the vehicle hears ``Connect(offer_ahead=True)`` and the operator the offer, in the
same step, which saves the session a round trip over the vehicle's (long) link.

All protocol decisions run synchronously within one event-loop step; every outgoing message
goes through a per-connection queue drained by its own writer task, so one slow or dead peer
never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import secrets
import signal
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Final, Literal, NamedTuple

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from teledrive.operator.presence import (
    MemoryPresence,
    PeerRecord,
    PresenceStore,
    Role,
    SessionRecord,
)
from teledrive.shared.errors import ConfigError, ProtocolError
from teledrive.shared.messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
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
    VehicleInfo,
    VehicleList,
    decode_signal,
    encode_text,
    message_type,
)
from teledrive.shared.register_header import (
    DUPLICATE,
    RECEIVED,
    REFUSED,
    REGISTER_HEADER,
    decode_register_header,
)
from teledrive.shared.signaling import CLOSE_REFUSED, CLOSE_REPLACED
from teledrive.shared.tail_probe import TAIL_PROBE_DELAYS_MS, TailProber, check_delays

logger = logging.getLogger(__name__)

DEFAULT_LISTEN: Final = "127.0.0.1:8765"
"""Where ``teledrive hub`` listens unless told otherwise: loopback only."""

HEALTH_PATH: Final = "/healthz"
MISSED_PONGS: Final = 3
"""A peer is dropped when no pong came back within this many heartbeat intervals."""
OUTBOX_MAX_MESSAGES: Final = 256
"""A peer that falls this far behind on reading is cut off."""
TEXT_MAX_CHARS: Final = 1024
"""Longest ``Text`` field of messages.py; longer error texts are clipped to it."""
OFFER_AHEAD_TTL_S: Final = 5.0
"""How long a vehicle's offer made ahead is used: its ICE candidates may age (a new cell)."""

RefusalCode = Literal["not_registered", "version"]


@dataclass
class _Counters:
    registrations: int = 0
    registered_in_upgrade: int = 0
    duplicate_dials: int = 0
    replaced: int = 0
    refused: int = 0
    register_timeouts: int = 0
    sessions_opened: int = 0
    offers_ahead_used: int = 0
    relayed: int = 0
    bad_messages: int = 0
    errors_sent: int = 0
    client_errors: int = 0
    disconnects: int = 0
    stale_frames: int = 0


class _BadHeader(NamedTuple):
    """An upgrade request's ``Register`` header that could not be read (the error's text)."""

    text: str


class _Refused(NamedTuple):
    """An upgrade request's ``Register`` that :meth:`Hub._admit` refuses, and why."""

    register: Register
    reason: str


_InUpgrade = Register | _Refused | _BadHeader | Literal["duplicate"]
"""What an opening connection's upgrade request carried: a ``Register`` to register, one the
hub refuses, one that another connection of the same ``dial`` registered first, or an
unreadable header."""


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 3] + "..."


def _peek_type(raw: str | bytes) -> str | None:
    """The ``type`` tag of a message that failed to decode, if it has a readable one."""
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    tag = obj.get("type") if isinstance(obj, dict) else None
    return _clip(tag) if isinstance(tag, str) else None


def _unregistered(ws: ServerConnection) -> str:
    """Names a connection that has not registered yet, for error messages."""
    return f"hub: from {_address(ws)} (unregistered)"


def _address(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class _Link:
    """A registered connection: its peer record and an outgoing queue with a writer task."""

    def __init__(
        self, ws: ServerConnection, peer: PeerRecord, tail_probes_ms: Sequence[float]
    ) -> None:
        self.ws = ws
        self.peer = peer
        self.label = f"{peer.role} {peer.id!r}"
        self.offer_ahead: tuple[str, float] | None = None
        """A vehicle's offer made ahead of the next session, and when it came (hub clock)."""
        self._outbox: asyncio.Queue[str | tuple[int, str]] = asyncio.Queue(OUTBOX_MAX_MESSAGES)
        self._closing = False
        self._probes = TailProber(ws.ping, tail_probes_ms)
        self._writer = asyncio.create_task(self._write(), name=f"hub-writer {self.label}")

    @property
    def key(self) -> tuple[Role, str]:
        return (self.peer.role, self.peer.id)

    def send(self, message: Message) -> None:
        """Queues a message; never blocks."""
        self._put(encode_text(message))

    def close(self, code: int, reason: str) -> None:
        """Closes the connection after the messages already queued."""
        self._put((code, reason))
        self._closing = True

    async def stop(self) -> None:
        """Stops the writer (the connection is gone)."""
        self._probes.stop()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    def _put(self, item: str | tuple[int, str]) -> None:
        if self._closing:
            return
        try:
            self._outbox.put_nowait(item)
        except asyncio.QueueFull:
            logger.warning("hub: %s reads too slowly, cutting it off", self.label)
            self._closing = True
            self.ws.transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, tuple):
                    await self.ws.close(*item)
                    return
                await self.ws.send(item)
                self._probes.sent()
        except ConnectionClosed:
            return


class Hub:
    """Signaling hub for vehicles and operators.

    Args:
        presence: where presence and sessions are kept; in memory by default.
        heartbeat_s: websocket ping interval, in (0, 1] s; a peer is dropped after
            :data:`MISSED_PONGS` intervals without a pong.
        register_timeout_s: how long a new connection may take to send ``Register``.
        tail_probes_ms: pings after the last message of a burst to a peer, in ms after it
            (see :mod:`~teledrive.shared.tail_probe`); empty for none.
        clock: monotonic seconds (the age of offers made ahead).

    Use it as an async context manager that stops it on exit::

        async with Hub() as hub:
            await hub.serve("127.0.0.1", 0)  # returns once listening
            print(hub.bound_port)
    """

    def __init__(
        self,
        *,
        presence: PresenceStore | None = None,
        heartbeat_s: float = 1.0,
        register_timeout_s: float = 5.0,
        tail_probes_ms: Sequence[float] = TAIL_PROBE_DELAYS_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < heartbeat_s <= 1.0:
            raise ConfigError(f"hub: heartbeat_s must be in (0, 1], got {heartbeat_s}")
        if not register_timeout_s > 0.0:
            raise ConfigError(f"hub: register_timeout_s must be > 0, got {register_timeout_s}")
        self._presence: PresenceStore = presence if presence is not None else MemoryPresence()
        self._heartbeat_s = heartbeat_s
        self._register_timeout_s = register_timeout_s
        self._tail_probes_ms = check_delays(tail_probes_ms, where="hub")
        self._clock = clock
        self._links: dict[tuple[Role, str], _Link] = {}
        self._counters = _Counters()
        self._server: Server | None = None
        # What each opening connection's upgrade request carried in its Register header.
        self._in_upgrade: weakref.WeakKeyDictionary[ServerConnection, _InUpgrade]
        self._in_upgrade = weakref.WeakKeyDictionary()
        # The first connection of each (role, id, dial) to carry a Register in its upgrade.
        self._dials: weakref.WeakValueDictionary[tuple[Role, str, str], ServerConnection]
        self._dials = weakref.WeakValueDictionary()
        self._changed = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Starts listening and returns; port 0 picks a free port (see :attr:`bound_port`)."""
        if self._server is not None:
            raise RuntimeError("hub: already started")
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            process_response=self._process_response,
            ping_interval=self._heartbeat_s,
            ping_timeout=self._heartbeat_s * MISSED_PONGS,
            close_timeout=self._heartbeat_s,
            max_size=MAX_MESSAGE_BYTES,
            logger=logger,
        )

    async def stop(self) -> None:
        """Closes every connection and stops listening."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> Hub:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def bound_port(self) -> int:
        """The TCP port the hub listens on."""
        if self._server is None:
            raise RuntimeError("hub: not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def stats(self) -> dict[str, int]:
        """Counters for health checks: who is online, sessions, and errors.

        ``errors`` is the number of ``Error`` messages the hub sent; ``bad_messages`` the
        malformed, unknown or misplaced messages it received (a malformed ``Register`` header
        included); ``stale_frames`` the frames dropped because they came from a connection
        already replaced by a newer one; ``registered_in_upgrade`` the registrations read
        from the upgrade request (:mod:`~teledrive.shared.register_header`);
        ``duplicate_dials`` the connections closed unregistered because another one of the
        same ``Register.dial`` got there first.
        """
        return {
            "vehicles": len(self._presence.list("vehicle")),
            "operators": len(self._presence.list("operator")),
            "sessions": len(self._presence.sessions()),
            "errors": self._counters.errors_sent,
            **asdict(self._counters),
        }

    async def wait_stats(
        self, predicate: Callable[[dict[str, int]], bool], timeout_s: float
    ) -> None:
        """Waits until ``predicate(self.stats())`` holds (tests and supervisors use this).

        Raises:
            TimeoutError: it did not hold within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate(self.stats()):
                await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- connection handling ------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != HEALTH_PATH:
            values = request.headers.get_all(REGISTER_HEADER)
            if values:
                self._in_upgrade[ws] = self._read_upgrade(ws, values)
            return None
        response = ws.respond(http.HTTPStatus.OK, json.dumps(self.stats()) + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    def _read_upgrade(self, ws: ServerConnection, values: list[str]) -> _InUpgrade:
        where = _unregistered(ws)
        if len(values) > 1:
            return _BadHeader(f"{where}: {REGISTER_HEADER} header sent {len(values)} times")
        try:
            register = decode_register_header(values[0], where=where)
        except ProtocolError as err:
            return _BadHeader(str(err))
        refusal = self._admit(register)
        if refusal is not None:
            return _Refused(register, refusal)  # refused once the connection opens
        if register.dial is None:
            return register
        key = (register.role, register.id, register.dial)
        first = self._dials.get(key)
        if first is not None and first.state in (State.CONNECTING, State.OPEN):
            return DUPLICATE
        self._dials[key] = ws
        return register

    def _process_response(
        self, ws: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        in_upgrade = self._in_upgrade.get(ws)
        if isinstance(in_upgrade, Register):
            response.headers[REGISTER_HEADER] = RECEIVED
        elif isinstance(in_upgrade, _Refused):
            response.headers[REGISTER_HEADER] = REFUSED
        elif in_upgrade == DUPLICATE:
            response.headers[REGISTER_HEADER] = DUPLICATE
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        link = await self._await_register(ws)
        if link is None:
            return
        reason = f"{link.label} disconnected"
        try:
            async for raw in ws:
                if self._links.get(link.key) is not link:
                    self._drop_stale(link)
                    continue
                self._on_frame(link, raw)
                self._notify()
        except ConnectionClosed:
            reason = f"{link.label} lost (no heartbeat or connection reset)"
        finally:
            self._on_gone(link, reason)
            self._counters.disconnects += 1
            self._notify()
            await link.stop()

    async def _await_register(self, ws: ServerConnection) -> _Link | None:
        where = _unregistered(ws)
        in_upgrade = self._in_upgrade.pop(ws, None)
        if isinstance(in_upgrade, _BadHeader):
            # Counted and logged, not answered: the upgrade response went without the
            # header's acknowledgement, so the client registers in-band.
            self._counters.bad_messages += 1
            self._notify()
            logger.warning("%s", in_upgrade.text)
        elif in_upgrade == DUPLICATE:
            # The client knows from the upgrade response, and closes it too.
            self._counters.duplicate_dials += 1
            self._notify()
            logger.info("%s: another connection of its dial registered first", where)
            await ws.close(CLOSE_REFUSED, "duplicate dial")
            return None
        if isinstance(in_upgrade, _Refused):
            message, refusal = in_upgrade.register, in_upgrade.reason
        elif isinstance(in_upgrade, Register):
            message, refusal = in_upgrade, None  # admitted when it was read
        else:
            first = await self._receive_register(ws, where)
            if first is None:
                return None
            if not isinstance(first, Register):
                await self._refuse(
                    ws,
                    "not_registered",
                    f"{where}: the first message must be register, got {message_type(first)}",
                    ref=message_type(first),
                )
                return None
            message, refusal = first, self._admit(first)
        if refusal is not None:
            await self._refuse(ws, "version", f"{where}: {refusal}", ref="register")
            return None
        self._counters.registered_in_upgrade += message is in_upgrade
        link = self._register(ws, message)
        self._notify()
        return link

    async def _receive_register(self, ws: ServerConnection, where: str) -> SignalMessage | None:
        """The first well-formed message (None: the connection closed or timed out)."""
        try:
            async with asyncio.timeout(self._register_timeout_s):
                while True:
                    raw = await ws.recv()
                    try:
                        return decode_signal(raw, channel=where)
                    except ProtocolError as err:
                        self._counters.bad_messages += 1
                        self._notify()
                        await self._send_direct(
                            ws,
                            Error(code="bad_message", message=_clip(str(err)), ref=_peek_type(raw)),
                        )
        except TimeoutError:
            self._counters.register_timeouts += 1
            await self._refuse(
                ws, "not_registered", f"{where}: no register within {self._register_timeout_s} s"
            )
            return None
        except ConnectionClosed:
            return None

    async def _send_direct(self, ws: ServerConnection, error: Error) -> None:
        self._counters.errors_sent += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode_text(error))

    async def _refuse(
        self, ws: ServerConnection, code: RefusalCode, text: str, *, ref: str | None = None
    ) -> None:
        self._counters.refused += 1
        self._notify()
        logger.info("%s: refused (%s)", text, code)
        await self._send_direct(ws, Error(code=code, message=_clip(text), ref=ref))
        await ws.close(CLOSE_REFUSED, code)

    # --- policy ---------------------------------------------------------------------------

    def _admit(self, register: Register) -> str | None:
        """Decides whether a client may register (None) or why not; authentication goes here.

        Only version refusals exist today; authentication will add its own error code.
        """
        if register.v != PROTOCOL_VERSION:
            return f"protocol version {register.v} is not supported, hub speaks {PROTOCOL_VERSION}"
        return None

    def _may_control(self, operator: PeerRecord, vehicle: PeerRecord) -> Error | None:
        """Decides whether an operator may open a session; the place for control leases."""
        current = self._presence.session_of("vehicle", vehicle.id)
        if current is not None and current.operator_id != operator.id:
            return Error(
                code="busy",
                message=f"vehicle {vehicle.id!r} is in a session with operator "
                f"{current.operator_id!r}",
                ref="connect",
            )
        return None

    # --- registration and departure -------------------------------------------------------

    def _register(self, ws: ServerConnection, register: Register) -> _Link:
        cameras = tuple(register.cameras) if register.role == "vehicle" else ()
        peer = PeerRecord(role=register.role, id=register.id, name=register.name, cameras=cameras)
        old = self._links.pop((peer.role, peer.id), None)
        if old is not None:
            self._counters.replaced += 1
            logger.info("hub: %s registered again, replacing its old connection", old.label)
            session = self._presence.session_of(peer.role, peer.id)
            if session is not None:
                self._end_session(session, f"{old.label} reconnected")
            # The new connection's dial in the reason: a client tells its own re-dial from
            # another process with its id.
            dial = f" (dial {register.dial})" if register.dial else ""
            old.close(CLOSE_REPLACED, f"replaced by a newer connection{dial}")
        link = _Link(ws, peer, self._tail_probes_ms)
        if register.offer is not None and peer.role == "vehicle":
            link.offer_ahead = (register.offer, self._clock())
        self._links[link.key] = link
        self._presence.register(peer)
        self._counters.registrations += 1
        logger.info("hub: %s registered from %s", link.label, _address(ws))
        link.send(Registered(id=peer.id, heartbeat_ms=self._heartbeat_s * 1000.0))
        if register.offer is not None and peer.role == "operator":
            text = f"hub: from {link.label}: register: only vehicles offer ahead; offer ignored"
            self._bad(link, text, ref="register")
        if peer.role == "vehicle":
            self._push_presence(peer.id)
        return link

    def _on_gone(self, link: _Link, reason: str) -> None:
        if self._links.get(link.key) is not link:
            return  # replaced by a newer connection, which took over its presence
        del self._links[link.key]
        self._presence.unregister(*link.key)
        logger.info("hub: %s", reason)
        session = self._presence.session_of(*link.key)
        if session is not None:
            self._end_session(session, reason)
        elif link.peer.role == "vehicle":
            self._push_presence(link.peer.id)

    # --- messages from registered peers ---------------------------------------------------

    def _drop_stale(self, link: _Link) -> None:
        """Ignores a frame from a connection that a newer one with its id has replaced.

        Until the replaced client reads the close, it may still send; acting on that would
        speak for the newer connection (end its session, open one whose ack goes nowhere,
        overwrite a vehicle's status).
        """
        self._counters.stale_frames += 1
        logger.debug("hub: %s: frame from a replaced connection dropped", link.label)
        self._notify()

    def _on_frame(self, link: _Link, raw: str | bytes) -> None:
        try:
            message = decode_signal(raw, channel=f"hub: from {link.label}")
        except ProtocolError as err:
            self._bad(link, str(err), ref=_peek_type(raw))
            return
        role = link.peer.role
        match message:
            case Offer() | Answer() | Candidate() | Bye():
                self._relay(link, message)
            case Status() if role == "vehicle":
                self._on_status(link, message)
            case ListVehicles() if role == "operator":
                infos = [self._vehicle_info(p.id) for p in self._presence.list("vehicle")]
                link.send(VehicleList(vehicles=infos))
            case Connect() if role == "operator":
                self._connect(link, message)
            case Error():
                self._counters.client_errors += 1
                logger.warning("hub: %s reported %s: %s", link.label, message.code, message.message)
            case Register():
                self._bad(link, f"hub: from {link.label}: already registered", ref="register")
            case _:
                kind = message_type(message)
                self._bad(link, f"hub: from {link.label}: {kind} is not allowed", ref=kind)

    def _on_status(self, link: _Link, status: Status) -> None:
        """Keeps a vehicle's status; operators hear of it when its mode or reason changes."""
        previous = self._presence.set_status(link.peer.id, status)
        if previous is None or (previous.mode, previous.reason) != (status.mode, status.reason):
            self._push_presence(link.peer.id)

    def _bad(self, link: _Link, text: str, *, ref: str | None) -> None:
        self._counters.bad_messages += 1
        logger.warning("%s", text)
        self._send_error(link, Error(code="bad_message", message=_clip(text), ref=ref))

    def _send_error(self, link: _Link, error: Error) -> None:
        self._counters.errors_sent += 1
        link.send(error)

    def _connect(self, link: _Link, connect: Connect) -> None:
        where = f"hub: from {link.label}: connect"
        if connect.session is not None or connect.operator_id is not None:
            self._bad(link, f"{where}: session and operator_id are set by the hub", ref="connect")
            return
        vehicle = self._presence.lookup("vehicle", connect.vehicle_id)
        vehicle_link = self._links.get(("vehicle", connect.vehicle_id))
        if vehicle is None or vehicle_link is None:
            text = f"{where}: vehicle {connect.vehicle_id!r} is not online"
            self._send_error(
                link, Error(code="unknown_vehicle", message=_clip(text), ref="connect")
            )
            return
        refusal = self._may_control(link.peer, vehicle)
        if refusal is not None:
            self._send_error(link, refusal)
            return
        previous = self._presence.session_of("operator", link.peer.id)
        if previous is not None:
            self._end_session(previous, f"{link.label} connected again")
        session = SessionRecord(
            id=secrets.token_hex(8), vehicle_id=vehicle.id, operator_id=link.peer.id
        )
        self._presence.open_session(session)
        self._counters.sessions_opened += 1
        logger.info("hub: session %s: %s with %s", session.id, link.label, vehicle_link.label)
        offer = self._take_offer_ahead(vehicle_link)
        vehicle_link.send(
            Connect(
                vehicle_id=vehicle.id,
                session=session.id,
                operator_id=link.peer.id,
                offer_ahead=offer is not None,
            )
        )
        link.send(Connect(vehicle_id=vehicle.id, session=session.id))
        if offer is not None:
            self._counters.offers_ahead_used += 1
            logger.info(
                "hub: session %s opens with the offer %s made ahead", session.id, vehicle_link.label
            )
            link.send(Offer(session=session.id, sdp=offer))
        self._push_presence(vehicle.id)

    def _take_offer_ahead(self, vehicle_link: _Link) -> str | None:
        """The vehicle's offer made ahead, if it is fresh; it is used once either way."""
        ahead, vehicle_link.offer_ahead = vehicle_link.offer_ahead, None
        if ahead is None:
            return None
        sdp, received_s = ahead
        if self._clock() - received_s > OFFER_AHEAD_TTL_S:
            logger.info("hub: %s: offer made ahead is too old, not used", vehicle_link.label)
            return None
        return sdp

    def _relay(self, link: _Link, message: Offer | Answer | Candidate | Bye) -> None:
        kind = message_type(message)
        session = self._presence.session(message.session)
        if session is None and isinstance(message, Bye):
            # Both ends may say bye at once, or the hub ended the session first: idempotent.
            logger.debug("hub: %s: bye for ended session %s", link.label, message.session)
            return
        if session is None or not session.has(*link.key):
            problem = "unknown session" if session is None else "not a member of session"
            text = f"hub: from {link.label}: {kind}: {problem} {message.session!r}"
            self._bad(link, text, ref=kind)
            return
        other = self._links.get(session.peer_of(link.peer.role))
        if other is not None:
            other.send(message)
            self._counters.relayed += 1
        if isinstance(message, Bye):
            self._presence.close_session(session.id)
            logger.info("hub: session %s ended by %s: %s", session.id, link.label, message.reason)
            self._push_presence(session.vehicle_id)

    # --- sessions and presence ------------------------------------------------------------

    def _end_session(self, session: SessionRecord, reason: str) -> None:
        """Closes a session, sends Bye to its connected members and pushes presence."""
        self._presence.close_session(session.id)
        logger.info("hub: session %s ended: %s", session.id, reason)
        bye = Bye(session=session.id, reason=_clip(reason))
        members: tuple[tuple[Role, str], ...] = (
            ("vehicle", session.vehicle_id),
            ("operator", session.operator_id),
        )
        for key in members:
            member = self._links.get(key)
            if member is not None:
                member.send(bye)
        self._push_presence(session.vehicle_id)

    def _vehicle_info(self, vehicle_id: str) -> VehicleInfo:
        peer = self._presence.lookup("vehicle", vehicle_id)
        if peer is None:
            return VehicleInfo(id=vehicle_id, online=False)
        session = self._presence.session_of("vehicle", vehicle_id)
        status = self._presence.status_of(vehicle_id)
        return VehicleInfo(
            id=peer.id,
            name=peer.name,
            cameras=list(peer.cameras),
            online=True,
            operator=None if session is None else session.operator_id,
            mode=None if status is None else status.mode,
            reason="" if status is None else status.reason,
            battery_v=None if status is None else status.battery_v,
        )

    def _push_presence(self, vehicle_id: str) -> None:
        presence = Presence(vehicle=self._vehicle_info(vehicle_id))
        for (role, _), link in self._links.items():
            if role == "operator":
                link.send(presence)


def parse_listen(listen: str) -> tuple[str, int]:
    """Splits ``HOST:PORT`` (``[::1]:PORT`` for IPv6) into host and port.

    Raises:
        ConfigError: the text is not of that form or the port is out of range.
    """
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT with a port in 0..65535")
    return host, int(port_text)


async def run_hub(
    listen: str = DEFAULT_LISTEN,
    *,
    heartbeat_s: float = 1.0,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Runs a hub until SIGINT or SIGTERM (or cancellation): ``teledrive hub --listen``.

    Args:
        listen: ``HOST:PORT`` to listen on; port 0 picks a free port.
        heartbeat_s: websocket ping interval.
        on_listening: called with the ``ws://`` URL once listening (e.g. to print it).

    Raises:
        ConfigError: ``listen`` is malformed.
    """
    host, port = parse_listen(listen)
    hub = Hub(heartbeat_s=heartbeat_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            logger.debug("hub: cannot handle %s here", signum.name)
    try:
        async with hub:
            await hub.serve(host, port)
            shown_host = f"[{host}]" if ":" in host else host
            url = f"ws://{shown_host}:{hub.bound_port}"
            logger.info("hub: listening on %s (health: %s%s)", url, url, HEALTH_PATH)
            if on_listening is not None:
                on_listening(url)
            await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
