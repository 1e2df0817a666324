"""Real link-lab tests: namespaces, the relay, UDP across it. Need root; skip otherwise."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teledrive.shared.errors import LinkError
from teledrive.shared.linklab import (
    DirectionProfile,
    LinkLab,
    LinkProfile,
    cleanup,
    unavailable_reason,
)
from teledrive.shared.linklab.netns import LabNames, list_namespaces
from teledrive.shared.linklab.relay import control_request

_REASON = unavailable_reason()
pytestmark = [
    pytest.mark.linklab,
    pytest.mark.skipif(_REASON is not None, reason=f"link lab unavailable: {_REASON}"),
]

PREFIX = "tdtest"  # never touches a developer's `tdlab` labs
TOOL = [sys.executable, str(Path(__file__).with_name("udp_tool.py"))]
PORT = 5000
SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
ETH_IP_UDP_HEADER_BYTES = 14 + 20 + 8


def fixed(name: str, **direction: Any) -> LinkProfile:
    profile = DirectionProfile(**direction)
    return LinkProfile(name=name, uplink=profile, downlink=profile)


def read_line(process: subprocess.Popen[str], expected: str, timeout_s: float = 10.0) -> None:
    """Wait (bounded) for the process to print ``expected`` as its next line."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s * SCALE)
    line = process.stdout.readline().strip() if ready else "<timeout>"
    assert line == expected, f"expected {expected!r} from {process.args!r}, got {line!r}"


def result_of(process: subprocess.Popen[str], timeout_s: float = 30.0) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout_s * SCALE)
    assert process.returncode == 0, out
    parsed: dict[str, Any] = json.loads(out.splitlines()[-1])
    return parsed


