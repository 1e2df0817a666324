"""Property tests: whatever the command stream does, stale commands are never applied and the
applied speed never exceeds the latency cap for the delay measured at that tick."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from teledrive.vehicle.autonomy.base import AutonomyOutput, AutonomyStatus
from teledrive.vehicle.command_gate import SEQ_MODULUS, CommandArrival
from teledrive.vehicle.supervisor import (
    OPERATOR_MODES,
    Mode,
    Supervisor,
    SupervisorConfig,
    TickOutput,
    speed_cap_mps,
)

TICK_MS = 20.0
OFFSET_MS = -12_345.0  # vehicle clock minus operator clock
CONFIG = SupervisorConfig()


@dataclass(frozen=True)
class Send:
    interval_ms: float  # since the previous send
    delay_ms: float  # transport delay
    offset_error_ms: float  # error of the operator's offset estimate
    ttl_ms: float
    speed_mps: float
    steer_rad: float
    duplicate: bool  # delivered twice
    heartbeat: bool  # a heartbeat arrives with it
    one_way_ms: float | None  # a latency report arrives with it
    estop: bool


sends = st.builds(
    Send,
    interval_ms=st.floats(1.0, 120.0),
    delay_ms=st.one_of(st.floats(0.0, 60.0), st.floats(60.0, 700.0)),
    offset_error_ms=st.floats(-80.0, 80.0),
    ttl_ms=st.floats(1.0, 1000.0),
    speed_mps=st.floats(-3.0, 3.0),
    steer_rad=st.floats(-0.5, 0.5),
    duplicate=st.booleans(),
    heartbeat=st.booleans(),
    one_way_ms=st.one_of(st.none(), st.floats(0.0, 400.0)),
    estop=st.just(False),  # the e-stop flag has its own property
)

autonomy_statuses = st.sampled_from(list(AutonomyStatus))


def healthy_teleop(first_seq: int) -> tuple[Supervisor, float, int]:
    """A supervisor in TELEOP after one second of a healthy 50 Hz link."""
    sup = Supervisor(CONFIG)
    now = 0.0
    seq = first_seq
    for _ in range(52):
        now += TICK_MS
        sup.on_command(arrival(seq, now - 10.0, 0.0, 500.0, 0.0, 0.0, False, now))
        seq = (seq + 1) % SEQ_MODULUS
        sup.on_link_heartbeat(now)
        sup.on_latency(now, 10.0, 20.0)
        sup.on_video_freshness(now, 30.0)
        sup.on_autonomy_status(now, AutonomyOutput(AutonomyStatus.OK, 0.5, 0.0))
        sup.tick(now)
    if not sup.on_takeover_request(now).granted:
        raise AssertionError("prelude did not reach TELEOP")
    return sup, now, seq


def arrival(
    seq: int,
    sent_vehicle_ms: float,
    offset_error_ms: float,
    ttl_ms: float,
    speed_mps: float,
    steer_rad: float,
    estop: bool,
    received_ms: float,
) -> CommandArrival:
    return CommandArrival(
        seq=seq,
        sent_ms=sent_vehicle_ms - OFFSET_MS,
        offset_ms=OFFSET_MS + offset_error_ms,
        ttl_ms=ttl_ms,
        speed_mps=speed_mps,
        steer_rad=steer_rad,
        estop=estop,
        received_ms=received_ms,
    )


def run_stream(
    stream: list[Send], statuses: list[AutonomyStatus], first_seq: int
) -> tuple[list[TickOutput], dict[int, CommandArrival], list[tuple[float, float]]]:
    """Feed the stream in arrival order with 50 Hz ticks; return outputs, commands, latencies."""
    sup, now, seq = healthy_teleop(first_seq)
    counter = itertools.count()
    events: list[tuple[float, int, str, object]] = []
    sent_ms = now
    commands: dict[int, CommandArrival] = {}
    for s in stream:
        sent_ms += s.interval_ms
        rx_ms = sent_ms + s.delay_ms
        cmd = arrival(
            seq, sent_ms, s.offset_error_ms, s.ttl_ms, s.speed_mps, s.steer_rad, s.estop, rx_ms
        )
        commands[seq] = cmd
        heapq.heappush(events, (rx_ms, next(counter), "cmd", cmd))
        if s.duplicate:
            heapq.heappush(events, (rx_ms + 5.0, next(counter), "cmd", cmd))
        if s.heartbeat:
            heapq.heappush(events, (sent_ms + 10.0, next(counter), "hb", None))
        if s.one_way_ms is not None:
            heapq.heappush(events, (rx_ms, next(counter), "lat", s.one_way_ms))
        seq = (seq + 1) % SEQ_MODULUS
    end_ms = max(sent_ms + 1000.0, events[-1][0] if events else 0.0) + 4000.0
    tick = now
    outputs: list[TickOutput] = []
    latencies: list[tuple[float, float]] = [(now, 10.0)]  # (reported at, one-way)
    status_cycle = itertools.cycle(statuses or [AutonomyStatus.OK])
    while tick < end_ms:
        tick += TICK_MS
        while events and events[0][0] <= tick:
            at_ms, _, kind, payload = heapq.heappop(events)
            if kind == "cmd" and isinstance(payload, CommandArrival):
                sup.on_command(payload)
            elif kind == "hb":
                sup.on_link_heartbeat(at_ms)
            elif kind == "lat" and isinstance(payload, float):
                sup.on_latency(at_ms, payload, 2 * payload)
                latencies.append((at_ms, payload))
        sup.on_video_freshness(tick, 30.0)
        sup.on_autonomy_status(tick, AutonomyOutput(next(status_cycle), 0.5, 0.1))
        outputs.append(sup.tick(tick))
    return outputs, commands, latencies


def last_one_way(latencies: list[tuple[float, float]], now_ms: float) -> float:
    reported = [v for at, v in latencies if at <= now_ms]
    return reported[-1] if reported else 0.0


@settings(max_examples=150, deadline=None)
@given(
    stream=st.lists(sends, max_size=60),
    statuses=st.lists(autonomy_statuses, max_size=5),
    first_seq=st.sampled_from([0, 1000, SEQ_MODULUS - 20]),
)
def test_no_stale_command_is_applied_and_speed_respects_the_cap(
    stream: list[Send], statuses: list[AutonomyStatus], first_seq: int
) -> None:
    outputs, commands, latencies = run_stream(stream, statuses, first_seq)
    bound_ms = CONFIG.fallback_age_ms
    for out in outputs:
        if out.command_seq is not None:
            cmd = commands.get(out.command_seq)
            if cmd is None:  # a prelude command, all of them 10 ms old at arrival
                continue
            age_ms = out.now_ms - (cmd.sent_ms + cmd.offset_ms)
            assert age_ms <= min(bound_ms, cmd.ttl_ms) + 1e-6, (out, cmd)
            assert out.mode in OPERATOR_MODES
            assert cmd.received_ms <= out.now_ms  # never applied before it arrived
        if out.mode in OPERATOR_MODES:
            if out.command_seq is None:
                assert out.speed_mps == 0.0
            else:
                applied = commands.get(out.command_seq)
                age_ms = 10.0 if applied is None else out.now_ms - applied.sent_vehicle_ms()
                delay_ms = max(last_one_way(latencies, out.now_ms), age_ms, 0.0)
                assert abs(out.speed_mps) <= speed_cap_mps(delay_ms, CONFIG) + 1e-9, out
        assert abs(out.speed_mps) <= out.speed_cap_mps + 1e-9
        if not out.arm:
            assert out.speed_mps == 0.0


@settings(max_examples=60, deadline=None)
@given(stream=st.lists(sends, min_size=1, max_size=30), estop_at=st.integers(0, 29))
def test_estop_flag_latches_whatever_the_command_looks_like(
    stream: list[Send], estop_at: int
) -> None:
    estop_at = min(estop_at, len(stream) - 1)
    stream[estop_at] = Send(**{**stream[estop_at].__dict__, "estop": True})
    outputs, commands, _ = run_stream(stream, [AutonomyStatus.OK], 0)
    flagged = next(c for c in commands.values() if c.estop)
    after = [o for o in outputs if o.now_ms >= flagged.received_ms]
    assert after
    assert all(o.mode is Mode.ESTOP and not o.arm and o.speed_mps == 0.0 for o in after)
