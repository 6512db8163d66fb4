"""The Review tab: doubtful stored results, lowest confidence first, with Accept (A), Reject (R) and Edit (E)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets.result_view import ImageCanvas
from engine.schema.validate import validation_errors
from engine.store import ReviewError, ReviewQueue, Store, StoredResult


def pending_everywhere(store: Store) -> list[StoredResult]:
    """Unreviewed results needing a person, over every job in the store, lowest confidence first."""
    queue = ReviewQueue(store)
    found = [s for job in store.jobs() for s in queue.pending(job.id)]
    return sorted(found, key=lambda s: (-1.0 if s.result.min_confidence is None else s.result.min_confidence, s.id))


class ReviewPanel(QWidget):
    """Reads and writes the store on the GUI thread (small, indexed queries); `reviewed(id, decision)` after each."""

    reviewed = Signal(int, str)
    showing = Signal(str)  # the path of the result now shown: the window has its picture decoded

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.queue = ReviewQueue(store)
        self.list = QListWidget()
        self.list.currentItemChanged.connect(self._show)
        self.progress = QLabel()
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.PlainText)
        self.canvas = ImageCanvas()
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("The data to store; edit it and press Save edit (Ctrl+S)")
        self.editor.textChanged.connect(self._check)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.accept_button = QPushButton("Accept (A)")
        self.reject_button = QPushButton("Reject (R)")
        self.save_button = QPushButton("Save edit (Ctrl+S)")
        self.accept_button.clicked.connect(self.accept_current)
        self.reject_button.clicked.connect(self.reject_current)
        self.save_button.clicked.connect(self.save_edit)
        for key, slot in (("A", self.accept_current), ("R", self.reject_current), ("E", self.editor.setFocus)):
            QShortcut(QKeySequence(key), self.list, slot, context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence("Ctrl+S"), self, self.save_edit, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        buttons = QHBoxLayout()
        for b in (self.accept_button, self.reject_button, self.save_button):
            buttons.addWidget(b)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.detail)
        picture_and_data = QSplitter(Qt.Orientation.Vertical)
        picture_and_data.addWidget(self.canvas)
        picture_and_data.addWidget(self.editor)
        picture_and_data.setSizes([380, 260])
        right_layout.addWidget(picture_and_data, 1)
        right_layout.addWidget(self.message)
        right_layout.addLayout(buttons)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.progress)
        left_layout.addWidget(self.list, 1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([360, 540])
        QVBoxLayout(self).addWidget(split)
        self.items: list[StoredResult] = []
        self.refresh()

    def refresh(self) -> None:
        """Reload the queue from the store, keeping the selection on the same result when it is still there."""
        keep = self.current.id if self.current else None
        self.items = pending_everywhere(self.store)
        self.list.blockSignals(True)
        self.list.clear()
        for s in self.items:
            low = s.result.min_confidence
            text = f"{'—' if low is None else f'{low:.2f}'}  {Path(s.path).name}  ({s.result.status.value})"
            QListWidgetItem(text, self.list).setData(Qt.ItemDataRole.UserRole, s.id)
        ids = [s.id for s in self.items]
        self.list.setCurrentRow(ids.index(keep) if keep in ids else (0 if ids else -1))
        self.list.blockSignals(False)
        if keep is None or keep not in ids:
            self._show()  # a different result: show it (the same one keeps the edit in progress)
        self.progress.setText(f"{len(self.items)} to review")

    @property
    def current(self) -> StoredResult | None:
        """The selected stored result."""
        row = self.list.currentRow()
        return self.items[row] if 0 <= row < len(self.items) else None

    def accept_current(self) -> None:
        """The model's answer is right."""
        self._decide("accept", lambda rid: self.queue.accept(rid))

    def reject_current(self) -> None:
        """The answer is wrong; keep it out of the labelled set."""
        self._decide("reject", lambda rid: self.queue.reject(rid))

    def save_edit(self) -> None:
        """Store the editor's data, refused (with the reason shown) unless it matches the task's schema."""
        text = self.editor.toPlainText()
        self._decide("edit", lambda rid: self.queue.edit_json(rid, text))

    def _decide(self, decision: str, act: Callable[[int], object]) -> None:
        stored = self.current
        if stored is None:
            return
        try:
            act(stored.id)
        except ReviewError as exc:
            self._say(str(exc), error=True)
            return
        row = self.list.currentRow()
        self.refresh()
        if self.items:
            self.list.setCurrentRow(min(row, len(self.items) - 1))
        self._say(f"result {stored.id}: {decision}ed" if decision != "edit" else f"result {stored.id}: edit stored")
        self.reviewed.emit(stored.id, decision)
        self.list.setFocus()

    def _show(self, *_: object) -> None:
        stored = self.current
        enabled = stored is not None
        for b in (self.accept_button, self.reject_button, self.save_button):
            b.setEnabled(enabled)
        if stored is None:
            self.detail.setText("Nothing to review.")
            self.editor.setPlainText("")
            self.canvas.show_boxes((), None)
            return
        r = stored.result
        reason = f": {r.error}" if r.error else ""
        self.detail.setText(f"{stored.path}\nstatus {r.status.value}{reason}")
        self.editor.setPlainText("" if r.data is None else json.dumps(r.data, indent=2, ensure_ascii=False))
        self.accept_button.setEnabled(r.data is not None)
        self.canvas.show_boxes(r.boxes, None)
        self.showing.emit(stored.path)

    def set_image(self, image: QImage) -> None:
        """The decoded picture of the shown result (its boxes are drawn over it)."""
        stored = self.current
        if stored is not None:
            self.canvas.show_boxes(stored.result.boxes, image)

    def _check(self) -> None:
        stored = self.current
        if stored is None:
            return
        try:
            data = json.loads(self.editor.toPlainText())
        except ValueError as exc:
            self._say(f"not JSON: {exc}", error=True)
            return
        problems = validation_errors(self.store.job(stored.job_id).task.schema, data)
        self._say("; ".join(problems) if problems else "valid against the task's schema", error=bool(problems))

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #c62828;" if error else "color: #2e7d32;")
