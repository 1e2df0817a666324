"""The MCU model behind a real pseudo-terminal, so pyserial opens it like ``/dev/ttyACM0``.

:class:`PtyMcu` runs a :class:`~teledrive.vehicle.mcu_model.McuModel` in a thread: it waits on
the pty master with ``select()``, feeds what the host wrote into the model, ticks the model with
wall time in milliseconds and writes the model's UART output back. It is rig (a) of the HIL
suite and what ``motor_url = "sim://"`` runs in-process.

Standalone, until SIGTERM or SIGINT (prints the port path first)::

    python -m teledrive.vehicle.mcu_sim --link /tmp/ttyMCU
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import sys
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Final, Self, TypeVar

from teledrive.shared.errors import ConfigError, LinkError
from teledrive.vehicle.mcu_codec import FaultBit, ResetCause, State
from teledrive.vehicle.mcu_model import LastDrive, McuModel, McuOutputs

T = TypeVar("T")

_READ_CHUNK: Final = 4096
_COMMAND_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class McuSnapshot:
    """A consistent copy of the model's observable state, taken under the lock."""

    now_ms: float
    state: State
    outputs: McuOutputs
    faults: FaultBit
    last_seq: int | None
    last_drive: LastDrive | None
    frames_accepted: int
    drive_frames_applied: int
    rx_errors: dict[str, int]
    telemetry_sent: int
    faults_sent: int
    wheel_speed_mmps: float
    battery_mv: int
    port_open: bool
    tx_bytes_dropped: int


