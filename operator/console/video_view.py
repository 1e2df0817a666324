"""The video: the primary camera large with the predictive overlay, the others as thumbnails.

Frames are converted to ``QImage`` on the network thread (:func:`frame_to_qimage`) and only
painted here; the widget keeps just the newest image per camera.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from teledrive.operator.console.overlay import (
    CameraModel,
    OverlayGeometry,
    OverlayInputs,
    ground_offset,
    overlay_geometry,
    project_ground_point,
)
from teledrive.operator.console.theme import COLORS

VEHICLE_HALF_WIDTH_M = 0.35


def frame_to_qimage(frame: Any) -> QImage:
    """Converts an ``av.VideoFrame`` to a ``QImage`` that owns its pixels (any thread).

    The QImage wraps the array only for the moment of ``copy()``, which gives it pixels of
    its own; no memoryview of Qt's buffer is ever held by Python (that path crashed at exit).
    """
    rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    height, width, _ = rgb.shape
    view = QImage(rgb.data, width, height, width * 3, QImage.Format.Format_RGB888)
    image = view.copy()
    del view
    return image


def fit_rect(image_w: float, image_h: float, area: QRectF) -> QRectF:
    """The largest rectangle of the image's aspect ratio centred in ``area``."""
    if image_w <= 0 or image_h <= 0:
        return QRectF(area)
    scale = min(area.width() / image_w, area.height() / image_h)
    w, h = image_w * scale, image_h * scale
    return QRectF(area.x() + (area.width() - w) / 2, area.y() + (area.height() - h) / 2, w, h)


