"""A small live plot of adaptation's losses, painted with Qt alone (no plotting library).

Two series share one axis, since both are the same masked squared error in the same
units: the training loss of every step (noisy, so it is drawn thin), and the held-out
loss of every check (the one that decides what is kept, drawn with dots).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["LossPlot"]

TRAIN_COLOR = QColor(120, 150, 200)
HELD_OUT_COLOR = QColor(240, 160, 60)
_MARGIN = 6


class LossPlot(QWidget):
    """Training loss per step and held-out loss per check, against the step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(self.sizeHint().height())
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Blue: the training loss of each step. Orange: the loss on the held-out rows, "
            "measured every few steps; the lowest one's weights are the ones saved."
        )
        self.train: list[tuple[int, float]] = []
        self.held_out: list[tuple[int, float]] = []
        self.steps = 1

    def sizeHint(self) -> QSize:
        return QSize(240, 120 + self.fontMetrics().height())

    def clear(self, steps: int) -> None:
        """Start a new run of at most `steps` steps (the x axis)."""
        self.train, self.held_out, self.steps = [], [], max(steps, 1)
        self.update()

    def add_train(self, step: int, loss: float) -> None:
        self.train.append((step, loss))
        self.update()

    def add_held_out(self, step: int, loss: float) -> None:
        self.held_out.append((step, loss))
        self.update()

    def y_range(self) -> tuple[float, float]:
        """Loss limits: every held-out loss, and the training losses up to their 90th
        percentile (a few spikes of the training loss would squash everything else)."""
        train = [loss for _, loss in self.train]
        span = [loss for _, loss in self.held_out]
        if train:
            span += [min(train), float(np.percentile(train, 90, method="lower"))]
        if not span:
            return 0.0, 1.0
        low, high = min(span), max(span)
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        return low - pad, high + pad

    def points(self, series: list[tuple[int, float]], area: QRectF) -> list[QPointF]:
        """Where the `series` is drawn inside `area` (clamped to it)."""
        low, high = self.y_range()
        out = []
        for step, loss in series:
            x = area.left() + area.width() * min(step / self.steps, 1.0)
            share = (min(max(loss, low), high) - low) / (high - low)
            out.append(QPointF(x, area.bottom() - area.height() * share))
        return out

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(_MARGIN, _MARGIN, -_MARGIN, -_MARGIN)
        line = self.fontMetrics().height() + 2
        area = frame.adjusted(0, 0, 0, -line)
        text = self.palette().text().color()
        painter.setPen(QPen(text.darker(150) if text.lightness() > 128 else text.lighter(200)))
        painter.drawRect(area)
        painter.setPen(QPen(TRAIN_COLOR, 1))
        painter.drawPolyline(QPolygonF(self.points(self.train, area)))
        painter.setPen(QPen(HELD_OUT_COLOR, 2))
        held = self.points(self.held_out, area)
        painter.drawPolyline(QPolygonF(held))
        painter.setBrush(HELD_OUT_COLOR)
        for point in held:
            painter.drawEllipse(point, 2.5, 2.5)
        painter.setPen(QPen(text))
        low, high = self.y_range()
        bottom = QRectF(frame.left(), area.bottom(), frame.width(), line)
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(bottom, left, f"steps 0-{self.steps} · loss {low:.3g}-{high:.3g}")
        key = [(TRAIN_COLOR, "training"), (HELD_OUT_COLOR, "held-out")]
        if self.held_out:
            key[1] = (HELD_OUT_COLOR, f"held-out (best {min(v for _, v in self.held_out):.4g})")
        top = QRectF(area.left() + 4, area.top() + 2, area.width() - 8, line)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop
        for color, words in reversed(key):  # right to left, in the plot's top right corner
            painter.setPen(QPen(color))
            painter.drawText(top, right, words)
            top.setRight(top.right() - self.fontMetrics().horizontalAdvance(words) - 8)
        painter.end()
