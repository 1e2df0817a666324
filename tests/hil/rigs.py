"""Rigs the HIL suite runs against: one interface, three backends.

- ``python``: :class:`teledrive.vehicle.mcu_sim.PtyMcu`, the Python MCU model behind a pty.
- ``simavr``: the real firmware ELF in ``hardware/sim/build/teledrive_rig`` (simavr, wall-paced),
  pins observed through the rig's stdout lines (``hardware/sim/README.md``).
- ``board``: a real board on the port named by ``TELEDRIVE_HIL_PORT``; no pin access.

Each rig gives the host a serial port path and, where it can, pin observations with the wall
time (``time.monotonic()`` seconds) at which they took effect.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from teledrive.vehicle.mcu_codec import ResetCause
from teledrive.vehicle.mcu_model import McuOutputs
from teledrive.vehicle.mcu_sim import McuSnapshot, PtyMcu

REPO = Path(__file__).resolve().parents[2]
FIRMWARE_ELF = REPO / "hardware" / "firmware" / "build" / "teledrive_mcu.elf"
SIMAVR_RIG = REPO / "hardware" / "sim" / "build" / "teledrive_rig"
BOARD_PORT_ENV = "TELEDRIVE_HIL_PORT"


def time_scale() -> float:
    """Timeout multiplier for slow machines (``TELEDRIVE_TIME_SCALE``, default 1)."""
    return float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))


class RigUnavailable(Exception):
    """The rig cannot run here (why is in the message); the test is skipped."""


class RigError(Exception):
    """The rig itself failed (it exited, or did not answer a command)."""


@dataclass(frozen=True, slots=True)
class Pins:
    """Outputs seen on the pins.

    Attributes:
        t_s: wall time (``time.monotonic()``) when this became the pin state.
        state: MCU state (0 DISARMED, 1 ARMED, 2 ESTOP).
        motor_duty: signed PWM duty in per-mille, 0 when the H-bridge is off.
        direction: 1 forward, -1 reverse, 0 off.
        servo_us: servo pulse width in microseconds.
    """

    t_s: float
    state: int
    motor_duty: int
    direction: int
    servo_us: int

    @property
    def motor_off(self) -> bool:
        """PWM zero and both H-bridge inputs low."""
        return self.motor_duty == 0 and self.direction == 0


PinPredicate = Callable[[Pins], bool]


class Rig:
    """What a test needs from a rig. Subclasses fill in what their hardware allows."""

    name = "rig"
    observes_pins = False
    drives_pins = False

    @property
    def port(self) -> str:
        """Path the host opens with pyserial."""
        raise NotImplementedError

    def pins(self) -> Pins:
        """Pin state now."""
        raise RigUnavailable(f"{self.name}: pins cannot be observed")

    def wait_pins(self, predicate: PinPredicate, timeout_s: float) -> Pins:
        """Wait for pins that satisfy ``predicate`` (checked now and on every change).

        Returns:
            The first matching pin state, with the time it took effect.

        Raises:
            TimeoutError: not seen within ``timeout_s``.
        """
        raise RigUnavailable(f"{self.name}: pins cannot be observed")

    def set_estop_pin(self, pressed: bool) -> None:
        """Press or release the hardware e-stop input."""
        raise RigUnavailable(f"{self.name}: the e-stop pin cannot be driven")

    def pulse_estop_pin(self, width_s: float) -> None:
        """Press the e-stop input and release it ``width_s`` later (0: as soon as possible).

        The width is the stimulus itself (a bouncing or brushed switch), not a wait for a
        result: the hold uses a timer, the outcome is then waited for by condition.
        """
        pressed_s = time.monotonic()
        self.set_estop_pin(True)
        remaining_s = width_s - (time.monotonic() - pressed_s)
        if remaining_s > 0:
            threading.Event().wait(remaining_s)
        self.set_estop_pin(False)

    def sync(self) -> None:
        """Return once every pin change the MCU made until now has been observed."""

    def pin_log_mark(self) -> int:
        """Index into :meth:`pin_log` of the next pin change to be observed."""
        raise RigUnavailable(f"{self.name}: keeps no log of pin changes")

    def pin_log(self, since: int) -> list[Pins]:
        """Every pin change observed from index ``since`` (of :meth:`pin_log_mark`) on."""
        raise RigUnavailable(f"{self.name}: keeps no log of pin changes")

    def hangup(self) -> None:
        """Pull the cable: the port disappears; the MCU keeps running."""
        raise RigUnavailable(f"{self.name}: cannot hang up the port")

    def reopen(self) -> None:
        """Plug the cable back: the port path works again."""
        raise RigUnavailable(f"{self.name}: cannot reopen the port")

    def hang_firmware(self) -> None:
        """Make the firmware hang so that the AVR hardware watchdog resets it."""
        raise RigUnavailable(f"{self.name}: cannot hang the firmware")

    def close(self) -> None:
        """Release the rig."""


# --------------------------------------------------------------------------- python model


def _pins_of(outputs: McuOutputs, t_s: float) -> Pins:
    return Pins(
        t_s=t_s,
        state=int(outputs.state),
        motor_duty=outputs.motor_duty,
        direction=int(outputs.direction),
        servo_us=outputs.servo_us,
    )


class PythonRig(Rig):
    """Rig (a): the Python MCU model (``PtyMcu``), ticked every ``tick_ms``."""

    name = "python"
    observes_pins = True
    drives_pins = True

    def __init__(self, link_path: str, *, tick_ms: float = 2.0) -> None:
        self._mcu = PtyMcu(tick_ms=tick_ms, link_path=link_path)
        self._mcu.start()

    @property
    def port(self) -> str:
        return self._mcu.port_path

    def pins(self) -> Pins:
        return _pins_of(self._mcu.outputs(), time.monotonic())

    def wait_pins(self, predicate: PinPredicate, timeout_s: float) -> Pins:
        seen: list[Pins] = []

        def check(snapshot: McuSnapshot) -> bool:
            pins = _pins_of(snapshot.outputs, time.monotonic())
            if predicate(pins):
                seen.append(pins)
                return True
            return False

        if not self._mcu.wait_for(check, timeout_s):
            raise TimeoutError(f"python rig: pins {self.pins()} never matched in {timeout_s} s")
        return seen[0]

    def set_estop_pin(self, pressed: bool) -> None:
        self._mcu.set_estop_pin(pressed)

    def hangup(self) -> None:
        self._mcu.hangup()

    def reopen(self) -> None:
        self._mcu.reopen()

    def hang_firmware(self) -> None:
        # The model has no CPU to hang: it takes the watchdog reset the hang would cause.
        self._mcu.simulate_reset(ResetCause.WATCHDOG)

    def close(self) -> None:
        self._mcu.stop()


# --------------------------------------------------------------------------- simavr


def _parse_line(line: str) -> tuple[str, dict[str, str]]:
    event, _, rest = line.strip().partition(" ")
    fields = dict(item.split("=", 1) for item in rest.split() if "=" in item)
    return event, fields


class SimavrRig(Rig):
    """Rig (b): the firmware ELF running in simavr under ``teledrive_rig``.

    A reader thread parses the rig's stdout; commands go to its stdin and are confirmed by
    an ``ack`` line.
    """

    name = "simavr"
    observes_pins = True
    drives_pins = True

    def __init__(self, link_path: str, *, start_timeout_s: float = 10.0) -> None:
        for path, what in ((SIMAVR_RIG, "rig binary"), (FIRMWARE_ELF, "firmware ELF")):
            if not path.exists():
                raise RigUnavailable(
                    f"simavr {what} {path} is missing: run `make rig` (needs gcc-avr, simavr)"
                )
        self._link = link_path
        self._cond = threading.Condition()
        self._history: list[Pins] = []
        self._events: list[tuple[str, dict[str, str]]] = []
        self._exited = False
        self._proc = subprocess.Popen(
            [str(SIMAVR_RIG), "--elf", str(FIRMWARE_ELF), "--pty", link_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="simavr-rig", daemon=True)
        self._reader.start()
        self.wait_event("ready", start_timeout_s)

    @property
    def port(self) -> str:
        return self._link

    def _read(self) -> None:
        stdout = self._proc.stdout
        if stdout is None:
            return
        for line in stdout:
            event, fields = _parse_line(line)
            with self._cond:
                if event == "out":
                    self._history.append(
                        Pins(
                            t_s=float(fields["at"]),
                            state=int(fields["state"]),
                            motor_duty=int(fields["duty"]),
                            direction=int(fields["dir"]) if fields["dir"] != "2" else 0,
                            servo_us=int(fields["servo_us"]),
                        )
                    )
                self._events.append((event, fields))
                self._cond.notify_all()
        with self._cond:
            self._exited = True
            self._cond.notify_all()

    def wait_event(self, event: str, timeout_s: float, start: int = 0) -> dict[str, str]:
        """Wait for an observation line ``event`` (from index ``start`` of all lines)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for name, fields in self._events[start:]:
                    if name == event:
                        return fields
                start = max(start, len(self._events))
                remaining = deadline - time.monotonic()
                if self._exited:
                    raise RigError(f"simavr rig exited (rc={self._proc.poll()}) before '{event}'")
                if remaining <= 0:
                    raise TimeoutError(f"simavr rig: no '{event}' line within {timeout_s} s")
                self._cond.wait(remaining)

    def command(self, line: str, timeout_s: float = 5.0) -> dict[str, str]:
        """Send a command line and wait for its ``ack``."""
        with self._cond:
            start = len(self._events)
        stdin = self._proc.stdin
        if stdin is None or self._proc.poll() is not None:
            raise RigError(f"simavr rig is not running (rc={self._proc.poll()})")
        stdin.write(line + "\n")
        stdin.flush()
        return self.wait_event("ack", timeout_s, start)

    def pins(self) -> Pins:
        with self._cond:
            if not self._history:
                raise RigError("simavr rig reported no outputs yet")
            return self._history[-1]

    def wait_pins(self, predicate: PinPredicate, timeout_s: float) -> Pins:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            index = max(0, len(self._history) - 1)
            while True:
                for pins in self._history[index:]:
                    if predicate(pins):
                        return pins
                index = len(self._history)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._exited:
                    last = self._history[-1] if self._history else None
                    raise TimeoutError(f"simavr rig: pins {last} never matched in {timeout_s} s")
                self._cond.wait(remaining)

    def set_estop_pin(self, pressed: bool) -> None:
        self.command(f"estop {int(pressed)}")

    def pulse_estop_pin(self, width_s: float) -> None:
        if width_s > 0:
            super().pulse_estop_pin(width_s)
            return
        # Both lines in one write: the rig applies them in the same service pass, so the pin
        # is low for (next to) no simulated time - less than one firmware main-loop pass.
        self.commands(["estop 1", "estop 0"])

    def commands(self, lines: list[str], timeout_s: float = 5.0) -> None:
        """Send several command lines in one write and wait for all their ``ack`` lines."""
        with self._cond:
            start = len(self._events)
        stdin = self._proc.stdin
        if stdin is None or self._proc.poll() is not None:
            raise RigError(f"simavr rig is not running (rc={self._proc.poll()})")
        stdin.write("".join(line + "\n" for line in lines))
        stdin.flush()

        def acks() -> int:
            return sum(1 for name, _ in self._events[start:] if name == "ack")

        with self._cond:
            self._cond.wait_for(lambda: acks() >= len(lines) or self._exited, timeout_s)
            if acks() < len(lines):
                if self._exited:
                    raise RigError(f"simavr rig exited (rc={self._proc.poll()}) during {lines}")
                raise TimeoutError(f"simavr rig: {lines} not all acknowledged in {timeout_s} s")

    def sync(self) -> None:
        # The rig answers commands in order with its pin lines, so once the ack of a harmless
        # command is read, every earlier pin change has been read too.
        self.stats()

    def pin_log_mark(self) -> int:
        with self._cond:
            return len(self._history)

    def pin_log(self, since: int) -> list[Pins]:
        with self._cond:
            return list(self._history[since:])

    def hangup(self) -> None:
        self.command("hangup")

    def reopen(self) -> None:
        self.command("reopen")

    def hang_firmware(self) -> None:
        self.command("hang")

    def stats(self) -> dict[str, str]:
        """Pacing statistics of the rig (``lag_max_ms`` etc.)."""
        with self._cond:
            start = len(self._events)
        self.command("stats")
        return self.wait_event("stats", 5.0, start)

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(RigError, TimeoutError, BrokenPipeError):
                self.command("quit", timeout_s=2.0)
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._reader.join(timeout=5.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# --------------------------------------------------------------------------- real board


class BoardRig(Rig):
    """Rig (c): a real board on ``TELEDRIVE_HIL_PORT``; only its UART is reachable."""

    name = "board"

    def __init__(self) -> None:
        port = os.environ.get(BOARD_PORT_ENV)
        if not port:
            raise RigUnavailable(f"no real board: set {BOARD_PORT_ENV}=/dev/ttyACM0 to test one")
        if not os.path.exists(port):
            raise RigUnavailable(f"{BOARD_PORT_ENV}={port} does not exist")
        self._port = port

    @property
    def port(self) -> str:
        return self._port


RIG_NAMES = ("python", "simavr", "board")


def open_rig(name: str, link_path: str) -> Rig:
    """Start rig ``name`` with its port at ``link_path`` (ignored by the board rig)."""
    if name == "python":
        return PythonRig(link_path)
    if name == "simavr":
        return SimavrRig(link_path)
    if name == "board":
        return BoardRig()
    raise ValueError(f"unknown rig {name!r}; one of {RIG_NAMES}")
