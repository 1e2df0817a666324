"""Python model of the motor-controller firmware (``hardware/PROTOCOL.md``), sans-I/O.

The model behaves like the MCU as seen from its UART and pins: feed it host bytes with
:meth:`McuModel.receive_data`, advance time with :meth:`McuModel.tick`, take its UART output with
:meth:`McuModel.data_to_send` and read the pins through :attr:`McuModel.outputs`. Time is always
passed in (``now_ms``, any monotonic millisecond clock); the model never reads a clock itself.
The first ``now_ms`` it sees is its power-on instant unless ``boot_ms`` is given.

Behaviour implemented from PROTOCOL.md: the DISARMED / ARMED / ESTOP state machine, sequence
rules, link watchdog (ARMED → DISARMED), drive watchdog (outputs to zero), e-stop latch
(edge-latched, like the firmware's INT1 flag), clamping, a duty below one PWM step is off,
INFO in answer to HELLO, FAULT events (codes 1-5 rate-limited to one per 100 ms), telemetry
every ``telemetry_period_ms``, and a wheel whose speed follows the motor duty with a
first-order lag.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.mcu_codec import (
    LOW_BATTERY_MV,
    PROTOCOL_VERSION,
    SEQ_MODULUS,
    SPEED_LIMIT_MMPS,
    STEER_LIMIT_MRAD,
    Arm,
    Decoded,
    Direction,
    Disarm,
    Drive,
    ErrorReason,
    Estop,
    Fault,
    FaultBit,
    FaultCode,
    FrameDecoder,
    Heartbeat,
    Hello,
    Info,
    McuFrameError,
    Message,
    ResetCause,
    State,
    Telemetry,
    encode_frame,
)

SERVO_CENTRE_US: Final = 1500
FULL_DUTY_PERMILLE: Final = 1000
MOTOR_PWM_STEPS: Final = 256
"""Resolution of the motor PWM (the firmware's 8-bit Timer2): one step is 3.9 per mille."""
MIN_DUTY_PERMILLE: Final = -(-FULL_DUTY_PERMILLE // MOTOR_PWM_STEPS)
"""The smallest duty the PWM produces (one step, rounded up: 4); a smaller duty is off."""
SEQ_ERROR_REASON: Final = "seq"
"""Key of sequence rejections in :attr:`McuModel.rx_errors` (next to the ErrorReason values)."""

_RATE_LIMITED_CODES: Final = frozenset(
    {
        FaultCode.CRC_ERROR,
        FaultCode.FRAME_ERROR,
        FaultCode.BAD_VERSION,
        FaultCode.UNKNOWN_TYPE,
        FaultCode.SEQ_ERROR,
    }
)
_FAULT_FOR_REASON: Final = {
    ErrorReason.CRC: FaultCode.CRC_ERROR,
    ErrorReason.FRAME: FaultCode.FRAME_ERROR,
    ErrorReason.LENGTH: FaultCode.FRAME_ERROR,
    ErrorReason.VERSION: FaultCode.BAD_VERSION,
    ErrorReason.TYPE: FaultCode.UNKNOWN_TYPE,
}
_U16_MAX: Final = 0xFFFF


class MotorDirection(enum.IntEnum):
    """H-bridge inputs: forward A=1 B=0, reverse A=0 B=1, off both 0."""

    REVERSE = -1
    OFF = 0
    FORWARD = 1


@dataclass(frozen=True, slots=True)
class McuOutputs:
    """What the MCU drives on its pins right now.

    Attributes:
        state: the state machine's state.
        motor_duty: signed PWM duty in per-mille (-1000..1000).
        direction: H-bridge direction.
        servo_us: steering servo pulse width (1000..2000, 1500 centred).
        speed_cmd_mmps: speed setpoint in force (0 when the outputs are off).
        steer_mrad: steering setpoint in force (0 when the outputs are off).
    """

    state: State
    motor_duty: int
    direction: MotorDirection
    servo_us: int
    speed_cmd_mmps: int
    steer_mrad: int


@dataclass(frozen=True, slots=True)
class LastDrive:
    """The last accepted DRIVE as it arrived (before clamping), with its seq and arrival time."""

    seq: int
    drive: Drive
    arrival_ms: float


def motor_duty_for(speed_mmps: int) -> int:
    """Open-loop duty in per-mille for a speed setpoint, as the firmware computes it.

    Truncated toward zero as in C, and 0 below :data:`MIN_DUTY_PERMILLE` (one PWM step):
    ``|speed_mmps| <= 11`` drives nothing. Monotonic in the setpoint.
    """
    magnitude = abs(speed_mmps) * FULL_DUTY_PERMILLE // SPEED_LIMIT_MMPS
    if magnitude < MIN_DUTY_PERMILLE:
        return 0
    return magnitude if speed_mmps >= 0 else -magnitude


def _clamp(value: int, limit: int) -> int:
    return max(-limit, min(limit, value))


def _i16(value: float) -> int:
    return max(-0x8000, min(0x7FFF, round(value)))


class McuModel:
    """The MCU firmware's behaviour, driven by bytes and an injected millisecond clock.

    Args:
        link_timeout_ms: no accepted frame for this long while ARMED → DISARMED.
        drive_timeout_ms: ARMED and no DRIVE for this long → outputs zero.
        telemetry_period_ms: telemetry interval.
        fw_version: ``(major, minor)`` reported in INFO.
        reset_cause: cause of the first boot (WATCHDOG sets the WDT_RESET bit and sends the
            WDT_RESET fault with the first telemetry).
        battery_mv: initial battery voltage.
        wheel_time_constant_ms: first-order lag of the wheel speed behind the duty.
        fault_interval_ms: minimum spacing of FAULT events with codes 1-5.
        boot_ms: power-on instant; ``None`` takes the first ``now_ms`` the model sees.
    """

    def __init__(
        self,
        *,
        link_timeout_ms: int = 180,
        drive_timeout_ms: int = 200,
        telemetry_period_ms: float = 20,
        fw_version: tuple[int, int] = (0, 1),
        reset_cause: ResetCause = ResetCause.POWER_ON,
        battery_mv: int = 12_600,
        wheel_time_constant_ms: float = 100.0,
        fault_interval_ms: float = 100.0,
        boot_ms: float | None = None,
    ) -> None:
        if not (0 < link_timeout_ms <= _U16_MAX and 0 < drive_timeout_ms <= _U16_MAX):
            raise ConfigError(
                "McuModel: link_timeout_ms and drive_timeout_ms must be 1..65535, got "
                f"{link_timeout_ms} and {drive_timeout_ms}"
            )
        if telemetry_period_ms <= 0:
            raise ConfigError(
                f"McuModel: telemetry_period_ms must be > 0, got {telemetry_period_ms}"
            )
        self.link_timeout_ms = link_timeout_ms
        self.drive_timeout_ms = drive_timeout_ms
        self.telemetry_period_ms = telemetry_period_ms
        self.fw_version = fw_version
        self.wheel_time_constant_ms = wheel_time_constant_ms
        self.fault_interval_ms = fault_interval_ms
        self._battery_mv = 0
        self.battery_mv = battery_mv
        self._boot(boot_ms, reset_cause)

    # ------------------------------------------------------------------ boot and reset

    def _boot(self, boot_ms: float | None, cause: ResetCause) -> None:
        self._boot_ms = boot_ms
        self._now_ms = boot_ms if boot_ms is not None else 0.0
        self._reset_cause = cause
        self._state = State.DISARMED
        self._speed_mmps = 0
        self._steer_mrad = 0
        self._estop_pin = False
        self._estop_latched = False
        self._link_timeout = False
        self._drive_timeout = False
        self._wdt_reset = cause is ResetCause.WATCHDOG
        self._wdt_fault_pending = self._wdt_reset
        self._clamped = False
        self._last_seq: int | None = None
        self._last_valid_ms = self._now_ms
        self._drive_ref_ms = self._now_ms
        self._next_telemetry_ms = self._now_ms
        self._last_limited_fault_ms: float | None = None
        self._tx_seq = 0
        self._out = bytearray()
        self._decoder = FrameDecoder(accept=Direction.H2M)
        self._wheel_speed_mmps = 0.0
        self.frames_accepted = 0
        self.drive_frames_applied = 0
        self.faults_sent = 0
        self.faults_suppressed = 0
        self.telemetry_sent = 0
        self.rx_errors: dict[str, int] = {r.value: 0 for r in ErrorReason}
        self.rx_errors[SEQ_ERROR_REASON] = 0
        self.last_drive: LastDrive | None = None
        """The last accepted DRIVE (in any state), or None."""
        self.last_rx_error: str | None = None
        """Text of the last rejected frame."""

    def simulate_reset(self, now_ms: float, cause: ResetCause = ResetCause.WATCHDOG) -> None:
        """Reboot the MCU at ``now_ms``: all state and counters lost, the pins kept.

        A WATCHDOG cause boots with WDT_RESET set and reports it once with the first telemetry.
        """
        estop_pin = self._estop_pin
        self._boot(now_ms, cause)
        self._estop_pin = estop_pin
        if estop_pin:
            self._enter_estop(FaultCode.ESTOP_PIN)

    # ------------------------------------------------------------------ inputs

    @property
    def battery_mv(self) -> int:
        """Battery voltage the ADC reads, in mV (settable)."""
        return self._battery_mv

    @battery_mv.setter
    def battery_mv(self, value: int) -> None:
        if not 0 <= value <= _U16_MAX:
            raise ConfigError(f"McuModel.battery_mv: {value} is outside 0..65535")
        self._battery_mv = int(value)

    def receive_data(self, data: bytes, now_ms: float) -> None:
        """Bytes arrived on the UART at ``now_ms``; timers are brought up to date first."""
        self.tick(now_ms)
        for event in self._decoder.feed_events(data):
            if isinstance(event, McuFrameError):
                self._reject(event)
            else:
                self._accept(event)

    def set_estop_pin(self, active: bool, now_ms: float) -> None:
        """Set the hardware e-stop input (``active`` = pin pulled low)."""
        self.tick(now_ms)
        if active and not self._estop_pin:
            self._estop_pin = True
            self._enter_estop(FaultCode.ESTOP_PIN)
        elif not active:
            self._estop_pin = False

    def tick(self, now_ms: float) -> None:
        """Advance to ``now_ms``: wheel kinematics, watchdogs, telemetry schedule.

        Time never runs backwards: an earlier ``now_ms`` than already seen counts as no time.
        """
        if self._boot_ms is None:
            self._boot_ms = now_ms
            self._now_ms = now_ms
            self._last_valid_ms = now_ms
            self._drive_ref_ms = now_ms
            self._next_telemetry_ms = now_ms
        now_ms = max(now_ms, self._now_ms)
        self._integrate_wheel(now_ms - self._now_ms)
        self._now_ms = now_ms
        self._run_watchdogs()
        if now_ms >= self._next_telemetry_ms:
            self._send_telemetry()
            self._next_telemetry_ms += self.telemetry_period_ms
            if self._next_telemetry_ms <= now_ms:  # fell behind: no burst, resume the rhythm
                self._next_telemetry_ms = now_ms + self.telemetry_period_ms

    # ------------------------------------------------------------------ outputs

    def data_to_send(self) -> bytes:
        """UART bytes produced since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def state(self) -> State:
        """Current state."""
        return self._state

    @property
    def now_ms(self) -> float:
        """The latest time the model has seen."""
        return self._now_ms

    @property
    def last_seq(self) -> int | None:
        """Last accepted host sequence number, None before the first."""
        return self._last_seq

    @property
    def wheel_speed_mmps(self) -> float:
        """Simulated wheel speed."""
        return self._wheel_speed_mmps

    @property
    def faults(self) -> FaultBit:
        """Fault bits in force or latched now."""
        bits = FaultBit(0)
        flags = (
            (self._estop_pin, FaultBit.ESTOP_PIN),
            (self._estop_latched, FaultBit.ESTOP_LATCHED),
            (self._link_timeout, FaultBit.LINK_TIMEOUT),
            (self._drive_timeout, FaultBit.DRIVE_TIMEOUT),
            (self._wdt_reset, FaultBit.WDT_RESET),
            (self._battery_mv < LOW_BATTERY_MV, FaultBit.LOW_BATTERY),
            (self._clamped, FaultBit.CLAMPED),
        )
        for active, bit in flags:
            if active:
                bits |= bit
        return bits

    @property
    def outputs(self) -> McuOutputs:
        """The pin outputs now."""
        duty = motor_duty_for(self._speed_mmps)
        direction = MotorDirection.OFF
        if duty > 0:
            direction = MotorDirection.FORWARD
        elif duty < 0:
            direction = MotorDirection.REVERSE
        return McuOutputs(
            state=self._state,
            motor_duty=duty,
            direction=direction,
            servo_us=SERVO_CENTRE_US + self._steer_mrad,
            speed_cmd_mmps=self._speed_mmps,
            steer_mrad=self._steer_mrad,
        )

    @property
    def rx_error_total(self) -> int:
        """All dropped frames since boot (not wrapped)."""
        return sum(self.rx_errors.values())

    def telemetry(self) -> Telemetry:
        """The TELEMETRY message the MCU would send now."""
        outputs = self.outputs
        boot_ms = self._boot_ms if self._boot_ms is not None else self._now_ms
        return Telemetry(
            state=int(self._state),
            faults=int(self.faults),
            last_seq=self._last_seq if self._last_seq is not None else 0,
            wheel_speed_mmps=_i16(self._wheel_speed_mmps),
            speed_cmd_mmps=outputs.speed_cmd_mmps,
            steer_mrad=outputs.steer_mrad,
            motor_duty=outputs.motor_duty,
            battery_mv=self._battery_mv,
            rx_errors=self.rx_error_total & _U16_MAX,
            uptime_ms=int(self._now_ms - boot_ms) & 0xFFFFFFFF,
            reset_cause=int(self._reset_cause),
        )

    def info(self) -> Info:
        """The INFO message the MCU answers HELLO with."""
        return Info(
            proto_version=PROTOCOL_VERSION,
            fw_major=self.fw_version[0],
            fw_minor=self.fw_version[1],
            link_timeout_ms=self.link_timeout_ms,
            drive_timeout_ms=self.drive_timeout_ms,
        )

    # ------------------------------------------------------------------ internals

    def _send(self, msg: Message) -> None:
        self._out += encode_frame(msg, self._tx_seq)
        self._tx_seq = (self._tx_seq + 1) % SEQ_MODULUS

    def _send_fault(self, code: FaultCode, detail: int = 0) -> None:
        if code in _RATE_LIMITED_CODES:
            last = self._last_limited_fault_ms
            if last is not None and self._now_ms - last < self.fault_interval_ms:
                self.faults_suppressed += 1
                return
            self._last_limited_fault_ms = self._now_ms
        self.faults_sent += 1
        self._send(Fault(code=int(code), detail=max(0, min(_U16_MAX, detail))))

    def _send_telemetry(self) -> None:
        self.telemetry_sent += 1
        self._send(self.telemetry())
        if self._wdt_fault_pending:
            self._wdt_fault_pending = False
            self._send_fault(FaultCode.WDT_RESET)

    def _integrate_wheel(self, dt_ms: float) -> None:
        if dt_ms <= 0:
            return
        target = motor_duty_for(self._speed_mmps) * SPEED_LIMIT_MMPS / FULL_DUTY_PERMILLE
        alpha = 1.0 - math.exp(-dt_ms / self.wheel_time_constant_ms)
        self._wheel_speed_mmps += (target - self._wheel_speed_mmps) * alpha

    def _outputs_off(self) -> None:
        self._speed_mmps = 0
        self._steer_mrad = 0

    def _run_watchdogs(self) -> None:
        if self._state is not State.ARMED:
            return
        silence_ms = self._now_ms - self._last_valid_ms
        if silence_ms >= self.link_timeout_ms:
            self._state = State.DISARMED
            self._outputs_off()
            self._link_timeout = True
            self._drive_timeout = False
            self._send_fault(FaultCode.LINK_TIMEOUT, int(silence_ms))
            return
        if not self._drive_timeout and self._now_ms - self._drive_ref_ms >= self.drive_timeout_ms:
            self._drive_timeout = True
            self._outputs_off()

    def _enter_estop(self, code: FaultCode) -> None:
        self._state = State.ESTOP
        self._estop_latched = True
        self._drive_timeout = False
        self._outputs_off()
        self._send_fault(code)

    def _reject(self, err: McuFrameError) -> None:
        self.rx_errors[err.reason.value] += 1
        self.last_rx_error = str(err)
        self._send_fault(_FAULT_FOR_REASON[err.reason], err.detail)

    def _seq_ok(self, seq: int) -> bool:
        if self._last_seq is None:
            return True
        delta = (seq - self._last_seq) % SEQ_MODULUS
        return 0 < delta < SEQ_MODULUS // 2

    def _accept(self, decoded: Decoded) -> None:
        msg = decoded.message
        if not isinstance(msg, Hello) and not self._seq_ok(decoded.seq):
            self.rx_errors[SEQ_ERROR_REASON] += 1
            self.last_rx_error = (
                f"{msg.TYPE.name} seq {decoded.seq} is not newer than last accepted "
                f"{self._last_seq}"
            )
            self._send_fault(FaultCode.SEQ_ERROR, decoded.seq)
            return
        self._last_seq = decoded.seq
        self._last_valid_ms = self._now_ms
        self.frames_accepted += 1
        self._dispatch(decoded.seq, msg)

    def _dispatch(self, seq: int, msg: Message) -> None:
        if isinstance(msg, Hello):
            self._send(self.info())
        elif isinstance(msg, Arm):
            self._arm()
        elif isinstance(msg, Disarm):
            if self._state is not State.ESTOP:
                self._state = State.DISARMED
                self._drive_timeout = False
                self._outputs_off()
        elif isinstance(msg, Drive):
            self._drive(seq, msg)
        elif isinstance(msg, Estop):
            self._enter_estop(FaultCode.ESTOP_CMD)
        elif isinstance(msg, Heartbeat):
            pass  # renews the link watchdog only, done in _accept

    def _arm(self) -> None:
        if self._estop_pin:
            self._send_fault(FaultCode.ARM_REFUSED, int(self.faults))
            return
        if self._state is State.ARMED:
            return
        self._state = State.ARMED
        self._estop_latched = False
        self._link_timeout = False
        self._wdt_reset = False
        self._drive_timeout = False
        self._outputs_off()
        self._drive_ref_ms = self._now_ms

    def _drive(self, seq: int, msg: Drive) -> None:
        self.last_drive = LastDrive(seq=seq, drive=msg, arrival_ms=self._now_ms)
        speed = _clamp(msg.speed_mmps, SPEED_LIMIT_MMPS)
        steer = _clamp(msg.steer_mrad, STEER_LIMIT_MRAD)
        self._clamped = (speed, steer) != (msg.speed_mmps, msg.steer_mrad)
        if self._state is not State.ARMED:
            return
        self._speed_mmps = speed
        self._steer_mrad = steer
        self._drive_ref_ms = self._now_ms
        self._drive_timeout = False
        self.drive_frames_applied += 1
