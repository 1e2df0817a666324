"""Link loss -> fallback, and the stop from 2 m/s, on a simulated clock (sans-I/O).

Each trial drives the real Supervisor with a scripted operator: commands at 50 Hz over a link
with a given one-way delay, jitter, and a fraction of late (stale or reordered) commands;
heartbeats, latency and video-freshness reports at 10 Hz; the supervisor ticks at 50 Hz at a
random phase against the command stream, and, like the vehicle's control loop, also at its own
next deadline (``Supervisor.next_deadline_ms``) when that comes before the next tick. After a
random time the link dies at a random phase. The same trials on the 20 ms grid alone (the
vehicle's loop before session 4) are the baseline: ``grid_only_*``.

* loss_to_fallback_ms: from the loss to the first tick whose mode is no longer an operator mode.
* stale_commands_applied: ticks that applied a command older (by its stamps) than
  min(bound, its TTL): checked here, independently of the supervisor.
* stop_*_from_2mps: the same loss while driving at 2 m/s in the simulated world with the
  autonomy unable to continue (NO_ROUTE): time and distance from the loss to standstill.

Prints one JSON object (the last line) with --json; the worst trial is reported for maxima.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any

from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.command_gate import CommandArrival
from teledrive.vehicle.supervisor import (
    OPERATOR_MODES,
    Supervisor,
    SupervisorConfig,
    TickOutput,
)
from teledrive.vehicle.tick_schedule import DEADLINE_SLACK_S, TICK_S
from teledrive.vehicle.world import World, WorldMap

TICK_MS = TICK_S * 1000.0
COMMAND_PERIOD_MS = 20.0
REPORT_PERIOD_MS = 100.0
TTL_MS = 300.0
DEADLINE_SLACK_MS = DEADLINE_SLACK_S * 1000.0  # the vehicle's loop: past the strict ">"


@dataclass
class TrialResult:
    loss_to_fallback_ms: float
    stale_applied: int
    stop_time_s: float | None = None
    stop_distance_m: float | None = None
    dropped: dict[str, int] = field(default_factory=dict)


def run_trial(
    rng: random.Random,
    config: SupervisorConfig,
    *,
    delay_ms: float,
    jitter_ms: float,
    late_fraction: float,
    speed_mps: float,
    autonomy_ok: bool,
    with_world: bool,
    deadlines: bool = True,
) -> TrialResult:
    sup = Supervisor(config)
    op_offset_ms = rng.uniform(-1e6, 1e6)  # vehicle clock minus operator clock
    estimate_error_ms = rng.uniform(-2.0, 2.0)
    takeover_ms = 1500.0
    loss_ms = takeover_ms + rng.uniform(1000.0, 3000.0)
    end_ms = loss_ms + 5000.0
    tick_phase_ms = rng.uniform(0.0, TICK_MS)

    order = itertools.count()
    events: list[tuple[float, int, str, object]] = []
    sent_vehicle_ms: dict[int, tuple[float, float]] = {}  # seq -> (sent, ttl), vehicle clock
    t = rng.uniform(0.0, COMMAND_PERIOD_MS)
    for seq in itertools.count(rng.randrange(1 << 32)):
        if t >= loss_ms:
            break
        seq %= 1 << 32
        transit_ms = max(0.0, delay_ms + rng.uniform(-jitter_ms, jitter_ms))
        if rng.random() < late_fraction:
            transit_ms += rng.uniform(50.0, 400.0)
        cmd = CommandArrival(
            seq=seq,
            sent_ms=t - op_offset_ms,
            offset_ms=op_offset_ms + estimate_error_ms,
            ttl_ms=TTL_MS,
            speed_mps=speed_mps,
            steer_rad=0.0,
            estop=False,
            received_ms=t + transit_ms,
        )
        sent_vehicle_ms[seq] = (cmd.sent_ms + cmd.offset_ms, TTL_MS)
        heapq.heappush(events, (cmd.received_ms, next(order), "cmd", cmd))
        t += COMMAND_PERIOD_MS
    t = rng.uniform(0.0, REPORT_PERIOD_MS)
    while t < loss_ms:
        heapq.heappush(events, (t + delay_ms, next(order), "report", None))
        t += REPORT_PERIOD_MS

    world = World(WorldMap(((0.0, 0.0), (1000.0, 0.0)))) if with_world else None
    status = AutonomyStatus.OK if autonomy_ok else AutonomyStatus.NO_ROUTE
    fallback_ms: float | None = None
    stale_applied = 0
    distance_at_loss_m: float | None = None
    stop_time_s: float | None = None
    stop_distance_m: float | None = None

    def step(now_ms: float) -> TickOutput:
        nonlocal stale_applied, fallback_ms
        while events and events[0][0] <= now_ms:
            at_ms, _, kind, payload = heapq.heappop(events)
            if isinstance(payload, CommandArrival):
                sup.on_command(payload)
            elif kind == "report":
                sup.on_link_heartbeat(at_ms)
                sup.on_latency(at_ms, delay_ms, 2 * delay_ms)
                sup.on_video_freshness(at_ms, rng.uniform(0.0, 40.0))
        sup.on_autonomy_status(now_ms, AutonomyOutput(status, 0.8, 0.0))
        if sup.mode not in OPERATOR_MODES and now_ms >= takeover_ms and now_ms < loss_ms:
            sup.on_takeover_request(now_ms)
        out = sup.tick(now_ms)
        if out.command_seq is not None and out.command_seq in sent_vehicle_ms:
            sent, ttl = sent_vehicle_ms[out.command_seq]
            if now_ms - sent > min(config.fallback_age_ms, ttl):
                stale_applied += 1
        if fallback_ms is None and now_ms >= loss_ms and out.mode not in OPERATOR_MODES:
            fallback_ms = now_ms - loss_ms
        return out

    tick = tick_phase_ms
    while tick < end_ms:
        out = step(tick)
        deadline = sup.next_deadline_ms() if deadlines else None
        while deadline is not None and deadline + DEADLINE_SLACK_MS < tick + TICK_MS:
            out = step(deadline + DEADLINE_SLACK_MS)
            deadline = sup.next_deadline_ms()
        if world is not None:
            if distance_at_loss_m is None and tick >= loss_ms:
                distance_at_loss_m = world.odometry().distance_m
                speed_at_loss = world.odometry().speed_mps
                if abs(speed_at_loss - speed_mps) > 0.01:
                    raise RuntimeError(f"not at {speed_mps} m/s at the loss: {speed_at_loss}")
            world.step(TICK_MS / 1000.0, out.speed_mps, out.steer_rad)
            odo = world.odometry()
            if distance_at_loss_m is not None and stop_time_s is None and odo.speed_mps == 0.0:
                stop_time_s = (tick + TICK_MS - loss_ms) / 1000.0
                stop_distance_m = odo.distance_m - distance_at_loss_m
        tick += TICK_MS
    if fallback_ms is None:
        raise RuntimeError("no fallback within 5 s of the link loss")
    dropped = {str(k): v for k, v in sup.gate.dropped.items()}
    return TrialResult(fallback_ms, stale_applied, stop_time_s, stop_distance_m, dropped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--delay-ms", type=float, default=12.5, help="one-way link delay")
    parser.add_argument("--jitter-ms", type=float, default=3.0)
    parser.add_argument("--late-fraction", type=float, default=0.05)
    parser.add_argument("--decel-mps2", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be >= 1")

    config = SupervisorConfig(decel_mps2=args.decel_mps2)
    result = trials(args, config, deadlines=True)
    grid = trials(args, config, deadlines=False)  # the same trials (same seed), grid only
    result["grid_only_loss_to_fallback_ms_p50"] = grid["loss_to_fallback_ms_p50"]
    result["grid_only_loss_to_fallback_ms_max"] = grid["loss_to_fallback_ms_max"]
    result["grid_only_stop_time_s_from_2mps"] = grid["stop_time_s_from_2mps"]
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:36s} {value}")
    return 0


def trials(
    args: argparse.Namespace, config: SupervisorConfig, *, deadlines: bool
) -> dict[str, Any]:
    """Runs the loss and the stop trials; returns the figures."""
    rng = random.Random(args.seed)
    common: dict[str, Any] = {
        "delay_ms": args.delay_ms,
        "jitter_ms": args.jitter_ms,
        "deadlines": deadlines,
    }
    loss = [
        run_trial(
            rng,
            config,
            late_fraction=args.late_fraction,
            speed_mps=1.0,
            autonomy_ok=True,
            with_world=False,
            **common,
        )
        for _ in range(args.trials)
    ]
    stops = [
        run_trial(
            rng,
            config,
            late_fraction=0.0,
            speed_mps=2.0,
            autonomy_ok=False,
            with_world=True,
            **common,
        )
        for _ in range(args.trials)
    ]
    all_trials = loss + stops
    latencies = [r.loss_to_fallback_ms for r in all_trials]
    stop_times = [r.stop_time_s for r in stops if r.stop_time_s is not None]
    stop_dists = [r.stop_distance_m for r in stops if r.stop_distance_m is not None]
    if len(stop_times) != len(stops):
        raise RuntimeError("a stop trial never reached standstill")
    dropped: dict[str, int] = {}
    for r in all_trials:
        for k, v in r.dropped.items():
            dropped[k] = dropped.get(k, 0) + v
    detection_ms = config.detection_ms
    stop_bound_s = detection_ms / 1000.0 + 2.0 / config.decel_mps2 + 0.2
    result = {
        "trials": args.trials,
        "loss_to_fallback_ms_p50": round(statistics.median(latencies), 3),
        "loss_to_fallback_ms_max": round(max(latencies), 3),
        "stale_commands_applied": sum(r.stale_applied for r in all_trials),
        "stop_time_s_from_2mps": round(max(stop_times), 4),
        "stop_distance_m_from_2mps": round(max(stop_dists), 4),
        "decel_mps2": config.decel_mps2,
        "detection_ms": detection_ms,
        "delay_ms": args.delay_ms,
        "late_fraction": args.late_fraction,
        "commands_dropped": dropped,
        "stop_time_bound_s": round(stop_bound_s, 4),
        "pass": max(latencies) <= 270.0
        and sum(r.stale_applied for r in all_trials) == 0
        and max(stop_times) <= stop_bound_s
        and config.decel_mps2 >= 1.5,
    }
    return result


if __name__ == "__main__":
    sys.exit(main())
