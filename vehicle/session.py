"""One operator's WebRTC session with the vehicle: its peer connection, tracks and channels.

The service owns which session is current; a :class:`Session` builds its peer connection's
media and data channels, binds the channels' callbacks to itself (a message still queued on a
replaced session must not act on the vehicle), and :class:`SessionCloser` closes replaced
sessions in the background within :data:`PC_CLOSE_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from teledrive.shared import channels as ch
from teledrive.shared import messages as m
from teledrive.shared.bond import Bonding, install_bonding, mark_offer
from teledrive.shared.handshake_resend import HandshakeResender, install_handshake_resender
from teledrive.vehicle.camera import Camera
from teledrive.vehicle.retransmit_guard import RetransmitBudget, install_retransmit_guard
from teledrive.vehicle.tasks import cancel_all
from teledrive.vehicle.video_adapt import VideoAdapter
from teledrive.vehicle.video_budget import VideoBudgetConfig
from teledrive.vehicle.video_track import CameraVideoTrack, add_camera_track

log = logging.getLogger(__name__)

PC_CLOSE_TIMEOUT_S = 3.0
FRAME_TIMES_PER_MESSAGE = 64


class Session:
    """One operator's WebRTC session with this vehicle.

    Args:
        session_id: the hub's session id.
        operator_id: the operator's id (for the log).
        pc: the session's peer connection; a new one without ICE servers when None.
    """

    def __init__(
        self, session_id: str, operator_id: str, pc: RTCPeerConnection | None = None
    ) -> None:
        self.id = session_id
        self.operator_id = operator_id
        self.pc = pc if pc is not None else RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channels: ch.Channels | None = None
        self.tracks: list[CameraVideoTrack] = []
        self.published_pts: dict[str, int] = {}
        self.video: VideoAdapter | None = None
        self.started_ms = 0.0
        self.last_data_ms: float | None = None
        self.redialled = False
        self.handshake: HandshakeResender | None = None
        """Re-sends unanswered handshake datagrams until DTLS connects (see create_offer)."""
        self.bonding: Bonding | None = None
        """Copies every datagram over the vehicle's other interface (``[link] bond``)."""
        self.retransmits: dict[str, RetransmitBudget] = {}
        """Per camera: which requested video retransmissions were sent (see add_cameras)."""

    def add_cameras(
        self,
        cameras: Iterable[Camera],
        *,
        clock_ms: Callable[[], float],
        rtt_ms: Callable[[], float | None],
        start_bps: int | None = None,
    ) -> None:
        """Adds one send-only H.264 video track per camera, and the video adapter over them.

        Each track's retransmissions pass a :class:`RetransmitBudget` (``self.retransmits``).

        Args:
            cameras: the cameras.
            clock_ms: the vehicle's monotonic clock in ms.
            rtt_ms: the round trip to the operator now, if measured.
            start_bps: the video budget to start from (what the last session learned), or
                None for the default.
        """
        for camera in cameras:
            track = CameraVideoTrack(camera)
            transceiver = add_camera_track(self.pc, track)
            self.retransmits[camera.name] = install_retransmit_guard(
                transceiver.sender,
                clock_ms=clock_ms,
                rate_bps=lambda track=track: track.max_bitrate_bps,  # type: ignore[misc]
                rtt_ms=rtt_ms,
            )
            self.tracks.append(track)
        config = VideoBudgetConfig()
        if start_bps is not None:
            low, high = config.min_total_bps, config.max_total_bps
            config = dataclasses.replace(config, start_bps=min(high, max(low, start_bps)))
        self.video = VideoAdapter(self.tracks, config=config)

    def retransmit_summary(self) -> str:
        """What the tracks' retransmission budgets did, for the log."""
        return ", ".join(
            f"{name}: sent {b.stats.sent}, repeated {b.stats.repeated}, too old"
            f" {b.stats.too_old}, over budget {b.stats.over_budget}"
            for name, b in self.retransmits.items()
        )

    def open_channels(
        self,
        on_data: Callable[[m.DataMessage], None],
        on_error: Callable[[ch.ChannelSpec, str], None],
        *,
        current: Callable[[], Session | None],
    ) -> None:
        """Opens the data channels; their callbacks run only while this session is current.

        Args:
            on_data: called with every valid message.
            on_error: called with the channel and a description of every bad message.
            current: returns the service's current session.
        """

        def bound_data(message: m.DataMessage) -> None:
            if current() is self:
                on_data(message)

        def bound_error(spec: ch.ChannelSpec, text: str) -> None:
            if current() is self:
                on_error(spec, text)

        self.channels = ch.open_channels(self.pc, bound_data, bound_error)

    async def create_offer(self, *, rtt_ms: float | None = None, bond: bool = False) -> str:
        """Sets the local description to a new offer and returns its SDP.

        Args:
            rtt_ms: the last round trip to an operator, if known: the handshakes that follow
                re-send what is unanswered after about one and a half of it.
            bond: send every datagram over each network interface (one per modem), and ask
                the operator, in the offer, to send to the vehicle's other address too
                (:mod:`teledrive.shared.bond`).
        """
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.handshake = install_handshake_resender(self.pc, rtt_ms=rtt_ms)
        sdp = str(self.pc.localDescription.sdp)
        if not bond:
            return sdp
        self.bonding = install_bonding(self.pc, every_interface=True)
        return mark_offer(sdp)

    async def accept_answer(self, sdp: str) -> None:
        """Sets the operator's answer as the remote description."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def new_frame_times(self) -> list[m.FrameTimes]:
        """The capture times of frames sent since the last call, in messages of up to 64."""
        frames = []
        for track in self.tracks:
            name = track.camera.name
            newer = track.capture_times_after(self.published_pts.get(name, -1))
            frames += [m.FrameTime(camera=name, pts=p, capture_ms=t * 1000.0) for p, t in newer]
            if newer:
                self.published_pts[name] = newer[-1][0]
        return [
            m.FrameTimes(frames=frames[start : start + FRAME_TIMES_PER_MESSAGE])
            for start in range(0, len(frames), FRAME_TIMES_PER_MESSAGE)
        ]


async def close_pc(pc: RTCPeerConnection) -> None:
    """Closes a peer connection, giving up (with a warning) after :data:`PC_CLOSE_TIMEOUT_S`."""
    try:
        await asyncio.wait_for(pc.close(), PC_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("peer connection did not close within %.0f s", PC_CLOSE_TIMEOUT_S)


class SessionCloser:
    """Closes ended sessions' peer connections in tasks of their own.

    aioice's close can take long and swallows a cancel, which must not stall the signaling
    reader that delivered the Bye.
    """

    def __init__(self) -> None:
        self._closing: set[asyncio.Task[None]] = set()

    def close(self, session: Session) -> None:
        """Stops the session's tracks and starts closing its peer connection in the background.

        aiortc stops a track when its sender's RTP loop ends, so a sender that never started
        (a session that never connected, or an offer made ahead and not used) leaves its
        track live, with its encoder's thread pool.
        """
        for track in session.tracks:
            track.stop()
        if any(b.stats.sent or b.stats.repeated for b in session.retransmits.values()):
            log.info("session %s retransmissions: %s", session.id, session.retransmit_summary())
        if session.handshake is not None:
            session.handshake.remove()  # DTLS may never have started: it would not say so
        task = asyncio.create_task(close_pc(session.pc), name=f"close-{session.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self) -> None:
        """Cancels the closes still running and waits up to :data:`PC_CLOSE_TIMEOUT_S`."""
        await cancel_all(list(self._closing), grace_s=PC_CLOSE_TIMEOUT_S)