def start_echo(lab: LinkLab, role: str = "operator") -> subprocess.Popen[str]:
    echo = lab.run_in(
        role,  # type: ignore[arg-type]
        [*TOOL, "echo", "--port", str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    read_line(echo, "ready")
    return echo


def ping(
    lab: LinkLab, *options: str, src: str = "vehicle", dst: str = "operator"
) -> subprocess.Popen[str]:
    target = f"{lab.addr(dst)}:{PORT}"  # type: ignore[arg-type]
    argv = [*TOOL, "ping", "--to", target, *options]
    process = lab.run_in(src, argv, stdout=subprocess.PIPE, text=True)  # type: ignore[arg-type]
    read_line(process, "started")
    return process


def warm_up(lab: LinkLab) -> None:
    """A first exchange, so that measurements do not include the sockets' first use."""
    result = result_of(ping(lab, "--count", "3", "--interval-ms", "5"))
    assert any(rtt is not None for rtt in result["rtts_ms"]), "no echo reply at all"


def lab_namespaces(lab_id: str) -> list[str]:
    return [name for name in list_namespaces() if name.startswith(f"{lab_id}-")]


@pytest.fixture
def host_links() -> Iterator[str]:
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    yield before
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = lambda text: {line.split(":")[1].strip() for line in text.splitlines()}  # noqa: E731
    assert names(after) == names(before), "the lab left interfaces in the host namespace"


def test_rtt_is_twice_the_one_way_delay() -> None:
    with LinkLab(fixed("fixed-20ms", delay_ms=20.0), prefix=PREFIX) as lab:
        start_echo(lab)
        warm_up(lab)
        rtts = result_of(ping(lab, "--count", "40", "--interval-ms", "10"))["rtts_ms"]
    assert None not in rtts
    assert min(rtts) >= 40.0  # the relay never sends early
    assert sorted(rtts)[len(rtts) // 2] < 43.0  # median: 2 x 20 ms plus little overhead


def test_no_address_resolution_crosses_the_link() -> None:
    # A vehicle's only layer-2 neighbour is its modem: nothing should wait for ARP over the
    # emulated link, neither the first datagram nor the first after a cut. The vehicle's
    # neighbour timers are made short, so that with ARP over the link its entry for the
    # operator would fail during the cut (probes lost) and need a resolution afterwards.
    delay_ms, interval_ms, cut_s = 30.0, 20.0, 2.5
    with LinkLab(fixed("fixed-30ms", delay_ms=delay_ms), prefix=PREFIX) as lab:
        for setting in (
            "base_reachable_time_ms=200",
            "delay_first_probe_time=1",
            "ucast_solicit=1",
            "retrans_time_ms=100",
        ):
            sysctl = f"net.ipv4.neigh.eth0.{setting}"
            subprocess.run(
                ["ip", "netns", "exec", lab.namespace("vehicle"), "sysctl", "-q", "-w", sysctl],
                check=True,
            )
        start_echo(lab)
        count = int(6000 / interval_ms)
        pinger = ping(lab, "--count", str(count), "--interval-ms", str(interval_ms))
        read_line(pinger, "first-reply")
        lab.cut(cut_s)
        rtts = result_of(pinger)["rtts_ms"]
    assert rtts[0] is not None, rtts[:3]
    assert rtts[0] < 2 * delay_ms + 15.0, rtts[:3]
    lost = rtts.index(None)  # the cut
    back = next(i for i in range(lost, len(rtts)) if rtts[i] is not None)
    assert (back - lost) * interval_ms >= cut_s * 1000.0 / 2  # the cut did take them
    # The first datagram through after the cut took one round trip, not a resolution too.
    assert rtts[back] < 2 * delay_ms + 15.0, rtts[back : back + 5]


def test_hub_is_reachable_from_both_sides_and_local_to_the_operator() -> None:
    with LinkLab(fixed("fixed-15ms", delay_ms=15.0), prefix=PREFIX) as lab:
        start_echo(lab, role="hub")
        far = result_of(ping(lab, "--count", "10", "--wait-ms", "200", dst="hub"))["rtts_ms"]
        near = ping(lab, "--count", "10", "--wait-ms", "200", src="operator", dst="hub")
        near_rtts = result_of(near)["rtts_ms"]
    assert None not in near_rtts
    assert max(near_rtts) < 10.0  # operator and hub share the operations centre
    assert min(rtt for rtt in far if rtt is not None) >= 30.0  # vehicle crosses the link


def test_loss_ratio_is_within_statistical_bounds() -> None:
    with LinkLab("lan", prefix=PREFIX, seed=7) as lab:
        start_echo(lab)
        warm_up(lab)
        lab.set_profile(fixed("lossy", loss_ratio=0.2))
        rtts = result_of(ping(lab, "--count", "1000", "--interval-ms", "1"))["rtts_ms"]
        stats = lab.stats()
    answered = sum(rtt is not None for rtt in rtts) / len(rtts)
    # Round trip survives with 0.8 * 0.8 = 0.64; 1000 trials: sigma = 0.015, bound = 5 sigma.
    assert 0.64 - 0.076 < answered < 0.64 + 0.076
    uplink = stats["uplink"]
    assert 0.15 < uplink["dropped"]["loss"] / uplink["offered"] < 0.25
    assert stats["profile"] == "lossy"


def test_rate_limit_holds() -> None:
    rate_bps, size = 4e6, 1200
    with LinkLab(fixed("4mbit", rate_bps=rate_bps), prefix=PREFIX) as lab:
        sink = lab.run_in(
            "operator", [*TOOL, "sink", "--port", str(PORT)], stdout=subprocess.PIPE, text=True
        )
        read_line(sink, "ready")
        argv = ["blast", "--to", f"{lab.addr('operator')}:{PORT}", "--rate-bps", str(2 * rate_bps)]
        argv += ["--duration-s", "1.5", "--size", str(size)]
        blast = lab.run_in("vehicle", [*TOOL, *argv], stdout=subprocess.PIPE, text=True)
        read_line(blast, "started")
        result_of(blast)
        received = result_of(sink)
        stats = lab.stats()
    frames_bps = received["received"] * (size + ETH_IP_UDP_HEADER_BYTES) * 8 / received["span_s"]
    assert 0.9 * rate_bps < frames_bps < 1.03 * rate_bps
    assert stats["uplink"]["dropped"]["queue"] > 0  # twice the rate offered: the queue overflows


def test_cut_drops_everything_for_its_length_then_traffic_resumes() -> None:
    cut_s, interval_ms = 1.0, 10.0
    with LinkLab(fixed("fixed-5ms", delay_ms=5.0), prefix=PREFIX) as lab:
        start_echo(lab)
        pinger = ping(lab, "--count", "250", "--interval-ms", str(interval_ms))
        read_line(pinger, "first-reply")
        lab.cut(cut_s)
        result = result_of(pinger)
        stats = lab.stats()
    rtts, sent_at_ms = result["rtts_ms"], result["sent_at_ms"]
    lost = [i for i, rtt in enumerate(rtts) if rtt is None]
    assert lost, "the cut lost nothing"
    assert lost == list(range(lost[0], lost[-1] + 1)), "losses outside one contiguous cut"
    gap_ms = sent_at_ms[lost[-1]] - sent_at_ms[lost[0]] + interval_ms
    # Lost: pings sent from ~one-way delay before the cut (their replies are cut) to its end.
    assert cut_s * 1000 - 2 * interval_ms <= gap_ms <= cut_s * 1000 + 10 + 3 * interval_ms
    assert lost[0] > 0, "no traffic before the cut"
    assert lost[-1] < len(rtts) - 50, "no traffic after the cut"
    assert stats["uplink"]["dropped"]["outage"] + stats["downlink"]["dropped"]["outage"] >= len(
        lost
    )


def test_bad_control_requests_are_answered_counted_and_survived() -> None:
    with LinkLab("lan", prefix=PREFIX) as lab:
        with pytest.raises(LinkError, match="unknown op 'explode'"):
            control_request(lab.names.control_path, {"op": "explode"})
        with pytest.raises(LinkError, match="unknown link profile 'nope'"):
            control_request(lab.names.control_path, {"op": "profile", "name": "nope"})
        with pytest.raises(LinkError, match="duration_ms must be finite"):
            lab.cut(float("nan"))
        assert lab.stats()["relay"]["bad_requests"] == 3


def test_everything_is_removed_after_normal_exit(host_links: str) -> None:
    with LinkLab("lan", prefix=PREFIX) as lab:
        lab_id = lab.names.lab_id
        assert len(lab_namespaces(lab_id)) == 4
        sleeper = lab.run_in("vehicle", ["sleep", "600"])
    assert lab_namespaces(lab_id) == []
    assert sleeper.poll() is not None, "a process started in the lab outlived it"
    assert not Path(f"/run/teledrive-linklab/{lab_id}.sock").exists()


def test_everything_is_removed_after_an_exception_inside_the_with(host_links: str) -> None:
    lab_ids: list[str] = []

    def fail_inside_the_lab() -> None:
        with LinkLab("wired-1200km", prefix=PREFIX) as lab:
            lab_ids.append(lab.names.lab_id)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside_the_lab()
    assert len(lab_ids) == 1
    assert lab_namespaces(lab_ids[0]) == []


def _wait_until_gone(lab_id: str, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s * SCALE
    while (left := lab_namespaces(lab_id)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition with a deadline, not synchronising on time
    return left


@pytest.mark.parametrize(("signal_name", "links"), [("SIGKILL", 1), ("SIGTERM", 1), ("SIGKILL", 2)])
def test_lab_is_removed_when_its_owner_is_killed(
    signal_name: str, links: int, host_links: str
) -> None:
    owner_code = textwrap.dedent(f"""
        import sys
        from teledrive.shared.linklab import LinkLab
        lab = LinkLab("lan", prefix={PREFIX!r}, links={links})
        lab.start()
        print(lab.names.lab_id, flush=True)
        sys.stdin.read()
    """)
    argv = [sys.executable, "-c", owner_code]
    owner = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    ready, _, _ = select.select([owner.stdout], [], [], 20 * SCALE)
    lab_id = owner.stdout.readline().strip() if ready else ""
    assert lab_id.startswith(f"{PREFIX}-{owner.pid}-")
    assert len(lab_namespaces(lab_id)) == 4
    owner.send_signal(signal.Signals[signal_name])
    owner.wait(timeout=10 * SCALE)
    assert owner.stdin is not None
    owner.stdin.close()
    owner.stdout.close()
    # The first relay reaps the lab; a second one must neither survive nor get in its way.
    assert _wait_until_gone(lab_id, timeout_s=10.0) == []
    sockets = [Path(path) for path in LabNames(prefix=PREFIX, lab_id=lab_id).control_paths(links)]
    deadline_s = time.monotonic() + 5.0 * SCALE
    while any(path.exists() for path in sockets):
        assert time.monotonic() < deadline_s, "a control socket was left behind"
        time.sleep(0.05)  # polling a condition with a deadline, not synchronising on time


def test_cleanup_removes_labs_of_dead_owners_only() -> None:
    prefix = f"tdc{os.getpid()}"  # a prefix of its own: `include_live` must not hit other runs
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{prefix}-{dead.pid}-0-veh"
    live = f"{prefix}-{os.getppid()}-0-hub"  # pytest's parent: alive
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = cleanup(prefix)
        assert stale in removed
        assert live not in removed
        assert live in list_namespaces()
        assert live in cleanup(prefix, include_live=True)
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    assert stale not in list_namespaces()
    assert live not in list_namespaces()
