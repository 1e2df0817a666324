"""Feeds a session's video budget from aiortc's sender statistics and applies its decisions.

The thin I/O layer around :class:`~teledrive.vehicle.video_budget.VideoBudget`: every tick
(about 500 ms, :data:`TICK_S`) it reads, per camera track,

- the receiver's bitrate estimate (REMB) as aiortc's encoder holds it
  (:attr:`CameraVideoTrack.remb_bps`; aiortc clamps it to 0.5-3 Mbit/s for H.264, so a
  link thinner than that is seen through loss and RTT only),
- the latest RTCP receiver report from ``RTCRtpSender.getStats()`` ("remote-inbound-rtp":
  ``fractionLost`` as the 8-bit fixed-point value of the report, ``roundTripTime`` in
  seconds, present only when the report answered the sender's latest sender report),

adds the control channel's clock-sync round trips measured since the last tick (its
messages queue behind the video on the uplink, ten a second), folds all of it into one
:class:`LinkReport` (:func:`link_report`, pure), lets the budget decide,
and hands each track its operating point. :meth:`VideoAdapter.status` is the
:class:`~teledrive.shared.messages.VideoStatus` the vehicle sends about once a second.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from teledrive.shared import messages as m
from teledrive.shared.errors import ConfigError
from teledrive.vehicle.video_budget import (
    CameraSpec,
    LinkReport,
    OperatingPoint,
    VideoBudget,
    VideoBudgetConfig,
)
from teledrive.vehicle.video_track import CameraVideoTrack

log = logging.getLogger(__name__)

TICK_S = 0.5
"""How often the budget is fed and applied."""
STATUS_EVERY_TICKS = 2
"""A VideoStatus every this many ticks (about once a second)."""
RTCP_FRACTION_SCALE = 256.0
"""RTCP receiver reports carry the loss fraction as an 8-bit fixed-point number."""


@dataclass(frozen=True, slots=True)
class StreamSample:
    """What one video stream's sender knows at a tick.

    Attributes:
        remb_bps: the receiver's estimate for the stream, or None.
        fraction_lost: loss 0..1 of a receiver report new since the last tick, or None.
        rtt_ms: round-trip time of that report, or None.
        packets_sent: RTP packets sent so far (weights the loss of this stream).
    """

    remb_bps: int | None = None
    fraction_lost: float | None = None
    rtt_ms: float | None = None
    packets_sent: int = 0


def link_report(
    samples: Sequence[StreamSample],
    *,
    fallback_rtt_ms: float | None = None,
    path_rtts_ms: Sequence[float] = (),
) -> LinkReport:
    """Fold per-stream samples into one report for the budget.

    The estimate is the sum of the streams' REMBs (None unless every stream has one); the
    loss is the mean of the new reports weighted by packets sent (all streams cross the same
    link); the RTT is the largest new one, else ``fallback_rtt_ms`` (the latest data-channel
    clock-sync RTT, which also grows when the link queues). ``path_rtts_ms`` are the control
    channel's round trips since the last report; the least of them is the report's
    ``path_rtt_ms``.
    """
    rembs = [s.remb_bps for s in samples]
    estimate = sum(r for r in rembs if r is not None) if rembs and None not in rembs else None
    reported = [s for s in samples if s.fraction_lost is not None]
    loss: float | None = None
    if reported:
        weights = [max(1, s.packets_sent) for s in reported]
        total = sum(w * (s.fraction_lost or 0.0) for w, s in zip(weights, reported, strict=True))
        loss = total / sum(weights)
    rtts = [s.rtt_ms for s in samples if s.rtt_ms is not None]
    rtt = max(rtts) if rtts else fallback_rtt_ms
    path_rtt = min(path_rtts_ms) if path_rtts_ms else None
    return LinkReport(estimate_bps=estimate, fraction_lost=loss, rtt_ms=rtt, path_rtt_ms=path_rtt)


class VideoAdapter:
    """The bitrate budget of one session's camera tracks.

    The budget is created at the first tick at which every camera has delivered a frame
    (the native sizes come from the pictures).

    Args:
        tracks: the session's camera tracks, bound to their senders.
        primary: the primary camera (default: the first track's).
        config: budget tuning.
    """

    def __init__(
        self,
        tracks: Sequence[CameraVideoTrack],
        *,
        primary: str | None = None,
        config: VideoBudgetConfig | None = None,
    ) -> None:
        self.tracks = list(tracks)
        names = [t.camera.name for t in self.tracks]
        if primary is not None and primary not in names:
            raise ConfigError(f"video: unknown primary camera {primary!r}")
        self._primary = primary or (names[0] if names else "")
        self.config = config or VideoBudgetConfig()
        """The budget's tuning (its ``start_bps`` is where a new session starts)."""
        self.budget: VideoBudget | None = None
        self._last_report: dict[str, datetime.datetime] = {}
        self._applied: dict[str, OperatingPoint] = {}
        self.ticks = 0

    @property
    def primary(self) -> str:
        """The primary camera."""
        return self.budget.primary if self.budget is not None else self._primary

    def select_primary(self, camera: str, now_ms: float) -> None:
        """Make ``camera`` the primary one; the new split applies at once.

        Raises:
            ConfigError: no such camera in this session.
        """
        if camera not in (t.camera.name for t in self.tracks):
            names = ", ".join(t.camera.name for t in self.tracks)
            raise ConfigError(f"video: unknown camera {camera!r} (cameras: {names})")
        self._primary = camera
        if self.budget is not None:
            self._apply(self.budget.set_primary(camera, now_ms))

    async def tick(
        self,
        now_ms: float,
        *,
        fallback_rtt_ms: float | None = None,
        path_rtts_ms: Sequence[float] = (),
    ) -> None:
        """Read the senders' statistics, update the budget and apply it to the tracks.

        Args:
            now_ms: the clock.
            fallback_rtt_ms: an RTT to use when no receiver report brought one.
            path_rtts_ms: the control channel's round trips since the last tick.
        """
        self.ticks += 1
        budget = self.budget or self._create_budget(now_ms)
        if budget is None:
            return
        samples = [await self._sample(track) for track in self.tracks]
        report = link_report(samples, fallback_rtt_ms=fallback_rtt_ms, path_rtts_ms=path_rtts_ms)
        self.apply_report(now_ms, report)

    def apply_report(self, now_ms: float, report: LinkReport) -> dict[str, OperatingPoint]:
        """Feed one link report to the budget and apply the decisions to the tracks.

        Returns:
            The operating points (empty while the budget waits for every camera's first
            frame).
        """
        budget = self.budget or self._create_budget(now_ms)
        if budget is None:
            return {}
        points = budget.update(now_ms, report)
        log.debug(
            "video budget: estimate %s loss %s rtt %s ms path %s ms (floor %s) -> %.0f kbit/s",
            report.estimate_bps,
            _rounded(report.fraction_lost, 3),
            _rounded(report.rtt_ms),
            _rounded(report.path_rtt_ms),
            _rounded(budget.path_floor_ms),
            budget.available_bps / 1e3,
        )
        self._apply(points)
        return points

    def status(self) -> m.VideoStatus:
        """What each camera sends now: ``[width, height, fps, target_bitrate_bps]``."""
        points = self.budget.points if self.budget is not None else {}
        cameras: dict[str, list[int]] = {}
        for track in self.tracks:
            name = track.camera.name
            width, height = track.sent_size_px or (0, 0)
            point = points.get(name)
            bitrate = point.bitrate_bps if point is not None else track.max_bitrate_bps or 0
            cameras[name] = [width, height, round(track.target_fps), bitrate]
        return m.VideoStatus(primary=self.primary, cameras=cameras)

    # -- internals -------------------------------------------------------------------------

    def _create_budget(self, now_ms: float) -> VideoBudget | None:
        specs = []
        for track in self.tracks:
            frame = track.camera.latest()
            if frame is None:
                return None
            height, width = frame.image.shape[:2]
            specs.append(CameraSpec(track.camera.name, width, height, track.camera.nominal_fps))
        if not specs:
            return None
        self.budget = VideoBudget(specs, primary=self._primary, config=self.config, now_ms=now_ms)
        self._apply(self.budget.points)
        return self.budget

    def _apply(self, points: dict[str, OperatingPoint]) -> None:
        for track in self.tracks:
            name = track.camera.name
            point = points.get(name)
            if point is None:
                continue
            track.apply_operating_point(point)
            before = self._applied.get(name)
            self._applied[name] = point
            if before is not None and _size_and_rate(before) != _size_and_rate(point):
                log.info(  # a new size restarts the encoder with a keyframe: worth knowing
                    "video: %s %dx%d@%g -> %dx%d@%g, %.2f Mbit/s",
                    name,
                    *_size_and_rate(before),
                    *_size_and_rate(point),
                    point.bitrate_bps / 1e6,
                )

    async def _sample(self, track: CameraVideoTrack) -> StreamSample:
        sender = track.sender
        if sender is None:
            return StreamSample(remb_bps=track.remb_bps)
        report = await sender.getStats()
        loss: float | None = None
        rtt_ms: float | None = None
        packets_sent = 0
        for stats in report.values():
            kind = getattr(stats, "type", None)
            if kind == "outbound-rtp":
                packets_sent = int(getattr(stats, "packetsSent", 0) or 0)
            elif kind == "remote-inbound-rtp":
                loss, rtt_ms = self._new_receiver_report(track.camera.name, stats)
        return StreamSample(
            remb_bps=track.remb_bps, fraction_lost=loss, rtt_ms=rtt_ms, packets_sent=packets_sent
        )

    def _new_receiver_report(self, name: str, stats: Any) -> tuple[float | None, float | None]:
        """(loss, rtt_ms) of a receiver report not seen at an earlier tick, else (None, None)."""
        stamp = getattr(stats, "timestamp", None)
        if not isinstance(stamp, datetime.datetime) or self._last_report.get(name) == stamp:
            return None, None
        self._last_report[name] = stamp
        raw_loss = getattr(stats, "fractionLost", None)
        loss = raw_loss / RTCP_FRACTION_SCALE if isinstance(raw_loss, int | float) else None
        rtt_s = getattr(stats, "roundTripTime", None)
        rtt_ms = rtt_s * 1000.0 if isinstance(rtt_s, int | float) else None
        return loss, rtt_ms


class BudgetMemory:
    """What the last session's video budget learned of the link, for the next session.

    A new session over the same modem meets the same link: starting it from the default
    budget (2.5 Mbit/s) after a cut under a 1.5 Mbit/s link filled the uplink's queue for the
    second or two the new budget needed to learn, right when the operator was waiting for
    the picture. What was learned is kept for ``keep_ms``; after that the link may have
    changed, and a new session starts from the default again.

    Args:
        keep_ms: how long a learned budget is used for new sessions.
    """

    def __init__(self, keep_ms: float = 60_000.0) -> None:
        self._keep_ms = keep_ms
        self._learned: tuple[float, float] | None = None

    def remember(self, adapter: VideoAdapter | None, now_ms: float) -> None:
        """Keep what ``adapter``'s budget has learned, if it has started."""
        if adapter is not None and adapter.budget is not None:
            self._learned = (adapter.budget.available_bps, now_ms)

    def start_bps(self, now_ms: float) -> int | None:
        """The budget a new session should start from, or None for the default."""
        learned = self._learned
        if learned is None or not 0.0 <= now_ms - learned[1] <= self._keep_ms:
            return None
        return max(1, round(learned[0]))


def _rounded(value: float | None, digits: int = 0) -> float | None:
    return None if value is None else round(value, digits)


def _size_and_rate(point: OperatingPoint) -> tuple[int, int, float]:
    return point.width_px, point.height_px, point.fps


async def run_video_adaptation(
    adapter: Callable[[], VideoAdapter | None],
    *,
    now_ms: Callable[[], float],
    send_status: Callable[[m.VideoStatus], None],
    fallback_rtt_ms: Callable[[], float | None] = lambda: None,
    take_path_rtts_ms: Callable[[], Sequence[float]] = tuple,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Tick the current session's adapter every :data:`TICK_S` and send its status.

    Runs until cancelled. ``adapter`` returns the current session's adapter (None without a
    session); a failing tick is logged and the loop carries on. ``take_path_rtts_ms`` hands
    over (and forgets) the control channel's round trips measured since it was last called.
    """
    while True:
        await sleep(TICK_S)
        path_rtts = take_path_rtts_ms()
        current = adapter()
        if current is None:
            continue
        try:
            await current.tick(now_ms(), fallback_rtt_ms=fallback_rtt_ms(), path_rtts_ms=path_rtts)
        except Exception:  # the video must keep flowing at its last operating point
            log.exception("video budget: tick failed; keeping the last operating points")
        if current.ticks % STATUS_EVERY_TICKS == 0:
            send_status(current.status())
