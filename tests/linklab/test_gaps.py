"""The lab's freeze arithmetic: gaps between frames, cuts left out, fades subtracted."""

from __future__ import annotations

from teledrive.shared.linklab.system import (
    Cut,
    Gap,
    fades_in_common,
    frame_gaps,
    longest_gap_ms,
    merged,
)


def cut(start_ms: float, end_ms: float) -> Cut:
    return Cut(start_ms=start_ms, end_ms=end_ms, sessions_before=1)


def test_the_longest_gap_between_frames() -> None:
    assert longest_gap_ms([0.0, 33.0, 66.0, 400.0, 433.0], []) == 334.0
    assert longest_gap_ms([5.0], []) == 0.0


def test_gaps_over_a_cut_are_left_out() -> None:
    times = [0.0, 33.0, 3033.0, 3066.0, 3500.0]
    assert longest_gap_ms(times, [cut(100.0, 2100.0)]) == 434.0


def test_a_fade_in_or_just_before_a_gap_is_subtracted_from_it() -> None:
    times = [0.0, 600.0, 633.0]
    # The fade began 50 ms before the gap's first frame (frames lost in it were due later).
    assert longest_gap_ms(times, [], fades=[(-50.0, 250.0)], lookback_ms=120.0) == 300.0
    # Two fades in one gap both count.
    two = [(100.0, 200.0), (300.0, 350.0)]
    assert longest_gap_ms(times, [], fades=two, lookback_ms=120.0) == 450.0


def test_overlapping_fades_of_both_directions_count_once() -> None:
    times = [0.0, 600.0, 633.0]
    up_and_down = [(100.0, 200.0), (150.0, 250.0)]  # 150 ms of link lost, not 200
    assert longest_gap_ms(times, [], fades=up_and_down, lookback_ms=120.0) == 450.0
    nested = [(100.0, 300.0), (150.0, 250.0)]
    assert longest_gap_ms(times, [], fades=nested, lookback_ms=120.0) == 400.0


def test_a_fade_longer_than_the_gap_takes_away_no_more_than_the_gap() -> None:
    times = [0.0, 33.0, 433.0, 466.0]
    # Begins inside the 400 ms gap and outlasts it: only its part up to 433 ms counts.
    assert longest_gap_ms(times, [], fades=[(100.0, 900.0)], lookback_ms=120.0) == 67.0
    # Covers the gap and its lookback: nothing is left of the gap, not less than nothing.
    gaps = frame_gaps(times, [], fades=[(-1000.0, 1000.0)], lookback_ms=120.0)
    assert [gap.beyond_fades_ms for gap in gaps] == [0.0, 0.0, 0.0]


def test_a_fade_that_began_before_the_lookback_counts_with_its_part_inside_it() -> None:
    times = [0.0, 600.0, 633.0]
    # Began 200 ms before the gap, 80 ms before the lookback: its 220 ms from -120 count.
    assert longest_gap_ms(times, [], fades=[(-200.0, 100.0)], lookback_ms=120.0) == 380.0
    # With one inside the gap too: both count, the window's start clips the first.
    two = [(-200.0, 100.0), (300.0, 400.0)]
    assert longest_gap_ms(times, [], fades=two, lookback_ms=120.0) == 280.0


def test_a_fade_outside_the_gap_is_not_subtracted() -> None:
    times = [0.0, 600.0, 633.0]
    too_early = [(-200.0, -120.0)]  # ended as the lookback began
    assert longest_gap_ms(times, [], fades=too_early, lookback_ms=120.0) == 600.0
    after = [(600.0, 700.0)]  # began with the gap's last frame: a later gap's business
    assert longest_gap_ms(times, [], fades=after, lookback_ms=120.0) == 600.0


def test_every_gap_is_listed_in_time_order_cuts_left_out() -> None:
    times = [0.0, 33.0, 533.0, 566.0, 3566.0, 3600.0, 3900.0]
    fades = [(100.0, 300.0)]
    gaps = frame_gaps(times, [cut(700.0, 3000.0)], fades=fades, lookback_ms=120.0)
    assert [gap.beyond_fades_ms for gap in gaps] == [33.0, 300.0, 33.0, 34.0, 300.0]
    assert gaps[1] == Gap(start_ms=33.0, length_ms=500.0, beyond_fades_ms=300.0)
    assert [gap.start_ms for gap in gaps] == [0.0, 33.0, 533.0, 3566.0, 3600.0]
    assert frame_gaps([5.0], []) == []


def test_two_bonded_links_are_down_only_where_both_are() -> None:
    first = [(0.0, 100.0), (200.0, 300.0), (1000.0, 1050.0)]
    second = [(50.0, 250.0), (280.0, 290.0), (2000.0, 2100.0)]
    assert fades_in_common(first, second) == [(50.0, 100.0), (200.0, 250.0), (280.0, 290.0)]
    assert fades_in_common(first, []) == []


def test_a_links_fades_and_its_cuts_join_into_one_list() -> None:
    assert merged([(200.0, 300.0), (0.0, 100.0), (250.0, 400.0), (400.0, 450.0)]) == [
        (0.0, 100.0),
        (200.0, 450.0),
    ]
