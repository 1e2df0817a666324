"""The operator client: recovering from sessions that cannot work, and a stalled drive channel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import websockets
from aiortc import RTCCertificate, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from udp_link import StallableLink
from websockets.asyncio.client import ClientConnection

from teledrive.operator.client import (
    CONNECT_RETRY_S,
    DRIVE_BACKLOG_BYTES,
    SESSION_SETUP_S,
    VIDEO_RECEIVE_KEPT,
    OperatorClient,
    OperatorStats,
)
from teledrive.operator.hub import Hub
from teledrive.operator.video_receive import JitterStats
from teledrive.shared import channels as ch
from teledrive.shared import messages as m
from teledrive.shared.errors import LinkError

HOST = "127.0.0.1"
WAIT_S = 10.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
# Parses as SDP, but aiortc refuses it (no ICE credentials), as it would an offer with no
# common codec from a mismatched vehicle.
BAD_SDP = (
    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
)
FINGERPRINT_LINE = re.compile(r"^a=fingerprint:.*$", re.MULTILINE)

VehicleHandler = Callable[[ClientConnection, m.SignalMessage], Awaitable[None]]


@contextlib.asynccontextmanager
async def operator_and_fake_vehicle(
    on_message: VehicleHandler, *, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[tuple[Hub, OperatorClient]]:
    """A real hub, a vehicle on a raw websocket and an operator client asking for it.

    ``on_message`` gets what the hub sends the vehicle; all runs until the block ends.
    ``clock`` is the client's.
    """

    async def vehicle(url: str) -> None:
        async with websockets.connect(url) as ws:
            await ws.send(m.encode_text(m.Register(role="vehicle", id="van-01")))
            async for raw in ws:
                await on_message(ws, m.decode_signal(raw))

    async with Hub() as hub:
        await hub.serve("127.0.0.1", 0)
        url = f"ws://127.0.0.1:{hub.bound_port}"
        fake = asyncio.create_task(vehicle(url))
        await hub.wait_stats(lambda s: s["vehicles"] == 1, WAIT_S)
        client = OperatorClient(url, "van-01", operator_id="op1", clock=clock)
        run = asyncio.create_task(client.run())
        try:
            yield hub, client
        finally:
            for task in (run, fake):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def test_an_unanswerable_offer_is_dropped_and_a_new_session_asked_for() -> None:
    connects: asyncio.Queue[str] = asyncio.Queue()

    async def offer_badly(ws: ClientConnection, message: m.SignalMessage) -> None:
        if isinstance(message, m.Connect) and message.session is not None:
            connects.put_nowait(message.session)
            await ws.send(m.encode_text(m.Offer(session=message.session, sdp=BAD_SDP)))

    async with operator_and_fake_vehicle(offer_badly) as (_hub, client):
        first = await asyncio.wait_for(connects.get(), WAIT_S)
        second = await asyncio.wait_for(connects.get(), WAIT_S)
        assert second != first  # asked again rather than wedged on a half-built session
        assert client.stats.errors >= 1


def _foreign_fingerprint(sdp: str) -> str:
    """The offer with the DTLS fingerprint of another certificate than the one it will show.

    What a vehicle whose certificate changed after it signalled, or a tampered signaling path,
    looks like: ICE connects, the DTLS handshake completes, and the operator then refuses
    the certificate, so aiortc reports the connection ``failed``.
    """
    other = RTCCertificate.generateCertificate().getFingerprints()[0]
    line = f"a=fingerprint:{other.algorithm} {other.value}"
    changed, count = FINGERPRINT_LINE.subn(line, sdp)
    assert count >= 1, "the vehicle's offer has no fingerprint to replace"
    return changed


async def test_a_failed_peer_connection_ends_the_session_before_the_setup_timeout() -> None:
    loop = asyncio.get_running_loop()
    connects: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    answered: asyncio.Future[float] = loop.create_future()
    operator_states: list[tuple[str, float]] = []
    failed = asyncio.Event()
    vehicle_pcs: list[RTCPeerConnection] = []

    async def vehicle(ws: ClientConnection, message: m.SignalMessage) -> None:
        """Answers the first session with a real aiortc offer, the later ones not at all."""
        if isinstance(message, m.Connect) and message.session is not None:
            connects.put_nowait((message.session, loop.time()))
            if vehicle_pcs:
                return
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            vehicle_pcs.append(pc)
            ch.open_channels(pc, lambda _message: None)
            await pc.setLocalDescription(await pc.createOffer())
            sdp = _foreign_fingerprint(pc.localDescription.sdp)
            await ws.send(m.encode_text(m.Offer(session=message.session, sdp=sdp)))
        elif isinstance(message, m.Answer):
            watch_operator_pc()
            answered.set_result(loop.time())
            await vehicle_pcs[0].setRemoteDescription(
                RTCSessionDescription(sdp=message.sdp, type="answer")
            )

    def watch_operator_pc() -> None:
        # The operator's peer connection exists once its answer is out, and cannot fail
        # before the vehicle takes the answer (ICE needs the vehicle's nomination).
        pc = client.pc
        assert pc is not None

        @pc.on("connectionstatechange")
        def note() -> None:
            operator_states.append((pc.connectionState, loop.time()))
            if pc.connectionState == "failed":
                failed.set()

    try:
        async with operator_and_fake_vehicle(vehicle) as (_hub, client):
            first, _ = await asyncio.wait_for(connects.get(), WAIT_S)
            answered_s = await asyncio.wait_for(answered, WAIT_S)
            await asyncio.wait_for(failed.wait(), WAIT_S)
            second, second_s = await asyncio.wait_for(connects.get(), WAIT_S)
    finally:
        for pc in vehicle_pcs:
            await pc.close()

    assert second != first
    states = [state for state, _ in operator_states]
    assert "failed" in states, states
    assert "connected" not in states, states
    assert states[-1] == "closed", states  # the client closed it before asking again
    failed_s = next(at_s for state, at_s in operator_states if state == "failed")
    assert answered_s <= failed_s <= second_s
    # Asked again well before the setup time-out could have ended the session ...
    assert second_s - answered_s < SESSION_SETUP_S / 2
    # ... and not because the offer was refused (that path counts an error).
    assert (client.stats.sessions, client.stats.errors) == (1, 0)


async def test_a_stalled_drive_channel_skips_commands_but_never_an_estop() -> None:
    link = StallableLink()
    vehicle_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    operator_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received: asyncio.Queue[m.DriveCommand] = asyncio.Queue()
    sent: list[m.DriveCommand] = []

    def on_vehicle(message: m.DataMessage) -> None:
        if isinstance(message, m.DriveCommand):
            received.put_nowait(message)

    # Never run: only its send path is used, on channels of a session built here.
    client = OperatorClient("ws://127.0.0.1:9", "van-01", on_command_sent=sent.append)
    try:
        await link.open()
        ch.open_channels(vehicle_pc, on_vehicle)
        await vehicle_pc.setLocalDescription(await vehicle_pc.createOffer())
        offer = link.route("vehicle", vehicle_pc.localDescription.sdp)
        await operator_pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        client.pc = operator_pc
        client.channels = ch.open_channels(operator_pc, lambda _message: None)
        drive = client.channels.drive
        opened = asyncio.Event()
        drive.raw.on("open", opened.set)
        await operator_pc.setLocalDescription(await operator_pc.createAnswer())
        answer = link.route("operator", operator_pc.localDescription.sdp)
        await vehicle_pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(opened.wait(), WAIT_S)

        # A drained channel: the command goes out and arrives.
        client._send_drive(0.5, 0.0, deadman=True, estop=False)
        assert (await asyncio.wait_for(received.get(), WAIT_S)) == sent[-1]

        # The link stalls. Commands keep going out, one per loop turn (as the drive loop
        # yields between ticks), until aiortc's congestion window is full of unacknowledged
        # data and the channel's own queue grows past the backlog bound.
        link.stall()
        while drive.raw.bufferedAmount <= DRIVE_BACKLOG_BYTES:
            assert len(sent) < 200, "no backlog built up behind the stalled link"
            client._send_drive(0.5, 0.0, deadman=True, estop=False)
            await asyncio.sleep(0)
        assert client.stats.commands_skipped_backlog == 0
        # The backlog is behind data on the wire, not the first command of a burst.
        assert link.held_total >= 3, link.held_total
        went_out = len(sent)

        client._send_drive(1.25, 0.1, deadman=True, estop=False)
        assert client.stats.commands_skipped_backlog == 1
        assert len(sent) == went_out == client.stats.commands_sent_total

        client._send_drive(0.0, 0.0, deadman=False, estop=True)
        assert client.stats.commands_skipped_backlog == 1
        estop = sent[-1]
        assert estop.estop
        assert len(sent) == went_out + 1 == client.stats.commands_sent_total

        # So does the last stop a closing client sends.
        client._send_drive(0.0, 0.0, deadman=False, estop=False, always=True)
        assert client.stats.commands_skipped_backlog == 1
        last_stop = sent[-1]
        assert (last_stop.deadman, last_stop.estop) == (False, False)

        link.release()
        arrived: list[m.DriveCommand] = []
        while not arrived or arrived[-1] != last_stop:
            arrived.append(await asyncio.wait_for(received.get(), WAIT_S))
        assert arrived[-2] == estop
        assert all(command.speed_mps != 1.25 for command in arrived)  # the skipped one
    finally:
        await client.close()
        await vehicle_pc.close()
        link.close()


def vehicle_that_never_offers() -> tuple[
    asyncio.Queue[str], Callable[[ClientConnection, m.SignalMessage], Awaitable[None]]
]:
    """A fake vehicle that takes each session the hub opens and never offers, and the queue
    of those sessions' ids."""
    connects: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(_ws: ClientConnection, message: m.SignalMessage) -> None:
        if isinstance(message, m.Connect) and message.session is not None:
            connects.put_nowait(message.session)

    return connects, on_message


