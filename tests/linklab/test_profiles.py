"""Named profiles, the outage spec, validation and the JSON round trip."""

from __future__ import annotations

import math

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.shared.linklab.profiles import (
    PROFILES,
    DirectionProfile,
    GilbertElliott,
    LinkProfile,
    OutageSchedule,
    resolve_profile,
)


def test_named_profiles_carry_the_specified_figures() -> None:
    assert set(PROFILES) >= {"lan", "wired-1200km", "lte-1200km", "bad-cell"}
    wired = resolve_profile("wired-1200km")
    for direction in (wired.uplink, wired.downlink):
        assert (direction.delay_ms, direction.jitter_ms) == (12.5, 2.0)
        assert (direction.loss_ratio, direction.rate_bps) == (0.005, 20e6)
    lte = resolve_profile("lte-1200km")
    assert (lte.uplink.delay_ms, lte.uplink.jitter_ms, lte.uplink.loss_ratio) == (40.0, 15.0, 0.01)
    assert lte.uplink.rate_bps == 4e6
    bad = resolve_profile("bad-cell").uplink
    assert (bad.delay_ms, bad.jitter_ms, bad.rate_bps) == (80.0, 40.0, 1.5e6)
    assert bad.fades is not None  # bursty in time, so quiet flows see the same fades
    assert math.isclose(bad.fades.mean_loss_ratio, 0.03)
    assert bad.fades.mean_fade_ms == 50.0
    lan = resolve_profile("lan").uplink
    assert lan == DirectionProfile()


def test_outage_spec_adds_cuts_to_a_base_profile() -> None:
    default = resolve_profile("outage")
    assert default.uplink.delay_ms == 12.5  # wired-1200km by default
    assert default.uplink.outages == OutageSchedule(
        start_ms=3000.0, length_ms=1000.0, period_ms=10_000.0
    )
    custom = resolve_profile("outage:lte-1200km:2500:0:100")
    assert custom.downlink.rate_bps == 20e6
    assert custom.uplink.outages == OutageSchedule(start_ms=100.0, length_ms=2500.0, period_ms=0.0)
    assert custom.downlink.outages == custom.uplink.outages


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown link profile 'nope'"),
        ("outage:nope", "unknown link profile 'nope'"),
        ("outage:lan:abc", "field 2 .'abc'. is not a number"),
        ("outage:lan:1:2:3:4", "too many"),
        ("outage:lan:500:400", "period_ms .400.0. must exceed length_ms"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_profile(spec)


def test_out_of_range_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match="loss_ratio"):
        DirectionProfile(loss_ratio=1.5)
    with pytest.raises(ConfigError, match="delay_ms"):
        DirectionProfile(delay_ms=-1.0)
    with pytest.raises(ConfigError, match="p_bad_to_good must be > 0"):
        GilbertElliott(p_good_to_bad=0.1, p_bad_to_good=0.0)
    with pytest.raises(ConfigError, match="jitter_distribution"):
        DirectionProfile(jitter_distribution="cauchy")  # type: ignore[arg-type]


def test_json_round_trip_and_validation_on_decode() -> None:
    for name in ("lan", "wired-1200km", "lte-1200km", "bad-cell", "outage:bad-cell:700"):
        profile = resolve_profile(name)
        assert LinkProfile.from_json(profile.to_json()) == profile
    broken = resolve_profile("lan").to_json().replace(b'"loss_ratio":0.0', b'"loss_ratio":2.0', 1)
    with pytest.raises(ConfigError, match="loss_ratio"):
        LinkProfile.from_json(broken)
