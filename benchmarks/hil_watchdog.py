"""Host killed while driving -> motor off, on the firmware in simavr (issue [hil]).

Each trial starts a host process that sends HELLO, ARM and DRIVE at 50 Hz, waits until the
PWM pin runs, SIGKILLs the host and measures, on the rig's pin timeline, the time from the kill
to the motor being off. It also measures host write -> PWM change for single DRIVE frames.

    python benchmarks/hil_watchdog.py --json [--trials N]

Prints one JSON object (the last line). Needs `make rig` (gcc-avr, simavr).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIL_DIR = Path(__file__).resolve().parents[1] / "tests" / "hil"
sys.path.insert(0, str(HIL_DIR))

from host import HostLink  # noqa: E402
from rigs import SimavrRig  # noqa: E402

HOST_DRIVER = HIL_DIR / "host_driver.py"
LINK_TIMEOUT_MS = 200.0  # the bound: motors off within 200 ms of the host dying


def kill_trial(rig: SimavrRig) -> float:
    host = subprocess.Popen(
        [sys.executable, str(HOST_DRIVER), rig.port, "1500", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HIL_DIR,
        env={**os.environ, "PYTHONPATH": str(HIL_DIR)},
    )
    try:
        if host.stdout is None or host.stdout.readline().strip() != "driving":
            raise RuntimeError("host driver did not start driving")
        rig.wait_pins(lambda p: p.motor_duty != 0, 2.0)
        kill_s = time.monotonic()
        host.send_signal(signal.SIGKILL)
    finally:
        host.kill()
        host.wait()
        if host.stdout is not None:
            host.stdout.close()
    pins = rig.wait_pins(lambda p: p.motor_duty == 0 and p.direction == 0, 2.0)
    return (pins.t_s - kill_s) * 1000.0


def command_to_pwm_ms(rig: SimavrRig, samples: int) -> list[float]:
    """Host write of a DRIVE -> the PWM pin changing, alternating two setpoints."""
    out: list[float] = []
    with HostLink(rig.port) as link:
        link.hello()
        link.wait_info(2.0)
        link.arm()
        link.wait_telemetry(lambda t: t.state == 1, 1.0)
        for i in range(samples):
            speed = 900 if i % 2 else 1800
            want = speed * 1000 // 3000
            sent_s = time.monotonic()
            link.drive(speed, 0)
            pins = rig.wait_pins(lambda p, w=want: abs(p.motor_duty - w) <= 4, 1.0)
            out.append((pins.t_s - sent_s) * 1000.0)
            link.wait_telemetry(lambda t, w=want: t.motor_duty == w, 1.0)
        link.disarm()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hil_watchdog_") as tmp:
        rig = SimavrRig(str(Path(tmp) / "ttyMCU"))
        try:
            kills = []
            for i in range(args.trials):
                kills.append(kill_trial(rig))
                if not args.json:
                    print(f"trial {i + 1}: kill -> motor off {kills[-1]:.1f} ms", file=sys.stderr)
            cmd = command_to_pwm_ms(rig, 50)
            stats = rig.stats()
        finally:
            rig.close()
    result = {
        "rig": "simavr",
        "trials": len(kills),
        "kill_to_motor_off_ms_max": round(max(kills), 2),
        "kill_to_motor_off_ms_p50": round(statistics.median(kills), 2),
        "kill_to_motor_off_ms_min": round(min(kills), 2),
        "target_ms": LINK_TIMEOUT_MS,
        "target_met": max(kills) <= LINK_TIMEOUT_MS,
        "command_to_pwm_ms_p50": round(statistics.median(cmd), 2),
        "command_to_pwm_ms_max": round(max(cmd), 2),
        "sim_lag_max_ms": float(stats.get("lag_max_ms", "nan")),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
