"""The console's network side: an :class:`OperatorClient` on its own thread and event loop.

The UI thread never waits on the network or on decoding. Between the two threads:

* video: the client thread converts each decoded frame to an image and puts it in a
  :class:`FrameMailbox` (one slot per camera: a newer frame replaces an unpainted one, frames
  are never queued); when a slot goes from empty to full it calls ``notify_frame``, which the
  window connects to a queued Qt signal, so at most one paint request is in flight;
* state: the client thread publishes a :class:`LinkSnapshot` every ``SNAPSHOT_PERIOD_S`` and
  queues hub and vehicle messages (presence, mode changes, alerts, acks); the UI polls both;
* commands: the 50 Hz drive loop reads the thread-safe
  :class:`~teledrive.operator.console.controls.ConsoleCommandSource`; events (e-stop,
  takeover, ...) are handed over with ``loop.call_soon_threadsafe``.

The network side is a plain :class:`~teledrive.operator.client.OperatorClient` fed through its
public hooks (``on_frame``, ``on_message``, ``on_hub_connected``). Its automatic takeover is
off: in the console, control passes to the operator only when the operator asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from teledrive.operator.client import COMMAND_PERIOD_S, OperatorClient
from teledrive.operator.console.controls import ConsoleCommandSource
from teledrive.operator.console.metrics import (
    FrameRateMeter,
    VideoLinkMeter,
    counters_from_report,
)
from teledrive.shared import messages as m
from teledrive.shared.errors import LinkError
from teledrive.shared.signaling import SignalingClient

log = logging.getLogger(__name__)

SNAPSHOT_PERIOD_S: Final = 0.05
MAX_PENDING_MESSAGES: Final = 1000
STOP_TIMEOUT_S: Final = 5.0
STATS_PERIOD_S: Final = 1.0


class FrameMailbox:
    """The newest image per camera, one slot each; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, Any] = {}
        self.replaced = 0

    def put(self, camera: str, image: Any) -> bool:
        """Stores an image; returns True when the mailbox was empty (the reader needs a nudge)."""
        with self._lock:
            was_empty = not self._slots
            if camera in self._slots:
                self.replaced += 1
            self._slots[camera] = image
            return was_empty

    def take(self) -> dict[str, Any]:
        """Takes every stored image (camera -> newest image) and empties the mailbox."""
        with self._lock:
            slots, self._slots = self._slots, {}
            return slots


@dataclass(frozen=True)
class LinkSnapshot:
    """What the network side knows, published for the UI.

    Attributes:
        vehicle_id: the vehicle in session (None: watching the fleet only).
        hub_connected: registered with the hub.
        session_open: the drive channel to the vehicle is open.
        telemetry: the newest telemetry.
        telemetry_age_ms: time since it arrived.
        rtt_ms: data-channel round trip (clock sync, latest exchange).
        one_way_ms: one-way delay estimate.
        video_fps: frame rate of the primary camera.
        frames: frames decoded per camera.
        glass_to_glass_ms: latest glass-to-glass delay, when capture times are known.
        video_kbps: receive bitrate (whole transport: video and data channels), when known.
        video_loss: fraction of video RTP packets lost over the last second, when known.
        commands_sent: drive commands sent.
        errors: errors counted by the client.
        cameras: camera names in the vehicle's order (primary first).
    """

    vehicle_id: str | None = None
    hub_connected: bool = False
    session_open: bool = False
    telemetry: m.Telemetry | None = None
    telemetry_age_ms: float | None = None
    rtt_ms: float | None = None
    one_way_ms: float | None = None
    video_fps: float = 0.0
    frames: dict[str, int] = field(default_factory=dict)
    glass_to_glass_ms: float | None = None
    video_kbps: float | None = None
    video_loss: float | None = None
    commands_sent: int = 0
    errors: int = 0
    cameras: tuple[str, ...] = ()


