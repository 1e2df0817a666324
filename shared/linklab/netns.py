"""Network namespaces of a link lab, and :class:`LinkLab`, the handle tests use.

Shape (one lab; every name below lives inside the lab's own namespaces)::

    vehicle ns                  router ns                                     hub ns
    eth0 10.201.0.1 ── veth ── veh  ╎relay 1╎ opsr  ── veth ── opsb  ┐        eth0 10.201.0.2
    eth1 10.201.0.4 ── veth ── veh2 ╎relay 2╎ opsr2 ── veth ── opsb2 ┤
                                    (impair)                         ├ br ops ┤
    (eth1 … opsb2: links=2 only)                                hub ─┤        operator ns
                                                                 op ─┘        eth0 10.201.0.3

The vehicle is on one side of the emulated 1200 km link; the hub and the operator console are
both in the operations centre, on the other side, joined by a bridge in the router namespace
(hub <-> operator traffic is local and unimpaired). A relay moves frames between ``veh`` and
``opsr``; the bridge only sends it frames for the vehicle (or broadcasts): every endpoint's
MAC address has a static forwarding entry on its port. Every endpoint knows the others' MAC
addresses (static neighbour entries), so no ARP crosses the emulated link. All endpoints share
one /24 from the private 10/8 range, which exists only inside these namespaces: no namespace
has a route or link to the host, so no traffic can leave the machine.

With ``links=2`` the vehicle has a second modem: ``eth1`` with its own address and MAC, joined
by a second relay (its own impairments, seed and control socket) to a second bridge port.
Both vehicle addresses are in the same /24, so the vehicle routes by source address (policy
rules to one table per link): datagrams from 10.201.0.4 leave by ``eth1``, those from
10.201.0.1 and those with no bound source by ``eth0``.

Names: namespaces are ``<prefix>-<pid>-<n>-<role>`` (pid of the creating process), so several
labs can coexist, and :func:`cleanup` can tell leftovers of dead processes from live labs.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from teledrive.shared.errors import ConfigError, LinkError
from teledrive.shared.linklab.profiles import LinkProfile, resolve_profile
from teledrive.shared.linklab.relay import control_request

logger = logging.getLogger(__name__)

Role = Literal["vehicle", "hub", "operator", "router"]
ENDPOINT_ROLES: tuple[Role, ...] = ("vehicle", "hub", "operator")
ROLES: tuple[Role, ...] = (*ENDPOINT_ROLES, "router")
_ROLE_SUFFIX: dict[Role, str] = {"vehicle": "veh", "hub": "hub", "operator": "op", "router": "rtr"}

DEFAULT_PREFIX = "tdlab"
SUBNET_PREFIX_LEN = 24
ADDRESSES: dict[Role, str] = {
    "vehicle": "10.201.0.1",
    "hub": "10.201.0.2",
    "operator": "10.201.0.3",
}
MAC_ADDRESSES: dict[Role, str] = {  # locally administered, one per endpoint
    "vehicle": "02:00:0a:c9:00:01",
    "hub": "02:00:0a:c9:00:02",
    "operator": "02:00:0a:c9:00:03",
}
VEHICLE_SECOND_ADDRESS = "10.201.0.4"
"""The vehicle's address on its second link (``eth1``, only with ``LinkLab(links=2)``)."""
VEHICLE_SECOND_MAC = "02:00:0a:c9:00:04"
ENDPOINT_IF = "eth0"
RELAY_VEHICLE_IF = "veh"
RELAY_OPS_IF = "opsr"
_SUBNET = f"10.201.0.0/{SUBNET_PREFIX_LEN}"
_BRIDGE_IF = "ops"
_BRIDGE_UPLINK_IF = "opsb"
_OPS_PORT_IF: dict[Role, str] = {"hub": "hub", "operator": "op"}

