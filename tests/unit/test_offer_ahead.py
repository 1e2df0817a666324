"""OfferAhead: the next session's offer, kept fresh while re-dialling, used or closed once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from teledrive.vehicle.camera import Camera, SyntheticSource
from teledrive.vehicle.offer_ahead import MAX_AGE_MS, MAX_SEND_AGE_MS, MAX_SENT, OfferAhead
from teledrive.vehicle.session import Session, SessionCloser


class Rig:
    """Builds sessions with real (idle) peer connections on a manual clock."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.built: list[Session] = []
        self.closed: list[Session] = []
        self.fail = False
        self.hold = asyncio.Event()  # builds wait for it while cleared
        self.hold.set()
        self.offers = OfferAhead(self.build, self.closed.append, now_ms=lambda: self.now_ms)

    async def build(self) -> tuple[Session, str]:
        if self.fail:
            raise RuntimeError("no network interface")
        session = Session(f"ahead{len(self.built)}", "?")
        self.built.append(session)
        await asyncio.sleep(0)  # building awaits (ICE gathering)
        await self.hold.wait()
        return session, f"sdp{len(self.built) - 1}"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    yield rig
    for session in rig.built:
        await session.pc.close()


async def sent_then_aged(rig: Rig) -> None:
    """An offer made and sent with a registration attempt, then older than a fresh one."""
    await rig.offers.prepare()
    rig.offers.offer_for_registration()
    rig.now_ms += MAX_AGE_MS + 1.0


async def test_an_offer_is_kept_while_fresh_and_rebuilt_when_old(rig: Rig) -> None:
    offers = rig.offers
    assert offers.offer_for_registration() is None  # nothing made: a plain registration
    await offers.prepare()
    await offers.prepare()
    assert offers.made == 1
    rig.now_ms += MAX_AGE_MS + 1.0
    await offers.prepare()
    assert offers.made == 2
    assert rig.closed == [rig.built[0]]  # the stale one, never sent, is closed
    assert offers.offer_for_registration() == "sdp1"


async def test_the_offer_sent_is_the_one_taken_even_after_a_newer_one(rig: Rig) -> None:
    offers = rig.offers
    await offers.prepare()
    assert offers.offer_for_registration() == "sdp0"
    rig.now_ms += MAX_AGE_MS + 1.0
    await offers.prepare()  # another attempt after the registration: the sent one stays
    assert rig.closed == []
    assert offers.take("sdp0") is rig.built[0]
    assert rig.closed == [rig.built[1]]
    assert offers.used == 1
    assert offers.take("sdp0") is None  # used once


async def test_overlapping_attempts_keep_their_offers_until_the_hub_picks_one(rig: Rig) -> None:
    # Two re-dial attempts in flight with different offers (a rebuild between them): the hub
    # may register the older one, so both stay open until the session says which.
    offers = rig.offers
    await offers.prepare()
    assert offers.offer_for_registration() == "sdp0"
    rig.now_ms += MAX_AGE_MS + 1.0
    await offers.prepare()
    assert offers.offer_for_registration() == "sdp1"
    assert rig.closed == []
    assert offers.take("sdp0") is rig.built[0]
    assert rig.closed == [rig.built[1]]


async def test_only_the_latest_offers_sent_stay_open(rig: Rig) -> None:
    offers = rig.offers
    for _ in range(MAX_SENT + 1):
        await offers.prepare()
        offers.offer_for_registration()
        rig.now_ms += MAX_AGE_MS + 1.0
    assert rig.closed == [rig.built[0]]
    assert offers.take("sdp0") is None  # closed: a session on it could not start
    assert len(rig.closed) == MAX_SENT + 1


async def test_a_session_on_an_offer_not_here_takes_nothing_and_closes_all(rig: Rig) -> None:
    offers = rig.offers
    await offers.prepare()
    offers.offer_for_registration()
    assert offers.take("an offer of another process") is None
    assert offers.take(None) is None
    assert rig.closed == [rig.built[0]]
    assert offers.used == 0


