"""Network namespaces of a link lab, and :class:`LinkLab`, the handle tests use.

Shape (one lab; every name below lives inside the lab's own namespaces)::

    vehicle ns                 router ns                                  hub ns
    eth0 10.201.0.1 ── veth ── veh ╎relay╎ opsr ── veth ── opsb ┐        eth0 10.201.0.2
                                  (impairs)                      ├ br ops ┤
                                                            hub ─┤        operator ns
                                                             op ─┘        eth0 10.201.0.3

The vehicle is on one side of the emulated 1200 km link; the hub and the operator console are
both in the operations centre, on the other side, joined by a bridge in the router namespace
(hub <-> operator traffic is local and unimpaired). The relay moves frames between ``veh`` and
``opsr``; the bridge only sends it frames for the vehicle (or broadcasts), because it learns
where MAC addresses live. Every endpoint knows the others' MAC addresses (static neighbour
entries), so no ARP crosses the emulated link. All three endpoints share one /24 from the
private 10/8 range, which exists only inside these namespaces: no namespace has a route or
link to the host, so no traffic can leave the machine.

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
ENDPOINT_IF = "eth0"
RELAY_VEHICLE_IF = "veh"
RELAY_OPS_IF = "opsr"
_BRIDGE_IF = "ops"
_BRIDGE_UPLINK_IF = "opsb"
_ROUTER_PORT_IF: dict[Role, str] = {"vehicle": RELAY_VEHICLE_IF, "hub": "hub", "operator": "op"}

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

    Checks root, the ``ip`` and ``ethtool`` tools, and that a network namespace can be made.
    """
    if os.geteuid() != 0:
        return "link lab needs root (network namespaces, AF_PACKET sockets)"
    for tool in ("ip", "ethtool"):
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
        """The relay's control socket."""
        return str(CONTROL_DIR / f"{self.lab_id}.sock")

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


def create_topology(names: LabNames) -> None:
    """Create the namespaces, links, bridge and addresses of a lab (see the module docstring).

    Raises:
        LinkError: if a command fails (what was made so far is left for :func:`destroy_lab`).
    """
    router = names.namespace("router")
    for role in ROLES:
        namespace = names.namespace(role)
        _ip(None, f"netns add {namespace}")
        # No IPv6: no router solicitations or DAD chatter crossing the emulated link.
        for scope in ("all", "default"):
            sysctl = f"net.ipv6.conf.{scope}.disable_ipv6=1"
            _run(_in_ns(namespace, "sysctl", "-q", "-w", sysctl), check=False)
        _ip(namespace, "link set lo up")
    # Veth ends are created directly inside their namespaces, so no name ever appears in the
    # host namespace and two labs cannot collide.
    for role in ENDPOINT_ROLES:
        endpoint, port = names.namespace(role), _ROUTER_PORT_IF[role]
        veth = f"type veth peer name {port} netns {router}"
        mac = MAC_ADDRESSES[role]
        _ip(None, f"link add name {ENDPOINT_IF} address {mac} netns {endpoint} {veth}")
    _ip(router, f"link add name {RELAY_OPS_IF} type veth peer name {_BRIDGE_UPLINK_IF}")
    _ip(router, f"link add name {_BRIDGE_IF} type bridge stp_state 0 forward_delay 0")
    for port in (_BRIDGE_UPLINK_IF, _ROUTER_PORT_IF["hub"], _ROUTER_PORT_IF["operator"]):
        _ip(router, f"link set {port} master {_BRIDGE_IF}")
    for interface in (_BRIDGE_IF, _BRIDGE_UPLINK_IF, RELAY_OPS_IF, *_ROUTER_PORT_IF.values()):
        _ip(router, f"link set {interface} up")
    for role in ENDPOINT_ROLES:
        namespace = names.namespace(role)
        _ip(namespace, f"addr add {ADDRESSES[role]}/{SUBNET_PREFIX_LEN} dev {ENDPOINT_IF}")
        # The relay copies frames as bytes: a checksum left to the NIC (CHECKSUM_PARTIAL)
        # would arrive unfinished on the far side. This also turns off TSO, so every frame
        # fits the MTU.
        _run(_in_ns(namespace, "ethtool", "-K", ENDPOINT_IF, "tx", "off"))
        _ip(namespace, f"link set {ENDPOINT_IF} up")
        # Static neighbours: no ARP crosses the emulated link. A vehicle's modem is its only
        # layer-2 neighbour, and nothing resolves addresses over the air. Over the relay an
        # entry whose probes a cut or a fade took would fail, and the kernel would hold every
        # datagram to that address until a new resolution crossed the link (up to a second).
        for other in ENDPOINT_ROLES:
            if other != role:
                neighbour = f"{ADDRESSES[other]} lladdr {MAC_ADDRESSES[other]}"
                _ip(namespace, f"neigh replace {neighbour} dev {ENDPOINT_IF} nud permanent")


