"""One control step: autonomy in, supervisor tick, the one command out to the motor controller.

No asyncio and no clock of its own: the vehicle service calls :meth:`Controller.step` every
20 ms, again the moment a drive command arrives (so a command waits for no tick) and at the
supervisor's next deadline (``vehicle/tick_schedule.py``), and tests call it with an injected
time.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from teledrive.vehicle.autonomy.base import AutonomyOutput
from teledrive.vehicle.mcu_codec import Fault, FaultBit, State, Telemetry
from teledrive.vehicle.supervisor import Mode, Supervisor, TickOutput

log = logging.getLogger(__name__)

_SEQ_MOD = 1 << 16
_ACK_WINDOW = 512


class MotorPort(Protocol):
    """What the controller needs of a motor link (``teledrive.vehicle.motor_link.MotorLink``)."""

    @property
    def connected(self) -> bool:
        """Whether the handshake is done and frames can be sent."""
        ...

    @property
    def last_telemetry(self) -> Telemetry | None:
        """The newest telemetry from the MCU."""
        ...

    @property
    def last_written_seq(self) -> int | None:
        """Sequence number of the last frame written."""
        ...

    def arm(self) -> bool:
        """Sends ARM."""
        ...

    def disarm(self) -> bool:
        """Sends DISARM."""
        ...

    def drive(self, speed_mps: float, steer_rad: float) -> bool:
        """Sends DRIVE."""
        ...

    def heartbeat(self) -> bool:
        """Sends HEARTBEAT."""
        ...

    def estop(self) -> bool:
        """Sends ESTOP."""
        ...


class AutonomySource(Protocol):
    """Runs the fallback autonomy for one step (the simulated world, or a real stack)."""

    def step(self, now_ms: float) -> AutonomyOutput:
        """The autonomy's command and status at ``now_ms``."""
        ...


def mcu_state_name(motor: MotorPort) -> str:
    """``DISARMED``, ``ARMED``, ``ESTOP`` from the last telemetry, or ``OFFLINE``."""
    telemetry = motor.last_telemetry
    if not motor.connected or telemetry is None:
        return "OFFLINE"
    return State(telemetry.state).name


class Controller:
    """Feeds the supervisor and carries out its decision on the motor link.

    Args:
        supervisor: the safety supervisor (owns mode and setpoint).
        motor: the motor link.
        autonomy: the fallback autonomy, or None when the vehicle has none (then a link loss
            goes straight to a minimal-risk stop).
        faults: returns (and forgets) the MCU's FAULT reports since the last call.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        motor: MotorPort,
        *,
        autonomy: AutonomySource | None = None,
        faults: Callable[[], list[Fault]] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.motor = motor
        self.autonomy = autonomy
        self._faults = faults
        self._mcu_latched = False
        """The MCU latched an e-stop that the supervisor has not been reset from since."""
        self.commands_applied = 0
        """Operator commands whose DRIVE frame the MCU acknowledged (telemetry ``last_seq``)."""
        self.last_output: TickOutput | None = None
        self._last_telemetry: Telemetry | None = None
        self._last_command_seq: int | None = None
        self._pending_acks: deque[int] = deque(maxlen=_ACK_WINDOW)

    def step(self, now_ms: float) -> TickOutput:
        """Runs one control step at ``now_ms`` and returns the supervisor's decision."""
        self._feed_mcu(now_ms)
        if self.autonomy is not None:
            self.supervisor.on_autonomy_status(now_ms, self.autonomy.step(now_ms))
        out = self.supervisor.tick(now_ms)
        if any(t.from_mode is Mode.ESTOP for t in out.transitions):
            self._mcu_latched = False  # reset by the operator: ARM may clear the MCU's latch
        for transition in out.transitions:
            # The monotonic time in the line lets tools on this host time it exactly.
            log.warning(
                "mode %s -> %s at %.1f ms: %s",
                transition.from_mode.name,
                transition.to_mode.name,
                transition.at_ms,
                transition.reason,
            )
        self._command_mcu(out)
        self._count_acks()
        self.last_output = out
        return out

    def _feed_mcu(self, now_ms: float) -> None:
        self._feed_telemetry(now_ms)
        # Faults after telemetry: a fallback they cause starts from the speed measured now.
        for fault in self._faults() if self._faults is not None else ():
            self.supervisor.on_mcu_fault(now_ms, fault.code, fault.detail)

    def _feed_telemetry(self, now_ms: float) -> None:
        telemetry = self.motor.last_telemetry
        if telemetry is None or telemetry is self._last_telemetry:
            return
        previous, self._last_telemetry = self._last_telemetry, telemetry
        self.supervisor.on_mcu_telemetry(
            now_ms,
            estop_active=bool(telemetry.faults & FaultBit.ESTOP_PIN),
            wheel_speed_mps=telemetry.wheel_speed_mmps / 1000.0,
        )
        entered = telemetry.state == State.ESTOP and (
            previous is None or previous.state != State.ESTOP
        )
        if entered:
            # The MCU latched an e-stop (its pin, however short the press, or our ESTOP):
            # the supervisor latches too, and the MCU is not re-armed until it is reset.
            self._mcu_latched = True
            self.supervisor.on_estop(now_ms, "motor controller latched an e-stop")

    def _command_mcu(self, out: TickOutput) -> None:
        state = mcu_state_name(self.motor)
        if state == "OFFLINE":
            return
        if out.mode is Mode.ESTOP:
            if state != "ESTOP":
                self.motor.estop()
            self.motor.heartbeat()
            return
        if not out.arm:
            if state == "ARMED":
                self.motor.disarm()
            self.motor.heartbeat()
            return
        if state == "ESTOP" and self._mcu_latched:
            self.motor.heartbeat()  # never clear the MCU's own latch without a reset
            return
        if state != "ARMED":
            self.motor.arm()
        written = self.motor.drive(out.speed_mps, out.steer_rad)
        seq = self.motor.last_written_seq
        new_command = out.command_seq is not None and out.command_seq != self._last_command_seq
        if new_command and written and seq is not None:
            self._pending_acks.append(seq)
        if out.command_seq is not None:
            self._last_command_seq = out.command_seq

    def _count_acks(self) -> None:
        telemetry = self.motor.last_telemetry
        if telemetry is None:
            return
        while self._pending_acks:
            if (telemetry.last_seq - self._pending_acks[0]) % _SEQ_MOD >= _SEQ_MOD // 2:
                break
            self._pending_acks.popleft()
            self.commands_applied += 1
