"""The relay: moves Ethernet frames between two interfaces through two :class:`Impairment` s.

It runs inside the router namespace (``python -m teledrive.shared.linklab relay ...``) with one
AF_PACKET socket per side. Every frame (ARP included) that arrives on side A (the vehicle's)
goes through the uplink impairment and out on side B (the operations centre's), and the other
way round through the downlink impairment, so the router is a bump in the wire and needs no
addresses. Frames the kernel reports as our own outgoing ones (``PACKET_OUTGOING``) are
ignored, or they would loop.

Control: a Unix stream socket takes one JSON request line per connection and answers one JSON
line (see :meth:`Relay.handle_request`); :func:`control_request` is the client. The relay
stops on a ``stop`` request, SIGTERM/SIGINT, or when its lifeline (stdin) reaches EOF, which
means the process that started it is gone.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import json
import logging
import math
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from teledrive.shared.errors import ConfigError, LinkError
from teledrive.shared.linklab.impair import Impairment
from teledrive.shared.linklab.profiles import LinkProfile, resolve_profile

logger = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
_PR_SET_TIMERSLACK = 29
_TIMER_SLACK_NS = 1000
_RT_PRIORITY = 10
_MAX_FRAME_BYTES = 65_536
_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
_DRAIN_BATCH_FRAMES = 256
_MAX_REQUEST_BYTES = 64 * 1024
_REPLY_TIMEOUT_S = 0.2
_MS_PER_S = 1000.0


def monotonic_ms() -> float:
    """The relay's default clock: CLOCK_MONOTONIC in milliseconds."""
    return time.monotonic_ns() / 1e6


def open_packet_socket(ifname: str) -> socket.socket:
    """Open a non-blocking AF_PACKET socket that sees every frame arriving on ``ifname``.

    Raises:
        LinkError: if the interface does not exist or the socket cannot be opened.
    """
    try:
        # Protocol 0 at creation receives nothing until bind(), so no frame from another
        # interface slips in before the socket is bound to ours.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as err:
        raise LinkError(f"relay: cannot open an AF_PACKET socket ({err}); need root") from err
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        logger.debug("PACKET_IGNORE_OUTGOING unsupported; filtering by pkttype only")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER_BYTES)
        sock.bind((ifname, ETH_P_ALL))
    except OSError as err:
        sock.close()
        raise LinkError(f"relay: cannot bind to interface {ifname!r}: {err}") from err
    sock.setblocking(False)
    return sock


def _raise_priority() -> None:
    """Run under SCHED_FIFO when allowed, so departures are not late behind other processes.

    The relay sleeps in select() between frames, and the kernel's RT throttling keeps a
    runaway from starving the machine; without permission it stays a normal process.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(_RT_PRIORITY))
    except (OSError, AttributeError) as err:
        logger.debug("relay stays SCHED_OTHER: %s", err)


def _reduce_timer_slack() -> None:
    """Ask the kernel to wake us within ~1 µs of a timeout instead of the default 50 µs."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, _TIMER_SLACK_NS, 0, 0, 0)
    except (OSError, AttributeError) as err:
        logger.debug("could not reduce timer slack: %s", err)


LATENESS_BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Upper bounds of the lateness histogram's buckets; a last bucket holds the rest."""


@dataclasses.dataclass
class RelayCounters:
    """Counters of the relay itself (the impairments count the frames).

    Attributes:
        tx_errors: frames the kernel refused to send (e.g. larger than the MTU).
        bad_requests: malformed control requests.
        frames_read: frames read from both sides (our own outgoing ones not counted).
        late_ms_histogram: how late frames were sent relative to their departure time,
            counts per bucket of :data:`LATENESS_BUCKETS_MS` (plus one for the rest).
        late_ms_max: the largest lateness seen.
    """

    tx_errors: int = 0
    bad_requests: int = 0
    frames_read: int = 0
    late_ms_histogram: list[int] = dataclasses.field(
        default_factory=lambda: [0] * (len(LATENESS_BUCKETS_MS) + 1)
    )
    late_ms_max: float = 0.0

    def record_lateness(self, late_ms: float) -> None:
        """Count one frame sent ``late_ms`` after its departure time."""
        self.late_ms_histogram[bisect.bisect_left(LATENESS_BUCKETS_MS, late_ms)] += 1
        self.late_ms_max = max(self.late_ms_max, late_ms)


