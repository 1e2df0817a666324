"""The whole system over the bad cellular link (bad-cell): 80 ms one way, ±40 ms pareto
jitter, 3 % of the time in fades (50 ms on average), 1.5 Mbit/s. Video keeps flowing within
the uplink, a cut is recovered (first frame within 3 s), and nothing stale is applied. Needs
root; skips otherwise.

The first frame comes within 2 s of the link's return in nearly every cut (the benchmark's
figure, see the README: 158 of 160 in session 5, the slowest 2.05 s; since the registration
rides in the upgrade request, 100 of 100 in session 6, the slowest 1.88 s, median 1.13 s), but
a second fade on the critical path can break it (a long fade taking a signaling message and
its probes, or a handshake flight and its copies). So CI asserts 3 s.

The 500 ms freeze bound is measured by ``benchmarks/link_lab.py`` rather than asserted (see
the README): a lost packet costs its fade, the trip of the next packet that reveals the gap
and a retransmission round trip (250-400 ms beyond the fade), and when the retransmission
falls in a second fade a further round trip, which can pass 500 ms even with both fades taken
out (659 ms once in CI). Here a freeze beyond fades must stay within 1 s: what a double loss
costs, well short of a stall.
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

PREFIX = "tdbad"
WINDOW_S = 10.0
STALL_MS = 1000.0
RECONNECT_BOUND_MS = 3000.0


@pytest.fixture(scope="module")
def system() -> Iterator[LabSystem]:
    with LabSystem("bad-cell", seed=5, prefix=PREFIX) as lab:
        lab.wait_driving(timeout_s=60.0)
        yield lab


def test_video_keeps_flowing_within_the_uplink(system: LabSystem) -> None:
    # Loosely: a second beyond the fades would be a stall, not a fade's recovery.
    video_flows(system, WINDOW_S, freeze_bound_ms=STALL_MS, beyond_fades=True)
    video_fits_the_uplink(system, "bad-cell")


def test_a_cut_is_recovered(system: LabSystem) -> None:
    cut = cut_and_reconnect(system, 2.0, reconnect_bound_ms=RECONNECT_BOUND_MS)
    system.wait_driving(timeout_s=20.0, since_ms=cut.end_ms)
    assert system.commands_applied_from_before(cut) == 0
    assert system.summary()["stale_commands_applied"] == 0
