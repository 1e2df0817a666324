"""Early re-sends during the ICE and DTLS handshakes: the plan, and two real peers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from udp_link import StallableLink

from teledrive.shared.errors import ConfigError
from teledrive.shared.handshake_datagrams import dtls_records
from teledrive.shared.handshake_resend import (
    DEFAULT_RESEND_AFTER_MS,
    EARLY_COPY_MS,
    MIN_RESEND_AFTER_MS,
    SCTP_INITIAL_RTO_S,
    AiortcTransportError,
    HandshakeResender,
    ResendPlan,
    install_handshake_resender,
    resend_after_ms,
    shorten_initial_rto,
)

WAIT_S = 10.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
PEER = ("10.0.0.2", 5000)
OTHER = ("10.0.0.3", 5000)
COOKIE = b"\x21\x12\xa4\x42"


def stun(kind: int, transaction_id: bytes) -> bytes:
    """A STUN header (RFC 5389): type, zero length, magic cookie, transaction id."""
    return kind.to_bytes(2, "big") + b"\x00\x00" + COOKIE + transaction_id


BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_INDICATION = 0x0011
DTLS_HANDSHAKE = b"\x16\xfe\xfd" + bytes(10)
RTP = b"\x80\x60" + bytes(10)
VEHICLE_SIDE, OPERATOR_SIDE = 0, 1  # where connect_over lists their resenders


def test_a_stun_request_is_sent_again_until_its_response_comes() -> None:
    plan = ResendPlan(resend_after_ms=100.0, copies=2)
    request = stun(BINDING_REQUEST, b"A" * 12)
    plan.on_sent(PEER, request, 0.0)
    assert plan.due(99.0) == []
    assert plan.next_due_ms() == 100.0
    assert plan.due(100.0) == [(PEER, request)]
    # An indication, or a response to another request, answers nothing.
    plan.on_received(PEER, stun(BINDING_INDICATION, b"A" * 12), 0.0)
    plan.on_received(PEER, stun(BINDING_SUCCESS, b"B" * 12), 0.0)
    assert plan.due(200.0) == [(PEER, request)]
    assert plan.due(400.0) == []  # two copies at most
    assert plan.next_due_ms() is None
    assert plan.stats.resent == 2

    answered = ResendPlan(resend_after_ms=100.0)
    answered.on_sent(PEER, request, 0.0)
    answered.on_received(OTHER, stun(BINDING_SUCCESS, b"A" * 12), 0.0)  # matched by transaction id
    assert answered.due(1000.0) == []
    assert answered.stats.received == 1


def test_dtls_is_sent_again_until_dtls_comes_back_from_that_address() -> None:
    plan = ResendPlan(resend_after_ms=100.0, copies=1)
    second = b"\x16\xfe\xfd" + bytes(range(10))
    plan.on_sent(PEER, DTLS_HANDSHAKE, 0.0)
    plan.on_sent(PEER, second, 10.0)  # a flight of two datagrams
    plan.on_received(PEER, stun(BINDING_SUCCESS, b"C" * 12), 0.0)  # ICE traffic is no answer
    plan.on_received(OTHER, DTLS_HANDSHAKE, 0.0)  # nor DTLS from elsewhere
    assert plan.due(110.0) == [(PEER, DTLS_HANDSHAKE), (PEER, second)]
    plan.on_sent(PEER, DTLS_HANDSHAKE, 120.0)
    plan.on_received(PEER, DTLS_HANDSHAKE, 120.0)  # the peer's next flight: all of it got there
    assert plan.next_due_ms() is None


def dtls_handshake(record_seq: int, message_seq: int, msg_type: int = 1) -> bytes:
    """One plaintext DTLS 1.2 handshake record (epoch 0) with an empty message."""
    header = bytes([msg_type]) + bytes(3) + message_seq.to_bytes(2, "big") + bytes(6)
    return (
        b"\x16\xfe\xfd\x00\x00"
        + record_seq.to_bytes(6, "big")
        + len(header).to_bytes(2, "big")
        + header
    )


def test_a_flight_the_peer_repeats_sends_ours_again_at_once() -> None:
    # Under bad-cell the vehicle's ServerHello flight fell in a fade; the operator's copy of
    # its ClientHello counted as the answer, and the flight waited for OpenSSL's 1 s timer.
    plan = ResendPlan(resend_after_ms=300.0, copies=2)
    client_hello = dtls_handshake(record_seq=0, message_seq=0)
    server_flight = dtls_handshake(record_seq=0, message_seq=0, msg_type=2)
    assert plan.on_received(PEER, client_hello, 0.0) == []  # new: it answers (nothing yet)
    plan.on_sent(PEER, server_flight, 5.0)
    # The client's own copy (same bytes), then OpenSSL's retransmission (a new record number,
    # the same message): neither answers, each sends the flight again now.
    assert plan.on_received(PEER, client_hello, 60.0) == [(PEER, server_flight)]
    assert plan.on_received(PEER, dtls_handshake(record_seq=1, message_seq=0), 120.0) == [
        (PEER, server_flight)
    ]
    assert plan.on_received(PEER, client_hello, 130.0) == []  # two copies at most
    assert plan.stats.repeats_received == 3
    assert plan.stats.resent == 2
    assert plan.next_due_ms() is None
    # The client's next flight (a new message) is the answer.
    again = ResendPlan(resend_after_ms=300.0)
    again.on_received(PEER, client_hello, 0.0)
    again.on_sent(PEER, server_flight, 5.0)
    assert again.on_received(PEER, dtls_handshake(record_seq=1, message_seq=1), 200.0) == []
    assert again.stats.received == 1
    assert again.due(1000.0) == []


def test_a_bonded_peers_copy_on_the_other_socket_repeats_nothing() -> None:
    # A bonded operator sends each datagram to both of the vehicle's addresses: the copy on the
    # vehicle's second socket is no sign that the vehicle's own flight was lost.
    plan = ResendPlan(resend_after_ms=300.0, copies=2)
    client_hello = dtls_handshake(record_seq=0, message_seq=0)
    server_flight = dtls_handshake(record_seq=0, message_seq=0, msg_type=2)
    assert plan.on_received(PEER, client_hello, 0.0, via="modem 1") == []
    plan.on_sent(PEER, server_flight, 5.0)
    assert plan.on_received(PEER, client_hello, 30.0, via="modem 2") == []
    assert plan.stats.repeats_received == 0
    # The peer's own re-send comes to both sockets again: that is a repeat.
    assert plan.on_received(PEER, client_hello, 130.0, via="modem 1") == [(PEER, server_flight)]
    assert plan.stats.repeats_received == 1


def test_repeats_arriving_together_spend_one_copy() -> None:
    plan = ResendPlan(resend_after_ms=300.0, copies=3)
    hello = dtls_handshake(record_seq=0, message_seq=0)
    second = dtls_handshake(record_seq=1, message_seq=1)
    flight = dtls_handshake(record_seq=0, message_seq=0, msg_type=2)
    plan.on_received(PEER, hello, 0.0)
    plan.on_received(PEER, second, 0.0)
    plan.on_sent(PEER, flight, 1.0)
    # The peer's two-datagram flight comes again: one copy, not two in the same fade.
    assert plan.on_received(PEER, hello, 50.0) == [(PEER, flight)]
    assert plan.on_received(PEER, second, 51.0) == []
    assert plan.on_received(PEER, hello, 80.0) == [(PEER, flight)]


def test_the_stacks_retransmission_with_new_record_numbers_is_not_pending_twice() -> None:
    plan = ResendPlan(resend_after_ms=300.0, copies=1)
    assert plan.on_sent(PEER, dtls_handshake(record_seq=0, message_seq=0), 0.0)
    assert not plan.on_sent(PEER, dtls_handshake(record_seq=5, message_seq=0), 100.0)
    assert plan.stats.sent == 1
    assert not plan.on_sent(PEER, RTP, 0.0)  # media: nothing to wait for


def test_a_reencrypted_finished_is_a_repeat() -> None:
    finished = b"\x16\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x03" + b"abc"
    again = b"\x16\xfe\xfd\x00\x01" + (1).to_bytes(6, "big") + b"\x00\x03" + b"xyz"
    assert dtls_records(finished) == dtls_records(again) == [(22, b"\x00\x01")]
    plan = ResendPlan(resend_after_ms=300.0)
    plan.on_received(PEER, finished, 0.0)
    plan.on_sent(PEER, dtls_handshake(record_seq=9, message_seq=9, msg_type=20), 1.0)
    assert plan.on_received(PEER, again, 100.0) != []
    assert plan.stats.repeats_received == 1


def test_dtls_records_are_named_by_what_they_carry() -> None:
    first = dtls_handshake(record_seq=0, message_seq=3)
    assert dtls_records(first) == dtls_records(dtls_handshake(record_seq=9, message_seq=3))
    assert dtls_records(first + first) == dtls_records(first) * 2
    assert dtls_records(first[:-1]) == []  # truncated
    encrypted = b"\x17\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x02" + b"ab"
    assert dtls_records(encrypted) == [(23, b"\x00\x01", b"ab")]


def test_media_and_our_own_answers_are_never_repeated() -> None:
    plan = ResendPlan(resend_after_ms=100.0)
    plan.on_sent(PEER, RTP, 0.0)
    plan.on_sent(PEER, stun(BINDING_SUCCESS, b"D" * 12), 0.0)
    plan.on_sent(PEER, b"", 0.0)
    assert plan.due(1000.0) == []
    assert plan.stats.sent == 0


def test_the_wait_follows_the_round_trip() -> None:
    assert resend_after_ms(None) == DEFAULT_RESEND_AFTER_MS
    assert resend_after_ms(250.0) == 375.0
    assert resend_after_ms(1.0) == MIN_RESEND_AFTER_MS
    assert resend_after_ms(float("nan")) == DEFAULT_RESEND_AFTER_MS
    with pytest.raises(ConfigError, match="resend_after_ms"):
        ResendPlan(resend_after_ms=0.0)
    with pytest.raises(ConfigError, match="copies"):
        ResendPlan(copies=-1)


def first_dtls_to_the_vehicle() -> tuple[StallableLink, list[int]]:
    """A link that loses the operator's first DTLS datagram (its ClientHello)."""
    lost: list[int] = []

    def drop(to_peer: str, data: bytes) -> bool:
        if to_peer == "vehicle" and 20 <= data[0] <= 63 and not lost:
            lost.append(len(data))
            return True
        return False

    return StallableLink(drop), lost


