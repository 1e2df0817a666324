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
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from teledrive.shared import channels as ch
from teledrive.shared import messages as m
from teledrive.shared.bond import local_addresses
from teledrive.shared.clock_sync import ClockSync
from teledrive.shared.config import (
    WORLD_CAMERA_SOURCE,
    CameraSection,
    VehicleConfig,
    simulated_world,
)
from teledrive.shared.errors import ConfigError, LinkError
from teledrive.shared.signaling import SignalingClient
from teledrive.vehicle.camera import Camera, FrameSource, OpenCVSource, SyntheticSource
from teledrive.vehicle.command_audit import CommandAudit
from teledrive.vehicle.command_gate import CommandArrival, GateVerdict
from teledrive.vehicle.control import AutonomySource, Controller, mcu_state_name
from teledrive.vehicle.mcu_codec import Fault
from teledrive.vehicle.motor_link import MotorLink
from teledrive.vehicle.offer_ahead import OfferAhead
from teledrive.vehicle.redial import operator_lost, run_redial
from teledrive.vehicle.session import Session, SessionCloser
from teledrive.vehicle.sim_world import SimWorld, motor_motion, sim_world_from_config
from teledrive.vehicle.supervisor import (
    Mode,
    RequestResult,
    Supervisor,
    SupervisorConfig,
    TickOutput,
)
from teledrive.vehicle.tasks import cancel_all
from teledrive.vehicle.tick_schedule import TICK_S, TickSchedule
from teledrive.vehicle.video_adapt import BudgetMemory, run_video_adaptation
from teledrive.vehicle.world_camera import WorldCameraSource

log = logging.getLogger(__name__)

TELEMETRY_EVERY_TICKS = 2
CLOCK_SYNC_EVERY_TICKS = 5
STATUS_EVERY_TICKS = 250  # 5 s; and at once on every mode change


def supervisor_config(config: VehicleConfig) -> SupervisorConfig:
    """The supervisor's timing and limits from ``vehicle.toml``."""
    safety = config.safety
    return SupervisorConfig(
        degrade_age_ms=safety.degrade_after_ms,
        fallback_age_ms=safety.command_timeout_ms,
        stop_silence_ms=safety.link_lost_stop_ms,
        decel_mps2=safety.decel_mps2,
        max_speed_mps=config.motor.max_speed_mps,
        max_steer_rad=config.motor.max_steer_rad,
    )


_T = TypeVar("_T")


def _drain(queue: deque[_T]) -> list[_T]:
    """Takes everything out of ``queue``, oldest first (safe against another thread's append)."""
    taken: list[_T] = []
    while queue:
        taken.append(queue.popleft())
    return taken


def make_camera(section: CameraSection, *, world: SimWorld | None = None) -> Camera:
    """Builds a camera (not started) from its config section.

    Raises:
        ConfigError: the section asks for the world camera but there is no simulated world.
    """
    if section.source == WORLD_CAMERA_SOURCE and world is None:
        raise ConfigError(f"camera {section.name!r}: source 'world' needs a simulated world")

    def factory() -> FrameSource:
        if section.source == "synthetic":
            return SyntheticSource(section.width, section.height, section.fps, name=section.name)
        if section.source == WORLD_CAMERA_SOURCE and world is not None:
            return WorldCameraSource(
                world.snapshot, section.width, section.height, section.fps, name=section.name
            )
        device: int | str = int(section.source) if section.source.isdigit() else section.source
        return OpenCVSource(device, section.width, section.height, section.fps)

    return Camera(factory, name=section.name, fps=section.fps)


