"""Link profiles: what the emulated 1200 km link does to frames, per direction.

A :class:`LinkProfile` has an ``uplink`` (vehicle -> operations centre, i.e. towards hub and
operator) and a ``downlink`` (operations centre -> vehicle) :class:`DirectionProfile`. Profiles
are frozen dataclasses, so they can be sent to the relay process as JSON (``msgspec``) and are
validated on construction and on decoding.

Named profiles (see :data:`PROFILES`) are resolved with :func:`resolve_profile`, which also
understands the outage form ``outage[:BASE[:LENGTH_MS[:PERIOD_MS[:START_MS]]]]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import msgspec

from teledrive.shared.errors import ConfigError

JitterDistribution = Literal["normal", "uniform", "pareto"]

_BITS_PER_BYTE = 8
_MS_PER_S = 1000.0
_MIN_QUEUE_BYTES = 2 * 1514  # a rate-limited queue always holds at least two full frames


def _check_ratio(where: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{where} must be a probability in [0, 1], got {value!r}")


def _check_non_negative(where: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ConfigError(f"{where} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True)
class GilbertElliott:
    """Bursty loss: a two-state Markov chain stepped once per frame.

    In the good state a frame is lost with ``loss_good``, in the bad state with ``loss_bad``.
    The stationary loss ratio is ``pi_bad * loss_bad + (1 - pi_bad) * loss_good`` with
    ``pi_bad = p_good_to_bad / (p_good_to_bad + p_bad_to_good)``; the mean burst length in
    frames is ``1 / p_bad_to_good``.

    Attributes:
        p_good_to_bad: probability of moving from good to bad after a frame.
        p_bad_to_good: probability of moving from bad to good after a frame (> 0).
        loss_good: loss probability in the good state.
        loss_bad: loss probability in the bad state.
    """

    p_good_to_bad: float
    p_bad_to_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad"):
            _check_ratio(f"GilbertElliott.{name}", getattr(self, name))
        if self.p_bad_to_good == 0.0:
            raise ConfigError("GilbertElliott.p_bad_to_good must be > 0 (else loss never ends)")

    @classmethod
    def for_mean_loss(cls, loss_ratio: float, mean_burst_frames: float) -> GilbertElliott:
        """Build a chain whose bad state loses everything, for a mean loss and burst length.

        Args:
            loss_ratio: long-run fraction of frames lost, in (0, 1).
            mean_burst_frames: mean number of consecutive frames lost per burst (>= 1).

        Returns:
            The chain.

        Raises:
            ConfigError: if the numbers are out of range.
        """
        if not (0.0 < loss_ratio < 1.0) or not mean_burst_frames >= 1.0:
            raise ConfigError(
                f"GilbertElliott.for_mean_loss: need 0 < loss_ratio < 1 and mean_burst_frames"
                f" >= 1, got {loss_ratio!r}, {mean_burst_frames!r}"
            )
        p_bad_to_good = 1.0 / mean_burst_frames
        p_good_to_bad = loss_ratio * p_bad_to_good / (1.0 - loss_ratio)
        return cls(p_good_to_bad=p_good_to_bad, p_bad_to_good=p_bad_to_good)

    @property
    def mean_loss_ratio(self) -> float:
        """The stationary loss ratio of the chain."""
        pi_bad = self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)
        return pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good


@dataclass(frozen=True)
class Fades:
    """Bursty loss in time: the link fades out for a while, then comes back.

    A two-state chain in continuous time: the link is up for an exponentially distributed time
    of mean ``mean_up_ms``, then fades for an exponentially distributed time of mean
    ``mean_fade_ms`` (every frame that reaches the air in a fade is lost), and so on. Unlike
    :class:`GilbertElliott`, which steps once per frame, a fade lasts as long for a quiet
    flow as for a dense one, the way a radio fade or a handover does: a datagram re-sent a
    round trip after a loss is lost again only if the fade is still on.

    Attributes:
        mean_fade_ms: mean length of a fade.
        mean_up_ms: mean time between the end of one fade and the start of the next.
    """

    mean_fade_ms: float
    mean_up_ms: float

    def __post_init__(self) -> None:
        for name in ("mean_fade_ms", "mean_up_ms"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ConfigError(f"Fades.{name} must be finite and > 0, got {value!r}")

    @classmethod
    def for_mean_loss(cls, loss_ratio: float, mean_fade_ms: float) -> Fades:
        """Build fades that take the link away a given fraction of the time.

        Args:
            loss_ratio: long-run fraction of time in a fade (the loss ratio of a steady
                flow), in (0, 1).
            mean_fade_ms: mean length of a fade, > 0.

        Returns:
            The fades.

        Raises:
            ConfigError: if the numbers are out of range.
        """
        if not (0.0 < loss_ratio < 1.0) or not (math.isfinite(mean_fade_ms) and mean_fade_ms > 0):
            raise ConfigError(
                f"Fades.for_mean_loss: need 0 < loss_ratio < 1 and mean_fade_ms > 0,"
                f" got {loss_ratio!r}, {mean_fade_ms!r}"
            )
        return cls(
            mean_fade_ms=mean_fade_ms, mean_up_ms=mean_fade_ms * (1.0 - loss_ratio) / loss_ratio
        )

    @property
    def mean_loss_ratio(self) -> float:
        """The long-run fraction of time the link is faded."""
        return self.mean_fade_ms / (self.mean_fade_ms + self.mean_up_ms)


@dataclass(frozen=True)
class OutageSchedule:
    """Link cuts on a schedule, relative to the moment the profile was applied.

    Attributes:
        start_ms: time of the first cut after the profile is applied.
        length_ms: length of each cut.
        period_ms: time from the start of one cut to the start of the next; 0 means one cut.
    """

    start_ms: float
    length_ms: float
    period_ms: float = 0.0

    def __post_init__(self) -> None:
        _check_non_negative("OutageSchedule.start_ms", self.start_ms)
        _check_non_negative("OutageSchedule.length_ms", self.length_ms)
        _check_non_negative("OutageSchedule.period_ms", self.period_ms)
        if self.period_ms and self.period_ms <= self.length_ms:
            raise ConfigError(
                f"OutageSchedule.period_ms ({self.period_ms}) must exceed length_ms"
                f" ({self.length_ms}), or be 0 for a single cut"
            )

    def is_cut(self, since_epoch_ms: float) -> bool:
        """Tell whether the link is cut at a time given relative to the profile's epoch."""
        offset_ms = since_epoch_ms - self.start_ms
        if offset_ms < 0.0:
            return False
        if self.period_ms:
            offset_ms = math.fmod(offset_ms, self.period_ms)
        return offset_ms < self.length_ms