class ClientThread:
    """Runs the console's network side on a thread with its own asyncio loop.

    Args:
        hub_url: websocket URL of the hub.
        source: the console's command source (read by the drive loop).
        frames: where decoded images go.
        notify_frame: called (client thread) when ``frames`` goes from empty to non-empty.
        image_from_frame: converts an ``av.VideoFrame`` to what the UI paints (client thread).
        operator_id: this operator's id on the hub.
        clock: monotonic clock in seconds (the one ``source`` uses, in ms).
    """

    def __init__(
        self,
        hub_url: str,
        *,
        source: ConsoleCommandSource,
        frames: FrameMailbox,
        notify_frame: Callable[[], None],
        image_from_frame: Callable[[Any], Any],
        operator_id: str = "operator",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub_url = hub_url
        self.operator_id = operator_id
        self.source = source
        self.frames = frames
        self._notify_frame = notify_frame
        self._image_from_frame = image_from_frame
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = LinkSnapshot()
        self._messages: deque[m.Message] = deque(maxlen=MAX_PENDING_MESSAGES)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = asyncio.Event()
        self._vehicle_id: str | None = None
        self._client: OperatorClient | None = None
        self._watcher: SignalingClient | None = None
        self._runner: asyncio.Task[Any] | None = None
        self._fps = FrameRateMeter()
        self._link_meter = VideoLinkMeter()
        self._frame_counts: dict[str, int] = {}
        self._cameras: tuple[str, ...] = ()
        self.primary_camera: str | None = None
        self.events_sent: list[m.Message] = []
        self.events_unsent = 0

    # -- UI thread API --------------------------------------------------------------------

    def start(self, vehicle_id: str | None = None, *, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Starts the thread; connects to ``vehicle_id`` (or only watches the fleet)."""
        self._vehicle_id = vehicle_id
        self._thread = threading.Thread(target=self._thread_main, name="console-net", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise LinkError("console: the network thread did not start")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stops driving (a last zero command), closes the session and joins the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(self._stopped.set)
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("console: network thread did not stop within %.1f s", timeout_s)

    def select_vehicle(self, vehicle_id: str | None) -> None:
        """Watches and drives ``vehicle_id`` instead (None: fleet only); thread-safe."""
        self._call(self._switch, vehicle_id)

    def send_event(self, message: m.Message) -> None:
        """Sends an events-channel message (e-stop, takeover, ...) to the vehicle; thread-safe."""
        self._call(self._send_event, message)

    def snapshot(self) -> LinkSnapshot:
        """The newest published state."""
        with self._lock:
            return self._snapshot

    def drain_messages(self) -> list[m.Message]:
        """Hub and vehicle messages received since the last call, oldest first."""
        with self._lock:
            out = list(self._messages)
            self._messages.clear()
            return out

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            raise LinkError("console: the network thread is not running")
        loop.call_soon_threadsafe(fn, *args)

    # -- client thread --------------------------------------------------------------------

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        self._ready.set()
        self._switch(self._vehicle_id)
        loops = [
            asyncio.create_task(self._publish_loop(), name="console-snapshot"),
            asyncio.create_task(self._stats_loop(), name="console-stats"),
        ]
        try:
            await self._stopped.wait()
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._stop_runner()

    def _switch(self, vehicle_id: str | None) -> None:
        async def switch() -> None:
            await self._stop_runner()
            self._vehicle_id = vehicle_id
            self._frame_counts = {}
            self._fps = FrameRateMeter()
            self._link_meter = VideoLinkMeter()
            self._cameras = ()
            self.primary_camera = None
            if vehicle_id is None:
                watcher = SignalingClient(
                    self.hub_url,
                    m.Register(role="operator", id=self.operator_id),
                    on_message=self._on_message,
                    on_connected=self._list_vehicles,
                )
                self._watcher = watcher
                self._runner = asyncio.create_task(watcher.run(), name="console-watch")
            else:
                client = OperatorClient(
                    self.hub_url,
                    vehicle_id,
                    operator_id=self.operator_id,
                    source=self.source,
                    clock=self._clock,
                    on_frame=self._on_video,
                    on_message=self._on_message,
                    on_hub_connected=self._list_vehicles,
                )
                client.want_control = False  # takeover only on the operator's request
                self._client = client
                self._runner = asyncio.create_task(client.run(), name="console-client")

        asyncio.get_running_loop().create_task(switch())

    async def _list_vehicles(self, *_: object) -> None:
        if self._client is not None:
            await self._client.list_vehicles()
        elif self._watcher is not None:
            with contextlib.suppress(LinkError):
                await self._watcher.send(m.ListVehicles())

    async def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        watcher, self._watcher = self._watcher, None
        client, self._client = self._client, None
        if watcher is not None:
            await watcher.close()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if client is not None and client.channels is not None:
            await client.close()

    def _send_event(self, message: m.Message) -> None:
        client = self._client
        if client is not None and client.send_event(message):
            self.events_sent.append(message)
            return
        # the drive commands carry the e-stop flag as well, so an e-stop is never lost here
        self.events_unsent += 1
        log.warning("console: %s not sent: no open session", m.message_type(message))

    def _on_message(self, message: m.Message) -> None:
        if isinstance(message, m.Telemetry | m.TimeResponse | m.TimeRequest | m.FrameTimes):
            return  # published through the snapshot (the client pairs the frame times)
        self._note_cameras(message)
        with self._lock:
            self._messages.append(message)

    def _note_cameras(self, message: m.Message) -> None:
        """Keeps the vehicle's camera names (primary first) from the fleet messages."""
        if isinstance(message, m.VehicleList):
            infos = message.vehicles
        elif isinstance(message, m.Presence):
            infos = [message.vehicle]
        else:
            return
        for info in infos:
            if info.id == self._vehicle_id and info.cameras:
                self._cameras = tuple(info.cameras)

    def _on_video(self, camera: str, frame: Any) -> None:
        """A decoded frame; ``camera`` is the track id (the vehicle names tracks by camera)."""
        now_ms = self._clock() * 1000.0
        if self.primary_camera is None:
            self.primary_camera = self._cameras[0] if self._cameras else camera
        self._frame_counts[camera] = self._frame_counts.get(camera, 0) + 1
        if camera == self.primary_camera:
            self._fps.on_frame(now_ms)
            self.source.on_frame()
        image = self._image_from_frame(frame)
        if self.frames.put(camera, image):
            self._notify_frame()

    async def _stats_loop(self) -> None:
        """Reads aiortc's statistics once a second for the bitrate and loss figures."""
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            client = self._client
            pc = client.pc if client is not None else None
            counters = None
            if pc is not None:
                report = await pc.getStats()
                counters = counters_from_report(report.values())
            self._link_meter.on_sample(self._clock() * 1000.0, counters)

    async def _publish_loop(self) -> None:
        while True:
            self._publish()
            await asyncio.sleep(SNAPSHOT_PERIOD_S)

    def _publish(self) -> None:
        now_ms = self._clock() * 1000.0
        client = self._client
        watcher = self._watcher
        if client is None:
            hub = watcher is not None and watcher.connected.is_set()
            snapshot = LinkSnapshot(hub_connected=hub)
        else:
            telemetry = client.stats.last_telemetry
            sync = client.clock_sync
            channels = client.channels
            one_way = sync.one_way_ms
            if one_way is None and telemetry is not None:
                one_way = telemetry.one_way_ms
            snapshot = LinkSnapshot(
                vehicle_id=client.vehicle_id,
                hub_connected=client.signaling.connected.is_set(),
                session_open=channels is not None and channels.drive.open,
                telemetry=telemetry,
                telemetry_age_ms=None
                if telemetry is None
                else self._telemetry_age_ms(client, telemetry, now_ms),
                rtt_ms=sync.rtt_ms,
                one_way_ms=one_way,
                video_fps=self._fps.fps(now_ms),
                frames=dict(self._frame_counts),
                glass_to_glass_ms=client.g2g.last_ms,
                video_kbps=self._link_meter.bitrate_kbps,
                video_loss=self._link_meter.loss_fraction,
                commands_sent=client.stats.commands_sent,
                errors=client.stats.errors,
                cameras=self._cameras,
            )
        with self._lock:
            self._snapshot = snapshot

    @staticmethod
    def _telemetry_age_ms(client: OperatorClient, telemetry: m.Telemetry, now_ms: float) -> float:
        offset = client.clock_sync.offset_at(now_ms) if client.clock_sync.ready else None
        if offset is None:
            return 0.0
        return max(0.0, now_ms + offset - telemetry.t_ms)


COMMAND_PERIOD_MS: Final = COMMAND_PERIOD_S * 1000.0
