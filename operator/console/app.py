"""The operator's desktop console: window, wiring and ``main_console``.

    teledrive console --hub ws://127.0.0.1:8765 [--vehicle van-01]
    teledrive console --hub ... --vehicle ... --screenshot console.png --seconds 5

Threads: the Qt UI thread owns every widget and the input devices (keyboard events, an SDL
poll every 20 ms); :class:`~teledrive.operator.console.bridge.ClientThread` owns the network
(signaling, WebRTC, decoding, the 50 Hz drive loop). They meet only in the thread-safe
:class:`~teledrive.operator.console.controls.ConsoleCommandSource`, the frame mailbox with its
queued signal, the published snapshot and ``send_event``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from teledrive.operator.console.bridge import COMMAND_PERIOD_MS, FrameMailbox, LinkSnapshot
from teledrive.operator.console.controls import (
    ConsoleCommandSource,
    GamepadMapping,
    KeyboardInput,
)
from teledrive.operator.console.overlay import CameraModel, OverlayInputs, top_down_camera
from teledrive.shared import messages as m
from teledrive.shared.errors import ConfigError, TeledriveError

if TYPE_CHECKING:
    from teledrive.operator.console.gamepad import GamepadPoller

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SIZE: Final = (1600, 900)
CAMERA_VIEWS: Final[dict[str, Callable[[], CameraModel]]] = {
    "forward": CameraModel,
    "top-down": top_down_camera,
}
"""How the overlay projects onto the picture: a forward camera, or a map view (the simulator's)."""


class ConsoleLink(Protocol):
    """What the window needs from the network side (a ``ClientThread`` or a test double)."""

    primary_camera: str | None

    def send_event(self, message: m.Message) -> None:
        """Sends an events-channel message to the vehicle."""

    def select_vehicle(self, vehicle_id: str | None) -> None:
        """Switches to another vehicle."""

    def snapshot(self) -> LinkSnapshot:
        """The newest state."""

    def drain_messages(self) -> list[m.Message]:
        """Hub and vehicle messages since the last call."""


def overlay_inputs_from(snapshot: LinkSnapshot) -> OverlayInputs | None:
    """The overlay's inputs from the newest state (None without telemetry)."""
    t = snapshot.telemetry
    if t is None:
        return None
    rtt = snapshot.rtt_ms
    uplink_ms = snapshot.one_way_ms if snapshot.one_way_ms is not None else (rtt or 0.0) / 2.0
    video_ms = snapshot.glass_to_glass_ms
    if video_ms is None:
        video_ms = uplink_ms  # the picture took at least the one-way delay to arrive
    return OverlayInputs(
        speed_mps=t.speed_mps,
        steer_rad=t.steer_rad,
        video_delay_ms=video_ms,
        uplink_delay_ms=uplink_ms,
        command_period_ms=COMMAND_PERIOD_MS,
    )


def build_window(
    *,
    source: ConsoleCommandSource,
    link: ConsoleLink,
    frames: FrameMailbox,
    frame_signal: Any,
    gamepad: GamepadPoller | None = None,
    keyboard: KeyboardInput | None = None,
    clock_ms: Callable[[], float] | None = None,
    camera_model: CameraModel | None = None,
) -> Any:
    """Creates the console window (a ``QApplication`` must exist)."""
    from teledrive.operator.console.window import ConsoleWindow

    return ConsoleWindow(
        source=source,
        link=link,
        frames=frames,
        frame_signal=frame_signal,
        gamepad=gamepad,
        keyboard=keyboard,
        clock_ms=clock_ms or (lambda: time.monotonic() * 1000.0),
        camera_model=camera_model,
    )


def add_console_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the console's options to a (sub)parser."""
    parser.add_argument("--hub", required=True, help="hub URL, ws://HOST:PORT")
    parser.add_argument("--vehicle", help="vehicle to watch and drive (default: fleet view)")
    parser.add_argument("--id", default="operator", help="this operator's id on the hub")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the window and exit")
    parser.add_argument("--seconds", type=float, help="run N seconds (then screenshot) and exit")
    parser.add_argument("--no-gamepad", action="store_true", help="do not open SDL gamepads")
    parser.add_argument(
        "--camera-view",
        choices=sorted(CAMERA_VIEWS),
        default="forward",
        help="how the predictive overlay is projected: a forward camera (default) or a "
        "top-down map view such as the simulated world camera's",
    )
    parser.add_argument(
        "--gamepad-config", type=Path, help="TOML file with a [gamepad] mapping table"
    )


def load_gamepad_mapping(path: Path) -> GamepadMapping:
    """Reads ``[gamepad]`` from a TOML file.

    Raises:
        ConfigError: the file cannot be read or the table is wrong; names the file and key.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from err
    table = data.get("gamepad")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: missing [gamepad] table")
    return GamepadMapping.from_dict(table, where=f"{path}: [gamepad]")


def run_console(args: argparse.Namespace) -> int:
    """Runs the console with parsed arguments; returns the exit status."""
    if args.screenshot is not None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        if args.seconds is None:
            args.seconds = 3.0
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError(f"--seconds must be > 0, got {args.seconds}")
    mapping = load_gamepad_mapping(args.gamepad_config) if args.gamepad_config else None

    from PySide6.QtCore import QObject, QTimer, Signal
    from PySide6.QtWidgets import QApplication

    from teledrive.operator.console.bridge import ClientThread
    from teledrive.operator.console.video_view import frame_to_qimage

    class FrameSignal(QObject):
        ready = Signal()

    app = QApplication.instance() or QApplication(sys.argv[:1])
    clock = time.monotonic
    source = ConsoleCommandSource(lambda: clock() * 1000.0)
    frames = FrameMailbox()
    frame_signal = FrameSignal()
    link = ClientThread(
        args.hub,
        source=source,
        frames=frames,
        notify_frame=frame_signal.ready.emit,
        image_from_frame=frame_to_qimage,
        operator_id=args.id,
        clock=clock,
    )
    gamepad = None
    if not args.no_gamepad:
        from teledrive.operator.console.gamepad import GamepadPoller

        gamepad = GamepadPoller(controller_mapping=mapping) if mapping else GamepadPoller()
    window = build_window(
        source=source,
        link=link,
        frames=frames,
        frame_signal=frame_signal.ready,
        gamepad=gamepad,
        camera_model=CAMERA_VIEWS[args.camera_view](),
    )
    window.resize(*DEFAULT_WINDOW_SIZE)
    window.show()
    link.start(args.vehicle)
    status = {"code": 0}

    def finish() -> None:
        if args.screenshot is not None and not window.save_screenshot(args.screenshot):
            status["code"] = 1
        window.close()
        app.quit()

    if args.seconds is not None:
        QTimer.singleShot(int(args.seconds * 1000), finish)
    # Ctrl-C: Qt's loop keeps Python from running signal handlers unless it wakes up now and then
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        app.exec()
    finally:
        wake.stop()
        link.stop()  # a last zero drive command, then the session closes
        if gamepad is not None:
            gamepad.stop()
        window.deleteLater()
        app.processEvents()
    return status["code"]


def main_console(argv: Sequence[str] | None = None) -> int:
    """``teledrive console``: the desktop console; returns the exit status."""
    parser = argparse.ArgumentParser(prog="teledrive console", description=__doc__.split("\n")[0])
    add_console_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_console(args)
    except TeledriveError as err:
        print(f"teledrive console: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main_console())