@dataclass(frozen=True)
class DirectionProfile:
    """What one direction of the link does to frames.

    Attributes:
        delay_ms: one-way propagation delay added to every frame.
        jitter_ms: bound of the random delay variation (the ``±`` in "12.5 ms ± 2 ms").
            ``normal`` draws with sigma = jitter_ms / 2 clipped to ±jitter_ms; ``uniform``
            draws in ±jitter_ms; ``pareto`` draws a right-skewed (heavy-tailed) value with
            mean 0, clipped to ±jitter_ms (most frames a little early, a few late). Frames
            keep their order (a frame never departs before the one sent before it) unless
            chosen for reordering.
        jitter_distribution: ``normal``, ``uniform`` or ``pareto``.
        loss_ratio: independent random loss probability per frame.
        burst_loss: optional Gilbert-Elliott bursty loss (stepped per frame), applied after
            ``loss_ratio``.
        fades: optional bursty loss in time (:class:`Fades`), applied after ``burst_loss``,
            at the time the frame leaves the rate limit.
        rate_bps: link rate in bit/s (0 = unlimited); frames are serialised at this rate.
        queue_bytes: drop-tail queue in front of the rate limit; 0 means 100 ms of the rate
            (at least two full frames).
        reorder_ratio: probability that a frame is held back by ``reorder_delay_ms`` so that
            frames sent after it can overtake it.
        reorder_delay_ms: extra hold of a reordered frame; 0 means max(jitter_ms, 1 ms).
        outages: optional scheduled cuts.
    """

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_distribution: JitterDistribution = "normal"
    loss_ratio: float = 0.0
    burst_loss: GilbertElliott | None = None
    fades: Fades | None = None
    rate_bps: float = 0.0
    queue_bytes: int = 0
    reorder_ratio: float = 0.0
    reorder_delay_ms: float = 0.0
    outages: OutageSchedule | None = None

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "rate_bps", "queue_bytes", "reorder_delay_ms"):
            _check_non_negative(f"DirectionProfile.{name}", float(getattr(self, name)))
        _check_ratio("DirectionProfile.loss_ratio", self.loss_ratio)
        _check_ratio("DirectionProfile.reorder_ratio", self.reorder_ratio)
        if self.jitter_distribution not in ("normal", "uniform", "pareto"):
            raise ConfigError(
                "DirectionProfile.jitter_distribution must be normal, uniform or pareto,"
                f" got {self.jitter_distribution!r}"
            )

    @property
    def effective_queue_bytes(self) -> int:
        """The drop-tail queue size in bytes that the rate limit uses."""
        if self.queue_bytes:
            return self.queue_bytes
        default_bytes = int(self.rate_bps * 0.1 / _BITS_PER_BYTE)
        return max(_MIN_QUEUE_BYTES, default_bytes)

    @property
    def effective_reorder_delay_ms(self) -> float:
        """The hold time of a reordered frame."""
        return self.reorder_delay_ms or max(self.jitter_ms, 1.0)


