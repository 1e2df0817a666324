"""Host side of the motor link: McuSession sans-I/O, MotorLink over a real pty (PtyMcu)."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from teledrive.shared.errors import ProtocolError
from teledrive.vehicle.mcu_codec import (
    Decoded,
    Direction,
    Disarm,
    Drive,
    Fault,
    FaultCode,
    FrameDecoder,
    Hello,
    Info,
    State,
    Telemetry,
    encode_frame,
)
from teledrive.vehicle.mcu_model import McuModel
from teledrive.vehicle.mcu_sim import McuSnapshot, PtyMcu
from teledrive.vehicle.motor_link import (
    DEFAULT_SPEED_DEADBAND_MMPS,
    HandshakeState,
    McuSession,
    MotorLink,
)

TIME_SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
WAIT_S = 5.0 * TIME_SCALE


# --------------------------------------------------------------------------- McuSession


def _mcu_frames(data: bytes) -> list[Decoded]:
    return FrameDecoder(accept=Direction.H2M).feed(data)


def test_session_handshake_against_model() -> None:
    session = McuSession()
    model = McuModel()
    session.begin_handshake(0.0)
    hello = session.data_to_send()
    assert hello.startswith(b"\x00")
    assert [d.message for d in _mcu_frames(hello)] == [Hello()]
    model.receive_data(hello, 1.0)
    frames = session.receive_data(model.data_to_send(), 2.0)
    assert any(isinstance(f.message, Info) for f in frames)
    assert session.ready
    assert session.info is not None
    assert session.info.link_timeout_ms == 180
    disarm = session.data_to_send()  # the handshake ends with DISARM
    assert [d.message for d in _mcu_frames(disarm)] == [Disarm()]
    model.receive_data(disarm + session.arm() + session.drive(1.2345, -0.2), 3.0)
    assert model.state is State.ARMED
    assert model.last_drive is not None
    assert model.last_drive.drive == Drive(1234, -200)
    model.tick(40.0)
    session.receive_data(model.data_to_send(), 40.0)
    assert session.last_telemetry is not None
    assert session.last_telemetry.speed_cmd_mmps == 1234
    assert session.stats()["mcu_seq_gaps"] == 0


def test_session_retries_hello_until_info() -> None:
    session = McuSession(handshake_retry_ms=250)
    session.begin_handshake(0.0)
    session.data_to_send()
    session.poll(249.0)
    assert session.data_to_send() == b""
    session.poll(250.0)
    assert [d.message for d in _mcu_frames(session.data_to_send())] == [Hello()]
    assert session.state is HandshakeState.AWAITING_INFO


def test_session_rejects_other_protocol_version() -> None:
    session = McuSession()
    session.begin_handshake(0.0)
    session.data_to_send()
    session.receive_data(encode_frame(Info(2, 0, 0, 200, 200), 0), 1.0)
    assert session.state is HandshakeState.INCOMPATIBLE
    assert not session.ready
    assert "version 2" in (session.last_error or "")
    assert session.data_to_send() == b""  # no DISARM/ARM traffic to a stranger


def test_session_rehandshakes_after_mcu_silence() -> None:
    session = McuSession(mcu_silence_ms=500)
    session.begin_handshake(0.0)
    session.receive_data(encode_frame(Info(1, 0, 1, 200, 200), 0), 10.0)
    assert session.ready
    session.data_to_send()
    session.poll(509.0)
    assert session.ready
    session.poll(510.0)
    assert not session.ready
    assert session.mcu_silences == 1
    assert [d.message for d in _mcu_frames(session.data_to_send())] == [Hello()]


def test_session_counts_mcu_reset_and_gaps() -> None:
    session = McuSession()
    telemetry = Telemetry(0, 0, 0, 0, 0, 0, 0, 12000, 0, 5000, 0)
    session.receive_data(encode_frame(telemetry, 10), 0.0)
    session.receive_data(encode_frame(telemetry, 12), 20.0)
    rebooted = Telemetry(0, 0, 0, 0, 0, 0, 0, 12000, 0, 20, 1)
    session.receive_data(encode_frame(rebooted, 0), 40.0)
    assert session.mcu_seq_gaps == 2
    assert session.mcu_resets == 1
    assert session.telemetry_received == 3


def test_session_forgets_the_mcu_state_when_the_link_drops() -> None:
    session = McuSession()
    armed = Telemetry(int(State.ARMED), 0, 0, 900, 900, 0, 300, 12000, 0, 5000, 0)
    session.receive_data(encode_frame(armed, 1), 0.0)
    assert session.last_telemetry == armed
    session.connection_lost()
    assert session.last_telemetry is None  # not "ARMED" while nobody knows
    session.begin_handshake(100.0)
    rebooted = Telemetry(int(State.DISARMED), 0, 0, 0, 0, 0, 0, 12000, 0, 30, 1)
    session.receive_data(encode_frame(rebooted, 0), 120.0)
    assert session.last_telemetry == rebooted
    assert session.mcu_resets == 1  # the reboot is still noticed across the reconnect


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_session_drive_rejects_non_finite(bad: float) -> None:
    session = McuSession()
    with pytest.raises(ProtocolError, match="finite"):
        session.drive(bad, 0.0)
    with pytest.raises(ProtocolError, match="steer_rad"):
        session.drive(0.0, bad)
    assert session.next_seq == 0  # nothing built, no seq used


def test_session_drive_limits_to_i16() -> None:
    session = McuSession(first_seq=65535)
    (frame,) = _mcu_frames(session.drive(100.0, -100.0))
    assert frame == Decoded(65535, Drive(32767, -32768))
    assert session.next_seq == 0


@pytest.mark.parametrize(
    ("speed_mps", "speed_mmps"),
    [
        (0.0, 0),
        (0.003, 0),
        (0.010, 0),  # a DEGRADED ramp's first step (0.5 m/s^2 x 20 ms)
        (0.0144, 0),
        (-0.014, 0),
        (0.015, 15),
        (-0.015, -15),
        (0.5, 500),
    ],
)
def test_session_drive_deadband(speed_mps: float, speed_mmps: int) -> None:
    session = McuSession()
    (frame,) = _mcu_frames(session.drive(speed_mps, -0.2))
    assert frame.message == Drive(speed_mmps, -200)  # steering is not deadbanded
    zeroed = speed_mmps == 0 and round(speed_mps * 1000) != 0
    assert session.drives_deadbanded == int(zeroed)
    assert session.stats()["drives_deadbanded"] == int(zeroed)


def test_session_deadband_is_configurable_and_validated() -> None:
    (frame,) = _mcu_frames(McuSession(speed_deadband_mmps=0).drive(0.003, 0.0))
    assert frame.message == Drive(3, 0)
    (frame,) = _mcu_frames(McuSession(speed_deadband_mmps=50).drive(-0.049, 0.0))
    assert frame.message == Drive(0, 0)
    for bad in (-1, 0x8000):
        with pytest.raises(ValueError, match="speed_deadband_mmps"):
            McuSession(speed_deadband_mmps=bad)


def test_session_tiny_speeds_never_move_the_model() -> None:
    session = McuSession()
    model = McuModel()
    session.begin_handshake(0.0)
    model.receive_data(session.data_to_send(), 1.0)
    session.receive_data(model.data_to_send(), 2.0)
    model.receive_data(session.data_to_send() + session.arm(), 3.0)
    for k, speed_mps in enumerate((0.003, 0.008, 0.011, 0.014, -0.011)):
        model.receive_data(session.drive(speed_mps, 0.0), 4.0 + k)
        assert model.outputs.speed_cmd_mmps == 0
        assert model.outputs.motor_duty == 0
    assert model.state is State.ARMED
    assert session.drives_deadbanded == 5


# --------------------------------------------------------------------------- MotorLink over a pty


class Recorder:
    """Collects callbacks from the reader thread and lets the test wait on them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.telemetry: list[Telemetry] = []
        self.faults: list[Fault] = []
        self.connection: list[bool] = []

    def on_telemetry(self, t: Telemetry) -> None:
        with self.cond:
            self.telemetry.append(t)
            self.cond.notify_all()

    def on_fault(self, f: Fault) -> None:
        with self.cond:
            self.faults.append(f)
            self.cond.notify_all()

    def on_connection(self, up: bool) -> None:
        with self.cond:
            self.connection.append(up)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout=timeout_s)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[PtyMcu]:
    mcu = PtyMcu(McuModel(), tick_ms=2.0, link_path=str(tmp_path / "ttyMCU"))
    mcu.start()
    yield mcu
    mcu.stop()


