"""Three 640x480@30 synthetic cameras streamed at once from one vehicle process.

The vehicle process (child) captures three synthetic cameras and sends them as three H.264
tracks (teledrive's encoder) over one peer connection; this process receives them with
teledrive's receive path. Reports the decoded frame rate of the slowest camera (``fps_min``)
and the CPU use of the vehicle process (``cpu_percent``, share of one core; the machine's
core count is in ``cpu_count``), plus per-camera glass-to-glass latency.

Usage: python benchmarks/cameras.py [--json] [--seconds S] [--cameras N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import psutil
from glass_to_glass import percentile, run_phase


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    sizes = [(640, 480)] * args.cameras
    phase = await run_phase(
        sizes, fast=True, own_encoder=True, warmup_frames=30, seconds=args.seconds
    )
    latencies = phase.latencies_ms
    return {
        "cameras": args.cameras,
        "resolution": "640x480",
        "fps_target": 30,
        "fps_min": round(min(phase.fps), 1),
        "fps_per_camera": [round(f, 1) for f in phase.fps],
        "cpu_percent": round(phase.sender_cpu_percent, 1),
        "receiver_cpu_percent": round(phase.receiver_cpu_percent, 1),
        "cpu_count": psutil.cpu_count(),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "frames_skipped": phase.sender_stats["frames_skipped"],
        "camera_fps": [round(f, 1) for f in phase.sender_stats["camera_fps"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--cameras", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    if not args.json:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