@dataclass(frozen=True)
class LinkProfile:
    """Both directions of the emulated link.

    Attributes:
        name: label shown in stats and logs.
        uplink: vehicle -> operations centre (hub, operator).
        downlink: operations centre -> vehicle.
    """

    name: str
    uplink: DirectionProfile
    downlink: DirectionProfile

    def to_json(self) -> bytes:
        """Encode as JSON (what the relay's command line and control socket take)."""
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> LinkProfile:
        """Decode and validate a profile from JSON.

        Raises:
            ConfigError: if the JSON is malformed or a value is out of range.
        """
        try:
            return msgspec.json.decode(data, type=cls)
        except msgspec.DecodeError as err:
            raise ConfigError(f"link profile JSON: {err}") from err


def _symmetric(name: str, direction: DirectionProfile) -> LinkProfile:
    return LinkProfile(name=name, uplink=direction, downlink=direction)


_BAD_CELL = DirectionProfile(
    delay_ms=80.0,
    jitter_ms=40.0,
    jitter_distribution="pareto",
    # Fades in time, not a per-frame chain: 50 ms is about four frames of the video flow, but
    # a handshake re-sent a round trip later is not still inside the same fade.
    fades=Fades.for_mean_loss(0.03, mean_fade_ms=50.0),
    rate_bps=1.5e6,
    queue_bytes=int(1.5e6 * 0.3 / _BITS_PER_BYTE),  # cellular buffers are deep: 300 ms
)