async def connect_over(
    link: StallableLink,
    *,
    resend: bool,
    vehicle_rtt_ms: float = 1.0,
    vehicle_early_copy_ms: float | None = EARLY_COPY_MS,
) -> tuple[float, list[object]]:
    """Vehicle offers, operator answers, over ``link``; seconds until both DTLS connected.

    With ``resend`` both get a resender; the operator's waits 60 ms, the vehicle's follows
    ``vehicle_rtt_ms`` and ``vehicle_early_copy_ms``.
    """
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    operator = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    resenders: list[object] = []
    try:
        await link.open()
        vehicle.createDataChannel("drive", negotiated=True, id=0)
        operator.createDataChannel("drive", negotiated=True, id=0)
        both = asyncio.Event()

        def check() -> None:
            if vehicle.connectionState == operator.connectionState == "connected":
                both.set()

        vehicle.on("connectionstatechange", check)
        operator.on("connectionstatechange", check)
        start_s = time.monotonic()
        await vehicle.setLocalDescription(await vehicle.createOffer())
        if resend:
            resenders.append(
                install_handshake_resender(
                    vehicle, rtt_ms=vehicle_rtt_ms, early_copy_ms=vehicle_early_copy_ms
                )
            )
        offer = link.route("vehicle", vehicle.localDescription.sdp)
        await operator.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await operator.setLocalDescription(await operator.createAnswer())
        if resend:
            resenders.append(install_handshake_resender(operator, rtt_ms=1.0))
        answer = link.route("operator", operator.localDescription.sdp)
        await vehicle.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(both.wait(), WAIT_S)
        took_s = time.monotonic() - start_s
        if resend:
            # Before the peer connections close (closing removes them too): each resender
            # removes itself once DTLS is connected and its last flight answered.
            for resender in resenders:
                assert isinstance(resender, HandshakeResender)
                await asyncio.wait_for(resender.removed_event.wait(), WAIT_S)
        return took_s, resenders
    finally:
        await vehicle.close()
        await operator.close()
        link.close()


