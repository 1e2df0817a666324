"""Host side of the motor-controller link (``hardware/PROTOCOL.md``).

Two layers:

* :class:`McuSession` — sans-I/O protocol state of the host: sequence numbering, the HELLO /
  INFO handshake with its retries, frame builders for every host command, parsing of INFO,
  TELEMETRY and FAULT, counters. Bytes and ``now_ms`` in, bytes and messages out.
* :class:`MotorLink` — the I/O: opens ``serial.serial_for_url(url)`` (or, for ``sim://``, an
  in-process :class:`~teledrive.vehicle.mcu_sim.PtyMcu`), runs a reader thread feeding the
  session and reconnects with backoff when the port fails or disappears.

After every (re)connect the link sends HELLO, waits for INFO, checks ``proto_version`` and then
sends DISARM: the MCU is DISARMED until :meth:`MotorLink.arm` is called again. The link never
sends heartbeats by itself: keeping the MCU alive is the caller's job (the supervisor's tick),
so a hung host is caught by the MCU's link watchdog.
"""

from __future__ import annotations

import enum
import logging
import math
import termios
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import serial

from teledrive.shared.errors import ConfigError, LinkError, ProtocolError
from teledrive.vehicle.mcu_codec import (
    PROTOCOL_VERSION,
    SEQ_MODULUS,
    Arm,
    Decoded,
    Direction,
    Disarm,
    Drive,
    Estop,
    Fault,
    FaultCode,
    FrameDecoder,
    Heartbeat,
    Hello,
    Info,
    Message,
    Telemetry,
    encode_frame,
)
from teledrive.vehicle.mcu_sim import PtyMcu

logger = logging.getLogger(__name__)

PORT_ERRORS = (serial.SerialException, OSError, termios.error)
"""What a serial port that went away raises (a USB adapter unplugged raises any of them)."""

SIM_URL: Final = "sim://"
BAUDRATE: Final = 115_200
_I16_MIN: Final = -0x8000
_I16_MAX: Final = 0x7FFF
DEFAULT_SPEED_DEADBAND_MMPS: Final = 15
"""DRIVE speeds with ``|speed| <`` this many mm/s are sent as 0.

Defence in depth: the MCU drives nothing below 12 mm/s (a duty under one PWM step, see
PROTOCOL.md "Outputs"), and firmware before that rule turned 3..11 mm/s into full throttle. A
ramp's first step, a drifting trigger or rounding noise must not reach the motor at all.
"""


class HandshakeState(enum.Enum):
    """Where the host is in the HELLO / INFO handshake."""

    IDLE = "idle"
    AWAITING_INFO = "awaiting_info"
    READY = "ready"
    INCOMPATIBLE = "incompatible"


def _to_i16_milli(value: float, name: str) -> int:
    if not math.isfinite(value):
        raise ProtocolError(f"motor link: {name} must be finite, got {value!r}")
    return max(_I16_MIN, min(_I16_MAX, round(value * 1000.0)))


