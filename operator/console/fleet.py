"""The fleet view: every vehicle on the hub, and the help queue.

:class:`FleetModel` (sans-I/O) keeps what the hub says (``VehicleList``, ``Presence``: online,
who holds control) and what is known of each vehicle's mode (today from the telemetry of the
vehicle in session; the hub does not relay modes yet). A vehicle whose mode asks for help
(autonomy blocked, minimal-risk stop, e-stop) enters the help queue, which is ordered by how
long each has waited; entering it raises a notification once.

:class:`FleetPanel` shows the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from teledrive.operator.console.hud import mode_look, normalise_mode
from teledrive.operator.console.theme import COLORS
from teledrive.shared import messages as m


def needs_help(mode: str, reason: str) -> bool:
    """Whether a vehicle in this mode is waiting for an operator."""
    key = normalise_mode(mode)
    if key in ("MINIMAL_RISK_STOP", "ESTOP"):
        return True
    return key == "AUTONOMY" and "blocked" in reason.lower()


@dataclass(frozen=True)
class VehicleRow:
    """One vehicle as the console knows it.

    Attributes:
        info: what the hub says.
        mode: the supervisor mode, if known.
        reason: why it is in that mode.
        battery_v: battery voltage, if known.
        rtt_ms: link round trip, if known.
        help_since_ms: when it started asking for help (None: it does not).
    """

    info: m.VehicleInfo
    mode: str | None = None
    reason: str = ""
    battery_v: float | None = None
    rtt_ms: float | None = None
    help_since_ms: float | None = None


@dataclass(frozen=True)
class HelpRequest:
    """A vehicle waiting for an operator."""

    vehicle_id: str
    mode: str
    reason: str
    waited_ms: float


class FleetModel:
    """Vehicles and their help requests; times are ms on the console's clock."""

    def __init__(self) -> None:
        self._rows: dict[str, VehicleRow] = {}
        self.notifications = 0

    def apply(self, message: m.Message) -> None:
        """Applies a hub message (``VehicleList`` or ``Presence``; others are ignored)."""
        if isinstance(message, m.VehicleList):
            listed = {info.id for info in message.vehicles}
            for vehicle_id, row in list(self._rows.items()):
                if vehicle_id not in listed:
                    self._rows[vehicle_id] = replace(row, info=replace(row.info, online=False))
            for info in message.vehicles:
                self._update_info(info)
        elif isinstance(message, m.Presence):
            self._update_info(message.vehicle)

    def _update_info(self, info: m.VehicleInfo) -> None:
        row = self._rows.get(info.id)
        if row is None:
            self._rows[info.id] = VehicleRow(info=info)
        else:
            # an offline Presence carries no name or cameras: keep the ones we knew
            merged = info if info.online else replace(row.info, online=False, operator=None)
            self._rows[info.id] = replace(row, info=merged)

    def on_status(
        self,
        vehicle_id: str,
        mode: str,
        reason: str,
        now_ms: float,
        *,
        battery_v: float | None = None,
        rtt_ms: float | None = None,
    ) -> HelpRequest | None:
        """Records a vehicle's mode; returns a help request when it just started asking."""
        row = self._rows.get(vehicle_id) or VehicleRow(info=m.VehicleInfo(id=vehicle_id))
        since = row.help_since_ms
        raised = None
        if needs_help(mode, reason):
            if since is None:
                since = now_ms
                self.notifications += 1
                raised = HelpRequest(vehicle_id, normalise_mode(mode), reason, 0.0)
        else:
            since = None
        self._rows[vehicle_id] = replace(
            row,
            mode=mode,
            reason=reason,
            battery_v=battery_v if battery_v is not None else row.battery_v,
            rtt_ms=rtt_ms if rtt_ms is not None else row.rtt_ms,
            help_since_ms=since,
        )
        return raised

    def rows(self) -> list[VehicleRow]:
        """All vehicles, online first, then by id."""
        return sorted(self._rows.values(), key=lambda r: (not r.info.online, r.info.id))

    def row(self, vehicle_id: str) -> VehicleRow | None:
        """One vehicle."""
        return self._rows.get(vehicle_id)

    def help_queue(self, now_ms: float) -> list[HelpRequest]:
        """Vehicles asking for help, longest waiting first."""
        waiting = [
            HelpRequest(r.info.id, normalise_mode(r.mode or ""), r.reason, max(0.0, now_ms - since))
            for r in self._rows.values()
            if (since := r.help_since_ms) is not None
        ]
        return sorted(waiting, key=lambda h: (-h.waited_ms, h.vehicle_id))


