"""The safety supervisor: who drives, how fast, and the one MCU command per tick. Sans-I/O.

Every input is a method that takes the time on the vehicle clock (``now_ms``; a drive command
carries its own ``received_ms``). :meth:`Supervisor.tick` is called at 50 Hz (and at
:meth:`Supervisor.next_deadline_ms`, when a watchdog turns between two ticks) and returns a
:class:`TickOutput`: the mode, the setpoint for the MCU, whether the MCU should be armed, and
the transitions since the last tick, each with a timestamp and a reason. Nothing here reads a
clock, sleeps or does I/O; the asyncio layer feeds it and sends what it returns.

Modes
=====
``STANDBY``            start mode: no operator in control yet; MCU disarmed, setpoint zero.
``TELEOP``             the operator drives; the speed is capped by the measured delay.
``DEGRADED``           the operator drives over a slow link: delay cap plus acceleration and
                       steering-rate limits.
``AUTONOMY``           the link failed the bound; the fallback autonomy drives.
``MINIMAL_RISK_STOP``  decelerate at ``decel_mps2`` to standstill and hold.
``ESTOP``              latched; MCU disarmed; only an explicit reset leaves it (to ``STANDBY``).

Transitions (checked on every tick unless marked *event*)
=========================================================
===================  ===================  ========================================================
from                 to                   when
===================  ===================  ========================================================
STANDBY, AUTONOMY,   TELEOP               *event* takeover request, the link healthy (heartbeat
MINIMAL_RISK_STOP                         or command within ``degrade_age_ms``, one-way latency
                                          below ``degrade_age_ms``, video fresh) for
                                          ``takeover_hysteresis_ms``, and a fresh drive command
TELEOP               DEGRADED             delay (max of reported one-way latency and the age of
                                          the newest command) >= ``degrade_age_ms``
DEGRADED             TELEOP               delay below ``degrade_age_ms`` for ``recover_ms``
TELEOP, DEGRADED     AUTONOMY             command age or link silence > ``fallback_age_ms``, or
                                          video frozen >= ``video_freeze_ms``; autonomy OK
TELEOP, DEGRADED     MINIMAL_RISK_STOP    as above, but the autonomy is not OK or silent
any but ESTOP        AUTONOMY             *event* operator releases to autonomy; autonomy OK
AUTONOMY             MINIMAL_RISK_STOP    autonomy status not OK (blocked, no route, done) or
                                          silent > ``autonomy_timeout_ms``, or link silence >
                                          ``stop_silence_ms``
any                  ESTOP                *event* e-stop flag in any parsed command (even one the
                                          gate drops), e-stop event, MCU e-stop (telemetry/fault)
ESTOP                STANDBY              *event* e-stop reset while the MCU reports no e-stop
===================  ===================  ========================================================

A command arriving never changes the mode by itself (except its e-stop flag): control returns
to the operator only through a takeover.

Invariants (property-tested)
============================
* No operator command older than ``min(fallback_age_ms, its ttl_ms)`` at tick time is applied;
  an expired command in an operator mode yields speed zero.
* In ``TELEOP``/``DEGRADED`` the applied ``|speed|`` never exceeds
  :func:`speed_cap_mps` for the delay measured at that tick.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import Counter
from dataclasses import dataclass, fields

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.autonomy.risk_stop import RiskStop
from teledrive.vehicle.command_gate import CommandArrival, CommandGate, GateVerdict

logger = logging.getLogger(__name__)

MCU_FAULT_LINK_TIMEOUT = 6
MCU_FAULT_ESTOP_PIN = 7
MCU_FAULT_ESTOP_CMD = 8
MCU_FAULT_WDT_RESET = 9


class Mode(enum.StrEnum):
    """Supervisor modes (see the module docstring)."""

    STANDBY = "standby"
    TELEOP = "teleop"
    DEGRADED = "degraded"
    AUTONOMY = "autonomy"
    MINIMAL_RISK_STOP = "minimal_risk_stop"
    ESTOP = "estop"


OPERATOR_MODES = frozenset({Mode.TELEOP, Mode.DEGRADED})


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Timing and limits; defaults from ARCHITECTURE.md.

    Attributes:
        tick_ms: Period of :meth:`Supervisor.tick` (50 Hz).
        degrade_age_ms: Delay at which ``DEGRADED`` starts; latency bound for takeover.
        fallback_age_ms: Command age / link silence that hands over to autonomy; also the
            gate's staleness bound.
        stop_silence_ms: Link silence after which autonomy gives way to a minimal-risk stop.
        video_freeze_ms: Operator video without a new frame this long locks operator driving.
        takeover_hysteresis_ms: How long the link must be healthy before a takeover.
        recover_ms: How long the delay must stay low before ``DEGRADED`` returns to ``TELEOP``.
        autonomy_timeout_ms: An autonomy status older than this counts as autonomy lost.
        future_tolerance_ms: Negative command age tolerated (clock-sync error).
        max_speed_mps: Operator speed limit (gate range check and cap ceiling).
        max_steer_rad: Steering limit.
        autonomy_max_speed_mps: Speed limit applied to autonomy commands.
        clear_distance_m: Clear distance D in the speed-cap formula.
        decel_mps2: Braking a: the speed-cap formula and the minimal-risk stop.
        degraded_accel_mps2: Largest speed increase per second in ``DEGRADED``.
        degraded_steer_rate_radps: Largest steering change per second in ``DEGRADED``.
    """

    tick_ms: float = 20.0
    degrade_age_ms: float = 150.0
    fallback_age_ms: float = 250.0
    stop_silence_ms: float = 3000.0
    video_freeze_ms: float = 300.0
    takeover_hysteresis_ms: float = 1000.0
    recover_ms: float = 1000.0
    autonomy_timeout_ms: float = 200.0
    future_tolerance_ms: float = 50.0
    max_speed_mps: float = 3.0
    max_steer_rad: float = 0.5
    autonomy_max_speed_mps: float = 1.5
    clear_distance_m: float = 3.0
    decel_mps2: float = 1.5
    degraded_accel_mps2: float = 0.5
    degraded_steer_rate_radps: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"SupervisorConfig: {f.name} must be > 0, got {value!r}")
        if not self.degrade_age_ms < self.fallback_age_ms < self.stop_silence_ms:
            raise ConfigError(
                "SupervisorConfig: need degrade_age_ms < fallback_age_ms < stop_silence_ms"
            )

    @property
    def detection_ms(self) -> float:
        """Worst-case time to notice a dead link: the fallback bound plus one tick."""
        return self.fallback_age_ms + self.tick_ms