class _Side:
    """One direction: frames read from ``inbound`` are impaired then sent on ``outbound``."""

    def __init__(
        self,
        name: str,
        inbound: socket.socket,
        outbound: socket.socket,
        impairment: Impairment[bytes],
    ) -> None:
        self.name = name
        self.inbound = inbound
        self.outbound = outbound
        self.impairment = impairment


class Relay:
    """Moves frames between two interfaces, impairing each direction.

    Args:
        vehicle_if: interface on the vehicle side (its frames go through the uplink).
        ops_if: interface on the operations-centre side (its frames go through the downlink).
        profile: the link profile to start with.
        seed: seeds the impairments (uplink uses ``seed``, downlink ``seed + 1``).
        control_path: where to listen for control requests, or None for no control socket.
        lifeline_fd: a file descriptor whose EOF means "stop" (the starter's pipe), or None.
        clock_ms: the clock, in milliseconds.
        realtime: run under SCHED_FIFO (priority 10) if permitted, for accurate departures.
    """

    def __init__(
        self,
        *,
        vehicle_if: str,
        ops_if: str,
        profile: LinkProfile,
        seed: int,
        control_path: str | None,
        lifeline_fd: int | None = None,
        clock_ms: Callable[[], float] = monotonic_ms,
        realtime: bool = True,
    ) -> None:
        self._clock_ms = clock_ms
        self._realtime = realtime
        self._profile = profile
        self.counters = RelayCounters()
        self.orphaned = False
        self._stopping = False
        now_ms = clock_ms()
        vehicle_sock = open_packet_socket(vehicle_if)
        ops_sock = open_packet_socket(ops_if)
        self._sides = (
            _Side(
                "uplink",
                vehicle_sock,
                ops_sock,
                Impairment(profile.uplink, seed=seed, epoch_ms=now_ms),
            ),
            _Side(
                "downlink",
                ops_sock,
                vehicle_sock,
                Impairment(profile.downlink, seed=seed + 1, epoch_ms=now_ms),
            ),
        )
        self._lifeline_fd = lifeline_fd
        self._listener: socket.socket | None = None
        self._clients: dict[socket.socket, bytearray] = {}
        if control_path is not None:
            self._listener = self._listen(control_path)

    @staticmethod
    def _listen(path: str) -> socket.socket:
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(8)
        listener.setblocking(False)
        return listener

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration."""
        self._stopping = True

    def handle_request(self, request: Any) -> dict[str, Any]:
        """Serve one control request; never raises for bad input (it answers with an error).

        Requests (JSON objects): ``{"op": "cut", "seconds": S}`` cuts both directions now;
        ``{"op": "profile", "name": NAME}`` or ``{"op": "profile", "profile": {...}}`` switches
        profile; ``{"op": "stats"}`` returns the counters; ``{"op": "stop"}`` stops the relay;
        ``{"op": "ping"}`` answers ok.
        """
        try:
            return {"ok": True, **self._dispatch(request)}
        except (ConfigError, KeyError, TypeError, ValueError) as err:
            self.counters.bad_requests += 1
            logger.warning("relay: bad control request %.200r: %s", request, err)
            return {"ok": False, "error": f"bad control request: {err}"}

    def _dispatch(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise ConfigError("request must be a JSON object")
        op = request["op"]
        now_ms = self._clock_ms()
        if op == "ping":
            return {}
        if op == "stats":
            return self.stats()
        if op == "stop":
            self.stop()
            return {}
        if op == "cut":
            seconds = float(request["seconds"])
            for side in self._sides:
                side.impairment.cut(now_ms, seconds * _MS_PER_S)
            return {}
        if op == "profile":
            if "profile" in request:
                profile = LinkProfile.from_json(json.dumps(request["profile"]))
            else:
                profile = resolve_profile(str(request["name"]))
            self._profile = profile
            self._sides[0].impairment.set_profile(profile.uplink, now_ms)
            self._sides[1].impairment.set_profile(profile.downlink, now_ms)
            return {"profile": profile.name}
        raise ConfigError(f"unknown op {op!r} (known: cut, profile, stats, stop, ping)")

    def stats(self) -> dict[str, Any]:
        """The counters: per direction, plus the relay's own."""
        out: dict[str, Any] = {"profile": self._profile.name}
        for side in self._sides:
            out[side.name] = dataclasses.asdict(side.impairment.stats)
        out["relay"] = dataclasses.asdict(self.counters)
        return out

    def run(self) -> None:
        """Move frames until stopped; install SIGTERM/SIGINT handlers that stop it."""
        _reduce_timer_slack()
        if self._realtime:
            _raise_priority()

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            self.stop()

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not self._stopping:
                self._step()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def close(self) -> None:
        """Close every socket."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self._listener is not None:
            path = self._listener.getsockname()
            self._listener.close()
            self._listener = None
            if isinstance(path, str) and os.path.exists(path):
                os.unlink(path)
        for side in self._sides:
            side.inbound.close()

    def _timeout_s(self) -> float | None:
        deadlines = [d for s in self._sides if (d := s.impairment.next_due_ms()) is not None]
        if not deadlines:
            return None
        return max(0.0, (min(deadlines) - self._clock_ms()) / _MS_PER_S)

    def _step(self) -> None:
        watched: list[Any] = [side.inbound for side in self._sides]
        if self._listener is not None:
            watched.append(self._listener)
        if self._lifeline_fd is not None:
            watched.append(self._lifeline_fd)
        watched.extend(self._clients)
        readable, _, _ = select.select(watched, [], [], self._timeout_s())
        for item in readable:
            if item is self._listener:
                self._accept()
            elif item == self._lifeline_fd:
                self._check_lifeline()
            elif item in self._clients:
                self._serve_client(item)
        for side in self._sides:
            if side.inbound in readable:
                self._drain(side)
        self._flush()

    def _drain(self, side: _Side) -> None:
        for _ in range(_DRAIN_BATCH_FRAMES):
            try:
                frame, address = side.inbound.recvfrom(_MAX_FRAME_BYTES)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:
                continue
            self.counters.frames_read += 1
            side.impairment.offer(self._clock_ms(), frame, len(frame))

    def _flush(self) -> None:
        now_ms = self._clock_ms()
        for side in self._sides:
            for depart_ms, frame in side.impairment.due(now_ms):
                try:
                    side.outbound.send(frame)
                except OSError as err:
                    self.counters.tx_errors += 1
                    logger.debug("relay %s: send of %d bytes: %s", side.name, len(frame), err)
                else:
                    self.counters.record_lateness(self._clock_ms() - depart_ms)

    def _check_lifeline(self) -> None:
        assert self._lifeline_fd is not None  # only watched when set
        if not os.read(self._lifeline_fd, 4096):
            logger.info("relay: lifeline closed, the starter is gone; stopping")
            self.orphaned = True
            self.stop()

    def _accept(self) -> None:
        assert self._listener is not None  # only watched when set
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        self._clients[client] = bytearray()

    def _serve_client(self, client: socket.socket) -> None:
        buffer = self._clients[client]
        try:
            chunk = client.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buffer += chunk
        if b"\n" not in buffer and chunk and len(buffer) < _MAX_REQUEST_BYTES:
            return
        line = bytes(buffer).split(b"\n", 1)[0]
        del self._clients[client]
        if not line.strip():
            client.close()
            return
        try:
            request: Any = json.loads(line)
        except ValueError as err:
            self.counters.bad_requests += 1
            reply: dict[str, Any] = {"ok": False, "error": f"request is not JSON: {err}"}
        else:
            reply = self.handle_request(request)
        try:
            client.settimeout(_REPLY_TIMEOUT_S)
            client.sendall(json.dumps(reply).encode() + b"\n")
        except OSError as err:
            logger.warning("relay: could not answer a control client: %s", err)
        finally:
            client.close()


def control_request(
    path: str, request: dict[str, Any], *, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Send one request to a relay's control socket and return its answer.

    Raises:
        LinkError: if the relay cannot be reached, does not answer, or answers with an error.
    """
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ConfigError(f"control_request: timeout_s must be > 0, got {timeout_s!r}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode() + b"\n")
            answer = bytearray()
            while b"\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    except OSError as err:
        raise LinkError(f"relay control {path}: {request.get('op')!r} failed: {err}") from err
    try:
        reply: dict[str, Any] = json.loads(bytes(answer))
    except ValueError as err:
        raise LinkError(
            f"relay control {path}: answer is not JSON: {bytes(answer)[:200]!r}"
        ) from err
    if not reply.get("ok"):
        raise LinkError(f"relay control {path}: {reply.get('error', 'no error text')}")
    return reply
