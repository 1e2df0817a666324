"""Link lab: vehicle, hub and operator in network namespaces, joined by an emulated long link.

The link (delay, jitter, random and bursty loss, rate limit, reordering, outages) is emulated
in user space by a relay in a router namespace, because this kernel has no netem. See
``docs/linklab.md``.

Typical use::

    from teledrive.shared.linklab import LinkLab

    with LinkLab(profile="wired-1200km") as lab:
        server = lab.run_in("hub", ["python", "-m", "teledrive.hub"])
        lab.cut(2.0)
        print(lab.stats())
"""

from teledrive.shared.linklab.impair import (
    DirectionStats,
    Dropped,
    DropReason,
    Impairment,
    Scheduled,
)
from teledrive.shared.linklab.netns import (
    ADDRESSES,
    ROLES,
    LabNames,
    LinkLab,
    cleanup,
    unavailable_reason,
)
from teledrive.shared.linklab.profiles import (
    PROFILES,
    DirectionProfile,
    Fades,
    GilbertElliott,
    LinkProfile,
    OutageSchedule,
    resolve_profile,
    with_outages,
)

__all__ = [
    "ADDRESSES",
    "PROFILES",
    "ROLES",
    "DirectionProfile",
    "DirectionStats",
    "DropReason",
    "Dropped",
    "Fades",
    "GilbertElliott",
    "Impairment",
    "LabNames",
    "LinkLab",
    "LinkProfile",
    "OutageSchedule",
    "Scheduled",
    "cleanup",
    "resolve_profile",
    "unavailable_reason",
    "with_outages",
]
