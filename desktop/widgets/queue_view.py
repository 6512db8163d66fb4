"""The queue: one row per image with its state and time, and an overall progress bar."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QProgressBar, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from engine.types import Result, Status

WAITING, RUNNING, DONE, REVIEW, ERROR = "waiting", "running", "done", "needs review", "error"
_COLOURS = {RUNNING: "#1e6fd9", DONE: "#2e7d32", REVIEW: "#b26a00", ERROR: "#c62828"}
_RESULT = Qt.ItemDataRole.UserRole


def state_of(result: Result, threshold: float) -> str:
    """The queue state a finished result shows (the same rule as the store's review queue)."""
    if result.status is Status.ERROR:
        return ERROR
    low = result.min_confidence
    if result.status is not Status.OK or (low is not None and low < threshold):
        return REVIEW
    return DONE


class QueueView(QWidget):
    """Rows keyed by (batch, index); `resultSelected(path, Result)` when a finished row is clicked."""

    resultSelected = Signal(str, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Image", "State", "Time"])
        self.tree.setRootIsDecorated(False)
        self.tree.setColumnWidth(0, 170)
        self.tree.setColumnWidth(1, 90)
        self.tree.itemSelectionChanged.connect(self._selected)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m images")
        self.progress.setValue(0)
        self.progress.setMaximum(0)
        self.progress.setTextVisible(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree)
        layout.addWidget(self.progress)
        self._rows: dict[tuple[int, int], QTreeWidgetItem] = {}
        self._started: dict[tuple[int, int], float] = {}
        self.finished = 0
        self._first_start: float | None = None

    def add(self, batch: int, paths: tuple[str, ...]) -> None:
        """New rows, waiting."""
        for index, path in enumerate(paths):
            row = QTreeWidgetItem([Path(path).name, WAITING, ""])
            row.setToolTip(0, path)
            self.tree.addTopLevelItem(row)
            self._rows[(batch, index)] = row
        self._update_progress()

    def row(self, batch: int, index: int) -> QTreeWidgetItem:
        """The row of one image."""
        return self._rows[(batch, index)]

    def mark_running(self, batch: int, index: int) -> None:
        """The image is being analysed."""
        self._started[(batch, index)] = time.monotonic()
        if self._first_start is None:
            self._first_start = time.monotonic()
        self._set_state(self._rows[(batch, index)], RUNNING)

    def mark_finished(self, batch: int, index: int, result: Result, threshold: float, cached: bool) -> None:
        """The image's result is in (and stored)."""
        row = self._rows[(batch, index)]
        state = state_of(result, threshold)
        self._set_state(row, state)
        took = time.monotonic() - self._started.pop((batch, index), time.monotonic())
        row.setText(2, "cached" if cached else f"{took:.1f} s")
        row.setData(0, _RESULT, result)
        if result.error:
            row.setToolTip(1, result.error)
        self.finished += 1
        self._update_progress()
        if not self.tree.selectedItems():
            self.tree.setCurrentItem(row)

    def unfinished(self) -> int:
        """How many rows are waiting or running."""
        return sum(1 for r in self._rows.values() if r.text(1) in (WAITING, RUNNING))

    def _set_state(self, row: QTreeWidgetItem, state: str) -> None:
        row.setText(1, state)
        if state in _COLOURS:
            row.setForeground(1, QColor(_COLOURS[state]))

    def _update_progress(self) -> None:
        self.progress.setMaximum(len(self._rows))
        self.progress.setValue(self.finished)
        left = len(self._rows) - self.finished
        text = "%v / %m images"
        if self._first_start is not None and self.finished and left:
            rate = self.finished / max(time.monotonic() - self._first_start, 1e-6)
            text += f" · {rate * 60:.0f}/min · about {left / rate:.0f} s left"
        if not left:
            self._first_start = None  # the next drop measures its own rate
        self.progress.setFormat(text)

    def _selected(self) -> None:
        rows = self.tree.selectedItems()
        result = rows[0].data(0, _RESULT) if rows else None
        if isinstance(result, Result):
            self.resultSelected.emit(rows[0].toolTip(0), result)