class _Command:
    """An action for the pty thread and its outcome."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.done = threading.Event()
        self.error: LinkError | None = None


class PtyMcu:
    """Run an :class:`McuModel` behind a pty.

    The model is shared with the pty thread: read it through :meth:`outputs`,
    :meth:`snapshot`, :meth:`with_model` or :meth:`wait_for`, which take the lock; touch
    :attr:`model` directly only while holding :attr:`lock`.

    Args:
        model: the model to run (a default :class:`McuModel` if None).
        tick_ms: longest interval between model ticks.
        clock: monotonic clock in seconds; the model gets ``clock() * 1000``.
        link_path: if given, a symlink to the current pty slave is kept there (like a udev
            ``/dev/serial/by-id`` link) and survives :meth:`hangup` / :meth:`reopen`.
    """

    def __init__(
        self,
        model: McuModel | None = None,
        *,
        tick_ms: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        link_path: str | None = None,
    ) -> None:
        if tick_ms <= 0:
            raise ConfigError(f"PtyMcu: tick_ms must be > 0, got {tick_ms}")
        self._model = model if model is not None else McuModel()
        self._tick_s = tick_ms / 1000.0
        self._clock = clock
        self._link_path = link_path
        self._cond = threading.Condition()
        self._master_fd: int | None = None
        self._slave_fd: int | None = None
        self._slave_path: str | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._commands: list[_Command] = []
        self._tx_bytes_dropped = 0
        self.loop_error: BaseException | None = None
        """An unexpected exception that ended the pty thread, if any."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Open the pty, start the thread and return the slave path.

        Raises:
            LinkError: already started, or the pty or the symlink could not be made.
        """
        if self._thread is not None:
            raise LinkError("PtyMcu.start: already started")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        try:
            self._open_pty()
        except LinkError:
            self._close_wake_pipe()
            raise
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="PtyMcu", daemon=True)
        self._thread.start()
        return self.slave_path

    def stop(self) -> None:
        """Stop the thread, close the pty and remove the symlink. Safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join(timeout=_COMMAND_TIMEOUT_S)
        self._thread = None
        self._close_pty()
        self._close_wake_pipe()

    def _close_wake_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r, self._wake_w = -1, -1

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def hangup(self) -> None:
        """Simulate pulling the USB cable: close the pty and remove the symlink.

        The model keeps running (its watchdogs see the silence); its output is dropped.
        """
        self._submit(self._close_pty)

    def reopen(self) -> str:
        """Simulate plugging the cable back: a new pty, the symlink pointed at it.

        Returns:
            The new slave path.
        """
        self._submit(self._open_pty)
        return self.slave_path

    # ------------------------------------------------------------------ access

    @property
    def slave_path(self) -> str:
        """Path of the current pty slave.

        Raises:
            LinkError: the pty is closed (not started, or hung up).
        """
        if self._slave_path is None:
            raise LinkError("PtyMcu: no pty open (not started or hung up)")
        return self._slave_path

    @property
    def port_path(self) -> str:
        """What a client opens: the symlink if ``link_path`` was given, else the slave path."""
        return self._link_path if self._link_path is not None else self.slave_path

    @property
    def model(self) -> McuModel:
        """The model itself; hold :attr:`lock` while using it."""
        return self._model

    @property
    def lock(self) -> threading.Condition:
        """The lock (a Condition, notified after every loop pass) that guards the model."""
        return self._cond

    def with_model(self, fn: Callable[[McuModel], T]) -> T:
        """Call ``fn(model)`` under the lock (ticking the model to now first) and return it."""
        with self._cond:
            self._model.tick(self._now_ms())
            result = fn(self._model)
            self._flush_locked()
            self._cond.notify_all()
            return result

    def outputs(self) -> McuOutputs:
        """The model's pin outputs now."""
        with self._cond:
            return self._model.outputs

    def snapshot(self) -> McuSnapshot:
        """A consistent copy of the model's observable state."""
        with self._cond:
            return self._snapshot_locked()

    def set_estop_pin(self, active: bool) -> None:
        """Press (``True``) or release the hardware e-stop."""
        self.with_model(lambda m: m.set_estop_pin(active, self._now_ms()))

    def set_battery_mv(self, battery_mv: int) -> None:
        """Set the battery voltage the model reads."""

        def apply(model: McuModel) -> None:
            model.battery_mv = battery_mv

        self.with_model(apply)

    def simulate_reset(self, cause: ResetCause = ResetCause.WATCHDOG) -> None:
        """Reboot the model now (e.g. a hardware-watchdog reset)."""
        self.with_model(lambda m: m.simulate_reset(self._now_ms(), cause))

    def wait_for(self, predicate: Callable[[McuSnapshot], bool], timeout_s: float) -> bool:
        """Wait until ``predicate(snapshot)`` holds; False on timeout.

        The predicate is re-checked after every pass of the pty thread.
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: predicate(self._snapshot_locked()), timeout=timeout_s
            )

    # ------------------------------------------------------------------ thread

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    def _snapshot_locked(self) -> McuSnapshot:
        model = self._model
        return McuSnapshot(
            now_ms=model.now_ms,
            state=model.state,
            outputs=model.outputs,
            faults=model.faults,
            last_seq=model.last_seq,
            last_drive=model.last_drive,
            frames_accepted=model.frames_accepted,
            drive_frames_applied=model.drive_frames_applied,
            rx_errors=dict(model.rx_errors),
            telemetry_sent=model.telemetry_sent,
            faults_sent=model.faults_sent,
            wheel_speed_mmps=model.wheel_speed_mmps,
            battery_mv=model.battery_mv,
            port_open=self._master_fd is not None,
            tx_bytes_dropped=self._tx_bytes_dropped,
        )

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"\x01")

    def _submit(self, command: Callable[[], None]) -> None:
        if self._thread is None or not self._thread.is_alive():
            command()
            return
        pending = _Command(command)
        with self._cond:
            self._commands.append(pending)
        self._wake()
        if not pending.done.wait(_COMMAND_TIMEOUT_S):
            raise LinkError("PtyMcu: the pty thread did not run the command in time")
        if pending.error is not None:
            raise pending.error

    def _run_commands(self) -> bool:
        with self._cond:
            commands, self._commands = self._commands, []
        for pending in commands:
            try:
                pending.action()
            except LinkError as err:  # handed to the caller of hangup()/reopen()
                pending.error = err
            finally:
                pending.done.set()
        return bool(commands)

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._loop_once()
        except BaseException as err:  # recorded for the owner; the thread must not die silently
            self.loop_error = err
            raise
        finally:
            self._run_commands()  # never leave a caller of hangup()/reopen() waiting

    def _loop_once(self) -> None:
        master = self._master_fd
        fds = [self._wake_r] if master is None else [self._wake_r, master]
        readable, _, _ = select.select(fds, [], [], self._tick_s)
        reconfigured = False
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, _READ_CHUNK)
            reconfigured = self._run_commands()
        data = b""
        if master is not None and master in readable and not reconfigured:
            try:
                data = os.read(master, _READ_CHUNK)
            except BlockingIOError:
                pass
            except OSError as err:  # EIO: nobody has the slave open; not an error for a UART
                if err.errno != errno.EIO:
                    raise
        with self._cond:
            now_ms = self._now_ms()
            if data:
                self._model.receive_data(data, now_ms)
            else:
                self._model.tick(now_ms)
            self._flush_locked()
            self._cond.notify_all()

    def _flush_locked(self) -> None:
        out = self._model.data_to_send()
        if not out:
            return
        if self._master_fd is None:
            self._tx_bytes_dropped += len(out)
            return
        try:
            written = os.write(self._master_fd, out)
        except (BlockingIOError, OSError):  # nobody reading: a UART's bytes just fall away
            written = 0
        self._tx_bytes_dropped += len(out) - written

    # ------------------------------------------------------------------ pty

    def _open_pty(self) -> None:
        if self._master_fd is not None:
            return
        try:
            master, slave = os.openpty()
        except OSError as err:
            raise LinkError(f"PtyMcu: openpty failed: {err}") from err
        # Raw at once: otherwise the line discipline echoes the MCU's output back into it
        # before a client has opened and configured the port.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master_fd, self._slave_fd = master, slave
        self._slave_path = os.ttyname(slave)
        if self._link_path is not None:
            try:
                self._make_link(self._link_path, self._slave_path)
            except LinkError:
                self._close_pty()
                raise

    def _close_pty(self) -> None:
        if self._link_path is not None and os.path.islink(self._link_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link_path)
        for fd in (self._master_fd, self._slave_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master_fd = self._slave_fd = None
        self._slave_path = None

    @staticmethod
    def _make_link(link_path: str, target: str) -> None:
        if os.path.lexists(link_path) and not os.path.islink(link_path):
            raise LinkError(f"PtyMcu: {link_path} exists and is not a symlink; not replacing it")
        tmp = f"{link_path}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.symlink(target, tmp)
            os.replace(tmp, link_path)
        except OSError as err:
            raise LinkError(f"PtyMcu: cannot link {link_path} -> {target}: {err}") from err


def main(argv: list[str] | None = None) -> int:
    """Run a PtyMcu until SIGTERM/SIGINT; print the port path on stdout first."""
    parser = argparse.ArgumentParser(
        prog="python -m teledrive.vehicle.mcu_sim",
        description="Simulated motor controller (protocol v1) behind a pty.",
    )
    parser.add_argument("--link", help="create a symlink to the pty here")
    parser.add_argument("--tick-ms", type=float, default=5.0, help="model tick interval")
    parser.add_argument("--link-timeout-ms", type=int, default=200)
    parser.add_argument("--drive-timeout-ms", type=int, default=200)
    args = parser.parse_args(argv)
    model = McuModel(link_timeout_ms=args.link_timeout_ms, drive_timeout_ms=args.drive_timeout_ms)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim = PtyMcu(model, tick_ms=args.tick_ms, link_path=args.link)
    sim.start()
    try:
        print(sim.port_path, flush=True)
        while not stop.wait(0.5):
            if sim.loop_error is not None:
                print(f"mcu_sim: pty thread failed: {sim.loop_error!r}", file=sys.stderr)
                return 1
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
