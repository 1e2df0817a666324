"""Bitrate budget across cameras: how much each camera may send, and in what shape (sans-I/O).

:class:`VideoBudget` takes what the link tells the sender, every half second or so, and
returns one :class:`OperatingPoint` (resolution, frame rate, bitrate) per camera:

1. **Available bitrate** for all cameras together (:class:`LinkReport` in). The receiver's
   estimate (REMB, summed over the streams) is an upper bound that is followed down at once.
   Loss and round-trip growth push the budget down fast (loss above ``loss_high``: cut by
   half the loss fraction, like GCC's loss controller; RTT above its recent minimum by more
   than ``rtt_rise_ms``: cut by ``rtt_cut``), at most once per ``decrease_interval_ms``.
   A standing queue seen on the control channel cuts too (its least round trip in a report
   above its own recent minimum by more than ``queue_high_ms``). RTCP brings one RTT a
   second; the control channel's clock sync brings ten, so a queue shows there first.
   Recovery is slow: no increase for ``recovery_hold_ms`` after a cut, then
   ``recovery_per_s`` (multiplicative) while loss stays under ``loss_low``, the RTT within
   half of ``rtt_rise_ms`` of its minimum and the queue under ``queue_low_ms``.
2. **Split**: the primary camera gets ``primary_share`` of it, the others share the rest
   equally, each at least ``camera_floor_bps`` (the floor is taken from the primary when
   the link is that thin) and at most ``camera_max_bps``.
3. **Operating point per camera**, from a ladder that sheds resolution before frame rate,
   because a driver needs motion more than detail: the native size, then 720p, 540p, 360p,
   240p (those below the native height) at full frame rate, and only at 240p lower frame
   rates. A rung "costs" ``width * height * fps * bits_per_pixel``. A camera steps down at
   once (several rungs if needed) when its budget no longer pays for its rung; it steps up one
   rung only after its budget has paid the next rung times ``up_margin`` for ``up_hold_ms``,
   and not within ``up_after_down_ms`` of a step down, so it does not oscillate. A camera that
   just became primary may jump straight up to the best rung its new budget pays (the
   operator asked to see it).

Everything is driven by the ``now_ms`` arguments; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from teledrive.shared.errors import ConfigError

log = logging.getLogger(__name__)

LADDER_HEIGHTS_PX = (720, 540, 360, 240)
"""Heights below the native one that a camera steps through, at full frame rate."""
LOW_FPS_STEPS = (20.0, 15.0, 10.0)
"""Frame rates tried at the lowest resolution only, in order."""


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """What one camera sends now.

    Attributes:
        width_px: encoded width (even).
        height_px: encoded height (even).
        fps: frame rate sent (the camera may capture faster; frames are dropped).
        bitrate_bps: encoder bitrate cap.
    """

    width_px: int
    height_px: int
    fps: float
    bitrate_bps: int


@dataclass(frozen=True, slots=True)
class Rung:
    """One step of a camera's ladder: a size and frame rate, and what it costs."""

    width_px: int
    height_px: int
    fps: float
    cost_bps: int


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """A camera as captured.

    Attributes:
        name: camera name (unique per vehicle).
        width_px: native width.
        height_px: native height.
        fps: native (capture) frame rate.
    """

    name: str
    width_px: int
    height_px: int
    fps: float


@dataclass(frozen=True, slots=True)
class LinkReport:
    """What the sender learnt about the link since the last report.

    Attributes:
        estimate_bps: the receiver's bitrate estimate (REMB) summed over the video streams,
            or None if unknown.
        fraction_lost: packet loss fraction 0..1 from receiver reports that arrived since the
            last report, or None if none arrived.
        rtt_ms: a round-trip time measured since the last report, or None.
        path_rtt_ms: the least round trip of the control channel since the last report, or
            None. Its messages queue behind the video on the uplink, and taking the least of
            several (about five per report) drops jitter spikes but keeps a queue that stood
            all along: the budget reads it as the queueing delay it causes.
    """

    estimate_bps: int | None = None
    fraction_lost: float | None = None
    rtt_ms: float | None = None
    path_rtt_ms: float | None = None


