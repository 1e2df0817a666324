"""CommandAudit: ages at application and the stale-applied count, on injected times."""

from __future__ import annotations

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.command_audit import CommandAudit


def test_age_is_taken_when_a_command_is_first_applied() -> None:
    audit = CommandAudit(bound_ms=250.0)
    audit.on_accepted(7, sent_vehicle_ms=1000.0, ttl_ms=300.0)
    assert audit.on_applied(7, 1014.0) == pytest.approx(14.0)
    assert audit.last_age_ms == pytest.approx(14.0)
    # Held by later ticks: the age grows, but the figure stays the one at application.
    assert audit.on_applied(7, 1034.0) == pytest.approx(34.0)
    assert audit.last_age_ms == pytest.approx(14.0)
    audit.on_accepted(8, sent_vehicle_ms=1020.0, ttl_ms=300.0)
    audit.on_applied(8, 1036.0)
    assert audit.last_age_ms == pytest.approx(16.0)
    assert audit.stale_applied == 0


def test_a_tick_applying_a_command_past_its_limit_is_counted() -> None:
    audit = CommandAudit(bound_ms=250.0)
    audit.on_accepted(1, sent_vehicle_ms=0.0, ttl_ms=300.0)
    audit.on_applied(1, 250.0)  # exactly at the bound: allowed
    assert audit.stale_applied == 0
    audit.on_applied(1, 250.5)
    audit.on_applied(1, 270.0)
    assert audit.stale_applied == 2


def test_the_ttl_tightens_the_limit() -> None:
    audit = CommandAudit(bound_ms=250.0)
    audit.on_accepted(1, sent_vehicle_ms=0.0, ttl_ms=100.0)
    audit.on_applied(1, 100.0)
    assert audit.stale_applied == 0
    audit.on_applied(1, 101.0)
    assert audit.stale_applied == 1


def test_no_command_and_unknown_commands_are_not_ages() -> None:
    audit = CommandAudit(bound_ms=250.0, window=2)
    assert audit.on_applied(None, 10.0) is None
    for seq in (1, 2, 3):
        audit.on_accepted(seq, sent_vehicle_ms=float(seq), ttl_ms=250.0)
    assert audit.on_applied(1, 20.0) is None  # forgotten: only the last 2 are remembered
    assert audit.unknown_applied == 1
    assert audit.on_applied(3, 20.0) == pytest.approx(17.0)
    assert audit.stale_applied == 0


@pytest.mark.parametrize("bound_ms", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_bound_is_refused(bound_ms: float) -> None:
    with pytest.raises(ConfigError, match="bound_ms"):
        CommandAudit(bound_ms=bound_ms)


def test_a_bad_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="window"):
        CommandAudit(bound_ms=250.0, window=0)
