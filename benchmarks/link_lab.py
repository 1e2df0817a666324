"""The whole system over an emulated long-haul link: video, commands, a cut, the recovery.

Starts hub, vehicle and a headless operator in a link lab (``teledrive.shared.linklab.system``:
the vehicle alone on the far side of the link, hub and operator in the operations centre)
under a named profile, waits until the operator drives, measures for ``--window`` seconds,
then cuts the link both ways for ``--cut`` seconds while driving and keeps going until the
first frame of the new session plus ``--after`` seconds.

* g2g_ms_p50/p95: live glass-to-glass at the operator (vehicle FrameTimes + clock sync),
  over the run up to the cut.
* command_latency_ms_p50/p95: age of each applied command when the vehicle applied it
  (operator send -> motor-controller write), from telemetry, up to the cut.
* fallback_ms_max: cut -> the vehicle leaving the operator (AUTONOMY or MINIMAL_RISK_STOP),
  over the cuts that found the operator in control (``cuts_not_in_control`` counts the others),
  stamped with the vehicle's own monotonic time of the transition (the worst of the cuts).
* reconnect_first_frame_ms: link back -> first frame of a NEW peer connection at the operator,
  the worst of the cuts (``reconnect_first_frame_ms_each``: every cut;
  ``reconnects_over_2000_ms``: how many cuts took longer than 2 s or never came back).
* longest_freeze_ms: longest gap between frames at the operator, leaving out the cut.
* longest_freeze_beyond_fades_ms: the same, less the time the link faded (either direction:
  the uplink carries the video, the downlink the requests that recover it) during each gap,
  i.e. the time the system itself took to recover once the link was back.
* longest_fade_ms: per direction, the longest fade of the link that lost a frame (profiles
  with ``fades``; 0 otherwise): a freeze cannot be shorter than an uplink fade plus the
  one-way delay, and with retransmission it lasts about a fade plus a round trip.
* freezes_over_ms: how many whole gaps passed 300 and 500 ms (what the vehicle's video-freeze
  bound sees, cuts left out; compare ``benchmarks/repair_model.py``).
* freezes_beyond_fades_over_ms: how many gaps (beyond fades) passed 300 and 500 ms, and
  ``freezes_measured`` how many gaps there were: for long runs (``--window``, ``--cuts``,
  ``--after``), where the worst case alone says little about how often a bound breaks;
  ``freezes_over_500_beyond_fades`` lists the first ten of those over 500 ms, each with how
  long after the end of the last cut it began (None: before the first cut).
* video_frozen_fallbacks: times the vehicle left the operator because the operator's video
  froze for 300 ms, in the steady window (the safe reaction to a long retransmission).
* stale_commands_applied: the vehicle's runtime count of commands applied past their bound;
  commands_from_before_cut_applied_after: telemetry after the link returned naming an
  applied command the operator sent before it returned (both must be 0).
* sessions: sessions the operator answered (one more than the cuts when nothing else ended
  one); ``sessions_ended_by``: why the hub ended them, and how often (a cut ends one by the
  operator connecting again and one by the vehicle reconnecting).
* first_operator_data_ms_max: the longest a session waited for the operator's first data
  channel message after it began (the vehicle re-dials a session silent for 5 s).
* video_sent: per camera ``[width, height, fps, bitrate_bps]`` the vehicle sent at the end of
  the steady window (how the video adapted to the link).
* video_recovery: the operator's video jitter-buffer counters over the whole run
  (retransmissions recovered, waits expired, keyframe requests, repeated NACKs and requests).

``--per-frame-bursts`` replaces the profile's fades (bursty loss in time) with a per-frame
Gilbert-Elliott chain of the same loss ratio and a mean burst of 4 frames: what ``bad-cell``
was up to session 2, kept as a baseline.

``--trace`` turns on the video path's DEBUG log in the vehicle and the operator (budget ticks,
operating points, encoder opens, forced keyframes, the jitter buffer's losses and requests)
and lists each freeze over 500 ms beyond fades with the log lines from 700 ms before it to
its end (``log``), so a long run explains its own worst freezes; likewise each reconnect over
2 s with its log (the hub's too) from the link's return to the first frame
(``reconnects_over_2000_ms_log``).

``--links 2`` gives the vehicle a second modem: a second link under the same profile with
its own random draws, and the vehicle and operator bond the two (``shared/bond.py``: every
datagram over both). A cut takes both; a freeze is then measured beyond the times both links
were faded at once, and ``bonded_sessions`` counts the sessions that bonded.

``--seed`` picks the link's random draws (fades, jitter, loss): runs with one seed differ only
through timing.

Needs root (network namespaces); otherwise prints why and a JSON object with ``skipped``.
Prints one JSON object (the last line) with --json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections import Counter
from typing import Any

from teledrive.shared.errors import LinkError
from teledrive.shared.linklab import (
    PROFILES,
    DirectionProfile,
    GilbertElliott,
    LinkProfile,
    resolve_profile,
    unavailable_reason,
)
from teledrive.shared.linklab.system import LabSystem, now_ms
from teledrive.shared.log_levels import ENV_VAR

JITTER_BOUND_MS = 2.0
TARGETS = {  # issue [linklab], under wired-1200km
    "g2g_ms_p50": 12.5 + 10.0,
    "command_latency_ms_p95": 12.5 + 5.0 + JITTER_BOUND_MS,
    "reconnect_first_frame_ms": 2000.0,
    "stale_commands_applied": 0,
}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _seconds(value_ms: float | None) -> float | None:
    return None if value_ms is None else round(value_ms / 1000.0, 1)


def _since_last_cut_ms(at_ms: float, cut_ends_ms: list[float]) -> float | None:
    """How long after the latest cut that ended by ``at_ms`` it is (None: before any)."""
    return min((at_ms - end for end in cut_ends_ms if end <= at_ms), default=None)


def per_frame_bursts(profile: LinkProfile) -> LinkProfile:
    """The same profile with its fades replaced by a per-frame chain (mean burst 4 frames)."""

    def swap(direction: DirectionProfile) -> DirectionProfile:
        if direction.fades is None:
            return direction
        chain = GilbertElliott.for_mean_loss(direction.fades.mean_loss_ratio, 4.0)
        return dataclasses.replace(direction, fades=None, burst_loss=chain)

    return LinkProfile(
        name=f"{profile.name}+per-frame-bursts",
        uplink=swap(profile.uplink),
        downlink=swap(profile.downlink),
    )


FREEZE_THRESHOLDS_MS = (300, 500)
MAX_LISTED = 10
TRACE_LOGGERS = (
    "teledrive.vehicle.video_adapt",
    "teledrive.vehicle.video_track",
    "teledrive.vehicle.h264_encoder",
    "teledrive.operator.video_receive",
    "teledrive.shared.handshake_resend",
)
"""What ``--trace`` logs at DEBUG: the video path's decisions, a few lines a second, and the
handshake resender's while a connection starts."""
TRACE_BEFORE_MS = 700.0
"""How far before a listed freeze its ``log`` starts (the loss behind it came earlier)."""
TRACE_MAX_LINES = 120
_TRACE_SKIPPED = ("aioice", "clock sync")


