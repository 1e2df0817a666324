"""The desktop console end to end: real hub and vehicle processes, the console offscreen.

The hub and the vehicle run as processes; the vehicle's motor link is a simulated MCU behind a
real pty that this test owns, so it can watch what the motor controller is told. The console
runs in this process (pytest-qt, Qt offscreen) with its real network thread. The test reads
the synthetic camera's bar code back from the pixels of the console's screenshots, and drives
with key events as an operator would.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported anywhere

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from processes import hub_process, vehicle_process
from PySide6.QtCore import QObject, QPoint, QRectF, Qt, Signal
from PySide6.QtGui import QImage
from pytestqt.exceptions import TimeoutError as QtTimeoutError
from pytestqt.qtbot import QtBot

from teledrive.operator.console.app import build_window
from teledrive.operator.console.bridge import ClientThread, FrameMailbox
from teledrive.operator.console.controls import ConsoleCommandSource
from teledrive.operator.console.video_view import fit_rect, frame_to_qimage
from teledrive.operator.console.window import ConsoleWindow
from teledrive.vehicle.camera import read_frame_counter
from teledrive.vehicle.mcu_codec import State
from teledrive.vehicle.mcu_sim import McuSnapshot, PtyMcu

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SCALE = float(os.environ.get("TELEDRIVE_TIME_SCALE", "1"))
VEHICLE_ID = "console-van"
CAMERA_W, CAMERA_H = 640, 480


def ms(seconds: float) -> int:
    return int(seconds * 1000 * SCALE)


@pytest.fixture
def hub_url() -> Iterator[str]:
    with hub_process() as url:
        yield url


@pytest.fixture
def vehicle(tmp_path: Path, hub_url: str, mcu: PtyMcu) -> Iterator[subprocess.Popen[str]]:
    with vehicle_process(
        tmp_path,
        vehicle_id=VEHICLE_ID,
        hub_url=hub_url,
        motor_url=mcu.port_path,
        width=CAMERA_W,
        height=CAMERA_H,
    ) as proc:
        yield proc


class FrameSignal(QObject):
    ready = Signal()


class Console:
    """The console as ``teledrive console`` wires it, minus the gamepad."""

    def __init__(self, qtbot: QtBot, hub_url: str) -> None:
        self.source = ConsoleCommandSource(lambda: time.monotonic() * 1000.0)
        self.frames = FrameMailbox()
        self.signal = FrameSignal()
        self.link = ClientThread(
            hub_url,
            source=self.source,
            frames=self.frames,
            notify_frame=self.signal.ready.emit,
            image_from_frame=frame_to_qimage,
        )
        self.window: ConsoleWindow = build_window(
            source=self.source, link=self.link, frames=self.frames, frame_signal=self.signal.ready
        )
        qtbot.addWidget(self.window)
        self.window.resize(1600, 900)
        self.window.show()
        qtbot.waitExposed(self.window)
        self.link.start(VEHICLE_ID)

    def mode(self) -> str | None:
        telemetry = self.link.snapshot().telemetry
        return None if telemetry is None else telemetry.mode

    def counter_in_screenshot(self, path: Path) -> int | None:
        """Saves a screenshot and reads the camera's frame counter from its video area."""
        assert self.window.save_screenshot(path)
        shot = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
        view = self.window.video
        origin = view.mapTo(self.window, QPoint(0, 0))
        area = QRectF(origin.x(), origin.y(), view.width(), view.height())
        target = fit_rect(CAMERA_W, CAMERA_H, area).toAlignedRect()
        if target.width() < CAMERA_W // 2:
            return None
        pixels = np.frombuffer(shot.constBits(), np.uint8).reshape(
            shot.height(), shot.bytesPerLine()
        )[:, : shot.width() * 3]
        rgb = pixels.reshape(shot.height(), shot.width(), 3)
        picture = rgb[target.top() : target.bottom() + 1, target.left() : target.right() + 1]
        # back to the camera's own size, so each bar-code cell is 16 px again
        return read_frame_counter(cv2.resize(picture, (CAMERA_W, CAMERA_H)))

    def close(self) -> None:
        self.window.release_inputs()
        self.link.stop()
        self.window.close()


@pytest.fixture
def console(qtbot: QtBot, hub_url: str, vehicle: subprocess.Popen[str]) -> Iterator[Console]:
    rig = Console(qtbot, hub_url)
    yield rig
    rig.close()


def mcu_condition(mcu: PtyMcu, check: Callable[[McuSnapshot], bool]) -> Callable[[], bool]:
    """A condition for ``qtbot.waitUntil`` (the Qt loop keeps running while it waits)."""
    return lambda: check(mcu.snapshot())


