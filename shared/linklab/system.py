"""The whole system inside a link lab: hub, vehicle and a reporting operator, each in its place.

:class:`LabSystem` starts a :class:`~teledrive.shared.linklab.LinkLab`, then

- the **hub** in the hub namespace, listening on the hub's lab address (a fixed port, so a
  restarted hub is found at the same URL),
- the **vehicle** in the vehicle namespace, alone on the far side of the emulated link, with a
  ``vehicle.toml`` pointing at the hub's lab address and the ``sim://`` motor controller (or
  a pty the caller owns: ptys are not network-namespaced),
- the **operator probe** (:mod:`teledrive.shared.linklab.probe`) in the operator namespace,

collects what they print (the probe's JSON events, the vehicle's and the hub's log lines, each
stamped with ``CLOCK_MONOTONIC`` on arrival), and always stops everything and removes the lab.
Used by ``tests/linklab/test_lab_system.py`` and ``benchmarks/link_lab.py``.

Times are ms of ``CLOCK_MONOTONIC``, which every namespace of the machine shares, so probe
events, log lines and the cuts this harness makes can be compared directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple

from teledrive.shared.errors import ConfigError, LinkError
from teledrive.shared.linklab.netns import LinkLab
from teledrive.shared.linklab.profiles import LinkProfile

logger = logging.getLogger(__name__)

HUB_PORT = 8765
VEHICLE_ID = "lab-van"
FALLBACK_MODES = ("AUTONOMY", "MINIMAL_RISK_STOP")
OPERATOR_MODES = ("TELEOP", "DEGRADED")
_START_TIMEOUT_S = 20.0
_STOP_TIMEOUT_S = 5.0
# The vehicle logs "mode A -> B at T ms: reason", T on the shared monotonic clock.
_MODE_LINE = re.compile(r"mode (\w+) -> (\w+)(?: at ([-\d.]+) ms)?: (.*)$")
_REGISTERED_LINE = re.compile(r"hub: (\w+) '([^']*)' registered from")

VEHICLE_TOML = """\
[vehicle]
id = "{vehicle_id}"
name = "Link-lab van"
hub_url = "{hub_url}"

[motor]
url = "{motor_url}"

[[cameras]]
name = "front"
source = "synthetic"
width = 640
height = 480
fps = 30