MAX_LINKS = 2
SECOND_LINK_SEED_OFFSET = 1_000_003
"""Added to the lab's seed to seed the second link's relay.

A relay seeds its uplink with its seed and its downlink with the seed plus one, so the second
relay needs an offset of at least two; a large prime also keeps its streams apart from those of
labs run next to it with nearby seeds (1, 2, 3, ...).
"""


@dataclasses.dataclass(frozen=True)
class VehicleLink:
    """The interfaces and addresses of one of the vehicle's links (one modem).

    Attributes:
        number: the link's number, 1 or 2 (what :meth:`LinkLab.cut` takes).
        vehicle_if: the vehicle's interface.
        address: the vehicle's address on it.
        mac: that interface's MAC address.
        relay_vehicle_if: the veth end in the router namespace the relay reads frames from
            the vehicle on.
        relay_ops_if: the relay's interface on the operations centre's side.
        bridge_port: the veth peer of ``relay_ops_if``, a port of the bridge.
        table: the vehicle's routing table for datagrams from ``address`` (two links only).
    """

    number: int
    vehicle_if: str
    address: str
    mac: str
    relay_vehicle_if: str
    relay_ops_if: str
    bridge_port: str
    table: int


VEHICLE_LINKS: tuple[VehicleLink, ...] = (
    VehicleLink(
        number=1,
        vehicle_if=ENDPOINT_IF,
        address=ADDRESSES["vehicle"],
        mac=MAC_ADDRESSES["vehicle"],
        relay_vehicle_if=RELAY_VEHICLE_IF,
        relay_ops_if=RELAY_OPS_IF,
        bridge_port=_BRIDGE_UPLINK_IF,
        table=101,
    ),
    VehicleLink(
        number=2,
        vehicle_if="eth1",
        address=VEHICLE_SECOND_ADDRESS,
        mac=VEHICLE_SECOND_MAC,
        relay_vehicle_if="veh2",
        relay_ops_if="opsr2",
        bridge_port="opsb2",
        table=102,
    ),
)

CONTROL_DIR = Path("/run/teledrive-linklab")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_COMMAND_TIMEOUT_S = 20.0
_RELAY_READY_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 5.0


def _time_scale() -> float:
    try:
        return max(1.0, float(os.environ.get("TELEDRIVE_TIME_SCALE", "1")))
    except ValueError:
        return 1.0


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S * _time_scale(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LinkError(f"linklab: `{' '.join(argv)}` failed: {err}") from err
    if check and result.returncode != 0:
        raise LinkError(
            f"linklab: `{' '.join(argv)}` exited {result.returncode}: {result.stderr.strip()}"
        )
    return result


def unavailable_reason() -> str | None:
    """Say why a link lab cannot run here, or None if it can.

    Checks root, the ``ip``, ``bridge`` and ``ethtool`` tools, and that a network namespace
    can be made.
    """
    if os.geteuid() != 0:
        return "link lab needs root (network namespaces, AF_PACKET sockets)"
    for tool in ("ip", "bridge", "ethtool"):
        if shutil.which(tool) is None:
            return f"link lab needs the `{tool}` tool (apt-get install iproute2 ethtool)"
    probe = f"{DEFAULT_PREFIX}probe{os.getpid()}"
    try:
        made = _run(["ip", "netns", "add", probe], check=False)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip()}"
    finally:
        _run(["ip", "netns", "delete", probe], check=False)
    return None


