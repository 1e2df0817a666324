"""PtyMcu: the model behind a real pty, opened with pyserial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from teledrive.shared.errors import LinkError
from teledrive.vehicle.mcu_codec import (
    Arm,
    Decoded,
    Direction,
    Drive,
    FrameDecoder,
    Hello,
    Info,
    State,
    Telemetry,
    encode_frame,
)
from teledrive.vehicle.mcu_model import McuModel
from teledrive.vehicle.mcu_sim import PtyMcu

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE


def _read_until(port: serial.Serial, want: type, timeout_s: float = WAIT_S) -> list[Decoded]:
    decoder = FrameDecoder(accept=Direction.M2H)
    got: list[Decoded] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got += decoder.feed(port.read(256))
        if any(isinstance(d.message, want) for d in got):
            return got
    raise AssertionError(f"no {want.__name__} within {timeout_s} s; got {got}")


def test_pyserial_talks_to_the_model(tmp_path: Path) -> None:
    link = tmp_path / "ttyMCU"
    with PtyMcu(McuModel(), link_path=str(link)) as sim:
        assert os.path.realpath(link) == sim.slave_path
        with serial.serial_for_url(str(link), baudrate=115200, timeout=0.05) as port:
            port.reset_input_buffer()
            port.write(encode_frame(Hello(), 0))
            got = _read_until(port, Info)
            assert any(d.message.TYPE is Info.TYPE for d in got)
            port.write(encode_frame(Arm(), 1) + encode_frame(Drive(900, 250), 2))
            assert sim.wait_for(lambda s: s.outputs.speed_cmd_mmps == 900, WAIT_S)
            out = sim.outputs()
            assert (out.state, out.servo_us, out.motor_duty) == (State.ARMED, 1750, 300)
            got = _read_until(port, Telemetry)
            assert sim.snapshot().telemetry_sent >= 1


def test_hangup_removes_link_and_reopen_restores_it(tmp_path: Path) -> None:
    link = tmp_path / "ttyMCU"
    with PtyMcu(link_path=str(link)) as sim:
        port = serial.serial_for_url(str(link), baudrate=115200, timeout=0.05)
        sim.hangup()
        assert not link.exists()
        with pytest.raises(LinkError):
            _ = sim.slave_path
        with pytest.raises(serial.SerialException):
            port.read(10)
        port.close()
        assert sim.wait_for(lambda s: not s.port_open and s.telemetry_sent >= 2, WAIT_S)
        new_path = sim.reopen()
        assert os.path.realpath(link) == new_path
        with serial.serial_for_url(str(link), baudrate=115200, timeout=0.05) as port2:
            port2.write(encode_frame(Hello(), 0))
            _read_until(port2, Info)


def test_estop_pin_and_battery_through_the_lock() -> None:
    with PtyMcu() as sim:
        sim.set_battery_mv(11_000)
        sim.set_estop_pin(True)
        snap = sim.snapshot()
        assert snap.state is State.ESTOP
        assert snap.battery_mv == 11_000
        assert sim.with_model(lambda m: m.battery_mv) == 11_000


def test_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "ttyMCU"
    blocker.write_text("not a tty")
    sim = PtyMcu(link_path=str(blocker))
    with pytest.raises(LinkError, match="not a symlink"):
        sim.start()
    sim.stop()
    assert blocker.read_text() == "not a tty"


def test_standalone_module_until_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "ttyMCU"
    proc = subprocess.Popen(
        [sys.executable, "-m", "teledrive.vehicle.mcu_sim", "--link", str(link)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first_line = proc.stdout.readline().strip()
        assert first_line == str(link)
        with serial.serial_for_url(first_line, baudrate=115200, timeout=0.05) as port:
            port.reset_input_buffer()
            port.write(encode_frame(Hello(), 0))
            _read_until(port, Info)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == 0
        assert not link.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