class McuSession:
    """Sans-I/O host protocol state.

    Feed MCU bytes to :meth:`receive_data`, call :meth:`poll` regularly, and write what
    :meth:`data_to_send` returns (handshake frames the session produces by itself). The command
    builders (:meth:`arm`, :meth:`drive`, ...) return a frame with the next sequence number for
    the caller to write, in the order built.

    Args:
        handshake_retry_ms: resend HELLO this often until INFO arrives.
        mcu_silence_ms: READY but nothing from the MCU for this long → handshake again.
        first_seq: sequence number of the first frame.
        speed_deadband_mmps: DRIVE speeds with a smaller magnitude (after rounding to mm/s)
            are sent as 0; 0 turns the deadband off.

    Raises:
        ValueError: ``speed_deadband_mmps`` is negative or beyond the i16 range.
    """

    def __init__(
        self,
        *,
        handshake_retry_ms: float = 250.0,
        mcu_silence_ms: float = 500.0,
        first_seq: int = 0,
        speed_deadband_mmps: int = DEFAULT_SPEED_DEADBAND_MMPS,
    ) -> None:
        if not 0 <= speed_deadband_mmps <= _I16_MAX:
            raise ConfigError(
                f"McuSession: speed_deadband_mmps must be 0..{_I16_MAX}, got {speed_deadband_mmps}"
            )
        self.speed_deadband_mmps = speed_deadband_mmps
        self.handshake_retry_ms = handshake_retry_ms
        self.mcu_silence_ms = mcu_silence_ms
        self._seq = first_seq % SEQ_MODULUS
        self._decoder = FrameDecoder(accept=Direction.M2H)
        self._out = bytearray()
        self._hello_sent_ms = 0.0
        self._last_rx_ms = 0.0
        self._last_mcu_seq: int | None = None
        self.state = HandshakeState.IDLE
        self.info: Info | None = None
        """INFO of the current connection, None before the handshake completes."""
        self.last_telemetry: Telemetry | None = None
        self.last_telemetry_ms: float | None = None
        self._uptime_before_ms: int | None = None
        self.last_fault: Fault | None = None
        self.last_error: str | None = None
        """Text of the last problem (bad frame, incompatible MCU, silence)."""
        self.frames_sent = 0
        self.frames_received = 0
        self.telemetry_received = 0
        self.faults_received: dict[str, int] = {}
        self.handshakes = 0
        self.mcu_resets = 0
        self.mcu_silences = 0
        self.mcu_seq_gaps = 0
        self.drives_deadbanded = 0
        """DRIVE frames whose non-zero speed the deadband sent as 0."""

    # ------------------------------------------------------------------ handshake

    @property
    def ready(self) -> bool:
        """True once INFO with a matching protocol version has arrived on this connection."""
        return self.state is HandshakeState.READY

    def begin_handshake(self, now_ms: float) -> None:
        """A (new) connection: forget partial input, queue a flush byte and HELLO."""
        self._decoder.reset()
        self._last_mcu_seq = None
        self.info = None
        self._out += b"\x00"  # ends any partial frame in the MCU's receiver
        self._send_hello(now_ms)

    def connection_lost(self) -> None:
        """The transport went away; the next connection starts with :meth:`begin_handshake`."""
        self.state = HandshakeState.IDLE
        self.info = None
        self._out.clear()
        # What the MCU said before the cut is not its state now: nothing until it speaks again.
        if self.last_telemetry is not None:
            self._uptime_before_ms = self.last_telemetry.uptime_ms
        self.last_telemetry = None
        self.last_telemetry_ms = None

    def poll(self, now_ms: float) -> None:
        """Timers: HELLO retries, and MCU silence detection while READY."""
        if self.state is HandshakeState.AWAITING_INFO:
            if now_ms - self._hello_sent_ms >= self.handshake_retry_ms:
                self._send_hello(now_ms)
        elif (
            self.state is HandshakeState.READY and now_ms - self._last_rx_ms >= self.mcu_silence_ms
        ):
            self.mcu_silences += 1
            self.last_error = f"no frame from the MCU for {now_ms - self._last_rx_ms:.0f} ms"
            self.info = None
            self._send_hello(now_ms)

    def _send_hello(self, now_ms: float) -> None:
        self.state = HandshakeState.AWAITING_INFO
        self._hello_sent_ms = now_ms
        self._out += self.hello()

    # ------------------------------------------------------------------ receive

    def receive_data(self, data: bytes, now_ms: float) -> list[Decoded]:
        """Consume MCU bytes; return the valid frames (INFO, TELEMETRY, FAULT) in order."""
        decoded = self._decoder.feed(data)
        if self._decoder.last_error is not None:
            self.last_error = str(self._decoder.last_error)
        for item in decoded:
            self._on_frame(item, now_ms)
        return decoded

    def _on_frame(self, item: Decoded, now_ms: float) -> None:
        self.frames_received += 1
        self._last_rx_ms = now_ms
        if self._last_mcu_seq is not None and (item.seq - self._last_mcu_seq) % SEQ_MODULUS != 1:
            self.mcu_seq_gaps += 1
        self._last_mcu_seq = item.seq
        msg = item.message
        if isinstance(msg, Info):
            self._on_info(msg)
        elif isinstance(msg, Telemetry):
            previous = self.last_telemetry
            before_ms = previous.uptime_ms if previous is not None else self._uptime_before_ms
            if before_ms is not None and msg.uptime_ms < before_ms:
                self.mcu_resets += 1
            self._uptime_before_ms = None
            self.last_telemetry = msg
            self.last_telemetry_ms = now_ms
            self.telemetry_received += 1
        elif isinstance(msg, Fault):
            self.last_fault = msg
            known = msg.code in FaultCode.__members__.values()
            name = FaultCode(msg.code).name if known else str(msg.code)
            self.faults_received[name] = self.faults_received.get(name, 0) + 1

    def _on_info(self, info: Info) -> None:
        if self.state is not HandshakeState.AWAITING_INFO:
            return
        self.info = info
        if info.proto_version != PROTOCOL_VERSION:
            self.state = HandshakeState.INCOMPATIBLE
            self.last_error = (
                f"MCU speaks protocol version {info.proto_version}, this host "
                f"{PROTOCOL_VERSION}; not driving it"
            )
            return
        self.state = HandshakeState.READY
        self.handshakes += 1
        self._out += self.disarm()

    # ------------------------------------------------------------------ send

    def data_to_send(self) -> bytes:
        """Frames the session queued by itself (flush byte, HELLO, post-handshake DISARM)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _frame(self, msg: Message) -> bytes:
        frame = encode_frame(msg, self._seq)
        self._seq = (self._seq + 1) % SEQ_MODULUS
        self.frames_sent += 1
        return frame

    @property
    def next_seq(self) -> int:
        """Sequence number the next built frame gets."""
        return self._seq

    def hello(self) -> bytes:
        """A HELLO frame."""
        return self._frame(Hello())

    def arm(self) -> bytes:
        """An ARM frame."""
        return self._frame(Arm())

    def disarm(self) -> bytes:
        """A DISARM frame."""
        return self._frame(Disarm())

    def heartbeat(self) -> bytes:
        """A HEARTBEAT frame."""
        return self._frame(Heartbeat())

    def estop(self) -> bytes:
        """An ESTOP frame."""
        return self._frame(Estop())

    def drive(self, speed_mps: float, steer_rad: float) -> bytes:
        """A DRIVE frame; values are rounded to mm/s and mrad and limited to the i16 range.

        A speed of less than ``speed_deadband_mmps`` (after rounding) is sent as 0 and counted
        in :attr:`drives_deadbanded`; steering is sent as it is. The MCU clamps further to its
        own limits (and flags it).

        Raises:
            ProtocolError: a value is NaN or infinite.
        """
        speed_mmps = _to_i16_milli(speed_mps, "speed_mps")
        steer_mrad = _to_i16_milli(steer_rad, "steer_rad")
        if speed_mmps != 0 and abs(speed_mmps) < self.speed_deadband_mmps:
            speed_mmps = 0
            self.drives_deadbanded += 1
        return self._frame(Drive(speed_mmps=speed_mmps, steer_mrad=steer_mrad))

    def stats(self) -> dict[str, Any]:
        """Counters and state, JSON-friendly."""
        return {
            "handshake": self.state.value,
            "frames_sent": self.frames_sent,
            "frames_received": self.frames_received,
            "telemetry_received": self.telemetry_received,
            "faults_received": dict(self.faults_received),
            "rx_errors": {r.value: n for r, n in self._decoder.errors.items()},
            "handshakes": self.handshakes,
            "mcu_resets": self.mcu_resets,
            "mcu_silences": self.mcu_silences,
            "mcu_seq_gaps": self.mcu_seq_gaps,
            "drives_deadbanded": self.drives_deadbanded,
            "last_error": self.last_error,
        }


TelemetryCallback = Callable[[Telemetry], None]
FaultCallback = Callable[[Fault], None]
ConnectionCallback = Callable[[bool], None]


class MotorLink:
    """The serial link to the motor controller, with a reader thread and reconnection.

    Callbacks (``on_telemetry``, ``on_fault``, ``on_connection``) are called **from the reader
    thread**; asyncio code must hop to its loop (``loop.call_soon_threadsafe``). An exception in
    a callback is logged and does not stop the link.

    The command methods are thread-safe and return at once: a write goes to the OS with a short
    ``write_timeout_s``. They return True when the frame was written, False when it was not
    (not connected, or the write failed) — counted in :meth:`stats`.

    Args:
        url: a pyserial URL or device path (``/dev/ttyACM0``, ``loop://``...), or ``sim://``
            to start an in-process :class:`PtyMcu` and talk to it over its pty.
        on_telemetry: called with each TELEMETRY.
        on_fault: called with each FAULT.
        on_connection: called with True when the handshake completes, False when lost.
        reconnect_backoff_s: first wait before reopening a failed port; doubles per failure.
        reconnect_backoff_max_s: the longest wait between reopen attempts.
        read_timeout_s: read poll interval of the reader thread.
        write_timeout_s: longest a command blocks on a full output buffer.
        handshake_retry_ms: HELLO retry interval.
        mcu_silence_ms: nothing from the MCU for this long → handshake again.
        speed_deadband_mmps: DRIVE speeds below this magnitude are sent as 0 (see
            :class:`McuSession`).
        clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        on_telemetry: TelemetryCallback | None = None,
        on_fault: FaultCallback | None = None,
        on_connection: ConnectionCallback | None = None,
        reconnect_backoff_s: float = 0.1,
        reconnect_backoff_max_s: float = 2.0,
        read_timeout_s: float = 0.02,
        write_timeout_s: float = 0.05,
        handshake_retry_ms: float = 250.0,
        mcu_silence_ms: float = 500.0,
        speed_deadband_mmps: int = DEFAULT_SPEED_DEADBAND_MMPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if reconnect_backoff_s <= 0 or reconnect_backoff_max_s < reconnect_backoff_s:
            raise ConfigError(
                "MotorLink: need 0 < reconnect_backoff_s <= reconnect_backoff_max_s, got "
                f"{reconnect_backoff_s} and {reconnect_backoff_max_s}"
            )
        self.url = url
        self._on_telemetry = on_telemetry
        self._on_fault = on_fault
        self._on_connection = on_connection
        self._backoff_s = reconnect_backoff_s
        self._backoff_max_s = reconnect_backoff_max_s
        self._read_timeout_s = read_timeout_s
        self._write_timeout_s = write_timeout_s
        self._clock = clock
        self._session = McuSession(
            handshake_retry_ms=handshake_retry_ms,
            mcu_silence_ms=mcu_silence_ms,
            speed_deadband_mmps=speed_deadband_mmps,
        )
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._connected_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._port: Any = None
        self._last_written_seq: int | None = None
        self._sim: PtyMcu | None = None
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "opens",
                "open_failures",
                "port_errors",
                "write_errors",
                "write_timeouts",
                "not_connected_drops",
                "callback_errors",
            ),
            0,
        )
        self._last_link_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def sim(self) -> PtyMcu | None:
        """The in-process simulated MCU when the URL is ``sim://``, else None."""
        return self._sim

    def start(self) -> None:
        """Start the reader thread (and the simulated MCU for ``sim://``); returns at once.

        Raises:
            LinkError: already started, or the simulated MCU could not start.
        """
        if self._thread is not None:
            raise LinkError(f"MotorLink({self.url}): already started")
        if self.url == SIM_URL and self._sim is None:
            self._sim = PtyMcu()
            self._sim.start()
        self._stop_evt.clear()
        self._thread = threading.Thread(target=self._run, name="MotorLink-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader, close the port (and the simulated MCU). Safe to call twice."""
        self._stop_evt.set()
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            port.cancel_read()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self._sim is not None:
            self._sim.stop()
            self._sim = None

    def __enter__(self) -> MotorLink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        """True while the port is open and the handshake has completed."""
        return self._connected_evt.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected (handshake done); False on timeout. Not for the event loop."""
        return self._connected_evt.wait(timeout_s)

    @property
    def last_telemetry(self) -> Telemetry | None:
        """The newest TELEMETRY received."""
        return self._session.last_telemetry

    @property
    def last_written_seq(self) -> int | None:
        """Sequence number of the last frame written to the port (None before the first)."""
        return self._last_written_seq

    @property
    def info(self) -> Info | None:
        """INFO of the current connection."""
        return self._session.info

    # ------------------------------------------------------------------ commands

    def arm(self) -> bool:
        """Ask the MCU to arm (it refuses while the e-stop pin is held)."""
        return self._command(self._session.arm, require_ready=True)

    def disarm(self) -> bool:
        """Disarm: outputs off. Sent whenever the port is open, handshake or not."""
        return self._command(self._session.disarm, require_ready=False)

    def drive(self, speed_mps: float, steer_rad: float) -> bool:
        """Send a setpoint: speed in m/s (signed), steering in rad (+ = left).

        A speed below the deadband (``speed_deadband_mmps``) is sent as 0.

        Raises:
            ProtocolError: a value is NaN or infinite (nothing is sent).
        """
        _to_i16_milli(speed_mps, "speed_mps")
        _to_i16_milli(steer_rad, "steer_rad")
        return self._command(lambda: self._session.drive(speed_mps, steer_rad), require_ready=True)

    def heartbeat(self) -> bool:
        """Keep the link alive while idle (does not renew a drive setpoint)."""
        return self._command(self._session.heartbeat, require_ready=True)

    def estop(self) -> bool:
        """Software e-stop (latched in the MCU). Sent whenever the port is open."""
        return self._command(self._session.estop, require_ready=False)

    def _command(self, build: Callable[[], bytes], *, require_ready: bool) -> bool:
        with self._lock:
            port = self._port
            if port is None or (require_ready and not self._session.ready):
                self._counters["not_connected_drops"] += 1
                return False
            # Built and written under one lock, so frames reach the wire in seq order.
            seq = self._session.next_seq
            frame = build()
            written = self._write_locked(port, frame)
            if written:
                self._last_written_seq = seq
            return written

    def _write_locked(self, port: Any, data: bytes) -> bool:
        try:
            port.write(data)
        except serial.SerialTimeoutException as err:
            self._counters["write_timeouts"] += 1
            self._last_link_error = f"write timed out on {self.url}: {err}"
            return False
        except PORT_ERRORS as err:
            self._counters["write_errors"] += 1
            self._last_link_error = f"write failed on {self.url}: {err}"
            return False
        return True

    def stats(self) -> dict[str, Any]:
        """Counters and state of the link and the session, JSON-friendly."""
        with self._lock:
            out: dict[str, Any] = {"url": self.url, "connected": self.connected}
            out.update(self._counters)
            out["reconnects"] = max(0, self._counters["opens"] - 1)
            out["last_link_error"] = self._last_link_error
            out.update(self._session.stats())
            return out

    # ------------------------------------------------------------------ reader thread

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    def _resolve_path(self) -> str:
        if self._sim is not None:
            return self._sim.slave_path
        return self.url

    def _open(self) -> Any:
        try:
            port = serial.serial_for_url(
                self._resolve_path(),
                baudrate=BAUDRATE,
                timeout=self._read_timeout_s,
                write_timeout=self._write_timeout_s,
            )
            port.reset_input_buffer()
        # termios.error is not an OSError: a device unplugged between open and the flush.
        except (*PORT_ERRORS, LinkError, ValueError) as err:
            with self._lock:
                self._counters["open_failures"] += 1
                self._last_link_error = f"cannot open {self.url}: {err}"
            return None
        return port

    def _run(self) -> None:
        backoff_s = self._backoff_s
        while not self._stop_evt.is_set():
            port = self._open()
            if port is not None:
                if self._serve(port):
                    backoff_s = self._backoff_s  # the connection worked: start over
                self._drop(port)
            if self._stop_evt.wait(backoff_s):
                break
            backoff_s = min(backoff_s * 2.0, self._backoff_max_s)

    def _serve(self, port: Any) -> bool:
        """Run one connection until it fails or stop() is called; True if it got READY."""
        with self._lock:
            self._counters["opens"] += 1
            self._port = port
            self._session.begin_handshake(self._now_ms())
            self._write_locked(port, self._session.data_to_send())
        logger.info("motor link: opened %s, handshaking", self.url)
        was_ready = False
        try:
            while not self._stop_evt.is_set():
                data = port.read(max(1, port.in_waiting))
                was_ready = self._process(port, data) or was_ready
            with self._lock:  # stopping on purpose: leave the MCU disarmed, not to its watchdog
                self._write_locked(port, self._session.disarm())
        except PORT_ERRORS as err:
            with self._lock:
                self._counters["port_errors"] += 1
                self._last_link_error = f"{self.url}: {err}"
            logger.warning("motor link: %s failed: %s; reconnecting", self.url, err)
        return was_ready

    def _process(self, port: Any, data: bytes) -> bool:
        now_ms = self._now_ms()
        with self._lock:
            frames = self._session.receive_data(data, now_ms) if data else []
            self._session.poll(now_ms)
            out = self._session.data_to_send()
            if out:
                self._write_locked(port, out)
            ready = self._session.ready
            if self._session.state is HandshakeState.INCOMPATIBLE:
                self._last_link_error = self._session.last_error
        self._set_connected(ready)
        for item in frames:
            self._dispatch(item.message)
        return ready

    def _drop(self, port: Any) -> None:
        with self._lock:
            self._port = None
            self._session.connection_lost()
        try:
            port.close()
        except PORT_ERRORS as err:
            logger.debug("motor link: closing %s: %s", self.url, err)
        self._set_connected(False)

    def _set_connected(self, ready: bool) -> None:
        if ready == self._connected_evt.is_set():
            return
        if ready:
            self._connected_evt.set()
            logger.info("motor link: %s connected, MCU %s", self.url, self._session.info)
        else:
            self._connected_evt.clear()
            logger.warning("motor link: %s lost", self.url)
        if self._on_connection is not None:
            self._call(self._on_connection, ready)

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg, Telemetry) and self._on_telemetry is not None:
            self._call(self._on_telemetry, msg)
        elif isinstance(msg, Fault) and self._on_fault is not None:
            self._call(self._on_fault, msg)

    def _call(self, callback: Callable[[Any], None], arg: object) -> None:
        try:
            callback(arg)
        except Exception:  # a consumer bug must not take the motor link down
            self._counters["callback_errors"] += 1
            logger.exception("motor link: callback %r failed", callback)