async def test_discard_closes_everything_and_a_failed_build_is_survived(rig: Rig) -> None:
    offers = rig.offers
    await sent_then_aged(rig)
    await offers.prepare()
    offers.discard()
    assert rig.closed == [rig.built[0], rig.built[1]]
    assert offers.take("sdp0") is None
    rig.fail = True
    await offers.prepare()  # logged, not raised: the re-dial goes on without an offer
    assert offers.offer_for_registration() is None


async def test_attempts_preparing_at_once_build_one_offer(rig: Rig) -> None:
    await asyncio.gather(*(rig.offers.prepare() for _ in range(5)))
    assert rig.offers.made == 1


async def test_a_session_closed_unused_stops_its_camera_tracks() -> None:
    # An offer made ahead and never used: its senders never ran, so aiortc never stops
    # their tracks; the closer does.
    camera = Camera(lambda: SyntheticSource(320, 240), name="front", fps=10)
    session = Session("ahead", "?")
    session.add_cameras([camera], clock_ms=lambda: 0.0, rtt_ms=lambda: None)
    closer = SessionCloser()
    closer.close(session)
    assert [track.readyState for track in session.tracks] == ["ended"]
    await closer.drain()


async def test_an_offer_taken_while_a_newer_one_is_built_stays_open(rig: Rig) -> None:
    # A Connect that uses the offer sent arrives while a re-dial attempt builds a newer one:
    # the session now driving must not be closed as "the old offer".
    offers = rig.offers
    await sent_then_aged(rig)
    building = asyncio.create_task(offers.prepare())
    await asyncio.sleep(0)  # the build has started and waits (ICE gathering)
    taken = offers.take("sdp0")
    await building
    assert taken is rig.built[0]
    assert taken not in rig.closed
    # The newer one was for a re-dial that is over: closed, not kept open until a discard.
    assert rig.closed == [rig.built[1]]


async def test_an_offer_left_over_from_a_past_redial_is_not_sent(rig: Rig) -> None:
    await rig.offers.prepare()
    rig.now_ms += MAX_SEND_AGE_MS + 1.0
    assert rig.offers.offer_for_registration() is None
    assert rig.closed == [rig.built[0]]


async def test_closing_a_session_removes_its_handshake_resender() -> None:
    session = Session("s1", "op")
    session.open_channels(lambda _m: None, lambda _c, _t: None, current=lambda: session)
    await session.create_offer()
    assert session.handshake is not None
    closer = SessionCloser()
    closer.close(session)  # never answered: DTLS never started, so it would not say so
    assert session.handshake.removed
    await closer.drain()


async def test_a_registration_settles_the_offers_on_the_one_it_carried(rig: Rig) -> None:
    offers = rig.offers
    await sent_then_aged(rig)
    await offers.prepare()
    offers.offer_for_registration()
    offers.settle("sdp0")  # the hub registered the older attempt
    assert rig.closed == [rig.built[1]]
    assert offers.take("sdp0") is rig.built[0]
    offers.settle(None)  # a registration without an offer: nothing is kept
    assert rig.closed == [rig.built[1]]


async def test_an_offer_built_while_the_vehicle_registers_is_not_kept(rig: Rig) -> None:
    offers = rig.offers
    await sent_then_aged(rig)
    building = asyncio.create_task(offers.prepare())
    await asyncio.sleep(0)  # the build waits (ICE gathering)
    offers.settle("sdp0")
    await building
    assert rig.closed == [rig.built[1]]  # the re-dial it was for is over


async def test_a_prepare_that_waited_for_the_lock_through_a_take_keeps_nothing(rig: Rig) -> None:
    offers = rig.offers
    await sent_then_aged(rig)
    rig.hold.clear()
    first = asyncio.create_task(offers.prepare())  # holds the lock while it builds
    second = asyncio.create_task(offers.prepare())  # waits for the lock
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(rig.built) == 2  # the first is building, the second waits
    assert offers.take("sdp0") is rig.built[0]
    rig.hold.set()
    await asyncio.gather(first, second)
    # Neither kept an offer open for a session that no longer needs one.
    assert set(map(id, rig.closed)) == {id(session) for session in rig.built[1:]}
