"""The walking skeleton end to end: hub, vehicle and operator as separate processes.

Real websockets on loopback, real aiortc peers, and the simulated MCU behind a real pty that
this test owns, so it can watch what the motor controller is told.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import cli, hub_process, stop, vehicle_process

from teledrive.vehicle.mcu_sim import McuSnapshot, PtyMcu

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
VEHICLE_ID = "e2e-van"


@pytest.fixture
def hub_url() -> Iterator[str]:
    with hub_process() as url:
        yield url


@pytest.fixture
def vehicle(tmp_path: Path, hub_url: str, mcu: PtyMcu) -> Iterator[subprocess.Popen[str]]:
    with vehicle_process(
        tmp_path, vehicle_id=VEHICLE_ID, hub_url=hub_url, motor_url=mcu.port_path
    ) as proc:
        yield proc


def start_operator(hub_url: str, seconds: float | None = None) -> subprocess.Popen[str]:
    argv = ["operator", "--hub", hub_url, "--vehicle", VEHICLE_ID, "--headless"]
    argv += ["--stdin", "--json"]
    if seconds is not None:
        argv += ["--seconds", str(seconds)]
    return subprocess.Popen(
        cli(*argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )


def type_command(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def driving(speed_mmps: int, steer_mrad: int):  # type: ignore[no-untyped-def]
    def check(snap: McuSnapshot) -> bool:
        drive = snap.last_drive
        return (
            drive is not None
            and drive.drive.speed_mmps == speed_mmps
            and drive.drive.steer_mrad == steer_mrad
            and snap.outputs.speed_cmd_mmps == speed_mmps
        )

    return check


def test_operator_drives_the_mcu_and_sees_video(
    mcu: PtyMcu, vehicle: subprocess.Popen[str], hub_url: str
) -> None:
    operator = start_operator(hub_url, seconds=8 * SCALE)
    try:
        type_command(operator, "1.25 -0.125")
        assert mcu.wait_for(driving(1250, -125), timeout_s=20 * SCALE), mcu.snapshot()
        type_command(operator, "0.5 0.3")
        assert mcu.wait_for(driving(500, 300), timeout_s=5 * SCALE), mcu.snapshot()
        out, _ = operator.communicate(timeout=30 * SCALE)
    finally:
        stop(operator)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["video_fps"] >= 25, summary
    assert summary["frames_received"] >= 25, summary
    assert summary["telemetry_received"] > 0, summary
    assert summary["commands_applied"] > 0, summary
    assert summary["errors"] == 0, summary
    assert vehicle.poll() is None


def test_killed_operator_stops_the_vehicle(
    mcu: PtyMcu, vehicle: subprocess.Popen[str], hub_url: str
) -> None:
    """SIGKILL the operator while driving at 1 m/s.

    The vehicle has no autonomy here, so the supervisor makes a minimal-risk stop: within
    300 ms of the kill the MCU's setpoint must have left the operator's command and be
    falling, and it must reach zero within 300 ms + v/a + 0.2 s (a = 1.5 m/s^2), never rising.
    """
    operator = start_operator(hub_url)
    try:
        type_command(operator, "1.0 0.0")
        assert mcu.wait_for(driving(1000, 0), timeout_s=20 * SCALE), mcu.snapshot()
        killed_ms = time.monotonic() * 1000.0
        operator.send_signal(signal.SIGKILL)
        operator.wait(timeout=5)

        setpoints: list[tuple[float, int]] = []

        def stopped(snap: McuSnapshot) -> bool:
            drive = snap.last_drive
            if drive is not None and (not setpoints or setpoints[-1][0] != drive.arrival_ms):
                setpoints.append((drive.arrival_ms, drive.drive.speed_mmps))
            return drive is not None and drive.drive.speed_mmps == 0

        assert mcu.wait_for(stopped, timeout_s=5 * SCALE), mcu.snapshot()
    finally:
        stop(operator)
    # The MCU model's clock is time.monotonic in ms, the same clock as killed_ms.
    after = [(at - killed_ms, speed) for at, speed in setpoints if at > killed_ms]
    first_lower = next(t for t, speed in after if speed < 1000)
    zero_at = next(t for t, speed in after if speed == 0)
    assert first_lower <= 300.0, after[:20]
    assert zero_at <= 300.0 + 1000.0 / 1.5 + 200.0, after
    speeds = [speed for _t, speed in after]
    assert all(b <= a for a, b in itertools.pairwise(speeds)), speeds
