"""When the vehicle's control loop steps: a 20 ms grid, plus the supervisor's deadlines.

The loop steps the controller on every grid tick (and runs the per-tick work: telemetry,
MCU keep-alive), at once when a command or event arrives (a kick), and at the supervisor's
next deadline when that comes before the next tick (``Supervisor.next_deadline_ms``), so a
stale command is seen when it turns stale rather than up to a tick later. A kick or a deadline
step does not move the grid. :class:`TickSchedule` is that decision, sans-I/O: the loop passes
the time in and sleeps, waits and steps as told.
"""

from __future__ import annotations

from teledrive.shared.errors import ConfigError

TICK_S = 0.02
DEADLINE_SLACK_S = 0.0005
"""A deadline step comes this long after the deadline, so that its strict ">" holds."""


class TickSchedule:
    """The control loop's grid and deadline wakes (seconds, one monotonic clock).

    Args:
        start_s: the time now; the first tick is one period later.
        tick_s: the grid period (> 0).
        slack_s: how long after a deadline to step (>= 0).

    Raises:
        ConfigError: a period or slack out of range.
    """

    def __init__(
        self, start_s: float, *, tick_s: float = TICK_S, slack_s: float = DEADLINE_SLACK_S
    ) -> None:
        if not (tick_s > 0.0 and slack_s >= 0.0):
            raise ConfigError(f"tick schedule: need tick_s > 0 and slack_s >= 0, got {tick_s}")
        self._tick_s = tick_s
        self._slack_s = slack_s
        self.next_tick_s = start_s + tick_s
        """When the next grid tick is due."""
        self._for_deadline = False

    def wait_s(self, now_s: float, deadline_s: float | None) -> float:
        """How long to wait (for a kick, at most) before the next step.

        Args:
            now_s: the time now.
            deadline_s: the supervisor's next deadline, if any.
        """
        wait = self.next_tick_s - now_s
        self._for_deadline = False
        if deadline_s is not None:
            until = deadline_s + self._slack_s - now_s
            if until < wait:
                wait, self._for_deadline = until, True
        return max(0.0, wait)

    def after_step(self, now_s: float, *, kicked: bool) -> bool:
        """The loop stepped (after :meth:`wait_s`); True if this step is the grid tick.

        Args:
            now_s: the time after the step.
            kicked: whether a kick (not the wait running out) woke the loop.
        """
        woke_early = kicked or self._for_deadline
        if woke_early and now_s < self.next_tick_s:
            return False
        self.next_tick_s = max(self.next_tick_s + self._tick_s, now_s)
        return True
