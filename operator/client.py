"""The operator's side of a session, without a screen: connects, decodes video, drives.

:class:`OperatorClient` is what the headless operator (``teledrive operator --headless``) and,
later, the desktop console build on: it owns the signaling client, answers the vehicle's offer,
keeps clock sync running, sends drive commands at 50 Hz from a :class:`CommandSource`, and
keeps statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from teledrive.operator.g2g import GlassToGlass
from teledrive.operator.patterns import CommandSource, ScriptedPattern
from teledrive.operator.video_receive import (
    FastJitterBuffer,
    JitterStats,
    install_fast_jitter_buffer,
)
from teledrive.shared import channels as ch
from teledrive.shared import messages as m
from teledrive.shared.bond import Bonding, install_bonding, offer_is_bonded
from teledrive.shared.clock_sync import ClockSync
from teledrive.shared.errors import LinkError
from teledrive.shared.handshake_resend import HandshakeResender, install_handshake_resender
from teledrive.shared.signaling import SignalingClient

log = logging.getLogger(__name__)

COMMAND_PERIOD_S = 0.02
FRESHNESS_PERIOD_S = 0.1
CLOCK_SYNC_EVERY = 2
TAKEOVER_EVERY = 5
COMMAND_TTL_MS = 250.0
CONNECT_RETRY_S = 2.0
SESSION_DEAD_S = 1.5
DRIVE_BACKLOG_BYTES = 512  # 3-4 encoded commands (~140 bytes each) in aiortc's send queue
SESSION_SETUP_S = 8.0  # a handshake over a lossy link can take seconds; "failed" ends it at once
VIDEO_RECEIVE_KEPT = 16  # jitter buffers whose counters are kept one by one (a few sessions)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _percentile(values: deque[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class OperatorStats:
    """What a headless operator reports.

    ``commands_sent`` counts drive commands from the first one the vehicle applied after the
    takeover on (the ones meant to drive); ``commands_sent_total`` also counts the
    deadman-released commands that keep the link fresh before the takeover is granted.
    ``commands_applied`` is the vehicle's count of commands whose DRIVE frame the motor
    controller acknowledged. ``command_latency_ms`` holds the vehicle's age of each newly
    applied command at application (operator send -> motor-controller write, from telemetry);
    ``stale_commands_applied`` is the vehicle's count of commands applied past their bound.
    ``video_receive`` holds the counters of the latest sessions' video jitter buffers (at
    most :data:`VIDEO_RECEIVE_KEPT`; older ones are added into ``video_receive_earlier``);
    the summary sums both as ``video_recovery`` (retransmissions, keyframe requests, repeats).
    """

    frames_received: int = 0
    first_frame_s: float | None = None
    last_frame_s: float | None = None
    frames_by_camera: dict[str, int] = field(default_factory=dict)
    commands_sent: int = 0
    commands_sent_total: int = 0
    commands_applied: int = 0
    telemetry_received: int = 0
    rtt_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    command_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    stale_commands_applied: int = 0
    errors: int = 0
    frame_handler_errors: int = 0
    commands_skipped_backlog: int = 0
    sessions: int = 0
    last_telemetry: m.Telemetry | None = None
    g2g: GlassToGlass = field(default_factory=GlassToGlass)
    video_receive: list[JitterStats] = field(default_factory=list)
    video_receive_earlier: dict[str, int] = field(default_factory=dict)

    def add_video_receive(self, stats: JitterStats) -> None:
        """Track a new jitter buffer's counters.

        An operator on a bad link for days makes thousands of sessions: only the latest are
        kept one by one, the others as sums.
        """
        self.video_receive.append(stats)
        while len(self.video_receive) > VIDEO_RECEIVE_KEPT:
            for name, value in asdict(self.video_receive.pop(0)).items():
                self.video_receive_earlier[name] = self.video_receive_earlier.get(name, 0) + value

    def video_fps(self) -> float:
        """Mean frame rate between the first and the last frame."""
        if self.first_frame_s is None or self.last_frame_s is None:
            return 0.0
        span_s = self.last_frame_s - self.first_frame_s
        return (self.frames_received - 1) / span_s if span_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The JSON-able figures of a run."""
        rtt = sorted(self.rtt_ms)
        return {
            "frames_received": self.frames_received,
            "video_fps": round(self.video_fps(), 2),
            "commands_sent": self.commands_sent,
            "commands_sent_total": self.commands_sent_total,
            "commands_applied": self.commands_applied,
            "telemetry_received": self.telemetry_received,
            "rtt_ms_p50": round(statistics.median(rtt), 3) if rtt else None,
            "g2g_ms_p50": _round(self.g2g.percentile(0.5)),
            "g2g_ms_p95": _round(self.g2g.percentile(0.95)),
            "command_latency_ms_p50": _round(_percentile(self.command_latency_ms, 0.5)),
            "command_latency_ms_p95": _round(_percentile(self.command_latency_ms, 0.95)),
            "stale_commands_applied": self.stale_commands_applied,
            "errors": self.errors,
            "sessions": self.sessions,
            "mode": self.last_telemetry.mode if self.last_telemetry else None,
            "drops": dict(self.last_telemetry.drops) if self.last_telemetry else {},
            "video_recovery": self.video_recovery(),
        }

    def video_recovery(self) -> dict[str, int]:
        """The video jitter buffers' counters, summed over cameras and sessions."""
        totals = dict(self.video_receive_earlier)
        for stats in self.video_receive:
            for name, value in asdict(stats).items():
                totals[name] = totals.get(name, 0) + value
        return totals


