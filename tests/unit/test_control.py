"""The controller between the supervisor and the motor controller, on the Python MCU twin.

The MCU model and the real host session (``McuSession``) talk through an injected port, on a
simulated clock: frames are encoded, sent, decoded and acted on exactly as over a serial line.
"""

from __future__ import annotations

from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.command_gate import CommandArrival
from teledrive.vehicle.control import Controller
from teledrive.vehicle.mcu_codec import Fault, FaultCode, State, Telemetry
from teledrive.vehicle.mcu_model import McuModel
from teledrive.vehicle.motor_link import McuSession
from teledrive.vehicle.supervisor import OPERATOR_MODES, Mode, Supervisor

TICK_MS = 20.0


class ModelPort:
    """A motor port whose wire ends in the MCU model (no pty, no thread)."""

    def __init__(self, model: McuModel) -> None:
        self.model, self.session, self.now_ms = model, McuSession(), 0.0
        self.faults: list[Fault] = []
        self.session.begin_handshake(0.0)
        self._exchange()

    def pump(self, now_ms: float) -> None:
        self.now_ms = now_ms
        self.model.tick(now_ms)
        self._exchange()

    def _exchange(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.model.receive_data(out, self.now_ms)
        for item in self.session.receive_data(self.model.data_to_send(), self.now_ms):
            if isinstance(item.message, Fault):
                self.faults.append(item.message)

    def take_faults(self) -> list[Fault]:
        taken, self.faults = self.faults, []
        return taken

    def _write(self, frame: bytes) -> bool:
        self.model.receive_data(frame, self.now_ms)
        self.last_written_seq = (self.session.next_seq - 1) % 65536
        return True

    last_written_seq: int | None = None

    @property
    def connected(self) -> bool:
        return self.session.ready

    @property
    def last_telemetry(self) -> Telemetry | None:
        return self.session.last_telemetry

    def arm(self) -> bool:
        return self._write(self.session.arm())

    def disarm(self) -> bool:
        return self._write(self.session.disarm())

    def drive(self, speed_mps: float, steer_rad: float) -> bool:
        return self._write(self.session.drive(speed_mps, steer_rad))

    def heartbeat(self) -> bool:
        return self._write(self.session.heartbeat())

    def estop(self) -> bool:
        return self._write(self.session.estop())


class SteadyAutonomy:
    def step(self, now_ms: float) -> AutonomyOutput:
        return AutonomyOutput(AutonomyStatus.OK, 1.0, 0.0)


class Rig:
    def __init__(self, *, autonomy: bool) -> None:
        self.model = McuModel(boot_ms=0.0)
        self.port = ModelPort(self.model)
        self.sup = Supervisor()
        self.ctl = Controller(
            self.sup,
            self.port,
            autonomy=SteadyAutonomy() if autonomy else None,
            faults=self.port.take_faults,
        )
        self.now_ms = 0.0
        self.seq = 0
        self.operator_speed_mps: float | None = None

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.now_ms += TICK_MS
            self.port.pump(self.now_ms)
            if self.operator_speed_mps is not None:
                self.seq += 1
                sent = self.now_ms - 10.0
                self.sup.on_command(
                    CommandArrival(
                        self.seq, sent, 0.0, 500.0, self.operator_speed_mps, 0.0, False, self.now_ms
                    )
                )
                self.sup.on_latency(self.now_ms, 10.0, 20.0)
                self.sup.on_video_freshness(self.now_ms, 20.0)
            self.sup.on_link_heartbeat(self.now_ms)
            self.ctl.step(self.now_ms)


def test_a_short_estop_pulse_latches_the_supervisor_and_is_never_cleared_by_the_host() -> None:
    rig = Rig(autonomy=True)
    rig.step(3)
    assert rig.sup.on_release_to_autonomy(rig.now_ms).granted
    rig.step(10)
    assert rig.model.state is State.ARMED
    assert rig.model.outputs.speed_cmd_mmps == 1000
    # A 5 ms press between two telemetry frames: only ESTOP_LATCHED is left to see.
    rig.model.set_estop_pin(True, rig.now_ms + 3.0)
    rig.model.set_estop_pin(False, rig.now_ms + 8.0)
    rig.step(10)
    assert rig.sup.mode is Mode.ESTOP
    assert rig.model.state is State.ESTOP  # the host did not ARM it away
    assert rig.model.outputs.speed_cmd_mmps == 0
    # The operator's confirmed reset, then an explicit release, re-arm it.
    assert rig.sup.on_estop_reset(rig.now_ms).granted
    rig.step(2)
    assert rig.model.state is State.ESTOP  # STANDBY does not arm
    assert rig.sup.on_release_to_autonomy(rig.now_ms).granted
    rig.step(3)
    assert rig.model.state is State.ARMED


def test_minimal_risk_stop_after_a_host_stall_never_speeds_the_vehicle_up() -> None:
    rig = Rig(autonomy=False)
    rig.operator_speed_mps = 0.0
    rig.step(60)
    assert rig.sup.on_takeover_request(rig.now_ms).granted
    rig.operator_speed_mps = 2.0
    rig.step(100)
    assert rig.model.wheel_speed_mmps > 1900
    # The host stalls 400 ms: no frames, no steps; the MCU's watchdog cuts the motor.
    for k in range(1, 21):
        rig.port.pump(rig.now_ms + k * TICK_MS)
    rig.now_ms += 400.0
    assert rig.model.state is State.DISARMED
    slowed_mmps = rig.model.wheel_speed_mmps
    rig.operator_speed_mps = None  # the operator's commands are stale now
    commanded = []
    for _ in range(40):
        rig.step()
        commanded.append(rig.model.outputs.speed_cmd_mmps)
    assert rig.sup.mode is Mode.MINIMAL_RISK_STOP
    assert max(commanded) <= slowed_mmps + 50, (commanded, slowed_mmps)
    assert commanded[-1] == 0


def test_mcu_faults_reach_the_supervisor() -> None:
    rig = Rig(autonomy=True)
    rig.operator_speed_mps = 0.5
    rig.step(60)
    assert rig.sup.on_takeover_request(rig.now_ms).granted
    rig.step(5)
    assert rig.sup.mode in OPERATOR_MODES
    rig.port.faults.append(Fault(int(FaultCode.LINK_TIMEOUT), 181))
    rig.step(1)
    assert rig.sup.mode not in OPERATOR_MODES
    assert rig.sup.mcu_faults[int(FaultCode.LINK_TIMEOUT)] == 1


def test_each_new_operator_command_is_counted_once_the_mcu_acknowledges_it() -> None:
    rig = Rig(autonomy=True)
    rig.operator_speed_mps = 0.5
    rig.step(60)
    assert rig.ctl.commands_applied == 0  # STANDBY applies nothing
    assert rig.sup.on_takeover_request(rig.now_ms).granted
    rig.step(20)
    assert 18 <= rig.ctl.commands_applied <= 20
