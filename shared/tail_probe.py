"""Tail probes: small websocket pings after the last message of a burst, for lossy links.

When the last TCP segment of a burst is lost, nothing after it tells the sender: the kernel
waits for its retransmission timeout, about three round trips on a fresh connection (the
bad-cell lab saw a vehicle's ``register`` lost in a fade arrive 800 ms late, and its first
picture after a cut 2 s after the link came back). A segment sent after the lost one makes the
receiver acknowledge out of order (SACK), and the sender's RACK loss detection retransmits a
round trip later instead. So after each message, unless another follows, :class:`TailProbes`
sends a ping at :data:`TAIL_PROBE_DELAYS_MS`: the first after a typical fade (50 ms on average
under ``bad-cell``), the second after a long one, the third after one of the rare fades that
outlast both (a 185 ms fade took a `registered` and both pings; it came a second late). Three
pings per burst of signaling messages cost nothing a link would notice.

:class:`TailProbes` is the decision (sans-I/O); :class:`TailProber` runs it on a websocket.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

from websockets.exceptions import ConnectionClosed

from teledrive.shared.errors import ConfigError

TAIL_PROBE_DELAYS_MS: tuple[float, ...] = (60.0, 160.0, 400.0)
"""When the probes go, in ms after the last message."""

logger = logging.getLogger(__name__)


def check_delays(delays_ms: Sequence[float], *, where: str = "tail probes") -> tuple[float, ...]:
    """The probe delays as a tuple, checked.

    Args:
        delays_ms: probe times after a message, increasing and > 0 (may be empty: no probes).
        where: what to name in an error.

    Returns:
        The delays.

    Raises:
        ConfigError: the delays are not increasing or not positive.
    """
    delays = tuple(float(d) for d in delays_ms)
    if any(not d > 0.0 for d in delays) or any(b <= a for a, b in itertools.pairwise(delays)):
        raise ConfigError(f"{where}: delays must be > 0 and increasing, got {delays}")
    return delays


class TailProbes:
    """When to probe after the last message (sans-I/O; the caller passes the time).

    Args:
        delays_ms: probe times after a message, increasing and > 0.

    Raises:
        ConfigError: the delays are not increasing or not positive.
    """

    def __init__(self, delays_ms: Sequence[float] = TAIL_PROBE_DELAYS_MS) -> None:
        self._delays = check_delays(delays_ms)
        self._last_ms: float | None = None
        self._next = 0
        self.probes = 0
        """Probes due so far."""

    def sent(self, now_ms: float) -> None:
        """A message went out: probes follow it (those of an earlier message are dropped)."""
        self._last_ms = now_ms
        self._next = 0

    def next_due_ms(self) -> float | None:
        """When the next probe is due, or None."""
        if self._last_ms is None or self._next >= len(self._delays):
            return None
        return self._last_ms + self._delays[self._next]

    def due(self, now_ms: float) -> bool:
        """Whether to probe now (once, however many probe times have passed)."""
        due = False
        while (at := self.next_due_ms()) is not None and now_ms >= at:
            self._next += 1
            due = True
        if due:
            self.probes += 1
        return due


class TailProber:
    """Runs :class:`TailProbes` on one connection (call :meth:`sent` after each message).

    Args:
        ping: sends a probe, e.g. a websocket connection's ``ping`` (what it returns is not
            awaited beyond sending; a closed connection is not an error).
        delays_ms: probe times after a message.
    """

    def __init__(
        self,
        ping: Callable[[], Awaitable[object]],
        delays_ms: Sequence[float] = TAIL_PROBE_DELAYS_MS,
    ) -> None:
        self._send_ping = ping
        self.plan = TailProbes(delays_ms)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._pings: set[asyncio.Task[None]] = set()
        self._stopped = False

    def _now_ms(self) -> float:
        return self._loop.time() * 1000.0

    def sent(self) -> None:
        """A message was just written to the connection."""
        if self._stopped:
            return
        self.plan.sent(self._now_ms())
        self._schedule()

    def stop(self) -> None:
        """No more probes (the connection is done)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._pings:
            task.cancel()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.plan.next_due_ms()
        if at is not None and not self._stopped:
            self._timer = self._loop.call_later(max(0.0, at - self._now_ms()) / 1000.0, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.plan.due(self._now_ms()):
            task = self._loop.create_task(self._ping())
            self._pings.add(task)
            task.add_done_callback(self._pings.discard)
        self._schedule()

    async def _ping(self) -> None:
        # The pong is not awaited: the ping only has to be on the wire.
        try:
            await self._send_ping()
        except ConnectionClosed:
            pass  # the connection is going: nothing left to probe
        except Exception:  # a probe must never take the connection's owner down
            logger.exception("tail probe: ping failed")
