"""The queue: one row per image (thumbnail, state, time), overall progress, and pause / cancel / retry controls.

The progress bar shows the rate and an ETA.
"""

from __future__ import annotations

import time
from pathlib import Path

from loupe.core.types import Result, Status
from loupe.desktop.bridge import THUMB_SIDE, ImageDecoder
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

WAITING, RUNNING, DONE, REVIEW, ERROR, CANCELED = "waiting", "running", "done", "needs review", "error", "canceled"
FINISHED = (DONE, REVIEW, ERROR, CANCELED)
_COLORS = {RUNNING: "#1e6fd9", DONE: "#2e7d32", REVIEW: "#b26a00", ERROR: "#c62828", CANCELED: "#757575"}
_RESULT = Qt.ItemDataRole.UserRole
_KEY = Qt.ItemDataRole.UserRole + 1


def state_of(result: Result, threshold: float, steps: list[dict[str, object]] | None = None) -> str:
    """The queue state a finished result shows (the same rule as the store's review queue)."""
    if result.status is Status.ERROR:
        return ERROR
    low = result.min_confidence
    sent = bool(steps) and steps[-1].get("step") == "review"  # type: ignore[index]
    if result.status is not Status.OK or (low is not None and low < threshold) or sent:
        return REVIEW
    return DONE


def eta_text(finished: int, left: int, elapsed_s: float) -> str:
    """' · 12/min · about 1:05 left' from what has been done so far ('' before the first result)."""
    if not finished or not left or elapsed_s <= 0:
        return ""
    rate = finished / elapsed_s
    seconds = round(left / rate)
    return f" · {rate * 60:.1f}/min · about {seconds // 60}:{seconds % 60:02d} left"


