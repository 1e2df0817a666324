import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teledrive.shared.clock_sync import ClockSync, answer_request
from teledrive.shared.errors import ConfigError


class PeerClock:
    """The responder's clock: ``peer = local * (1 + drift) + offset``."""

    def __init__(self, offset_ms: float, drift_ppm: float = 0.0) -> None:
        self.offset_ms = offset_ms
        self.rate = 1.0 + drift_ppm * 1e-6

    def at(self, local_ms: float) -> float:
        return local_ms * self.rate + self.offset_ms


def exchange(
    sync: ClockSync,
    peer: PeerClock,
    local_ms: float,
    *,
    up_ms: float,
    down_ms: float,
    hold_ms: float = 0.5,
) -> None:
    request_id, t1 = sync.make_request(local_ms)
    reply = answer_request(
        request_id, t1, peer.at(local_ms + up_ms), peer.at(local_ms + up_ms + hold_ms)
    )
    sync.on_response(*reply, local_ms + up_ms + hold_ms + down_ms)


def test_symmetric_link_gives_exact_offset_and_rtt() -> None:
    sync = ClockSync(min_samples=3)
    peer = PeerClock(offset_ms=-3_600_000.0)
    assert not sync.ready
    assert sync.offset_ms is None
    assert sync.rtt_ms is None
    for k in range(3):
        exchange(sync, peer, 1000.0 * k, up_ms=12.5, down_ms=12.5)
    assert sync.ready
    assert sync.offset_ms == pytest.approx(-3_600_000.0)
    assert sync.rtt_ms == pytest.approx(25.0)  # the responder's hold time is excluded
    assert sync.one_way_ms == pytest.approx(12.5)


def test_minimum_rtt_sample_sets_the_offset() -> None:
    sync = ClockSync()
    peer = PeerClock(offset_ms=100.0)
    exchange(sync, peer, 0.0, up_ms=80.0, down_ms=10.0)  # asymmetric: offset error 35 ms
    exchange(sync, peer, 1000.0, up_ms=10.0, down_ms=10.0)
    exchange(sync, peer, 2000.0, up_ms=10.0, down_ms=90.0)
    assert sync.offset_ms == pytest.approx(100.0)
    assert sync.min_rtt_ms == pytest.approx(20.0)
    assert sync.rtt_ms == pytest.approx(100.0)  # latest exchange: what the link does now
    assert sync.one_way_ms == pytest.approx(50.0)


def test_window_forgets_old_samples() -> None:
    sync = ClockSync(window=2, min_samples=1)
    peer = PeerClock(offset_ms=0.0)
    exchange(sync, peer, 0.0, up_ms=1.0, down_ms=1.0)
    exchange(sync, peer, 1000.0, up_ms=30.0, down_ms=30.0)
    exchange(sync, peer, 2000.0, up_ms=40.0, down_ms=40.0)
    assert sync.min_rtt_ms == pytest.approx(60.0)
    assert len(sync.samples) == 2


def test_drift_is_tracked_and_extrapolated() -> None:
    sync = ClockSync(window=32, min_drift_span_ms=2000.0)
    peer = PeerClock(offset_ms=250.0, drift_ppm=120.0)
    for k in range(20):
        # jittery but symmetric-on-average paths; one sample far better than the rest
        up = 10.0 + (k * 7) % 5
        down = 10.0 + (k * 3) % 5
        exchange(sync, peer, 1000.0 * k, up_ms=up, down_ms=down)
    assert sync.drift_ppm == pytest.approx(120.0, abs=30.0)
    later_ms = 120_000.0
    true_offset = peer.at(later_ms) - later_ms
    estimate = sync.offset_at(later_ms)
    assert estimate is not None
    assert estimate == pytest.approx(true_offset, abs=3.0)


def test_no_drift_before_the_window_spans_enough_time() -> None:
    sync = ClockSync(min_drift_span_ms=5000.0)
    peer = PeerClock(offset_ms=0.0, drift_ppm=400.0)
    for k in range(4):
        exchange(sync, peer, 1000.0 * k, up_ms=5.0, down_ms=5.0)
    assert sync.drift_ppm == 0.0