def list_namespaces() -> list[str]:
    """Names of all named network namespaces on the machine."""
    result = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class LabNames:
    """The names of one lab instance.

    Attributes:
        prefix: common prefix of all labs of a kind (``tdlab`` by default).
        lab_id: ``<prefix>-<pid>-<n>``; every namespace of the lab starts with it.
    """

    prefix: str
    lab_id: str

    def namespace(self, role: Role) -> str:
        """The namespace name of a role."""
        return f"{self.lab_id}-{_ROLE_SUFFIX[role]}"

    @property
    def control_path(self) -> str:
        """The control socket of the (first) link's relay."""
        return str(CONTROL_DIR / f"{self.lab_id}.sock")

    @property
    def second_control_path(self) -> str:
        """The control socket of the second link's relay (``links=2``)."""
        return str(CONTROL_DIR / f"{self.lab_id}-2.sock")

    def control_paths(self, links: int) -> tuple[str, ...]:
        """The control sockets of the relays of links 1 to ``links``, in link order."""
        return (self.control_path, self.second_control_path)[:links]

    @staticmethod
    def allocate(prefix: str) -> LabNames:
        """Pick a lab id that no existing namespace uses.

        Raises:
            ConfigError: if the prefix is not 1-12 lowercase letters/digits starting with a
                letter.
        """
        if not _PREFIX_RE.match(prefix):
            raise ConfigError(
                f"linklab prefix {prefix!r}: need 1-12 lowercase letters/digits, letter first"
            )
        existing = set(list_namespaces())
        for number in itertools.count():
            lab_id = f"{prefix}-{os.getpid()}-{number}"
            names = LabNames(prefix=prefix, lab_id=lab_id)
            if not any(names.namespace(role) in existing for role in ROLES):
                return names
        raise AssertionError("unreachable")


def _in_ns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def _ip(namespace: str | None, command: str, *, check: bool = True) -> None:
    """Run ``ip [-n NAMESPACE] COMMAND`` (words split on spaces; no name contains one)."""
    target = ["-n", namespace] if namespace is not None else []
    _run(["ip", *target, *command.split()], check=check)


def check_link_count(links: int) -> None:
    """Check a lab's number of links.

    Raises:
        ConfigError: unless ``links`` is 1 or 2.
    """
    if type(links) is not int or not 1 <= links <= MAX_LINKS:
        raise ConfigError(
            f"linklab: links must be 1 or {MAX_LINKS} (the vehicle's modems), got {links!r}"
        )


@dataclasses.dataclass(frozen=True)
class _Interface:
    """An endpoint's interface, and the name of its veth peer in the router namespace."""

    role: Role
    name: str
    address: str
    mac: str
    router_port: str
    prefix_route: bool


def _endpoint_interfaces(vehicle_links: Sequence[VehicleLink]) -> list[_Interface]:
    # Only the first vehicle interface puts the subnet's route in the main table, so traffic
    # with no bound source leaves by link 1, whatever order the kernel would keep routes in.
    interfaces = [
        _Interface(
            "vehicle",
            link.vehicle_if,
            link.address,
            link.mac,
            router_port=link.relay_vehicle_if,
            prefix_route=link.number == 1,
        )
        for link in vehicle_links
    ]
    for role, port in _OPS_PORT_IF.items():
        address, mac = ADDRESSES[role], MAC_ADDRESSES[role]
        interfaces.append(_Interface(role, ENDPOINT_IF, address, mac, port, prefix_route=True))
    return interfaces


def create_topology(names: LabNames, *, links: int = 1) -> None:
    """Create the namespaces, links, bridge and addresses of a lab (see the module docstring).

    Args:
        names: the lab's names.
        links: how many links the vehicle has (1, or 2 for a second modem).

    Raises:
        ConfigError: if ``links`` is not 1 or 2 (nothing is made).
        LinkError: if a command fails (what was made so far is left for :func:`destroy_lab`).
    """
    check_link_count(links)
    vehicle_links = VEHICLE_LINKS[:links]
    interfaces = _endpoint_interfaces(vehicle_links)
    for role in ROLES:
        namespace = names.namespace(role)
        _ip(None, f"netns add {namespace}")
        # No IPv6: no router solicitations or DAD chatter crossing the emulated link.
        for scope in ("all", "default"):
            sysctl = f"net.ipv6.conf.{scope}.disable_ipv6=1"
            _run(_in_ns(namespace, "sysctl", "-q", "-w", sysctl), check=False)
        _ip(namespace, "link set lo up")
    _build_router(names, vehicle_links, interfaces)
    for interface in interfaces:
        _configure_interface(names, interface, interfaces)
    if links > 1:
        _route_by_source(names.namespace("vehicle"), vehicle_links)