async def test_a_session_waiting_for_its_offer_is_not_asked_for_again() -> None:
    # The hub opened a session and the vehicle's offer is slow to come (a long link, or the
    # operator busy closing its previous peer connection). Asking again would end that
    # session at the hub, and its bye would arrive before the next acknowledgement: each new
    # session ended the one before, a storm. The client waits SESSION_SETUP_S for the offer.
    connects, slow_vehicle = vehicle_that_never_offers()

    async with operator_and_fake_vehicle(slow_vehicle) as (hub, client):
        session = await asyncio.wait_for(connects.get(), WAIT_S)
        # Two of the client's retry periods pass with the session still waiting.
        window_s = 2.2 * CONNECT_RETRY_S
        assert window_s < SESSION_SETUP_S
        with pytest.raises(TimeoutError):
            await hub.wait_stats(lambda s: s["sessions_opened"] > 1, window_s)
        assert client.session_id == session
        assert connects.empty()


async def test_a_session_whose_offer_never_comes_is_given_up_after_the_setup_time() -> None:
    connects, silent_vehicle = vehicle_that_never_offers()
    now_s = [time.monotonic()]

    async with operator_and_fake_vehicle(silent_vehicle, clock=lambda: now_s[0]) as (hub, client):
        first = await asyncio.wait_for(connects.get(), WAIT_S)
        await hub.wait_stats(lambda s: s["sessions_opened"] == 1, WAIT_S)
        now_s[0] += SESSION_SETUP_S - 0.5
        await client._maybe_connect()
        assert client.session_id == first  # still within its setup time: waited for
        now_s[0] += 1.0
        await client._maybe_connect()
        second = await asyncio.wait_for(connects.get(), WAIT_S)
        assert second != first
        await hub.wait_stats(lambda s: s["sessions_opened"] == 2, WAIT_S)


