"""Fixtures shared by the end-to-end tests (helpers live in ``safety_rig.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from teledrive.operator.hub import Hub
from teledrive.vehicle.mcu_sim import PtyMcu


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """An in-process hub on a free loopback port."""
    async with Hub() as hub:
        await hub.serve("127.0.0.1", 0)
        yield hub


@pytest.fixture
def hub_url(hub: Hub) -> str:
    """The ``ws://`` URL of :func:`hub`."""
    return f"ws://127.0.0.1:{hub.bound_port}"


@pytest.fixture
def mcu() -> Iterator[PtyMcu]:
    """The simulated motor controller on a real pty, owned by the test (so it can watch it)."""
    with PtyMcu() as sim:
        yield sim
