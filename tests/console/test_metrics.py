"""Frame rate, receive bitrate and packet loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from teledrive.operator.console.metrics import (
    FrameRateMeter,
    LinkCounters,
    VideoLinkMeter,
    counters_from_report,
)


def test_frame_rate_over_the_window() -> None:
    meter = FrameRateMeter(window_ms=1000.0)
    for i in range(31):
        meter.on_frame(i * 100.0 / 3.0)
    assert meter.fps(1000.0) == pytest.approx(30.0)
    assert meter.fps(5000.0) == 0.0  # nothing within the last second


def test_counters_sum_video_inbound_and_the_transport() -> None:
    report = {
        "t": SimpleNamespace(type="transport", bytesReceived=50_000),
        "v1": SimpleNamespace(type="inbound-rtp", kind="video", packetsReceived=90, packetsLost=2),
        "v2": SimpleNamespace(type="inbound-rtp", kind="video", packetsReceived=10, packetsLost=0),
        "a": SimpleNamespace(type="inbound-rtp", kind="audio", packetsReceived=500, packetsLost=9),
        "o": SimpleNamespace(type="outbound-rtp", kind="video", packetsSent=4),
    }
    assert counters_from_report(report.values()) == LinkCounters(50_000, 100, 2)
    assert counters_from_report([report["t"]]) is None


def test_meter_rates_between_samples_and_restart() -> None:
    meter = VideoLinkMeter()
    meter.on_sample(0.0, LinkCounters(0, 0, 0))
    assert meter.bitrate_kbps is None
    meter.on_sample(1000.0, LinkCounters(125_000, 95, 5))
    assert meter.bitrate_kbps == pytest.approx(1000.0)
    assert meter.loss_fraction == pytest.approx(0.05)
    meter.on_sample(2000.0, LinkCounters(10, 1, 0))  # a new session counts from zero
    assert meter.bitrate_kbps is None
    meter.on_sample(2500.0, LinkCounters(62_510, 51, 0))
    assert meter.bitrate_kbps == pytest.approx(1000.0)
    assert meter.loss_fraction == 0.0
    meter.on_sample(3000.0, None)
    assert (meter.bitrate_kbps, meter.loss_fraction) == (None, None)
