"""The heads-up display: mode indicator, alert banner and the figures telemetry provides.

What to show is decided by pure functions (:func:`mode_look`, :func:`banner_for`,
:func:`hud_values`), tested without a screen; the widgets only paint their results.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from teledrive.operator.console.bridge import LinkSnapshot
from teledrive.operator.console.controls import SourceStatus
from teledrive.operator.console.theme import COLORS

TELEMETRY_STALE_MS: Final = 1000.0
ALERT_SHOW_MS: Final = 10_000.0


class Severity(enum.IntEnum):
    """How loudly a state is shown."""

    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3


@dataclass(frozen=True)
class ModeLook:
    """How a mode is shown.

    Attributes:
        label: the indicator text.
        color: background colour (``#rrggbb``).
        severity: how loud.
    """

    label: str
    color: str
    severity: Severity


_MODES: Final = {
    "STANDBY": ModeLook("STANDBY", COLORS["standby"], Severity.INFO),
    "TELEOP": ModeLook("TELEOP", COLORS["teleop"], Severity.OK),
    "DEGRADED": ModeLook("DEGRADED", COLORS["warning"], Severity.WARNING),
    "AUTONOMY": ModeLook("AUTONOMY", COLORS["autonomy"], Severity.INFO),
    "MINIMAL_RISK_STOP": ModeLook("MIN-RISK STOP", COLORS["critical"], Severity.CRITICAL),
    "ESTOP": ModeLook("E-STOP", COLORS["estop"], Severity.CRITICAL),
}
NO_LINK: Final = ModeLook("NO LINK", COLORS["nolink"], Severity.WARNING)


def normalise_mode(mode: str) -> str:
    """Mode names compared case-insensitively (``teleop`` and ``TELEOP`` are one mode)."""
    return mode.strip().upper().replace("-", "_")


def mode_look(mode: str | None) -> ModeLook:
    """The indicator for a mode (None: no telemetry)."""
    if mode is None:
        return NO_LINK
    key = normalise_mode(mode)
    return _MODES.get(key, ModeLook(key or "UNKNOWN", COLORS["warning"], Severity.WARNING))


def is_fallback(mode: str, reason: str) -> bool:
    """Whether an AUTONOMY mode is a fallback (the vehicle took over) rather than a release."""
    text = reason.lower()
    return normalise_mode(mode) == "AUTONOMY" and ("fallback" in text or "blocked" in text)


@dataclass(frozen=True)
class Banner:
    """An alert banner: what it says and how loud it is."""

    text: str
    severity: Severity


def banner_for(
    mode: str | None, reason: str, *, console_estop: bool, telemetry_stale: bool
) -> Banner | None:
    """The alert banner for the vehicle's state, or None when all is well.

    The console's own e-stop latch wins (the operator pressed it; the vehicle may not have
    confirmed yet), then vehicle e-stop, minimal-risk stop, fallback, degraded, stale telemetry.
    """
    key = normalise_mode(mode) if mode is not None else None
    why = f": {reason}" if reason else ""
    if console_estop:
        return Banner("E-STOP LATCHED (console) - reset needs confirmation", Severity.CRITICAL)
    if key == "ESTOP":
        return Banner(f"E-STOP{why}", Severity.CRITICAL)
    if key == "MINIMAL_RISK_STOP":
        return Banner(f"MINIMAL-RISK STOP{why}", Severity.CRITICAL)
    if mode is not None and is_fallback(mode, reason):
        return Banner(f"FALLBACK TO AUTONOMY{why}", Severity.WARNING)
    if key == "DEGRADED":
        return Banner(f"DEGRADED{why}", Severity.WARNING)
    if telemetry_stale:
        return Banner("NO TELEMETRY FROM THE VEHICLE", Severity.WARNING)
    return None


ALERT_SEVERITY: Final = {
    "info": Severity.INFO,
    "warning": Severity.WARNING,
    "critical": Severity.CRITICAL,
}


def alert_banner(level: str, text: str) -> Banner:
    """The banner for a vehicle ``Alert``."""
    severity = ALERT_SEVERITY.get(level, Severity.WARNING)
    return Banner(f"{level.upper()}: {text}", severity)


def louder(state: Banner | None, alert: Banner | None) -> Banner | None:
    """The banner to show: the louder of the state's and a recent alert's (the state on a tie)."""
    if alert is None:
        return state
    if state is None or alert.severity > state.severity:
        return alert
    return state


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def hud_values(snapshot: LinkSnapshot) -> dict[str, str]:
    """The HUD's figures as display strings, keyed by field name."""
    t = snapshot.telemetry
    return {
        "speed": "—" if t is None else f"{t.speed_mps:+.2f} m/s",
        "steer": "—" if t is None else f"{t.steer_rad:+.2f} rad",
        "cap": "—" if t is None else f"{t.speed_cap_mps:.2f} m/s",
        "rtt": _ms(snapshot.rtt_ms),
        "one_way": _ms(snapshot.one_way_ms),
        "g2g": _ms(snapshot.glass_to_glass_ms),
        "fps": f"{snapshot.video_fps:.1f}",
        "bitrate": "—"
        if snapshot.video_kbps is None
        else f"{snapshot.video_kbps / 1000:.2f} Mbit/s",
        "loss": "—" if snapshot.video_loss is None else f"{snapshot.video_loss * 100:.1f} %",
        "frames": str(sum(snapshot.frames.values())),
        "battery": "—" if t is None or t.battery_v <= 0 else f"{t.battery_v:.1f} V",
        "mcu": "—" if t is None else t.mcu_state,
        "drops": "—" if t is None else str(sum(t.drops.values())),
        "link": _link_text(snapshot),
    }