PROFILES: dict[str, LinkProfile] = {
    "lan": _symmetric("lan", DirectionProfile()),
    "wired-1200km": _symmetric(
        "wired-1200km",
        DirectionProfile(delay_ms=12.5, jitter_ms=2.0, loss_ratio=0.005, rate_bps=20e6),
    ),
    # LTE: the vehicle's uplink is the narrow side; the downlink (commands, operator audio)
    # gets a typical LTE downlink rate.
    "lte-1200km": LinkProfile(
        name="lte-1200km",
        uplink=DirectionProfile(
            delay_ms=40.0,
            jitter_ms=15.0,
            jitter_distribution="pareto",
            loss_ratio=0.01,
            rate_bps=4e6,
            queue_bytes=int(4e6 * 0.2 / _BITS_PER_BYTE),
        ),
        downlink=DirectionProfile(
            delay_ms=40.0,
            jitter_ms=15.0,
            jitter_distribution="pareto",
            loss_ratio=0.01,
            rate_bps=20e6,
            queue_bytes=int(20e6 * 0.1 / _BITS_PER_BYTE),
        ),
    ),
    "bad-cell": _symmetric("bad-cell", _BAD_CELL),
}
"""The named profiles. ``outage`` is built by :func:`with_outages` / :func:`resolve_profile`."""

OUTAGE_DEFAULT_BASE = "wired-1200km"
OUTAGE_DEFAULT_LENGTH_MS = 1000.0
OUTAGE_DEFAULT_PERIOD_MS = 10_000.0
OUTAGE_DEFAULT_START_MS = 3000.0


def with_outages(
    base: LinkProfile,
    *,
    length_ms: float = OUTAGE_DEFAULT_LENGTH_MS,
    period_ms: float = OUTAGE_DEFAULT_PERIOD_MS,
    start_ms: float = OUTAGE_DEFAULT_START_MS,
) -> LinkProfile:
    """Add scheduled cuts (both directions at once) to a profile.

    Args:
        base: the profile to cut.
        length_ms: length of each cut.
        period_ms: start-to-start time between cuts; 0 for a single cut.
        start_ms: time of the first cut after the profile is applied.

    Returns:
        A profile named ``outage:<base>:<length_ms>:<period_ms>:<start_ms>``.
    """
    schedule = OutageSchedule(start_ms=start_ms, length_ms=length_ms, period_ms=period_ms)
    name = f"outage:{base.name}:{length_ms:g}:{period_ms:g}:{start_ms:g}"
    return LinkProfile(
        name=name,
        uplink=dataclasses.replace(base.uplink, outages=schedule),
        downlink=dataclasses.replace(base.downlink, outages=schedule),
    )


def resolve_profile(spec: str | LinkProfile) -> LinkProfile:
    """Turn a profile name into a profile.

    Args:
        spec: a :class:`LinkProfile` (returned as is), a name from :data:`PROFILES`, or
            ``outage[:BASE[:LENGTH_MS[:PERIOD_MS[:START_MS]]]]`` (defaults: wired-1200km,
            1000 ms cuts every 10 000 ms, first at 3000 ms).

    Returns:
        The profile.

    Raises:
        ConfigError: for an unknown name or a malformed outage spec.
    """
    if isinstance(spec, LinkProfile):
        return spec
    parts = spec.split(":")
    if parts[0] != "outage":
        if spec not in PROFILES:
            known = ", ".join([*PROFILES, "outage[:BASE[:LENGTH_MS[:PERIOD_MS[:START_MS]]]]"])
            raise ConfigError(f"unknown link profile {spec!r}; known: {known}")
        return PROFILES[spec]
    if len(parts) > 5:
        raise ConfigError(f"link profile {spec!r}: too many ':' fields (at most 5)")
    base = resolve_profile(parts[1] if len(parts) > 1 else OUTAGE_DEFAULT_BASE)
    numbers: list[float] = []
    for index, text in enumerate(parts[2:], start=2):
        try:
            numbers.append(float(text))
        except ValueError as err:
            raise ConfigError(
                f"link profile {spec!r}: field {index} ({text!r}) is not a number"
            ) from err
    defaults = [OUTAGE_DEFAULT_LENGTH_MS, OUTAGE_DEFAULT_PERIOD_MS, OUTAGE_DEFAULT_START_MS]
    length_ms, period_ms, start_ms = numbers + defaults[len(numbers) :]
    return with_outages(base, length_ms=length_ms, period_ms=period_ms, start_ms=start_ms)
