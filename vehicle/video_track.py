"""Sending side of the video path: one aiortc track per camera, codec preference, bitrate cap.

:class:`CameraVideoTrack` hands the encoder only frames it has not sent before, and only the
newest one: when the encoder is slower than the camera, intermediate frames are skipped, never
queued. Each frame's presentation timestamp is derived from its capture time at the RTP video
clock rate (90 kHz), and the track remembers pts -> capture time for the last few hundred
frames so that the vehicle can publish capture times on telemetry (glass-to-glass).

Encoding: when the sender negotiated H.264, the track encodes itself with
:class:`~teledrive.vehicle.h264_encoder.H264StreamEncoder` (fast preset, capped threads,
1 s keyframes) in a per-track thread and hands aiortc pre-encoded ``av.Packet`` s, which
aiortc only packetizes. aiortc's own encoder (libx264 "medium", ~3x slower) encodes the first
frame, because aiortc creates its encoder, and so reveals the negotiated codec, only then;
with VP8 aiortc keeps encoding. Keyframe requests (PLI/FIR) reach the track through the
sender's private ``_RTCRtpSender__force_keyframe`` flag (copies of one request arriving
within :data:`KEYFRAME_HOLDOFF_S` force one keyframe), and the receiver's bitrate
estimate (REMB) through the ``target_bitrate`` aiortc keeps on its own encoder object.

Bitrate cap: aiortc (1.16) has no public API for it. Its ``RTCRtpSender`` creates the encoder
lazily on the first frame and then overwrites ``encoder.target_bitrate`` on every REMB from
the receiver. The only place teledrive runs code right before each encode is this track's
``recv()``, so a track bound to its sender (:meth:`CameraVideoTrack.bind_sender`) clamps the
encoder's ``target_bitrate`` there, through the sender's private ``_RTCRtpSender__encoder``
attribute. A REMB can raise the target between two frames, but the clamp is re-applied
before the next encode, so the encoder never runs above the cap. Note that aiortc clamps
targets to its own bounds (H.264 0.5–3 Mbit/s, VP8 0.25–1.5 Mbit/s); a cap below the lower
bound acts as that bound. If aiortc renames the attribute the cap logs one warning and
becomes a no-op (:attr:`CameraVideoTrack.bitrate_cap_active` reports it).

Operating point: :meth:`CameraVideoTrack.apply_operating_point` (from
:class:`~teledrive.vehicle.video_budget.VideoBudget`) sets, at run time, the size the
pictures are scaled down to before encoding (the encoder re-opens on a size change and starts
with a keyframe), the frame rate (camera frames beyond it are dropped, never queued) and the
bitrate cap. The frame counter bar code of the synthetic camera stays readable down to 240p
from a 640x480 camera (cells of 8 pixels) once the picture is scaled back to the camera size.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import fractions
import logging
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamError

from teledrive.shared.errors import ConfigError
from teledrive.vehicle.camera import Camera, CapturedFrame, Image
from teledrive.vehicle.h264_encoder import H264Settings, H264StreamEncoder
from teledrive.vehicle.video_budget import OperatingPoint
from teledrive.vehicle.video_scale import FramePacer, scale_to

logger = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
DEFAULT_PTS_HISTORY = 512
_SENDER_ENCODER_ATTR = "_RTCRtpSender__encoder"
_SENDER_KEYFRAME_ATTR = "_RTCRtpSender__force_keyframe"
DEFAULT_H264 = H264Settings(min_bitrate_bps=64_000)
"""Encoder settings of a track: the defaults, with a floor low enough for a 240p budget."""
KEYFRAME_HOLDOFF_S = 0.15
"""Least time between two keyframes forced by requests. On long round trips the operator
sends each request up to three times, 50 ms apart (``operator/video_receive.py``), and the
link's jitter spreads the copies by up to 80 ms more under ``bad-cell``: one keyframe answers
the copies within the hold-off, and a third copy the jitter delayed past it forces a second
now and then (6 % more keyframes in ``benchmarks/repair_model.py``; a 200 ms hold-off saved
them but freezes did not get fewer). A new request comes at least 200 ms after the one
before (the receiver's least keyframe interval), so it is never held off."""


class KeyframeHoldoff:
    """Decides which keyframe requests force a keyframe: at most one per hold-off time.

    Args:
        holdoff_s: least time between two forced keyframes (>= 0).

    Raises:
        ConfigError: ``holdoff_s`` is negative.
    """

    def __init__(self, holdoff_s: float = KEYFRAME_HOLDOFF_S) -> None:
        if not holdoff_s >= 0.0:
            raise ConfigError(f"keyframe hold-off must be >= 0 s, got {holdoff_s}")
        self._holdoff_s = holdoff_s
        self._last_s: float | None = None
        self.held_off = 0
        """Requests that forced nothing (copies of one already answered)."""

    def allow(self, now_s: float) -> bool:
        """A keyframe request at ``now_s``: True if it forces a keyframe now."""
        last = self._last_s
        if last is not None and 0.0 <= now_s - last < self._holdoff_s:
            self.held_off += 1
            return False
        self._last_s = now_s
        return True


class CameraVideoTrack(MediaStreamTrack):
    """A video track that sends the newest frame of a :class:`Camera`, each frame once.

    Args:
        camera: the camera to stream (started by the caller).
        max_bitrate_bps: encoder bitrate cap, or None for aiortc's own adaptation only.
        pts_history: how many pts -> capture time entries to keep.
        h264: settings of teledrive's own H.264 encoder, or None to let aiortc encode.

    Raises:
        ConfigError: if ``max_bitrate_bps`` or ``pts_history`` is not positive.
    """

    kind = "video"

    def __init__(
        self,
        camera: Camera,
        *,
        max_bitrate_bps: int | None = None,
        pts_history: int = DEFAULT_PTS_HISTORY,
        h264: H264Settings | None = DEFAULT_H264,
    ) -> None:
        super().__init__()
        # The remote track id (SDP msid) is the camera name, so the operator knows which
        # camera a track shows (names are unique per vehicle).
        self._id = camera.name
        if max_bitrate_bps is not None and max_bitrate_bps <= 0:
            raise ConfigError(
                f"camera {camera.name!r}: max_bitrate_bps must be > 0, got {max_bitrate_bps}"
            )
        if pts_history <= 0:
            raise ConfigError(f"camera {camera.name!r}: pts_history must be > 0")
        self.camera = camera
        self.max_bitrate_bps = max_bitrate_bps
        self._capture_by_pts: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._pts_history = pts_history
        self._last_index = 0
        self._last_pts: int | None = None
        self._origin_s: float | None = None
        self._wake = asyncio.Event()
        self._unsubscribe: Any = None
        self._sender: RTCRtpSender | None = None
        self._cap_warned = False
        self.frames_sent = 0
        """Frames handed to the encoder."""
        self.frames_skipped = 0
        """Camera frames never sent because a newer one was already there."""
        self.bitrate_cap_active = False
        """Whether the last clamp reached the encoder (False before it exists)."""
        self._h264: H264StreamEncoder | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if h264 is not None:
            where = f"camera {camera.name!r}"
            self._h264 = H264StreamEncoder(h264, where=where)
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"h264-{camera.name}"
            )
        self.frames_self_encoded = 0
        """Frames encoded by teledrive's encoder (the rest went through aiortc's)."""
        self.keyframe_holdoff = KeyframeHoldoff()
        """Which keyframe requests (PLI/FIR) force a keyframe, on the capture clock."""
        self._size_px: tuple[int, int] | None = None
        self._pacer = FramePacer(camera.nominal_fps)
        self.sent_size_px: tuple[int, int] | None = None
        """(width, height) of the last picture sent, None before the first."""

    # -- aiortc track API ------------------------------------------------------------------

    async def recv(self) -> av.VideoFrame | av.Packet[Any]:
        """Wait for a camera frame newer than the last one sent and return it.

        Returns an encoded ``av.Packet`` once teledrive's H.264 encoder is in use, else an
        ``av.VideoFrame`` for aiortc to encode.

        Raises:
            MediaStreamError: once the track is stopped.
        """
        if self.readyState != "live":
            raise MediaStreamError
        if self._unsubscribe is None:
            loop = asyncio.get_running_loop()
            self._unsubscribe = self.camera.subscribe(lambda _f: _wake_threadsafe(loop, self))
        while True:
            captured = self._admitted_frame()
            if captured is not None:
                break
            self._wake.clear()
            # Re-check after clearing, or a frame published in between would be missed.
            captured = self._admitted_frame()
            if captured is not None:
                break
            await self._wake.wait()
            if self.readyState != "live":
                raise MediaStreamError
        pts = self._record(captured)
        aiortc_encoder = self._aiortc_encoder()
        if self._h264 is not None and isinstance(aiortc_encoder, H264Encoder):
            return await self._encode_h264(captured, pts, aiortc_encoder)
        self._apply_bitrate_cap()
        image = self._scaled(captured.image)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def _encode_h264(
        self, captured: CapturedFrame, pts: int, aiortc_encoder: H264Encoder
    ) -> av.Packet[Any]:
        encoder = self._h264
        if encoder is None:
            raise MediaStreamError
        target_bps = int(aiortc_encoder.target_bitrate)
        if self.max_bitrate_bps is not None:
            target_bps = min(target_bps, self.max_bitrate_bps)
        encoder.set_target_bitrate(target_bps)
        keyframe = bool(getattr(self._sender, _SENDER_KEYFRAME_ATTR, False))
        if keyframe:
            setattr(self._sender, _SENDER_KEYFRAME_ATTR, False)
            keyframe = self.keyframe_holdoff.allow(captured.capture_time_s)
            logger.debug(
                "camera %s: keyframe request %s", self._id, "forced" if keyframe else "held off"
            )
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(
            self._executor,
            lambda: encoder.encode(self._scaled(captured.image), pts, keyframe=keyframe),
        )
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = VIDEO_TIME_BASE
        self.frames_self_encoded += 1
        return packet

    def stop(self) -> None:
        """Stop the track and stop listening to the camera (the camera keeps running)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        super().stop()
        self._wake.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- glass-to-glass --------------------------------------------------------------------

    def capture_time_for_pts(self, pts: int) -> float | None:
        """The camera capture time (camera clock, seconds) of the frame sent with ``pts``."""
        return self._capture_by_pts.get(pts)

    def recent_capture_times(self) -> list[tuple[int, float]]:
        """The remembered (pts, capture_time_s) pairs, oldest first."""
        return list(self._capture_by_pts.items())

    def capture_times_after(self, pts: int) -> list[tuple[int, float]]:
        """The remembered (pts, capture_time_s) pairs newer than ``pts``, oldest first.

        Walks back from the newest only as far as needed (pts only grow), so publishing a
        few new frames does not copy the whole history each time.
        """
        newer = []
        for item in reversed(self._capture_by_pts.items()):
            if item[0] <= pts:
                break
            newer.append(item)
        newer.reverse()
        return newer

    # -- operating point -------------------------------------------------------------------

    def apply_operating_point(self, point: OperatingPoint) -> None:
        """Send at ``point``'s size, frame rate and bitrate cap from the next frame on.

        A size equal to the camera's, or a frame rate at or above the camera's, means no
        scaling or no frame dropping.

        Raises:
            ConfigError: a size, frame rate or bitrate is not positive, or the size is odd.
        """
        where = f"camera {self.camera.name!r}"
        width, height = point.width_px, point.height_px
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ConfigError(f"{where}: operating size {width}x{height} must be even, > 0")
        if point.bitrate_bps <= 0:
            raise ConfigError(f"{where}: bitrate must be > 0, got {point.bitrate_bps}")
        fps = point.fps if point.fps < self.camera.nominal_fps else None
        self._pacer.set_fps(fps)
        self._size_px = (width, height)
        self.max_bitrate_bps = point.bitrate_bps

    @property
    def target_fps(self) -> float:
        """The frame rate the track sends at most (the camera's unless lowered)."""
        fps = self._pacer.fps
        return self.camera.nominal_fps if fps is None else fps

    @property
    def frames_paced_out(self) -> int:
        """Camera frames dropped to hold a lower frame rate."""
        return self._pacer.dropped

    @property
    def sender(self) -> RTCRtpSender | None:
        """The sender bound with :meth:`bind_sender`, if any."""
        return self._sender

    @property
    def remb_bps(self) -> int | None:
        """The receiver's bitrate estimate (REMB) as aiortc's encoder holds it.

        Clamped to aiortc's codec bounds (H.264 0.5-3 Mbit/s); None before the first frame.
        """
        encoder = self._aiortc_encoder()
        target = getattr(encoder, "target_bitrate", None)
        return int(target) if isinstance(target, int | float) else None

    def _scaled(self, image: Image) -> Image:
        size = self._size_px
        if size is not None:
            image = scale_to(image, size[0], size[1])
        height, width = image.shape[:2]
        self.sent_size_px = (width, height)
        return image

    # -- bitrate ---------------------------------------------------------------------------

    def bind_sender(self, sender: RTCRtpSender) -> None:
        """Tell the track which sender sends it (see :func:`add_camera_track`).

        Needed for teledrive's own H.264 encoder (codec detection, PLI, REMB) and for
        ``max_bitrate_bps``; an unbound track hands aiortc raw frames.
        """
        self._sender = sender

    def _aiortc_encoder(self) -> Any:
        """The sender's encoder object (None before the first frame or without a sender)."""
        if self._sender is None:
            return None
        if not hasattr(self._sender, _SENDER_ENCODER_ATTR):
            if not self._cap_warned:
                self._cap_warned = True
                logger.warning(
                    "camera %s: aiortc sender has no %s; bitrate cap and own encoder disabled",
                    self.camera.name,
                    _SENDER_ENCODER_ATTR,
                )
            return None
        return getattr(self._sender, _SENDER_ENCODER_ATTR)

    def _apply_bitrate_cap(self) -> None:
        if self.max_bitrate_bps is None:
            return
        encoder = self._aiortc_encoder()
        if encoder is None or not hasattr(encoder, "target_bitrate"):
            # Created on the first frame; the clamp applies from the second frame on.
            self.bitrate_cap_active = False
            return
        if encoder.target_bitrate > self.max_bitrate_bps:
            encoder.target_bitrate = self.max_bitrate_bps
        self.bitrate_cap_active = True

    # -- internals -------------------------------------------------------------------------

    def _admitted_frame(self) -> CapturedFrame | None:
        """The newest unsent frame if the frame rate admits it (else it is dropped)."""
        while True:
            frame = self._newer_frame()
            if frame is None or self._pacer.admit(frame.capture_time_s):
                return frame

    def _newer_frame(self) -> CapturedFrame | None:
        frame = self.camera.latest()
        if frame is None or frame.index <= self._last_index:
            return None
        if self._last_index:
            self.frames_skipped += frame.index - self._last_index - 1
        self._last_index = frame.index
        return frame

    def _pts_for(self, capture_time_s: float) -> int:
        if self._origin_s is None:
            self._origin_s = capture_time_s
        pts = round((capture_time_s - self._origin_s) * VIDEO_CLOCK_HZ)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _record(self, captured: CapturedFrame) -> int:
        pts = self._pts_for(captured.capture_time_s)
        self._capture_by_pts[pts] = captured.capture_time_s
        while len(self._capture_by_pts) > self._pts_history:
            self._capture_by_pts.popitem(last=False)
        self.frames_sent += 1
        return pts


def _wake_threadsafe(loop: asyncio.AbstractEventLoop, track: CameraVideoTrack) -> None:
    """Called from the camera thread: wake the track's recv() on its event loop."""
    try:
        loop.call_soon_threadsafe(track._wake.set)
    except RuntimeError:
        # The loop is closed (shutdown): nobody is waiting any more.
        track_name = track.camera.name
        logger.debug("camera %s: event loop closed, frame notification dropped", track_name)


def prefer_h264(transceiver: RTCRtpTransceiver) -> list[str]:
    """Order a video transceiver's codecs: H.264 first, VP8 as fallback, RTX kept for NACKs.

    Call before creating the offer (or the answer).

    Args:
        transceiver: a video transceiver.

    Returns:
        The MIME types in the order set.

    Raises:
        ConfigError: if aiortc offers neither H.264 nor VP8.
    """
    capabilities = RTCRtpSender.getCapabilities("video")
    codecs = list(capabilities.codecs) if capabilities is not None else []
    order = ("video/h264", "video/vp8", "video/rtx")
    preferred = [c for mime in order for c in codecs if c.mimeType.lower() == mime]
    if not any(c.mimeType.lower() in order[:2] for c in preferred):
        raise ConfigError("video transceiver: aiortc offers neither H.264 nor VP8")
    transceiver.setCodecPreferences(preferred)
    return [c.mimeType for c in preferred]


def add_camera_track(pc: RTCPeerConnection, track: CameraVideoTrack) -> RTCRtpTransceiver:
    """Add a camera track to a peer connection: send-only, H.264 first, sender bound.

    Returns:
        The new transceiver.
    """
    transceiver = pc.addTransceiver(track, direction="sendonly")
    prefer_h264(transceiver)
    track.bind_sender(transceiver.sender)
    return transceiver