async def test_a_failed_answer_while_a_request_is_pending_does_not_start_a_storm() -> None:
    # Seen under bad-cell: the session watchdog gave up a session whose answer was being
    # built and asked for a new one; the half-built answer then failed, and its clean-up
    # cleared the request rate limit. The hub's reply to the request (a bye for the old
    # session, presence "no operator") made the client ask again before the acknowledgement
    # came, so every request ended the session the one before had opened: thousands of
    # sessions in 7 s, until the vehicle's signaling link drowned.
    connects, slow_vehicle = vehicle_that_never_offers()

    async with operator_and_fake_vehicle(slow_vehicle) as (hub, client):
        first = await asyncio.wait_for(connects.get(), WAIT_S)
        await hub.wait_stats(lambda s: s["sessions_opened"] == 1, WAIT_S)
        # What the session watchdog does when it gives a session up: forget it, ask again.
        client.session_id = None
        client._connect_sent_s = None
        await client._maybe_connect()
        await client._answer(first, BAD_SDP)  # the old session's answer fails meanwhile
        second = await asyncio.wait_for(connects.get(), WAIT_S)
        assert second != first
        # A storm opens sessions every millisecond; one retry period shows it.
        with pytest.raises(TimeoutError):
            await hub.wait_stats(lambda s: s["sessions_opened"] > 2, 1.2 * CONNECT_RETRY_S)
        assert client.session_id == second