class VehicleService:
    """Runs a vehicle: cameras, motor link, hub connection and operator sessions.

    Args:
        config: the validated ``vehicle.toml``.
        clock: monotonic clock in seconds (all timestamps on the wire are this clock in ms).
        motor_link: the motor link to use; built from ``config.motor.url`` when None.
        cameras: cameras to stream; built from ``config.cameras`` when None.
        autonomy: the fallback autonomy; when None, the simulated world of the config (its
            ``[sim]`` section, or the built-in one with the ``sim://`` motor) if any; without
            one a link loss means a minimal-risk stop.
        on_command: called with every drive command that arrives and the gate's verdict
            (recording, tests).
        on_step: called with every control step's decision (recording, tests).
    """

    def __init__(
        self,
        config: VehicleConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        motor_link: MotorLink | None = None,
        cameras: list[Camera] | None = None,
        autonomy: AutonomySource | None = None,
        on_command: Callable[[CommandArrival, GateVerdict], None] | None = None,
        on_step: Callable[[TickOutput], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_command = on_command
        self._on_step = on_step
        self.supervisor = Supervisor(supervisor_config(config), start_ms=self.now_ms())
        # FAULT reports arrive on the motor link's reader thread; a deque hands them over
        # (append and popleft are atomic) to the control step on the event loop.
        self._mcu_faults: deque[Fault] = deque(maxlen=256)
        self.motor = motor_link or MotorLink(config.motor.url, on_fault=self._mcu_faults.append)
        self.sim_world: SimWorld | None = None
        """The simulated world, when the vehicle drives in one."""
        if autonomy is None:
            section = simulated_world(config)
            if section is not None:
                self.sim_world = sim_world_from_config(section, measured=motor_motion(self.motor))
                autonomy = self.sim_world
        elif isinstance(autonomy, SimWorld):
            self.sim_world = autonomy
        self.controller = Controller(
            self.supervisor, self.motor, autonomy=autonomy, faults=self._take_mcu_faults
        )
        self.clock_sync = ClockSync()
        self._path_rtts_ms: deque[float] = deque(maxlen=64)
        """Clock-sync round trips not yet handed to the video budget."""
        self.audit = CommandAudit(bound_ms=self.supervisor.config.fallback_age_ms)
        self.cameras = (
            cameras
            if cameras is not None
            else [make_camera(c, world=self.sim_world) for c in config.cameras]
        )
        hub_host = urllib.parse.urlsplit(config.vehicle.hub_url).hostname
        self.signaling = SignalingClient(
            config.vehicle.hub_url,
            self._registration,
            on_message=self._on_signal,
            on_connected=self._on_registered,
            # Bonded: dial the hub from every modem at once, so a dead one does not strand it.
            source_addresses=(lambda: local_addresses(hub_host)) if config.link.bond else None,
        )
        self.session: Session | None = None
        self.errors = 0
        self.failed = False
        """Set when :meth:`run` ended because one of its tasks died."""
        self._tick_count = 0
        self._kick = asyncio.Event()
        self._deadline_ms: float | None = None  # the supervisor deadline the loop waits for
        self._closer = SessionCloser()
        self._video_memory = BudgetMemory()
        """What the last session's video budget learned: where the next one starts."""
        self.offers = OfferAhead(
            lambda: self._build_session("ahead", "?"), self._closer.close, now_ms=self.now_ms
        )
        """The next session's offer, made ahead while the vehicle re-dials."""
        self._background: set[asyncio.Task[None]] = set()
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
            asyncio.create_task(
                run_video_adaptation(
                    lambda: self.session.video if self.session is not None else None,
                    now_ms=self.now_ms,
                    send_status=self._send_telemetry,
                    fallback_rtt_ms=lambda: self.clock_sync.rtt_ms,
                    take_path_rtts_ms=self._take_path_rtts_ms,
                ),
                name="video-budget",
            ),
            asyncio.create_task(
                run_redial(lambda: self.session, now_ms=self.now_ms, redial=self._redial),
                name="redial",
            ),
        ]
        stopping = asyncio.create_task(self._stopping.wait(), name="stopping")
        try:
            done, _pending = await asyncio.wait(
                [stopping, *tasks], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopping and not task.cancelled() and task.exception():
                    # A dead control loop must not leave a vehicle that still answers
                    # takeovers: stop the whole service (a supervisor such as systemd
                    # restarts it); the motor is disarmed first, below.
                    log.critical("task %s died: %r; stopping", task.get_name(), task.exception())
                    self.failed = True
        finally:
            stopping.cancel()
            # The motor first: whatever else hangs below, the vehicle is already disarmed.
            self._safe_stop_motor()
            await cancel_all([*tasks, *self._background])
            await self._end_session("vehicle stopping")
            self.offers.discard()
            await self._closer.drain()
            await self.signaling.close()
            for camera in self.cameras:
                camera.stop()

    def _take_mcu_faults(self) -> list[Fault]:
        return _drain(self._mcu_faults)

    def _take_path_rtts_ms(self) -> list[float]:
        return _drain(self._path_rtts_ms)

    def stop(self) -> None:
        """Asks :meth:`run` to finish."""
        self._stopping.set()

    def _safe_stop_motor(self) -> None:
        # MotorLink.stop() sends DISARM before closing the port.
        self.motor.stop()

    # -- signaling --------------------------------------------------------------------------

    def _registration(self) -> m.Register:
        return m.Register(
            role="vehicle",
            id=self.config.vehicle.id,
            name=self.config.vehicle.name,
            cameras=[c.name for c in self.cameras],
            offer=self.offers.offer_for_registration(),
        )

    async def _on_registered(self) -> None:
        session = self.session
        if session is not None and operator_lost(session, self.now_ms()):
            # Registered after the operator was lost: the link is back, and this session's
            # re-dials are over (one more would replace this registration at the hub, ending
            # the session the operator may be opening on it).
            session.redialled = True
        self.offers.settle(self._registered_offer())
        await self._report_status()

    def _registered_offer(self) -> str | None:
        """The offer made ahead that the latest registration carried (None: none)."""
        registered = self.signaling.registered_with
        return registered.offer if registered is not None else None

    async def _redial(self, timeout_s: float) -> bool:
        session = self.session
        if session is not None and session.redialled:
            # Registered since the re-dial loop decided to dial (that ends the re-dials: see
            # _on_registered); dialling now would replace that registration.
            return True
        before = self.signaling.stats.registrations
        if await self.signaling.redial(timeout_s, prepare=self.offers.prepare):
            return True
        # A registration since this attempt began means the hub link is fresh: further
        # re-dials would only open connections to close them.
        return self.signaling.stats.registrations > before

    async def _on_signal(self, message: m.SignalMessage) -> None:
        match message:
            case m.Connect(session=str(session_id), operator_id=operator_id, offer_ahead=ahead):
                await self._start_session(session_id, operator_id or "?", offer_ahead=ahead)
            case m.Answer(session=session_id, sdp=sdp):
                if self.session is not None and self.session.id == session_id:
                    await self.session.accept_answer(sdp)
            case m.Bye(session=session_id, reason=reason):
                if self.session is not None and self.session.id == session_id:
                    await self._end_session(f"bye: {reason}")
            case m.Error(code=code, message=text):
                log.warning("hub error %s: %s", code, text)
            case _:
                pass

    async def _build_session(self, session_id: str, operator_id: str) -> tuple[Session, str]:
        session = Session(session_id, operator_id)
        now_ms = self.now_ms()
        current = self.session
        self._video_memory.remember(current.video if current is not None else None, now_ms)
        try:
            session.add_cameras(
                self.cameras,
                clock_ms=self.now_ms,
                rtt_ms=lambda: self.clock_sync.rtt_ms,
                start_bps=self._video_memory.start_bps(now_ms),
            )
            session.open_channels(self._on_data, self._on_data_error, current=lambda: self.session)
            offer = await session.create_offer(
                rtt_ms=self.clock_sync.rtt_ms, bond=self.config.link.bond
            )
            return session, offer
        except BaseException:
            self._closer.close(session)  # failed or cancelled half-way: nobody else has it
            raise

    def _begin(self, session: Session, session_id: str, operator_id: str) -> None:
        session.id = session_id
        session.operator_id = operator_id
        self.session = session
        session.started_ms = self.now_ms()
        self.supervisor.on_operator_session(self.now_ms())

    async def _start_session(
        self, session_id: str, operator_id: str, *, offer_ahead: bool = False
    ) -> None:
        await self._end_session("replaced by a new session")
        if offer_ahead:
            made = self.offers.take(self._registered_offer())
            if made is not None:
                self._begin(made, session_id, operator_id)
                log.info("session %s with operator %s: offer made ahead", session_id, operator_id)
                return
            # The operator has an offer no peer connection here belongs to: end the session
            # (a second offer would race the answer to the first); the operator asks again.
            log.warning("session %s: the hub used an offer made ahead, none here", session_id)
            with contextlib.suppress(LinkError):
                await self.signaling.send(m.Bye(session=session_id, reason="offer made ahead lost"))
            return
        else:
            self.offers.discard()
        session, sdp = await self._build_session(session_id, operator_id)
        self._begin(session, session_id, operator_id)
        try:
            await self.signaling.send(m.Offer(session=session_id, sdp=sdp))
        except LinkError as err:
            # The hub connection died under the request (a cut link: the request waited in
            # TCP). The operator asks again once the vehicle is back at the hub.
            log.warning("session %s: offer not sent: %s", session_id, err)
            if self.session is session:
                await self._end_session("offer not sent")
            return
        log.info("session %s with operator %s: offer sent", session_id, operator_id)

    async def _end_session(self, reason: str) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        log.info("session %s ended: %s", session.id, reason)
        self._video_memory.remember(session.video, self.now_ms())
        # Closed in the background: see SessionCloser.
        self._closer.close(session)

    # -- data channels ----------------------------------------------------------------------

    def _on_data_error(self, spec: ch.ChannelSpec, text: str) -> None:
        self.errors += 1
        session = self.session
        if session is not None and session.channels is not None:
            session.channels.events.send(m.Error(code="bad_message", message=text[:1000]))

    def _on_data(self, message: m.DataMessage) -> None:
        now_ms = self.now_ms()
        sup = self.supervisor
        session = self.session
        if session is not None:
            if session.last_data_ms is None:
                # How long the data channels took to carry anything (the re-dial policy
                # gives a session SESSION_SETUP_MS for it).
                log.info(
                    "session %s: first data from the operator %.0f ms after it began",
                    session.id,
                    now_ms - session.started_ms,
                )
            session.last_data_ms = now_ms
        match message:
            case m.DriveCommand():
                arrival = CommandArrival(
                    seq=message.seq,
                    sent_ms=message.t_ms,
                    offset_ms=message.offset_ms,
                    ttl_ms=message.ttl_ms,
                    speed_mps=message.speed_mps if message.deadman else 0.0,
                    steer_rad=message.steer_rad,
                    estop=message.estop,
                    received_ms=now_ms,
                )
                verdict = sup.on_command(arrival)
                if verdict.accepted:
                    self.audit.on_accepted(arrival.seq, arrival.sent_vehicle_ms(), arrival.ttl_ms)
                if self._on_command is not None:
                    self._on_command(arrival, verdict)
                if verdict.accepted or message.estop:
                    self._kick.set()
            case m.TimeRequest(id=request_id, t1=t1):
                sup.on_link_heartbeat(now_ms)
                self._send_telemetry(m.TimeResponse(id=request_id, t1=t1, t2=now_ms, t3=now_ms))
            case m.TimeResponse(id=request_id, t1=t1, t2=t2, t3=t3):
                sup.on_link_heartbeat(now_ms)
                sample = self.clock_sync.on_response(request_id, t1, t2, t3, now_ms)
                if sample is not None:
                    self._path_rtts_ms.append(sample.rtt_ms)
                    one_way, rtt = self.clock_sync.one_way_ms, self.clock_sync.rtt_ms
                    if one_way is not None and rtt is not None:
                        sup.on_latency(now_ms, one_way, rtt)
                        self._wake_if_due_sooner(now_ms)
            case m.VideoFreshness(age_ms=age_ms):
                sup.on_link_heartbeat(now_ms)
                sup.on_video_freshness(now_ms, age_ms)
                self._wake_if_due_sooner(now_ms)
            case m.Estop(source=source, reason=reason):
                sup.on_link_heartbeat(now_ms)
                sup.on_estop(now_ms, f"{source}: {reason}" if reason else source)
                self._kick.set()
                self._send_event(m.Ack(ref="estop"))
            case m.EstopReset():
                sup.on_link_heartbeat(now_ms)  # an event is proof of a live link too
                self._answer_request("estop_reset", sup.on_estop_reset(now_ms))
            case m.Takeover():
                sup.on_link_heartbeat(now_ms)  # an event is proof of a live link too
                self._answer_request("takeover", sup.on_takeover_request(now_ms))
            case m.Release():
                sup.on_link_heartbeat(now_ms)  # an event is proof of a live link too
                self._answer_request("release", sup.on_release_to_autonomy(now_ms))
            case m.SelectPrimary(camera=camera):
                self._select_primary(camera, now_ms)
            case _:
                pass

    def _select_primary(self, camera: str, now_ms: float) -> None:
        video = self.session.video if self.session is not None else None
        try:
            if video is None:
                raise ConfigError("video: no session")
            video.select_primary(camera, now_ms)
        except ConfigError as err:
            self.errors += 1
            self._send_event(m.Ack(ref="select_primary", ok=False, detail=str(err)[:1000]))
            return
        self._send_event(m.Ack(ref="select_primary", detail=camera))

    def _answer_request(self, ref: str, result: RequestResult) -> None:
        self._kick.set()
        self._send_event(m.Ack(ref=ref, ok=result.granted, detail=result.reason[:1000]))

    def _wake_if_due_sooner(self, now_ms: float) -> None:
        """Steps now if an input made a watchdog due or moved the next deadline earlier.

        A high latency makes ``DEGRADED`` due at once; a video report can bring the freeze
        deadline before the one the control loop waits for.
        """
        sup = self.supervisor
        if sup.mode is Mode.TELEOP and sup.delay_ms(now_ms) >= sup.config.degrade_age_ms:
            self._kick.set()
            return
        deadline_ms = sup.next_deadline_ms()
        if deadline_ms is not None and (
            self._deadline_ms is None or deadline_ms < self._deadline_ms
        ):
            self._kick.set()

    def _send_telemetry(self, message: m.Message) -> None:
        session = self.session
        if session is not None and session.channels is not None:
            session.channels.telemetry.send(message)

    def _send_event(self, message: m.Message) -> None:
        session = self.session
        if session is not None and session.channels is not None:
            session.channels.events.send(message)

    # -- control --------------------------------------------------------------------------

    async def _control_loop(self) -> None:
        """Steps the controller every tick, on each command or event, and at deadlines.

        A deadline is the supervisor's next one: a stale command is seen when it turns stale,
        not up to a tick later.
        """
        schedule = TickSchedule(self._clock(), tick_s=TICK_S)
        while True:
            deadline_ms = self.supervisor.next_deadline_ms()
            self._deadline_ms = deadline_ms
            wait_s = schedule.wait_s(
                self._clock(), None if deadline_ms is None else deadline_ms / 1000.0
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait_s)
            kicked = self._kick.is_set()
            self._kick.clear()
            now_ms = self.now_ms()
            out = self.controller.step(now_ms)
            self.audit.on_applied(out.command_seq, now_ms)
            if self._on_step is not None:
                self._on_step(out)
            if out.transitions:
                self._status_task()
            for transition in out.transitions:
                self._send_event(
                    m.ModeChange(
                        t_ms=transition.at_ms,
                        mode=transition.to_mode.name,
                        previous=transition.from_mode.name,
                        reason=transition.reason[:1000],
                    )
                )
                if transition.to_mode in (Mode.AUTONOMY, Mode.MINIMAL_RISK_STOP, Mode.ESTOP):
                    text = f"{transition.to_mode.name}: {transition.reason}"[:1000]
                    if transition.to_mode is Mode.AUTONOMY:
                        self._send_event(m.Alert(level="warning", text=text))
                    else:
                        self._send_event(m.Alert(level="critical", text=text))
            if schedule.after_step(self._clock(), kicked=kicked):
                self._on_tick(now_ms)

    async def _report_status(self) -> None:
        """Tells the hub the mode, for every operator's fleet view (not only the driver's)."""
        telemetry = self.motor.last_telemetry
        status = m.Status(
            mode=self.supervisor.mode.name,
            reason=self.supervisor.reason[:1000],
            battery_v=None if telemetry is None else min(1000.0, telemetry.battery_mv / 1000.0),
        )
        with contextlib.suppress(LinkError):
            await self.signaling.send(status)

    def _status_task(self) -> None:
        if not self.signaling.connected.is_set():
            return  # sent on registration anyway
        task = asyncio.create_task(self._report_status(), name="status")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_tick(self, now_ms: float) -> None:
        self._tick_count += 1
        if self._tick_count % STATUS_EVERY_TICKS == 0:
            self._status_task()
        if self._tick_count % TELEMETRY_EVERY_TICKS == 0:
            self._publish_telemetry(now_ms)
        if self._tick_count % CLOCK_SYNC_EVERY_TICKS == 0:
            request_id, t1 = self.clock_sync.make_request(now_ms)
            self._send_telemetry(m.TimeRequest(id=request_id, t1=t1))

    def _publish_telemetry(self, now_ms: float) -> None:
        session = self.session
        if session is None or session.channels is None:
            return
        out = self.controller.last_output
        telemetry = self.motor.last_telemetry
        drops = {str(reason): count for reason, count in self.supervisor.gate.dropped.items()}
        if session.channels.errors:
            drops["bad_message"] = session.channels.errors
        speed_mps = telemetry.wheel_speed_mmps / 1000.0 if telemetry is not None else 0.0
        battery_v = telemetry.battery_mv / 1000.0 if telemetry is not None else 0.0
        session.channels.telemetry.send(
            m.Telemetry(
                t_ms=now_ms,
                mode=self.supervisor.mode.name,
                reason=self.supervisor.reason[:1000],
                speed_mps=max(-30.0, min(30.0, speed_mps)),
                steer_rad=out.steer_rad if out is not None else 0.0,
                speed_cap_mps=min(30.0, out.speed_cap_mps) if out is not None else 0.0,
                battery_v=battery_v,
                mcu_state=mcu_state_name(self.motor),
                last_seq=out.command_seq or 0 if out is not None else 0,
                commands_applied=self.controller.commands_applied,
                drops=drops,
                one_way_ms=self.clock_sync.one_way_ms,
                rtt_ms=self.clock_sync.rtt_ms,
                command_age_ms=self.audit.last_age_ms,
                stale_applied=self.audit.stale_applied,
            )
        )
        for frame_times in session.new_frame_times():
            session.channels.telemetry.send(frame_times)