def test_drift_is_clamped() -> None:
    sync = ClockSync(max_drift_ppm=100.0, min_drift_span_ms=1000.0)
    peer = PeerClock(offset_ms=0.0, drift_ppm=5000.0)
    for k in range(5):
        exchange(sync, peer, 1000.0 * k, up_ms=5.0, down_ms=5.0)
    assert sync.drift_ppm == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda i, t1, t2, t3, t4: (i + 1, t1, t2, t3, t4), "unknown_id"),
        (lambda i, t1, t2, t3, t4: (i, t1 + 1.0, t2, t3, t4), "t1_mismatch"),
        (lambda i, t1, t2, t3, t4: (i, t1, math.nan, t3, t4), "non_finite"),
        (lambda i, t1, t2, t3, t4: (i, t1, t2, math.inf, t4), "non_finite"),
        (lambda i, t1, t2, t3, t4: (i, t1, t2, t2 - 1.0, t4), "peer_reversed"),
        (lambda i, t1, t2, t3, t4: (i, t1, t2, t3 + 500.0, t4), "negative_rtt"),
    ],
)
def test_rejects_and_counts_impossible_replies(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    sync = ClockSync(min_samples=1)
    request_id, t1 = sync.make_request(1000.0)
    bad = mutate(request_id, t1, 1010.0, 1011.0, 1021.0)
    assert sync.on_response(*bad) is None
    assert sync.rejected == {reason: 1}
    assert f"id={bad[0]}" in sync.last_rejection
    assert not sync.ready
    # the system keeps running: the good reply to the same request is still taken
    assert sync.on_response(request_id, t1, 1010.0, 1011.0, 1021.0) is not None
    assert sync.ready


def test_reply_is_taken_once() -> None:
    sync = ClockSync(min_samples=1)
    request_id, t1 = sync.make_request(0.0)
    assert sync.on_response(request_id, t1, 5.0, 5.0, 10.0) is not None
    assert sync.on_response(request_id, t1, 5.0, 5.0, 10.0) is None
    assert sync.rejected == {"unknown_id": 1}


def test_pending_requests_are_bounded_and_ids_wrap() -> None:
    sync = ClockSync(max_pending=2)
    sync._next_id = (1 << 32) - 1  # white-box: start just before the wrap
    first, _ = sync.make_request(0.0)
    second, _ = sync.make_request(1.0)
    third, t3 = sync.make_request(2.0)
    assert (first, second, third) == ((1 << 32) - 1, 0, 1)
    assert sync.on_response(first, 0.0, 1.0, 1.0, 3.0) is None  # forgotten
    assert sync.on_response(third, t3, 3.0, 3.0, 4.0) is not None


def test_answer_request_defaults_t3_to_t2() -> None:
    assert answer_request(7, 1.0, 2.0) == (7, 1.0, 2.0, 2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"min_samples": 5, "window": 4},
        {"min_drift_span_ms": 0.0},
        {"max_drift_ppm": -1.0},
    ],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ClockSync(**kwargs)  # type: ignore[arg-type]


@given(
    offset_ms=st.floats(-1e7, 1e7),
    paths=st.lists(
        st.tuples(st.floats(0.1, 500.0), st.floats(0.1, 500.0)), min_size=1, max_size=20
    ),
)
def test_offset_error_never_exceeds_half_the_min_rtt(
    offset_ms: float, paths: list[tuple[float, float]]
) -> None:
    sync = ClockSync(window=32, min_samples=1)
    peer = PeerClock(offset_ms=offset_ms)
    for k, (up, down) in enumerate(paths):
        exchange(sync, peer, 1000.0 * k, up_ms=up, down_ms=down)
    assert sync.offset_ms is not None
    assert sync.min_rtt_ms is not None
    assert abs(sync.offset_ms - offset_ms) <= sync.min_rtt_ms / 2 + 1e-6
    assert sync.rejected == {}
