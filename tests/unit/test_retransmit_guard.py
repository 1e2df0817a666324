"""Which video retransmissions the vehicle sends (sans-I/O budget, then two real peers)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from teledrive.operator.video_receive import DEFAULT_FEEDBACK_COPIES, DEFAULT_FEEDBACK_SPACING_MS
from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import Camera, SyntheticSource
from teledrive.vehicle.retransmit_guard import (
    BURST_S,
    COPIES_PER_ROUND_TRIP,
    COPY_SPACING_MS,
    MAX_AGE_MS,
    AiortcSenderError,
    RetransmitBudget,
    install_retransmit_guard,
    picture_age_ms,
)
from teledrive.vehicle.video_track import CameraVideoTrack, add_camera_track

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
RATE_BPS = 800_000
PACKET = 1200


def ask(budget: RetransmitBudget, now_ms: float, seq: int, **overrides: float | None) -> bool:
    kwargs: dict[str, float | None] = {"age_ms": 50.0, "rate_bps": RATE_BPS, "rtt_ms": 200.0}
    kwargs.update(overrides)
    return budget.allow(now_ms, seq=seq, size_bytes=PACKET, **kwargs)  # type: ignore[arg-type]


def test_copies_of_one_nack_retransmit_three_times_per_round_trip_spaced() -> None:
    budget = RetransmitBudget()
    assert ask(budget, 0.0, 7)
    assert not ask(budget, 30.0, 7)  # a copy the jitter brought 30 ms after: too soon
    assert ask(budget, 50.0, 7)  # the operator's second copy: a chance outside the fade
    assert not ask(budget, 80.0, 7)  # too soon after the second
    assert ask(budget, 100.0, 7)  # its third
    assert not ask(budget, 150.0, 7)  # three this round trip already
    assert ask(budget, 200.0, 7)  # a round trip on: all may have been lost
    assert (budget.stats.sent, budget.stats.repeated) == (4, 3)


def test_each_of_the_operators_nack_copies_can_be_answered() -> None:
    # The copies come DEFAULT_FEEDBACK_SPACING_MS apart; a little jitter must not make the
    # budget skip one, and the round trip must hold all of them.
    assert COPY_SPACING_MS < DEFAULT_FEEDBACK_SPACING_MS
    assert COPIES_PER_ROUND_TRIP >= DEFAULT_FEEDBACK_COPIES


def test_the_last_decision_is_named() -> None:
    budget = RetransmitBudget()
    assert budget.last_decision is None
    ask(budget, 0.0, 7)
    assert budget.last_decision == "sent"
    ask(budget, 10.0, 7)
    assert budget.last_decision == "repeated"
    ask(budget, 10.0, 8, age_ms=MAX_AGE_MS + 1.0)
    assert budget.last_decision == "too old"
    for seq in range(100, 200):  # far more than the bucket holds, all at once
        ask(budget, 10.0, seq)
    assert budget.last_decision == "over budget"


def test_a_picture_older_than_the_limit_is_not_retransmitted() -> None:
    budget = RetransmitBudget()
    assert ask(budget, 0.0, 1, age_ms=MAX_AGE_MS)
    assert not ask(budget, 0.0, 2, age_ms=MAX_AGE_MS + 1.0)
    assert budget.stats.too_old == 1


def test_picture_age_from_rtp_timestamps_across_the_wrap() -> None:
    assert picture_age_ms(90_000, 0) == 1000.0
    assert picture_age_ms(45_000, (1 << 32) - 45_000) == 1000.0  # the timestamp wrapped
    assert picture_age_ms(1000, 1000) == 0.0
    assert picture_age_ms(0, 9_000) == 0.0  # ahead of the newest: not behind
    assert picture_age_ms(90_091, 0) > MAX_AGE_MS  # just over the limit


def test_a_burst_is_bounded_by_the_bitrate_and_refills_at_it() -> None:
    budget = RetransmitBudget()
    burst_packets = int(RATE_BPS * BURST_S / (PACKET * 8))  # 20 at 800 kbit/s
    sent = [ask(budget, 0.0, seq) for seq in range(100)]  # a cut's worth of NACKs at once
    assert sum(sent) == burst_packets
    assert sent[:burst_packets] == [True] * burst_packets  # oldest first, as asked
    assert budget.stats.over_budget == 100 - burst_packets
    # 120 ms later the bucket holds 120 ms of the rate: 10 packets of 1200 bytes.
    later = [ask(budget, 120.0, seq) for seq in range(100, 130)]
    assert sum(later) == int(RATE_BPS * 0.120 / (PACKET * 8))


def test_a_thin_cap_still_gets_the_floor_rate() -> None:
    budget = RetransmitBudget(min_rate_bps=300_000)
    sent = [ask(budget, 0.0, seq, rate_bps=64_000) for seq in range(50)]
    assert sum(sent) == int(300_000 * BURST_S / (PACKET * 8))


class CountingBudget(RetransmitBudget):
    """A budget that says when it has decided ``wanted`` requests."""

    def __init__(self) -> None:
        super().__init__(copy_spacing_ms=60_000.0)  # however slow the machine: one copy
        self.wanted = 0
        self.decided = asyncio.Event()

    def allow(self, now_ms: float, **kwargs: Any) -> bool:
        allowed = super().allow(now_ms, **kwargs)
        if self.stats.sent + self.stats.repeated >= self.wanted > 0:
            self.decided.set()
        return allowed


def test_an_aiortc_sender_without_the_internals_fails_loudly() -> None:
    # Without the newest timestamp the age limit would silently never apply.
    with pytest.raises(AiortcSenderError, match="update"):
        install_retransmit_guard(
            object(),  # type: ignore[arg-type]
            clock_ms=lambda: 0.0,
            rate_bps=lambda: None,
            rtt_ms=lambda: None,
        )


def test_limits_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="retransmit budget"):
        RetransmitBudget(max_age_ms=0.0)
    with pytest.raises(ConfigError, match="copies_per_round_trip"):
        RetransmitBudget(copies_per_round_trip=0)


async def test_a_nack_repeated_three_times_gets_one_retransmission_over_real_peers() -> None:
    """The operator's NACK copies reach a real aiortc sender: only the first is answered.

    The copies arrive back to back here; the budget's spacing is set far beyond them, so
    the second and third are within it however slow the machine is.
    """
    camera = Camera(lambda: SyntheticSource(320, 240, 30, name="front"), name="front", fps=30)
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = CameraVideoTrack(camera)
    camera.start()
    try:
        transceiver = add_camera_track(sender_pc, track)
        loop = asyncio.get_running_loop()
        budget = CountingBudget()
        install_retransmit_guard(
            transceiver.sender,
            clock_ms=lambda: loop.time() * 1000.0,
            rate_bps=lambda: track.max_bitrate_bps,
            rtt_ms=lambda: 10_000.0,  # nothing is due again within this test
            budget=budget,
        )
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(sender_pc.localDescription)
        receiver = next(t.receiver for t in receiver_pc.getTransceivers() if t.kind == "video")
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(receiver_pc.localDescription)
        for _ in range(5):  # video flows: the sender has packets to retransmit
            await asyncio.wait_for(receiver.track.recv(), 10 * TIME_SCALE)
        stats = await receiver.getStats()
        inbound = next(s for s in stats.values() if s.type == "inbound-rtp")
        ssrc = inbound.ssrc
        history = transceiver.sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        newest = max(history.values(), key=lambda p: p.timestamp)
        seqs = sorted(
            p.sequence_number for p in history.values() if p.timestamp == newest.timestamp
        )
        budget.wanted = 3 * len(seqs)
        for _ in range(3):
            await receiver._send_rtcp_nack(ssrc, seqs)
        await asyncio.wait_for(budget.decided.wait(), 5 * TIME_SCALE)
    finally:
        await sender_pc.close()
        await receiver_pc.close()
        camera.stop()
    assert budget.stats.sent == len(seqs)
    assert budget.stats.repeated == 2 * len(seqs)
