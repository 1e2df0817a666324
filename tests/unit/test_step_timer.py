"""When the vehicle's control loop steps and does its chores (sans-I/O, injected time)."""

from __future__ import annotations

import itertools
import random

import pytest

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.control import StepTimer

TICK_S = 0.02


def run(arrivals_s: list[float], until_s: float) -> tuple[list[float], list[float]]:
    """Drives a timer the way the service's loop does: wake on a kick or at the deadline."""
    timer = StepTimer(TICK_S, 0.0)
    steps: list[float] = []
    chores: list[float] = []
    pending = sorted(arrivals_s)
    now_s = 0.0
    while now_s < until_s:
        deadline_s = timer.deadline_s
        kicked = bool(pending) and pending[0] <= deadline_s
        now_s = pending.pop(0) if kicked else deadline_s
        step, chore = timer.due(now_s, kicked=kicked)
        if step:
            steps.append(now_s)
        if chore:
            chores.append(now_s)
    return steps, chores


def test_a_stream_of_commands_is_stepped_once_per_command() -> None:
    commands = [0.005 + 0.0199 * i for i in range(50)]  # ~50 Hz, off the tick grid
    steps, _ = run(commands, 1.0)
    assert steps[: len(commands)] == commands  # no timer step between two commands


def test_without_commands_the_loop_steps_every_tick() -> None:
    steps, chores = run([], 1.0)
    assert steps == pytest.approx([TICK_S * i for i in range(1, len(steps) + 1)])
    assert chores == steps


@pytest.mark.parametrize("seed", range(5))
def test_steps_are_never_further_apart_than_a_tick(seed: int) -> None:
    """What the supervisor's detection time counts on, whatever the arrivals do."""
    rng = random.Random(seed)
    arrivals = sorted(rng.uniform(0.0, 2.0) for _ in range(rng.randrange(0, 200)))
    steps, chores = run(arrivals, 2.0)
    assert max(b - a for a, b in itertools.pairwise([0.0, *steps])) <= TICK_S + 1e-12
    # The chores keep their own grid: one per tick, never skipped for a command.
    assert chores == pytest.approx([TICK_S * i for i in range(1, len(chores) + 1)])


def test_the_chores_restart_from_now_after_a_stall() -> None:
    timer = StepTimer(TICK_S, 0.0)
    assert timer.due(0.5, kicked=False) == (True, True)  # 24 ticks late: no catching up
    assert timer.deadline_s == pytest.approx(0.52)
    assert timer.due(0.51, kicked=True) == (True, False)
    assert timer.due(0.52, kicked=False) == (False, True)  # the step is due at 0.53


def test_a_tick_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="tick"):
        StepTimer(0.0, 0.0)
