"""A runtime check, independent of the supervisor, that no stale drive command is applied.

Sans-I/O: :meth:`CommandAudit.on_accepted` remembers the stamp of each command the gate let
through, :meth:`CommandAudit.on_applied` is told which command a control tick applied and when.
The audit then knows the command's age *at application* (the latency figure the operator
sees) and counts every tick that applied a command older than its limit
(``min(bound_ms, ttl_ms)``), which must never happen: the supervisor is supposed to stop
applying a command before that. It reads no clock and never changes what is applied.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from teledrive.shared.errors import ConfigError

DEFAULT_WINDOW = 256
"""Accepted commands remembered (5 s at 50 Hz; a tick applies one of the last few)."""


@dataclass(frozen=True, slots=True)
class _Stamp:
    sent_vehicle_ms: float
    limit_ms: float


class CommandAudit:
    """Ages of applied commands, and a count of stale applications.

    Args:
        bound_ms: the vehicle's staleness bound; a command's limit is ``min(bound_ms, ttl_ms)``.
        window: how many recently accepted commands to remember.

    Raises:
        ConfigError: a bound that is not finite and > 0, or a window < 1.
    """

    def __init__(self, *, bound_ms: float, window: int = DEFAULT_WINDOW) -> None:
        if not math.isfinite(bound_ms) or bound_ms <= 0:
            raise ConfigError(f"CommandAudit: bound_ms must be finite and > 0, got {bound_ms!r}")
        if window < 1:
            raise ConfigError(f"CommandAudit: window must be >= 1, got {window!r}")
        self.bound_ms = bound_ms
        self._window = window
        self._stamps: OrderedDict[int, _Stamp] = OrderedDict()
        self._last_applied_seq: int | None = None
        self.last_age_ms: float | None = None
        """Age of the newest applied command at the tick that first applied it."""
        self.stale_applied = 0
        """Ticks that applied a command older than its limit (must stay 0)."""
        self.unknown_applied = 0
        """Ticks that applied a sequence number never accepted (or long forgotten)."""

    def on_accepted(self, seq: int, sent_vehicle_ms: float, ttl_ms: float) -> None:
        """The gate accepted command ``seq`` stamped ``sent_vehicle_ms`` (vehicle clock)."""
        self._stamps[seq] = _Stamp(sent_vehicle_ms, min(self.bound_ms, ttl_ms))
        self._stamps.move_to_end(seq)
        while len(self._stamps) > self._window:
            self._stamps.popitem(last=False)

    def on_applied(self, seq: int | None, now_ms: float) -> float | None:
        """A control tick at ``now_ms`` applied command ``seq`` (None: no operator command).

        Returns:
            The command's age now, or None when no known command was applied.
        """
        if seq is None:
            return None
        stamp = self._stamps.get(seq)
        if stamp is None:
            self.unknown_applied += 1
            return None
        age_ms = now_ms - stamp.sent_vehicle_ms
        if age_ms > stamp.limit_ms:
            self.stale_applied += 1
        if seq != self._last_applied_seq:
            self._last_applied_seq = seq
            self.last_age_ms = age_ms
        return age_ms
