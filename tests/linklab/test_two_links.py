"""A vehicle with two modems: ``LinkLab(links=2)``, each link its own relay. Needs root.

The vehicle sends UDP from each of its addresses (and from an unbound socket) to a reporting
echo on the operator, which prints the source it saw; the relays' counters show which link
each datagram crossed.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_lab import (
    PREFIX,
    SCALE,
    host_links,  # noqa: F401  (a fixture, used by name)
    lab_namespaces,
)

from teledrive.shared.errors import ConfigError
from teledrive.shared.linklab import LinkLab, unavailable_reason
from teledrive.shared.linklab.netns import VEHICLE_SECOND_ADDRESS, LabNames

_REASON = unavailable_reason()
pytestmark = [
    pytest.mark.linklab,
    pytest.mark.skipif(_REASON is not None, reason=f"link lab unavailable: {_REASON}"),
]

PORT = 5001
FIRST, SECOND = "10.201.0.1", VEHICLE_SECOND_ADDRESS
UNBOUND = "unbound"
REPLY_S = 5.0  # a round trip under `lan` takes about a millisecond
QUIET_S = 0.3  # how long "does not arrive" is watched for, under `lan`

# Operator side: echo every datagram, and print "<source address> <payload>".
REPORTING_ECHO = textwrap.dedent("""
    import socket, sys
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(sys.argv[1])))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(2048)
        print(peer[0], data.decode(), flush=True)
        sock.sendto(data, peer)
""")

# Vehicle side: one socket per source (an address, or "unbound"); a stdin line
# "<source> <tag>" sends <tag> from that socket, and each reply prints "<source> <tag>".
SENDER = textwrap.dedent("""
    import os, select, socket, sys
    to = (sys.argv[1], int(sys.argv[2]))
    socks = {}
    for source in sys.argv[3:]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if source != "unbound":
            sock.bind((source, 0))
        socks[source] = sock
    names = {sock: source for source, sock in socks.items()}
    print("ready", flush=True)
    pending = b""
    while True:
        readable, _, _ = select.select([0, *socks.values()], [], [])
        for item in readable:
            if item == 0:
                chunk = os.read(0, 4096)
                if not chunk:
                    sys.exit(0)
                pending += chunk
                while b"\\n" in pending:
                    line, pending = pending.split(b"\\n", 1)
                    source, tag = line.decode().split()
                    socks[source].sendto(tag.encode(), to)
            else:
                print(names[item], item.recv(2048).decode(), flush=True)
""")


class Lines:
    """Reads a child's stdout line by line with timeouts (no line is lost in a buffer)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.process = process
        self._fd = process.stdout.fileno()
        self._pending = b""

    def next(self, timeout_s: float) -> str | None:
        """The next line, or None if none comes within ``timeout_s`` (scaled)."""
        deadline = time.monotonic() + timeout_s * SCALE
        while b"\n" not in self._pending:
            left_s = deadline - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(0.0, left_s))
            if not ready:
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode().strip()

    def expect(self, expected: str, timeout_s: float = REPLY_S) -> None:
        line = self.next(timeout_s)
        assert line == expected, f"expected {expected!r} from {self.process.args!r}, got {line!r}"

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()