async def test_a_lost_client_hello_is_sent_again_long_before_dtls_would() -> None:
    # OpenSSL retransmits a lost DTLS flight after 1 s; the resender after 1.5 round trips
    # (at least 60 ms). The same loss, with and without it.
    await recovered_sooner(first_dtls_to_the_vehicle, OPERATOR_SIDE)


async def recovered_sooner(
    lossy_link: Callable[[], tuple[StallableLink, list[int]]], side: int, **options: Any
) -> None:
    """The same loss without and with resenders: OpenSSL's 1 s, then well under it.

    Args:
        lossy_link: makes a link that loses the datagram.
        side: whose resender must have re-sent (:data:`VEHICLE_SIDE`, :data:`OPERATOR_SIDE`).
        options: for :func:`connect_over` with resenders.
    """
    baseline_link, baseline_lost = lossy_link()
    baseline_s, _ = await connect_over(baseline_link, resend=False)
    link, lost = lossy_link()
    took_s, resenders = await connect_over(link, resend=True, **options)
    assert baseline_lost, "the link lost no DTLS datagram"
    assert lost, "the link lost no DTLS datagram"
    assert baseline_s >= 1.0  # OpenSSL's first retransmission
    assert took_s < 0.7, took_s
    resender = resenders[side]
    assert isinstance(resender, HandshakeResender)
    assert resender.plan.stats.resent >= 1