def speed_cap_mps(delay_ms: float, config: SupervisorConfig) -> float:
    """Latency-adaptive speed cap ``v = a * (-T + sqrt(T**2 + 2 * D / a))``.

    ``T`` is the delay plus the detection bound, so that a vehicle running blind for ``T`` and
    then braking at ``a`` stops within the clear distance ``D``. Capped at ``max_speed_mps``.
    """
    a = config.decel_mps2
    t_s = (max(0.0, delay_ms) + config.detection_ms) / 1000.0
    v = a * (-t_s + math.sqrt(t_s * t_s + 2.0 * config.clear_distance_m / a))
    return min(config.max_speed_mps, v)


@dataclass(frozen=True, slots=True)
class Transition:
    """One mode change."""

    at_ms: float
    from_mode: Mode
    to_mode: Mode
    reason: str


@dataclass(frozen=True, slots=True)
class RequestResult:
    """Answer to an operator request (takeover, release, e-stop reset)."""

    granted: bool
    reason: str


@dataclass(frozen=True, slots=True)
class TickOutput:
    """The supervisor's decision for one tick.

    Attributes:
        now_ms: The tick time.
        mode: Mode after this tick.
        reason: Why the supervisor is in this mode (reason of the last transition).
        speed_mps: Speed setpoint for the MCU.
        steer_rad: Steering setpoint for the MCU.
        speed_cap_mps: Largest ``|speed|`` allowed in this mode now.
        arm: Whether the MCU should be armed (False: send DISARM / ESTOP, outputs off).
        transitions: Mode changes since the previous tick, oldest first.
        command_seq: Sequence number of the operator command applied, or None.
        delay_ms: The delay measured now (one-way latency or newest command age, larger).
    """

    now_ms: float
    mode: Mode
    reason: str
    speed_mps: float
    steer_rad: float
    speed_cap_mps: float
    arm: bool
    transitions: tuple[Transition, ...]
    command_seq: int | None
    delay_ms: float