def start_pair(lab: LinkLab) -> tuple[Lines, Lines]:
    """The reporting echo on the operator and the sender on the vehicle, both ready."""
    echo = lab.run_in(
        "operator", [sys.executable, "-c", REPORTING_ECHO, str(PORT)], stdout=subprocess.PIPE
    )
    operator = Lines(echo)
    operator.expect("ready", timeout_s=10.0)
    target = [lab.addr("operator"), str(PORT)]
    argv = [sys.executable, "-c", SENDER, *target, *lab.vehicle_addrs(), UNBOUND]
    sender = lab.run_in("vehicle", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    vehicle = Lines(sender)
    vehicle.expect("ready", timeout_s=10.0)
    return operator, vehicle


def round_trip(operator: Lines, vehicle: Lines, source: str, tag: str) -> str | None:
    """Send ``tag`` from ``source``; return the address the operator saw it from.

    The reply must come back to the same socket.
    """
    vehicle.send(f"{source} {tag}")
    line = operator.next(REPLY_S)
    if line is None:
        return None
    seen_from, got = line.split()
    assert got == tag, line
    vehicle.expect(f"{source} {tag}")
    return seen_from


def crossed(before: dict[str, Any], after: dict[str, Any], direction: str) -> int:
    """Frames the relay was offered in ``direction`` between two snapshots."""
    return int(after[direction]["offered"] - before[direction]["offered"])


def passed(before: dict[str, Any], after: dict[str, Any], direction: str) -> int:
    return int(after[direction]["passed"] - before[direction]["passed"])


def outage_drops(stats: dict[str, Any]) -> int:
    return int(stats["uplink"]["dropped"]["outage"] + stats["downlink"]["dropped"]["outage"])


def test_each_vehicle_address_crosses_its_own_link() -> None:
    with LinkLab("lan", prefix=PREFIX, links=2) as lab:
        assert lab.links == 2
        assert lab.vehicle_addrs() == (lab.addr("vehicle"), SECOND)
        operator, vehicle = start_pair(lab)
        # Traffic with no bound source keeps to link 1 (and to the vehicle's first address).
        for source, seen_as, link in ((SECOND, SECOND, 2), (FIRST, FIRST, 1), (UNBOUND, FIRST, 1)):
            other = 3 - link
            before = {number: lab.stats_of(number) for number in (1, 2)}
            assert round_trip(operator, vehicle, source, f"from-{source}") == seen_as
            after = {number: lab.stats_of(number) for number in (1, 2)}
            for direction in ("uplink", "downlink"):
                assert passed(before[link], after[link], direction) == 1, (source, direction)
                assert crossed(before[other], after[other], direction) == 0, (source, direction)
        assert lab.stats()["uplink"] == lab.stats_of(1)["uplink"]  # stats() is link 1's
        lab.set_profile("wired-1200km")
        assert [lab.stats_of(number)["profile"] for number in (1, 2)] == ["wired-1200km"] * 2
        with pytest.raises(ConfigError, match="no link 3"):
            lab.cut(1.0, link=3)
        with pytest.raises(ConfigError, match="no link 0"):
            lab.stats_of(0)


def test_a_cut_of_link_1_leaves_link_2_up() -> None:
    cut_s = 2.0 * SCALE  # long enough for the checks made during it, on a slow machine too
    with LinkLab("lan", prefix=PREFIX, links=2) as lab:
        operator, vehicle = start_pair(lab)
        assert round_trip(operator, vehicle, FIRST, "before-1") == FIRST
        cut_at_s = time.monotonic()
        lab.cut(cut_s, link=1)
        assert round_trip(operator, vehicle, SECOND, "during-2") == SECOND
        vehicle.send(f"{FIRST} during-1")
        assert operator.next(QUIET_S) is None, "a datagram crossed the cut link"
        assert time.monotonic() - cut_at_s < cut_s, "the checks outlasted the cut (slow machine?)"
        # Link 1 comes back when the cut ends; each try waits a short while for its datagram.
        tries = 0
        while (seen := round_trip(operator, vehicle, FIRST, f"after-{tries}")) is None:
            assert time.monotonic() - cut_at_s < cut_s + 5.0 * SCALE, "link 1 did not return"
            tries += 1
        assert seen == FIRST
        assert time.monotonic() - cut_at_s >= cut_s  # "during-1" was dropped, not delayed
        assert outage_drops(lab.stats_of(1)) >= 1
        assert outage_drops(lab.stats_of(2)) == 0

        # Without a link number, every link is cut.
        cut_at_s = time.monotonic()
        lab.cut(cut_s)
        for source in (FIRST, SECOND):
            vehicle.send(f"{source} cut-all")
            assert operator.next(QUIET_S) is None, f"a datagram from {source} crossed a cut"
        assert time.monotonic() - cut_at_s < cut_s, "the checks outlasted the cut (slow machine?)"
        assert outage_drops(lab.stats_of(2)) >= 1


def _control_sockets(lab_id: str) -> list[Path]:
    return [Path(path) for path in LabNames(prefix=PREFIX, lab_id=lab_id).control_paths(2)]


@pytest.mark.usefixtures("host_links")
def test_everything_of_two_links_is_removed_on_close() -> None:
    with LinkLab("lan", prefix=PREFIX, links=2) as lab:
        lab_id = lab.names.lab_id
        assert len(lab_namespaces(lab_id)) == 4
        assert all(path.exists() for path in _control_sockets(lab_id))
        sleeper = lab.run_in("vehicle", ["sleep", "600"])
    assert lab_namespaces(lab_id) == []
    assert sleeper.poll() is not None, "a process started in the lab outlived it"
    assert not any(path.exists() for path in _control_sockets(lab_id))


@pytest.mark.parametrize("links", [0, 3, True, 2.0])
def test_only_one_or_two_links(links: Any) -> None:
    with pytest.raises(ConfigError, match="links must be 1 or 2"):
        LinkLab("lan", prefix=PREFIX, links=links)


def test_a_one_link_lab_has_no_link_2() -> None:
    lab = LinkLab("lan", prefix=PREFIX)  # not started: the number is checked first
    assert lab.links == 1
    assert lab.vehicle_addrs() == (FIRST,)
    with pytest.raises(ConfigError, match="no link 2"):
        lab.cut(1.0, link=2)