def _link_text(snapshot: LinkSnapshot) -> str:
    if snapshot.session_open:
        return "session open"
    if snapshot.vehicle_id is not None and snapshot.hub_connected:
        return "connecting…"
    return "hub connected" if snapshot.hub_connected else "hub offline"


_SECTIONS: Final = (
    ("MOTION", (("speed", "Speed"), ("steer", "Steering"), ("cap", "Speed cap"))),
    (
        "LINK",
        (("link", "State"), ("rtt", "RTT"), ("one_way", "One-way"), ("drops", "Cmd drops")),
    ),
    (
        "VIDEO",
        (
            ("g2g", "Glass-to-glass"),
            ("fps", "Frame rate"),
            ("bitrate", "Bitrate (rx)"),
            ("loss", "Packet loss"),
            ("frames", "Frames"),
        ),
    ),
    ("VEHICLE", (("battery", "Battery"), ("mcu", "MCU"))),
)


class ModeIndicator(QLabel):
    """The large mode indicator, coloured by mode, with the reason beneath."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modeIndicator")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(72)
        self.look = NO_LINK
        self.show_look(NO_LINK)

    def show_look(self, look: ModeLook) -> None:
        """Shows a mode."""
        self.look = look
        self.setText(look.label)
        self.setStyleSheet(
            f"background:{look.color}; color:#ffffff; font-size:30px; font-weight:800;"
            "border-radius:6px; letter-spacing:2px; padding:6px;"
        )


class AlertBanner(QLabel):
    """A full-width banner, hidden when there is nothing to say."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("alertBanner")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.banner: Banner | None = None
        self.setVisible(False)

    def show_banner(self, banner: Banner | None) -> None:
        """Shows a banner, or hides it for None."""
        self.banner = banner
        if banner is None:
            self.setVisible(False)
            return
        if banner.severity >= Severity.CRITICAL:
            color = COLORS["estop"]
        elif banner.severity >= Severity.WARNING:
            color = COLORS["warning"]
        else:
            color = COLORS["autonomy"]
        self.setText(banner.text)
        self.setStyleSheet(
            f"background:{color}; color:#ffffff; font-size:18px; font-weight:700; padding:8px;"
        )
        self.setVisible(True)


class HudPanel(QFrame):
    """Mode, reason and figures, in a column."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hud")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.mode = ModeIndicator(self)
        self.reason = QLabel("waiting for telemetry", self)
        self.reason.setObjectName("modeReason")
        self.reason.setWordWrap(True)
        layout.addWidget(self.mode)
        layout.addWidget(self.reason)
        grid = QGridLayout()
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(3)
        self.values: dict[str, QLabel] = {}
        row = 0
        for section, entries in _SECTIONS:
            header = QLabel(section, self)
            header.setObjectName("sectionTitle")
            grid.addWidget(header, row, 0, 1, 2)
            row += 1
            for key, title in entries:
                name = QLabel(title, self)
                name.setObjectName("hudName")
                value = QLabel("—", self)
                value.setObjectName("hudValue")
                value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                grid.addWidget(name, row, 0)
                grid.addWidget(value, row, 1)
                self.values[key] = value
                row += 1
        layout.addLayout(grid)

    def show_state(self, snapshot: LinkSnapshot, status: SourceStatus | None) -> None:
        """Updates from the newest snapshot and the command source status."""
        t = snapshot.telemetry
        self.mode.show_look(mode_look(None if t is None else t.mode))
        reason = "waiting for telemetry" if t is None else (t.reason or "—")
        if status is not None and status.inhibit_reason:
            reason = f"{reason}\n⚠ {status.inhibit_reason}"
        self.reason.setText(reason)
        for key, text in hud_values(snapshot).items():
            self.values[key].setText(text)