class VideoView(QWidget):
    """Paints the newest image of one camera, the overlay and the lockout veil.

    Attributes:
        camera: the camera shown.
        frames_painted: images painted so far (a frame counter is drawn in a corner).
        overlay: the overlay inputs, or None to draw none.
        lockout_text: when set, the picture is veiled and this text shown.
    """

    def __init__(self, parent: QWidget | None = None, *, camera_model: CameraModel | None = None):
        super().__init__(parent)
        self.setObjectName("videoView")
        self.setMinimumSize(480, 300)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.camera_model = camera_model or CameraModel()
        self.camera = ""
        self.image: QImage | None = None
        self.frames_received = 0
        self.frames_painted = 0
        self.overlay: OverlayInputs | None = None
        self.geometry_shown: OverlayGeometry | None = None
        self.lockout_text = ""

    def set_image(self, camera: str, image: QImage) -> None:
        """Shows a new image (repaints on the next paint cycle)."""
        self.camera = camera
        self.image = image
        self.frames_received += 1
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Paints picture, overlay, veil and labels."""
        del event
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#000000"))
        area = QRectF(self.rect())
        image = self.image
        if image is None and not self.lockout_text:
            self._centre_text(painter, area, "NO VIDEO", COLORS["muted"], 28)
        if image is not None:
            target = fit_rect(image.width(), image.height(), area)
            painter.drawImage(target, image)
            self.frames_painted += 1
            if self.overlay is not None:
                self._draw_overlay(painter, target, self.overlay)
        if self.lockout_text:
            painter.fillRect(self.rect(), QColor(0, 0, 0, 150))
            self._centre_text(painter, area, self.lockout_text, COLORS["warning"], 20)
        painter.setPen(QColor(COLORS["text"]))
        painter.setFont(QFont("DejaVu Sans Mono", 10))
        label = f"{self.camera or '—'}  frame {self.frames_received}"
        painter.drawText(QRectF(10, 6, 400, 20), Qt.AlignmentFlag.AlignLeft, label)
        painter.end()

    def _centre_text(
        self, painter: QPainter, area: QRectF, text: str, color: str, size: int
    ) -> None:
        painter.setPen(QColor(color))
        font = QFont("DejaVu Sans", size)
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)

    def _draw_overlay(self, painter: QPainter, target: QRectF, inputs: OverlayInputs) -> None:
        try:
            geometry = overlay_geometry(inputs)
        except ValueError:
            return
        self.geometry_shown = geometry
        cam, w, h = self.camera_model, target.width(), target.height()

        def to_screen(x_m: float, y_m: float) -> QPointF | None:
            uv = project_ground_point(x_m, y_m, cam, w, h)
            if uv is None or not (math.isfinite(uv[0]) and math.isfinite(uv[1])):
                return None
            return QPointF(target.x() + uv[0], target.y() + uv[1])

        painter.save()
        painter.setClipRect(target)
        for side in (VEHICLE_HALF_WIDTH_M, -VEHICLE_HALF_WIDTH_M):
            path = QPainterPath()
            started = False
            for pose in geometry.corridor or geometry.path:
                point = to_screen(*ground_offset(pose, side))
                if point is None:
                    continue
                if started:
                    path.lineTo(point)
                else:
                    path.moveTo(point)
                    started = True
            edge = QColor(COLORS["overlay_path"])
            edge.setAlpha(170)
            painter.setPen(QPen(edge, 2, Qt.PenStyle.DashLine))
            painter.drawPath(path)
        self._bar(painter, to_screen, geometry.predicted, COLORS["overlay_path"], 4)
        self._bar(painter, to_screen, geometry.stop_pose, COLORS["overlay_stop"], 3)
        stop = to_screen(geometry.stop_pose.x_m, geometry.stop_pose.y_m)
        if stop is not None:
            painter.setPen(QColor(COLORS["overlay_stop"]))
            painter.setFont(QFont("DejaVu Sans", 10))
            painter.drawText(stop + QPointF(6, -6), f"stop {geometry.stopping_distance_m:.1f} m")
        ahead = to_screen(geometry.predicted.x_m, geometry.predicted.y_m)
        if ahead is not None:
            painter.setPen(QColor(COLORS["overlay_path"]))
            painter.drawText(ahead + QPointF(6, 16), f"+{geometry.delay_s * 1000:.0f} ms")
        painter.restore()

    @staticmethod
    def _bar(painter: QPainter, to_screen: Any, pose: Any, color: str, width: int) -> None:
        left = to_screen(*ground_offset(pose, VEHICLE_HALF_WIDTH_M))
        right = to_screen(*ground_offset(pose, -VEHICLE_HALF_WIDTH_M))
        if left is None or right is None:
            return
        painter.setPen(QPen(QColor(color), width))
        painter.drawLine(left, right)


class Thumbnail(QWidget):
    """A small view of a secondary camera; a click makes it primary."""

    clicked = Signal(str)

    def __init__(self, camera: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera = camera
        self.image: QImage | None = None
        self.setFixedSize(176, 112)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_image(self, image: QImage) -> None:
        """Shows a new image."""
        self.image = image
        self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        """Selects this camera as primary."""
        del event
        self.clicked.emit(self.camera)

    def paintEvent(self, event: QPaintEvent) -> None:
        """Paints the image and the camera name."""
        del event
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#000000"))
        if self.image is not None:
            painter.drawImage(
                fit_rect(self.image.width(), self.image.height(), QRectF(self.rect())), self.image
            )
        painter.setPen(QColor(COLORS["text"]))
        painter.drawText(QRectF(6, 4, 160, 16), Qt.AlignmentFlag.AlignLeft, self.camera)
        painter.setPen(QPen(QColor(COLORS["panel_edge"]), 1))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.end()


class ThumbnailStrip(QWidget):
    """The secondary cameras in a row."""

    selected = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addStretch(1)
        self.thumbnails: dict[str, Thumbnail] = {}

    def set_image(self, camera: str, image: QImage) -> None:
        """Shows an image of a secondary camera (creating its thumbnail)."""
        thumb = self.thumbnails.get(camera)
        if thumb is None:
            thumb = Thumbnail(camera, self)
            thumb.clicked.connect(self.selected.emit)
            self._layout.insertWidget(self._layout.count() - 1, thumb)
            self.thumbnails[camera] = thumb
        thumb.set_image(image)

    def remove(self, camera: str) -> None:
        """Drops a camera's thumbnail (it became primary)."""
        thumb = self.thumbnails.pop(camera, None)
        if thumb is not None:
            thumb.setParent(None)
            thumb.deleteLater()
