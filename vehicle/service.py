"""The vehicle service: dials out to the hub, serves one operator session over WebRTC.

Threads: one reader per camera, one reader for the motor link. Everything else runs on one
asyncio loop: signaling, the peer connection, and the 50 Hz control tick that sends the one
command per tick to the motor controller. A command is also forwarded the moment it arrives
(the tick only zeroes, renews and heartbeats), so the tick adds no latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from teledrive.shared import channels as ch
from teledrive.shared import messages as m
from teledrive.shared.config import CameraSection, VehicleConfig
from teledrive.shared.signaling import SignalingClient
from teledrive.vehicle.camera import Camera, FrameSource, OpenCVSource, SyntheticSource
from teledrive.vehicle.drive_gate import DriveGate
from teledrive.vehicle.motor_link import MotorLink
from teledrive.vehicle.mcu_codec import State
from teledrive.vehicle.video_track import CameraVideoTrack, prefer_h264

log = logging.getLogger(__name__)

TICK_S = 0.02
TELEMETRY_EVERY_TICKS = 2


def make_camera(section: CameraSection) -> Camera:
    """Builds a camera (not started) from its config section."""

    def factory() -> FrameSource:
        if section.source == "synthetic":
            return SyntheticSource(section.width, section.height, section.fps, name=section.name)
        device: int | str = int(section.source) if section.source.isdigit() else section.source
        return OpenCVSource(device, section.width, section.height, section.fps)

    return Camera(factory, name=section.name, fps=section.fps)


class Session:
    """One operator's WebRTC session with this vehicle."""

    def __init__(self, session_id: str, operator_id: str, pc: RTCPeerConnection) -> None:
        self.id = session_id
        self.operator_id = operator_id
        self.pc = pc
        self.channels: ch.Channels | None = None
        self.tracks: list[CameraVideoTrack] = []
        self.published_pts: dict[str, int] = {}


