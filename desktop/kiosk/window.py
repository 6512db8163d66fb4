"""The kiosk window: last image with boxes, a huge verdict, shift counts, recent results, health; PIN to leave."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loupe.desktop.bridge import ImageDecoder
from loupe.desktop.kiosk.bridge import LineBridge
from loupe.desktop.kiosk.words import operator_reason
from loupe.desktop.widgets.result_view import ImageCanvas
from loupe.floor import LineOutcome, SourceHealth
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QColor, QFont, QFontMetrics, QImage, QKeyEvent, QResizeEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

COLORS = {"PASS": "#1b8a3a", "FAIL": "#c62828", "REVIEW": "#e0a800", "": "#455a64"}
HEALTH = {
    "ok": "#43a047",
    "ready": "#43a047",
    "waiting": "#9e9e9e",
    "loading": "#e0a800",
    "reconnecting": "#e53935",
    "failed": "#e53935",
    "ended": "#9e9e9e",
}
Health = Callable[[], str]  # a one-line outputs status, read every few seconds


def shift_start(now: datetime, hours: float, first: int = 6) -> datetime:
    """The start of the shift `now` falls in (shifts of `hours` from `first` o'clock local time)."""
    local = now.astimezone()
    base = local.replace(hour=first, minute=0, second=0, microsecond=0)
    if local < base:
        base -= timedelta(days=1)
    n = int((local - base) / timedelta(hours=hours))
    return base + n * timedelta(hours=hours)


def _font(size: int, bold: bool = False) -> QFont:
    font = QFont("Sans", size)
    font.setBold(bold)
    return font


class VerdictLabel(QLabel):
    """The huge verdict: its font shrinks to fit the label, so "WAITING" or "REVIEW" is never clipped."""

    LONGEST = ("WAITING", "REVIEW")
    MAX_POINTS = 96
    MIN_POINTS = 12

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFont(_font(self.MAX_POINTS, bold=True))
        self.setMinimumSize(120, 80)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def fits(self) -> bool:
        """Whether the longest verdict fits the label as it is now (what the tests check)."""
        metrics = QFontMetrics(self.font())
        widest = max(metrics.horizontalAdvance(t) for t in (*self.LONGEST, self.text()))
        return widest <= self.contentsRect().width() and metrics.height() <= self.contentsRect().height()

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._fit()
        super().resizeEvent(event)

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def _fit(self) -> None:
        room = self.contentsRect().adjusted(8, 4, -8, -4)
        points = self.MAX_POINTS
        while points > self.MIN_POINTS:
            metrics = QFontMetrics(_font(points, bold=True))
            widest = max(metrics.horizontalAdvance(t) for t in (*self.LONGEST, self.text()))
            if widest <= room.width() and metrics.height() <= room.height():
                break
            points -= 4
        if self.font().pointSize() != points:
            self.setFont(_font(points, bold=True))


SYNTHETIC_WARNING = (
    "⚠ TEST MODEL — {name} has random weights: these verdicts mean nothing. Do not use them on the line."
)


class KioskWindow(QWidget):
    """Shows what the line reports through `bridge`; nothing here blocks, nothing opens a dialog."""

    def __init__(
        self,
        bridge: LineBridge,
        *,
        task: str,
        pin: str,
        history: list[LineOutcome] | None = None,
        counts: dict[str, int] | None = None,
        last_n: int = 8,
        shift_hours: float = 8.0,
        outputs_health: Health | None = None,
        on_leave: Callable[[], None] | None = None,
        on_trigger: Callable[[], None] | None = None,
        schema: dict[str, Any] | None = None,
        synthetic: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Loupe kiosk — {task}")
        self.setStyleSheet("background: #101418; color: #eceff1;")
        self.pin, self.last_n, self.shift_hours = pin, last_n, shift_hours
        self.on_leave, self.outputs_health, self.on_trigger = on_leave, outputs_health, on_trigger
        self.unlocked = False
        self.schema = schema  # the task's JSON Schema: its titles name the fields in the reasons
        self.counts = {"PASS": 0, "FAIL": 0, "REVIEW": 0, **(counts or {})}
        self.shift_began = shift_start(datetime.now(UTC), shift_hours)
        self.shown: LineOutcome | None = None
        self.decoder = ImageDecoder(self)
        self._token = 0
        self._build(task)
        bridge.modelState.connect(self._model_state)
        bridge.sourceState.connect(self._source_state)
        bridge.outcome.connect(self.show_outcome)
        bridge.problem.connect(self.show_problem)
        bridge.synthetic.connect(self.show_synthetic)
        if synthetic:
            self.show_synthetic(synthetic)
        self.decoder.decoded.connect(self._decoded)
        for outcome in reversed(history or []):
            self._add_recent(outcome)
        if history:
            self._show_verdict(history[0])
        self._update_counts()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_outputs)
        self._timer.start(2000)
        self.refresh_outputs()

    # -- layout ------------------------------------------------------------------------------------------
    def _build(self, task: str) -> None:
        self.canvas = ImageCanvas(self)
        self.canvas.setStyleSheet("background: #000; border: none;")
        self.verdict = VerdictLabel("WAITING", self)
        self.verdict.setMinimumHeight(160)
        self.reason = QLabel("", self)
        self.reason.setFont(_font(20))
        self.reason.setWordWrap(True)
        self.reason.setAlignment(Qt.AlignmentFlag.AlignCenter)
        counts = QGridLayout()
        self.count_labels: dict[str, QLabel] = {}
        for col, name in enumerate(("PASS", "FAIL", "REVIEW")):
            title = QLabel(name, self)
            title.setFont(_font(18, bold=True))
            title.setStyleSheet(f"color: {COLORS[name]};")
            value = QLabel("0", self)
            value.setFont(_font(48, bold=True))
            counts.addWidget(title, 0, col, Qt.AlignmentFlag.AlignCenter)
            counts.addWidget(value, 1, col, Qt.AlignmentFlag.AlignCenter)
            self.count_labels[name] = value
        self.shift_label = QLabel("", self)
        self.shift_label.setFont(_font(14))
        self.recent = QListWidget(self)
        self.recent.setFont(_font(18))
        self.recent.setStyleSheet("background: #1a2027; border: none;")
        self.recent.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.problem = QLabel("", self)
        self.problem.setFont(_font(18, bold=True))
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("background: #b71c1c; color: white; padding: 8px;")
        self.problem.hide()
        self.synthetic_banner = QLabel("", self)
        self.synthetic_banner.setFont(_font(20, bold=True))
        self.synthetic_banner.setWordWrap(True)
        self.synthetic_banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.synthetic_banner.setStyleSheet("background: #ffd600; color: #000; padding: 8px;")
        self.synthetic_banner.hide()
        self.source_health = QLabel("source: starting", self)
        self.model_health = QLabel("model: starting", self)
        self.outputs_label = QLabel("", self)
        for label in (self.source_health, self.model_health, self.outputs_label):
            label.setFont(_font(16))
            label.setWordWrap(True)  # a long error wraps in place instead of widening the window
        self.leave = QPushButton("leave (PIN)", self)
        self.leave.setFont(_font(16))
        self.leave.setFlat(True)
        self.leave.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.leave.clicked.connect(self.ask_pin)
        self.pin_box = QLineEdit(self)
        self.pin_box.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin_box.setPlaceholderText("operator PIN, then Enter")
        self.pin_box.setFont(_font(20))
        self.pin_box.setStyleSheet("background: #fff; color: #000;")
        self.pin_box.setMaximumWidth(360)
        self.pin_box.returnPressed.connect(self._check_pin)
        self.pin_box.hide()
        self.pin_note = QLabel("", self)
        self.pin_note.setFont(_font(16))

        side = QVBoxLayout()
        title = QLabel(f"task: {task}", self)
        title.setFont(_font(16))
        side.addWidget(title)
        side.addWidget(self.verdict)
        side.addWidget(self.reason)
        side.addLayout(counts)
        side.addWidget(self.shift_label)
        side.addWidget(self.recent, 1)
        main = QHBoxLayout()
        main.addWidget(self.canvas, 3)
        main.addLayout(side, 2)
        status = QHBoxLayout()
        for w in (self.source_health, self.model_health):
            status.addWidget(w, 1)
        status.addWidget(self.pin_box)
        status.addWidget(self.pin_note)
        status.addWidget(self.leave)
        root = QVBoxLayout(self)
        root.addWidget(self.synthetic_banner)
        root.addWidget(self.problem)
        root.addLayout(main, 1)
        root.addLayout(status)
        root.addWidget(self.outputs_label)

    # -- what the line says -----------------------------------------------------------------------------
    def show_outcome(self, outcome: LineOutcome) -> None:
        """A new judged image: verdict, picture, counts, list; a shown problem clears once things work again."""
        now = datetime.now(UTC)
        began = shift_start(now, self.shift_hours)
        if began != self.shift_began:
            self.shift_began = began
            self.counts = dict.fromkeys(self.counts, 0)
        self.counts[outcome.judgement.verdict.value] += 1
        self._update_counts()
        self._add_recent(outcome)
        self._show_verdict(outcome)
        self.problem.hide()

    def show_problem(self, message: str) -> None:
        """An error, in place, until the next good outcome."""
        self.problem.setText(f"⚠ {message}")
        self.problem.show()

    def show_synthetic(self, name: str) -> None:
        """The model has random weights (a synthetic test model): a yellow banner that stays."""
        self.synthetic_banner.setText(SYNTHETIC_WARNING.format(name=name or "the model"))
        self.synthetic_banner.show()

    def reason_text(self, outcome: LineOutcome) -> str:
        """The outcome's reason in the operator's words (the schema's titles, not JSON Pointers)."""
        return operator_reason(outcome.judgement.reason, self.schema)

    def _show_verdict(self, outcome: LineOutcome) -> None:
        self.shown = outcome
        name = outcome.judgement.verdict.value
        self.verdict.setText(name)
        self.verdict.setStyleSheet(f"background: {COLORS[name]}; color: white; border-radius: 12px;")
        self.reason.setText(f"{Path(outcome.image).name}\n{self.reason_text(outcome)}")
        self._token = self.decoder.request(outcome.image)
        self.canvas.show_boxes(outcome.result.boxes, None)

    def _decoded(self, token: int, image: QImage) -> None:
        if token == self._token and self.shown is not None:
            self.canvas.show_boxes(self.shown.result.boxes, image)

    def _add_recent(self, outcome: LineOutcome) -> None:
        name = outcome.judgement.verdict.value
        try:
            at = datetime.fromisoformat(outcome.at).astimezone().strftime("%H:%M:%S")  # the operator's clock
        except ValueError:
            at = outcome.at
        item = QListWidgetItem(f"{at}  {name:6}  {Path(outcome.image).name}")
        item.setForeground(QColor(COLORS[name]))
        item.setToolTip(self.reason_text(outcome))
        self.recent.insertItem(0, item)
        while self.recent.count() > self.last_n:
            self.recent.takeItem(self.recent.count() - 1)

    def _update_counts(self) -> None:
        for name, label in self.count_labels.items():
            label.setText(str(self.counts.get(name, 0)))
        self.shift_label.setText(f"shift since {self.shift_began.astimezone():%H:%M}")

    def _model_state(self, state: str, detail: str) -> None:
        self._health(self.model_health, "model", state, detail)
        if state in ("loading", "ready"):
            self.model_health.setText(f"{self.model_health.text()} — {detail}")
        if state == "failed":
            self.show_problem(f"model: {detail}")
        elif state == "ready":
            self.problem.hide()

    def _source_state(self, health: SourceHealth) -> None:
        self._health(self.source_health, "source", health.state, health.detail)
        if health.state == "reconnecting":  # the last verdict is getting old: say why, big
            self.show_problem(f"source: {health.detail}")
        elif health.ok and self.problem.text().startswith("⚠ source:"):
            self.problem.hide()

    @staticmethod
    def _health(label: QLabel, what: str, state: str, detail: str) -> None:
        label.setText(f"● {what}: {state}")
        label.setToolTip(detail)
        label.setStyleSheet(f"color: {HEALTH.get(state, '#eceff1')};")

    def refresh_outputs(self) -> None:
        """Read the outputs' health again (every 2 s on a timer)."""
        if self.outputs_health is not None:
            try:
                text = self.outputs_health()
            except Exception as exc:  # the store is busy or gone: say so, try again next tick
                text = f"outputs: {exc}"
            self.outputs_label.setText(text)
            self.outputs_label.setStyleSheet("color: #e53935;" if "DOWN" in text or "error" in text else "")

    # -- leaving --------------------------------------------------------------------------------------------
    def ask_pin(self) -> None:
        """Show the PIN field in the status bar (no dialog)."""
        self.pin_box.clear()
        self.pin_box.show()
        self.pin_box.setFocus()
        self.pin_note.setText("")

    def _check_pin(self) -> None:
        if self.pin_box.text() == self.pin:
            self.unlocked = True
            self.close()
            return
        self.pin_box.clear()
        self.pin_note.setText("wrong PIN")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            if self.pin_box.isVisible():
                self.pin_box.hide()
                self.pin_note.setText("")
            else:
                self.ask_pin()
            return
        if event.key() == Qt.Key.Key_Space and self.on_trigger is not None and not self.pin_box.hasFocus():
            self.on_trigger()  # a camera in trigger mode grabs one frame (foot pedals type a space, too)
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.unlocked:  # only the operator PIN ends the kiosk
            event.ignore()
            self.ask_pin()
            return
        self._timer.stop()
        if self.on_leave is not None:
            self.on_leave()
        self.decoder.wait()
        event.accept()
