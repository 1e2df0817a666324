"""McuModel against PROTOCOL.md, with an injected millisecond clock."""

from __future__ import annotations

import pytest

from teledrive.vehicle.mcu_codec import (
    Arm,
    Decoded,
    Direction,
    Disarm,
    Drive,
    Estop,
    Fault,
    FaultBit,
    FaultCode,
    FrameDecoder,
    Heartbeat,
    Hello,
    Info,
    Message,
    ResetCause,
    State,
    Telemetry,
    encode_frame,
)
from teledrive.vehicle.mcu_model import (
    MIN_DUTY_PERMILLE,
    McuModel,
    MotorDirection,
    motor_duty_for,
)


class Bench:
    """A host with its own seq counter, talking to a model on a fake clock."""

    def __init__(self, model: McuModel | None = None, *, seq: int = 0) -> None:
        self.model = model if model is not None else McuModel()
        self.seq = seq
        self.now_ms = 0.0
        self.decoder = FrameDecoder(accept=Direction.M2H)
        self.model.tick(self.now_ms)

    def send(self, *msgs: Message, seq: int | None = None) -> None:
        data = b""
        for msg in msgs:
            if seq is None:
                data += encode_frame(msg, self.seq)
                self.seq = (self.seq + 1) % 65536
            else:
                data += encode_frame(msg, seq)
        self.model.receive_data(data, self.now_ms)

    def advance(self, ms: float, *, step_ms: float = 1.0) -> None:
        end = self.now_ms + ms
        while self.now_ms < end:
            self.now_ms = min(end, self.now_ms + step_ms)
            self.model.tick(self.now_ms)

    def received(self) -> list[Decoded]:
        return self.decoder.feed(self.model.data_to_send())

    def faults(self) -> list[Fault]:
        return [d.message for d in self.received() if isinstance(d.message, Fault)]

    def armed(self) -> Bench:
        self.send(Hello(), Arm())
        self.received()
        assert self.model.state is State.ARMED
        return self


def test_power_on_disarmed_with_outputs_off() -> None:
    bench = Bench()
    out = bench.model.outputs
    assert out.state is State.DISARMED
    assert (out.motor_duty, out.direction, out.servo_us) == (0, MotorDirection.OFF, 1500)
    telemetry = [d.message for d in bench.received()]
    assert telemetry == [bench.model.telemetry()]
    assert isinstance(telemetry[0], Telemetry)
    assert telemetry[0].state == State.DISARMED
    assert telemetry[0].faults == 0


def test_hello_answers_info() -> None:
    bench = Bench(McuModel(link_timeout_ms=250, drive_timeout_ms=150, fw_version=(2, 3)))
    bench.received()
    bench.send(Hello(), seq=4000)
    (answer,) = bench.received()
    assert answer.message == Info(
        proto_version=1, fw_major=2, fw_minor=3, link_timeout_ms=250, drive_timeout_ms=150
    )
    assert bench.model.last_seq == 4000


def test_arm_and_drive_set_outputs() -> None:
    bench = Bench().armed()
    bench.now_ms = 5.0
    bench.send(Drive(speed_mmps=1500, steer_mrad=-120))
    out = bench.model.outputs
    assert out.state is State.ARMED
    assert (out.speed_cmd_mmps, out.steer_mrad) == (1500, -120)
    assert (out.motor_duty, out.direction, out.servo_us) == (500, MotorDirection.FORWARD, 1380)
    last = bench.model.last_drive
    assert last is not None
    assert (last.seq, last.drive, last.arrival_ms) == (2, Drive(1500, -120), 5.0)
    assert bench.model.drive_frames_applied == 1


def test_drive_while_disarmed_is_accepted_but_not_applied() -> None:
    bench = Bench()
    bench.send(Drive(1000, 100))
    assert bench.model.outputs.motor_duty == 0
    assert bench.model.frames_accepted == 1
    assert bench.model.drive_frames_applied == 0
    assert bench.model.last_drive is not None
    bench.send(Arm())
    assert bench.model.outputs.speed_cmd_mmps == 0  # ARM starts from a zero setpoint