def _build_router(
    names: LabNames, vehicle_links: Sequence[VehicleLink], interfaces: Sequence[_Interface]
) -> None:
    """Make the endpoints' veths, the relays' veth pairs and the bridge, and bring them up."""
    router = names.namespace("router")
    # Veth ends are created directly inside their namespaces, so no name ever appears in the
    # host namespace and two labs cannot collide.
    for interface in interfaces:
        endpoint = f"name {interface.name} address {interface.mac}"
        veth = f"type veth peer name {interface.router_port} netns {router}"
        _ip(None, f"link add {endpoint} netns {names.namespace(interface.role)} {veth}")
    for link in vehicle_links:
        _ip(router, f"link add name {link.relay_ops_if} type veth peer name {link.bridge_port}")
    _ip(router, f"link add name {_BRIDGE_IF} type bridge stp_state 0 forward_delay 0")
    # Static forwarding entries: the bridge sends a frame for one of the vehicle's addresses
    # only towards that address's link, even before it has seen a frame from it (a learning
    # bridge floods frames for unknown addresses to every port, so over every link).
    bridge_ports = [(link.bridge_port, link.mac) for link in vehicle_links]
    bridge_ports += [(i.router_port, i.mac) for i in interfaces if i.role != "vehicle"]
    for port, mac in bridge_ports:
        _ip(router, f"link set {port} master {_BRIDGE_IF}")
        _run(["bridge", "-n", router, "fdb", "replace", mac, "dev", port, "master", "static"])
    up = [_BRIDGE_IF, *(port for port, _ in bridge_ports)]
    up += [end for link in vehicle_links for end in (link.relay_vehicle_if, link.relay_ops_if)]
    for interface_name in up:
        _ip(router, f"link set {interface_name} up")


def _configure_interface(
    names: LabNames, interface: _Interface, interfaces: Sequence[_Interface]
) -> None:
    """Address an endpoint's interface, bring it up and give it its static neighbours."""
    namespace = names.namespace(interface.role)
    address = f"{interface.address}/{SUBNET_PREFIX_LEN}"
    route = "" if interface.prefix_route else " noprefixroute"
    _ip(namespace, f"addr add {address} dev {interface.name}{route}")
    # The relay copies frames as bytes: a checksum left to the NIC (CHECKSUM_PARTIAL) would
    # arrive unfinished on the far side. This also turns off TSO, so every frame fits the MTU.
    _run(_in_ns(namespace, "ethtool", "-K", interface.name, "tx", "off"))
    _ip(namespace, f"link set {interface.name} up")
    # Static neighbours: no ARP crosses the emulated link. A vehicle's modem is its only
    # layer-2 neighbour, and nothing resolves addresses over the air. Over the relay an entry
    # whose probes a cut or a fade took would fail, and the kernel would hold every datagram
    # to that address until a new resolution crossed the link (up to a second).
    for other in interfaces:
        if other.role != interface.role:
            neighbour = f"{other.address} lladdr {other.mac}"
            _ip(namespace, f"neigh replace {neighbour} dev {interface.name} nud permanent")


def _route_by_source(namespace: str, vehicle_links: Sequence[VehicleLink]) -> None:
    """Send the vehicle's datagrams out of the interface their source address belongs to.

    Both addresses are in one /24, so the main table alone would send everything by one
    interface; a policy rule per address picks a table that has only its own interface.
    """
    for link in vehicle_links:
        route = f"{_SUBNET} dev {link.vehicle_if} src {link.address}"
        _ip(namespace, f"route replace {route} table {link.table}")
        _ip(namespace, f"rule add from {link.address} table {link.table} priority {link.table}")
    # Strict reverse-path filtering would drop what arrives on an interface the main table
    # does not route the sender by (replies to 10.201.0.4 arrive on eth1).
    scopes = ("all", "default", *(link.vehicle_if for link in vehicle_links))
    sysctls = [f"net.ipv4.conf.{scope}.rp_filter=0" for scope in scopes]
    _run(_in_ns(namespace, "sysctl", "-q", "-w", *sysctls))


