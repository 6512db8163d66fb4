"""One result: the image with its boxes drawn in pixel space, the JSON as a tree with per-field confidence."""

from __future__ import annotations

import html
import json
from typing import Any

from loupe.core.confidence import format_confidence
from loupe.core.types import Box, Result, Status
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

LOW_MARK = "⚠ "


def confidence_color(confidence: float | None) -> QColor:
    """Green when sure, amber when unsure, red when doubtful, grey when unknown."""
    if confidence is None:
        return QColor("#9e9e9e")
    if confidence >= 0.8:
        return QColor("#2e7d32")
    if confidence >= 0.5:
        return QColor("#f9a825")
    return QColor("#d32f2f")


class ImageCanvas(QGraphicsView):
    """The upright image with one rectangle + label per box; wheel zooms, drag pans."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.box_items: list[QGraphicsRectItem] = []
        self.label_items: list[QGraphicsSimpleTextItem] = []
        self.label_font = QFont("Sans", 9)
        warm = QGraphicsSimpleTextItem("warm-up 0.00")  # font lookup and shaping now, not at the first result
        warm.setFont(self.label_font)
        warm.boundingRect()

    def show_boxes(self, boxes: tuple[Box, ...], image: QImage | None) -> None:
        """Draw the image (when decoded) and the boxes, in the image's own pixel coordinates."""
        scene = self.scene()
        scene.clear()
        self.box_items, self.label_items = [], []
        if image is not None and not image.isNull():
            scene.addPixmap(QPixmap.fromImage(image))
        for box in boxes:
            x0, y0, x1, y1 = box.pixels
            color = confidence_color(box.confidence)
            pen = QPen(color, 2)
            pen.setCosmetic(True)  # stays 2 px wide at any zoom
            rect = scene.addRect(QRectF(x0, y0, x1 - x0, y1 - y0), pen)
            conf = "" if box.confidence is None else f" {format_confidence(box.confidence)}"
            label = QGraphicsSimpleTextItem(f"{box.label or '?'}{conf}")
            label.setFont(self.label_font)
            label.setBrush(QBrush(QColor("white")))
            text = label.boundingRect()
            # a filled tag above the box's top-left corner, readable on any image
            tag = scene.addRect(
                QRectF(0, -text.height() - 2, text.width() + 6, text.height() + 2),
                QPen(Qt.PenStyle.NoPen),
                QBrush(color),
            )
            tag.setFlag(tag.GraphicsItemFlag.ItemIgnoresTransformations)  # same size on screen at any zoom
            tag.setPos(x0, y0)
            label.setParentItem(tag)
            label.setPos(3, -text.height() - 1)
            self.box_items.append(rect)
            self.label_items.append(label)
        self.fit()

    def fit(self) -> None:
        """Show the whole picture."""
        rect = self.scene().itemsBoundingRect()
        if not rect.isEmpty():
            self.setSceneRect(rect)
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)

    def wheelEvent(self, event: QWheelEvent) -> None:
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.scale(factor, factor)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class JsonTree(QTreeWidget):
    """The result's data as a tree: key, value, and the field's confidence (low ones marked; a list of scalars is
    one row with its lowest confidence)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Field", "Value", "Confidence"])
        self.setColumnWidth(0, 130)
        header = self.header()  # the value takes what is left; the confidence column is never clipped
        header.setStretchLastSection(False)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)

    def show_data(self, data: Any, confidence: dict[str, float], threshold: float) -> None:
        """Fill the tree (cleared first); a result without data (an error) leaves it empty."""
        self.clear()
        if data is None:
            return
        self._add(
            self.invisibleRootItem(),
            "(root)" if not isinstance(data, dict | list) else "",
            data,
            "",
            confidence,
            threshold,
        )
        self.expandAll()

    def _add(
        self,
        parent: QTreeWidgetItem,
        key: str,
        value: Any,
        pointer: str,
        confidence: dict[str, float],
        threshold: float,
    ) -> None:
        children: list[tuple[str, Any]]
        inline = isinstance(value, list) and bool(value) and not any(isinstance(v, dict | list) for v in value)
        if isinstance(value, dict):
            children = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, list) and not inline:
            children = [(f"[{i}]", v) for i, v in enumerate(value)]
        else:
            children = []  # a scalar, or a short list of scalars (a box) shown on one row
        if pointer == "" and children:
            target = parent
        else:
            target = QTreeWidgetItem(parent, [key, "" if children else json.dumps(value, ensure_ascii=False), ""])
            target.setData(0, Qt.ItemDataRole.UserRole, pointer)
            inner = [c for p, c in confidence.items() if p.startswith(pointer + "/")] if inline else []
            conf = min(inner) if inner else confidence.get(pointer)
            if conf is not None:
                low = conf < threshold
                target.setText(2, f"{LOW_MARK if low else ''}{format_confidence(conf)}")
                target.setForeground(2, confidence_color(conf))
                if low:
                    target.setToolTip(2, f"below the review threshold {format_confidence(threshold)}")
        for child_key, child in children:
            raw_key = child_key[1:-1] if isinstance(value, list) else child_key
            self._add(target, child_key, child, f"{pointer}/{_escape(raw_key)}", confidence, threshold)

    def items(self) -> dict[str, QTreeWidgetItem]:
        """Every row by its JSON Pointer (what the tests read)."""
        out: dict[str, QTreeWidgetItem] = {}
        stack = [self.topLevelItem(i) for i in range(self.topLevelItemCount())]
        while stack:
            item = stack.pop()
            out[str(item.data(0, Qt.ItemDataRole.UserRole))] = item
            stack.extend(item.child(i) for i in range(item.childCount()))
        return out


class StepsTable(QTreeWidget):
    """The escalation steps a result went through: what, why, outcome, cost, time (hidden when none)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Step", "Model", "Why", "Outcome", "Cost", "Time"])
        self.setRootIsDecorated(False)
        self.setWordWrap(True)
        header = self.header()
        for col, mode in enumerate(
            (
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.Stretch,
                QHeaderView.ResizeMode.Stretch,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
            )
        ):
            header.setSectionResizeMode(col, mode)
        header.setStretchLastSection(False)

    def show_steps(self, steps: list[dict[str, Any]]) -> None:
        """One row per rung taken or skipped, then the hand-over to review if any."""
        self.clear()
        for s in steps:
            if s.get("step") == "review":
                row = QTreeWidgetItem(
                    ["review", "a person", str(s.get("why") or ""), "sent to the review queue", "", ""]
                )
            else:
                outcome = str(s.get("outcome", ""))
                if s.get("note"):
                    outcome += f": {s['note']}"
                row = QTreeWidgetItem(
                    [
                        str(s.get("step", "")),
                        str(s.get("model", "")),
                        str(s.get("why", "")),
                        outcome,
                        f"${float(s.get('cost_usd') or 0):.4f}",
                        f"{float(s.get('ms') or 0) / 1000:.1f} s",
                    ]
                )
            for col in range(6):
                row.setToolTip(col, row.text(col))
            self.addTopLevelItem(row)
        self.setVisible(bool(steps))


