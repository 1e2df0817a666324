"""Fixtures of the unit tests that talk to a real hub (helpers in ``signaling_rig.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from signaling_rig import HEARTBEAT_S, Running

from teledrive.operator.hub import Hub


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """A hub on a free loopback port (test modules with their own ``hub`` use theirs)."""
    async with Hub(heartbeat_s=HEARTBEAT_S) as hub:
        await hub.serve("127.0.0.1", 0)
        yield hub


@pytest.fixture
async def clients() -> AsyncIterator[list[Running]]:
    """Signaling clients a test started with :func:`signaling_rig.start`; stopped after it."""
    running: list[Running] = []
    yield running
    for r in running:
        await r.stop()