class OperatorClient:
    """Drives one vehicle through the hub.

    Args:
        hub_url: websocket URL of the hub.
        vehicle_id: the vehicle to connect to.
        operator_id: this operator's id on the hub.
        source: where drive commands come from (a scripted pattern by default).
        clock: monotonic clock in seconds; wire timestamps are this clock in ms.
        on_frame: called with (camera name, av.VideoFrame) for every decoded frame.
        on_message: called with every valid message from the hub or the vehicle, after the
            client has handled it (the console shows mode changes, alerts, presence...).
        fast_video: release each video frame as soon as it is complete (teledrive's jitter
            buffer) instead of aiortc's one-frame-late release.
        on_hub_connected: awaited after each registration with the hub (the console lists
            the fleet then).
        on_command_sent: called with every drive command handed to the data channel.
    """

    def __init__(
        self,
        hub_url: str,
        vehicle_id: str,
        *,
        operator_id: str = "operator",
        source: CommandSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_frame: Callable[[str, Any], None] | None = None,
        on_message: Callable[[m.Message], None] | None = None,
        fast_video: bool = True,
        on_hub_connected: Callable[[], Awaitable[None]] | None = None,
        on_command_sent: Callable[[m.DriveCommand], None] | None = None,
    ) -> None:
        self.vehicle_id = vehicle_id
        self.source: CommandSource = source or ScriptedPattern()
        self._clock = clock
        self._on_frame = on_frame
        self._on_message = on_message
        self.fast_video = fast_video
        self._hub_connected_hook = on_hub_connected
        self._on_command_sent = on_command_sent
        self._latency_seq: int | None = None
        self._last_telemetry_s: float | None = None
        self._session_started_s: float | None = None
        self.stats = OperatorStats()
        self.g2g = self.stats.g2g
        self.clock_sync = ClockSync()
        self.signaling = SignalingClient(
            hub_url,
            m.Register(role="operator", id=operator_id),
            on_message=self._on_signal,
            on_connected=self._on_hub_connected,
        )
        self.pc: RTCPeerConnection | None = None
        self.channels: ch.Channels | None = None
        self.session_id: str | None = None
        self.connected = asyncio.Event()
        self.driving = True
        self.want_session = True
        self.want_control = True
        self.mode_changes: list[m.ModeChange] = []
        self.alerts: list[m.Alert] = []
        self.acks: list[m.Ack] = []
        self.video_status: m.VideoStatus | None = None
        """The vehicle's last report of what each camera sends (about once a second)."""
        self.jitter_buffers: list[FastJitterBuffer] = []
        """The current session's video jitter buffers (fed the clock-sync round trips)."""
        self._connect_sent_s: float | None = None
        # When the Connect the hub has not answered yet was sent (None: none is pending).
        self._connect_in_flight_s: float | None = None
        self._session_opened_s: float | None = None
        self._handshake: HandshakeResender | None = None
        self.bonding: Bonding | None = None
        """The current session's bonding, when the vehicle's offer asked for it."""
        self._waiting_for: str | None = None
        self._seq = 0
        self._drive_start_s: float | None = None
        self._control_seq: int | None = None
        self._last_frame_by_camera: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._track_tasks: set[asyncio.Task[None]] = set()

    def now_ms(self) -> float:
        """The operator clock in ms."""
        return self._clock() * 1000.0

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, duration_s: float | None = None) -> OperatorStats:
        """Runs for ``duration_s`` (forever when None) and returns the statistics."""
        self._tasks = [
            asyncio.create_task(self.signaling.run(), name="signaling"),
            asyncio.create_task(self._drive_loop(), name="drive"),
            asyncio.create_task(self._sync_loop(), name="clock-sync"),
            asyncio.create_task(self._session_watchdog(), name="session-watchdog"),
        ]
        try:
            if duration_s is None:
                await asyncio.gather(*self._tasks)
            else:
                await asyncio.sleep(duration_s)
        finally:
            await self.close()
        return self.stats

    async def close(self) -> None:
        """Stops driving (a last zero command), closes the session and the hub link."""
        if self.channels is not None:
            self._send_drive(0.0, 0.0, deadman=False, estop=False, always=True)
        for task in [*self._tasks, *self._track_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._track_tasks]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_pc()
        await self.signaling.close()

    async def _close_pc(self) -> None:
        pc, self.pc, self.channels = self.pc, None, None
        handshake, self._handshake = self._handshake, None
        if handshake is not None:
            handshake.remove()
        self.connected.clear()
        self._last_frame_by_camera = {}  # a new session's video starts unseen
        if pc is not None:
            await pc.close()

    # -- signaling --------------------------------------------------------------------------

    async def _on_hub_connected(self) -> None:
        self._connect_sent_s = None
        self._connect_in_flight_s = None  # a new link: nothing asked on it yet
        if self.pc is None:
            self.session_id = None  # a session still waiting for its offer ended with the link
        await self._maybe_connect()
        if self._hub_connected_hook is not None:
            await self._hub_connected_hook()

    async def _maybe_connect(self) -> None:
        """Asks the hub for a session unless one is up, opened or still asked for.

        A session the hub opened (acknowledged) but whose offer has not come yet counts as
        opened: asking again would end it at the hub, and the ``bye`` for it would arrive
        before the next acknowledgement, ending each new session in turn. It is given
        :data:`SESSION_SETUP_S` for its offer. For the same reason only one request is
        pending at a time (for up to :data:`CONNECT_RETRY_S`): a ``bye`` and a presence
        update arriving before the answer must not send a second one.
        """
        if self.pc is not None or not self.want_session:
            return
        now_s = self._clock()
        opened_s = self._session_opened_s
        if self.session_id is not None and opened_s is not None:
            if now_s - opened_s < SESSION_SETUP_S:
                return
            log.warning("session %s: no offer within %.0f s", self.session_id, SESSION_SETUP_S)
            self.session_id = None
        sent_s = self._connect_sent_s
        if sent_s is not None and now_s - sent_s < CONNECT_RETRY_S:
            return
        in_flight_s = self._connect_in_flight_s
        if in_flight_s is not None and now_s - in_flight_s < CONNECT_RETRY_S:
            return  # one request at a time: a second one would end the session the first opens
        self._connect_sent_s = now_s
        self._connect_in_flight_s = now_s
        with contextlib.suppress(LinkError):
            await self.signaling.send(m.Connect(vehicle_id=self.vehicle_id))

    async def _session_watchdog(self) -> None:
        """Re-asks for a session while there is none (vehicle offline, hub restarted, ...)."""
        while True:
            await asyncio.sleep(CONNECT_RETRY_S)
            if self.signaling.connected.is_set():
                await self._maybe_connect()

    async def _on_signal(self, message: m.SignalMessage) -> None:
        match message:
            case m.Offer(session=session_id, sdp=sdp):
                self._connect_sent_s = None
                self._waiting_for = None
                await self._answer(session_id, sdp)
            case m.Connect(session=session_id):
                self.session_id = session_id
                self._session_opened_s = self._clock()
                self._connect_in_flight_s = None
            case m.Bye(session=session_id, reason=reason):
                if session_id == self.session_id:
                    log.info("session %s ended by peer: %s", session_id, reason)
                    self.session_id = None
                    await self._close_pc()
                    self._connect_sent_s = None
            case m.Error(code="unknown_vehicle" | "busy" as code, message=text):
                self._connect_in_flight_s = None
                # Not an error of ours: the vehicle is offline or driven by someone else;
                # presence tells when to ask again. Said once per change, not per retry.
                if code != self._waiting_for:
                    self._waiting_for = code
                    log.warning("vehicle %r: %s; waiting for it", self.vehicle_id, text)
                self._connect_sent_s = None if code == "unknown_vehicle" else self._clock()
            case m.Error(code=code, message=text):
                self.stats.errors += 1
                log.warning("hub error %s: %s", code, text)
            case m.Presence(vehicle=info):
                if info.id == self.vehicle_id and info.online and info.operator is None:
                    await self._maybe_connect()
            case _:
                pass
        if self._on_message is not None:
            self._on_message(message)

    async def _answer(self, session_id: str, sdp: str) -> None:
        try:
            await self._build_answer(session_id, sdp)
        except Exception as err:  # aiortc refuses an offer with many exception types
            # A half-built session must not stay: it would block every later request.
            self.stats.errors += 1
            log.warning("session %s: cannot answer the vehicle's offer: %r", session_id, err)
            await self._close_pc()
            if self.session_id == session_id:  # not a session asked for meanwhile
                self.session_id = None
            self._connect_sent_s = None
            with contextlib.suppress(LinkError):
                await self.signaling.send(m.Bye(session=session_id, reason="bad offer"))

    async def _build_answer(self, session_id: str, sdp: str) -> None:
        await self._close_pc()
        self.session_id = session_id
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc = pc
        # Before the next await: the session watchdog must not judge the new peer connection
        # by the telemetry of the old one (it closed a half-built answer as "dead").
        self._session_started_s = self._clock()
        self._last_telemetry_s = None
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.jitter_buffers = []
        if self.fast_video:
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    buffer = install_fast_jitter_buffer(transceiver.receiver)
                    if self.clock_sync.rtt_ms is not None:
                        # The last session's round trip: a new session's first losses are
                        # waited for (and repeated) as well as later ones.
                        buffer.observe_rtt_ms(self.clock_sync.rtt_ms)
                    self.jitter_buffers.append(buffer)
                    self.stats.add_video_receive(buffer.stats)
        self.channels = ch.open_channels(pc, self._on_data, self._on_data_error)
        self.channels.drive.raw.on("open", self.connected.set)
        await pc.setLocalDescription(await pc.createAnswer())
        self._handshake = install_handshake_resender(pc, rtt_ms=self.clock_sync.rtt_ms)
        # A vehicle on two modems offers both addresses and asks for every datagram on each.
        self.bonding = install_bonding(pc, every_address=True) if offer_is_bonded(sdp) else None
        await self.signaling.send(m.Answer(session=session_id, sdp=pc.localDescription.sdp))
        self.stats.sessions += 1

    def _on_track(self, track: Any) -> None:
        if track.kind != "video":
            return
        task = asyncio.create_task(self._consume_video(track), name=f"video-{track.id}")
        self._track_tasks.add(task)
        task.add_done_callback(self._track_tasks.discard)

    async def _consume_video(self, track: Any) -> None:
        name = str(track.id)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now_s = self._clock()
                stats = self.stats
                stats.frames_received += 1
                stats.frames_by_camera[name] = stats.frames_by_camera.get(name, 0) + 1
                if stats.first_frame_s is None:
                    stats.first_frame_s = now_s
                stats.last_frame_s = now_s
                self._last_frame_by_camera[name] = now_s
                if frame.pts is not None:
                    now_ms = now_s * 1000.0
                    offset_ms = self.clock_sync.offset_at(now_ms)
                    self.g2g.on_decoded(name, int(frame.pts), now_ms, offset_ms)
                if self._on_frame is not None:
                    try:
                        self._on_frame(name, frame)
                    except Exception:
                        # The consumer must go on: a dead one looks like frozen video.
                        self.stats.frame_handler_errors += 1
                        log.exception("video %s: frame handler failed", name)

    # -- data channels ----------------------------------------------------------------------

    def _on_data_error(self, spec: ch.ChannelSpec, text: str) -> None:
        self.stats.errors += 1

    def _on_data(self, message: m.DataMessage) -> None:
        now_ms = self.now_ms()
        match message:
            case m.FrameTimes(frames=frames):
                for item in frames:
                    self.g2g.on_captured(item.camera, item.pts, item.capture_ms)
            case m.Telemetry():
                self._last_telemetry_s = self._clock()
                self.stats.telemetry_received += 1
                self.stats.commands_applied = message.commands_applied
                self.stats.last_telemetry = message
                self._note_command_latency(message)
                if self._control_seq is None and self.in_control and message.last_seq:
                    self._control_seq = message.last_seq
            case m.TimeResponse(id=request_id, t1=t1, t2=t2, t3=t3):
                self.clock_sync.on_response(request_id, t1, t2, t3, now_ms)
                rtt = (now_ms - t1) - (t3 - t2)
                if rtt >= 0:
                    self.stats.rtt_ms.append(rtt)
                    for buffer in self.jitter_buffers:
                        buffer.observe_rtt_ms(rtt)
            case m.TimeRequest(id=request_id, t1=t1):
                if self.channels is not None:
                    self.channels.telemetry.send(
                        m.TimeResponse(id=request_id, t1=t1, t2=now_ms, t3=now_ms)
                    )
            case m.Error(message=text):
                self.stats.errors += 1
                log.warning("vehicle reports: %s", text)
            case m.ModeChange():
                self.mode_changes.append(message)
                log.info(
                    "vehicle mode %s -> %s: %s", message.previous, message.mode, message.reason
                )
            case m.Alert():
                self.alerts.append(message)
                log.warning("vehicle alert (%s): %s", message.level, message.text)
            case m.Ack():
                self.acks.append(message)
            case m.VideoStatus():
                self.video_status = message
            case _:
                pass
        if self._on_message is not None:
            self._on_message(message)

    def _note_command_latency(self, telemetry: m.Telemetry) -> None:
        """One latency sample per newly applied command (telemetry repeats a held one)."""
        stats = self.stats
        stats.stale_commands_applied = max(stats.stale_commands_applied, telemetry.stale_applied)
        age_ms = telemetry.command_age_ms
        if age_ms is None or not telemetry.last_seq or telemetry.last_seq == self._latency_seq:
            return
        self._latency_seq = telemetry.last_seq
        stats.command_latency_ms.append(age_ms)

    # -- loops ------------------------------------------------------------------------------

    def _send_drive(
        self,
        speed_mps: float,
        steer_rad: float,
        *,
        deadman: bool,
        estop: bool,
        always: bool = False,
    ) -> None:
        if self.channels is None:
            return
        buffered = getattr(self.channels.drive.raw, "bufferedAmount", 0)
        if buffered > DRIVE_BACKLOG_BYTES and not (estop or always):
            # The channel has not drained (a stall or an outage): a new command would only
            # queue behind stale ones that the vehicle drops anyway. Skip it; the next tick
            # tries again with a fresher one.
            self.stats.commands_skipped_backlog += 1
            return
        now_ms = self.now_ms()
        self._seq = (self._seq + 1) % (1 << 32)
        offset_ms = self.clock_sync.offset_at(now_ms)
        command = m.DriveCommand(
            seq=self._seq,
            t_ms=now_ms,
            offset_ms=offset_ms if offset_ms is not None else 0.0,
            ttl_ms=COMMAND_TTL_MS,
            speed_mps=speed_mps,
            steer_rad=steer_rad,
            deadman=deadman,
            estop=estop,
        )
        if self.channels.drive.send(command):
            self.stats.commands_sent_total += 1
            if self._on_command_sent is not None:
                self._on_command_sent(command)
            if self._control_seq is not None:
                self.stats.commands_sent = (self._seq - self._control_seq) % (1 << 32) + 1

    async def _drive_loop(self) -> None:
        next_s = self._clock()
        while True:
            next_s += COMMAND_PERIOD_S
            await asyncio.sleep(max(0.0, next_s - self._clock()))
            if self.channels is None or not self.channels.drive.open or not self.driving:
                continue
            if not self.clock_sync.ready:
                continue  # a command's age cannot be judged without the clock offset
            now_s = self._clock()
            if not self.in_control:
                # Keeps the link fresh for the takeover; the deadman is released.
                self._send_drive(0.0, 0.0, deadman=False, estop=False)
                continue
            if self._drive_start_s is None:
                self._drive_start_s = now_s
            point = self.source.setpoint(now_s - self._drive_start_s)
            self._send_drive(
                point.speed_mps, point.steer_rad, deadman=point.deadman, estop=point.estop
            )

    async def _sync_loop(self) -> None:
        """Clock sync, video-freshness reports, and takeover requests while wanted."""
        count = 0
        while True:
            await asyncio.sleep(FRESHNESS_PERIOD_S)
            count += 1
            dead = self._session_dead()
            if dead is not None:
                log.warning("%s: new session", dead)
                await self._close_pc()
                # Forget the dead session: the hub answers the new Connect with a Bye for it,
                # which must not count as "the new session ended" (that re-asked at once, and
                # every Connect ended the session the previous one had just opened).
                self.session_id = None
                self._connect_sent_s = None
                await self._maybe_connect()
                continue
            channels = self.channels
            if channels is None or not channels.telemetry.open:
                continue
            age_ms = self.primary_video_age_ms()
            if age_ms is not None:
                channels.telemetry.send(m.VideoFreshness(t_ms=self.now_ms(), age_ms=age_ms))
            if count % CLOCK_SYNC_EVERY == 0:
                request_id, t1 = self.clock_sync.make_request(self.now_ms())
                channels.telemetry.send(m.TimeRequest(id=request_id, t1=t1))
            if count % TAKEOVER_EVERY == 0 and self.want_control and not self.in_control:
                channels.events.send(m.Takeover())

    @property
    def primary_camera(self) -> str | None:
        """The camera the operator drives from: the vehicle's primary, else the first seen."""
        if self.video_status is not None:
            return self.video_status.primary
        return next(iter(self._last_frame_by_camera), None)

    def primary_video_age_ms(self) -> float | None:
        """How long ago the primary camera showed a new frame (None before its first).

        Only the primary counts: a thumbnail camera that keeps streaming must not hide a
        frozen picture the operator is driving from.
        """
        primary = self.primary_camera
        last_s = self._last_frame_by_camera.get(primary) if primary is not None else None
        if last_s is None:
            if primary is not None and self._last_frame_by_camera:
                # The primary has shown nothing yet although others have: frozen since the
                # first frame of any camera.
                last_s = min(self._last_frame_by_camera.values())
            else:
                return None
        return max(0.0, (self._clock() - last_s) * 1000.0)

    def _session_dead(self) -> str | None:
        """Why the session is dead (aiortc takes ~30 s to notice by itself), or None."""
        if self.pc is None or self._session_started_s is None:
            return None
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            # ICE or DTLS gave up: no point waiting for the setup time-out
            return f"peer connection {state}"
        last_s = self._last_telemetry_s
        if last_s is None:
            if self._clock() - self._session_started_s > SESSION_SETUP_S:
                return f"no telemetry within {SESSION_SETUP_S:.0f} s of the session's start"
            return None
        if self._clock() - last_s > SESSION_DEAD_S:
            return f"no telemetry from the vehicle for {SESSION_DEAD_S:.1f} s"
        return None

    async def list_vehicles(self) -> None:
        """Asks the hub for its vehicles (the answer goes to ``on_message``)."""
        with contextlib.suppress(LinkError):
            await self.signaling.send(m.ListVehicles())

    @property
    def in_control(self) -> bool:
        """Whether the vehicle's last telemetry says the operator drives."""
        telemetry = self.stats.last_telemetry
        return telemetry is not None and telemetry.mode in ("TELEOP", "DEGRADED")

    def select_primary(self, camera: str) -> bool:
        """Asks the vehicle to give ``camera`` most of the video bitrate.

        The vehicle answers with ``Ack(ref="select_primary")`` (``ok=False`` for an unknown
        camera); :attr:`video_status` shows the new split about a second later.

        Returns:
            Whether the request was sent (False without an open session).
        """
        return self.send_event(m.SelectPrimary(camera=camera))

    def send_event(self, message: m.Message) -> bool:
        """Sends an event (e-stop, takeover, release, ...) on the reliable channel."""
        channels = self.channels
        return channels is not None and channels.events.send(message)
