"""The console window offscreen: layout, banners, deadman, lockout, e-stop path, frames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from console_clock import FakeClock
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QImage
from pytestqt.qtbot import QtBot

from teledrive.operator.console.app import build_window
from teledrive.operator.console.bridge import FrameMailbox, LinkSnapshot
from teledrive.operator.console.controls import ConsoleCommandSource
from teledrive.operator.console.window import ConsoleWindow
from teledrive.shared import messages as m

VEHICLE = "van-01"


class FrameSignal(QObject):
    ready = Signal()


class FakeLink:
    """Stands in for the network thread: records events, serves a settable snapshot."""

    def __init__(self) -> None:
        self.primary_camera: str | None = None
        self.events: list[m.Message] = []
        self.selected: list[str | None] = []
        self.messages: list[m.Message] = []
        self.state = LinkSnapshot(vehicle_id=VEHICLE, hub_connected=True, session_open=True)

    def send_event(self, message: m.Message) -> None:
        self.events.append(message)

    def select_vehicle(self, vehicle_id: str | None) -> None:
        self.selected.append(vehicle_id)

    def snapshot(self) -> LinkSnapshot:
        return self.state

    def drain_messages(self) -> list[m.Message]:
        out, self.messages = self.messages, []
        return out


def telemetry(mode: str, reason: str = "", **kw: float) -> m.Telemetry:
    return m.Telemetry(t_ms=0.0, mode=mode, reason=reason, mcu_state="ARMED", **kw)


class Rig:
    def __init__(self, qtbot: QtBot) -> None:
        self.clock = FakeClock()
        self.source = ConsoleCommandSource(self.clock)
        self.link = FakeLink()
        self.frames = FrameMailbox()
        self.signal = FrameSignal()
        self.window: ConsoleWindow = build_window(
            source=self.source,
            link=self.link,
            frames=self.frames,
            frame_signal=self.signal.ready,
            gamepad=None,
            clock_ms=self.clock,
        )
        self.window.input_timer.stop()  # the tests drive the polls themselves
        self.window.refresh_timer.stop()
        qtbot.addWidget(self.window)
        self.window.resize(1400, 800)
        self.window.show()
        qtbot.waitExposed(self.window)

    def frame(self, qtbot: QtBot, camera: str = "front") -> None:
        image = QImage(64, 48, QImage.Format.Format_RGB888)
        image.fill(QColor("#406080"))
        before = self.window.video.frames_received
        self.source.on_frame()
        if self.frames.put(camera, image):
            self.signal.ready.emit()
        qtbot.waitUntil(lambda: self.window.video.frames_received > before)

    def key(self, qtbot: QtBot, key: Qt.Key, *, down: bool) -> None:
        (qtbot.keyPress if down else qtbot.keyRelease)(self.window, key)

    def hold(self, ms: float = 100.0) -> None:
        """Lets held keys act for ``ms`` (the keyboard ramps its commands up)."""
        self.clock.advance(ms)
        self.window.poll_inputs()


@pytest.fixture
def rig(qtbot: QtBot) -> Iterator[Rig]:
    return Rig(qtbot)


def test_layout_has_the_operator_widgets(rig: Rig) -> None:
    w = rig.window
    for widget in (
        w.video,
        w.hud,
        w.hud.mode,
        w.estop_button,
        w.reset_button,
        w.takeover_button,
        w.release_button,
        w.fleet,
        w.banner,
        w.lockout_banner,
    ):
        assert widget.isVisibleTo(w) or widget in (w.banner, w.lockout_banner)
    assert w.estop_button.height() >= 80
    assert w.estop_button.focusPolicy() == Qt.FocusPolicy.NoFocus
    for key in ("speed", "steer", "cap", "rtt", "one_way", "g2g", "fps", "battery", "mcu"):
        assert key in w.hud.values


def test_mode_change_shows_the_banner_and_indicator(rig: Rig) -> None:
    w = rig.window
    rig.link.state = replace(rig.link.state, telemetry=telemetry("TELEOP", speed_mps=1.25))
    w.refresh()
    assert w.hud.mode.text() == "TELEOP"
    assert not w.banner.isVisible()
    assert w.hud.values["speed"].text() == "+1.25 m/s"
    rig.link.state = replace(
        rig.link.state, telemetry=telemetry("minimal_risk_stop", "autonomy blocked")
    )
    w.refresh()
    assert w.hud.mode.text() == "MIN-RISK STOP"
    assert w.banner.isVisible()
    assert "MINIMAL-RISK STOP" in w.banner.text()
    assert "autonomy blocked" in w.banner.text()
    rig.link.state = replace(
        rig.link.state, telemetry=telemetry("AUTONOMY", "command stale; fallback to autonomy")
    )
    w.refresh()
    assert "FALLBACK" in w.banner.text()


def test_help_queue_and_notification_on_a_stop(rig: Rig) -> None:
    w = rig.window
    rig.link.messages = [m.VehicleList(vehicles=[m.VehicleInfo(id=VEHICLE, operator="operator")])]
    rig.link.state = replace(rig.link.state, telemetry=telemetry("ESTOP", "bumper"))
    w.refresh()
    assert w.fleet.help_list.count() == 1
    assert w.fleet.toast.isVisible()
    assert VEHICLE in w.fleet.toast.text()
    assert w.fleet.table.item(0, 0).data(Qt.ItemDataRole.UserRole) == VEHICLE
    rig.clock.advance(65_000)
    w.refresh()
    assert w.fleet.help_list.item(0).text().startswith("1:05")


def test_fleet_choice_switches_vehicle(rig: Rig) -> None:
    rig.window.fleet.vehicle_chosen.emit("van-02")
    assert rig.link.selected == ["van-02"]


def test_deadman_key_drives_and_release_sends_zero(rig: Rig, qtbot: QtBot) -> None:
    rig.frame(qtbot)
    rig.window.poll_inputs()
    rig.source.setpoint(0.0)  # video fresh, deadman released: armed
    rig.key(qtbot, Qt.Key.Key_Shift, down=True)
    rig.key(qtbot, Qt.Key.Key_W, down=True)
    assert rig.source.setpoint(0.0).speed_mps == 0.0  # the ramp starts from standstill
    rig.hold(100.0)
    point = rig.source.setpoint(0.0)
    assert point.deadman
    assert point.speed_mps == pytest.approx(0.1)  # 1 m/s^2 for 100 ms
    assert rig.window.deadman_label.text() == "DEADMAN HELD"
    rig.key(qtbot, Qt.Key.Key_Shift, down=False)
    point = rig.source.setpoint(0.0)
    assert (point.speed_mps, point.steer_rad, point.deadman) == (0.0, 0.0, False)


def test_focus_loss_releases_held_keys(rig: Rig, qtbot: QtBot) -> None:
    rig.frame(qtbot)
    rig.source.setpoint(0.0)
    rig.key(qtbot, Qt.Key.Key_Shift, down=True)
    rig.key(qtbot, Qt.Key.Key_W, down=True)
    assert rig.source.setpoint(0.0).deadman
    rig.window.release_inputs()
    assert not rig.source.setpoint(0.0).deadman


def test_stale_video_locks_with_a_banner_and_needs_a_re_press(rig: Rig, qtbot: QtBot) -> None:
    w = rig.window
    rig.frame(qtbot)
    rig.source.setpoint(0.0)
    rig.key(qtbot, Qt.Key.Key_Shift, down=True)
    rig.key(qtbot, Qt.Key.Key_W, down=True)
    rig.hold(100.0)
    assert rig.source.setpoint(0.0).speed_mps > 0
    rig.clock.advance(200.0)
    w.poll_inputs()
    assert rig.source.setpoint(0.0).speed_mps == 0.0
    w.refresh()
    assert w.lockout_banner.isVisible()
    assert "FROZEN" in w.lockout_banner.text()
    assert "FROZEN" in w.video.lockout_text
    rig.frame(qtbot)  # video back, deadman still held
    w.poll_inputs()
    assert rig.source.setpoint(0.0).speed_mps == 0.0
    w.refresh()
    assert "release and press" in w.lockout_banner.text()
    rig.key(qtbot, Qt.Key.Key_Shift, down=False)
    rig.source.setpoint(0.0)
    rig.key(qtbot, Qt.Key.Key_Shift, down=True)
    rig.hold(50.0)
    assert rig.source.setpoint(0.0).speed_mps > 0
    w.refresh()
    assert not w.lockout_banner.isVisible()


def test_space_sends_estop_even_with_frozen_video(rig: Rig, qtbot: QtBot) -> None:
    rig.clock.advance(10_000)  # no video at all
    rig.window.reset_button.setFocus()  # Space must never click a focused button
    rig.key(qtbot, Qt.Key.Key_Space, down=True)
    assert [type(e) for e in rig.link.events] == [m.Estop]
    assert rig.source.setpoint(0.0).estop
    assert rig.window.banner.isVisible()
    assert "E-STOP" in rig.window.banner.text()


def test_estop_button_and_confirmed_reset(rig: Rig, qtbot: QtBot) -> None:
    w = rig.window
    assert not w.reset_button.isEnabled()
    qtbot.mouseClick(w.estop_button, Qt.MouseButton.LeftButton)
    assert isinstance(rig.link.events[-1], m.Estop)
    assert w.reset_button.isEnabled()
    qtbot.mouseClick(w.reset_button, Qt.MouseButton.LeftButton)
    assert w.reset_button.text() == "CONFIRM RESET"
    assert rig.source.estop_latched
    assert not isinstance(rig.link.events[-1], m.EstopReset)
    qtbot.mouseClick(w.reset_button, Qt.MouseButton.LeftButton)
    assert isinstance(rig.link.events[-1], m.EstopReset)
    assert not rig.source.estop_latched
    assert not w.reset_button.isEnabled()


def test_takeover_and_release_keys(rig: Rig, qtbot: QtBot) -> None:
    rig.key(qtbot, Qt.Key.Key_T, down=True)
    rig.key(qtbot, Qt.Key.Key_R, down=True)
    assert [type(e) for e in rig.link.events] == [m.Takeover, m.Release]


def test_only_the_newest_frame_is_painted_and_thumbnails_switch(rig: Rig, qtbot: QtBot) -> None:
    w = rig.window
    first = QImage(32, 24, QImage.Format.Format_RGB888)
    newest = QImage(64, 48, QImage.Format.Format_RGB888)
    assert rig.frames.put("front", first)
    assert not rig.frames.put("front", newest)  # replaced, no second nudge
    assert not rig.frames.put("rear", newest)
    rig.signal.ready.emit()
    qtbot.waitUntil(lambda: w.video.image is not None)
    assert w.video.image is not None
    assert w.video.image.width() == 64
    assert w.video.frames_received == 1
    assert rig.frames.replaced == 1
    assert "rear" in w.thumbnails.thumbnails
    qtbot.mouseClick(w.thumbnails.thumbnails["rear"], Qt.MouseButton.LeftButton)
    assert w.primary_camera == "rear"
    assert rig.link.primary_camera == "rear"
    assert m.SelectPrimary(camera="rear") in rig.link.events  # the vehicle re-splits bitrate
    assert "front" in w.thumbnails.thumbnails
    assert "rear" not in w.thumbnails.thumbnails


def test_overlay_drawn_from_telemetry_and_screenshot(
    rig: Rig, qtbot: QtBot, tmp_path: Path
) -> None:
    w = rig.window
    rig.frame(qtbot)
    rig.link.state = replace(
        rig.link.state,
        telemetry=telemetry("TELEOP", speed_mps=1.5, steer_rad=0.2),
        one_way_ms=40.0,
        rtt_ms=80.0,
    )
    w.refresh()
    path = tmp_path / "console.png"
    assert w.save_screenshot(path)
    assert w.video.geometry_shown is not None
    assert w.video.geometry_shown.predicted.x_m > 0
    assert QImage(str(path)).width() == w.width()


def test_vehicle_alert_shows_in_the_banner_then_expires(rig: Rig) -> None:
    w = rig.window
    rig.link.state = replace(rig.link.state, telemetry=telemetry("AUTONOMY", "released"))
    rig.link.messages = [m.Alert(level="critical", text="MCU fault: overcurrent")]
    w.refresh()
    assert w.banner.isVisible()
    assert w.banner.text() == "CRITICAL: MCU fault: overcurrent"
    rig.clock.advance(11_000)
    w.refresh()
    assert not w.banner.isVisible()


def test_a_louder_vehicle_state_wins_over_an_alert(rig: Rig) -> None:
    w = rig.window
    rig.link.state = replace(rig.link.state, telemetry=telemetry("ESTOP", "bumper"))
    rig.link.messages = [m.Alert(level="warning", text="battery low")]
    w.refresh()
    assert w.banner.text() == "E-STOP: bumper"


def test_hud_shows_video_bitrate_and_loss(rig: Rig) -> None:
    w = rig.window
    w.refresh()
    assert w.hud.values["bitrate"].text() == "—"
    rig.link.state = replace(rig.link.state, video_kbps=1250.0, video_loss=0.025)
    w.refresh()
    assert w.hud.values["bitrate"].text() == "1.25 Mbit/s"
    assert w.hud.values["loss"].text() == "2.5 %"


def test_first_painted_camera_is_the_vehicles_primary(rig: Rig, qtbot: QtBot) -> None:
    rig.link.primary_camera = "front"
    image = QImage(32, 24, QImage.Format.Format_RGB888)
    assert rig.frames.put("rear", image)
    rig.signal.ready.emit()
    qtbot.waitUntil(lambda: "rear" in rig.window.thumbnails.thumbnails)
    assert rig.window.video.image is None
    assert rig.window.primary_camera == "front"


def test_a_refused_takeover_shows_the_vehicles_reason(rig: Rig) -> None:
    detail = "link healthy for 300 ms of 1000 ms"
    rig.link.messages = [m.Ack(ref="takeover", ok=False, detail=detail)]
    rig.window.refresh()
    assert rig.window.statusBar().currentMessage() == f"vehicle refused takeover: {detail}"


def test_a_vehicle_nobody_watches_asks_for_help_through_the_hub(rig: Rig) -> None:
    """The hub's presence carries each vehicle's mode: a stop rises in the help queue."""
    w = rig.window
    rig.link.messages = [
        m.VehicleList(vehicles=[m.VehicleInfo(id="van-07", mode="AUTONOMY", reason="released")])
    ]
    w.refresh()
    assert w.fleet.help_list.count() == 0
    rig.link.messages = [
        m.Presence(
            vehicle=m.VehicleInfo(
                id="van-07", mode="MINIMAL_RISK_STOP", reason="blocked", battery_v=11.9
            )
        )
    ]
    w.refresh()
    assert w.fleet.help_list.count() == 1
    assert "van-07" in w.fleet.toast.text()