def _kill_namespace_processes(namespace: str, *, spare_pid: int | None) -> None:
    result = _run(["ip", "netns", "pids", namespace], check=False)
    for word in result.stdout.split():
        pid = int(word)
        if pid != spare_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def destroy_lab(lab_id: str, *, spare_pid: int | None = None) -> list[str]:
    """Kill the processes in a lab's namespaces, delete the namespaces and its control socket.

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
    with contextlib.suppress(FileNotFoundError):
        (CONTROL_DIR / f"{lab_id}.sock").unlink()
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
    killed outright, the relay notices (its stdin pipe closes) and deletes the lab itself; and
    ``python -m teledrive.shared.linklab cleanup`` removes leftovers of dead processes.

    Args:
        profile: a profile name (see :func:`resolve_profile`) or a :class:`LinkProfile`.
        seed: seeds the relay's impairments.
        prefix: namespace prefix (tests use their own, so a developer's lab is never touched).
        python: the interpreter that runs the relay.
    """

    def __init__(
        self,
        profile: str | LinkProfile = "lan",
        *,
        seed: int = 0,
        prefix: str = DEFAULT_PREFIX,
        python: str = sys.executable,
    ) -> None:
        self._profile = resolve_profile(profile)
        self._seed = seed
        self._prefix = prefix
        self._python = python
        self._names: LabNames | None = None
        self._relay: subprocess.Popen[bytes] | None = None
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

    def start(self) -> None:
        """Create the namespaces and start the relay.

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
            create_topology(self._names)
            self._relay = self._start_relay(self._names)
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

    def _start_relay(self, names: LabNames) -> subprocess.Popen[bytes]:
        CONTROL_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        options = {
            "--vehicle-if": RELAY_VEHICLE_IF,
            "--ops-if": RELAY_OPS_IF,
            "--profile-json": self._profile.to_json().decode(),
            "--seed": str(self._seed),
            "--control": names.control_path,
            "--reap": names.lab_id,
        }
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
                f"linklab: relay did not start in {names.namespace('router')} ({line!r})"
            )
        return relay

    def close(self) -> None:
        """Stop the relay and every process started with :meth:`run_in`, delete the lab.

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
            if self._relay is not None:
                with contextlib.suppress(LinkError):
                    control_request(names.control_path, {"op": "stop"}, timeout_s=1.0)
                _stop_process(self._relay)
                self._relay = None
            destroy_lab(names.lab_id)
            self._restore_signal_handlers()

    def namespace(self, role: Role) -> str:
        """The namespace name of ``vehicle``, ``hub``, ``operator`` or ``router``."""
        if role not in ROLES:
            raise ConfigError(f"linklab: unknown role {role!r}; roles: {', '.join(ROLES)}")
        return self.names.namespace(role)

    def addr(self, role: Role) -> str:
        """The IPv4 address of ``vehicle``, ``hub`` or ``operator`` (as a string).

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

    def cut(self, duration_s: float) -> None:
        """Cut both directions now for ``duration_s``: frames arriving or in flight are lost."""
        self._control({"op": "cut", "seconds": duration_s})

    def set_profile(self, profile: str | LinkProfile) -> None:
        """Switch the link to another profile (name or :class:`LinkProfile`)."""
        resolved = resolve_profile(profile)
        self._control({"op": "profile", "profile": json.loads(resolved.to_json())})
        self._profile = resolved

    @property
    def profile(self) -> LinkProfile:
        """The profile in force."""
        return self._profile

    def stats(self) -> dict[str, Any]:
        """The relay's counters.

        Returns:
            ``uplink`` / ``downlink``: offered, passed, passed_bytes, dropped (by reason),
            reordered, in_flight; ``relay``: tx_errors, bad_requests, frames_read; ``profile``.
        """
        reply = self._control({"op": "stats"})
        reply.pop("ok", None)
        return reply

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        return control_request(self.names.control_path, request)


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
