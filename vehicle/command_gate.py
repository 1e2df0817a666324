"""The gate every arriving drive command passes before the supervisor may apply it.

Sans-I/O: :meth:`CommandGate.check` takes one :class:`CommandArrival` and returns a
:class:`GateVerdict`; nothing here reads a clock.

Age
    ``age_ms = received_ms - (sent_ms + offset_ms)``: the operator's send time moved onto the
    vehicle clock with the operator's own offset estimate (``vehicle_clock - operator_clock``),
    subtracted from the vehicle's receive time.

Checks, in this order (the first that fails names the drop):

========================  ====================================================================
``non_finite``            a float field (times, offset, TTL, speed, steer) is NaN or infinite
``out_of_range``          sequence outside u32, TTL <= 0, |speed| or |steer| beyond the limits
``future``                ``age_ms < -future_tolerance_ms`` (clocks or stamps are wrong)
``stale``                 ``age_ms > min(bound_ms, ttl_ms)``
``duplicate``             same sequence number as the last accepted command
``out_of_order``          older than the last accepted command
========================  ====================================================================

Sequence numbers are **u32** and compared with serial-number arithmetic (RFC 1982): ``seq`` is
newer than ``last`` when ``0 < (seq - last) mod 2**32 < 2**31``. At 50 Hz a u32 wraps after
2.7 years and the "newer" half-window spans 497 days, so a restarted operator console is the
only realistic way to go backwards: call :meth:`CommandGate.reset_sequence` for a new session.
Dropped commands never move the sequence expectation.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import Counter
from dataclasses import dataclass

from teledrive.shared.errors import ConfigError

logger = logging.getLogger(__name__)

SEQ_MODULUS = 1 << 32
_SEQ_HALF = 1 << 31


class DropReason(enum.StrEnum):
    """Why a command was dropped."""

    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    FUTURE = "future"
    STALE = "stale"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True, slots=True)
class CommandArrival:
    """One drive command as it arrived at the vehicle.

    Attributes:
        seq: Operator sequence number, u32, +1 per command, wraps.
        sent_ms: Operator send time, operator clock.
        offset_ms: The operator's estimate of ``vehicle_clock - operator_clock``.
        ttl_ms: Time to live: the operator's own staleness bound for this command.
        speed_mps: Requested speed, signed (negative = reverse).
        steer_rad: Requested steering angle, + = left.
        estop: The operator's e-stop flag (honoured by the supervisor whatever the verdict).
        received_ms: Arrival time, vehicle clock.
    """

    seq: int
    sent_ms: float
    offset_ms: float
    ttl_ms: float
    speed_mps: float
    steer_rad: float
    estop: bool
    received_ms: float

    def sent_vehicle_ms(self) -> float:
        """The send time moved onto the vehicle clock with the stamped offset estimate."""
        return self.sent_ms + self.offset_ms

    def age_at(self, now_ms: float) -> float:
        """Age of the command at ``now_ms`` (vehicle clock), from its stamps."""
        return now_ms - self.sent_vehicle_ms()


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """The gate's decision on one command.

    Attributes:
        accepted: True when the command may be applied.
        reason: Why it was dropped, or None when accepted.
        age_ms: Age at arrival (NaN when the stamps were not finite).
        detail: A human-readable message naming the command and the failed check.
    """

    accepted: bool
    reason: DropReason | None
    age_ms: float
    detail: str


def seq_newer(seq: int, last: int) -> bool:
    """True when u32 ``seq`` is newer than ``last`` in serial-number arithmetic."""
    return 0 < (seq - last) % SEQ_MODULUS < _SEQ_HALF


class CommandGate:
    """Stateful gate: remembers the last accepted sequence number and counts verdicts.

    Args:
        bound_ms: Staleness bound; a command older than ``min(bound_ms, ttl_ms)`` is dropped.
        future_tolerance_ms: How far in the future (negative age) a command may claim to be.
        max_speed_mps: Largest accepted ``|speed_mps|``.
        max_steer_rad: Largest accepted ``|steer_rad|``.
    """

    def __init__(
        self,
        *,
        bound_ms: float = 250.0,
        future_tolerance_ms: float = 50.0,
        max_speed_mps: float = 3.0,
        max_steer_rad: float = 0.5,
    ) -> None:
        for name, value in (
            ("bound_ms", bound_ms),
            ("future_tolerance_ms", future_tolerance_ms),
            ("max_speed_mps", max_speed_mps),
            ("max_steer_rad", max_steer_rad),
        ):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"CommandGate: {name} must be finite and >= 0, got {value!r}")
        self.bound_ms = bound_ms
        self.future_tolerance_ms = future_tolerance_ms
        self.max_speed_mps = max_speed_mps
        self.max_steer_rad = max_steer_rad
        self._last_seq: int | None = None
        self.accepted = 0
        self.dropped: Counter[DropReason] = Counter()

    @property
    def last_seq(self) -> int | None:
        """The last accepted sequence number, or None before the first."""
        return self._last_seq

    def reset_sequence(self) -> None:
        """Forget the last sequence number (a new operator session starts anywhere)."""
        self._last_seq = None

    def check(self, cmd: CommandArrival) -> GateVerdict:
        """Judge one arrival, update the counters and, if accepted, the sequence expectation."""
        verdict = self._judge(cmd)
        if verdict.accepted:
            self.accepted += 1
            self._last_seq = cmd.seq
        elif verdict.reason is not None:
            self.dropped[verdict.reason] += 1
            logger.debug("drive command dropped: %s", verdict.detail)
        return verdict

    def _judge(self, cmd: CommandArrival) -> GateVerdict:
        where = f"drive command seq={cmd.seq}"
        floats = {
            "sent_ms": cmd.sent_ms,
            "offset_ms": cmd.offset_ms,
            "ttl_ms": cmd.ttl_ms,
            "speed_mps": cmd.speed_mps,
            "steer_rad": cmd.steer_rad,
            "received_ms": cmd.received_ms,
        }
        bad = [name for name, value in floats.items() if not math.isfinite(value)]
        if bad:
            return _drop(DropReason.NON_FINITE, math.nan, f"{where}: non-finite {', '.join(bad)}")
        age_ms = cmd.received_ms - cmd.sent_vehicle_ms()
        problem = self._range_problem(cmd)
        if problem:
            return _drop(DropReason.OUT_OF_RANGE, age_ms, f"{where}: {problem}")
        if age_ms < -self.future_tolerance_ms:
            return _drop(
                DropReason.FUTURE,
                age_ms,
                f"{where}: age {age_ms:.1f} ms is in the future beyond "
                f"{self.future_tolerance_ms:.1f} ms tolerance",
            )
        limit_ms = min(self.bound_ms, cmd.ttl_ms)
        if age_ms > limit_ms:
            return _drop(
                DropReason.STALE, age_ms, f"{where}: age {age_ms:.1f} ms > {limit_ms:.1f} ms"
            )
        if self._last_seq is not None and cmd.seq == self._last_seq:
            return _drop(DropReason.DUPLICATE, age_ms, f"{where}: duplicate")
        if self._last_seq is not None and not seq_newer(cmd.seq, self._last_seq):
            return _drop(
                DropReason.OUT_OF_ORDER,
                age_ms,
                f"{where}: older than last accepted seq={self._last_seq}",
            )
        return GateVerdict(True, None, age_ms, f"{where}: accepted, age {age_ms:.1f} ms")

    def _range_problem(self, cmd: CommandArrival) -> str:
        if not 0 <= cmd.seq < SEQ_MODULUS:
            return f"seq {cmd.seq} outside u32"
        if cmd.ttl_ms <= 0:
            return f"ttl_ms {cmd.ttl_ms} must be > 0"
        if abs(cmd.speed_mps) > self.max_speed_mps:
            return f"|speed_mps| {abs(cmd.speed_mps):.3f} > {self.max_speed_mps}"
        if abs(cmd.steer_rad) > self.max_steer_rad:
            return f"|steer_rad| {abs(cmd.steer_rad):.3f} > {self.max_steer_rad}"
        return ""


def _drop(reason: DropReason, age_ms: float, detail: str) -> GateVerdict:
    return GateVerdict(False, reason, age_ms, detail)
