"""Relay throughput and delay accuracy: paced UDP from the vehicle to the operator namespace.

Run as root: ``python tests/linklab/relay_bench.py --rate-bps 20e6 --delay-ms 12.5 --json``.
The link has a fixed delay (no jitter, loss or rate limit), so each datagram's one-way delay
minus the configured delay is the relay's error (plus the scheduling of sender and sink). The
sender's clock stamp is CLOCK_MONOTONIC, shared by all namespaces. Prints one JSON object as
its last line. (Belongs in benchmarks/; kept here with its probe tool for now.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from teledrive.shared.linklab import DirectionProfile, LinkLab, LinkProfile

TOOL = [sys.executable, str(Path(__file__).with_name("udp_tool.py"))]
PORT = 5001


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def run(rate_bps: float, delay_ms: float, duration_s: float, size: int) -> dict[str, Any]:
    direction = DirectionProfile(delay_ms=delay_ms)
    profile = LinkProfile(name=f"fixed-{delay_ms:g}ms", uplink=direction, downlink=direction)
    with LinkLab(profile, prefix="tdbench") as lab:
        target = f"{lab.addr('operator')}:{PORT}"
        echo = lab.run_in("operator", [*TOOL, "echo", "--port", str(PORT)], stdout=subprocess.PIPE)
        echo.stdout.readline()  # type: ignore[union-attr]
        # One exchange first, so the first datagrams do not include the sockets' first use.
        warm = lab.run_in(
            "vehicle", [*TOOL, "ping", "--to", target, "--count", "3"], stdout=subprocess.DEVNULL
        )
        warm.wait(timeout=30)
        echo.kill()
        echo.wait()
        sink = lab.run_in(
            "operator", [*TOOL, "sink", "--port", str(PORT)], stdout=subprocess.PIPE, text=True
        )
        sink.stdout.readline()  # type: ignore[union-attr]
        argv = ["blast", "--to", target, "--rate-bps", str(rate_bps)]
        argv += ["--duration-s", str(duration_s), "--size", str(size)]
        blast = lab.run_in("vehicle", [*TOOL, *argv], stdout=subprocess.PIPE, text=True)
        blast_out, _ = blast.communicate(timeout=duration_s * 4 + 30)
        sink_out, _ = sink.communicate(timeout=duration_s * 4 + 30)
        stats = lab.stats()
    sent = json.loads(blast_out.splitlines()[-1])
    received = json.loads(sink_out.splitlines()[-1])
    errors_ms = sorted(d - delay_ms for d in received["delays_ms"])
    return {
        "rate_bps_offered": rate_bps,
        "payload_bytes": size,
        "delay_ms": delay_ms,
        "sent": sent["sent"],
        "received": received["received"],
        "throughput_mbps": round(received["payload_bytes"] * 8 / received["span_s"] / 1e6, 3),
        "delay_error_ms_p50": round(_quantile(errors_ms, 0.5), 3),
        "delay_error_ms_p99": round(_quantile(errors_ms, 0.99), 3),
        "delay_error_ms_max": round(errors_ms[-1], 3),
        "relay_late_ms_histogram": stats["relay"]["late_ms_histogram"],
        "relay_late_ms_max": round(stats["relay"]["late_ms_max"], 3),
        "relay_tx_errors": stats["relay"]["tx_errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate-bps", type=float, default=20e6)
    parser.add_argument("--delay-ms", type=float, default=12.5)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=1200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rate_bps, args.delay_ms, args.duration_s, args.size)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