def format_wait(waited_ms: float) -> str:
    """``m:ss`` of a wait."""
    seconds = int(waited_ms // 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


_COLUMNS = ("Vehicle", "Mode", "Batt.", "RTT", "Driver")


class FleetPanel(QFrame):
    """The fleet table, the help queue and the notification toast.

    Signals:
        vehicle_chosen(str): the operator asked to watch/drive a vehicle.
    """

    vehicle_chosen = Signal(str)

    def __init__(self, model: FleetModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidePanel")
        self.model = model
        layout = QVBoxLayout(self)
        title = QLabel("FLEET", self)
        title.setObjectName("sectionTitle")
        layout.addWidget(title)
        self.table = QTableWidget(0, len(_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.cellDoubleClicked.connect(self._double_clicked)
        layout.addWidget(self.table, 3)
        self.drive_button = QPushButton("WATCH / DRIVE SELECTED", self)
        self.drive_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.drive_button.clicked.connect(self._drive_selected)
        layout.addWidget(self.drive_button)
        help_title = QLabel("HELP QUEUE", self)
        help_title.setObjectName("sectionTitle")
        layout.addWidget(help_title)
        self.help_list = QListWidget(self)
        self.help_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.help_list.itemDoubleClicked.connect(
            lambda item: self.vehicle_chosen.emit(item.data(Qt.ItemDataRole.UserRole))
        )
        layout.addWidget(self.help_list, 2)
        self.toast = QLabel("", self)
        self.toast.setObjectName("toast")
        self.toast.setWordWrap(True)
        self.toast.setVisible(False)
        layout.addWidget(self.toast)

    def notify(self, request: HelpRequest) -> None:
        """Shows a notification for a new help request."""
        self.toast.setText(f"⚠ {request.vehicle_id} asks for help: {request.mode}")
        self.toast.setVisible(True)

    def refresh(self, now_ms: float) -> None:
        """Redraws table and queue from the model."""
        rows = self.model.rows()
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            look = mode_look(row.mode) if row.mode else None
            cells = (
                ("● " if row.info.online else "○ ") + row.info.id,
                look.label if look else "—",
                "—" if row.battery_v is None else f"{row.battery_v:.1f} V",
                "—" if row.rtt_ms is None else f"{row.rtt_ms:.0f} ms",
                row.info.operator or "free",
            )
            for column, text in enumerate(cells):
                item = self.table.item(index, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(index, column, item)
                item.setText(text)
                item.setData(Qt.ItemDataRole.UserRole, row.info.id)
                if column == 1 and look is not None:
                    item.setForeground(QColor(look.color).lighter(140))
                if column == 0:
                    online = row.info.online
                    item.setForeground(QColor("#35d07f" if online else COLORS["muted"]))
                    item.setToolTip("online" if online else "offline")
        queue = self.model.help_queue(now_ms)
        self.help_list.clear()
        for request in queue:
            text = f"{format_wait(request.waited_ms)}  {request.vehicle_id}  {request.mode}"
            if request.reason:
                text += f" — {request.reason}"
            entry = QListWidgetItem(text)
            entry.setData(Qt.ItemDataRole.UserRole, request.vehicle_id)
            entry.setForeground(QColor("#ffffff"))
            entry.setBackground(QColor(COLORS["critical"]))
            self.help_list.addItem(entry)
        if not queue:
            self.toast.setVisible(False)

    def _double_clicked(self, row: int, column: int) -> None:
        del column
        item = self.table.item(row, 0)
        if item is not None:
            self.vehicle_chosen.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def _drive_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self._double_clicked(rows[0].row(), 0)
