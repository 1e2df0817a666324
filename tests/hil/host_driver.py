"""A host process for the kill test: HELLO, ARM, then DRIVE at 50 Hz until it is killed.

Usage: python host_driver.py PORT SPEED_MMPS STEER_MRAD
Prints ``driving`` once the MCU's telemetry shows the motor running.
"""

from __future__ import annotations

import sys
import time

from host import DriveStream, HostLink


def main() -> int:
    port, speed, steer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    link = HostLink(port)
    link.hello()
    link.wait_info(5.0)
    link.arm()
    DriveStream(link, speed, steer)
    link.wait_telemetry(lambda t: t.state == 1 and t.motor_duty != 0, 5.0)
    print("driving", flush=True)
    while True:  # until SIGKILL
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