def nth_dtls_to_the_operator(n: int = 1) -> tuple[StallableLink, list[int]]:
    """A link that loses the vehicle's ``n``-th DTLS datagram to the operator.

    The first is the server's ServerHello flight, the second its final flight (ChangeCipherSpec
    and Finished), after which the vehicle's DTLS is connected.
    """
    lost: list[int] = []
    seen = 0

    def drop(to_peer: str, data: bytes) -> bool:
        nonlocal seen
        if to_peer == "operator" and 20 <= data[0] <= 63:
            seen += 1
            if seen == n:
                lost.append(len(data))
                return True
        return False

    return StallableLink(drop), lost


async def test_a_lost_server_flight_is_sent_again_when_the_client_repeats_its_own() -> None:
    # The client's copy of its ClientHello comes long before the server's own re-send is due
    # (as when the server's ICE finished late on a long round trip: here its wait is 1.5 s).
    await recovered_sooner(
        lambda: nth_dtls_to_the_operator(1),
        VEHICLE_SIDE,
        vehicle_rtt_ms=1000.0,
        vehicle_early_copy_ms=None,
    )


async def test_a_lost_final_flight_is_sent_again_after_dtls_connected() -> None:
    # The server is connected once it sends its final flight; if that is lost, the client
    # stays in its handshake (a bad-cell reconnect lost one and waited 1.1 s for OpenSSL).
    await recovered_sooner(lambda: nth_dtls_to_the_operator(2), VEHICLE_SIDE)


async def test_the_resender_stays_until_its_final_flight_is_answered() -> None:
    # connect_over waits for both resenders to remove themselves before it closes anything;
    # here the vehicle's (the DTLS server's) must still be there right after it connected.
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    operator = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    link = StallableLink()
    try:
        await link.open()
        vehicle.createDataChannel("drive", negotiated=True, id=0)
        operator.createDataChannel("drive", negotiated=True, id=0)
        await vehicle.setLocalDescription(await vehicle.createOffer())
        resender = install_handshake_resender(vehicle, rtt_ms=1.0)
        assert isinstance(resender, HandshakeResender)
        pending_at_connect: list[bool] = []
        dtls = vehicle.sctp.transport  # a data channel only: its DTLS transport is the one

        def on_state() -> None:
            if dtls.state == "connected":
                pending_at_connect.append(resender.plan.dtls_waiting() and not resender.removed)

        dtls.on("statechange", on_state)
        offer = link.route("vehicle", vehicle.localDescription.sdp)
        await operator.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await operator.setLocalDescription(await operator.createAnswer())
        answer = link.route("operator", operator.localDescription.sdp)
        await vehicle.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(resender.removed_event.wait(), WAIT_S)
        assert pending_at_connect == [True]  # the final flight waited for an answer
        assert resender.plan.stats.received >= 2  # ... and got one: it did not give up
    finally:
        await vehicle.close()
        await operator.close()
        link.close()


