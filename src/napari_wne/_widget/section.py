"""A foldable section whose height follows its content.

superqt's QCollapsible caps its content at the height it had when it opened, so notes
that grow later (a status line, a warning) are cut off; this one only shows or hides
its content and leaves the sizes to Qt's layouts.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSizePolicy, QToolButton, QVBoxLayout, QWidget

__all__ = ["Section"]


class Section(QWidget):
    """A title button that shows or hides one content widget (starts folded)."""

    def __init__(self, title: str, content: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QToolButton(text=title, checkable=True, checked=False)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(content)
        self.button.toggled.connect(self._show)
        self._show(False)

    def _show(self, on: bool) -> None:
        self.button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.content.setVisible(on)

    def isExpanded(self) -> bool:
        return self.button.isChecked()

    def expand(self, animate: bool = False) -> None:
        """Open it (`animate` is accepted for QCollapsible's signature; there is none)."""
        self.button.setChecked(True)

    def collapse(self, animate: bool = False) -> None:
        self.button.setChecked(False)
