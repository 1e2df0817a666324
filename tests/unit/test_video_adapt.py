"""Folding per-stream sender figures into one link report."""

from __future__ import annotations

import pytest

from teledrive.vehicle.video_adapt import StreamSample, link_report


def test_estimates_add_up_only_when_every_stream_has_one() -> None:
    both = [StreamSample(remb_bps=1_000_000), StreamSample(remb_bps=500_000)]
    assert link_report(both, fallback_rtt_ms=None).estimate_bps == 1_500_000
    one = [StreamSample(remb_bps=1_000_000), StreamSample()]
    assert link_report(one, fallback_rtt_ms=None).estimate_bps is None


def test_loss_is_weighted_by_packets_and_only_from_new_reports() -> None:
    samples = [
        StreamSample(fraction_lost=0.4, packets_sent=300),
        StreamSample(fraction_lost=0.0, packets_sent=100),
        StreamSample(fraction_lost=None, packets_sent=10_000),
    ]
    assert link_report(samples, fallback_rtt_ms=None).fraction_lost == pytest.approx(0.3)
    assert link_report([StreamSample()], fallback_rtt_ms=None).fraction_lost is None


def test_rtt_is_the_worst_stream_else_the_fallback() -> None:
    samples = [StreamSample(rtt_ms=40.0), StreamSample(rtt_ms=90.0), StreamSample()]
    assert link_report(samples, fallback_rtt_ms=10.0).rtt_ms == 90.0
    assert link_report([StreamSample()], fallback_rtt_ms=10.0).rtt_ms == 10.0
