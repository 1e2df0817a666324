"""``teledrive demo --headless --seconds 15``, exactly as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))


def test_headless_demo_reports_video_commands_and_no_errors() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "teledrive.shared.cli", "demo", "--headless", "--seconds", "15"],
        capture_output=True,
        text=True,
        timeout=90 * SCALE,
        check=True,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["video_fps"] >= 25, summary
    assert summary["frames_received"] >= 25 * 10, summary
    assert summary["commands_sent"] > 0, summary
    assert summary["commands_applied"] >= 0.95 * summary["commands_sent"], summary
    assert summary["telemetry_received"] > 0, summary
    assert summary["rtt_ms_p50"] is not None, summary
    assert summary["errors"] == 0, summary
    assert summary["stale_commands_applied"] == 0, summary
