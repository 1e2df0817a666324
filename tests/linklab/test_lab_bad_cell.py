"""The whole system over the bad cellular link (bad-cell): 80 ms one way, ±40 ms pareto
jitter, 3 % of the time in fades (50 ms on average), 1.5 Mbit/s. Video keeps flowing within
the uplink and nothing stale is applied. Needs root; skips otherwise.

Not asserted here, measured by ``benchmarks/link_lab.py`` (see the README): the 500 ms freeze
bound (even with the link's fades taken out, a run now and then shows a 650-790 ms freeze
not yet explained), and a cut's first frame within 2 s (about one cut in twenty takes
2.2-2.9 s when a datagram of the reconnect falls in a fade).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_checks import video_fits_the_uplink, video_flows

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
STALL_MS = 2000.0


@pytest.fixture(scope="module")
def system() -> Iterator[LabSystem]:
    with LabSystem("bad-cell", seed=5, prefix=PREFIX) as lab:
        lab.wait_driving(timeout_s=60.0)
        yield lab


def test_video_keeps_flowing_within_the_uplink(system: LabSystem) -> None:
    # Loosely: a freeze of seconds beyond the fades would be a stall, not a fade's recovery.
    video_flows(system, WINDOW_S, freeze_bound_ms=STALL_MS, beyond_fades=True)
    video_fits_the_uplink(system, "bad-cell")