def driving_forward(snap: McuSnapshot) -> bool:
    drive = snap.last_drive
    return (
        snap.state is State.ARMED
        and drive is not None
        and drive.drive.speed_mmps > 0
        and snap.outputs.speed_cmd_mmps > 0
    )


def stopped(snap: McuSnapshot) -> bool:
    drive = snap.last_drive
    return drive is not None and drive.drive.speed_mmps == 0 and snap.outputs.speed_cmd_mmps == 0


def estopped(snap: McuSnapshot) -> bool:
    outputs = snap.outputs
    return (
        snap.state in (State.ESTOP, State.DISARMED)
        and outputs.speed_cmd_mmps == 0
        and outputs.motor_duty == 0
    )


def overlay_ahead(window: ConsoleWindow) -> bool:
    window.video.repaint()
    geometry = window.video.geometry_shown
    return (
        geometry is not None and geometry.predicted.x_m > 0.0 and geometry.stopping_distance_m > 0
    )


def take_over(console: Console, qtbot: QtBot) -> None:
    """Presses T until the vehicle grants the takeover (after 1 s of healthy link)."""
    deadline_s = time.monotonic() + 20 * SCALE
    while True:
        qtbot.keyClick(console.window, Qt.Key.Key_T)
        try:
            qtbot.waitUntil(lambda: console.mode() == "TELEOP", timeout=ms(1.0))
            return
        except QtTimeoutError:
            if time.monotonic() > deadline_s:
                raise


def test_console_shows_live_video_and_drives_the_mcu(
    console: Console, mcu: PtyMcu, qtbot: QtBot, tmp_path: Path
) -> None:
    window = console.window
    # (a) live video: the camera's frame counter, read from the screenshot's pixels, advances
    counters: list[int] = []

    def counter_read() -> bool:
        value = console.counter_in_screenshot(tmp_path / f"shot{len(counters)}.png")
        if value is not None and (not counters or value > counters[0]):
            counters.append(value)
        return len(counters) >= 2

    qtbot.waitUntil(counter_read, timeout=ms(30.0))
    assert counters[1] > counters[0]
    assert window.primary_camera == "front"
    assert console.link.snapshot().cameras == ("front",)

    # (b) an explicit takeover; then the deadman and forward keys move the vehicle
    qtbot.waitUntil(lambda: console.mode() is not None, timeout=ms(5.0))
    assert console.mode() == "STANDBY"  # the console never takes control by itself
    take_over(console, qtbot)
    qtbot.keyPress(window, Qt.Key.Key_Shift)
    qtbot.keyPress(window, Qt.Key.Key_W)
    qtbot.waitUntil(mcu_condition(mcu, driving_forward), timeout=ms(5.0))
    assert window.deadman_label.text() == "DEADMAN HELD"
    # moving: the predictive overlay is drawn ahead of the vehicle
    qtbot.waitUntil(lambda: overlay_ahead(window), timeout=ms(5.0))

    # releasing the deadman sends zero
    qtbot.keyRelease(window, Qt.Key.Key_W)
    qtbot.keyRelease(window, Qt.Key.Key_Shift)
    qtbot.waitUntil(mcu_condition(mcu, stopped), timeout=ms(3.0))
    assert console.mode() == "TELEOP"

    # Space: the e-stop reaches the vehicle and the MCU
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: console.mode() == "ESTOP", timeout=ms(3.0))
    qtbot.waitUntil(mcu_condition(mcu, estopped), timeout=ms(3.0))
    assert window.banner.isVisible()
    assert "E-STOP" in window.banner.text()
    # holding the deadman and throttle again moves nothing, however long it is held
    qtbot.keyPress(window, Qt.Key.Key_Shift)
    qtbot.keyPress(window, Qt.Key.Key_W)
    assert console.source.status().setpoint.speed_mps == 0.0
    assert console.source.status().setpoint.estop
    received = mcu.snapshot().frames_accepted
    qtbot.waitUntil(lambda: mcu.snapshot().frames_accepted >= received + 10, timeout=ms(3.0))
    assert estopped(mcu.snapshot())
    qtbot.keyRelease(window, Qt.Key.Key_W)
    qtbot.keyRelease(window, Qt.Key.Key_Shift)

    # the HUD's video figures come from aiortc's receive statistics
    qtbot.waitUntil(lambda: (console.link.snapshot().video_kbps or 0.0) > 50.0, timeout=ms(5.0))
    qtbot.waitUntil(lambda: window.hud.values["bitrate"].text().endswith("Mbit/s"))
    assert window.hud.values["loss"].text().endswith("%")
    assert window.hud.values["g2g"].text().endswith("ms")