@dataclass(frozen=True, slots=True)
class VideoBudgetConfig:
    """Tuning of :class:`VideoBudget` (defaults suit a 1-10 Mbit/s cellular uplink).

    Attributes:
        start_bps: total budget before anything is known.
        max_total_bps: the most all cameras together may send.
        min_total_bps: the least the budget falls to (loss cannot push it below).
        primary_share: share of the budget for the primary camera, 0 < share <= 1.
        camera_floor_bps: the least any camera gets.
        camera_max_bps: the most any one camera gets.
        bits_per_pixel: bits per pixel and frame a rung needs to look acceptable.
        loss_high: loss fraction above which the budget is cut.
        loss_low: loss fraction below which the budget may grow.
        rtt_rise_ms: RTT above its recent minimum by this much counts as congestion.
        rtt_window_ms: how far back the RTT minimums (RTCP's and the control channel's) look.
        rtt_cut: factor applied on RTT congestion (0 < cut < 1).
        queue_high_ms: the control channel's round trip above its recent minimum by this much
            is a standing queue: the budget is cut by ``rtt_cut``.
        queue_low_ms: the control channel's round trip above its recent minimum by this much
            holds the budget where it is (no growth).
        decrease_interval_ms: least time between two cuts.
        recovery_hold_ms: no increase for this long after a cut.
        recovery_per_s: multiplicative increase per second while recovering.
        up_margin: a camera steps up when its budget pays the next rung times this.
        up_hold_ms: ... for at least this long.
        up_after_down_ms: and not within this long of its last step down.
        bitrate_headroom: a camera's bitrate is capped at its rung's cost times this (more
            bits on a small picture are wasted and make frames larger).
    """

    start_bps: int = 2_500_000
    max_total_bps: int = 8_000_000
    min_total_bps: int = 150_000
    primary_share: float = 0.65
    camera_floor_bps: int = 100_000
    camera_max_bps: int = 3_000_000
    bits_per_pixel: float = 0.06
    loss_high: float = 0.10
    loss_low: float = 0.02
    rtt_rise_ms: float = 100.0
    rtt_window_ms: float = 30_000.0
    rtt_cut: float = 0.85
    queue_high_ms: float = 100.0
    queue_low_ms: float = 40.0
    decrease_interval_ms: float = 300.0
    recovery_hold_ms: float = 3_000.0
    recovery_per_s: float = 0.05
    up_margin: float = 1.25
    up_hold_ms: float = 2_000.0
    up_after_down_ms: float = 5_000.0
    bitrate_headroom: float = 3.0

    def validate(self, where: str = "video budget") -> None:
        """Raise ConfigError naming ``where`` and the field if a value is out of range."""
        checks = (
            ("start_bps", self.start_bps > 0),
            ("min_total_bps", 0 < self.min_total_bps <= self.max_total_bps),
            ("primary_share", 0.0 < self.primary_share <= 1.0),
            ("camera_floor_bps", 0 < self.camera_floor_bps <= self.camera_max_bps),
            ("bits_per_pixel", self.bits_per_pixel > 0.0),
            ("loss_low", 0.0 <= self.loss_low <= self.loss_high <= 1.0),
            ("rtt_rise_ms", self.rtt_rise_ms > 0.0 and self.rtt_window_ms > 0.0),
            ("rtt_cut", 0.0 < self.rtt_cut < 1.0),
            ("queue_low_ms", 0.0 < self.queue_low_ms <= self.queue_high_ms),
            ("recovery_per_s", self.recovery_per_s > 0.0),
            ("up_margin", self.up_margin >= 1.0),
            ("bitrate_headroom", self.bitrate_headroom >= 1.0),
        )
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"{where}: {name} is out of range ({self})")


def even(value: float) -> int:
    """Round to the nearest even integer, at least 2 (H.264 4:2:0 needs even sizes)."""
    return max(2, 2 * round(value / 2.0))