class Supervisor:
    """The safety state machine; see the module docstring for modes and transitions.

    Args:
        config: Timing and limits.
        start_ms: Vehicle-clock time at construction (stamps the start).
    """

    def __init__(self, config: SupervisorConfig | None = None, *, start_ms: float = 0.0) -> None:
        self.config = cfg = config or SupervisorConfig()
        self.gate = CommandGate(
            bound_ms=cfg.fallback_age_ms,
            future_tolerance_ms=cfg.future_tolerance_ms,
            max_speed_mps=cfg.max_speed_mps,
            max_steer_rad=cfg.max_steer_rad,
        )
        self._mode = Mode.STANDBY
        self._reason = "started; no operator in control"
        self._pending: list[Transition] = []
        self._risk_stop = RiskStop(cfg.decel_mps2)
        self._cmd: CommandArrival | None = None
        self._last_link_ms: float | None = None
        self._one_way_ms: float | None = None
        self._rtt_ms: float | None = None
        self._video: tuple[float, float] | None = None  # (reported age, reported at)
        self._autonomy: tuple[AutonomyOutput, float] | None = None  # (output, received at)
        self._mcu_estop = False
        self._estop_reset_ms: float | None = None
        self._wheel_known = False
        self._healthy_since_ms: float | None = None
        self._recovering_since_ms: float | None = None
        self._out_speed_mps = 0.0
        self._out_steer_rad = 0.0
        self._last_tick_ms = start_ms
        self.rejected_inputs: Counter[str] = Counter()
        self.mcu_faults: Counter[int] = Counter()
        self.wheel_speed_mps = 0.0

    # ---- read-only state -------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self._mode

    @property
    def reason(self) -> str:
        """Why the supervisor is in the current mode."""
        return self._reason

    @property
    def one_way_ms(self) -> float | None:
        """Latest reported one-way latency."""
        return self._one_way_ms

    @property
    def rtt_ms(self) -> float | None:
        """Latest reported round-trip time."""
        return self._rtt_ms

    def delay_ms(self, now_ms: float) -> float:
        """The delay the speed cap uses: reported one-way latency or newest command age."""
        age_ms = self._cmd.age_at(now_ms) if self._cmd is not None else 0.0
        return max(self._one_way_ms or 0.0, age_ms, 0.0)

    def next_deadline_ms(self) -> float | None:
        """When a watchdog next may act, if nothing new arrives (None: no such time).

        That is, change the mode or stop the operator's command: the command age, link
        silence and video freeze that end operator driving, the command's own expiry, the
        start of ``DEGRADED``, and autonomy's link-silence limit. Only times from the last
        tick on count (one that passed since has not been seen by a tick yet; one equal to it
        may not have acted, the limits being strict). A tick just after the time sees the
        change at once, instead of up to ``tick_ms`` late.
        """
        cfg = self.config
        times: list[float] = []
        if self._mode in OPERATOR_MODES:
            if self._cmd is not None:
                sent_ms = self._cmd.sent_vehicle_ms()
                # Its expiry (stop), then its age turning stale (fallback): both, since the
                # expiry may already be behind the last tick when the fallback is ahead.
                times.append(sent_ms + min(cfg.fallback_age_ms, self._cmd.ttl_ms))
                times.append(sent_ms + cfg.fallback_age_ms)
                if self._mode is Mode.TELEOP:
                    times.append(sent_ms + cfg.degrade_age_ms)
            if self._last_link_ms is not None:
                times.append(self._last_link_ms + cfg.fallback_age_ms)
            if self._video is not None:
                age_ms, reported_ms = self._video
                times.append(reported_ms + cfg.video_freeze_ms - age_ms)
        elif self._mode is Mode.AUTONOMY and self._last_link_ms is not None:
            times.append(self._last_link_ms + cfg.stop_silence_ms)
        ahead = [t for t in times if math.isfinite(t) and t >= self._last_tick_ms]
        return min(ahead) if ahead else None

    # ---- inputs ----------------------------------------------------------------------------

    def on_command(self, arrival: CommandArrival) -> GateVerdict:
        """A drive command arrived: honour its e-stop flag, gate it, keep it if accepted."""
        if arrival.estop and not self._stamped_before_reset(arrival):
            at_ms = (
                arrival.received_ms if math.isfinite(arrival.received_ms) else self._last_tick_ms
            )
            self._latch_estop(at_ms, f"e-stop flag in drive command seq={arrival.seq}")
        verdict = self.gate.check(arrival)
        if verdict.accepted:
            self._cmd = arrival
            self._touch_link(arrival.received_ms)
        return verdict

    def _stamped_before_reset(self, arrival: CommandArrival) -> bool:
        """Whether a command was sent before the last e-stop reset.

        It may arrive after the reset (the drive channel is unordered, the reset comes on the
        ordered one); its e-stop flag is then old news.
        """
        if self._estop_reset_ms is None:
            return False
        stamp_ms = arrival.sent_ms + arrival.offset_ms
        return math.isfinite(stamp_ms) and stamp_ms < self._estop_reset_ms

    def on_operator_session(self, now_ms: float) -> None:
        """A new operator session (peer connection) began: its sequence may start anywhere.

        Control never carries over to a new session: an operator in control falls back, and
        the new session drives only after a takeover of its own.
        """
        if not self._valid("on_operator_session", now_ms=now_ms):
            return
        self.gate.reset_sequence()
        self._cmd = None
        if self._mode in OPERATOR_MODES:
            self._fall_back(now_ms, "new operator session")

    def on_link_heartbeat(self, now_ms: float) -> None:
        """Something arrived from the operator over the link (e.g. a clock-sync reply)."""
        if self._valid("on_link_heartbeat", now_ms=now_ms):
            self._touch_link(now_ms)

    def on_latency(self, now_ms: float, one_way_ms: float, rtt_ms: float) -> None:
        """A fresh latency measurement (from clock sync)."""
        if self._valid("on_latency", now_ms=now_ms, one_way_ms=one_way_ms, rtt_ms=rtt_ms):
            self._one_way_ms, self._rtt_ms = one_way_ms, rtt_ms
            self._update_health(now_ms)

    def on_video_freshness(self, now_ms: float, age_ms: float) -> None:
        """The operator reports how long ago its video last showed a new frame."""
        if self._valid("on_video_freshness", now_ms=now_ms, age_ms=age_ms):
            self._video = (age_ms, now_ms)
            self._update_health(now_ms)

    def on_mcu_telemetry(
        self, now_ms: float, *, estop_active: bool, wheel_speed_mps: float
    ) -> None:
        """MCU telemetry: the e-stop input and the measured wheel speed.

        Args:
            now_ms: Vehicle-clock time of the telemetry.
            estop_active: The ``ESTOP_PIN`` fault bit (the hardware input held *now*). Do not
                pass the MCU's ``ESTOP`` state or ``ESTOP_LATCHED`` bit: the MCU clears those
                only on ``ARM``, which the supervisor requests only after a reset.
            wheel_speed_mps: Measured wheel speed.
        """
        if not self._valid("on_mcu_telemetry", now_ms=now_ms, wheel_speed_mps=wheel_speed_mps):
            return
        self.wheel_speed_mps = wheel_speed_mps
        self._wheel_known = True
        self._mcu_estop = estop_active
        if estop_active:
            self._latch_estop(now_ms, "MCU reports e-stop")

    def on_mcu_fault(self, now_ms: float, code: int, detail: int = 0) -> None:
        """An MCU FAULT event (codes from hardware/PROTOCOL.md); e-stop codes latch ESTOP."""
        if not self._valid("on_mcu_fault", now_ms=now_ms):
            return
        self.mcu_faults[code] += 1
        if code in (MCU_FAULT_LINK_TIMEOUT, MCU_FAULT_WDT_RESET) and self._mode in OPERATOR_MODES:
            # The MCU cut the motor by itself: the host stalled or the firmware reset. Whatever
            # the operator's commands say, they were not reaching the wheels.
            self._fall_back(now_ms, f"MCU watchdog fault {code}: motor was cut")
        if code in (MCU_FAULT_ESTOP_PIN, MCU_FAULT_ESTOP_CMD):
            self._mcu_estop = self._mcu_estop or code == MCU_FAULT_ESTOP_PIN
            self._latch_estop(now_ms, f"MCU fault {code} (e-stop), detail {detail}")

    def on_autonomy_status(self, now_ms: float, output: AutonomyOutput) -> None:
        """The autonomy provider's latest command and status."""
        if self._valid(
            "on_autonomy_status", now_ms=now_ms, speed_mps=output.speed_mps, steer=output.steer_rad
        ):
            self._autonomy = (output, now_ms)

    def on_estop(self, now_ms: float, source: str) -> None:
        """An e-stop event (operator button over the reliable channel, local button, ...)."""
        self._latch_estop(
            now_ms if math.isfinite(now_ms) else self._last_tick_ms, f"e-stop: {source}"
        )

    def on_takeover_request(self, now_ms: float) -> RequestResult:
        """The operator asks for control. Granted only on a link healthy for the hysteresis."""
        if self._mode is Mode.ESTOP:
            return self._refuse("takeover", "e-stop latched; reset it first")
        if self._mode in OPERATOR_MODES:
            return RequestResult(True, "operator already in control")
        self._update_health(now_ms)
        problem = self._takeover_problem(now_ms)
        if problem:
            return self._refuse("takeover", problem)
        self._enter(Mode.TELEOP, now_ms, "operator takeover")
        return RequestResult(True, "operator takeover")

    def on_release_to_autonomy(self, now_ms: float) -> RequestResult:
        """The operator hands control to the autonomy."""
        if self._mode is Mode.ESTOP:
            return self._refuse("release", "e-stop latched; reset it first")
        if self._mode is Mode.AUTONOMY:
            return RequestResult(True, "autonomy already in control")
        problem = self._autonomy_problem(now_ms)
        if problem:
            return self._refuse("release", problem)
        self._enter(Mode.AUTONOMY, now_ms, "operator released to autonomy")
        return RequestResult(True, "operator released to autonomy")

    def on_estop_reset(self, now_ms: float) -> RequestResult:
        """Clear a latched e-stop (to ``STANDBY``), unless the MCU still reports one."""
        if self._mode is not Mode.ESTOP:
            return self._refuse("e-stop reset", "not in e-stop")
        if self._mcu_estop:
            return self._refuse("e-stop reset", "MCU still reports e-stop")
        self._enter(Mode.STANDBY, now_ms, "e-stop reset")
        self._estop_reset_ms = now_ms
        return RequestResult(True, "e-stop reset")

    # ---- the tick --------------------------------------------------------------------------

    def tick(self, now_ms: float) -> TickOutput:
        """Evaluate the watchdogs at ``now_ms`` and produce the one MCU command for this tick."""
        if not self._valid("tick", now_ms=now_ms):
            now_ms = self._last_tick_ms
        dt_s = max(0.0, now_ms - self._last_tick_ms) / 1000.0
        self._last_tick_ms = now_ms
        self._update_health(now_ms)
        self._check_watchdogs(now_ms)
        speed, steer, cap, seq = self._setpoint(now_ms, dt_s)
        self._out_speed_mps, self._out_steer_rad = speed, steer
        transitions, self._pending = tuple(self._pending), []
        return TickOutput(
            now_ms=now_ms,
            mode=self._mode,
            reason=self._reason,
            speed_mps=speed,
            steer_rad=steer,
            speed_cap_mps=cap,
            arm=self._mode not in (Mode.STANDBY, Mode.ESTOP),
            transitions=transitions,
            command_seq=seq,
            delay_ms=self.delay_ms(now_ms),
        )

    def _check_watchdogs(self, now_ms: float) -> None:
        cfg = self.config
        if self._mode in OPERATOR_MODES:
            problem = self._link_problem(now_ms)
            if problem:
                self._fall_back(now_ms, problem)
            elif self._mode is Mode.TELEOP:
                delay_ms = self.delay_ms(now_ms)
                if delay_ms >= cfg.degrade_age_ms:
                    self._enter(
                        Mode.DEGRADED,
                        now_ms,
                        f"delay {delay_ms:.0f} ms >= {cfg.degrade_age_ms:.0f} ms",
                    )
            else:
                self._check_recovery(now_ms)
        elif self._mode is Mode.AUTONOMY:
            silence_ms = self._silence_ms(now_ms)
            problem = self._autonomy_problem(now_ms)
            if silence_ms > cfg.stop_silence_ms:
                problem = f"link silent {silence_ms:.0f} ms > {cfg.stop_silence_ms:.0f} ms"
            if problem:
                self._enter(Mode.MINIMAL_RISK_STOP, now_ms, problem)

    def _check_recovery(self, now_ms: float) -> None:
        cfg = self.config
        if self.delay_ms(now_ms) >= cfg.degrade_age_ms:
            self._recovering_since_ms = None
        elif self._recovering_since_ms is None:
            self._recovering_since_ms = now_ms
        elif now_ms - self._recovering_since_ms >= cfg.recover_ms:
            self._enter(
                Mode.TELEOP,
                now_ms,
                f"delay below {cfg.degrade_age_ms:.0f} ms for {cfg.recover_ms:.0f} ms",
            )

    def _fall_back(self, now_ms: float, problem: str) -> None:
        self._healthy_since_ms = None  # whatever failed, the takeover hysteresis restarts
        autonomy_problem = self._autonomy_problem(now_ms)
        if autonomy_problem:
            self._enter(
                Mode.MINIMAL_RISK_STOP,
                now_ms,
                f"{problem}; autonomy unavailable: {autonomy_problem}",
            )
        else:
            self._enter(Mode.AUTONOMY, now_ms, f"{problem}; fallback to autonomy")

    def _setpoint(self, now_ms: float, dt_s: float) -> tuple[float, float, float, int | None]:
        """``(speed_mps, steer_rad, cap_mps, applied command seq)`` for the current mode."""
        cfg = self.config
        if self._mode in OPERATOR_MODES:
            return self._operator_setpoint(now_ms, dt_s)
        if self._mode is Mode.AUTONOMY and self._autonomy is not None:
            out = self._autonomy[0]
            cap = cfg.autonomy_max_speed_mps
            return _clamp(out.speed_mps, cap), _clamp(out.steer_rad, cfg.max_steer_rad), cap, None
        if self._mode is Mode.MINIMAL_RISK_STOP:
            speed, steer = self._risk_stop.command(now_ms)
            return speed, steer, abs(speed), None
        return 0.0, 0.0, 0.0, None

    def _operator_setpoint(
        self, now_ms: float, dt_s: float
    ) -> tuple[float, float, float, int | None]:
        cfg = self.config
        cap = speed_cap_mps(self.delay_ms(now_ms), cfg)
        cmd = self._cmd
        if cmd is None or cmd.age_at(now_ms) > min(cfg.fallback_age_ms, cmd.ttl_ms):
            return 0.0, self._out_steer_rad, cap, None  # expired: stop, hold the wheel
        speed = _clamp(cmd.speed_mps, cap)
        steer = cmd.steer_rad
        if self._mode is Mode.DEGRADED:
            speed = _limit_speed_up(self._out_speed_mps, speed, cfg.degraded_accel_mps2 * dt_s)
            steer = _approach(self._out_steer_rad, steer, cfg.degraded_steer_rate_radps * dt_s)
        return speed, steer, cap, cmd.seq

    # ---- conditions --------------------------------------------------------------------------

    def _silence_ms(self, now_ms: float) -> float:
        return math.inf if self._last_link_ms is None else now_ms - self._last_link_ms

    def _video_age_ms(self, now_ms: float) -> float:
        if self._video is None:
            return math.inf
        age_ms, reported_ms = self._video
        return age_ms + max(0.0, now_ms - reported_ms)

    def _link_problem(self, now_ms: float) -> str:
        """Why the operator may not keep driving now ("" when the link is good enough)."""
        cfg = self.config
        cmd_age_ms = math.inf if self._cmd is None else self._cmd.age_at(now_ms)
        if cmd_age_ms > cfg.fallback_age_ms:
            return f"command age {cmd_age_ms:.0f} ms > {cfg.fallback_age_ms:.0f} ms"
        silence_ms = self._silence_ms(now_ms)
        if silence_ms > cfg.fallback_age_ms:
            return f"link silent {silence_ms:.0f} ms > {cfg.fallback_age_ms:.0f} ms"
        video_ms = self._video_age_ms(now_ms)
        if video_ms >= cfg.video_freeze_ms:
            return f"operator video frozen {video_ms:.0f} ms >= {cfg.video_freeze_ms:.0f} ms"
        return ""

    def _health_problem(self, now_ms: float) -> str:
        cfg = self.config
        silence_ms = self._silence_ms(now_ms)
        if silence_ms >= cfg.degrade_age_ms:
            return f"link silent {silence_ms:.0f} ms"
        if self._one_way_ms is None:
            return "no latency measurement yet"
        if self._one_way_ms >= cfg.degrade_age_ms:
            return f"one-way latency {self._one_way_ms:.0f} ms >= {cfg.degrade_age_ms:.0f} ms"
        video_ms = self._video_age_ms(now_ms)
        if video_ms >= cfg.video_freeze_ms:
            return f"operator video frozen {video_ms:.0f} ms"
        return ""

    def _update_health(self, now_ms: float) -> None:
        if self._health_problem(now_ms):
            self._healthy_since_ms = None
        elif self._healthy_since_ms is None:
            self._healthy_since_ms = now_ms

    def _takeover_problem(self, now_ms: float) -> str:
        cfg = self.config
        problem = self._health_problem(now_ms)
        if problem:
            return f"link not healthy: {problem}"
        since_ms = now_ms if self._healthy_since_ms is None else self._healthy_since_ms
        healthy_ms = now_ms - since_ms
        if healthy_ms < cfg.takeover_hysteresis_ms:
            return f"link healthy for {healthy_ms:.0f} ms of {cfg.takeover_hysteresis_ms:.0f} ms"
        if self._cmd is None or self._cmd.age_at(now_ms) >= cfg.degrade_age_ms:
            return "no fresh drive command"
        return ""

    def _autonomy_problem(self, now_ms: float) -> str:
        """Why the autonomy cannot drive now ("" when it can)."""
        if self._autonomy is None:
            return "no autonomy status"
        out, at_ms = self._autonomy
        silent_ms = now_ms - at_ms
        if silent_ms > self.config.autonomy_timeout_ms:
            return f"autonomy silent {silent_ms:.0f} ms"
        if out.status is not AutonomyStatus.OK:
            return f"autonomy {out.status.value}" + (f": {out.detail}" if out.detail else "")
        return ""

    # ---- helpers ---------------------------------------------------------------------------

    def _enter(self, mode: Mode, now_ms: float, reason: str) -> None:
        transition = Transition(now_ms, self._mode, mode, reason)
        logger.info("supervisor %s -> %s at %.1f ms: %s", self._mode, mode, now_ms, reason)
        self._pending.append(transition)
        self._mode, self._reason = mode, reason
        self._recovering_since_ms = None
        if mode is Mode.MINIMAL_RISK_STOP:
            self._risk_stop.begin(now_ms, self._stop_start_speed(), self._out_steer_rad)

    def _stop_start_speed(self) -> float:
        """Where a minimal-risk stop ramps down from: never faster than the vehicle moves.

        After a host stall the MCU's watchdog may have cut the motor already; ramping down
        from the last *commanded* speed would speed the vehicle up again before stopping it.
        """
        commanded = self._out_speed_mps
        if not self._wheel_known:
            return commanded
        return math.copysign(min(abs(commanded), abs(self.wheel_speed_mps)), commanded)

    def _latch_estop(self, now_ms: float, reason: str) -> None:
        if self._mode is not Mode.ESTOP:
            self._enter(Mode.ESTOP, now_ms, reason)

    def _touch_link(self, now_ms: float) -> None:
        if self._last_link_ms is None or now_ms > self._last_link_ms:
            self._last_link_ms = now_ms
        self._update_health(now_ms)

    def _refuse(self, what: str, why: str) -> RequestResult:
        logger.info("supervisor refused %s in %s: %s", what, self._mode, why)
        return RequestResult(False, why)

    def _valid(self, where: str, **values: float) -> bool:
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            self.rejected_inputs[where] += 1
            logger.warning("supervisor %s: rejected non-finite %s", where, ", ".join(bad))
        return not bad


def _clamp(value: float, limit: float) -> float:
    return max(-limit, min(limit, value))


def _approach(current: float, target: float, max_step: float) -> float:
    return current + _clamp(target - current, max_step)


def _limit_speed_up(current: float, target: float, max_step: float) -> float:
    """Limit growth of ``|speed|``; slowing down (towards zero) is never delayed."""
    if current * target < 0:
        current = 0.0  # reversing: through zero at once, then accelerate
    if abs(target) <= abs(current):
        return target
    return current + _clamp(target - current, max_step)
