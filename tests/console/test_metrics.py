"""Frame rate and glass-to-glass pairing."""

from __future__ import annotations

import pytest

from teledrive.operator.console.metrics import FrameRateMeter, GlassToGlass


def test_frame_rate_over_the_window() -> None:
    meter = FrameRateMeter(window_ms=1000.0)
    for i in range(31):
        meter.on_frame(i * 100.0 / 3.0)
    assert meter.fps(1000.0) == pytest.approx(30.0)
    assert meter.fps(5000.0) == 0.0  # nothing within the last second


@pytest.mark.parametrize("capture_first", [True, False])
def test_glass_to_glass_pairs_either_order(capture_first: bool) -> None:
    g2g = GlassToGlass()
    # vehicle clock = operator clock + 500 ms; captured at vehicle 10_000, decoded at op 9_540
    if capture_first:
        g2g.on_captured("front", 90, 10_000.0)
        g2g.on_decoded("front", 90, 9_540.0, 500.0)
    else:
        g2g.on_decoded("front", 90, 9_540.0, 500.0)
        g2g.on_captured("front", 90, 10_000.0)
    assert g2g.latest_ms == pytest.approx(40.0)
    assert g2g.matched == 1


def test_glass_to_glass_ignores_other_cameras_and_bounds_memory() -> None:
    g2g = GlassToGlass(history=4)
    g2g.on_captured("rear", 90, 10_000.0)
    g2g.on_decoded("front", 90, 9_540.0, 500.0)
    assert g2g.latest_ms is None
    for pts in range(10):
        g2g.on_captured("front", 1000 + pts, 1.0)
    g2g.on_decoded("front", 1000, 9_540.0, 500.0)  # forgotten: evicted by newer frames
    assert g2g.matched == 0
