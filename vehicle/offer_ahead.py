"""Offers made ahead: the next session's peer connection, ready before an operator asks.

After a cut the vehicle re-dials the hub, and the operator (on the hub's side of the link) asks
for a new session the moment the vehicle is back. Without help the hub then tells the vehicle,
the vehicle offers, and the offer crosses the link back: two one-way trips (about 200 ms over
a bad cell) before ICE can start. Instead, while re-dialling, the vehicle builds the next
session's peer connection, sends its offer with the registration (``Register.offer``), and the
hub opens the session with it (``Connect(offer_ahead=True)``, see ``operator/hub.py``).

An offer carries the vehicle's ICE candidates, which age (a modem that attaches to a new cell
may get a new address), so the ready one is rebuilt when it is older than :data:`MAX_AGE_MS`;
the hub, for its part, uses one only for a few seconds.

Re-dial attempts overlap and each carries the offer ready when it was dialled, so a rebuild
during a cut leaves attempts in flight with different offers; the hub registers whichever
arrives first. So every offer sent stays open (the latest :data:`MAX_SENT`) until the hub
registers one (:meth:`OfferAhead.settle` keeps that one only), and :meth:`OfferAhead.take` is
given the offer of the registration the hub accepted and keeps the session it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from teledrive.vehicle.session import Session

log = logging.getLogger(__name__)

MAX_AGE_MS = 1000.0
"""A ready offer older than this is rebuilt before the next re-dial attempt."""
MAX_SENT = 4
"""Offers sent with dial attempts kept open at once (a re-dial lives 1.5 s and a rebuild comes
at most once a second; the signaling client's own attempt may live longer, and if the hub
registers one whose offer was closed, the session it opens with it is ended and asked for
again)."""
MAX_SEND_AGE_MS = 5000.0
"""A ready offer older than this is not sent with a registration (no re-dial made it: it is
left over, and its candidates may be stale): it is closed instead."""

SessionBuilder = Callable[[], Awaitable[tuple[Session, str]]]
"""Builds a session (peer connection, tracks, channels) and returns it with its offer SDP."""


@dataclass(slots=True, eq=False)  # compared by identity
class _Ready:
    session: Session
    sdp: str
    made_ms: float


class OfferAhead:
    """Keeps the next session's offer ready while the vehicle re-dials.

    Args:
        build: makes a session and its offer.
        close: closes a session that will not be used (in the background).
        now_ms: the vehicle clock in ms.
        max_age_ms: a ready offer older than this is rebuilt by :meth:`prepare`.
    """

    def __init__(
        self,
        build: SessionBuilder,
        close: Callable[[Session], None],
        *,
        now_ms: Callable[[], float],
        max_age_ms: float = MAX_AGE_MS,
    ) -> None:
        self._build = build
        self._close = close
        self._now_ms = now_ms
        self._max_age_ms = max_age_ms
        self._ready: _Ready | None = None
        self._sent: list[_Ready] = []  # oldest first
        self._lock = asyncio.Lock()
        self._ended = 0  # take() and discard() calls: a build that saw one end is not kept
        self.made = 0
        """Offers built."""
        self.used = 0
        """Offers the hub opened a session with."""

    async def prepare(self) -> None:
        """Makes an offer ready unless a fresh one is; call it before each re-dial attempt.

        A failure to build one is logged: the vehicle then re-dials without it.
        """
        ended = self._ended  # before the lock: a take() while waiting for it ends this re-dial
        async with self._lock:
            ready = self._ready
            if ready is not None and self._now_ms() - ready.made_ms <= self._max_age_ms:
                return
            try:
                session, sdp = await self._build()
            except Exception as err:  # an optimisation: never let it stop a re-dial
                log.warning("could not make an offer ahead: %r", err)
                return
            self.made += 1
            if self._ended != ended:
                # A Connect took or dropped the offers while this one was built (take() and
                # discard() do not wait for the lock): the re-dial it was for is over.
                self._close(session)
                return
            old, self._ready = self._ready, _Ready(session, sdp, self._now_ms())
            if old is not None and old not in self._sent:
                self._close(old.session)

    def offer_for_registration(self) -> str | None:
        """The ready offer, to send with a registration (kept open until a session opens)."""
        ready = self._ready
        if ready is None:
            return None
        if self._now_ms() - ready.made_ms > MAX_SEND_AGE_MS:
            self.discard()  # left over from a re-dial long done
            return None
        if ready not in self._sent:
            self._sent.append(ready)
            if len(self._sent) > MAX_SENT:
                self._close(self._sent.pop(0).session)
        return ready.sdp

    def settle(self, sdp: str | None) -> None:
        """The hub registered the vehicle with the offer ``sdp`` (None: without one).

        The re-dials are over: every other offer made or sent is closed, that one is kept for
        :meth:`take`.
        """
        self._ended += 1
        kept = self._find(sdp)
        self._drop_all(keep=kept)
        if kept is not None:
            self._sent = [kept]

    def take(self, sdp: str | None) -> Session | None:
        """The session whose offer the hub opened a session with; closes every other one.

        Args:
            sdp: the offer of the registration the hub accepted.

        Returns:
            The session of that offer, or None if none here has it.
        """
        self._ended += 1
        taken = self._find(sdp)
        self._drop_all(keep=taken)
        if taken is None:
            return None
        self.used += 1
        return taken.session

    def discard(self) -> None:
        """The hub opened a session without an offer made ahead (or the vehicle stops)."""
        self._ended += 1
        self._drop_all(keep=None)

    def _find(self, sdp: str | None) -> _Ready | None:
        return next((sent for sent in self._sent if sent.sdp == sdp), None)

    def _drop_all(self, *, keep: _Ready | None) -> None:
        dropped = self._sent
        if self._ready is not None and self._ready not in dropped:
            dropped = [*dropped, self._ready]
        self._ready, self._sent = None, []
        for offer in dropped:
            if offer is not keep:
                self._close(offer.session)