def _kill_namespace_processes(namespace: str, *, spare_pid: int | None) -> None:
    result = _run(["ip", "netns", "pids", namespace], check=False)
    for word in result.stdout.split():
        pid = int(word)
        if pid != spare_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def destroy_lab(lab_id: str, *, spare_pid: int | None = None) -> list[str]:
    """Kill the processes in a lab's namespaces, delete the namespaces and control sockets.

    Deleting a namespace removes its veth ends, and with them their peers.

    Args:
        lab_id: the lab's id (``<prefix>-<pid>-<n>``).
        spare_pid: a process not to kill (the relay, when it reaps its own lab).

    Returns:
        The namespaces deleted.
    """
    deleted: list[str] = []
    for namespace in list_namespaces():
        if namespace.rsplit("-", 1)[0] != lab_id:
            continue
        _kill_namespace_processes(namespace, spare_pid=spare_pid)
        if _run(["ip", "netns", "delete", namespace], check=False).returncode == 0:
            deleted.append(namespace)
    names = LabNames(prefix=lab_id.split("-", 1)[0], lab_id=lab_id)
    for path in names.control_paths(MAX_LINKS):
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
    return deleted


def _lab_id_of(namespace: str, prefix: str) -> tuple[str, int] | None:
    match = re.match(rf"^({re.escape(prefix)}-(\d+)-\d+)-(?:veh|hub|op|rtr)$", namespace)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup(prefix: str = DEFAULT_PREFIX, *, include_live: bool = False) -> list[str]:
    """Remove leftover labs: those whose creating process is gone, or all with ``include_live``.

    Args:
        prefix: which labs (their namespaces start with ``<prefix>-``).
        include_live: also remove labs whose creating process still runs.

    Returns:
        The namespaces deleted.
    """
    lab_ids: dict[str, int] = {}
    for namespace in list_namespaces():
        parsed = _lab_id_of(namespace, prefix)
        if parsed is not None:
            lab_ids[parsed[0]] = parsed[1]
    deleted: list[str] = []
    for lab_id, owner_pid in sorted(lab_ids.items()):
        if include_live or not _pid_alive(owner_pid):
            deleted += destroy_lab(lab_id)
    return deleted