def test_the_first_copy_goes_early_on_a_long_round_trip() -> None:
    plan = ResendPlan(resend_after_ms=375.0, copies=3, early_copy_ms=100.0)
    hello = dtls_handshake(record_seq=0, message_seq=0)
    plan.on_sent(PEER, hello, 0.0)
    assert plan.next_due_ms() == 100.0
    assert plan.due(100.0) == [(PEER, hello)]  # past the fade that may have taken it
    assert plan.next_due_ms() == 475.0  # then a round trip and a half each
    assert plan.due(475.0) == [(PEER, hello)]
    assert plan.due(850.0) == [(PEER, hello)]
    assert plan.next_due_ms() is None
    # On a short round trip the round trip's wait is the shorter one.
    short = ResendPlan(resend_after_ms=60.0, early_copy_ms=100.0)
    short.on_sent(PEER, hello, 0.0)
    assert short.next_due_ms() == 60.0
    # And without an early copy every wait is the round trip's.
    late = ResendPlan(resend_after_ms=375.0, early_copy_ms=None)
    late.on_sent(PEER, hello, 0.0)
    assert late.next_due_ms() == 375.0
    with pytest.raises(ConfigError, match="early_copy_ms"):
        ResendPlan(early_copy_ms=0.0)


def test_a_copy_sent_for_a_repeat_is_followed_by_an_early_one() -> None:
    # Under bad-cell the vehicle's final DTLS flight fell in a 106 ms fade; the operator's
    # copy of its own flight came 30 ms later, still in the fade, and the flight sent again
    # for it was lost too. The next copy must come past the fade, not 1.5 round trips on.
    plan = ResendPlan(resend_after_ms=375.0, copies=3, early_copy_ms=100.0)
    peer_flight = dtls_handshake(record_seq=0, message_seq=1)
    final = dtls_handshake(record_seq=0, message_seq=2, msg_type=20)
    plan.on_received(PEER, peer_flight, 0.0)
    plan.on_sent(PEER, final, 1.0)
    assert plan.on_received(PEER, peer_flight, 30.0) == [(PEER, final)]
    assert plan.next_due_ms() == 130.0
    assert plan.due(130.0) == [(PEER, final)]
    assert plan.next_due_ms() == 505.0  # a timed copy: then a round trip and a half
    assert plan.due(505.0) == [(PEER, final)]
    assert plan.next_due_ms() is None  # three copies in all


def test_the_stacks_own_retransmission_is_not_pending_twice() -> None:
    plan = ResendPlan(resend_after_ms=100.0, copies=1)
    request = stun(BINDING_REQUEST, b"E" * 12)
    plan.on_sent(PEER, request, 0.0)
    plan.on_sent(PEER, request, 50.0)  # aioice retransmits the same transaction
    assert plan.due(200.0) == [(PEER, request)]
    assert plan.stats.sent == 1


async def test_the_resender_gives_up_when_dtls_never_connects() -> None:
    # An offer nobody answers: without the give-up the sockets would keep the wrapper (and
    # its memory of what was sent) for as long as the peer connection lives.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        loop = asyncio.get_running_loop()
        resender = install_handshake_resender(pc, give_up_s=0.05)
        assert isinstance(resender, HandshakeResender)
        protocols = list(resender._protocols)
        assert not resender.removed
        after_give_up = loop.create_future()
        loop.call_later(0.1, after_give_up.set_result, None)  # the loop's timers run in order
        await after_give_up
        assert resender.removed
        assert all(type(p.transport).__name__ != "_ResendingTransport" for p in protocols)
        assert all("datagram_received" not in vars(p) for p in protocols)
    finally:
        await pc.close()


