"""Bad input on a live session: rejected with a clear error, counted, and the session goes on.

The vehicle runs in this event loop (the rig of ``safety_rig.py``, as in ``test_safety``) with
a real operator client over real aiortc data channels; the operator injects malformed messages
on every channel.
"""

from __future__ import annotations

import pytest
from safety_rig import LONG_ROUTE, in_process_operator, running_vehicle, wait_until

from teledrive.shared import messages as m
from teledrive.vehicle.supervisor import Mode

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GARBAGE: dict[str, list[str | bytes]] = {
    "drive": ["{not json", '{"type":"drive","seq":1}', b"\x00\xff\xfe"],
    "telemetry": ['{"type":"warp"}', '{"type":"video_freshness","t_ms":1,"age_ms":-5}'],
    "events": ['{"type":"estop","source":1}', "[]"],
}


async def test_malformed_messages_are_rejected_answered_counted_and_survived(
    hub_url: str,
) -> None:
    async with running_vehicle(hub_url, LONG_ROUTE) as vehicle:
        errors: list[m.Error] = []

        def keep_errors(message: m.Message) -> None:
            if isinstance(message, m.Error):
                errors.append(message)

        async with in_process_operator(
            hub_url, vehicle, speed_mps=0.5, on_message=keep_errors
        ) as client:
            await wait_until(lambda: vehicle.mode is Mode.TELEOP, 20.0, "operator takeover")
            channels = client.channels
            assert channels is not None
            sent = 0
            for label, items in GARBAGE.items():
                raw = getattr(channels, label).raw
                for item in items:
                    raw.send(item)
                    sent += 1
            await wait_until(lambda: vehicle.service.errors >= sent, 5.0, "errors counted")
            await wait_until(lambda: len(errors) >= sent, 5.0, "error answers")
            # Each answer says what was wrong and where.
            texts = " | ".join(e.message for e in errors)
            assert all(e.code == "bad_message" for e in errors), errors
            assert "data channel 'drive'" in texts, texts
            assert "data channel 'events'" in texts, texts
            assert "$.age_ms" in texts, texts
            # The session keeps serving: telemetry flows, commands are still applied, and the
            # operator is still in control; a malformed e-stop did not stop or latch anything.
            telemetry_before = client.stats.telemetry_received
            applied_before = client.stats.commands_applied
            await wait_until(
                lambda: (
                    client.stats.telemetry_received >= telemetry_before + 10
                    and client.stats.commands_applied >= applied_before + 10
                ),
                5.0,
                "the session to go on",
            )
            assert vehicle.mode is Mode.TELEOP
            telemetry = client.stats.last_telemetry
            assert telemetry is not None
            assert telemetry.drops.get("bad_message", 0) >= sent
