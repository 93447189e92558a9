"""A small, cheap curve plot for the dock widget: the loss (log scale) and, when the run has
one, the stopping criterion, against the run's steps, with axes and a legend. Drawn with
QPainter (no plotting library, no extra startup cost)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRect, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

MAX_POINTS = 2000
"""Curves are thinned to every other point beyond this, so painting stays cheap on long runs."""

LOSS_COLOUR = QColor(80, 170, 255)
CRITERION_COLOUR = QColor(255, 170, 60)
STOP_COLOUR = QColor(120, 220, 120)
CHOSEN_COLOUR = QColor(240, 240, 240)


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

    def y_range(self) -> tuple[float, float]:
        ys = [y for _, y in self.points]
        return min(ys), max(ys)


class LossPlot(QWidget):
    """Loss (log scale, left axis, blue) and stopping criterion (its own linear scale,
    orange) against the step count of the whole run."""

    LEFT, RIGHT, TOP, BOTTOM = 54, 8, 18, 18  # margins for the axis labels and the legend

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss = Curve()
        self.criterion = Curve()
        self.marks: dict[str, float] = {}  # "stop", "chosen" -> step
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("blue: the loss (log scale, left axis); orange: the automatic stopping "
                        "rule's criterion (its own scale), when the run has one; green "
                        "dashes: where the automatic rule stopped; white: the checkpoint the "
                        "history slider shows")

    def clear(self) -> None:
        self.loss, self.criterion, self.marks = Curve(), Curve(), {}
        self.update()

    def set_marks(self, *, stop: float | None = None, chosen: float | None = None) -> None:
        """Mark the steps where the automatic rule stopped and the history slider stands
        (None: no mark)."""
        self.marks = {name: step for name, step in (("stop", stop), ("chosen", chosen))
                      if step is not None}
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
        painter.fillRect(self.rect(), self.palette().base())
        box = self.rect().adjusted(self.LEFT, self.TOP, -self.RIGHT, -self.BOTTOM)
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(box)
        self._draw_legend(painter)
        if self.loss.points:
            x_max = max([1.0] + [curve.points[-1][0] for curve in (self.loss, self.criterion)
                                 if curve.points])
            self._draw_axes(painter, box, x_max)
            self._draw(painter, box, self.loss, x_max, LOSS_COLOUR)
            self._draw(painter, box, self.criterion, x_max, CRITERION_COLOUR)
            self._draw_marks(painter, box, x_max)
        painter.end()

    def _draw_marks(self, painter: QPainter, box: QRect, x_max: float) -> None:
        """Vertical lines at the marked steps, labelled at the top of the box."""
        styles = {"stop": (STOP_COLOUR, Qt.PenStyle.DashLine, "stop"),
                  "chosen": (CHOSEN_COLOUR, Qt.PenStyle.SolidLine, "shown")}
        for name, step in self.marks.items():
            colour, style, text = styles[name]
            x = round(box.left() + box.width() * min(step, x_max) / x_max)
            painter.setPen(QPen(colour, 1.5, style))
            painter.drawLine(x, box.top(), x, box.bottom())
            align_right = x > box.center().x()
            width = painter.fontMetrics().horizontalAdvance(text)
            offset = -width - 3 if align_right else 3
            painter.drawText(x + offset, box.top() + 12 + (14 if name == "chosen" else 0), text)

    def _draw_legend(self, painter: QPainter) -> None:
        x = self.LEFT
        entries = [("loss (log)", LOSS_COLOUR)]
        if self.criterion.points:
            entries.append(("stopping criterion", CRITERION_COLOUR))
        for text, colour in entries:
            painter.setPen(QPen(colour, 2.0))
            painter.drawLine(x, 9, x + 14, 9)
            painter.setPen(QPen(self.palette().text().color()))
            painter.drawText(x + 18, 13, text)
            x += 26 + painter.fontMetrics().horizontalAdvance(text)

    def _draw_axes(self, painter: QPainter, box: QRect, x_max: float) -> None:
        """Loss values at the top and bottom of the left axis, steps along the bottom."""
        painter.setPen(QPen(self.palette().text().color()))
        low, high = self.loss.y_range()
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for value, y in ((high, box.top()), (low, box.bottom())):
            painter.drawText(QRect(0, y - 8, self.LEFT - 4, 16), right, f"{10 ** value:.1e}")
        baseline = box.bottom() + 14
        painter.drawText(box.left(), baseline, "0")
        label = f"step {int(x_max)}"
        painter.drawText(box.right() - painter.fontMetrics().horizontalAdvance(label),
                         baseline, label)

    @staticmethod
    def _draw(painter: QPainter, box: QRect, curve: Curve, x_max: float,
              colour: QColor) -> None:
        if not curve.points:
            return
        low, high = curve.y_range()
        span = high - low or 1.0
        polygon = QPolygonF([QPointF(box.left() + box.width() * x / x_max,
                                     box.bottom() - box.height() * (y - low) / span)
                             for x, y in curve.points])
        painter.setPen(QPen(colour, 1.5, Qt.PenStyle.SolidLine))
        painter.drawPolyline(polygon)