def ladder(spec: CameraSpec, bits_per_pixel: float) -> tuple[Rung, ...]:
    """A camera's rungs, best first: native, then lower heights, then lower frame rates.

    Args:
        spec: the camera.
        bits_per_pixel: cost model (see :class:`VideoBudgetConfig`).
    """
    heights = [spec.height_px, *(h for h in LADDER_HEIGHTS_PX if h < spec.height_px)]
    aspect = spec.width_px / spec.height_px
    rungs: list[Rung] = []
    for height in heights:
        rungs.append(_rung(even(height * aspect), even(height), spec.fps, bits_per_pixel))
    width, height = rungs[-1].width_px, rungs[-1].height_px
    for fps in LOW_FPS_STEPS:
        if fps < spec.fps:
            rungs.append(_rung(width, height, fps, bits_per_pixel))
    return tuple(rungs)


def _rung(width_px: int, height_px: int, fps: float, bits_per_pixel: float) -> Rung:
    return Rung(width_px, height_px, fps, math.ceil(width_px * height_px * fps * bits_per_pixel))


def split_budget(
    total_bps: int,
    names: Sequence[str],
    primary: str,
    *,
    primary_share: float,
    floor_bps: int,
    max_bps: int,
) -> dict[str, int]:
    """Share ``total_bps`` between cameras: most to the primary, the rest equally.

    Every camera gets at least ``floor_bps`` (even if the total is smaller: a frozen side
    camera is worse than a slightly oversubscribed link) and at most ``max_bps``; what the
    primary cannot use beyond ``max_bps`` goes to the others.
    """
    if not names:
        return {}
    others = [n for n in names if n != primary]
    if primary not in names or not others:
        each = max(floor_bps, min(max_bps, total_bps // len(names)))
        return dict.fromkeys(names, each)
    primary_bps = min(max_bps, round(total_bps * primary_share))
    other_bps = (total_bps - primary_bps) // len(others)
    other_bps = max(floor_bps, min(max_bps, other_bps))
    primary_bps = max(floor_bps, min(max_bps, total_bps - other_bps * len(others)))
    shares = dict.fromkeys(others, other_bps)
    shares[primary] = primary_bps
    return {name: shares[name] for name in names}


@dataclass(slots=True)
class _CameraState:
    rungs: tuple[Rung, ...]
    index: int = 0
    up_since_ms: float | None = None
    last_down_ms: float | None = None
    fast_up: bool = False


class VideoBudget:
    """Decides each camera's operating point from link reports (see the module docstring).

    Args:
        cameras: the cameras, in a fixed order.
        primary: the primary camera's name (default: the first camera).
        config: tuning.
        now_ms: the clock at creation.

    Raises:
        ConfigError: no cameras, duplicate names, a bad size or frame rate, an unknown
            primary, or a bad config.
    """

    def __init__(
        self,
        cameras: Iterable[CameraSpec],
        *,
        primary: str | None = None,
        config: VideoBudgetConfig | None = None,
        now_ms: float = 0.0,
    ) -> None:
        self.config = config or VideoBudgetConfig()
        self.config.validate()
        specs = list(cameras)
        if not specs:
            raise ConfigError("video budget: no cameras")
        self._states: dict[str, _CameraState] = {}
        for spec in specs:
            where = f"video budget: camera {spec.name!r}"
            if spec.name in self._states:
                raise ConfigError(f"{where}: duplicate name")
            if spec.width_px < 2 or spec.height_px < 2 or not spec.fps > 0:
                raise ConfigError(f"{where}: bad size or fps {spec}")
            self._states[spec.name] = _CameraState(ladder(spec, self.config.bits_per_pixel))
        self._primary = specs[0].name
        if primary is not None:
            self._check_name(primary)
            self._primary = primary
        self.available_bps = float(self.config.start_bps)
        """The total budget now."""
        self._last_ms = now_ms
        self._last_cut_ms: float | None = None
        self._rtts: collections.deque[tuple[float, float]] = collections.deque()
        self._rtt_excess_ms = 0.0
        self._path_rtts_ms: collections.deque[tuple[float, float]] = collections.deque()
        self.queue_ms = 0.0
        """The queue the latest control-channel round trip showed (RTT over its minimum)."""
        self.path_floor_ms: float | None = None
        """The control channel's least round trip of the last ``rtt_window_ms`` (None: none)."""
        self._queue_silent = False
        self.cuts = 0
        """How many times loss, RTT or a standing queue cut the budget."""
        self.rejected = 0
        """Link figures dropped as out of range."""
        self._points: dict[str, OperatingPoint] = {}
        self._decide(now_ms)

    # -- inputs ----------------------------------------------------------------------------

    @property
    def primary(self) -> str:
        """The primary camera."""
        return self._primary

    @property
    def camera_names(self) -> list[str]:
        """The cameras, in the order given."""
        return list(self._states)

    def set_primary(self, name: str, now_ms: float) -> dict[str, OperatingPoint]:
        """Make ``name`` the primary camera and re-split the budget at once.

        Raises:
            ConfigError: ``name`` is not one of the cameras.
        """
        self._check_name(name)
        if name != self._primary:
            self._primary = name
            self._states[name].fast_up = True
        return self._decide(now_ms)

    def update(self, now_ms: float, report: LinkReport) -> dict[str, OperatingPoint]:
        """Feed what the link said since the last update; returns the operating points.

        Figures out of range (a loss outside 0..1, a negative or non-finite RTT, an estimate
        that is not positive) are dropped, counted in :attr:`rejected` and logged.
        """
        report = self._sanitized(report)
        elapsed_s = max(0.0, now_ms - self._last_ms) / 1000.0
        self._last_ms = now_ms
        cfg = self.config
        congested = self._congested(now_ms, report)
        if report.estimate_bps is not None and report.estimate_bps < self.available_bps:
            self.available_bps = float(report.estimate_bps)
        if congested is not None:
            self._cut(now_ms, congested)
        elif self._may_grow(now_ms, report):
            grown = self.available_bps * (1.0 + cfg.recovery_per_s) ** elapsed_s
            ceiling = float(cfg.max_total_bps)
            if report.estimate_bps is not None:
                ceiling = min(ceiling, float(report.estimate_bps))
            self.available_bps = max(self.available_bps, min(grown, ceiling))
        self.available_bps = min(
            float(cfg.max_total_bps), max(float(cfg.min_total_bps), self.available_bps)
        )
        return self._decide(now_ms)

    # -- outputs ---------------------------------------------------------------------------

    @property
    def points(self) -> dict[str, OperatingPoint]:
        """The latest operating point of each camera."""
        return dict(self._points)

    # -- internals -------------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name not in self._states:
            raise ConfigError(
                f"video budget: unknown camera {name!r} (cameras: {', '.join(self._states)})"
            )

    def _sanitized(self, report: LinkReport) -> LinkReport:
        loss, rtt, estimate = report.fraction_lost, report.rtt_ms, report.estimate_bps
        path_rtt = report.path_rtt_ms
        bad = []
        if loss is not None and not 0.0 <= loss <= 1.0:  # also catches NaN
            bad.append(f"fraction_lost={loss}")
            loss = None
        if rtt is not None and not 0.0 <= rtt < math.inf:
            bad.append(f"rtt_ms={rtt}")
            rtt = None
        if path_rtt is not None and not 0.0 <= path_rtt < math.inf:
            bad.append(f"path_rtt_ms={path_rtt}")
            path_rtt = None
        if estimate is not None and estimate <= 0:
            bad.append(f"estimate_bps={estimate}")
            estimate = None
        if not bad:
            return report
        self.rejected += len(bad)
        log.warning("video budget: link report out of range, ignored: %s", ", ".join(bad))
        return LinkReport(
            estimate_bps=estimate, fraction_lost=loss, rtt_ms=rtt, path_rtt_ms=path_rtt
        )

    def _baseline_ms(
        self,
        window: collections.deque[tuple[float, float]],
        now_ms: float,
        rtt_ms: float | None,
    ) -> float | None:
        """Add ``rtt_ms`` to ``window``; the least RTT of the last ``rtt_window_ms``."""
        if rtt_ms is not None:
            window.append((now_ms, rtt_ms))
        while window and now_ms - window[0][0] > self.config.rtt_window_ms:
            window.popleft()
        return min((r for _, r in window), default=None)

    def _congested(self, now_ms: float, report: LinkReport) -> float | None:
        """The factor to cut the budget by, or None when the link looks fine."""
        cfg = self.config
        baseline = self._baseline_ms(self._rtts, now_ms, report.rtt_ms)
        factor = 1.0
        loss = report.fraction_lost
        if loss is not None and loss > cfg.loss_high:
            factor = 1.0 - 0.5 * loss
        rtt = report.rtt_ms
        self._rtt_excess_ms = 0.0
        if rtt is not None and baseline is not None:
            self._rtt_excess_ms = rtt - baseline
        if self._rtt_excess_ms > cfg.rtt_rise_ms:
            factor = min(factor, cfg.rtt_cut)
        if self._queue_stands(now_ms, report.path_rtt_ms):
            factor = min(factor, cfg.rtt_cut)
        return factor if factor < 1.0 else None

    def _queue_stands(self, now_ms: float, path_rtt_ms: float | None) -> bool:
        """Read the control channel's queue; True if it calls for a cut now.

        A report without a round trip leaves :attr:`queue_ms` as it was and is marked silent:
        replies go missing in fades and in a queue, so silence is not taken for good news.
        A standing queue cuts at every report, like the other signals at most once per
        ``decrease_interval_ms``, though the next report's round trips may have been asked
        before the last cut (measured: waiting for fresh ones let the queue overflow again).
        """
        self.path_floor_ms = self._baseline_ms(self._path_rtts_ms, now_ms, path_rtt_ms)
        self._queue_silent = path_rtt_ms is None
        if path_rtt_ms is None or self.path_floor_ms is None:
            return False
        self.queue_ms = path_rtt_ms - self.path_floor_ms
        return self.queue_ms > self.config.queue_high_ms

    def _cut(self, now_ms: float, factor: float) -> None:
        last = self._last_cut_ms
        if last is not None and now_ms - last < self.config.decrease_interval_ms:
            return
        self.available_bps *= factor
        self._last_cut_ms = now_ms
        self.cuts += 1

    def _may_grow(self, now_ms: float, report: LinkReport) -> bool:
        cfg = self.config
        loss = report.fraction_lost
        if loss is not None and not loss < cfg.loss_low:
            return False
        if self._rtt_excess_ms > cfg.rtt_rise_ms / 2.0 or self.queue_ms > cfg.queue_low_ms:
            return False  # queues are building: hold
        if self._queue_silent and self.path_floor_ms is not None:
            return False  # the control channel went quiet: no news is not good news
        last = self._last_cut_ms
        return last is None or now_ms - last >= cfg.recovery_hold_ms

    def _decide(self, now_ms: float) -> dict[str, OperatingPoint]:
        cfg = self.config
        shares = split_budget(
            round(self.available_bps),
            list(self._states),
            self._primary,
            primary_share=cfg.primary_share,
            floor_bps=cfg.camera_floor_bps,
            max_bps=cfg.camera_max_bps,
        )
        for name, state in self._states.items():
            budget_bps = shares[name]
            self._step(state, budget_bps, now_ms)
            rung = state.rungs[state.index]
            bitrate = min(budget_bps, math.ceil(rung.cost_bps * cfg.bitrate_headroom))
            self._points[name] = OperatingPoint(
                rung.width_px, rung.height_px, rung.fps, max(1, bitrate)
            )
        return dict(self._points)

    def _best_paid(self, state: _CameraState, budget_bps: float) -> int:
        """The best rung whose cost ``budget_bps`` pays (the lowest rung if none)."""
        for index, rung in enumerate(state.rungs):
            if rung.cost_bps <= budget_bps:
                return index
        return len(state.rungs) - 1

    def _step(self, state: _CameraState, budget_bps: int, now_ms: float) -> None:
        cfg = self.config
        if state.fast_up:
            state.fast_up = False
            best = self._best_paid(state, budget_bps / cfg.up_margin)
            if best < state.index:
                state.index = best
                state.up_since_ms = None
                return
        if budget_bps < state.rungs[state.index].cost_bps:
            lower = self._best_paid(state, budget_bps)
            if lower > state.index:
                state.index = lower
                state.last_down_ms = now_ms
            state.up_since_ms = None
            return
        if state.index == 0 or budget_bps < state.rungs[state.index - 1].cost_bps * cfg.up_margin:
            state.up_since_ms = None
            return
        if state.last_down_ms is not None and now_ms - state.last_down_ms < cfg.up_after_down_ms:
            return
        if state.up_since_ms is None:
            state.up_since_ms = now_ms
        if now_ms - state.up_since_ms >= cfg.up_hold_ms:
            state.index -= 1
            state.up_since_ms = None