def operators_first_application_data_lost(count: int = 2) -> tuple[StallableLink, list[int]]:
    """A 240 ms round trip that loses the operator's first ``count`` DTLS application data.

    Those carry its side of the SCTP association's handshake (its INIT, its INIT-ACK), sent
    after DTLS connected: one fade takes both.
    """
    lost: list[int] = []

    def drop(to_peer: str, data: bytes) -> bool:
        if to_peer == "vehicle" and data[0] == 23 and len(lost) < count:
            lost.append(len(data))
            return True
        return False

    return StallableLink(drop, delay_s=0.12), lost


async def first_message_after_dtls(
    link: StallableLink, *, resend: bool, shorten_rto: bool = False
) -> float:
    """Seconds from both peers connected (DTLS) until each got a data channel message.

    With ``resend`` both get a resender (which also shortens the association's timeout);
    with ``shorten_rto`` only the timeout is shortened.
    """
    vehicle = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    operator = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await link.open()
        channels = [
            pc.createDataChannel("drive", negotiated=True, id=0, ordered=False, maxRetransmits=0)
            for pc in (vehicle, operator)
        ]
        if shorten_rto:
            for pc in (vehicle, operator):
                shorten_initial_rto(pc.sctp)
        connected = asyncio.Event()
        got = [asyncio.Event(), asyncio.Event()]
        for channel, event in zip(channels, got, strict=True):
            channel.on("message", lambda _message, event=event: event.set())

        def check() -> None:
            if vehicle.connectionState == operator.connectionState == "connected":
                connected.set()

        vehicle.on("connectionstatechange", check)
        operator.on("connectionstatechange", check)
        await vehicle.setLocalDescription(await vehicle.createOffer())
        if resend:
            install_handshake_resender(vehicle, rtt_ms=240.0)
        offer = link.route("vehicle", vehicle.localDescription.sdp)
        await operator.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await operator.setLocalDescription(await operator.createAnswer())
        if resend:
            install_handshake_resender(operator, rtt_ms=240.0)
        answer = link.route("operator", operator.localDescription.sdp)
        await vehicle.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(connected.wait(), WAIT_S)
        connected_s = time.monotonic()

        async def send_until_both_got() -> None:
            while not all(event.is_set() for event in got):
                for channel in channels:
                    if channel.readyState == "open":
                        channel.send(b"drive")
                await asyncio.sleep(0.02)  # a 50 Hz sender, as the operator's drive loop

        await asyncio.wait_for(send_until_both_got(), WAIT_S)
        return time.monotonic() - connected_s
    finally:
        await vehicle.close()
        await operator.close()
        link.close()


async def test_a_lost_association_handshake_is_sent_again_after_one_second_not_three() -> None:
    # aiortc sends a lost INIT or COOKIE-ECHO again after its initial RTO, 3 s; two lost in
    # one fade held a bad-cell session's channels long enough for the vehicle to give the
    # session up as silent. Without the resender, only the shortened timeout helps.
    baseline_link, baseline_lost = operators_first_application_data_lost()
    baseline_s = await first_message_after_dtls(baseline_link, resend=False)
    link, lost = operators_first_application_data_lost()
    took_s = await first_message_after_dtls(link, resend=False, shorten_rto=True)
    assert len(baseline_lost) == len(lost) == 2
    assert baseline_s >= 3.0, baseline_s  # aiortc's T1
    assert 1.0 <= took_s < 2.9, took_s  # one second per loss, and a round trip


async def test_the_resender_stays_until_the_association_is_up() -> None:
    # It re-sends the lost association chunks after 100 ms, well before even the shortened
    # 1 s timeout would.
    link, lost = operators_first_application_data_lost()
    took_s = await first_message_after_dtls(link, resend=True)
    assert len(lost) == 2
    assert took_s < 0.9, took_s


def test_the_initial_rto_is_only_ever_shortened() -> None:
    class Association:
        _rto = 0.5

    association = Association()
    shorten_initial_rto(association)
    assert association._rto == 0.5
    association._rto = 3.0
    shorten_initial_rto(association)
    assert association._rto == SCTP_INITIAL_RTO_S
    with pytest.raises(AiortcTransportError, match="_rto"):
        shorten_initial_rto(object())