def test_clamping_sets_and_clears_flag() -> None:
    bench = Bench().armed()
    bench.send(Drive(5000, -900))
    out = bench.model.outputs
    assert (out.speed_cmd_mmps, out.steer_mrad, out.motor_duty) == (3000, -500, 1000)
    assert out.servo_us == 1000
    assert FaultBit.CLAMPED in bench.model.faults
    bench.send(Drive(-3001, 501))
    out = bench.model.outputs
    assert (out.speed_cmd_mmps, out.steer_mrad, out.motor_duty) == (-3000, 500, -1000)
    assert (out.direction, out.servo_us) == (MotorDirection.REVERSE, 2000)
    assert bench.model.last_drive is not None
    assert bench.model.last_drive.drive == Drive(-3001, 501)  # as it arrived
    bench.send(Drive(3000, 500))
    assert FaultBit.CLAMPED not in bench.model.faults


@pytest.mark.parametrize(
    ("speed", "duty"),
    [(-1, 0), (1, 0), (2, 0), (14, 4), (-14, -4), (15, 5), (-17, -5), (2999, 999)],
)
def test_motor_duty_truncates_toward_zero(speed: int, duty: int) -> None:
    assert motor_duty_for(speed) == duty


@pytest.mark.parametrize("speed", [3, 5, 8, 11, -3, -11])
def test_duty_below_one_pwm_step_is_off(speed: int) -> None:
    # the firmware's 8-bit PWM cannot produce 1..3 per mille (one step is 3.9): off, as there
    assert motor_duty_for(speed) == 0
    bench = Bench().armed()
    bench.send(Drive(speed, 0))
    out = bench.model.outputs
    assert (out.motor_duty, out.direction, out.speed_cmd_mmps) == (0, MotorDirection.OFF, speed)
    assert bench.model.telemetry().motor_duty == 0


def test_duty_is_monotonic_and_starts_at_one_pwm_step() -> None:
    duties = [motor_duty_for(v) for v in range(-3000, 3001)]
    assert duties == sorted(duties)
    assert motor_duty_for(12) == MIN_DUTY_PERMILLE == 4
    assert motor_duty_for(-12) == -MIN_DUTY_PERMILLE
    assert all(d == 0 or abs(d) >= MIN_DUTY_PERMILLE for d in duties)


def test_link_watchdog_fires_at_timeout() -> None:
    bench = Bench().armed()
    timeout_ms = bench.model.link_timeout_ms
    assert timeout_ms == 180  # PROTOCOL.md: off within 200 ms of the host dying, with margin
    bench.send(Drive(1000, 0))
    bench.advance(timeout_ms - 1)
    assert bench.model.state is State.ARMED
    bench.received()
    bench.advance(1)
    assert bench.model.state is State.DISARMED
    out = bench.model.outputs
    assert (out.motor_duty, out.servo_us, out.speed_cmd_mmps) == (0, 1500, 0)
    assert FaultBit.LINK_TIMEOUT in bench.model.faults
    assert Fault(int(FaultCode.LINK_TIMEOUT), timeout_ms) in bench.faults()


def test_link_watchdog_does_not_fire_while_frames_flow() -> None:
    bench = Bench().armed()
    for _ in range(100):  # 5 s of heartbeats at 20 Hz
        bench.advance(50)
        bench.send(Heartbeat())
    assert bench.model.state is State.ARMED
    assert FaultBit.LINK_TIMEOUT not in bench.model.faults


def test_late_frame_does_not_rescue_a_dead_link() -> None:
    bench = Bench().armed()
    bench.now_ms += 300  # no tick in between: receive_data runs the timers first
    bench.send(Drive(1000, 0))
    assert bench.model.state is State.DISARMED
    assert bench.model.outputs.motor_duty == 0


