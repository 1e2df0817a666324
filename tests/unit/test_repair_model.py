"""benchmarks/repair_model.py: the repair loop in simulated time, run as a user runs it.

Each run simulates a minute or two of video (about a second of CPU) and prints its JSON.
The checks are about the model working, not about figures: frames flow, losses are
repaired, and a second link carries what the first loses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from teledrive.operator.video_receive import DEFAULT_FEEDBACK_SPACING_MS
from teledrive.vehicle.retransmit_guard import COPIES_PER_ROUND_TRIP, COPY_SPACING_MS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "repair_model.py"
FRAME_INTERVAL_MS = 1000.0 / 30.0


def _model(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_clean_link_releases_every_frame_on_time() -> None:
    result = _model("--profile", "lan", "--minutes", "0.5")
    assert result["frames_released_per_s"] > 29.5
    # A frame is released when its last packet arrives: gaps are the frame interval.
    assert result["longest_freeze_ms"] < 1.5 * FRAME_INTERVAL_MS
    assert result["video_recovery"]["keyframe_requests"] == 0


def test_losses_on_a_bad_cellular_link_are_repaired() -> None:
    result = _model("--profile", "bad-cell", "--minutes", "1", "--seed", "3")
    recovery = result["video_recovery"]
    assert result["uplink_dropped"][0]["fade"] > 0
    assert recovery["packets_recovered"] > 0
    assert recovery["nacks_repeated"] > 0  # the round trip is long: feedback is repeated
    assert result["retransmissions"]["sent"] > 0
    assert result["frames_released_per_s"] > 25.0


def test_a_second_link_carries_what_the_first_loses() -> None:
    one = _model("--profile", "bad-cell", "--minutes", "2", "--seed", "4")
    two = _model("--profile", "bad-cell", "--minutes", "2", "--seed", "4", "--links", "2")
    assert len(two["uplink_dropped"]) == 2
    # The first copy counts, the other is dropped as a bonding tunnel does: a retransmission
    # that overtakes nothing may still arrive twice, every packet twice would be thousands.
    assert two["video_recovery"]["packets_duplicate"] < 50
    assert two["video_recovery"]["packets_recovered"] < one["video_recovery"]["packets_recovered"]
    assert two["freezes_over_ms"]["300"] < one["freezes_over_ms"]["300"]


def test_the_repair_settings_are_the_codes_own_unless_given() -> None:
    default = _model("--profile", "lan", "--minutes", "0.1")
    assert default["copy_spacing_ms"] == COPY_SPACING_MS
    assert default["copies_per_round_trip"] == COPIES_PER_ROUND_TRIP
    assert default["feedback_spacing_ms"] == DEFAULT_FEEDBACK_SPACING_MS
    given = _model("--profile", "lan", "--minutes", "0.1", "--copy-spacing-ms", "70")
    assert given["copy_spacing_ms"] == 70.0