class ResultView(QWidget):
    """Status line (with the reason when not ok), the image canvas and the JSON tree side by side, and the
    escalation steps below when the result climbed a ladder. `findSimilar(id)` / `showDuplicates(id)` when the
    shown result is stored (its id known) and a user asks for its look-alikes."""

    findSimilar = Signal(int)
    showDuplicates = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QLabel("Drop images to analyze them.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.canvas = ImageCanvas()
        self.tree = JsonTree()
        self.raw = QPlainTextEdit()
        self.raw.setReadOnly(True)
        self.raw.hide()
        self.raw_button = QPushButton("Raw output")
        self.raw_button.setCheckable(True)
        self.raw_button.toggled.connect(self.raw.setVisible)
        self.fit_button = QPushButton("Fit")
        self.fit_button.clicked.connect(self.canvas.fit)
        self.similar_button = QPushButton("Find similar")
        self.similar_button.clicked.connect(lambda: self._ask(self.findSimilar))
        self.dupes_button = QPushButton("Show duplicates")
        self.dupes_button.clicked.connect(lambda: self._ask(self.showDuplicates))
        self.steps = StepsTable()
        self.steps.hide()
        data = QWidget()  # the tree, with the look-alike searches below it (not in the header: it sets the width)
        data_layout = QVBoxLayout(data)
        data_layout.setContentsMargins(0, 0, 0, 0)
        data_layout.addWidget(self.tree, 1)
        look = QHBoxLayout()
        for b in (self.similar_button, self.dupes_button):
            b.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # never widen the window
            look.addWidget(b)
        data_layout.addLayout(look)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(data)
        right.addWidget(self.raw)
        split = QSplitter()
        split.addWidget(self.canvas)
        split.addWidget(right)
        split.setSizes([520, 380])
        body = QSplitter(Qt.Orientation.Vertical)  # the ladder's steps get the full width below
        body.addWidget(split)
        body.addWidget(self.steps)
        body.setSizes([520, 150])
        header = QHBoxLayout()
        header.addWidget(self.status, 1)
        header.addWidget(self.fit_button)
        header.addWidget(self.raw_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(body, 1)
        self.result: Result | None = None
        self.path = ""
        self.threshold = 0.5
        self.result_id: int | None = None
        self._update_search_buttons()

    def show_result(
        self,
        path: str,
        result: Result,
        threshold: float,
        steps: list[dict[str, Any]] | None = None,
        *,
        result_id: int | None = None,
    ) -> None:
        """Show a result at once (boxes on a blank canvas); `set_image` adds the picture once decoded. RESULT_ID:
        its row in the store (Find similar / Show duplicates need it)."""
        self.result, self.path, self.threshold, self.result_id = result, path, threshold, result_id
        self._update_search_buttons()
        self.steps.show_steps(steps or [])
        self.status.setText(self._status_text(path, result, steps or []))
        self.canvas.show_boxes(result.boxes, None)
        self.tree.show_data(result.data, result.confidence, threshold)
        self.raw.setPlainText(result.raw)

    def _update_search_buttons(self) -> None:
        for b in (self.similar_button, self.dupes_button):
            b.setEnabled(self.result_id is not None)

    def _ask(self, signal: Any) -> None:
        if self.result_id is not None:
            signal.emit(self.result_id)

    def set_image(self, image: QImage) -> None:
        """The decoded picture of the shown result."""
        if self.result is not None:
            self.canvas.show_boxes(self.result.boxes, image)

    @staticmethod
    def _status_text(path: str, result: Result, steps: list[dict[str, Any]]) -> str:
        name = path.rsplit("/", 1)[-1]
        text = f"<b>{html.escape(name)}</b> — status <b>{result.status.value}</b>"
        if result.status is not Status.OK and result.error:
            text += f": {html.escape(result.error)}"
        low = result.min_confidence
        if low is not None:
            text += f" · lowest confidence {format_confidence(low)}"
        ms = sum(float(s.get("ms") or 0) for s in steps) if steps else result.timings.total_ms  # the whole ladder
        text += f" · {ms / 1000:.1f} s · {result.model}"
        if steps and steps[-1].get("step") == "review":
            text += f" · <b>sent to review</b>: {html.escape(str(steps[-1].get('why') or ''))}"
        return text