class VehicleService:
    """Runs a vehicle: cameras, motor link, hub connection and operator sessions.

    Args:
        config: the validated ``vehicle.toml``.
        clock: monotonic clock in seconds (all timestamps on the wire are this clock in ms).
        motor_link: the motor link to use; built from ``config.motor.url`` when None.
        cameras: cameras to stream; built from ``config.cameras`` when None.
    """

    def __init__(
        self,
        config: VehicleConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        motor_link: MotorLink | None = None,
        cameras: list[Camera] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self.gate = DriveGate(
            command_timeout_ms=config.safety.command_timeout_ms,
            max_speed_mps=config.motor.max_speed_mps,
            max_steer_rad=config.motor.max_steer_rad,
        )
        self.motor = motor_link or MotorLink(config.motor.url)
        self.cameras = cameras if cameras is not None else [make_camera(c) for c in config.cameras]
        register = m.Register(
            role="vehicle",
            id=config.vehicle.id,
            name=config.vehicle.name,
            cameras=[c.name for c in self.cameras],
        )
        self.signaling = SignalingClient(
            config.vehicle.hub_url, register, on_message=self._on_signal
        )
        self.session: Session | None = None
        self.errors = 0
        self.commands_applied = 0
        self._pending_acks: deque[int] = deque(maxlen=512)
        self._last_mcu_seq: int | None = None
        self._tick_count = 0
        self._stopping = asyncio.Event()

    def now_ms(self) -> float:
        """The vehicle clock in ms."""
        return self._clock() * 1000.0

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Runs until :meth:`stop`; reconnects to the hub by itself."""
        for camera in self.cameras:
            camera.start()
        self.motor.start()
        tasks = [
            asyncio.create_task(self.signaling.run(), name="signaling"),
            asyncio.create_task(self._control_loop(), name="control"),
        ]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._end_session("vehicle stopping")
            await self.signaling.close()
            self._safe_stop_motor()
            for camera in self.cameras:
                camera.stop()

    def stop(self) -> None:
        """Asks :meth:`run` to finish."""
        self._stopping.set()

    def _safe_stop_motor(self) -> None:
        with contextlib.suppress(Exception):
            self.motor.drive(0.0, 0.0)
            self.motor.disarm()
        self.motor.stop()

    # -- signaling --------------------------------------------------------------------------

    async def _on_signal(self, message: m.SignalMessage) -> None:
        match message:
            case m.Connect(session=str(session_id), operator_id=operator_id):
                await self._start_session(session_id, operator_id or "?")
            case m.Answer(session=session_id, sdp=sdp):
                if self.session is not None and self.session.id == session_id:
                    answer = RTCSessionDescription(sdp=sdp, type="answer")
                    await self.session.pc.setRemoteDescription(answer)
            case m.Bye(session=session_id, reason=reason):
                if self.session is not None and self.session.id == session_id:
                    await self._end_session(f"bye: {reason}")
            case m.Error(code=code, message=text):
                log.warning("hub error %s: %s", code, text)
            case _:
                pass

    async def _start_session(self, session_id: str, operator_id: str) -> None:
        await self._end_session("replaced by a new session")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = Session(session_id, operator_id, pc)
        self.session = session
        self.gate.reset_session()
        for camera in self.cameras:
            track = CameraVideoTrack(camera)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            prefer_h264(transceiver)
            track.bind_sender(transceiver.sender)
            session.tracks.append(track)
        session.channels = ch.open_channels(pc, self._on_data, self._on_data_error)
        await pc.setLocalDescription(await pc.createOffer())
        await self.signaling.send(m.Offer(session=session_id, sdp=pc.localDescription.sdp))
        log.info("session %s with operator %s: offer sent", session_id, operator_id)

    async def _end_session(self, reason: str) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        log.info("session %s ended: %s", session.id, reason)
        self.gate.reset_session()
        await session.pc.close()

    # -- data channels ----------------------------------------------------------------------

    def _on_data_error(self, spec: ch.ChannelSpec, text: str) -> None:
        self.errors += 1
        session = self.session
        if session is not None and session.channels is not None:
            session.channels.events.send(m.Error(code="bad_message", message=text[:1000]))

    def _on_data(self, message: m.DataMessage) -> None:
        now_ms = self.now_ms()
        match message:
            case m.DriveCommand():
                accepted = self.gate.on_command(
                    seq=message.seq,
                    sent_ms=message.t_ms,
                    offset_ms=message.offset_ms,
                    ttl_ms=message.ttl_ms,
                    speed_mps=message.speed_mps,
                    steer_rad=message.steer_rad,
                    deadman=message.deadman,
                    estop=message.estop,
                    now_ms=now_ms,
                )
                if accepted:
                    self._send_to_motor(now_ms, new_command=True)
            case m.TimeRequest(id=request_id, t1=t1):
                self._send_telemetry(m.TimeResponse(id=request_id, t1=t1, t2=now_ms, t3=now_ms))
            case m.Estop():
                self.gate.estop()
                self._send_to_motor(now_ms, new_command=False)
                self._send_event(m.Ack(ref="estop"))
            case m.EstopReset():
                self.gate.reset_estop()
                self._send_event(m.Ack(ref="estop_reset"))
            case _:
                pass

    def _send_telemetry(self, message: m.Message) -> None:
        session = self.session
        if session is not None and session.channels is not None:
            session.channels.telemetry.send(message)

    def _send_event(self, message: m.Message) -> None:
        session = self.session
        if session is not None and session.channels is not None:
            session.channels.events.send(message)

    # -- motor ------------------------------------------------------------------------------

    def _send_to_motor(self, now_ms: float, *, new_command: bool) -> None:
        out = self.gate.output(now_ms)
        if out.seq is not None and self.mcu_state() == "DISARMED" and not self.gate.estopped:
            self.motor.arm()
        written = self.motor.drive(out.speed_mps, out.steer_rad)
        mcu_seq = self.motor.last_written_seq
        if new_command and written and out.seq is not None and mcu_seq is not None:
            self._pending_acks.append(mcu_seq)

    def mcu_state(self) -> str:
        """The motor controller's state by its last telemetry, or ``OFFLINE``."""
        telemetry = self.motor.last_telemetry
        if not self.motor.connected or telemetry is None:
            return "OFFLINE"
        return State(telemetry.state).name

    def _count_acks(self) -> None:
        """Counts operator commands whose DRIVE frame the MCU has acknowledged (last_seq)."""
        telemetry = self.motor.last_telemetry
        if telemetry is None:
            return
        last = telemetry.last_seq
        while self._pending_acks:
            delta = (last - self._pending_acks[0]) % 65536
            if delta >= 32768:
                break
            self._pending_acks.popleft()
            self.commands_applied += 1

    async def _control_loop(self) -> None:
        next_s = self._clock()
        while True:
            next_s += TICK_S
            await asyncio.sleep(max(0.0, next_s - self._clock()))
            now_ms = self.now_ms()
            self._send_to_motor(now_ms, new_command=False)
            self._count_acks()
            self._tick_count += 1
            if self._tick_count % TELEMETRY_EVERY_TICKS == 0:
                self._publish_telemetry(now_ms)

    def _publish_telemetry(self, now_ms: float) -> None:
        session = self.session
        if session is None or session.channels is None:
            return
        out = self.gate.output(now_ms)
        telemetry = self.motor.last_telemetry
        drops = dict(self.gate.drops)
        if session.channels.errors:
            drops["bad_message"] = session.channels.errors
        mcu_state = self.mcu_state()
        speed_mps = telemetry.wheel_speed_mmps / 1000.0 if telemetry is not None else 0.0
        battery_v = telemetry.battery_mv / 1000.0 if telemetry is not None else 0.0
        session.channels.telemetry.send(
            m.Telemetry(
                t_ms=now_ms,
                mode="ESTOP" if self.gate.estopped else "TELEOP",
                reason=out.reason,
                speed_mps=max(-30.0, min(30.0, speed_mps)),
                steer_rad=out.steer_rad,
                speed_cap_mps=self.config.motor.max_speed_mps,
                battery_v=battery_v,
                mcu_state=mcu_state,
                last_seq=out.seq or 0,
                commands_applied=self.commands_applied,
                drops=drops,
            )
        )
        frames = []
        for track in session.tracks:
            name = track.camera.name
            last = session.published_pts.get(name, -1)
            for pts, capture_s in track.recent_capture_times():
                if pts > last:
                    frames.append(m.FrameTime(camera=name, pts=pts, capture_ms=capture_s * 1000.0))
                    last = pts
            session.published_pts[name] = last
        for start in range(0, len(frames), 64):
            session.channels.telemetry.send(m.FrameTimes(frames=frames[start : start + 64]))