def _log_around(
    lab: LabSystem,
    start_ms: float,
    end_ms: float,
    *,
    before_ms: float = TRACE_BEFORE_MS,
    skipped: tuple[str, ...] = _TRACE_SKIPPED,
    hub: bool = False,
) -> list[str]:
    """The vehicle's and operator's (and the hub's) log lines from ``before_ms`` before
    ``start_ms`` to ``end_ms``, timed from ``start_ms``, leaving out lines naming ``skipped``."""
    lines = sorted(
        [(line.t_ms, "vehicle", line.text) for line in lab.vehicle_log]
        + [(line.t_ms, "operator", line.text) for line in lab.operator_log]
        + ([(line.t_ms, "hub", line.text) for line in lab.hub_log] if hub else [])
    )
    return [
        f"{t_ms - start_ms:+.0f} {who}: {text.split(': ', 1)[-1][:160]}"
        for t_ms, who, text in lines
        if start_ms - before_ms <= t_ms <= end_ms and not any(skip in text for skip in skipped)
    ][:TRACE_MAX_LINES]


_RECONNECT_SKIPPED = ("clock sync", "video budget", "packet", "another connection of its dial")
"""Left out of a slow reconnect's log: what comes every tick or per packet, and the hub
refusing the re-dial attempts that lost the race."""


RECONNECT_BOUND_MS = 2000.0
_SESSION_ENDED = re.compile(r"hub: session \S+ ended: (.*)$")
_FIRST_DATA = re.compile(r"first data from the operator (\d+) ms after it began")


def _sessions_ended_by(lab: LabSystem) -> dict[str, int]:
    """Why the hub ended sessions over the run (its log), and how often."""
    reasons = Counter(
        match.group(1)
        for line in lab.log_lines("hub", 0.0, containing=(" ended: ",))
        if (match := _SESSION_ENDED.search(line.text))
    )
    return dict(reasons.most_common())