def test_only_arm_rearms_after_link_timeout() -> None:
    bench = Bench().armed()
    bench.advance(250)
    for _ in range(10):
        bench.send(Drive(1000, 0))
        bench.advance(20)
    assert bench.model.state is State.DISARMED
    assert bench.model.outputs.motor_duty == 0
    bench.send(Arm())
    assert bench.model.state is State.ARMED
    assert FaultBit.LINK_TIMEOUT not in bench.model.faults


def test_rejected_frames_do_not_feed_the_link_watchdog() -> None:
    bench = Bench().armed()
    stale_seq = bench.seq - 1
    for _ in range(12):
        bench.advance(20)
        bench.send(Heartbeat(), seq=stale_seq)  # duplicate: dropped
        bench.model.receive_data(b"\x13\x37\x00", bench.now_ms)  # garbage
    assert bench.model.state is State.DISARMED
    assert bench.model.rx_errors["seq"] == 12
    assert bench.model.rx_errors["frame"] == 12


def test_link_watchdog_idle_when_disarmed() -> None:
    bench = Bench()
    bench.advance(1000)
    assert bench.model.state is State.DISARMED
    assert bench.model.faults == FaultBit(0)
    assert bench.faults() == []


def test_drive_watchdog_zeroes_outputs_and_stays_armed() -> None:
    bench = Bench().armed()
    bench.send(Drive(1500, 200))
    for _ in range(10):  # heartbeats keep the link but do not renew the setpoint
        bench.advance(20)
        if bench.now_ms < 200:
            assert bench.model.outputs.speed_cmd_mmps == 1500
        bench.send(Heartbeat())
    assert bench.model.state is State.ARMED
    assert FaultBit.DRIVE_TIMEOUT in bench.model.faults
    out = bench.model.outputs
    assert (out.speed_cmd_mmps, out.steer_mrad, out.motor_duty) == (0, 0, 0)
    bench.send(Drive(500, 0))
    assert FaultBit.DRIVE_TIMEOUT not in bench.model.faults
    assert bench.model.outputs.speed_cmd_mmps == 500


def test_drive_watchdog_does_not_fire_while_drives_flow() -> None:
    bench = Bench().armed()
    for _ in range(250):  # 5 s at 50 Hz
        bench.send(Drive(800, -50))
        bench.advance(20)
    assert FaultBit.DRIVE_TIMEOUT not in bench.model.faults
    assert bench.model.outputs.speed_cmd_mmps == 800


def test_drive_watchdog_runs_from_arm() -> None:
    bench = Bench().armed()
    bench.advance(150)
    bench.send(Heartbeat())
    bench.advance(49)
    assert FaultBit.DRIVE_TIMEOUT not in bench.model.faults
    bench.advance(1)
    assert FaultBit.DRIVE_TIMEOUT in bench.model.faults


def test_estop_pulse_between_telemetry_frames_is_latched() -> None:
    # a 5 ms pulse that no telemetry frame shows as a level: the edge latches, as in the
    # firmware (INT1 flag); DRIVE keeps coming, only ARM after the release drives again
    bench = Bench().armed()
    bench.send(Drive(1500, 0))
    bench.advance(3.0)
    bench.received()
    bench.model.set_estop_pin(True, bench.now_ms)
    bench.advance(5.0)
    bench.model.set_estop_pin(False, bench.now_ms)
    assert Fault(int(FaultCode.ESTOP_PIN), 0) in bench.faults()
    for _ in range(10):
        bench.advance(20.0)
        bench.send(Drive(1500, 0))
        tel = bench.model.telemetry()
        assert (tel.state, tel.motor_duty, tel.speed_cmd_mmps) == (State.ESTOP, 0, 0)
        assert tel.faults & FaultBit.ESTOP_LATCHED
        assert not tel.faults & FaultBit.ESTOP_PIN
    assert bench.model.outputs.direction is MotorDirection.OFF
    bench.send(Arm(), Drive(1500, 0))
    assert bench.model.state is State.ARMED
    assert bench.model.outputs.motor_duty == 500