class QueueView(QWidget):
    """Rows keyed by (batch, index); `resultSelected(path, Result, steps)` when a finished row is clicked."""

    resultSelected = Signal(str, object, object)
    pauseToggled = Signal(bool)
    cancelAll = Signal()
    cancelOne = Signal(int, int)
    retryOne = Signal(int, int, str)  # batch, index, path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Image", "State", "Time"])
        self.tree.setRootIsDecorated(False)
        self.tree.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        self.tree.setColumnWidth(0, 190)
        self.tree.setColumnWidth(1, 90)
        self.tree.itemSelectionChanged.connect(self._selected)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m images")
        self.progress.setValue(0)
        self.progress.setMaximum(0)
        self.progress.setTextVisible(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._pause)
        self.cancel_all_button = QPushButton("Cancel all")
        self.cancel_all_button.clicked.connect(self.cancelAll)
        self.cancel_button = QPushButton("Cancel image")
        self.cancel_button.clicked.connect(self._cancel_selected)
        self.retry_button = QPushButton("Retry image")
        self.retry_button.clicked.connect(self._retry_selected)
        buttons = QHBoxLayout()
        for b in (self.pause_button, self.cancel_button, self.retry_button, self.cancel_all_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree)
        layout.addWidget(self.progress)
        layout.addLayout(buttons)
        self._rows: dict[tuple[int, int], QTreeWidgetItem] = {}
        self._started: dict[tuple[int, int], float] = {}
        self._thumbs: dict[int, QTreeWidgetItem] = {}
        self.thumbnails = ImageDecoder(self)
        self.thumbnails.decoded.connect(self._thumbnail)
        self._first_start: float | None = None
        self._update_buttons()

    def add(self, batch: int, paths: tuple[str, ...]) -> None:
        """New rows, waiting; their thumbnails are made off the GUI thread."""
        for index, path in enumerate(paths):
            row = QTreeWidgetItem([Path(path).name, WAITING, ""])
            row.setToolTip(0, path)
            row.setData(0, _KEY, (batch, index))
            self.tree.addTopLevelItem(row)
            self._rows[(batch, index)] = row
            self._thumbs[self.thumbnails.request(path, THUMB_SIDE)] = row
        self._update_progress()
        self._update_buttons()

    def row(self, batch: int, index: int) -> QTreeWidgetItem:
        """The row of one image."""
        return self._rows[(batch, index)]

    def rekey(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        """A retried image keeps its row under its new (batch, index); it waits again."""
        row = self._rows.pop(old)
        self._rows[new] = row
        row.setData(0, _KEY, new)
        row.setData(0, _RESULT, None)
        row.setText(2, "")
        self._set_state(row, WAITING)
        self._update_progress()

    def mark_running(self, batch: int, index: int) -> None:
        """The image is being analyzed."""
        self._started[(batch, index)] = time.monotonic()
        if self._first_start is None:
            self._first_start = time.monotonic()
        self._set_state(self._rows[(batch, index)], RUNNING)

    def mark_finished(
        self,
        batch: int,
        index: int,
        result: Result,
        threshold: float,
        cached: bool,
        steps: list[dict[str, object]] | None = None,
    ) -> str:
        """The image's result is in (and stored); returns the state shown."""
        row = self._rows[(batch, index)]
        state = state_of(result, threshold, steps)
        self._set_state(row, state)
        took = time.monotonic() - self._started.pop((batch, index), time.monotonic())
        row.setText(2, "cached" if cached else f"{took:.1f} s")
        row.setData(0, _RESULT, (result, steps or []))
        row.setToolTip(1, result.error or "")
        self._update_progress()
        if not self.tree.selectedItems():
            self.tree.setCurrentItem(row)
        return state

    def mark_canceled(self, batch: int, index: int) -> None:
        """The image was canceled before a result was stored."""
        row = self._rows[(batch, index)]
        self._started.pop((batch, index), None)
        self._set_state(row, CANCELED)
        self._update_progress()

    def unfinished(self) -> int:
        """How many rows are waiting or running."""
        return sum(1 for r in self._rows.values() if r.text(1) in (WAITING, RUNNING))

    def states(self) -> dict[str, str]:
        """Image name -> state, for every row (what the tests and the status bar read)."""
        return {r.text(0): r.text(1) for r in self._rows.values()}

    def _set_state(self, row: QTreeWidgetItem, state: str) -> None:
        row.setText(1, state)
        row.setForeground(1, QColor(_COLORS.get(state, "#616161")))
        self._update_buttons()

    def _update_progress(self) -> None:
        finished = sum(1 for r in self._rows.values() if r.text(1) in FINISHED)
        self.progress.setMaximum(len(self._rows))
        self.progress.setValue(finished)
        left = len(self._rows) - finished
        elapsed = time.monotonic() - self._first_start if self._first_start is not None else 0.0
        done_here = sum(1 for r in self._rows.values() if r.text(1) in (DONE, REVIEW, ERROR) and r.text(2) != "")
        paused = " · paused" if self.pause_button.isChecked() else ""
        self.progress.setFormat("%v / %m images" + eta_text(done_here, left, elapsed) + paused)
        if not left:
            self._first_start = None  # the next drop measures its own rate

    def _pause(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pauseToggled.emit(paused)
        self._update_progress()
        self._update_buttons()

    def _selected_key(self) -> tuple[tuple[int, int], QTreeWidgetItem] | None:
        rows = self.tree.selectedItems()
        return (tuple(rows[0].data(0, _KEY)), rows[0]) if rows else None  # type: ignore[return-value]

    def _cancel_selected(self) -> None:
        picked = self._selected_key()
        if picked and picked[1].text(1) in (WAITING, RUNNING):
            self.cancelOne.emit(*picked[0])

    def _retry_selected(self) -> None:
        picked = self._selected_key()
        if picked and picked[1].text(1) in FINISHED:
            self.retryOne.emit(*picked[0], picked[1].toolTip(0))

    def _update_buttons(self) -> None:
        picked = self._selected_key()
        state = picked[1].text(1) if picked else ""
        self.cancel_button.setEnabled(state in (WAITING, RUNNING))
        self.retry_button.setEnabled(state in FINISHED)
        self.cancel_all_button.setEnabled(self.unfinished() > 0)
        # held before the first drop, or while images wait; a finished batch (10 / 10) has nothing to pause
        self.pause_button.setEnabled(not self._rows or self.unfinished() > 0 or self.pause_button.isChecked())

    def _thumbnail(self, token: int, image: QImage) -> None:
        row = self._thumbs.pop(token, None)
        if row is not None and not image.isNull():
            row.setIcon(0, QIcon(QPixmap.fromImage(image)))

    def _selected(self) -> None:
        self._update_buttons()
        rows = self.tree.selectedItems()
        held = rows[0].data(0, _RESULT) if rows else None
        if isinstance(held, tuple) and isinstance(held[0], Result):
            self.resultSelected.emit(rows[0].toolTip(0), held[0], held[1])
