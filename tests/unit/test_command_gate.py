import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.command_gate import (
    SEQ_MODULUS,
    CommandArrival,
    CommandGate,
    DropReason,
    seq_newer,
)

OFFSET_MS = 5_000.0  # vehicle clock is 5 s ahead of the operator clock


def cmd(
    seq: int, *, age_ms: float = 20.0, received_ms: float = 10_000.0, **kw: float
) -> CommandArrival:
    fields: dict[str, float] = {
        "ttl_ms": 500.0,
        "speed_mps": 1.0,
        "steer_rad": 0.1,
        "offset_ms": OFFSET_MS,
    }
    fields.update(kw)
    sent_ms = received_ms - age_ms - fields["offset_ms"]
    return CommandArrival(
        seq=seq,
        sent_ms=sent_ms,
        offset_ms=fields["offset_ms"],
        ttl_ms=fields["ttl_ms"],
        speed_mps=fields["speed_mps"],
        steer_rad=fields["steer_rad"],
        estop=False,
        received_ms=received_ms,
    )


def test_age_uses_offset_estimate() -> None:
    gate = CommandGate()
    verdict = gate.check(cmd(1, age_ms=42.0))
    assert verdict.accepted
    assert verdict.reason is None
    assert verdict.age_ms == pytest.approx(42.0)
    assert gate.accepted == 1
    assert gate.last_seq == 1


@pytest.mark.parametrize(
    ("age_ms", "ttl_ms", "accepted"),
    [
        (250.0, 500.0, True),  # exactly at the bound is still acceptable
        (250.1, 500.0, False),
        (100.0, 99.0, False),  # the TTL is tighter than the bound
        (99.0, 99.0, True),
    ],
)
def test_stale_against_min_of_bound_and_ttl(age_ms: float, ttl_ms: float, accepted: bool) -> None:
    gate = CommandGate(bound_ms=250.0)
    verdict = gate.check(cmd(1, age_ms=age_ms, ttl_ms=ttl_ms))
    assert verdict.accepted is accepted
    if not accepted:
        assert verdict.reason is DropReason.STALE
        assert gate.dropped[DropReason.STALE] == 1
        assert "seq=1" in verdict.detail
        assert gate.last_seq is None  # a drop never moves the expectation


def test_future_beyond_tolerance() -> None:
    gate = CommandGate(future_tolerance_ms=50.0)
    assert gate.check(cmd(1, age_ms=-49.0)).accepted
    verdict = gate.check(cmd(2, age_ms=-51.0))
    assert verdict.reason is DropReason.FUTURE
    assert gate.dropped == {DropReason.FUTURE: 1}


@pytest.mark.parametrize(
    "field", ["sent_ms", "offset_ms", "ttl_ms", "speed_mps", "steer_rad", "received_ms"]
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite(field: str, bad: float) -> None:
    gate = CommandGate()
    good = cmd(1)
    values = {
        "seq": good.seq,
        "sent_ms": good.sent_ms,
        "offset_ms": good.offset_ms,
        "ttl_ms": good.ttl_ms,
        "speed_mps": good.speed_mps,
        "steer_rad": good.steer_rad,
        "estop": False,
        "received_ms": good.received_ms,
    }
    values[field] = bad
    verdict = gate.check(CommandArrival(**values))  # type: ignore[arg-type]
    assert verdict.reason is DropReason.NON_FINITE
    assert field in verdict.detail
    assert gate.dropped[DropReason.NON_FINITE] == 1


@pytest.mark.parametrize(
    "arrival",
    [
        cmd(1, speed_mps=3.01),
        cmd(1, speed_mps=-3.01),
        cmd(1, steer_rad=0.51),
        cmd(1, steer_rad=-0.51),
        cmd(1, ttl_ms=0.0),
        cmd(-1),
        cmd(SEQ_MODULUS),
    ],
)
def test_out_of_range(arrival: CommandArrival) -> None:
    gate = CommandGate(max_speed_mps=3.0, max_steer_rad=0.5)
    verdict = gate.check(arrival)
    assert verdict.reason is DropReason.OUT_OF_RANGE
    assert gate.dropped[DropReason.OUT_OF_RANGE] == 1


def test_limits_themselves_are_accepted() -> None:
    gate = CommandGate(max_speed_mps=3.0, max_steer_rad=0.5)
    assert gate.check(cmd(1, speed_mps=-3.0, steer_rad=0.5)).accepted


def test_duplicate_and_out_of_order() -> None:
    gate = CommandGate()
    assert gate.check(cmd(10)).accepted
    assert gate.check(cmd(10)).reason is DropReason.DUPLICATE
    assert gate.check(cmd(9)).reason is DropReason.OUT_OF_ORDER
    assert gate.check(cmd(12)).accepted  # gaps are fine: unreliable channel
    assert gate.check(cmd(11)).reason is DropReason.OUT_OF_ORDER
    assert gate.dropped == {DropReason.DUPLICATE: 1, DropReason.OUT_OF_ORDER: 2}
    assert gate.accepted == 2


def test_wraparound() -> None:
    gate = CommandGate()
    assert gate.check(cmd(SEQ_MODULUS - 2)).accepted
    assert gate.check(cmd(SEQ_MODULUS - 1)).accepted
    assert gate.check(cmd(0)).accepted
    assert gate.check(cmd(1)).accepted
    assert gate.check(cmd(SEQ_MODULUS - 1)).reason is DropReason.OUT_OF_ORDER


def test_reset_sequence_accepts_a_restarted_console() -> None:
    gate = CommandGate()
    assert gate.check(cmd(1_000_000)).accepted
    assert gate.check(cmd(0)).reason is DropReason.OUT_OF_ORDER
    gate.reset_sequence()
    assert gate.check(cmd(0)).accepted


def test_gate_keeps_running_after_bad_input() -> None:
    gate = CommandGate()
    gate.check(cmd(1, speed_mps=math.nan))
    gate.check(cmd(2, age_ms=10_000.0))
    assert gate.check(cmd(3)).accepted
    assert sum(gate.dropped.values()) == 2


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="bound_ms"):
        CommandGate(bound_ms=math.nan)


@given(st.integers(0, SEQ_MODULUS - 1), st.integers(1, (1 << 31) - 1))
def test_serial_arithmetic(last: int, step: int) -> None:
    newer = (last + step) % SEQ_MODULUS
    assert seq_newer(newer, last)
    assert not seq_newer(last, newer)
    assert not seq_newer(last, last)
