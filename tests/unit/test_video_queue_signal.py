"""The control channel's round trips reach the video budget as its queueing signal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from test_service_failure import CONFIG
from test_service_wake import SteppedClock

from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.service import VehicleService
from teledrive.vehicle.video_adapt import run_video_adaptation


def test_each_accepted_sync_reply_is_handed_over_once() -> None:
    clock = SteppedClock()
    service = VehicleService(parse_config(CONFIG, VehicleConfig), clock=clock)
    request_id, t1 = service.clock_sync.make_request(service.now_ms())
    clock.t_s += 0.25
    service._on_data(m.TimeResponse(id=request_id, t1=t1, t2=t1, t3=t1))
    service._on_data(m.TimeResponse(id=request_id, t1=t1, t2=t1, t3=t1))  # a repeat: rejected
    assert service._take_path_rtts() == [pytest.approx(250.0)]
    assert service._take_path_rtts() == []


class _Adapter:
    """Records what each tick was given."""

    def __init__(self) -> None:
        self.ticks = 0
        self.given: list[Sequence[float]] = []

    async def tick(
        self, now_ms: float, *, fallback_rtt_ms: float | None, path_rtts_ms: Sequence[float]
    ) -> None:
        self.ticks += 1
        self.given.append(path_rtts_ms)

    def status(self) -> m.VideoStatus:
        return m.VideoStatus(primary="front", cameras={})


async def test_the_adaptation_loop_passes_each_ticks_round_trips() -> None:
    adapter = _Adapter()
    batches = iter([[250.0, 240.0], [], [300.0]])
    done = asyncio.Event()

    async def sleep(_: float) -> None:
        if adapter.ticks == 3:
            done.set()
            await asyncio.Event().wait()  # park until cancelled

    loop = asyncio.create_task(
        run_video_adaptation(
            lambda: adapter,  # type: ignore[arg-type,return-value]
            now_ms=lambda: 0.0,
            send_status=lambda _: None,
            take_path_rtts_ms=lambda: next(batches),
            sleep=sleep,
        )
    )
    await asyncio.wait_for(done.wait(), timeout=5.0)
    loop.cancel()
    assert adapter.given == [[250.0, 240.0], [], [300.0]]
