"""The operator client recovers from a vehicle whose offer it cannot answer."""

from __future__ import annotations

import asyncio
import contextlib
import os

import websockets

from teledrive.operator.client import OperatorClient
from teledrive.operator.hub import Hub
from teledrive.shared import messages as m

WAIT_S = 10.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
# Parses as SDP, but aiortc refuses it (no ICE credentials), as it would an offer with no
# common codec from a mismatched vehicle.
BAD_SDP = (
    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
)


async def test_an_unanswerable_offer_is_dropped_and_a_new_session_asked_for() -> None:
    connects: asyncio.Queue[str] = asyncio.Queue()

    async def vehicle(url: str) -> None:
        async with websockets.connect(url) as ws:
            await ws.send(m.encode_text(m.Register(role="vehicle", id="van-01")))
            async for raw in ws:
                message = m.decode_signal(raw)
                if isinstance(message, m.Connect) and message.session is not None:
                    connects.put_nowait(message.session)
                    await ws.send(m.encode_text(m.Offer(session=message.session, sdp=BAD_SDP)))

    async with Hub() as hub:
        await hub.serve("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{hub.bound_port}"
        fake = asyncio.create_task(vehicle(url))
        await hub.wait_stats(lambda s: s["vehicles"] == 1, WAIT_S)
        client = OperatorClient(url, "van-01", operator_id="op1")
        run = asyncio.create_task(client.run())
        try:
            first = await asyncio.wait_for(connects.get(), WAIT_S)
            second = await asyncio.wait_for(connects.get(), WAIT_S)
            assert second != first  # asked again rather than wedged on a half-built session
            assert client.stats.errors >= 1
        finally:
            for task in (run, fake):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