class LinkLab:
    """A running link lab: namespaces for vehicle, hub and operator, and the relay between.

    Use as a context manager; on exit (also on an exception, SIGTERM, SIGHUP or interpreter
    exit) it stops what it started and deletes every namespace. If the owning process is
    killed outright, the relays notice (their stdin pipes close) and the first one deletes the
    lab; and ``python -m teledrive.shared.linklab cleanup`` removes leftovers of dead processes.

    With ``links=2`` the vehicle has a second modem: an interface ``eth1`` with its own address
    (:data:`VEHICLE_SECOND_ADDRESS`) and its own relay, so each link has its own impairments,
    drawn independently. Datagrams the vehicle sends from that address leave by the second
    link, all others by the first.

    Args:
        profile: a profile name (see :func:`resolve_profile`) or a :class:`LinkProfile`;
            every link starts with it.
        seed: seeds the first link's impairments; the second link's relay gets
            ``seed + SECOND_LINK_SEED_OFFSET``.
        prefix: namespace prefix (tests use their own, so a developer's lab is never touched).
        python: the interpreter that runs the relays.
        links: how many links the vehicle has, 1 or 2.

    Raises:
        ConfigError: if ``links`` is not 1 or 2, or the profile is unknown.
    """

    def __init__(
        self,
        profile: str | LinkProfile = "lan",
        *,
        seed: int = 0,
        prefix: str = DEFAULT_PREFIX,
        python: str = sys.executable,
        links: int = 1,
    ) -> None:
        check_link_count(links)
        self._profile = resolve_profile(profile)
        self._seed = seed
        self._prefix = prefix
        self._python = python
        self._links = links
        self._names: LabNames | None = None
        self._relays: list[subprocess.Popen[bytes]] = []
        self._children: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._previous_handlers: dict[int, Any] = {}

    @property
    def names(self) -> LabNames:
        """The lab's names.

        Raises:
            LinkError: if the lab is not running.
        """
        if self._names is None:
            raise LinkError("link lab is not running (use `with LinkLab(...) as lab:`)")
        return self._names

    def __enter__(self) -> LinkLab:
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
    def links(self) -> int:
        """How many links the vehicle has (1 or 2)."""
        return self._links

    def start(self) -> None:
        """Create the namespaces and start the relays.

        Raises:
            LinkError: if the lab cannot be set up (everything made so far is removed).
        """
        if self._names is not None:
            raise LinkError("link lab already started")
        reason = None if os.geteuid() == 0 else "link lab needs root"
        if reason is not None:
            raise LinkError(reason)
        self._names = LabNames.allocate(self._prefix)
        atexit.register(self.close)
        self._install_signal_handlers()
        try:
            create_topology(self._names, links=self._links)
            for link in VEHICLE_LINKS[: self._links]:
                self._relays.append(self._start_relay(self._names, link))
        except BaseException:
            self.close()
            raise

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                self._previous_handlers[sig] = signal.signal(sig, _exit_on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _start_relay(self, names: LabNames, link: VehicleLink) -> subprocess.Popen[bytes]:
        CONTROL_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        seed = self._seed + (link.number - 1) * SECOND_LINK_SEED_OFFSET
        options = {
            "--vehicle-if": link.relay_vehicle_if,
            "--ops-if": link.relay_ops_if,
            "--profile-json": self._profile.to_json().decode(),
            "--seed": str(seed),
            "--control": names.control_paths(MAX_LINKS)[link.number - 1],
        }
        if link.number == 1:
            # Only the first relay deletes the lab when orphaned: two reapers would each kill
            # the other (every process in the lab's namespaces) and might both die before
            # deleting anything. The second relay just stops; the reaper kills it if not.
            options["--reap"] = names.lab_id
        argv = _in_ns(
            names.namespace("router"),
            *(self._python, "-m", "teledrive.shared.linklab", "relay", "--lifeline-stdin"),
            *itertools.chain.from_iterable(options.items()),
        )
        relay = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert relay.stdout is not None  # stdout=PIPE
        ready, _, _ = select.select([relay.stdout], [], [], _RELAY_READY_TIMEOUT_S * _time_scale())
        line = relay.stdout.readline() if ready else b""
        if not line.startswith(b"ready"):
            relay.kill()
            relay.wait()
            raise LinkError(
                f"linklab: relay of link {link.number} did not start in "
                f"{names.namespace('router')} ({line!r})"
            )
        return relay

    def close(self) -> None:
        """Stop the relays and every process started with :meth:`run_in`, delete the lab.

        Safe to call more than once.
        """
        with self._lock:
            names, self._names = self._names, None
            if names is None:
                return
            atexit.unregister(self.close)
            for child in self._children:
                _stop_process(child)
            self._children.clear()
            for path in names.control_paths(len(self._relays)):
                with contextlib.suppress(LinkError):
                    control_request(path, {"op": "stop"}, timeout_s=1.0)
            for relay in self._relays:
                _stop_process(relay)
            self._relays.clear()
            destroy_lab(names.lab_id)
            self._restore_signal_handlers()

    def namespace(self, role: Role) -> str:
        """The namespace name of ``vehicle``, ``hub``, ``operator`` or ``router``."""
        if role not in ROLES:
            raise ConfigError(f"linklab: unknown role {role!r}; roles: {', '.join(ROLES)}")
        return self.names.namespace(role)

    def addr(self, role: Role) -> str:
        """The IPv4 address of ``vehicle``, ``hub`` or ``operator`` (as a string).

        The vehicle's is its first link's; :meth:`vehicle_addrs` gives one per link.

        Raises:
            ConfigError: for another role (the router has no address).
        """
        if role not in ADDRESSES:
            raise ConfigError(
                f"linklab: role {role!r} has no address; roles: {', '.join(ADDRESSES)}"
            )
        return ADDRESSES[role]

    def run_in(self, role: Role, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process in a role's namespace; the lab stops it on close if still running.

        Args:
            role: ``vehicle``, ``hub``, ``operator`` or ``router``.
            argv: the command.
            **popen_kwargs: passed to :class:`subprocess.Popen`.

        Returns:
            The process (its pid is the command's: ``ip netns exec`` execs it).
        """
        process: subprocess.Popen[Any] = subprocess.Popen(
            _in_ns(self.namespace(role), *argv), **popen_kwargs
        )
        self._children.append(process)
        return process

    def vehicle_addrs(self) -> tuple[str, ...]:
        """The vehicle's addresses, one per link, in link order (the first is ``addr``'s)."""
        return tuple(link.address for link in VEHICLE_LINKS[: self._links])

    def cut(self, duration_s: float, link: int | None = None) -> None:
        """Cut both directions now for ``duration_s``: frames arriving or in flight are lost.

        Args:
            duration_s: how long the cut lasts.
            link: the link to cut (1 or 2), or None for every link (one control request per
                relay, so with two links their cuts start a fraction of a millisecond apart).

        Raises:
            ConfigError: if the lab has no such link.
            LinkError: if a relay refuses the request or cannot be reached.
        """
        numbers = range(1, self._links + 1) if link is None else (self._check_link(link),)
        for number in numbers:
            self._control({"op": "cut", "seconds": duration_s}, link=number)

    def set_profile(self, profile: str | LinkProfile) -> None:
        """Switch every link to another profile (name or :class:`LinkProfile`).

        Raises:
            ConfigError: if the profile is unknown.
            LinkError: if a relay refuses the request or cannot be reached.
        """
        resolved = resolve_profile(profile)
        request = {"op": "profile", "profile": json.loads(resolved.to_json())}
        for number in range(1, self._links + 1):
            self._control(request, number)
        self._profile = resolved

    @property
    def profile(self) -> LinkProfile:
        """The profile in force."""
        return self._profile

    def stats(self) -> dict[str, Any]:
        """The counters of the (first) link's relay: ``stats_of(1)``.

        Returns:
            ``uplink`` / ``downlink``: offered, passed, passed_bytes, dropped (by reason),
            reordered, in_flight; ``relay``: tx_errors, bad_requests, frames_read; ``profile``.
        """
        return self.stats_of(1)

    def stats_of(self, link: int) -> dict[str, Any]:
        """The counters of one link's relay, as :meth:`stats` returns them.

        Raises:
            ConfigError: if the lab has no such link.
        """
        reply = self._control({"op": "stats"}, self._check_link(link))
        reply.pop("ok", None)
        return reply

    def _check_link(self, link: int) -> int:
        if type(link) is not int or not 1 <= link <= self._links:
            numbers = ", ".join(str(number) for number in range(1, self._links + 1))
            raise ConfigError(f"linklab: no link {link!r}; this lab's links: {numbers}")
        return link

    def _control(self, request: dict[str, Any], link: int = 1) -> dict[str, Any]:
        return control_request(self.names.control_paths(MAX_LINKS)[link - 1], request)


def _stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    finally:
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
