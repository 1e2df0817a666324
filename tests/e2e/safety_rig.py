"""The in-process rig of the end-to-end safety tests: a recorded vehicle and an operator.

Shared by the e2e test modules (the ``hub_url`` fixture is in ``conftest.py``): the vehicle
service runs in the test's event loop with every control step and every arriving drive command
recorded (``on_step`` / ``on_command``) with its vehicle-clock time, in a simulated world behind
a real pty MCU (``sim://``); :func:`in_process_operator` drives it over real aiortc peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from teledrive.operator.client import OperatorClient
from teledrive.operator.patterns import ScriptedPattern
from teledrive.shared import messages as m
from teledrive.shared.config import VehicleConfig, parse_config
from teledrive.vehicle.camera import Camera, FrameSource, Image
from teledrive.vehicle.command_gate import CommandArrival, GateVerdict
from teledrive.vehicle.motor_link import MotorLink
from teledrive.vehicle.service import VehicleService
from teledrive.vehicle.sim_world import SimWorld, motor_motion, sim_world_from_config
from teledrive.vehicle.supervisor import Mode, TickOutput, Transition
from teledrive.vehicle.world_camera import WorldCameraSource

SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
VEHICLE_ID = "safety-van"
FALLBACK_AGE_MS = 250.0
CLOCK_SYNC_ERROR_MS = 5.0  # loopback: the operator's offset estimate is within this
POLL_S = 0.005
LONG_ROUTE = [(0.0, 0.0), (40.0, 0.0), (40.0, 10.0)]


def now_ms() -> float:
    return time.monotonic() * 1000.0


async def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls ``predicate`` every few ms until it holds; fails after ``timeout_s * SCALE``."""
    deadline = time.monotonic() + timeout_s * SCALE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s * SCALE:.1f} s waiting for {what}")
        await asyncio.sleep(POLL_S)


# ---- recording -------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Every control step and every accepted drive command, as the vehicle saw them."""

    steps: list[TickOutput] = field(default_factory=list)
    accepted: dict[int, CommandArrival] = field(default_factory=dict)
    arrivals: list[CommandArrival] = field(default_factory=list)

    def on_command(self, arrival: CommandArrival, verdict: GateVerdict) -> None:
        if verdict.accepted:
            self.accepted[arrival.seq] = arrival
            self.arrivals.append(arrival)

    def on_step(self, out: TickOutput) -> None:
        self.steps.append(out)

    def transitions(self) -> list[Transition]:
        return [t for out in self.steps for t in out.transitions]

    def first_transition(
        self, *, after_ms: float, from_modes: frozenset[Mode] | None = None
    ) -> Transition | None:
        for t in self.transitions():
            if t.at_ms >= after_ms and (from_modes is None or t.from_mode in from_modes):
                return t
        return None

    def last_accepted_before(self, at_ms: float) -> CommandArrival:
        return max(
            (a for a in self.arrivals if a.received_ms <= at_ms), key=lambda a: a.received_ms
        )

    def stale_applications(self) -> list[tuple[int, float, float]]:
        """(seq, age by its stamps, true age) of every applied command older than the bound.

        A command is applied when a step carries its sequence number (that step's setpoint is
        what goes to the MCU). True age uses the shared clock, not the offset estimate.
        """
        stale = []
        for out in self.steps:
            if out.command_seq is None:
                continue
            arrival = self.accepted[out.command_seq]
            age_ms = arrival.age_at(out.now_ms)
            true_age_ms = out.now_ms - arrival.sent_ms
            limit_ms = min(FALLBACK_AGE_MS, arrival.ttl_ms)
            if age_ms > limit_ms or true_age_ms > limit_ms + CLOCK_SYNC_ERROR_MS:
                stale.append((out.command_seq, age_ms, true_age_ms))
        return stale


# ---- a camera that can freeze ----------------------------------------------------------------


