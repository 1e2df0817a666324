"""The host end of the motor link for HIL tests: pyserial plus the Python codec.

:class:`HostLink` opens the port, decodes what the MCU sends in a reader thread and lets tests
wait on telemetry, INFO and FAULT frames by condition. It numbers its own frames.
"""

from __future__ import annotations

import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from teledrive.vehicle.mcu_codec import (
    Arm,
    Decoded,
    Direction,
    Disarm,
    Drive,
    Estop,
    Fault,
    FrameDecoder,
    Heartbeat,
    Hello,
    Info,
    Message,
    Telemetry,
    encode_frame,
)

_READ_TIMEOUT_S = 0.01


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded frame from the MCU and the wall time (``time.monotonic()``) it arrived."""

    t_s: float
    seq: int
    message: Message


class HostLink:
    """A serial connection to the MCU with a reader thread.

    Args:
        port: serial port path (a pty or a real device).
        first_seq: sequence number of the first frame sent.
    """

    def __init__(self, port: str, *, first_seq: int = 1) -> None:
        self._serial = serial.Serial(port, 115200, timeout=_READ_TIMEOUT_S)
        self._serial.reset_input_buffer()
        # A lone delimiter ends whatever partial frame the MCU holds from an earlier host,
        # so our first frame is not glued to it.
        self._serial.write(b"\x00")
        self._seq = first_seq
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._write_lock = threading.Lock()
        self.decoder = FrameDecoder(accept=Direction.M2H)
        self.read_error: Exception | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="HostLink", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ sending

    def send(self, msg: Message, *, seq: int | None = None) -> int:
        """Send ``msg`` with the next sequence number (or ``seq``); returns the seq used."""
        with self._write_lock:
            used = self._seq if seq is None else seq
            self._seq = (used + 1) % 65536
            self.write_raw(encode_frame(msg, used))
            return used

    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (garbage, truncated frames, ...)."""
        self._serial.write(data)
        self._serial.flush()

    def hello(self) -> None:
        self.send(Hello())

    def arm(self) -> None:
        self.send(Arm())

    def disarm(self) -> None:
        self.send(Disarm())

    def drive(self, speed_mmps: int, steer_mrad: int) -> int:
        return self.send(Drive(speed_mmps=speed_mmps, steer_mrad=steer_mrad))

    def heartbeat(self) -> None:
        self.send(Heartbeat())

    def estop(self) -> None:
        self.send(Estop())

    # ------------------------------------------------------------------ receiving

    def _read(self) -> None:
        while not self._closing:
            try:
                data = self._serial.read(4096)
            except (serial.SerialException, OSError, TypeError) as err:
                if not self._closing:
                    with self._cond:
                        self.read_error = err
                        self._cond.notify_all()
                return
            if not data:
                continue
            now = time.monotonic()
            decoded: list[Decoded] = self.decoder.feed(data)
            if decoded:
                with self._cond:
                    self._received.extend(Received(now, d.seq, d.message) for d in decoded)
                    self._cond.notify_all()

    def mark(self) -> int:
        """Index of the next frame to arrive, to wait only for frames after now."""
        with self._cond:
            return len(self._received)

    def wait_for(
        self,
        predicate: Callable[[Received], bool],
        timeout_s: float,
        *,
        since: int | None = None,
    ) -> Received:
        """First frame (from index ``since``, default: from now on) matching ``predicate``.

        Raises:
            TimeoutError: none within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            index = len(self._received) if since is None else since
            while True:
                for item in self._received[index:]:
                    if predicate(item):
                        return item
                index = len(self._received)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.read_error is not None:
                    last = self.frames(Telemetry)[-1:] if self._received else []
                    raise TimeoutError(
                        f"no matching frame within {timeout_s} s "
                        f"(read error {self.read_error!r}, last telemetry {last})"
                    )
                self._cond.wait(remaining)

    def wait_telemetry(
        self, predicate: Callable[[Telemetry], bool], timeout_s: float, *, since: int | None = None
    ) -> Telemetry:
        """First TELEMETRY matching ``predicate``."""
        item = self.wait_for(
            lambda r: isinstance(r.message, Telemetry) and predicate(r.message),
            timeout_s,
            since=since,
        )
        assert isinstance(item.message, Telemetry)
        return item.message

    def wait_info(self, timeout_s: float, *, since: int | None = None) -> Info:
        item = self.wait_for(lambda r: isinstance(r.message, Info), timeout_s, since=since)
        assert isinstance(item.message, Info)
        return item.message

    def wait_fault(self, code: int, timeout_s: float, *, since: int | None = None) -> Fault:
        item = self.wait_for(
            lambda r: isinstance(r.message, Fault) and r.message.code == code,
            timeout_s,
            since=since,
        )
        assert isinstance(item.message, Fault)
        return item.message

    def frames(self, kind: type[Message], *, since: int = 0) -> list[Received]:
        """Frames of one message type received so far (from index ``since``)."""
        with self._cond:
            return [r for r in self._received[since:] if isinstance(r.message, kind)]

    def close(self) -> None:
        self._closing = True
        self._reader.join(timeout=2.0)
        self._serial.close()

    def __enter__(self) -> HostLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DriveStream:
    """Send DRIVE at a fixed rate from a thread until stopped (a host in normal operation)."""

    def __init__(self, link: HostLink, speed_mmps: int, steer_mrad: int, *, rate_hz: float = 50):
        self._link = link
        self.speed_mmps = speed_mmps
        self.steer_mrad = steer_mrad
        self._period_s = 1.0 / rate_hz
        self._stop = threading.Event()
        self.sent = 0
        self.write_error: Exception | None = None
        self.last_send_s = 0.0
        """``time.monotonic()`` just before the latest DRIVE was written."""
        self._thread = threading.Thread(target=self._run, name="DriveStream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            self.last_send_s = time.monotonic()
            try:
                self._link.drive(self.speed_mmps, self.steer_mrad)
            except (serial.SerialException, OSError, termios.error) as err:  # port went away
                self.write_error = err
                return
            self.sent += 1
            next_s += self._period_s
            self._stop.wait(max(0.0, next_s - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
