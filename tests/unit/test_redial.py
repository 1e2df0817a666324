"""The re-dial policy: when a vehicle whose operator went silent dials the hub afresh."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from teledrive.shared.linklab.profiles import PROFILES
from teledrive.vehicle.redial import (
    MAX_REDIALS_IN_FLIGHT,
    OPERATOR_LOST_MS,
    REDIAL_EVERY_S,
    REDIAL_FAST_WINDOW_MS,
    REDIAL_SLOW_EVERY_S,
    REDIAL_TIMEOUT_S,
    REDIAL_WINDOW_MS,
    SESSION_SETUP_MS,
    SYN_RESEND_S,
    RedialPolicy,
    operator_lost,
    run_redial,
    silent_ms,
)

WAIT_S = 5.0 * float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))


@dataclass
class FakeSession:
    id: str = "s1"
    started_ms: float = 0.0
    last_data_ms: float | None = 0.0
    redialled: bool = False


def test_silence_counts_from_the_last_data_or_the_setup_time() -> None:
    assert silent_ms(FakeSession(last_data_ms=100.0), 350.0) == 250.0
    never_heard = FakeSession(started_ms=1000.0, last_data_ms=None)
    # Never heard: lost (silent > OPERATOR_LOST_MS) only once the setup time has passed.
    assert silent_ms(never_heard, 1000.0 + SESSION_SETUP_MS) == OPERATOR_LOST_MS
    assert not operator_lost(never_heard, 1000.0 + SESSION_SETUP_MS)
    assert operator_lost(never_heard, 1000.0 + SESSION_SETUP_MS + 1.0)


def test_lost_only_inside_the_window_and_once_per_session() -> None:
    session = FakeSession(last_data_ms=0.0)
    assert not operator_lost(session, OPERATOR_LOST_MS)
    assert operator_lost(session, OPERATOR_LOST_MS + 1.0)
    assert operator_lost(session, OPERATOR_LOST_MS + REDIAL_WINDOW_MS)
    assert not operator_lost(session, OPERATOR_LOST_MS + REDIAL_WINDOW_MS + 1.0)
    session.redialled = True
    assert not operator_lost(session, OPERATOR_LOST_MS + 1.0)


def test_policy_dials_every_poll_in_the_fast_window() -> None:
    policy = RedialPolicy()
    session = FakeSession(last_data_ms=0.0)
    assert not policy.should_dial(None, 5000.0, in_flight=0)
    assert not policy.should_dial(session, OPERATOR_LOST_MS - 1.0, in_flight=0)
    polls = [OPERATOR_LOST_MS + 1.0 + 250.0 * i for i in range(4)]
    assert [policy.should_dial(session, t, in_flight=0) for t in polls] == [True] * 4
    assert policy.last_attempt_ms == polls[-1]


def test_policy_slows_down_after_the_fast_window() -> None:
    policy = RedialPolicy()
    session = FakeSession(last_data_ms=0.0)
    start_ms = OPERATOR_LOST_MS + REDIAL_FAST_WINDOW_MS + 1.0
    slow_ms = REDIAL_SLOW_EVERY_S * 1000.0
    assert policy.should_dial(session, start_ms, in_flight=0)
    assert not policy.should_dial(session, start_ms + 250.0, in_flight=0)
    assert not policy.should_dial(session, start_ms + slow_ms - 1.0, in_flight=0)
    assert policy.should_dial(session, start_ms + slow_ms, in_flight=0)


def test_policy_caps_attempts_in_flight_without_counting_a_refusal() -> None:
    policy = RedialPolicy()
    session = FakeSession(last_data_ms=0.0)
    now_ms = OPERATOR_LOST_MS + REDIAL_FAST_WINDOW_MS + 1.0
    assert not policy.should_dial(session, now_ms, in_flight=MAX_REDIALS_IN_FLIGHT)
    # The refused poll did not start the slow interval: the next free poll dials.
    assert policy.should_dial(session, now_ms + 1.0, in_flight=MAX_REDIALS_IN_FLIGHT - 1)


async def test_loop_redials_a_lost_session_once_it_gets_through() -> None:
    session = FakeSession(last_data_ms=0.0)
    dialled = asyncio.Event()
    timeouts_s: list[float] = []

    async def redial(timeout_s: float) -> bool:
        timeouts_s.append(timeout_s)
        dialled.set()
        return True

    task = asyncio.create_task(
        run_redial(lambda: session, now_ms=lambda: OPERATOR_LOST_MS + 1.0, redial=redial)
    )
    try:
        # The attempt marks the session in the same step as the redial returns.
        await asyncio.wait_for(dialled.wait(), WAIT_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert session.redialled
    assert timeouts_s[0] == REDIAL_TIMEOUT_S


def test_an_attempt_whose_first_syn_was_lost_still_opens_over_a_bad_cell() -> None:
    # Dialled in the last second of a cut, its SYN goes again SYN_RESEND_S later; then the TCP
    # and websocket handshakes take two round trips at the profile's slowest (its queue left
    # out), and some time for the hub. An attempt that times out as the hub registers it
    # costs a session.
    bad_cell = PROFILES["bad-cell"]
    rtt_max_s = (bad_cell.uplink.delay_ms + bad_cell.uplink.jitter_ms) / 1000.0
    rtt_max_s += (bad_cell.downlink.delay_ms + bad_cell.downlink.jitter_ms) / 1000.0
    needed_s = SYN_RESEND_S + 2 * rtt_max_s + 0.5
    assert needed_s <= REDIAL_TIMEOUT_S
    # ... and a new attempt every 0.1 s on average meanwhile is not held back by the backstop.
    assert MAX_REDIALS_IN_FLIGHT >= REDIAL_TIMEOUT_S / REDIAL_EVERY_S