async def test_a_new_session_starts_from_the_last_measured_round_trip() -> None:
    # After a cut the new session's first losses come before its first clock-sync reply:
    # its video buffers start from the round trip the last session measured.
    client = OperatorClient("ws://127.0.0.1:9", "van-01")
    request_id, t1 = client.clock_sync.make_request(1000.0)
    assert client.clock_sync.on_response(request_id, t1, 5000.0, 5000.0, 1250.0) is not None
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        vehicle.addTransceiver("video", direction="sendonly")
        await vehicle.setLocalDescription(await vehicle.createOffer())
        with pytest.raises(LinkError):  # no hub here: the answer cannot go out
            await client._build_answer("s1", vehicle.localDescription.sdp)
        assert len(client.jitter_buffers) == 1
        timer = client.jitter_buffers[0].timer
        assert timer.samples == 1
        assert timer.srtt_ms == 250.0
        assert client.jitter_buffers[0].repeats_feedback  # a bad cell's round trip
    finally:
        await client._close_pc()
        await vehicle.close()


async def test_a_new_peer_connection_is_not_judged_by_the_old_ones_telemetry() -> None:
    # Under bad-cell the session watchdog, running while an answer was being built, saw the
    # new peer connection with the old session's last telemetry (seconds old), called it
    # dead and closed it half-built: the start of a session storm.
    now_s = [100.0]
    client = OperatorClient("ws://127.0.0.1:9", "van-01", clock=lambda: now_s[0])
    client._last_telemetry_s = 90.0  # the old session's last word, 10 s ago
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        vehicle.addTransceiver("video", direction="sendonly")
        await vehicle.setLocalDescription(await vehicle.createOffer())
        build = asyncio.create_task(client._build_answer("s1", vehicle.localDescription.sdp))
        for _ in range(1000):  # until the new peer connection exists (event-loop turns)
            if client.pc is not None:
                break
            await asyncio.sleep(0)
        assert client.pc is not None
        assert not build.done()  # still building: this is when the watchdog may look
        assert client._session_dead() is None
        with pytest.raises(LinkError):  # no hub here: the answer cannot go out
            await build
    finally:
        await client._close_pc()
        await vehicle.close()


def test_jitter_buffer_counters_of_old_sessions_are_kept_as_sums() -> None:
    stats = OperatorStats()
    for n in range(3 * VIDEO_RECEIVE_KEPT):
        stats.add_video_receive(JitterStats(frames_released=n, nacks_repeated=1))
    assert len(stats.video_receive) == VIDEO_RECEIVE_KEPT
    assert stats.video_receive[-1].frames_released == 3 * VIDEO_RECEIVE_KEPT - 1
    recovery = stats.video_recovery()
    assert recovery["frames_released"] == sum(range(3 * VIDEO_RECEIVE_KEPT))
    assert recovery["nacks_repeated"] == 3 * VIDEO_RECEIVE_KEPT
    assert stats.summary()["video_recovery"] == recovery