def test_estop_pin_latches_until_released_and_armed() -> None:
    bench = Bench().armed()
    bench.send(Drive(1000, 100))
    bench.model.set_estop_pin(True, bench.now_ms)
    assert bench.model.state is State.ESTOP
    assert bench.model.outputs.motor_duty == 0
    assert {FaultBit.ESTOP_PIN, FaultBit.ESTOP_LATCHED} <= set(bench.model.faults)
    assert Fault(int(FaultCode.ESTOP_PIN), 0) in bench.faults()
    bench.send(Arm())
    refused = bench.faults()
    assert [f.code for f in refused] == [FaultCode.ARM_REFUSED]
    assert refused[0].detail & FaultBit.ESTOP_PIN
    assert bench.model.state is State.ESTOP
    bench.model.set_estop_pin(False, bench.now_ms)
    assert bench.model.state is State.ESTOP
    assert FaultBit.ESTOP_PIN not in bench.model.faults
    assert FaultBit.ESTOP_LATCHED in bench.model.faults
    bench.send(Disarm())
    assert bench.model.state is State.ESTOP  # only ARM clears the latch
    bench.send(Drive(1000, 0))
    assert bench.model.outputs.motor_duty == 0
    bench.send(Arm())
    assert bench.model.state is State.ARMED
    assert FaultBit.ESTOP_LATCHED not in bench.model.faults


def test_estop_command() -> None:
    bench = Bench().armed()
    bench.send(Drive(1000, 0), Estop())
    assert bench.model.state is State.ESTOP
    assert bench.model.outputs.motor_duty == 0
    assert FaultBit.ESTOP_LATCHED in bench.model.faults
    assert Fault(int(FaultCode.ESTOP_CMD), 0) in bench.faults()
    bench.send(Arm())
    assert bench.model.state is State.ARMED


def test_sequence_rules() -> None:
    bench = Bench(seq=100)
    bench.send(Heartbeat(), seq=100)  # first frame after boot: any seq
    bench.send(Heartbeat(), seq=100)  # duplicate
    bench.send(Heartbeat(), seq=99)  # older
    assert bench.model.rx_errors["seq"] == 2
    assert bench.model.frames_accepted == 1
    faults = bench.faults()
    assert faults[0] == Fault(int(FaultCode.SEQ_ERROR), 100)
    assert len(faults) == 1  # rate-limited: one per 100 ms
    bench.send(Heartbeat(), seq=100 + 32767)  # furthest "newer"
    assert bench.model.last_seq == 100 + 32767
    bench.send(Heartbeat(), seq=(100 + 32767 + 32768) % 65536)  # half a circle away: older
    assert bench.model.rx_errors["seq"] == 3
    bench.send(Hello(), seq=5)  # HELLO resets the expectation
    bench.send(Heartbeat(), seq=6)
    assert bench.model.last_seq == 6


def test_sequence_wraps() -> None:
    bench = Bench(seq=65534)
    bench.send(Heartbeat(), Heartbeat(), Heartbeat())
    assert bench.model.last_seq == 0
    assert bench.model.rx_errors["seq"] == 0
    assert bench.model.telemetry().last_seq == 0


def test_bad_frames_counted_by_reason_and_reported() -> None:
    bench = Bench()
    bench.received()
    bad_crc = bytearray(encode_frame(Arm(), 1))
    bad_crc[-2] ^= 0xFF
    bench.model.receive_data(bytes(bad_crc), bench.now_ms)
    assert bench.faults() == [Fault(int(FaultCode.CRC_ERROR), 0)]
    bench.advance(100)
    bench.model.receive_data(encode_frame(Info(1, 0, 0, 0, 0), 2), bench.now_ms)
    assert [f.code for f in bench.faults()] == [FaultCode.UNKNOWN_TYPE]
    for _ in range(5):  # a burst: all counted, FAULT rate-limited
        bench.model.receive_data(b"\x05\x01\x00", bench.now_ms)
    assert bench.faults() == []
    assert bench.model.rx_errors == {
        "frame": 5,
        "crc": 1,
        "version": 0,
        "type": 1,
        "length": 0,
        "seq": 0,
    }
    assert bench.model.telemetry().rx_errors == 7
    assert bench.model.state is State.DISARMED
    assert "COBS" in (bench.model.last_rx_error or "")


