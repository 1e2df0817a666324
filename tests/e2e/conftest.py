"""Fixtures shared by the end-to-end tests (helpers live in ``safety_rig.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from teledrive.operator.hub import Hub


@pytest.fixture
async def hub_url() -> AsyncIterator[str]:
    """An in-process hub on a free loopback port; yields its ``ws://`` URL."""
    async with Hub() as hub:
        await hub.serve("127.0.0.1", 0)
        yield f"ws://127.0.0.1:{hub.bound_port}"
