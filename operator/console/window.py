"""The console's main window: fleet on the left, video in the middle, HUD and controls right."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from teledrive.operator.console.bridge import FrameMailbox
from teledrive.operator.console.controls import (
    Action,
    ConsoleCommandSource,
    KeyboardInput,
    SourceStatus,
    combine_intents,
)
from teledrive.operator.console.fleet import FleetModel, FleetPanel
from teledrive.operator.console.hud import (
    ALERT_SHOW_MS,
    TELEMETRY_STALE_MS,
    AlertBanner,
    Banner,
    HudPanel,
    Severity,
    alert_banner,
    banner_for,
    louder,
)
from teledrive.operator.console.overlay import CameraModel
from teledrive.operator.console.theme import STYLE_SHEET
from teledrive.operator.console.video_view import ThumbnailStrip, VideoView
from teledrive.shared import messages as m

if TYPE_CHECKING:
    from teledrive.operator.console.app import ConsoleLink
    from teledrive.operator.console.gamepad import GamepadPoller

INPUT_POLL_MS = 20
REFRESH_MS = 100


class ConsoleWindow(QMainWindow):
    """The operator console.

    Args:
        source: the command source the network thread drives from.
        link: the network side.
        frames: the frame mailbox the network thread fills.
        frame_signal: a signal emitted (from any thread) when ``frames`` got an image.
        gamepad: SDL gamepad poller, or None.
        keyboard: keyboard state (default key map when None).
        clock_ms: monotonic clock in ms (the help queue's waits).
        camera_model: how the overlay projects onto the primary camera (a forward camera
            by default).
    """

    action_done = Signal(str)

    def __init__(
        self,
        *,
        source: ConsoleCommandSource,
        link: ConsoleLink,
        frames: FrameMailbox,
        frame_signal: Any,
        gamepad: GamepadPoller | None,
        keyboard: KeyboardInput | None,
        clock_ms: Callable[[], float],
        camera_model: CameraModel | None = None,
    ) -> None:
        super().__init__()
        self.setWindowTitle("teledrive console")
        self.setStyleSheet(STYLE_SHEET)
        self.source = source
        self.link = link
        self.frames = frames
        self.gamepad = gamepad
        self.keyboard = keyboard or KeyboardInput()
        self._clock_ms = clock_ms
        self.fleet_model = FleetModel()
        self.primary_camera: str | None = None
        self.last_status: SourceStatus | None = None
        self._camera_model = camera_model
        self._alert: tuple[Banner, float] | None = None  # the newest vehicle alert, shown at
        self._build()
        frame_signal.connect(self.paint_frames, Qt.ConnectionType.QueuedConnection)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.installEventFilter(self)
            app.applicationStateChanged.connect(self._on_app_state)
        self.input_timer = QTimer(self)
        self.input_timer.timeout.connect(self.poll_inputs)
        self.input_timer.start(INPUT_POLL_MS)
        self.refresh_timer = QTimer(self)
        self.refresh_timer.timeout.connect(self.refresh)
        self.refresh_timer.start(REFRESH_MS)
        self.poll_inputs()
        self.refresh()

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        central = QWidget(self)
        row = QHBoxLayout(central)
        row.setContentsMargins(8, 8, 8, 8)
        row.setSpacing(8)
        self.fleet = FleetPanel(self.fleet_model, central)
        self.fleet.setFixedWidth(360)
        self.fleet.vehicle_chosen.connect(self.choose_vehicle)
        row.addWidget(self.fleet)

        middle = QVBoxLayout()
        self.banner = AlertBanner(central)
        middle.addWidget(self.banner)
        self.lockout_banner = AlertBanner(central)
        self.lockout_banner.setObjectName("lockoutBanner")
        middle.addWidget(self.lockout_banner)
        self.video = VideoView(central, camera_model=self._camera_model)
        middle.addWidget(self.video, 1)
        self.thumbnails = ThumbnailStrip(central)
        self.thumbnails.selected.connect(self.make_primary)
        middle.addWidget(self.thumbnails)
        row.addLayout(middle, 1)

        right = QFrame(central)
        right.setObjectName("controls")
        right.setFixedWidth(320)
        side = QVBoxLayout(right)
        self.hud = HudPanel(right)
        side.addWidget(self.hud)
        side.addStretch(1)
        self.deadman_label = QLabel("DEADMAN RELEASED", right)
        self.deadman_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        side.addWidget(self.deadman_label)
        buttons = QHBoxLayout()
        self.takeover_button = self._button("TAKE OVER", right, lambda: self.do(Action.TAKEOVER))
        self.release_button = self._button("RELEASE", right, lambda: self.do(Action.RELEASE))
        buttons.addWidget(self.takeover_button)
        buttons.addWidget(self.release_button)
        side.addLayout(buttons)
        self.estop_button = self._button("E-STOP", right, lambda: self.do(Action.ESTOP))
        self.estop_button.setObjectName("estopButton")
        self.estop_button.setToolTip("Emergency stop (Space). Latches until a confirmed reset.")
        side.addWidget(self.estop_button)
        self.reset_button = self._button("RESET E-STOP", right, self.reset_clicked)
        self.reset_button.setObjectName("resetButton")
        side.addWidget(self.reset_button)
        row.addWidget(right)

        self.setCentralWidget(central)
        self.hint = QLabel(HELP_TEXT_SHORT, self)
        self.statusBar().addPermanentWidget(self.hint)

    @staticmethod
    def _button(text: str, parent: QWidget, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text, parent)
        # never focusable: Space must always mean e-stop, never "click the focused button"
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.clicked.connect(slot)
        return button

    # -- input ----------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Takes every mapped key before any widget sees it (Space is never a button click)."""
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and isinstance(event, QKeyEvent):
            if not self.keyboard.handles(event.key()):
                return False
            if not event.isAutoRepeat():
                if kind == QEvent.Type.KeyPress:
                    action = self.keyboard.press(event.key())
                    if action is not None:
                        self.do(action)
                else:
                    self.keyboard.release(event.key())
                self.poll_inputs(read_gamepad=False)
            return True
        if kind == QEvent.Type.WindowDeactivate and watched is self:
            self.release_inputs()
        return False

    def _on_app_state(self, state: Qt.ApplicationState) -> None:
        if state != Qt.ApplicationState.ApplicationActive:
            self.release_inputs()

    def release_inputs(self) -> None:
        """Forgets held keys (focus lost: their releases will never arrive)."""
        self.keyboard.release_all()
        self.poll_inputs(read_gamepad=False)

    def poll_inputs(self, read_gamepad: bool = True) -> None:
        """Reads the gamepad and hands the combined intent to the command source."""
        if self.gamepad is not None and read_gamepad:
            for action in self.gamepad.poll():
                self.do(action)
        pad = self.gamepad.intent() if self.gamepad is not None else None
        keys = self.keyboard.drive(self._clock_ms())
        intent = combine_intents(*(i for i in (pad, keys) if i is not None))
        self.source.set_intent(intent)
        held = intent.deadman
        self.deadman_label.setText("DEADMAN HELD" if held else "DEADMAN RELEASED")
        self.deadman_label.setStyleSheet(
            "color:#35d07f; font-weight:800;" if held else "color:#8a93a1; font-weight:700;"
        )

    def do(self, action: Action) -> None:
        """Performs an operator action (from a key, a button or the gamepad)."""
        if action is Action.ESTOP:
            self.source.press_estop()  # the next drive command already carries it
            self.link.send_event(m.Estop(source="operator", reason="console e-stop"))
            self.statusBar().showMessage("E-STOP sent", 5000)
        elif action is Action.TAKEOVER:
            self.link.send_event(m.Takeover())
            self.statusBar().showMessage("takeover requested", 5000)
        elif action is Action.RELEASE:
            self.link.send_event(m.Release())
            self.statusBar().showMessage("released to autonomy", 5000)
        self.action_done.emit(action.value)
        self.refresh()

    def reset_clicked(self) -> None:
        """First click asks for confirmation; a second click within the window resets."""
        if self.source.reset_pending():
            if self.source.confirm_estop_reset():
                self.link.send_event(m.EstopReset())
                self.statusBar().showMessage("e-stop reset sent: release and press deadman", 8000)
        elif self.source.request_estop_reset():
            self.statusBar().showMessage("click CONFIRM RESET to clear the e-stop", 5000)
        self.refresh()

    # -- video ----------------------------------------------------------------------------

    def paint_frames(self) -> None:
        """Takes the newest images from the mailbox and shows them."""
        for camera, image in self.frames.take().items():
            if self.primary_camera is None:  # the vehicle's first camera, else the first seen
                self.primary_camera = self.link.primary_camera or camera
            if camera == self.primary_camera:
                self.video.set_image(camera, image)
            else:
                self.thumbnails.set_image(camera, image)

    def make_primary(self, camera: str) -> None:
        """Shows ``camera`` large and asks the vehicle to give it most of the bitrate.

        The stale-video lockout then watches this camera.
        """
        previous = self.primary_camera
        self.primary_camera = camera
        self.link.primary_camera = camera
        if previous is not None and previous != camera:
            self.link.send_event(m.SelectPrimary(camera=camera))
        self.thumbnails.remove(camera)
        if previous is not None and previous != camera and self.video.image is not None:
            self.thumbnails.set_image(previous, self.video.image)

    def choose_vehicle(self, vehicle_id: str) -> None:
        """Watches and drives another vehicle."""
        self.link.select_vehicle(vehicle_id)
        self.primary_camera = None
        self.video.image = None
        self.video.update()
        self.statusBar().showMessage(f"connecting to {vehicle_id}", 5000)

    # -- state ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Updates HUD, banners, fleet and buttons from the newest state."""
        from teledrive.operator.console.app import overlay_inputs_from

        now_ms = self._clock_ms()
        snapshot = self.link.snapshot()
        status = self.source.status()
        self.last_status = status
        for message in self.link.drain_messages():
            self._on_message(message, snapshot, now_ms)
        t = snapshot.telemetry
        if t is not None and snapshot.vehicle_id is not None:
            request = self.fleet_model.on_status(
                snapshot.vehicle_id,
                t.mode,
                t.reason,
                now_ms,
                battery_v=t.battery_v or None,
                rtt_ms=snapshot.rtt_ms,
            )
            if request is not None:
                self.fleet.notify(request)
                QApplication.beep()
                QApplication.alert(self)
        self.hud.show_state(snapshot, status)
        stale = snapshot.session_open and (
            t is None or (snapshot.telemetry_age_ms or 0.0) > TELEMETRY_STALE_MS
        )
        state = banner_for(
            None if t is None else t.mode,
            "" if t is None else t.reason,
            console_estop=self.source.estop_latched,
            telemetry_stale=stale,
        )
        alert = self._alert
        if alert is not None and now_ms - alert[1] > ALERT_SHOW_MS:
            alert = self._alert = None
        self.banner.show_banner(louder(state, None if alert is None else alert[0]))
        lock = status.lockout
        self.lockout_banner.show_banner(
            Banner(lock.reason, Severity.WARNING) if lock.locked and snapshot.session_open else None
        )
        self.video.lockout_text = lock.reason if lock.locked else ""
        self.video.overlay = overlay_inputs_from(snapshot)
        self.video.update()
        self._refresh_reset_button(status)
        self.fleet.refresh(now_ms)

    def _refresh_reset_button(self, status: SourceStatus) -> None:
        pending = self.source.reset_pending()
        self.reset_button.setEnabled(self.source.estop_latched)
        self.reset_button.setText("CONFIRM RESET" if pending else "RESET E-STOP")
        self.reset_button.setProperty("confirm", "true" if pending else "false")
        self.reset_button.style().unpolish(self.reset_button)
        self.reset_button.style().polish(self.reset_button)

    def _on_message(self, message: m.Message, snapshot: Any, now_ms: float) -> None:
        if isinstance(message, m.VehicleList | m.Presence):
            self.fleet_model.apply(message)
            infos = message.vehicles if isinstance(message, m.VehicleList) else [message.vehicle]
            for info in infos:
                if info.online and info.mode is not None:
                    request = self.fleet_model.on_status(
                        info.id, info.mode, info.reason, now_ms, battery_v=info.battery_v
                    )
                    if request is not None:
                        self.fleet.notify(request)
        elif isinstance(message, m.ModeChange) and snapshot.vehicle_id is not None:
            request = self.fleet_model.on_status(
                snapshot.vehicle_id, message.mode, message.reason, now_ms
            )
            if request is not None:
                self.fleet.notify(request)
            self.statusBar().showMessage(
                f"mode {message.previous} → {message.mode}: {message.reason}", 10000
            )
        elif isinstance(message, m.Alert):
            self._alert = (alert_banner(message.level, message.text), now_ms)
            self.statusBar().showMessage(f"[{message.level}] {message.text}", 15000)
        elif isinstance(message, m.Ack):
            if message.ok:
                text = f"vehicle confirmed {message.ref}"
            else:
                text = f"vehicle refused {message.ref}: {message.detail}"
            self.statusBar().showMessage(text, 5000)
        elif isinstance(message, m.Error):
            self.statusBar().showMessage(f"error: {message.message}", 10000)

    # -- lifecycle ------------------------------------------------------------------------

    def save_screenshot(self, path: Path) -> bool:
        """Saves a PNG of the window; returns whether it was written."""
        self.refresh()
        self.paint_frames()
        pixmap = self.grab()
        return bool(pixmap.save(str(path), "PNG"))

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stops the timers; the caller stops the network thread."""
        self.input_timer.stop()
        self.refresh_timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        super().closeEvent(event)


HELP_TEXT_SHORT = (
    "Shift+WASD drive · Space E-STOP · T take over · R release · pad: hold RB, RT/LT, B E-STOP"
)
