"""The whole system over the emulated LTE link (lte-1200km): 40 ms one way, ±15 ms pareto
jitter, 1 % loss, a 4 Mbit/s uplink. Video keeps flowing within the freeze bound while the
budget fits the uplink, and a cut is recovered within 2 s. Needs root; skips otherwise.

Figures for every profile (and `bad-cell`, where retransmission cannot always beat the bounds)
are in ``benchmarks/link_lab.py`` and the README.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_checks import cut_and_reconnect, video_fits_the_uplink, video_flows

from teledrive.shared.linklab import unavailable_reason
from teledrive.shared.linklab.system import LabSystem

_REASON = unavailable_reason()
pytestmark = [
    pytest.mark.linklab,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=f"link lab unavailable: {_REASON}"),
]

PREFIX = "tdlte"


@pytest.fixture(scope="module")
def system() -> Iterator[LabSystem]:
    with LabSystem("lte-1200km", seed=3, prefix=PREFIX) as lab:
        lab.wait_driving(timeout_s=40.0)
        yield lab


def test_video_flows_within_the_freeze_bound_and_fits_the_uplink(system: LabSystem) -> None:
    video_flows(system, 6.0)
    video_fits_the_uplink(system, "lte-1200km")


def test_a_cut_is_recovered_within_two_seconds(system: LabSystem) -> None:
    cut = cut_and_reconnect(system, 2.0)
    system.wait_driving(timeout_s=15.0, since_ms=cut.end_ms)
    assert system.commands_applied_from_before(cut) == 0
    assert system.summary()["stale_commands_applied"] == 0
