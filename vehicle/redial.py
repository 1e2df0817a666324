"""When to re-dial the hub after the operator went silent, and the loop that does it.

A lost operator means the link was cut. When it returns, the old websocket may wait seconds for
a TCP retransmission (exponential backoff) and the reconnect backoff may be sleeping too, while
the operator is already asking the hub for a new session. Fresh connections with a short
timeout, every tenth of a second, get through within about a tenth of a second of the link's
return (a connection started while the link was still cut waits for its SYN's retransmission, a
second later); the first one takes over (see :meth:`SignalingClient.redial`), once per lost
session. Each of them is a TCP handshake, so a fast re-dial costs the hub little.

:class:`RedialPolicy` is the sans-I/O decision (times in, yes/no out); :func:`run_redial` is the
asyncio loop that asks it and starts the attempts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from teledrive.vehicle.tasks import cancel_all

log = logging.getLogger(__name__)

OPERATOR_LOST_MS = 1000.0
"""No data from the operator for this long: the link was cut, re-dial the hub."""
SESSION_SETUP_MS = 5000.0
"""A session whose operator never sent anything counts as lost after this long."""
REDIAL_EVERY_S = 0.1
REDIAL_FAST_WINDOW_MS = 10_000.0  # every ~0.1 s for this long after the loss...
REDIAL_SLOW_EVERY_S = 1.0  # ...then every ~1 s...
REDIAL_WINDOW_MS = 60_000.0  # ...up to this; after it the signaling backoff alone
SYN_RESEND_S = 1.0
"""Linux sends a lost SYN again after this long (its initial TCP retransmission timeout)."""
REDIAL_TIMEOUT_S = 2.5
"""An attempt's TCP and websocket handshakes take two round trips (0.5-0.7 s over a bad cell),
and one dialled in the last second of a cut waits for its SYN's resend first. At 1.5 s such an
attempt timed out just as the hub registered it: the hub opened a session on it and ended that
again when the vehicle closed it, and the next registration took 250 ms longer."""
MAX_REDIALS_IN_FLIGHT = 32
"""More than an attempt every ~0.1 s for :data:`REDIAL_TIMEOUT_S`: the limit is a backstop."""


class RedialSession(Protocol):
    """A session as the re-dial policy reads it and the loop marks it.

    A :class:`~teledrive.vehicle.session.Session`; ``redialled`` is set once a re-dial got
    through.

    Attributes:
        id: the session id (for the log).
        started_ms: when the session started, vehicle clock in ms.
        last_data_ms: when the operator last sent anything (None: never).
        redialled: whether a re-dial already got through for this session.
    """

    id: str
    started_ms: float
    last_data_ms: float | None
    redialled: bool


def silent_ms(session: RedialSession, now_ms: float) -> float:
    """How long the operator has been silent (a session never heard gets its setup time)."""
    if session.last_data_ms is None:
        return now_ms - session.started_ms - SESSION_SETUP_MS + OPERATOR_LOST_MS
    return now_ms - session.last_data_ms


def operator_lost(session: RedialSession, now_ms: float) -> bool:
    """Whether to re-dial now: the operator is lost, within the redial window.

    The fast redial is for the moment a cut link returns. Past the window (a long outage, or a
    hub that is down) the signaling client's jittered backoff takes over, so a fleet does not
    dial a recovering hub in lockstep four times a second.
    """
    if session.redialled:
        return False
    silent = silent_ms(session, now_ms)
    return OPERATOR_LOST_MS < silent <= OPERATOR_LOST_MS + REDIAL_WINDOW_MS


class RedialPolicy:
    """Decides, at each poll, whether to start a re-dial attempt (sans-I/O).

    Fast (every poll) for :data:`REDIAL_FAST_WINDOW_MS` after the loss, then at most one attempt
    per :data:`REDIAL_SLOW_EVERY_S`, never more than :data:`MAX_REDIALS_IN_FLIGHT` at once, and
    nothing outside the window of :func:`operator_lost`.
    """

    def __init__(self) -> None:
        self.last_attempt_ms = -math.inf
        """When the last attempt was started (vehicle clock, ms)."""

    def should_dial(self, session: RedialSession | None, now_ms: float, *, in_flight: int) -> bool:
        """Whether to start an attempt now; a yes counts as the attempt's start.

        Args:
            session: the current operator session (None: no session, nothing to re-dial).
            now_ms: the vehicle clock in ms.
            in_flight: attempts started and not finished yet.
        """
        if session is None or not operator_lost(session, now_ms):
            return False
        slow = silent_ms(session, now_ms) > OPERATOR_LOST_MS + REDIAL_FAST_WINDOW_MS
        if slow and now_ms - self.last_attempt_ms < REDIAL_SLOW_EVERY_S * 1000.0:
            return False
        if in_flight >= MAX_REDIALS_IN_FLIGHT:
            return False
        self.last_attempt_ms = now_ms
        return True


async def run_redial(
    current: Callable[[], RedialSession | None],
    *,
    now_ms: Callable[[], float],
    redial: Callable[[float], Awaitable[bool]],
    policy: RedialPolicy | None = None,
) -> None:
    """Re-dials the hub while the operator is lost, so a new session can start at once.

    Runs until cancelled (and then cancels its attempts in flight).

    Args:
        current: returns the current operator session (None without one).
        now_ms: the vehicle clock in ms.
        redial: one attempt with a timeout in s (:meth:`SignalingClient.redial`); True when it
            got through.
        policy: the decision; a fresh :class:`RedialPolicy` when None.
    """
    policy = policy if policy is not None else RedialPolicy()
    attempts: set[asyncio.Task[None]] = set()

    async def attempt(session: RedialSession) -> None:
        if await redial(REDIAL_TIMEOUT_S) and not session.redialled:
            session.redialled = True
            log.warning("operator of session %s lost: re-dialled the hub", session.id)

    try:
        while True:
            # Jittered, so a fleet that lost its hub together does not dial in lockstep.
            await asyncio.sleep(REDIAL_EVERY_S * random.uniform(0.6, 1.4))
            session = current()
            if session is None or not policy.should_dial(
                session, now_ms(), in_flight=len(attempts)
            ):
                continue
            task = asyncio.create_task(attempt(session), name="redial-attempt")
            attempts.add(task)
            task.add_done_callback(attempts.discard)
    finally:
        # Awaited, so that no attempt is still making an offer when the service closes them.
        await cancel_all(list(attempts))