[link]
bond = {bond}
"""


def now_ms() -> float:
    """``CLOCK_MONOTONIC`` in ms."""
    return time.monotonic() * 1000.0


def time_scale() -> float:
    """``TELEDRIVE_TIME_SCALE`` (>= 1): how much to stretch real-time waits."""
    try:
        return max(1.0, float(os.environ.get("TELEDRIVE_TIME_SCALE", "1")))
    except ValueError:
        return 1.0


@dataclasses.dataclass(frozen=True)
class Cut:
    """One cut of the link, both directions (CLOCK_MONOTONIC ms)."""

    start_ms: float
    end_ms: float
    sessions_before: int


class ModeChange(NamedTuple):
    """One mode change of the vehicle, from its log (the vehicle's monotonic time)."""

    t_ms: float
    previous: str
    mode: str
    reason: str


@dataclasses.dataclass(frozen=True)
class LogLine:
    """A line a process printed, stamped on arrival."""

    t_ms: float
    text: str


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class LabSystem:
    """Hub, vehicle and operator probe in a link lab; see the module docstring.

    Args:
        profile: link profile name or :class:`LinkProfile`.
        seed: the lab's random seed.
        prefix: namespace prefix (tests use their own, see ``LinkLab``).
        motor_url: the vehicle's motor controller (``sim://`` or a pty path).
        python: interpreter for the three processes.
        links: the vehicle's links (modems), each impaired by the profile on its own; with
            two the vehicle bonds them (``[link] bond``, ``shared/bond.py``).
    """

    def __init__(
        self,
        profile: str | LinkProfile = "wired-1200km",
        *,
        seed: int = 0,
        prefix: str = "tdlab",
        motor_url: str = "sim://",
        python: str = sys.executable,
        links: int = 1,
    ) -> None:
        self.lab = LinkLab(profile, seed=seed, prefix=prefix, python=python, links=links)
        self._motor_url = motor_url
        self._python = python
        self._cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        """The probe's events, in arrival order."""
        self.vehicle_log: list[LogLine] = []
        self.hub_log: list[LogLine] = []
        self.operator_log: list[LogLine] = []
        self.cuts: list[Cut] = []
        self.hub_starts: list[float] = []
        self._links_lost: dict[int, list[tuple[float, float]]] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.hub: subprocess.Popen[str] | None = None
        self.vehicle: subprocess.Popen[str] | None = None
        self.probe: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> LabSystem:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def hub_url(self) -> str:
        """The hub's URL inside the lab."""
        return f"ws://{self.lab.addr('hub')}:{HUB_PORT}"

    def start(self) -> None:
        """Creates the lab and starts hub, vehicle and probe (everything is removed on error).

        Raises:
            LinkError: the lab or a process cannot start.
        """
        try:
            self.lab.start()
            self._tmp = tempfile.TemporaryDirectory(prefix="teledrive-linklab-")
            self.start_hub()
            config = Path(self._tmp.name) / "vehicle.toml"
            config.write_text(
                VEHICLE_TOML.format(
                    vehicle_id=VEHICLE_ID,
                    hub_url=self.hub_url,
                    motor_url=self._motor_url,
                    bond=str(self.lab.links > 1).lower(),
                )
            )
            self.vehicle = self.lab.run_in(
                "vehicle",
                self._cli("-v", "vehicle", "--config", str(config)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            self._follow(self.vehicle.stderr, self.vehicle_log)
            self.probe = self.lab.run_in(
                "operator",
                [
                    *(self._python, "-m", "teledrive.shared.linklab.probe", "-v"),
                    *("--hub", self.hub_url, "--vehicle", VEHICLE_ID),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            self._follow_events(self.probe.stdout)
            self._follow(self.probe.stderr, self.operator_log)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stops the processes and removes the lab. Safe to call more than once."""
        self.stop_probe()
        self.lab.close()  # stops what run_in started
        for thread in self._threads:
            thread.join(timeout=_STOP_TIMEOUT_S)
        self._threads.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _cli(self, *args: str) -> list[str]:
        return [self._python, "-m", "teledrive.shared.cli", *args]

    def start_hub(self) -> None:
        """Starts the hub on its lab address and waits until it listens.

        Raises:
            LinkError: it did not report its address in time.
        """
        listen = f"{self.lab.addr('hub')}:{HUB_PORT}"
        hub = self.lab.run_in(
            "hub",
            self._cli("-v", "hub", "--listen", listen),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.hub = hub
        assert hub.stdout is not None  # stdout=PIPE
        ready, _, _ = select.select([hub.stdout], [], [], _START_TIMEOUT_S * time_scale())
        line = hub.stdout.readline().strip() if ready else "<timeout>"
        if not line.startswith("hub listening on "):
            raise LinkError(f"linklab system: hub did not start on {listen}: {line!r}")
        self.hub_starts.append(now_ms())
        self._follow(hub.stderr, self.hub_log)

    def restart_hub(self) -> float:
        """Stops the hub (SIGTERM) and starts a new one at the same address.

        Returns:
            When the new hub was listening (CLOCK_MONOTONIC ms).
        """
        if self.hub is not None:
            _stop(self.hub)
        self.start_hub()
        return self.hub_starts[-1]

    def stop_probe(self) -> dict[str, Any] | None:
        """Asks the probe to stop and returns its final summary (None if it gave none)."""
        probe, self.probe = self.probe, None
        if probe is None:
            return None
        count = len(self.of("summary"))
        if probe.poll() is None and probe.stdin is not None:
            with contextlib.suppress(OSError):
                probe.stdin.write("stop\n")
                probe.stdin.flush()
            try:
                probe.wait(timeout=_STOP_TIMEOUT_S * time_scale())
            except subprocess.TimeoutExpired:
                _stop(probe)
        with self._cond:
            self._cond.wait_for(lambda: len(self.of("summary")) > count, timeout=1.0)
        summaries = self.of("summary")
        return summaries[-1] if len(summaries) > count else None

    # -- output readers -----------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _follow(self, stream: IO[str] | None, sink: list[LogLine]) -> None:
        if stream is None:
            return

        def read() -> None:
            for line in stream:
                with self._cond:
                    sink.append(LogLine(now_ms(), line.rstrip("\n")))
                    self._cond.notify_all()

        self._spawn(read)

    def _follow_events(self, stream: IO[str] | None) -> None:
        if stream is None:
            return

        def read() -> None:
            for line in stream:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("linklab probe printed a non-JSON line: %r", line[:200])
                    continue
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

        self._spawn(read)

    # -- waiting and acting -------------------------------------------------------------------

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The probe's events of one kind (a snapshot)."""
        with self._cond:
            return [event for event in self.events if event["ev"] == kind]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Waits until ``predicate()`` holds (checked on every new output line).

        Raises:
            LinkError: not within ``timeout_s`` (times ``TELEDRIVE_TIME_SCALE``).
        """
        with self._cond:
            if not self._cond.wait_for(predicate, timeout=timeout_s * time_scale()):
                raise LinkError(f"linklab system: timed out after {timeout_s} s waiting for {what}")

    def hold(self, duration_s: float) -> None:
        """Lets the system run for ``duration_s`` (a measurement window, not a synchronisation)."""
        deadline_s = time.monotonic() + duration_s
        with self._cond:
            self._cond.wait_for(lambda: time.monotonic() >= deadline_s, timeout=duration_s)

    def driving_since(self, t_ms: float) -> bool:
        """Whether telemetry after ``t_ms`` shows an operator command being applied."""
        return any(
            event["mode"] in OPERATOR_MODES and event["seq"] and event["age_ms"] is not None
            for event in self._events_of("tel", t_ms)
        )

    def wait_driving(self, timeout_s: float = 30.0, *, since_ms: float = 0.0) -> None:
        """Waits until the operator drives (took over and its commands are applied)."""
        self.wait_for(lambda: self.driving_since(since_ms), timeout_s, "the operator driving")

    def _events_of(self, kind: str, since_ms: float = 0.0) -> Iterator[dict[str, Any]]:
        # Events arrive in time order: scan back from the newest (waits check on every line).
        start = len(self.events)
        while start > 0 and self.events[start - 1]["t"] > since_ms:
            start -= 1
        return (e for e in self.events[start:] if e["ev"] == kind)

    def sessions(self) -> int:
        """Sessions the operator has answered so far."""
        with self._cond:
            return sum(1 for event in self.events if event["ev"] == "offer")

    def cut(self, duration_s: float) -> Cut:
        """Cuts every link both ways for ``duration_s``, now."""
        sessions = self.sessions()
        start_ms = now_ms()
        self.lab.cut(duration_s)
        cut = Cut(start_ms, start_ms + duration_s * 1000.0, sessions)
        self.cuts.append(cut)
        return cut

    def lose_link(self, link: int, duration_s: float) -> None:
        """Cuts one of the vehicle's links both ways for ``duration_s``, now.

        Not an outage: the vehicle's other link carries on, so gaps during it are measured.

        Raises:
            ConfigError: the lab has one link (cut it with :meth:`cut`: that is an outage).
        """
        if self.lab.links < 2:
            raise ConfigError("linklab system: lose_link needs two links; use cut() for one")
        start_ms = now_ms()
        self.lab.cut(duration_s, link=link)
        self._links_lost.setdefault(link, []).append((start_ms, start_ms + duration_s * 1000.0))

    def summary(self) -> dict[str, Any]:
        """The probe's figures now (it prints a summary on request)."""
        count = len(self.of("summary"))
        probe = self.probe
        if probe is None or probe.stdin is None:
            raise LinkError("linklab system: the probe is not running")
        probe.stdin.write("summary\n")
        probe.stdin.flush()
        self.wait_for(lambda: len(self.of("summary")) > count, 10.0, "a probe summary")
        return self.of("summary")[-1]

    # -- figures ------------------------------------------------------------------------------

    def frame_times(self, since_ms: float = 0.0, until_ms: float = float("inf")) -> list[float]:
        """Arrival times of decoded frames at the operator."""
        with self._cond:
            return [e["t"] for e in self._events_of("frame", since_ms) if e["t"] <= until_ms]

    def first_frame_after(self, cut: Cut) -> dict[str, Any] | None:
        """The first frame of a new session after the link returned."""
        return self.first_frame_of_a_new_session(cut.end_ms, cut.sessions_before)

    def first_frame_of_a_new_session(
        self, since_ms: float, sessions_before: int
    ) -> dict[str, Any] | None:
        """The first frame after ``since_ms`` of a session after the first ``sessions_before``."""
        with self._cond:
            for event in self._events_of("frame", since_ms):
                if event["session"] > sessions_before:
                    return event
        return None

    def reconnect_first_frame_ms(self, cut: Cut) -> float | None:
        """Link back -> first frame of a new session at the operator."""
        event = self.first_frame_after(cut)
        return None if event is None else event["t"] - cut.end_ms

    def log_lines(
        self,
        process: Literal["hub", "vehicle", "operator"],
        since_ms: float,
        until_ms: float = float("inf"),
        *,
        containing: tuple[str, ...] = (),
    ) -> list[LogLine]:
        """Lines a process logged after ``since_ms`` up to ``until_ms``, with every text given."""
        log = {"hub": self.hub_log, "vehicle": self.vehicle_log, "operator": self.operator_log}
        with self._cond:
            return [
                line
                for line in log[process]
                if since_ms < line.t_ms <= until_ms and all(t in line.text for t in containing)
            ]

    def mode_changes(self, since_ms: float = 0.0, until_ms: float = math.inf) -> list[ModeChange]:
        """The vehicle's mode changes from its log."""
        changes = []
        for line in self.log_lines("vehicle", since_ms, until_ms):
            match = _MODE_LINE.search(line.text)
            if match:
                at_ms = float(match.group(3)) if match.group(3) else line.t_ms
                changes.append(ModeChange(at_ms, match.group(1), match.group(2), match.group(4)))
        return changes

    def fallbacks(self, since_ms: float, until_ms: float = math.inf) -> list[ModeChange]:
        """The vehicle leaving the operator for autonomy or a minimal-risk stop."""
        return [
            change
            for change in self.mode_changes(since_ms, until_ms)
            if change.previous in OPERATOR_MODES and change.mode in FALLBACK_MODES
        ]

    def in_control_at(self, cut: Cut) -> bool:
        """Whether the operator drove when the cut began (else nothing could fall back)."""
        before = [change for change in self.mode_changes() if change.t_ms <= cut.start_ms]
        return bool(before) and before[-1].mode in OPERATOR_MODES

    def fallback_ms(self, cut: Cut) -> float | None:
        """Cut -> the vehicle leaving the operator (autonomy or minimal-risk stop).

        None when the operator was not in control at the cut (:meth:`in_control_at`: a
        fallback had already happened, e.g. for frozen video on a lossy link), or when the
        vehicle never left it: tell the two apart with :meth:`in_control_at`.
        """
        if not self.in_control_at(cut):
            return None
        after = [change for change in self.fallbacks(0.0) if change.t_ms > cut.start_ms]
        return after[0].t_ms - cut.start_ms if after else None

    def commands_applied_from_before(self, cut: Cut) -> int:
        """Telemetry after the link returned naming an applied command sent before that."""
        with self._cond:
            return sum(
                1
                for event in self._events_of("tel", cut.end_ms)
                if event["seq"]
                and event["mode"] in OPERATOR_MODES
                and (event["sent_t"] is None or event["sent_t"] < cut.end_ms)
            )

    def longest_freeze_ms(self, since_ms: float, until_ms: float = float("inf")) -> float:
        """Longest gap between frames at the operator, leaving out gaps that span a cut."""
        return longest_gap_ms(self.frame_times(since_ms, until_ms), self.cuts)

    def longest_freeze_beyond_fades_ms(
        self,
        since_ms: float,
        until_ms: float = float("inf"),
        *,
        stats: dict[str, Any] | None = None,
    ) -> float:
        """Like :meth:`longest_freeze_ms`, less the time the link faded during each gap.

        A fade of the uplink takes the video away, one of the downlink the requests that
        recover it (NACKs, keyframe requests); no receiver can show a frame before the link
        is back. What is left of a gap is the time the system itself took to recover (see
        :func:`frame_gaps`). ``stats``: a snapshot of ``self.lab.stats()`` already taken.
        """
        gaps = self.freezes(since_ms, until_ms, stats=stats)
        return max((gap.beyond_fades_ms for gap in gaps), default=0.0)

    def freezes(
        self,
        since_ms: float,
        until_ms: float = float("inf"),
        *,
        stats: dict[str, Any] | None = None,
    ) -> list[Gap]:
        """Every gap between frames at the operator (cuts left out), with its time and length.

        ``stats``: a snapshot of ``self.lab.stats()`` already taken.
        """
        stats = stats if stats is not None else self.lab.stats()
        profile = self.lab.profile
        fades = [
            fade for direction in ("uplink", "downlink") for fade in self._fades(stats, direction)
        ]
        lookback_ms = max(
            profile.uplink.delay_ms + profile.uplink.jitter_ms,
            profile.downlink.delay_ms + profile.downlink.jitter_ms,
        )
        return frame_gaps(
            self.frame_times(since_ms, until_ms),
            self.cuts,
            fades=fades,
            lookback_ms=lookback_ms,
        )

    def _fades(self, stats: dict[str, Any], direction: str) -> list[tuple[float, float]]:
        """A direction's fades; with bonded links, the times every link was down at once.

        A link is down in its fades and while :meth:`lose_link` has it cut.
        """

        def down(link: int, fades: list[Any]) -> list[tuple[float, float]]:
            intervals = [(float(start), float(end)) for start, end in fades]
            return merged([*intervals, *self._links_lost.get(link, [])])

        common = down(1, stats[direction]["fades"])
        for link in range(2, self.lab.links + 1):
            other = down(link, self.lab.stats_of(link)[direction]["fades"])
            common = fades_in_common(common, other)
        return common

    def registrations(self, since_ms: float) -> list[tuple[str, str]]:
        """``(role, id)`` registered at the hub after ``since_ms`` (from the hub's log)."""
        found = []
        for line in self.log_lines("hub", since_ms):
            match = _REGISTERED_LINE.search(line.text)
            if match:
                found.append((match.group(1), match.group(2)))
        return found


def merged(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``(start, end)`` intervals sorted, with overlapping ones joined."""
    joined: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end))
        else:
            joined.append((start, end))
    return joined


def fades_in_common(
    first: Sequence[tuple[float, float]], second: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The times inside a fade of both lists (``(start_ms, end_ms)``, each ascending, disjoint).

    Two bonded links lose a datagram only when both are faded, so only these times excuse a
    freeze.
    """
    common: list[tuple[float, float]] = []
    i = j = 0
    while i < len(first) and j < len(second):
        start = max(first[i][0], second[j][0])
        end = min(first[i][1], second[j][1])
        if start < end:
            common.append((start, end))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return common


def longest_gap_ms(
    times_ms: Sequence[float],
    cuts: Sequence[Cut],
    *,
    fades: Sequence[tuple[float, float]] = (),
    lookback_ms: float = 0.0,
) -> float:
    """The longest ``beyond_fades_ms`` of :func:`frame_gaps` (0 for fewer than two frames)."""
    gaps = frame_gaps(times_ms, cuts, fades=fades, lookback_ms=lookback_ms)
    return max((gap.beyond_fades_ms for gap in gaps), default=0.0)


class Gap(NamedTuple):
    """A gap between two frames at the operator.

    Attributes:
        start_ms: arrival of the frame before it.
        length_ms: time to the next frame.
        beyond_fades_ms: ``length_ms`` less the link's fades in it (see :func:`frame_gaps`).
    """

    start_ms: float
    length_ms: float
    beyond_fades_ms: float


def frame_gaps(
    times_ms: Sequence[float],
    cuts: Sequence[Cut],
    *,
    fades: Sequence[tuple[float, float]] = (),
    lookback_ms: float = 0.0,
) -> list[Gap]:
    """Each gap between consecutive frame times, and what is left of it beyond the link's fades.

    Gaps that overlap a cut are left out. From each other gap the time the link was faded
    (``(start_ms, end_ms)``, either direction, overlapping fades counted once) between
    ``lookback_ms`` (the worst one-way delay: frames lost in a fade were due that much later)
    before the gap's first frame and its last frame is subtracted. A fade that began earlier
    but lasted into that window counts with its part inside it. Times, cuts and fades share
    one clock.

    Args:
        times_ms: frame arrival times, ascending.
        cuts: the link's cuts.
        fades: the link's fades that lost frames.
        lookback_ms: how long before a gap's first frame fade time still counts against it.

    Returns:
        The gaps, in time order.
    """
    gaps: list[Gap] = []
    for before, after in itertools.pairwise(times_ms):
        if any(before < cut.end_ms and after > cut.start_ms for cut in cuts):
            continue
        # Each fade clipped to the gap's window (the gap and its lookback).
        window_start = before - lookback_ms
        counted = sorted(
            (max(start, window_start), min(end, after))
            for start, end in fades
            if start < after and end > window_start
        )
        faded_ms, covered_until = 0.0, -math.inf
        for start, end in counted:
            faded_ms += max(0.0, end - max(start, covered_until))
            covered_until = max(covered_until, end)
        # The window is longer than the gap by the lookback: never less than nothing left.
        gaps.append(Gap(before, after - before, max(0.0, after - before - faded_ms)))
    return gaps


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
