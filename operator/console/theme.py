"""The console's dark theme: one palette and one style sheet."""

from __future__ import annotations

from typing import Final

COLORS: Final = {
    "bg": "#0f1216",
    "panel": "#171b21",
    "panel_edge": "#262c35",
    "text": "#e6e9ee",
    "muted": "#8a93a1",
    "accent": "#3d8bfd",
    "teleop": "#1e9e4a",
    "autonomy": "#2f6fd6",
    "standby": "#4b5563",
    "warning": "#d98a00",
    "critical": "#c2410c",
    "estop": "#d32020",
    "nolink": "#6b7280",
    "overlay_path": "#35e0ff",
    "overlay_stop": "#ff4d4d",
}

STYLE_SHEET: Final = f"""
QWidget {{
    background: {COLORS["bg"]};
    color: {COLORS["text"]};
    font-family: "DejaVu Sans", "Segoe UI", sans-serif;
    font-size: 13px;
}}
QFrame#sidePanel, QFrame#hud, QFrame#controls {{
    background: {COLORS["panel"]};
    border: 1px solid {COLORS["panel_edge"]};
    border-radius: 6px;
}}
QLabel {{ background: transparent; }}
QLabel#sectionTitle {{
    padding-top: 6px;
    color: {COLORS["muted"]};
    font-size: 11px;
    font-weight: 700;
    letter-spacing: 1px;
}}
QLabel#hudName {{ color: {COLORS["muted"]}; }}
QLabel#hudValue {{ font-family: "DejaVu Sans Mono", monospace; font-size: 14px; }}
QLabel#modeReason {{ color: {COLORS["text"]}; font-size: 13px; padding: 2px 4px; }}
QLabel#toast {{
    background: {COLORS["warning"]};
    color: #ffffff;
    font-weight: 700;
    padding: 6px;
    border-radius: 4px;
}}
QTableWidget, QListWidget {{
    background: {COLORS["bg"]};
    border: 1px solid {COLORS["panel_edge"]};
    gridline-color: {COLORS["panel_edge"]};
    selection-background-color: {COLORS["accent"]};
}}
QHeaderView::section {{
    background: {COLORS["panel"]};
    color: {COLORS["muted"]};
    border: none;
    padding: 4px;
    font-weight: 700;
}}
QPushButton {{
    background: #2a313b;
    border: 1px solid #3a424e;
    border-radius: 5px;
    padding: 8px 12px;
    font-weight: 700;
}}
QPushButton:hover {{ background: #343c48; }}
QPushButton:disabled {{ color: #5b6370; }}
QPushButton#estopButton {{
    background: {COLORS["estop"]};
    color: #ffffff;
    border: 3px solid #ff8080;
    border-radius: 10px;
    font-size: 26px;
    font-weight: 900;
    letter-spacing: 2px;
    min-height: 84px;
}}
QPushButton#estopButton:pressed {{ background: #a01010; }}
QPushButton#resetButton[confirm="true"] {{ background: {COLORS["warning"]}; color: #ffffff; }}
QStatusBar {{ background: {COLORS["panel"]}; color: {COLORS["muted"]}; }}
"""
