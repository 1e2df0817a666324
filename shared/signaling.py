"""The hub client that vehicles and operators share: connect, register, dispatch, reconnect.

:class:`SignalingClient` keeps one websocket to the hub alive: it registers (in the upgrade
request, :mod:`~teledrive.shared.register_header`, when the hub reads it), hands every
decoded message to a callback, and after any disconnect reconnects with exponential backoff
and jitter until :meth:`SignalingClient.close`. A malformed message from the hub is logged and
counted and never ends the client.

Losing the hub does not end a WebRTC session: media and commands go peer to peer, so a vehicle
should keep a working peer connection when the hub drops and simply let this client reconnect.

After a network cut the old websocket can look alive for seconds (TCP retransmissions back off
exponentially, the ping timeout has not fired yet), and the reconnect backoff may be waiting
too. A caller that knows the link was down (the vehicle lost its operator) calls
:meth:`SignalingClient.redial`: it dials a fresh connection alongside the old one with a short
timeout, and when the hub registered it (in its upgrade) it takes over at once (the hub has
replaced the old registration). Re-dials overlap; all those dialled for one registration carry
one ``Register.dial``, and the hub registers the first to arrive: only that one takes over.
With a hub that registers in-band only, the first to open takes over unless another connection
opened or registered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.uri import parse_uri

from teledrive.shared.errors import ConfigError, LinkError, ProtocolError
from teledrive.shared.messages import (
    MAX_MESSAGE_BYTES,
    Error,
    Message,
    Register,
    Registered,
    SignalMessage,
    decode_signal,
    encode_text,
    message_type,
)
from teledrive.shared.register_header import (
    DUPLICATE,
    RECEIVED,
    REFUSED,
    REGISTER_HEADER,
    encode_register_header,
)
from teledrive.shared.tail_probe import TAIL_PROBE_DELAYS_MS, TailProber, check_delays

logger = logging.getLogger(__name__)

CLOSE_REPLACED: Final = 4001
"""Close code: the hub replaced this connection by a newer one with the same id."""
CLOSE_REFUSED: Final = 4003
"""Close code: the hub refused the registration (an ``Error`` message says why)."""

MessageCallback = Callable[[SignalMessage], Awaitable[None] | None]
LinkCallback = Callable[[], Awaitable[None] | None]
Connector = Callable[..., Awaitable[ClientConnection]]


class Backoff:
    """Exponential backoff with jitter, sans-I/O: it only computes delays.

    The n-th delay is drawn uniformly from ``[d/2, d]`` with ``d = min(max, initial * 2**n)``,
    so a fleet that lost the hub at once does not come back in lockstep.

    A connection that opens is not yet a success: a hub that accepts and then drops every
    client (overloaded, or a handler that crashes) would otherwise get a reconnect storm at the
    initial delay. Only a connection that stayed up for ``stable_s`` starts the delays again
    from the initial one (:meth:`connection_ended`).

    Args:
        initial_s: base of the first delay.
        max_s: cap of every delay.
        rng: random source (inject a seeded one in tests).
        stable_s: how long a connection must last to reset the backoff; ``max_s`` if None.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        rng: random.Random | None = None,
        *,
        stable_s: float | None = None,
    ) -> None:
        if not 0.0 < initial_s <= max_s:
            raise ValueError(f"backoff: need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        if stable_s is not None and not stable_s >= 0.0:
            raise ValueError(f"backoff: need stable_s >= 0, got {stable_s}")
        self._initial_s = initial_s
        self._max_s = max_s
        self._stable_s = max_s if stable_s is None else stable_s
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0

    def next_delay_s(self) -> float:
        """The delay before the next attempt; each call doubles the base up to the cap."""
        ceiling_s = min(self._max_s, self._initial_s * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return self._rng.uniform(ceiling_s / 2.0, ceiling_s)

    def max_delay_s(self) -> float:
        """A delay at the cap, for when the hub told us to stay away (e.g. replaced)."""
        return self._rng.uniform(self._max_s / 2.0, self._max_s)

    def reset(self) -> None:
        """Starts again from the initial delay."""
        self._attempt = 0

    def connection_ended(self, lasted_s: float) -> None:
        """Notes a connection that was up for ``lasted_s``; a stable one resets the backoff."""
        if lasted_s >= self._stable_s:
            self.reset()


@dataclass
class SignalingStats:
    """Counters of a :class:`SignalingClient`.

    Attributes:
        connects: websocket connections opened.
        registrations: ``Registered`` received.
        registered_in_upgrade: registrations whose ``Register`` the hub read from the
            upgrade request (:mod:`~teledrive.shared.register_header`), a round trip sooner.
        duplicate_dials: connections the hub did not register because another one dialled
            for the same registration got there first (closed unused).
        reconnects: connection attempts after the first one.
        redials: connections opened by :meth:`SignalingClient.redial` that took over.
        messages_received: messages decoded and dispatched.
        messages_sent: messages sent.
        bad_messages: malformed or unexpected messages from the hub.
        errors_received: ``Error`` messages from the hub.
        callback_errors: exceptions raised by the callbacks.
    """

    connects: int = 0
    registrations: int = 0
    registered_in_upgrade: int = 0
    duplicate_dials: int = 0
    reconnects: int = 0
    redials: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    bad_messages: int = 0
    errors_received: int = 0
    callback_errors: int = 0


class EventView:
    """Read-only view of an :class:`asyncio.Event`."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def is_set(self) -> bool:
        """Whether the event is set."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Waits until the event is set."""
        await self._event.wait()


class _Closing(Exception):
    """Internal: close() was called while connecting."""


class SignalingClient:
    """Keeps a registered websocket to the hub and dispatches what arrives.

    Args:
        url: the hub, ``ws://host:port`` or ``wss://...``.
        register: carried in every dial's upgrade request (and sent in-band to a hub that
            does not read it); or a function called once per dial (a vehicle adds an offer
            made ahead while it re-dials).
        on_message: called with each decoded message after ``Registered`` (``Registered``
            itself goes to ``on_connected``); may be a coroutine function. Messages are
            dispatched one at a time, in order.
        on_connected: called after each successful registration (:attr:`registered` holds
            the hub's answer); :meth:`send` works from inside it.
        on_disconnected: called when a registered connection is lost
            (:attr:`disconnect_reason` says why). Do not tear down a working peer
            connection here: WebRTC sessions do not need the hub.
        backoff_initial_s: first reconnect delay.
        backoff_max_s: largest reconnect delay. The delays grow until a registered connection
            lasts this long; only then do they start again from ``backoff_initial_s``.
        register_timeout_s: how long to wait for ``Registered`` after connecting.
        ping_interval_s: client-side websocket pings, to notice a dead hub.
        ping_timeout_s: a hub that does not answer a ping within this is dropped.
        tail_probes_ms: pings after the last message of a burst, in ms after it (see
            :mod:`~teledrive.shared.tail_probe`); empty for none.
        connect: opens the websocket, called as ``connect(url, **options)`` like
            :func:`websockets.asyncio.client.connect`.
        source_addresses: the local addresses to dial from, asked before each dial. With two
            or more, each dial opens one connection from each at once (a vehicle on two
            modems: whichever link works) and keeps the one the hub registered; the others
            carry the same ``Register.dial``, so the hub refuses them. None or fewer than
            two: the system picks the source.
        rng: random source of the backoff jitter.
        clock: monotonic seconds, to measure how long a connection stayed registered.

    Raises:
        ConfigError: ``url`` is not a websocket URL.
    """

    def __init__(
        self,
        url: str,
        register: Register | Callable[[], Register],
        *,
        on_message: MessageCallback,
        on_connected: LinkCallback | None = None,
        on_disconnected: LinkCallback | None = None,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        register_timeout_s: float = 5.0,
        ping_interval_s: float = 1.0,
        ping_timeout_s: float = 3.0,
        tail_probes_ms: Sequence[float] = TAIL_PROBE_DELAYS_MS,
        connect: Connector = connect,
        source_addresses: Callable[[], Sequence[str]] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as err:
            raise ConfigError(f"signaling: hub URL {url!r} is not a ws:// or wss:// URL") from err
        self._url = url
        self._register = register
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._backoff = Backoff(backoff_initial_s, backoff_max_s, rng)
        self._register_timeout_s = register_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._tail_probes_ms = check_delays(tail_probes_ms, where=f"signaling {url}")
        self._probes: TailProber | None = None
        self._connect = connect
        self._source_addresses = source_addresses
        self._clock = clock
        self._registered_at_s = 0.0
        self._ws: ClientConnection | None = None
        self._registered = asyncio.Event()
        self._registered_message: Registered | None = None
        self._closing = asyncio.Event()
        self._stats = SignalingStats()
        self._disconnect_reason = ""
        self._handover: ClientConnection | None = None
        self._wake = asyncio.Event()
        self._instance = secrets.token_hex(4)
        # The Register each opening connection carried in its upgrade request.
        self._carried: weakref.WeakKeyDictionary[ClientConnection, Register]
        self._carried = weakref.WeakKeyDictionary()
        self._registered_with: Register | None = None

    @property
    def connected(self) -> EventView:
        """Set while registered with the hub."""
        return EventView(self._registered)

    @property
    def registered(self) -> Registered | None:
        """The hub's answer to the latest registration, or ``None`` before the first."""
        return self._registered_message

    @property
    def instance(self) -> str:
        """This client's random part of its ``Register.dial`` ids (tells its dials apart)."""
        return self._instance

    @property
    def registered_with(self) -> Register | None:
        """The ``Register`` of the latest registration, or ``None`` before the first.

        Its offer is the one made ahead that the hub may open the next session with.
        """
        return self._registered_with

    @property
    def disconnect_reason(self) -> str:
        """Why the last registered connection ended (empty before any)."""
        return self._disconnect_reason

    @property
    def stats(self) -> SignalingStats:
        """The client's counters (a live object)."""
        return self._stats

    def stats_dict(self) -> dict[str, int]:
        """The counters as a dict, for JSON reports."""
        return asdict(self._stats)

    async def wait_registered(self, timeout_s: float) -> Registered:
        """Waits until registered with the hub.

        Raises:
            TimeoutError: not registered within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            await self._registered.wait()
        if self._registered_message is None:
            raise LinkError(f"signaling {self._url}: registered without a Registered message")
        return self._registered_message

    async def send(self, message: Message) -> None:
        """Sends a message to the hub.

        Raises:
            LinkError: not registered with the hub, or the connection broke while sending.
        """
        ws = self._ws
        if ws is None or not self._registered.is_set():
            raise LinkError(
                f"signaling {self._url}: not connected, cannot send {message_type(message)}"
            )
        probes = self._probes
        try:
            await ws.send(encode_text(message))
        except ConnectionClosed as err:
            raise LinkError(f"signaling {self._url}: connection lost while sending: {err}") from err
        if probes is not None:
            probes.sent()
        self._stats.messages_sent += 1

    async def close(self) -> None:
        """Stops reconnecting and closes the connection; :meth:`run` then returns."""
        self._closing.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def redial(
        self, timeout_s: float, prepare: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Dials a fresh connection now, alongside the current one, and lets it take over.

        For when the caller knows the network was cut: the current websocket may be a zombie
        waiting on TCP retransmissions, or :meth:`run` may be sleeping off its backoff. If the
        new connection opens within ``timeout_s``, the current one is dropped and :meth:`run`
        registers on the new one at once. Several calls may overlap, with :meth:`run`'s own
        attempt too: they carry one ``Register.dial`` and the hub registers the first of them
        to arrive, in its upgrade; only that one takes over, the others are closed unused.
        With a hub that registers in-band only, the first to open takes over, and a
        connection :meth:`run` opened by itself is never dropped while it registers (it is as
        fresh as this one, and a second registration would end the session the hub may have
        opened on the first).

        Args:
            timeout_s: how long the new connection may take to open.
            prepare: awaited before dialling (the vehicle builds the offer its registration
                carries). A connection opened, registered or taken over meanwhile (or a
                close) makes this call give up; while it dials, only with a hub that
                registers in-band (one that registered it in its upgrade decided already).

        Returns:
            Whether this call's connection took over.
        """
        if self._closing.is_set():
            return False
        before = self._connection_changes()
        if prepare is not None:
            await prepare()
            if self._connection_changes() != before or self._closing.is_set():
                return False
        try:
            async with asyncio.timeout(timeout_s):
                ws = await self._dial(timeout_s)
        except (OSError, TimeoutError, InvalidHandshake) as err:
            logger.debug("signaling %s: redial failed: %s", self._url, err)
            return False
        verdict = _hub_verdict(ws)
        if verdict == RECEIVED:
            # The hub registered it (replacing this client's older connection): it must take
            # over, unless the client is closing.
            refused = self._closing.is_set()
        else:
            stale = self._connection_changes() != before
            # Refused also when that connection is stuck registering (the link cut right
            # after its TCP handshake): then register_timeout_s ends it and re-dials take over.
            registering = self._ws is not None and not self._registered.is_set()
            # (REFUSED: the hub refuses this registration; the current link stays.)
            hub_says_no = verdict in (DUPLICATE, REFUSED)
            refused = hub_says_no or stale or registering or self._closing.is_set()
            self._stats.duplicate_dials += verdict == DUPLICATE
        if refused:
            await ws.close()
            return False
        self._stats.connects += 1
        self._stats.redials += 1
        logger.info("signaling %s: redialled; the new connection takes over", self._url)
        previous, self._handover = self._handover, ws
        if previous is not None:
            previous.transport.abort()  # (a later dial the hub registered over it)
        self._wake.set()
        old = self._ws
        if old is not None:
            old.transport.abort()  # a zombie's closing handshake would only wait for a timeout
        return True

    def _connection_changes(self) -> tuple[int, int, int]:
        """Counters that move whenever a connection opens, registers or takes over."""
        return (self._stats.registrations, self._stats.redials, self._stats.connects)

    async def run(self) -> None:
        """Connects, registers and dispatches, reconnecting forever until :meth:`close`."""
        try:
            await self._run()
        finally:
            handover = self._take_handover()
            if handover is not None:  # a re-dial that took over as the client closed
                handover.transport.abort()

    async def _run(self) -> None:
        first = True
        while not self._closing.is_set():
            if not first:
                self._stats.reconnects += 1
            first = False
            delay_s = await self._connect_once()
            if self._closing.is_set():
                break
            if self._handover is not None:
                continue
            logger.info("signaling %s: reconnecting in %.2f s", self._url, delay_s)
            self._wake.clear()
            waiters = {
                asyncio.ensure_future(self._closing.wait()),
                asyncio.ensure_future(self._wake.wait()),
            }
            try:
                await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _connect_once(self) -> float:
        """One connection's life; returns the delay before the next attempt."""
        try:
            ws = await self._open()
        except _Closing:
            return 0.0
        except (OSError, TimeoutError, InvalidHandshake) as err:
            logger.info("signaling %s: cannot connect: %s", self._url, err)
            return self._backoff.next_delay_s()
        self._ws = ws
        probes = self._probes = TailProber(ws.ping, self._tail_probes_ms)
        reason = "closed"
        try:
            await self._serve(ws, probes)
        except ConnectionClosed as err:
            reason = f"connection lost: {err}"
        except LinkError as err:
            reason = str(err)
        finally:
            self._ws = None
            probes.stop()
            self._probes = None
            was_registered = self._registered.is_set()
            lasted_s = self._clock() - self._registered_at_s
            self._registered.clear()
            await ws.close()
        logger.info("signaling %s: %s", self._url, reason)
        if was_registered:
            self._backoff.connection_ended(lasted_s)
            self._disconnect_reason = reason
            if self._on_disconnected is not None:
                await self._call(self._on_disconnected)
        # The hub names the replacing connection's dial (see hub.py): this client's own?
        ours = f"(dial {self._instance}." in (ws.close_reason or "")
        if ws.close_code == CLOSE_REPLACED and ours:
            # The hub registered this client's own re-dial (in its upgrade) before the client
            # had dropped this connection for it.
            logger.info("signaling %s: replaced by this client's re-dial", self._url)
        elif ws.close_code == CLOSE_REPLACED:
            logger.warning(
                "signaling %s: replaced by another connection with id %r (a duplicate id?)",
                self._url,
                self._registered_message.id if self._registered_message else "?",
            )
            return self._backoff.max_delay_s()
        return self._backoff.next_delay_s()

    async def _dial(self, open_timeout_s: float) -> ClientConnection:
        """Opens a websocket whose upgrade request carries this client's ``Register``."""
        register = self._current_register()
        # One dial id per registration: every connection dialled before the next Registered
        # (re-dials, run()'s own attempt) is one more try for the same registration.
        register = msgspec.structs.replace(
            register, dial=f"{self._instance}.{self._stats.registrations}"
        )
        options: dict[str, Any] = {
            "max_size": MAX_MESSAGE_BYTES,
            "open_timeout": open_timeout_s,
            "ping_interval": self._ping_interval_s,
            "ping_timeout": self._ping_timeout_s,
            "close_timeout": 1.0,
        }
        # An offer too large for the header stays behind (the vehicle then offers after the
        # hub's connect): without the header, overlapping dials would lose the hub's
        # arbitration.
        header = encode_register_header(register)
        if header is None:
            register = msgspec.structs.replace(register, offer=None)
            header = encode_register_header(register)
        if header is not None:
            options["additional_headers"] = {REGISTER_HEADER: header}
        ws = await self._connect_from_any(options)
        self._carried[ws] = register
        return ws

    async def _connect_from_any(self, options: dict[str, Any]) -> ClientConnection:
        """Opens the connection, from each source address at once when there are several."""
        sources = list(self._source_addresses()) if self._source_addresses is not None else []
        if len(sources) < 2:
            return await self._connect(self._url, **options)
        attempts = {
            asyncio.ensure_future(self._connect(self._url, local_addr=(source, 0), **options)): (
                source
            )
            for source in sources
        }
        pending = set(attempts)
        opened: list[ClientConnection] = []
        failures: dict[str, BaseException] = {}
        try:
            # Until one opens that the hub did not refuse as a duplicate of this dial (the
            # hub registers one of them; a hub that ignores the header refuses none).
            while pending and all(_hub_verdict(ws) == DUPLICATE for ws in opened):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for attempt in done:
                    error = attempt.exception()
                    if error is not None:
                        failures[attempts[attempt]] = error
                        logger.debug(
                            "signaling %s: from %s: %s", self._url, attempts[attempt], error
                        )
                    else:
                        opened.append(attempt.result())
        except BaseException:
            for ws in opened:  # cancelled or failed: leave no registered connection open
                ws.transport.abort()
            raise
        finally:
            for attempt in pending:  # a dial still going (a dead modem's): stop it unawaited
                attempt.cancel()
                attempt.add_done_callback(_abort_if_opened)
        if not opened:
            listed = "; ".join(f"from {source}: {error}" for source, error in failures.items())
            raise LinkError(f"signaling {self._url}: cannot connect: {listed}")
        # The registered one, else a refused one (the caller counts that duplicate).
        opened.sort(key=lambda ws: _hub_verdict(ws) == DUPLICATE)
        for unused in opened[1:]:
            self._stats.duplicate_dials += _hub_verdict(unused) == DUPLICATE
            unused.transport.abort()
        return opened[0]

    def _current_register(self) -> Register:
        return self._register if isinstance(self._register, Register) else self._register()

    def _take_handover(self) -> ClientConnection | None:
        ws, self._handover = self._handover, None
        self._wake.clear()
        return ws

    async def _open(self) -> ClientConnection:
        handover = self._take_handover()
        if handover is not None:
            return handover
        opening = asyncio.ensure_future(self._dial(self._register_timeout_s))
        closing = asyncio.ensure_future(self._closing.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({opening, closing, woken}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            opening.cancel()  # run() itself was cancelled: do not leave the attempt behind
            if opening.done() and not opening.cancelled() and opening.exception() is None:
                opening.result().transport.abort()  # it had opened: do not leave it open
            raise
        finally:
            closing.cancel()
            woken.cancel()
        handover = self._take_handover()
        if handover is not None or not opening.done():
            # A re-dial took over (if both opened at once, the re-dial's connection wins: it
            # already counts as taken over).
            opening.cancel()
            with contextlib.suppress(
                asyncio.CancelledError, OSError, TimeoutError, InvalidHandshake
            ):
                unused = await opening
                await unused.close()
            if handover is None or self._closing.is_set():
                if handover is not None:
                    await handover.close()
                raise _Closing
            return handover
        ws = opening.result()
        if _hub_verdict(ws) == DUPLICATE:
            self._stats.duplicate_dials += 1
            await ws.close()
            raise LinkError(f"signaling {self._url}: another connection of this dial registered")
        self._stats.connects += 1
        if self._closing.is_set():
            await ws.close()
            raise _Closing
        return ws

    async def _serve(self, ws: ClientConnection, probes: TailProber) -> None:
        carried = self._carried.pop(ws, None)
        if carried is not None and _hub_verdict(ws) in (RECEIVED, REFUSED):
            # Read by the hub: Registered follows, or (refused) an Error.
            register, in_upgrade = carried, True
        else:
            # A hub that did not read the header (or one from before it): register in-band.
            register, in_upgrade = self._current_register(), False
            await ws.send(encode_text(register))
            probes.sent()
        registered = await self._await_registered(ws)
        self._registered_with = register
        self._stats.registered_in_upgrade += in_upgrade
        self._registered_at_s = self._clock()
        self._registered_message = registered
        self._registered.set()
        self._stats.registrations += 1
        logger.info("signaling %s: registered as %r", self._url, registered.id)
        if self._on_connected is not None:
            await self._call(self._on_connected)
        async for raw in ws:
            message = self._decode(raw)
            if message is None:
                continue
            self._stats.messages_received += 1
            if isinstance(message, Error):
                self._stats.errors_received += 1
                # Counted here; what an error means (and how loud to be) is the caller's call.
                logger.info(
                    "signaling %s: hub error %s: %s", self._url, message.code, message.message
                )
            await self._call(self._on_message, message)

    async def _await_registered(self, ws: ClientConnection) -> Registered:
        try:
            async with asyncio.timeout(self._register_timeout_s):
                while True:
                    message = self._decode(await ws.recv())
                    if isinstance(message, Registered):
                        return message
                    if isinstance(message, Error):
                        self._stats.errors_received += 1
                        raise LinkError(
                            f"signaling {self._url}: registration refused: "
                            f"{message.code}: {message.message}"
                        )
                    if message is not None:
                        self._stats.bad_messages += 1
                        logger.warning(
                            "signaling %s: %s before registered, ignored",
                            self._url,
                            message_type(message),
                        )
        except TimeoutError as err:
            raise LinkError(
                f"signaling {self._url}: no registered within {self._register_timeout_s} s"
            ) from err

    def _decode(self, raw: str | bytes) -> SignalMessage | None:
        try:
            return decode_signal(raw, channel=f"signaling from hub {self._url}")
        except ProtocolError as err:
            self._stats.bad_messages += 1
            logger.warning("%s", err)
            return None

    async def _call(self, callback: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # A faulty callback must not take the hub link down; it is logged and counted.
            self._stats.callback_errors += 1
            logger.exception("signaling %s: callback %r failed", self._url, callback)


def _abort_if_opened(attempt: asyncio.Future[ClientConnection]) -> None:
    """Done-callback of a cancelled dial: a connection that opened anyway is dropped."""
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().transport.abort()


def _hub_verdict(ws: ClientConnection) -> str | None:
    """What the hub's upgrade response said of the ``Register`` header (None: nothing)."""
    response = ws.response
    return None if response is None else response.headers.get(REGISTER_HEADER)
