"""Fixtures of the HIL suite: every test runs once per rig (python, simavr, board)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from host import HostLink
from rigs import RIG_NAMES, Rig, RigUnavailable, open_rig


@pytest.fixture(params=RIG_NAMES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    try:
        opened = open_rig(request.param, str(tmp_path / "ttyMCU"))
    except RigUnavailable as err:
        pytest.skip(str(err))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def link(rig: Rig) -> Iterator[HostLink]:
    host = HostLink(rig.port)
    try:
        yield host
    finally:
        host.close()