def _first_data_ms(lab: LabSystem) -> list[float]:
    """Per session, how long after it began the vehicle first heard the operator's data."""
    return [
        float(match.group(1))
        for line in lab.log_lines("vehicle", 0.0, containing=("first data",))
        if (match := _FIRST_DATA.search(line.text))
    ]


def run(
    profile: str | LinkProfile,
    *,
    window_s: float,
    cut_s: float,
    after_s: float,
    cuts: int,
    seed: int = 1,
    trace: bool = False,
    links: int = 1,
) -> dict[str, Any]:
    """Runs one profile and returns the figures."""
    with LabSystem(profile, seed=seed, links=links) as lab:
        lab.wait_driving(timeout_s=60.0)
        window_start_ms = now_ms()
        lab.hold(window_s)
        frames = len(lab.frame_times(window_start_ms))
        steady = lab.summary()
        frozen = sum(
            "video frozen" in change.reason for change in lab.fallbacks(window_start_ms, now_ms())
        )
        fallbacks: list[float | None] = []  # of the cuts that found the operator in control
        not_in_control = 0
        reconnects: list[float | None] = []
        from_before = 0
        for _ in range(cuts):
            lab.wait_driving(timeout_s=30.0, since_ms=now_ms())
            cut = lab.cut(cut_s)
            try:
                lab.wait_for(
                    lambda cut=cut: lab.first_frame_after(cut) is not None,  # type: ignore[misc]
                    cut_s + 20.0,
                    "the first frame of a new session",
                )
            except LinkError as err:
                print(f"link_lab: {err}", file=sys.stderr)
            lab.hold(after_s)
            if lab.in_control_at(cut):
                fallbacks.append(lab.fallback_ms(cut))  # None here: it never fell back
            else:
                not_in_control += 1
            reconnects.append(lab.reconnect_first_frame_ms(cut))
            from_before += lab.commands_applied_from_before(cut)
        slow_reconnects = [
            {
                "reconnect_ms": _r(reconnect),
                "log": _log_around(
                    lab,
                    cut.end_ms,
                    # (None: no first frame within the 20 s waited after the cut)
                    cut.end_ms + (reconnect if reconnect is not None else 20_000.0),
                    before_ms=0.0,
                    skipped=_RECONNECT_SKIPPED,
                    hub=True,
                ),
            }
            for cut, reconnect in zip(lab.cuts, reconnects, strict=True)
            if trace and (reconnect is None or reconnect > RECONNECT_BOUND_MS)
        ]
        freeze_ms = lab.longest_freeze_ms(window_start_ms)
        link = lab.lab.stats()
        gaps = lab.freezes(window_start_ms, stats=link)
        beyond_fades = [gap.beyond_fades_ms for gap in gaps]
        cut_ends = [cut.end_ms for cut in lab.cuts]
        driven_s = (now_ms() - window_start_ms) / 1000.0
        ended_by = _sessions_ended_by(lab)
        first_data = _first_data_ms(lab)
        final = lab.stop_probe() or {}
    known_fallbacks = [f for f in fallbacks if f is not None]
    known_reconnects = [r for r in reconnects if r is not None]
    result: dict[str, Any] = {
        "profile": profile if isinstance(profile, str) else profile.name,
        "window_s": window_s,
        "cut_s": cut_s,
        "cuts": cuts,
        "seed": seed,
        "minutes": round(driven_s / 60.0, 2),
        "video_fps": round(frames / window_s, 2),
        "g2g_ms_p50": steady.get("g2g_ms_p50"),
        "g2g_ms_p95": steady.get("g2g_ms_p95"),
        "command_latency_ms_p50": steady.get("command_latency_ms_p50"),
        "command_latency_ms_p95": steady.get("command_latency_ms_p95"),
        "rtt_ms_p50": steady.get("rtt_ms_p50"),
        # A cut that found the operator in control and never saw a fallback makes it None.
        "fallback_ms_max": (
            _r(max(known_fallbacks))
            if fallbacks and len(known_fallbacks) == len(fallbacks)
            else None
        ),
        "cuts_not_in_control": not_in_control,
        "reconnect_first_frame_ms": (
            _r(max(known_reconnects)) if len(known_reconnects) == cuts else None
        ),
        "reconnect_first_frame_ms_each": [_r(r) for r in reconnects],
        "reconnects_over_2000_ms": sum(r is None or r > RECONNECT_BOUND_MS for r in reconnects),
        **({"reconnects_over_2000_ms_log": slow_reconnects} if trace else {}),
        "longest_freeze_ms": _r(freeze_ms),
        "longest_freeze_beyond_fades_ms": _r(max(beyond_fades, default=0.0)),
        "freezes_measured": len(beyond_fades),
        "freezes_beyond_fades_over_ms": {
            str(limit): sum(gap > limit for gap in beyond_fades) for limit in FREEZE_THRESHOLDS_MS
        },
        # Whole gaps, as the vehicle's 300 ms video-freeze bound sees them.
        "freezes_over_ms": {
            str(limit): sum(gap.length_ms > limit for gap in gaps) for limit in FREEZE_THRESHOLDS_MS
        },
        "freezes_over_500_beyond_fades": [
            {
                "gap_ms": _r(gap.length_ms),
                "beyond_fades_ms": _r(gap.beyond_fades_ms),
                "after_cut_ms": _r(_since_last_cut_ms(gap.start_ms, cut_ends)),
                **(
                    {"log": _log_around(lab, gap.start_ms, gap.start_ms + gap.length_ms)}
                    if trace
                    else {}
                ),
            }
            for gap in gaps
            if gap.beyond_fades_ms > FREEZE_THRESHOLDS_MS[-1]
        ][:MAX_LISTED],
        # When the freezes over 300 ms beyond fades began, in seconds after the link last
        # came back (None: before the first cut): a cause tied to the reconnect shows as a
        # cluster.
        "freezes_over_300_after_cut_s": [
            _seconds(_since_last_cut_ms(gap.start_ms, cut_ends))
            for gap in gaps
            if gap.beyond_fades_ms > FREEZE_THRESHOLDS_MS[0]
        ],
        "video_frozen_fallbacks": frozen,
        "stale_commands_applied": final.get("stale_commands_applied"),
        "commands_from_before_cut_applied_after": from_before,
        "sessions": final.get("sessions"),
        "sessions_ended_by": ended_by,
        "first_operator_data_ms_max": _r(max(first_data, default=None)),
        "operator_errors": final.get("errors"),
        "video_sent": steady.get("video"),
        "video_recovery": final.get("video_recovery"),
        "link_dropped": {
            direction: link[direction]["dropped"] for direction in ("uplink", "downlink")
        },
        "links": links,
        "bonded_sessions": sum(
            "none (no other path)" not in line.text
            for line in lab.log_lines("vehicle", 0.0, containing=("bonding:",))
        ),
        "longest_fade_ms": {
            direction: _r(link[direction]["longest_fade_ms"])
            for direction in ("uplink", "downlink")
        },
    }
    if profile == "wired-1200km":
        result["targets"] = TARGETS
        result["target_met"] = _targets_met(result)
    return result


