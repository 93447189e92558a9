"""A small, cheap curve plot for the dock widget: the loss (log scale) and, when the run has
one, the stopping criterion, drawn with QPainter (no plotting library, no extra startup cost)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

MAX_POINTS = 2000
"""Curves are thinned to every other point beyond this, so painting stays cheap on long runs."""

LOSS_COLOUR = QColor(80, 170, 255)
CRITERION_COLOUR = QColor(255, 170, 60)


class Curve:
    """A bounded list of (x, y) points, thinned by half whenever it grows past MAX_POINTS."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def add(self, x: float, y: float) -> None:
        if not math.isfinite(y):
            return
        self.points.append((x, y))
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2] + ([self.points[-1]] if len(self.points) % 2 == 0
                                              else [])


class LossPlot(QWidget):
    """Loss (log scale, blue) and stopping criterion (own linear scale, orange) against the
    iteration count of the whole run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss = Curve()
        self.criterion = Curve()
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("blue: loss (log scale); orange: stopping criterion, when the run has one")

    def clear(self) -> None:
        self.loss, self.criterion = Curve(), Curve()
        self.update()

    def add(self, step: float, loss: float, criterion: float | None = None) -> None:
        """Append one point; the repaint is scheduled, so many calls cost one paint."""
        if loss > 0:
            self.loss.add(step, math.log10(loss))
        if criterion is not None:
            self.criterion.add(step, float(criterion))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = self.rect().adjusted(4, 4, -4, -14)
        painter.fillRect(self.rect(), self.palette().base())
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(box)
        points = self.loss.points
        if points:
            x_max = max(points[-1][0], self.criterion.points[-1][0] if self.criterion.points
                        else 0.0, 1.0)
            self._draw(painter, box, self.loss.points, x_max, LOSS_COLOUR)
            self._draw(painter, box, self.criterion.points, x_max, CRITERION_COLOUR)
            painter.setPen(QPen(self.palette().text().color()))
            painter.drawText(box.left(), self.rect().bottom() - 1,
                             f"loss {10 ** points[-1][1]:.2e} at step {int(points[-1][0])}")
        painter.end()

    @staticmethod
    def _draw(painter: QPainter, box, points, x_max: float, colour: QColor) -> None:
        if len(points) < 1:
            return
        ys = [y for _, y in points]
        low, high = min(ys), max(ys)
        span = high - low or 1.0
        polygon = QPolygonF([QPointF(box.left() + box.width() * x / x_max,
                                     box.bottom() - box.height() * (y - low) / span)
                             for x, y in points])
        painter.setPen(QPen(colour, 1.5, Qt.PenStyle.SolidLine))
        painter.drawPolyline(polygon)
