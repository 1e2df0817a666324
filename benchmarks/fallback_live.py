"""Link loss -> fallback and the stop from 2 m/s, live: real operator process, real WebRTC.

Complements the sans-I/O ``benchmarks/fallback.py`` with the whole stack: an in-process hub on
loopback websockets, the vehicle service in this process (so that every control step and every
accepted drive command is recorded with its vehicle-clock time), the simulated MCU behind a
real pty (``sim://``), the vehicle moving in the simulated world by the MCU's measured wheel
speed, and the headless operator as a separate process driving straight at ``--speed-mps``.

Each trial: a new operator process takes over, drives at 2 m/s, and is then SIGKILLed (even
trials) or SIGSTOPped (odd trials). The world has no route, so the autonomy cannot continue
(``NO_ROUTE``) and the fallback is a minimal-risk stop.

* loss_to_fallback_ms: from the send time of the newest command the vehicle had accepted (the
  operator's clock is the same host clock) to the first control step out of operator control.
* signal_to_fallback_ms: the same from the moment the signal was sent.
* stale_commands_applied: control steps that applied a command older (by its stamps, or by
  the shared clock beyond 5 ms of clock-sync error) than min(bound, its TTL).
* stop_time_s / stop_distance_m: from the loss to standstill (world speed below
  ``STANDSTILL_MPS``; the MCU model's wheel speed decays exponentially), in the world.

Prints one JSON object (the last line) with --json; maxima are over all trials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from teledrive.operator.hub import Hub
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.autonomy.base import Pose
from teledrive.vehicle.camera import Camera
from teledrive.vehicle.command_gate import CommandArrival, GateVerdict
from teledrive.vehicle.motor_link import MotorLink
from teledrive.vehicle.service import VehicleService, supervisor_config
from teledrive.vehicle.sim_world import SimWorld, motor_motion
from teledrive.vehicle.supervisor import OPERATOR_MODES, Mode, TickOutput
from teledrive.vehicle.world import WorldMap
from teledrive.vehicle.world_camera import WorldCameraSource

VEHICLE_ID = "bench-van"
STANDSTILL_MPS = 0.02
CLOCK_SYNC_ERROR_MS = 5.0
POLL_S = 0.005


@dataclass
class Step:
    now_ms: float
    out: TickOutput
    distance_m: float
    speed_mps: float


@dataclass
class Recorder:
    steps: list[Step] = field(default_factory=list)
    accepted: dict[int, CommandArrival] = field(default_factory=dict)
    newest: CommandArrival | None = None
    world: SimWorld | None = None

    def on_command(self, arrival: CommandArrival, verdict: GateVerdict) -> None:
        if verdict.accepted:
            self.accepted[arrival.seq] = arrival
            if self.newest is None or arrival.received_ms >= self.newest.received_ms:
                self.newest = arrival

    def on_step(self, out: TickOutput) -> None:
        snap = self.world.snapshot() if self.world is not None else None
        distance = snap.distance_m if snap is not None else 0.0
        speed = snap.speed_mps if snap is not None else 0.0
        self.steps.append(Step(out.now_ms, out, distance, speed))

    def stale_applied(self, bound_ms: float) -> int:
        stale = 0
        for step in self.steps:
            seq = step.out.command_seq
            if seq is None:
                continue
            arrival = self.accepted[seq]
            limit_ms = min(bound_ms, arrival.ttl_ms)
            true_age_ms = step.now_ms - arrival.sent_ms
            if arrival.age_at(step.now_ms) > limit_ms or true_age_ms > limit_ms + 5.0:
                stale += 1
        return stale


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def vehicle_config(hub_url: str) -> VehicleConfig:
    return parse_config(
        f'[vehicle]\nid = "{VEHICLE_ID}"\nhub_url = "{hub_url}"\n[motor]\nurl = "sim://"\n'
        '[[cameras]]\nname = "front"\nsource = "world"\nwidth = 320\nheight = 240\nfps = 30\n'
        "[sim]\n",
        VehicleConfig,
        source="benchmark vehicle.toml",
    )


def start_operator(hub_url: str, speed_mps: float) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "teledrive.shared.cli", "operator", "--hub", hub_url]
    argv += ["--vehicle", VEHICLE_ID, "--headless", "--stdin"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, bufsize=1
    )
    assert proc.stdin is not None
    proc.stdin.write(f"{speed_mps} 0.0\n")
    proc.stdin.flush()
    return proc


async def reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    await wait_until(lambda: proc.poll() is not None, 10.0, "the operator to exit")


@dataclass
class Trial:
    signal: str
    loss_to_fallback_ms: float
    signal_to_fallback_ms: float
    fallback_mode: str
    fallback_reason: str
    stop_time_s: float
    stop_distance_m: float
    speed_at_loss_mps: float


async def run_trial(
    index: int, service: VehicleService, rec: Recorder, hub_url: str, speed_mps: float
) -> Trial:
    world = service.sim_world
    assert world is not None
    sig = signal.SIGKILL if index % 2 == 0 else signal.SIGSTOP
    proc = start_operator(hub_url, speed_mps)
    try:
        await wait_until(lambda: service.supervisor.mode is Mode.TELEOP, 30.0, "takeover")
        await wait_until(
            lambda: world.snapshot().speed_mps >= 0.98 * speed_mps, 10.0, "driving speed"
        )
        first_step = len(rec.steps)
        signal_ms = service.now_ms()
        proc.send_signal(sig)
        await wait_until(lambda: service.supervisor.mode not in OPERATOR_MODES, 5.0, "fallback")
        await wait_until(
            lambda: abs(world.snapshot().speed_mps) < STANDSTILL_MPS, 10.0, "standstill"
        )
    finally:
        await reap(proc)
    steps = rec.steps[first_step:]
    fallback = next(s for s in steps if s.out.mode not in OPERATOR_MODES)
    transition = next(t for t in fallback.out.transitions if t.to_mode not in OPERATOR_MODES)
    newest = rec.newest
    assert newest is not None
    loss_ms = newest.sent_ms
    before = [s for s in rec.steps if s.now_ms <= loss_ms]
    at_loss = before[-1] if before else steps[0]
    standstill = next(
        s for s in steps if s.now_ms > fallback.now_ms and abs(s.speed_mps) < STANDSTILL_MPS
    )
    return Trial(
        signal=sig.name,
        loss_to_fallback_ms=fallback.now_ms - loss_ms,
        signal_to_fallback_ms=fallback.now_ms - signal_ms,
        fallback_mode=transition.to_mode.name,
        fallback_reason=transition.reason,
        stop_time_s=(standstill.now_ms - loss_ms) / 1000.0,
        stop_distance_m=standstill.distance_m - at_loss.distance_m,
        speed_at_loss_mps=at_loss.speed_mps,
    )


def reason_kind(reason: str) -> str:
    """Which watchdog noticed the loss first."""
    for kind in ("video frozen", "command age", "link silent"):
        if kind in reason:
            return kind
    return reason


async def run(trials: int, speed_mps: float) -> dict[str, Any]:
    async with Hub() as hub:
        await hub.serve("127.0.0.1", 0)
        hub_url = f"ws://127.0.0.1:{hub.bound_port}"
        config = vehicle_config(hub_url)
        motor = MotorLink(config.motor.url)
        # No route: the autonomy cannot continue, so the fallback is a minimal-risk stop.
        world = SimWorld(WorldMap(()), measured=motor_motion(motor), start=Pose(0.0, 0.0, 0.0))
        section = config.cameras[0]
        camera = Camera(
            lambda: WorldCameraSource(world.snapshot, section.width, section.height, section.fps),
            name=section.name,
            fps=section.fps,
        )
        rec = Recorder(world=world)
        service = VehicleService(
            config,
            motor_link=motor,
            cameras=[camera],
            autonomy=world,
            on_command=rec.on_command,
            on_step=rec.on_step,
        )
        task = asyncio.create_task(service.run())
        results: list[Trial] = []
        try:
            await wait_until(service.signaling.connected.is_set, 10.0, "hub registration")
            for index in range(trials):
                results.append(await run_trial(index, service, rec, hub_url, speed_mps))
                print(json.dumps(results[-1].__dict__), file=sys.stderr, flush=True)
        finally:
            service.stop()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10.0)
    sup_config = supervisor_config(config)
    losses = [t.loss_to_fallback_ms for t in results]
    return {
        "trials": len(results),
        "speed_mps": speed_mps,
        "loss_to_fallback_ms_p50": round(statistics.median(losses), 1),
        "loss_to_fallback_ms_max": round(max(losses), 1),
        "signal_to_fallback_ms_max": round(max(t.signal_to_fallback_ms for t in results), 1),
        "stale_commands_applied": rec.stale_applied(sup_config.fallback_age_ms),
        "stop_time_s_from_2mps": round(max(t.stop_time_s for t in results), 3),
        "stop_distance_m_from_2mps": round(max(t.stop_distance_m for t in results), 3),
        "stop_bound_s": round(
            sup_config.detection_ms / 1000.0 + speed_mps / sup_config.decel_mps2 + 0.2, 3
        ),
        "decel_mps2": sup_config.decel_mps2,
        "detection_ms": sup_config.detection_ms,
        "standstill_mps": STANDSTILL_MPS,
        "fallback_modes": sorted({t.fallback_mode for t in results}),
        "fallback_reasons": sorted({reason_kind(t.fallback_reason) for t in results}),
        "signals": sorted({t.signal for t in results}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--speed-mps", type=float, default=2.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args.trials, args.speed_mps))
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
