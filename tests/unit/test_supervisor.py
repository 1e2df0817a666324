"""Supervisor transitions, each with an injected clock (20 ms ticks, 50 Hz)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.command_gate import CommandArrival, DropReason
from teledrive.vehicle.supervisor import (
    MCU_FAULT_ESTOP_PIN,
    OPERATOR_MODES,
    Mode,
    Supervisor,
    SupervisorConfig,
    TickOutput,
    speed_cap_mps,
)

TICK_MS = 20.0
OPERATOR_OFFSET_MS = 7_000.0  # vehicle clock minus operator clock
AUTONOMY_OK = AutonomyOutput(AutonomyStatus.OK, 0.8, 0.05)


class Drive:
    """A scripted operator, link and autonomy around one supervisor, on a simulated clock."""

    def __init__(self, config: SupervisorConfig | None = None) -> None:
        self.sup = Supervisor(config)
        self.now_ms = 0.0
        self.seq = 0
        self.outputs: list[TickOutput] = []
        self.speed_mps = 1.0
        self.steer_rad = 0.1
        self.ttl_ms = 500.0
        self.delay_ms = 12.5  # command transport delay
        self.offset_error_ms = 0.0  # error of the operator's offset estimate
        self.one_way_ms = 12.5  # what clock sync reports
        self.video_age_ms = 30.0
        self.link_up = True
        self.commands = True
        self.video_reports = True
        self.autonomy: AutonomyOutput | None = AUTONOMY_OK
        self.sent_vehicle_ms: dict[int, float] = {}

    def command(self, *, estop: bool = False, age_ms: float | None = None) -> CommandArrival:
        self.seq += 1
        age = self.delay_ms if age_ms is None else age_ms
        sent_vehicle = self.now_ms - age
        self.sent_vehicle_ms[self.seq] = sent_vehicle
        return CommandArrival(
            seq=self.seq,
            sent_ms=sent_vehicle - OPERATOR_OFFSET_MS,
            offset_ms=OPERATOR_OFFSET_MS + self.offset_error_ms,
            ttl_ms=self.ttl_ms,
            speed_mps=self.speed_mps,
            steer_rad=self.steer_rad,
            estop=estop,
            received_ms=self.now_ms,
        )

    def step(self) -> TickOutput:
        self.now_ms += TICK_MS
        if self.link_up:
            if self.commands:
                self.sup.on_command(self.command())
            self.sup.on_link_heartbeat(self.now_ms)
            self.sup.on_latency(self.now_ms, self.one_way_ms, 2 * self.one_way_ms)
            if self.video_reports:
                self.sup.on_video_freshness(self.now_ms, self.video_age_ms)
        if self.autonomy is not None:
            self.sup.on_autonomy_status(self.now_ms, self.autonomy)
        out = self.sup.tick(self.now_ms)
        self.outputs.append(out)
        return out

    def run(self, duration_ms: float) -> TickOutput:
        out = self.step()
        for _ in range(round(duration_ms / TICK_MS) - 1):
            out = self.step()
        return out

    def until(self, done: Callable[[TickOutput], bool], limit_ms: float) -> TickOutput:
        for _ in range(round(limit_ms / TICK_MS)):
            out = self.step()
            if done(out):
                return out
        raise AssertionError(f"condition not met within {limit_ms} ms; mode {self.sup.mode}")

    def teleop(self) -> TickOutput:
        self.run(1000.0 + TICK_MS)
        assert self.sup.on_takeover_request(self.now_ms).granted
        return self.step()


def modes(outputs: list[TickOutput]) -> set[Mode]:
    return {o.mode for o in outputs}


# ---- start and takeover ----------------------------------------------------------------------


def test_starts_in_standby_and_commands_alone_do_not_give_control() -> None:
    d = Drive()
    out = d.run(5000.0)
    assert modes(d.outputs) == {Mode.STANDBY}
    assert out.arm is False
    assert out.speed_mps == 0.0
    assert out.command_seq is None
    assert d.sup.gate.accepted == 250  # they were gated and counted all the same


def test_takeover_needs_one_second_of_healthy_link() -> None:
    d = Drive()
    d.run(500.0)
    refused = d.sup.on_takeover_request(d.now_ms)
    assert not refused.granted
    assert "healthy for" in refused.reason
    assert d.sup.mode is Mode.STANDBY
    d.run(500.0)  # healthy since the first tick at 20 ms: 980 ms so far
    assert "980 ms of 1000 ms" in d.sup.on_takeover_request(d.now_ms).reason
    d.step()
    granted = d.sup.on_takeover_request(d.now_ms)
    assert granted.granted
    out = d.step()
    assert out.mode is Mode.TELEOP
    assert out.arm is True
    assert out.speed_mps == pytest.approx(1.0)
    assert out.steer_rad == pytest.approx(0.1)
    assert out.command_seq == d.seq
    (transition,) = out.transitions
    assert (transition.from_mode, transition.to_mode) == (Mode.STANDBY, Mode.TELEOP)
    assert transition.reason == "operator takeover"
    assert transition.at_ms == d.now_ms - TICK_MS


def test_hysteresis_restarts_after_a_latency_spike() -> None:
    d = Drive()
    d.run(900.0)
    d.one_way_ms = 200.0
    d.step()
    d.one_way_ms = 12.5
    d.run(900.0)
    assert not d.sup.on_takeover_request(d.now_ms).granted  # the spike reset the clock
    d.run(120.0)
    assert d.sup.on_takeover_request(d.now_ms).granted


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (lambda d: setattr(d, "one_way_ms", 150.0), "latency"),
        (lambda d: setattr(d, "video_age_ms", 300.0), "video"),
        (lambda d: setattr(d, "video_reports", False), "video"),
        (lambda d: setattr(d, "commands", False), "no fresh drive command"),
    ],
)
def test_takeover_refused_on_a_bad_link(setup: Callable[[Drive], None], why: str) -> None:
    d = Drive()
    setup(d)
    d.run(2000.0)
    result = d.sup.on_takeover_request(d.now_ms)
    assert not result.granted
    assert why in result.reason
    assert d.sup.mode is Mode.STANDBY


def test_a_link_gap_restarts_the_takeover_hysteresis() -> None:
    d = Drive()
    d.run(900.0)
    d.link_up = False
    d.run(160.0)  # no heartbeat, command or report for 160 ms
    d.link_up = True
    d.run(900.0)
    refused = d.sup.on_takeover_request(d.now_ms)
    assert not refused.granted
    assert "healthy for" in refused.reason
    d.run(120.0)
    assert d.sup.on_takeover_request(d.now_ms).granted


# ---- teleop watchdogs --------------------------------------------------------------------------


def test_watchdog_does_not_fire_while_commands_flow() -> None:
    d = Drive()
    d.teleop()
    start = len(d.outputs)
    d.run(10_000.0)
    steady = d.outputs[start:]
    assert modes(steady) == {Mode.TELEOP}
    assert all(not o.transitions for o in steady)
    assert all(o.command_seq is not None and o.speed_mps == pytest.approx(1.0) for o in steady)


def test_command_loss_falls_back_to_autonomy_within_bound() -> None:
    d = Drive()
    d.teleop()
    last_sent_ms = d.sent_vehicle_ms[d.seq]
    d.commands = False  # heartbeats continue: the command stream alone is the signal
    out = d.until(lambda o: o.mode not in OPERATOR_MODES, 1000.0)
    assert out.mode is Mode.AUTONOMY
    assert "command age" in out.reason
    assert 250.0 < out.now_ms - last_sent_ms <= 250.0 + TICK_MS
    assert out.speed_mps == pytest.approx(AUTONOMY_OK.speed_mps)
    assert out.command_seq is None


def test_link_silence_falls_back_even_when_command_age_looks_young() -> None:
    d = Drive()
    d.offset_error_ms = 40.0  # the operator's offset estimate makes its commands look young
    d.teleop()
    last_rx_ms = d.now_ms
    d.link_up = False
    out = d.until(lambda o: o.mode not in OPERATOR_MODES, 1000.0)
    assert out.mode is Mode.AUTONOMY
    assert "link silent" in out.reason
    assert 250.0 < out.now_ms - last_rx_ms <= 250.0 + TICK_MS


@pytest.mark.parametrize("how", ["frozen", "reports stop"])
def test_video_freeze_locks_operator_driving(how: str) -> None:
    d = Drive()
    d.teleop()
    if how == "frozen":
        d.video_age_ms = 300.0
    else:
        d.video_reports = False
    out = d.until(lambda o: o.mode not in OPERATOR_MODES, 400.0)
    assert out.mode is Mode.AUTONOMY
    assert "video frozen" in out.reason


def test_link_loss_without_autonomy_goes_to_minimal_risk_stop() -> None:
    d = Drive()
    d.autonomy = AutonomyOutput(AutonomyStatus.NO_ROUTE, 0.0, 0.0, "no map")
    d.speed_mps = 2.0
    d.teleop()
    d.link_up = False
    out = d.until(lambda o: o.mode not in OPERATOR_MODES, 1000.0)
    assert out.mode is Mode.MINIMAL_RISK_STOP
    assert "autonomy unavailable: autonomy no_route: no map" in out.reason
    assert out.speed_mps == pytest.approx(2.0, abs=0.05)


def test_expired_ttl_stops_before_the_fallback() -> None:
    d = Drive()
    d.ttl_ms = 60.0
    d.teleop()
    d.commands = False
    for out in (d.step() for _ in range(10)):  # 200 ms: before the 250 ms fallback
        assert out.mode in OPERATOR_MODES
        age_ms = out.now_ms - d.sent_vehicle_ms[d.seq]
        if age_ms > 60.0:
            assert out.speed_mps == 0.0
            assert out.command_seq is None
        else:
            assert out.speed_mps == pytest.approx(1.0)


# ---- degraded ------------------------------------------------------------------------------------


def test_degraded_and_back_after_hysteresis() -> None:
    d = Drive()
    d.teleop()
    d.delay_ms = 160.0
    out = d.until(lambda o: o.mode is not Mode.TELEOP, 200.0)
    assert out.mode is Mode.DEGRADED
    assert "delay" in out.transitions[0].reason
    d.delay_ms = 12.5
    d.run(980.0)
    assert d.sup.mode is Mode.DEGRADED
    out = d.until(lambda o: o.mode is Mode.TELEOP, 100.0)
    assert "for 1000 ms" in out.reason


def test_latency_report_alone_degrades() -> None:
    d = Drive()
    d.teleop()
    d.one_way_ms = 180.0
    out = d.step()
    assert out.mode is Mode.DEGRADED
    assert out.delay_ms == pytest.approx(180.0)


def test_degraded_limits_acceleration_and_steering_rate() -> None:
    cfg = SupervisorConfig(degraded_accel_mps2=0.5, degraded_steer_rate_radps=0.5)
    d = Drive(cfg)
    d.speed_mps, d.steer_rad = 0.0, 0.0
    d.teleop()
    d.delay_ms = 160.0
    d.until(lambda o: o.mode is Mode.DEGRADED, 200.0)
    d.speed_mps, d.steer_rad = 2.0, 0.4
    outs = [d.step() for _ in range(25)]  # 0.5 s
    for prev, cur in itertools.pairwise(outs):
        assert cur.speed_mps - prev.speed_mps <= 0.5 * 0.02 + 1e-9
        assert abs(cur.steer_rad - prev.steer_rad) <= 0.5 * 0.02 + 1e-9
    assert outs[-1].speed_mps == pytest.approx(0.25, abs=0.02)
    d.speed_mps = 0.0  # slowing down is never delayed
    assert d.step().speed_mps == 0.0


def test_speed_cap_follows_the_formula_and_limits_teleop() -> None:
    cfg = SupervisorConfig()
    # T = 0.27 s, a = 1.5, D = 3: a * (-T + sqrt(T^2 + 2D/a))
    assert speed_cap_mps(0.0, cfg) == pytest.approx(1.5 * (-0.27 + math.sqrt(0.27**2 + 4.0)))
    assert speed_cap_mps(100.0, cfg) < speed_cap_mps(50.0, cfg)
    assert speed_cap_mps(0.0, SupervisorConfig(clear_distance_m=100.0)) == 3.0
    d = Drive(cfg)
    d.speed_mps = 3.0
    out = d.teleop()
    assert out.speed_mps == pytest.approx(speed_cap_mps(out.delay_ms, cfg))
    assert out.speed_mps < 3.0
    d.speed_mps = -3.0
    assert d.step().speed_mps == pytest.approx(-speed_cap_mps(d.outputs[-1].delay_ms, cfg))


# ---- autonomy and the minimal-risk stop -----------------------------------------------------


def fall_back(d: Drive) -> None:
    d.teleop()
    d.link_up = False
    d.until(lambda o: o.mode is Mode.AUTONOMY, 400.0)


def test_autonomy_blocked_goes_to_minimal_risk_stop() -> None:
    d = Drive()
    fall_back(d)
    d.autonomy = AutonomyOutput(AutonomyStatus.BLOCKED, 0.3, 0.0, "obstacle 0.7 m ahead")
    out = d.step()
    assert out.mode is Mode.MINIMAL_RISK_STOP
    assert out.reason == "autonomy blocked: obstacle 0.7 m ahead"


def test_autonomy_silent_goes_to_minimal_risk_stop() -> None:
    d = Drive()
    fall_back(d)
    d.autonomy = None
    out = d.until(lambda o: o.mode is not Mode.AUTONOMY, 400.0)
    assert out.mode is Mode.MINIMAL_RISK_STOP
    assert "autonomy silent" in out.reason


def test_long_link_silence_ends_autonomy() -> None:
    d = Drive()
    fall_back(d)
    lost_ms = d.now_ms
    d.run(2500.0)
    assert d.sup.mode is Mode.AUTONOMY
    out = d.until(lambda o: o.mode is not Mode.AUTONOMY, 1000.0)
    assert out.mode is Mode.MINIMAL_RISK_STOP
    assert "link silent" in out.reason
    assert out.now_ms - lost_ms < 3000.0 + 300.0


def test_minimal_risk_stop_decelerates_and_holds() -> None:
    d = Drive()
    d.autonomy = AutonomyOutput(AutonomyStatus.DONE, 0.0, 0.0)
    d.speed_mps, d.steer_rad = 2.0, 0.2
    d.teleop()
    d.link_up = False
    first = d.until(lambda o: o.mode is Mode.MINIMAL_RISK_STOP, 400.0)
    outs = [first] + [d.step() for _ in range(100)]
    for prev, cur in itertools.pairwise(outs):
        assert cur.speed_mps <= prev.speed_mps
        assert prev.speed_mps - cur.speed_mps <= 1.5 * 0.02 + 1e-9
        assert cur.steer_rad == pytest.approx(0.2)
        assert cur.arm is True
    stopped = next(o for o in outs if o.speed_mps == 0.0)
    assert stopped.now_ms - first.now_ms <= 2.0 / 1.5 * 1000.0 + TICK_MS
    assert all(o.speed_mps == 0.0 for o in outs[outs.index(stopped) :])


def test_commands_arriving_again_do_not_return_control() -> None:
    d = Drive()
    fall_back(d)
    d.link_up = True
    d.run(5000.0)
    assert d.sup.mode is Mode.AUTONOMY
    assert all(o.command_seq is None for o in d.outputs[-250:])


@pytest.mark.parametrize("stop", [False, True])
def test_takeover_from_fallback_after_hysteresis(stop: bool) -> None:
    d = Drive()
    fall_back(d)
    if stop:
        d.autonomy = AutonomyOutput(AutonomyStatus.BLOCKED, 0.0, 0.0)
        d.until(lambda o: o.mode is Mode.MINIMAL_RISK_STOP, 100.0)
    fallback_mode = d.sup.mode
    d.link_up = True
    d.run(500.0)
    assert not d.sup.on_takeover_request(d.now_ms).granted
    assert d.sup.mode is fallback_mode
    d.run(520.0)
    assert d.sup.on_takeover_request(d.now_ms).granted
    out = d.step()
    assert out.mode is Mode.TELEOP
    assert out.transitions[0].from_mode is fallback_mode


def test_release_to_autonomy_and_back() -> None:
    d = Drive()
    d.teleop()
    d.autonomy = AutonomyOutput(AutonomyStatus.BLOCKED, 0.0, 0.0)
    d.step()
    refused = d.sup.on_release_to_autonomy(d.now_ms)
    assert not refused.granted
    assert "blocked" in refused.reason
    d.autonomy = AUTONOMY_OK
    d.step()
    assert d.sup.on_release_to_autonomy(d.now_ms).granted
    out = d.step()
    assert out.mode is Mode.AUTONOMY
    assert out.reason == "operator released to autonomy"
    assert d.sup.on_takeover_request(d.now_ms).granted  # the link has been healthy throughout
    assert d.step().mode is Mode.TELEOP


def test_release_from_minimal_risk_stop() -> None:
    d = Drive()
    fall_back(d)
    d.autonomy = AutonomyOutput(AutonomyStatus.BLOCKED, 0.0, 0.0)
    d.until(lambda o: o.mode is Mode.MINIMAL_RISK_STOP, 100.0)
    assert not d.sup.on_release_to_autonomy(d.now_ms).granted
    d.autonomy = AUTONOMY_OK
    d.step()
    assert d.sup.on_release_to_autonomy(d.now_ms).granted
    assert d.step().mode is Mode.AUTONOMY


# ---- e-stop ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        lambda d: d.sup.on_command(d.command(estop=True)),
        lambda d: d.sup.on_command(d.command(estop=True, age_ms=5000.0)),  # stale still counts
        lambda d: d.sup.on_estop(d.now_ms, "operator button"),
        lambda d: d.sup.on_mcu_telemetry(d.now_ms, estop_active=True, wheel_speed_mps=0.0),
        lambda d: d.sup.on_mcu_fault(d.now_ms, MCU_FAULT_ESTOP_PIN),
    ],
)
def test_estop_latches_from_every_source(trigger: Callable[[Drive], object]) -> None:
    d = Drive()
    d.teleop()
    trigger(d)
    out = d.step()
    assert out.mode is Mode.ESTOP
    assert out.arm is False
    assert out.speed_mps == 0.0
    assert out.transitions[0].to_mode is Mode.ESTOP
    assert "e-stop" in out.reason
    d.run(2000.0)  # commands keep flowing: still latched
    assert modes(d.outputs[-100:]) == {Mode.ESTOP}
    refused = d.sup.on_takeover_request(d.now_ms)
    assert not refused.granted
    assert "e-stop latched" in refused.reason


def test_estop_reset_waits_for_the_mcu_then_goes_to_standby() -> None:
    d = Drive()
    d.teleop()
    d.sup.on_mcu_telemetry(d.now_ms, estop_active=True, wheel_speed_mps=0.0)
    d.step()
    refused = d.sup.on_estop_reset(d.now_ms)
    assert not refused.granted
    assert "MCU" in refused.reason
    d.sup.on_mcu_telemetry(d.now_ms, estop_active=False, wheel_speed_mps=0.0)
    assert d.sup.on_estop_reset(d.now_ms).granted
    out = d.step()
    assert out.mode is Mode.STANDBY
    assert out.arm is False
    assert d.sup.on_takeover_request(d.now_ms).granted
    assert d.step().mode is Mode.TELEOP


def test_estop_reset_outside_estop_is_refused() -> None:
    d = Drive()
    assert not d.sup.on_estop_reset(d.now_ms).granted


def test_estop_from_autonomy_and_minimal_risk_stop() -> None:
    d = Drive()
    fall_back(d)
    d.sup.on_estop(d.now_ms, "local button")
    assert d.step().mode is Mode.ESTOP


# ---- bad input and config -------------------------------------------------------------------


def test_bad_inputs_are_rejected_counted_and_survived() -> None:
    d = Drive()
    d.teleop()
    d.sup.on_latency(d.now_ms, math.nan, 10.0)
    d.sup.on_video_freshness(d.now_ms, math.inf)
    d.sup.on_link_heartbeat(math.nan)
    d.sup.on_command(d.command(age_ms=math.nan))
    assert d.sup.rejected_inputs == {
        "on_latency": 1,
        "on_video_freshness": 1,
        "on_link_heartbeat": 1,
    }
    assert d.sup.gate.dropped[DropReason.NON_FINITE] == 1
    out = d.step()
    assert out.mode is Mode.TELEOP
    assert out.speed_mps == pytest.approx(1.0)


def test_new_operator_session_restarts_the_sequence_and_needs_its_own_takeover() -> None:
    d = Drive()
    d.teleop()
    d.seq = 0  # a restarted console
    d.step()
    assert d.sup.gate.dropped[DropReason.OUT_OF_ORDER] == 1
    d.sup.on_operator_session(d.now_ms)
    out = d.step()
    # Control does not carry over to the new session: its commands pass the gate again...
    assert d.sup.gate.last_seq == d.seq
    # ...but drive nothing until that session's own takeover.
    assert out.mode not in OPERATOR_MODES
    assert out.command_seq is None
    assert any("new operator session" in t.reason for t in out.transitions)
    out = d.teleop()
    assert out.mode is Mode.TELEOP
    assert out.command_seq == d.seq


def test_estop_flag_sent_before_a_reset_does_not_latch_again() -> None:
    d = Drive()
    d.teleop()
    d.sup.on_command(d.command(estop=True))
    assert d.step().mode is Mode.ESTOP
    late = d.command(estop=True, age_ms=40.0)  # sent before the reset, arrives after it
    assert d.sup.on_estop_reset(d.now_ms).granted
    d.sup.on_command(late)
    assert d.step().mode is Mode.STANDBY
    d.sup.on_command(d.command(estop=True))  # pressed again after the reset: latches
    assert d.step().mode is Mode.ESTOP


def test_mcu_watchdog_fault_takes_control_from_the_operator() -> None:
    d = Drive()
    d.teleop()
    d.sup.on_mcu_fault(d.now_ms, 6, 181)  # LINK_TIMEOUT: the host stalled, motor cut
    out = d.step()
    assert out.mode not in OPERATOR_MODES
    assert "MCU watchdog" in out.reason


def test_minimal_risk_stop_ramps_from_the_measured_speed_not_the_commanded_one() -> None:
    d = Drive()
    d.autonomy = None  # no autonomy: a loss means a minimal-risk stop
    d.speed_mps = 2.0
    d.teleop()
    d.run(2000.0)
    # The host stalls; the MCU cut the motor and the wheels slowed to 0.2 m/s meanwhile.
    d.sup.on_mcu_telemetry(d.now_ms, estop_active=False, wheel_speed_mps=0.2)
    d.commands = False
    d.link_up = False
    outs = [d.step() for _ in range(30)]
    stopping = [o for o in outs if o.mode is Mode.MINIMAL_RISK_STOP]
    assert stopping
    assert max(o.speed_mps for o in stopping) <= 0.2 + 1e-9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tick_ms": 0.0},
        {"decel_mps2": math.nan},
        {"degrade_age_ms": 300.0},
        {"stop_silence_ms": 200.0},
    ],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="SupervisorConfig"):
        SupervisorConfig(**kwargs)


# ---- deadlines ------------------------------------------------------------------------------


def test_the_next_deadline_is_when_a_watchdog_turns() -> None:
    drive = Drive()
    assert drive.sup.next_deadline_ms() is None  # standby: nothing to watch
    drive.teleop()
    sent_ms = drive.sent_vehicle_ms[drive.seq]
    link_ms = drive.now_ms
    cfg = drive.sup.config

    def tick(at_ms: float) -> TickOutput:  # the link is silent; autonomy keeps reporting
        drive.sup.on_autonomy_status(at_ms, AUTONOMY_OK)
        return drive.sup.tick(at_ms)

    # Driving: the first to turn is DEGRADED, the newest command's age reaching 150 ms.
    deadline = drive.sup.next_deadline_ms()
    assert deadline == sent_ms + cfg.degrade_age_ms
    assert tick(deadline - 0.5).mode is Mode.TELEOP
    out = tick(deadline + 0.5)
    assert out.mode is Mode.DEGRADED  # a tick just after each deadline sees it at once
    deadline = drive.sup.next_deadline_ms()
    assert deadline == sent_ms + cfg.fallback_age_ms  # command age, before link silence
    assert link_ms + cfg.fallback_age_ms > deadline
    out = tick(deadline + 0.5)
    assert out.mode is Mode.AUTONOMY  # at a command age of 250.5 ms, not up to a tick later
    assert out.delay_ms == cfg.fallback_age_ms + 0.5
    # Autonomy: the next is the link-silence limit of the minimal-risk stop.
    deadline = drive.sup.next_deadline_ms()
    assert deadline == link_ms + cfg.stop_silence_ms
    assert tick(deadline + 0.5).mode is Mode.MINIMAL_RISK_STOP
    assert drive.sup.next_deadline_ms() is None


def test_deadlines_count_from_the_last_tick() -> None:
    drive = Drive()
    drive.ttl_ms = 100.0  # the command expires (stops) before it turns stale
    drive.teleop()
    sent_ms = drive.sent_vehicle_ms[drive.seq]
    cfg = drive.sup.config
    assert drive.sup.next_deadline_ms() == sent_ms + 100.0  # its expiry comes first
    drive.sup.tick(sent_ms + 120.0)
    assert drive.sup.next_deadline_ms() == sent_ms + cfg.degrade_age_ms
    drive.sup.on_autonomy_status(sent_ms + 160.0, AUTONOMY_OK)
    assert drive.sup.tick(sent_ms + 160.0).mode is Mode.DEGRADED
    # Asked whenever after that tick (the loop does other work after a step), the command
    # age deadline is still the next one until a tick has seen it: it is not "in the past".
    assert drive.sup.next_deadline_ms() == sent_ms + cfg.fallback_age_ms
    # A deadline equal to the last tick still counts (its limit is strict: not acted on).
    drive.sup.on_autonomy_status(sent_ms + cfg.fallback_age_ms, AUTONOMY_OK)
    assert drive.sup.tick(sent_ms + cfg.fallback_age_ms).mode is Mode.DEGRADED
    assert drive.sup.next_deadline_ms() == sent_ms + cfg.fallback_age_ms