def _targets_met(result: dict[str, Any]) -> bool:
    for key, limit in TARGETS.items():
        value = result.get(key)
        if value is None or value > limit:
            return False
    return result["commands_from_before_cut_applied_after"] == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="wired-1200km", choices=sorted(PROFILES))
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--window", type=float, default=8.0, help="steady window, s")
    parser.add_argument("--cut", type=float, default=3.0, help="cut length, s")
    parser.add_argument("--cuts", type=int, default=1, help="how many cuts")
    parser.add_argument("--after", type=float, default=3.0, help="run on after recovery, s")
    parser.add_argument("--seed", type=int, default=1, help="seed of the link's random draws")
    parser.add_argument(
        "--per-frame-bursts",
        action="store_true",
        help="replace fades with a per-frame Gilbert-Elliott chain (the pre-session-3 bad-cell)",
    )
    parser.add_argument(
        "--links",
        type=int,
        default=1,
        choices=(1, 2),
        help="the vehicle's modems, each its own link under the profile; 2 bonds them",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="log the video path at DEBUG and list each freeze over 500 ms with its log",
    )
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"link_lab: skipped: {reason}", file=sys.stderr)
        print(json.dumps({"profile": args.profile, "skipped": reason}))
        return 0
    if args.trace:  # the processes the lab starts read it (teledrive.shared.log_levels)
        levels = ",".join(f"{name}=DEBUG" for name in TRACE_LOGGERS)
        os.environ[ENV_VAR] = ",".join(filter(None, (os.environ.get(ENV_VAR), levels)))
    profile: str | LinkProfile = args.profile
    if args.per_frame_bursts:
        profile = per_frame_bursts(resolve_profile(args.profile))
    result = run(
        profile,
        window_s=args.window,
        cut_s=args.cut,
        after_s=args.after,
        cuts=args.cuts,
        seed=args.seed,
        trace=args.trace,
        links=args.links,
    )
    if not args.json:
        for key, value in result.items():
            print(f"{key}: {value}", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