class VideoGate:
    """Freezes every :class:`GatedSource` built on it: no new frame while paused."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self.paused_at_ms: float | None = None

    def pause(self) -> None:
        self.paused_at_ms = now_ms()
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def passing(self) -> bool:
        return self._running.is_set()

    def wait_running(self, timeout_s: float) -> bool:
        return self._running.wait(timeout_s)


class GatedSource(FrameSource):
    """Wraps a source; while the gate is paused, frames are dropped and ``read`` blocks."""

    def __init__(self, inner: FrameSource, gate: VideoGate) -> None:
        self._inner = inner
        self._gate = gate
        self._closed = threading.Event()

    def read(self) -> Image | None:
        while True:
            image = self._inner.read()
            if image is None or self._gate.passing():
                return image
            # Captured after the pause: drop it and wait (a frozen camera delivers nothing).
            while not self._gate.wait_running(0.05):
                if self._closed.is_set():
                    return None

    def interrupt(self) -> None:
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        self._inner.close()


# ---- the system ----------------------------------------------------------------------------


def vehicle_config(hub_url: str, route: list[tuple[float, float]]) -> VehicleConfig:
    waypoints = ", ".join(f"[{x}, {y}]" for x, y in route)
    return parse_config(
        f'[vehicle]\nid = "{VEHICLE_ID}"\nhub_url = "{hub_url}"\n\n'
        '[motor]\nurl = "sim://"\n\n'
        '[[cameras]]\nname = "front"\nsource = "world"\nwidth = 320\nheight = 240\nfps = 30\n\n'
        f"[sim]\nroute = [{waypoints}]\n",
        VehicleConfig,
        source="test vehicle.toml",
    )


@dataclass
class Vehicle:
    service: VehicleService
    world: SimWorld
    recorder: Recorder
    video: VideoGate

    @property
    def mode(self) -> Mode:
        return self.service.supervisor.mode

    def wheel_speed_mps(self) -> float:
        telemetry = self.service.motor.last_telemetry
        return 0.0 if telemetry is None else telemetry.wheel_speed_mmps / 1000.0


@contextlib.asynccontextmanager
async def running_vehicle(
    hub_url: str, route: list[tuple[float, float]], *, gated_camera: bool = False
) -> AsyncIterator[Vehicle]:
    """The vehicle service in this event loop, driving in a world with ``route``.

    By default the service builds the world and the world camera from its config; with
    ``gated_camera`` the test builds them (the same way) so that the video can be frozen.
    """
    config = vehicle_config(hub_url, route)
    recorder = Recorder()
    gate = VideoGate()
    if gated_camera:
        motor = MotorLink(config.motor.url)
        assert config.sim is not None
        world = sim_world_from_config(config.sim, measured=motor_motion(motor))
        section = config.cameras[0]

        def factory() -> FrameSource:
            source = WorldCameraSource(
                world.snapshot, section.width, section.height, section.fps, name=section.name
            )
            return GatedSource(source, gate)

        camera = Camera(factory, name=section.name, fps=section.fps)
        service = VehicleService(
            config,
            motor_link=motor,
            cameras=[camera],
            autonomy=world,
            on_command=recorder.on_command,
            on_step=recorder.on_step,
        )
    else:
        service = VehicleService(config, on_command=recorder.on_command, on_step=recorder.on_step)
    assert service.sim_world is not None
    task = asyncio.create_task(service.run())
    try:
        await wait_until(lambda: service.signaling.connected.is_set(), 10.0, "hub registration")
        yield Vehicle(service, service.sim_world, recorder, gate)
    finally:
        gate.resume()
        service.stop()
        # The vehicle must stop by itself even while a session is still closing.
        await asyncio.wait_for(task, 15.0 * SCALE)


@contextlib.asynccontextmanager
async def in_process_operator(
    hub_url: str,
    vehicle: Vehicle,
    *,
    speed_mps: float = 0.0,
    want_control: bool = True,
    on_message: Callable[[m.Message], None] | None = None,
) -> AsyncIterator[OperatorClient]:
    """An :class:`OperatorClient` in this event loop, driving a constant speed straight."""
    pattern = ScriptedPattern(speed_mps=speed_mps, steer_amplitude_rad=0.0, ramp_s=0.0)
    client = OperatorClient(
        hub_url, VEHICLE_ID, operator_id="safety-op", source=pattern, on_message=on_message
    )
    client.want_control = want_control
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10.0 * SCALE)