def _link(url: str, rec: Recorder) -> MotorLink:
    return MotorLink(
        url,
        on_telemetry=rec.on_telemetry,
        on_fault=rec.on_fault,
        on_connection=rec.on_connection,
        reconnect_backoff_s=0.02,
        reconnect_backoff_max_s=0.1,
    )


def _state_is(state: State) -> Callable[[McuSnapshot], bool]:
    return lambda snap: snap.state is state


def test_handshake_arm_drive_values_intact(sim: PtyMcu) -> None:
    rec = Recorder()
    with _link(sim.port_path, rec) as link:
        assert link.wait_connected(WAIT_S)
        assert link.info is not None
        assert link.info.proto_version == 1
        assert sim.wait_for(_state_is(State.DISARMED), WAIT_S)
        assert link.arm()
        assert sim.wait_for(_state_is(State.ARMED), WAIT_S)
        for speed_mps, steer_rad in [(1.234, -0.321), (-2.5, 0.5), (0.0, 0.0), (0.001, -0.001)]:
            seq = link._session.next_seq
            assert link.drive(speed_mps, steer_rad)
            speed_mmps = round(speed_mps * 1000)
            if abs(speed_mmps) < DEFAULT_SPEED_DEADBAND_MMPS:
                speed_mmps = 0  # the host's deadband
            want = Drive(speed_mmps, round(steer_rad * 1000))
            assert sim.wait_for(
                lambda s, seq=seq: s.last_drive is not None and s.last_drive.seq == seq, WAIT_S
            )
            snap = sim.snapshot()
            assert snap.last_drive is not None
            assert snap.last_drive.drive == want
            assert snap.outputs.speed_cmd_mmps == want.speed_mmps
            assert snap.outputs.steer_mrad == want.steer_mrad
        assert link.drive(1.5, 0.1)
        assert rec.wait(
            lambda: any(t.state == State.ARMED and t.speed_cmd_mmps == 1500 for t in rec.telemetry)
        )
        assert sim.snapshot().rx_errors == dict.fromkeys(sim.snapshot().rx_errors, 0)
        stats = link.stats()
        assert stats["connected"] is True
        assert stats["rx_errors"] == dict.fromkeys(stats["rx_errors"], 0)