def test_telemetry_every_20_ms() -> None:
    bench = Bench()
    bench.received()
    bench.advance(1000, step_ms=1)
    telemetry = [d for d in bench.received() if isinstance(d.message, Telemetry)]
    assert len(telemetry) == 50
    uptimes = [t.message.uptime_ms for t in telemetry if isinstance(t.message, Telemetry)]
    assert uptimes == list(range(20, 1001, 20))
    seqs = [t.seq for t in telemetry]
    assert seqs == list(range(1, 51))


def test_telemetry_with_irregular_ticks_no_burst() -> None:
    bench = Bench()
    bench.received()
    bench.advance(1000, step_ms=7)
    count = sum(isinstance(d.message, Telemetry) for d in bench.received())
    assert 48 <= count <= 50
    bench.advance(500, step_ms=100)  # a slow caller gets one per tick, not a burst
    assert sum(isinstance(d.message, Telemetry) for d in bench.received()) == 5


def test_telemetry_in_estop() -> None:
    bench = Bench()
    bench.send(Estop())
    bench.received()
    bench.advance(100)
    telemetry = [d.message for d in bench.received() if isinstance(d.message, Telemetry)]
    assert len(telemetry) == 5
    assert all(t.state == State.ESTOP for t in telemetry)


def test_low_battery_bit() -> None:
    bench = Bench()
    bench.model.battery_mv = 10_499
    assert FaultBit.LOW_BATTERY in bench.model.faults
    assert bench.model.telemetry().battery_mv == 10_499
    bench.model.battery_mv = 10_500
    assert FaultBit.LOW_BATTERY not in bench.model.faults
    with pytest.raises(ValueError, match="battery_mv"):
        bench.model.battery_mv = 70_000


def test_wheel_follows_duty_with_lag() -> None:
    bench = Bench().armed()
    speeds = []
    for _ in range(50):
        bench.send(Drive(1500, 0))
        bench.advance(20)
        speeds.append(bench.model.wheel_speed_mmps)
    assert speeds == sorted(speeds)
    assert 0 < speeds[0] < 1500 * 0.5
    assert speeds[-1] == pytest.approx(1500, abs=5)
    bench.send(Disarm())
    bench.advance(1000)
    assert abs(bench.model.wheel_speed_mmps) < 5


def test_watchdog_reset_boot() -> None:
    bench = Bench(McuModel(reset_cause=ResetCause.WATCHDOG))
    first = [d.message for d in bench.received()]
    assert isinstance(first[0], Telemetry)
    assert first[0].reset_cause == ResetCause.WATCHDOG
    assert first[0].faults & FaultBit.WDT_RESET
    assert first[1] == Fault(int(FaultCode.WDT_RESET), 0)
    bench.advance(40)
    assert bench.faults() == []  # once only
    bench.send(Arm())
    assert FaultBit.WDT_RESET not in bench.model.faults


def test_simulate_reset_loses_state() -> None:
    bench = Bench().armed()
    bench.send(Drive(1000, 0))
    bench.advance(100)
    bench.model.simulate_reset(bench.now_ms)
    assert bench.model.state is State.DISARMED
    assert bench.model.outputs.motor_duty == 0
    assert bench.model.last_seq is None
    bench.advance(20)
    assert bench.model.telemetry().uptime_ms == 20


def test_arm_while_armed_changes_nothing() -> None:
    bench = Bench().armed()
    bench.send(Drive(700, 10))
    bench.send(Arm())
    assert bench.model.outputs.speed_cmd_mmps == 700


def test_time_never_runs_backwards() -> None:
    bench = Bench().armed()
    bench.advance(100)
    bench.model.tick(10)
    assert bench.model.now_ms == 100
    bench.advance(bench.model.link_timeout_ms - 101)
    bench.send(Heartbeat())
    assert bench.model.state is State.ARMED
