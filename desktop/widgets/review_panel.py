"""The Review tab: doubtful stored results, lowest confidence first, with Accept (A), Reject (R) and Edit (E).

Arrows move through the queue. New results are inserted one by one (the queue is read in full only at start).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from pathlib import Path

from loupe.core.confidence import format_confidence
from loupe.core.schema.validate import validation_errors
from loupe.desktop.widgets.result_view import ImageCanvas
from loupe.store import ReviewError, ReviewQueue, Store, StoredResult, for_review, needs_review
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)


def order(stored: StoredResult) -> tuple[float, int]:
    """Lowest confidence first (no confidence at all, e.g. errors, before everything), then oldest first."""
    low = stored.result.min_confidence
    return (-1.0 if low is None else low, stored.id)


def pending_everywhere(store: Store) -> list[StoredResult]:
    """Unreviewed results needing a person, over every job in the store but evaluation runs, lowest first."""
    queue = ReviewQueue(store)
    return sorted((s for job in store.jobs() if for_review(job) for s in queue.pending(job.id)), key=order)


class ReviewPanel(QWidget):
    """Reads and writes the store on the GUI thread (small, indexed queries); `reviewed(id, decision)` after each."""

    reviewed = Signal(int, str)
    showing = Signal(str)  # the path of the result now shown: the window has its picture decoded
    findSimilar = Signal(int)  # result id: its look-alikes, in the Search tab
    showDuplicates = Signal(int)

    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.queue = ReviewQueue(store)
        self.list = QListWidget()
        self.list.currentItemChanged.connect(self._show)
        self.progress = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(8)
        self.done_count = 0  # decisions taken in this session
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
        self.similar_button = QPushButton("Find similar")
        self.similar_button.clicked.connect(lambda: self.current and self.findSimilar.emit(self.current.id))
        self.dupes_button = QPushButton("Show duplicates")
        self.dupes_button.clicked.connect(lambda: self.current and self.showDuplicates.emit(self.current.id))
        for key, slot in (("A", self.accept_current), ("R", self.reject_current), ("E", self.editor.setFocus)):
            QShortcut(QKeySequence(key), self.list, slot, context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence("Ctrl+S"), self, self.save_edit, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        buttons = QHBoxLayout()
        for b in (self.accept_button, self.reject_button, self.save_button):
            buttons.addWidget(b)
        look = QHBoxLayout()  # its own row: the window's minimum width stays what it was
        look.addStretch(1)
        for b in (self.similar_button, self.dupes_button):
            look.addWidget(b)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.detail)
        right_layout.addLayout(look)
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
        left_layout.addWidget(self.progress_bar)
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
            self.list.addItem(self._row(s))
        ids = [s.id for s in self.items]
        self.list.setCurrentRow(ids.index(keep) if keep in ids else (0 if ids else -1))
        self.list.blockSignals(False)
        if keep is None or keep not in ids:
            self._show()  # a different result: show it (the same one keeps the edit in progress)
        self._update_progress()

    def add_result(self, result_id: int) -> bool:
        """One new stored result: inserted in order if it needs a person (nothing else is re-read); True if so."""
        stored = self.store.result(result_id)
        threshold = self.store.job(stored.job_id).task.options.review_threshold
        if (
            stored.review is not None
            or not needs_review(stored, threshold)
            or any(s.id == result_id for s in self.items)
        ):
            return False
        at = bisect.bisect([order(s) for s in self.items], order(stored))
        self.items.insert(at, stored)
        empty = self.list.count() == 0
        self.list.blockSignals(True)
        self.list.insertItem(at, self._row(stored))
        self.list.blockSignals(False)
        if empty:
            self.list.setCurrentRow(0)  # shows it
        self._update_progress()
        return True

    @staticmethod
    def _row(s: StoredResult) -> QListWidgetItem:
        low = s.result.min_confidence
        conf = "—" if low is None else format_confidence(low)
        item = QListWidgetItem(f"{conf}  {Path(s.path).name}  ({s.result.status.value})")
        item.setData(Qt.ItemDataRole.UserRole, s.id)
        return item

    def _update_progress(self) -> None:
        total = self.done_count + len(self.items)
        self.progress.setText(f"{len(self.items)} to review · {self.done_count} done this session")
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(self.done_count)

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
        del self.items[row]  # only this row changes; the rest of the queue is not re-read
        self.list.blockSignals(True)
        self.list.takeItem(row)
        self.list.setCurrentRow(min(row, len(self.items) - 1) if self.items else -1)
        self.list.blockSignals(False)
        self._show()
        self.done_count += 1
        self._update_progress()
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
        low = "" if r.min_confidence is None else f" · lowest confidence {format_confidence(r.min_confidence)}"
        last = stored.escalation[-1] if stored.escalation else None
        handed = (
            f"\nsent to review by the ladder: {last.get('why')}"
            if isinstance(last, dict) and last.get("step") == "review"
            else ""
        )
        self.detail.setText(f"{stored.path}\nstatus {r.status.value}{reason}{low} · {r.model}{handed}")
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
        task = self.store.job(stored.job_id).task
        problems = validation_errors(task.schema, data, formats=task.options.format)
        self._say("; ".join(problems) if problems else "valid against the task's schema", error=bool(problems))

    def _say(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #c62828;" if error else "color: #2e7d32;")