def test_faults_reach_the_callback(sim: PtyMcu) -> None:
    rec = Recorder()
    with _link(sim.port_path, rec) as link:
        assert link.wait_connected(WAIT_S)
        sim.set_estop_pin(True)
        assert rec.wait(lambda: any(f.code == FaultCode.ESTOP_PIN for f in rec.faults))
        assert link.arm()
        assert rec.wait(lambda: any(f.code == FaultCode.ARM_REFUSED for f in rec.faults))
        assert sim.snapshot().state is State.ESTOP


def test_commands_refused_before_handshake(tmp_path: Path) -> None:
    rec = Recorder()
    link = _link(str(tmp_path / "absent"), rec)
    assert not link.arm()
    assert not link.drive(1.0, 0.0)
    assert link.stats()["not_connected_drops"] == 2
    with pytest.raises(ProtocolError):
        link.drive(math.nan, 0.0)


def test_reconnect_after_hangup_stays_disarmed(sim: PtyMcu) -> None:
    rec = Recorder()
    with _link(sim.port_path, rec) as link:
        assert link.wait_connected(WAIT_S)
        assert link.arm()
        assert link.drive(1.0, 0.0)
        assert sim.wait_for(lambda s: s.outputs.speed_cmd_mmps == 1000, WAIT_S)
        sim.hangup()
        assert rec.wait(lambda: rec.connection[-1:] == [False])
        assert not link.connected
        assert not link.drive(1.0, 0.0)
        # The MCU's own link watchdog disarms it while the cable is out.
        assert sim.wait_for(_state_is(State.DISARMED), WAIT_S)
        sim.reopen()
        assert link.wait_connected(WAIT_S)
        assert link.stats()["reconnects"] >= 1
        seq = link._session.next_seq
        assert link.drive(1.0, 0.0)  # accepted, but the MCU stays DISARMED until arm()
        assert sim.wait_for(lambda s: s.last_drive is not None and s.last_drive.seq == seq, WAIT_S)
        snap = sim.snapshot()
        assert snap.state is State.DISARMED
        assert snap.outputs.motor_duty == 0
        assert link.arm()
        assert sim.wait_for(_state_is(State.ARMED), WAIT_S)


def test_reconnect_disarms_even_before_the_mcu_watchdog(tmp_path: Path) -> None:
    # A long MCU link timeout: only the host's post-handshake DISARM can disarm it.
    mcu = PtyMcu(McuModel(link_timeout_ms=60_000), link_path=str(tmp_path / "ttyMCU"))
    rec = Recorder()
    with mcu, _link(mcu.port_path, rec) as link:
        assert link.wait_connected(WAIT_S)
        assert link.arm()
        assert mcu.wait_for(_state_is(State.ARMED), WAIT_S)
        mcu.hangup()
        mcu.reopen()
        assert rec.wait(lambda: rec.connection.count(True) == 2)
        assert mcu.wait_for(_state_is(State.DISARMED), WAIT_S)


def test_sim_url_runs_in_process() -> None:
    rec = Recorder()
    with _link("sim://", rec) as link:
        assert link.sim is not None
        assert link.wait_connected(WAIT_S)
        assert link.arm()
        assert link.drive(0.5, 0.0)
        assert link.sim.wait_for(lambda s: s.outputs.speed_cmd_mmps == 500, WAIT_S)
    assert link.sim is None


def test_stop_leaves_mcu_disarmed(tmp_path: Path) -> None:
    # A long MCU link timeout, so only the DISARM sent by stop() can disarm it.
    mcu = PtyMcu(McuModel(link_timeout_ms=60_000), link_path=str(tmp_path / "ttyMCU"))
    rec = Recorder()
    with mcu:
        link = _link(mcu.port_path, rec)
        link.start()
        assert link.wait_connected(WAIT_S)
        assert link.arm()
        assert mcu.wait_for(_state_is(State.ARMED), WAIT_S)
        link.stop()
        assert mcu.wait_for(_state_is(State.DISARMED), WAIT_S)
        assert not link.connected


def test_port_that_never_appears_is_retried(tmp_path: Path) -> None:
    rec = Recorder()
    path = tmp_path / "ttyLATE"
    with _link(str(path), rec) as link:
        assert not link.wait_connected(0.2 * TIME_SCALE)
        assert link.stats()["open_failures"] >= 1
        mcu = PtyMcu(link_path=str(path))
        with mcu:
            assert link.wait_connected(WAIT_S)
