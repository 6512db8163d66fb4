"""A simple task editor: name, instructions, JSON Schema and the escalation ladder, saved as a task file.

Checked as you type with the engine's own task checks (each problem shown at its field); the ladder is hybrid mode's.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from loupe import taskfile
from loupe.core.errors import TaskError
from loupe.core.tasks import Task
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

_BAD = "border: 1px solid #c62828;"
FIELDS = ("name", "instructions", "schema", "escalation")
STARTER_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}},
    "required": ["label"],
    "additionalProperties": False,
}


def draft_problems(
    name: str,
    instructions: str,
    schema_text: str,
    escalation: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, str], Task | None]:
    """Problems by field (one of FIELDS) and the task when there are none."""
    try:
        schema: Any = json.loads(schema_text)
    except ValueError as exc:
        return {"schema": f"not JSON: {exc}"}, None
    raw: dict[str, Any] = {"name": name.strip(), "instructions": instructions, "schema": schema}
    if escalation is not None:
        raw["escalation"] = escalation
    if options:
        raw["options"] = options
    try:
        return {}, taskfile.from_dict(raw, "<task editor>").task
    except TaskError as exc:
        top = exc.pointer.split("/")[1] if exc.pointer.count("/") else "schema"
        field = top if top in FIELDS else "schema"
        inner = exc.pointer[len("/" + field) :] if exc.pointer.startswith("/" + field) else ""
        return {field: exc.problem + (f" (at {inner})" if inner and field == "schema" else "")}, None


class EscalationFields(QGroupBox):
    """The task's `escalation` table as a few fields; `table()` is None when the ladder is empty."""

    def __init__(self, start: dict[str, Any] | None, parent: QWidget | None = None) -> None:
        super().__init__("Escalation (hybrid mode; leave the ladder empty for none)", parent)
        start = start or {}
        self.start = start  # settings the form does not show (field thresholds, model rungs...) are kept as given
        self.ladder = QLineEdit(", ".join(start.get("ladder", [])))
        self.ladder.setPlaceholderText("e.g. local@low, local@high, cloud@high")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(float(start.get("thresholds", {}).get("overall", 0.5) or 0.0))
        self.cloud = QCheckBox("may send doubtful images to the cloud (the cloud must be enabled in Settings too)")
        self.cloud.setChecked(bool(start.get("cloud", False)))
        budget = start.get("budget", {})
        self.max_calls = QSpinBox()
        self.max_calls.setRange(0, 1_000_000)
        self.max_calls.setSpecialValueText("no cap")
        self.max_calls.setValue(int(budget.get("max_calls_per_job") or 0))
        self.max_spend = QDoubleSpinBox()
        self.max_spend.setRange(0.0, 100_000.0)
        self.max_spend.setPrefix("$")
        self.max_spend.setSpecialValueText("no cap")
        self.max_spend.setValue(float(budget.get("max_spend_per_day") or 0.0))
        form = QFormLayout(self)
        form.addRow("Ladder", self.ladder)
        form.addRow("Climb below confidence", self.threshold)
        form.addRow(self.cloud)
        form.addRow("Cloud calls per job", self.max_calls)
        form.addRow("Cloud spend per day", self.max_spend)

    def table(self) -> dict[str, Any] | None:
        """The `escalation` table for the task file."""
        steps = [s.strip() for s in self.ladder.text().split(",") if s.strip()]
        if not steps:
            return None
        budget: dict[str, Any] = dict(self.start.get("budget") or {})
        for key, box in (("max_calls_per_job", self.max_calls), ("max_spend_per_day", self.max_spend)):
            if box.value():
                budget[key] = box.value()
            else:
                budget.pop(key, None)
        thresholds = {**(self.start.get("thresholds") or {}), "overall": self.threshold.value()}
        table: dict[str, Any] = {
            **self.start,
            "ladder": steps,
            "thresholds": thresholds,
            "cloud": self.cloud.isChecked(),
        }
        table.pop("budget", None)
        if budget:
            table["budget"] = budget
        return table

    def connect_changes(self, slot: Any) -> None:
        """Call `slot` whenever any field changes."""
        self.ladder.textChanged.connect(slot)
        self.threshold.valueChanged.connect(slot)
        self.cloud.toggled.connect(slot)
        self.max_calls.valueChanged.connect(slot)
        self.max_spend.valueChanged.connect(slot)


class TaskEditor(QDialog):
    """Edits a new task (or a copy of one, keeping its options); `saved(path)` once written as a task file."""

    saved = Signal(str)

    def __init__(self, start: Task | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Task editor")
        self.resize(660, 720)
        self.options = asdict(start.options) if start else {}
        self.name = QLineEdit(f"{start.name}-copy" if start else "")  # a new task starts blank
        self.name.setPlaceholderText("a name for the task, e.g. bolts")
        self.instructions = QPlainTextEdit(start.instructions if start else "")
        self.instructions.setPlaceholderText("What to extract from each image, in plain words")
        self.schema = QPlainTextEdit(json.dumps(start.schema if start else STARTER_SCHEMA, indent=2))
        self.escalation = EscalationFields(start.escalation if start else None)
        self.errors = {k: QLabel() for k in FIELDS}
        for label in self.errors.values():
            label.setStyleSheet("color: #c62828;")
            label.setWordWrap(True)
        form = QFormLayout()
        for key, widget, title in (
            ("name", self.name, "Name"),
            ("instructions", self.instructions, "Instructions"),
            ("schema", self.schema, "JSON Schema"),
        ):
            form.addRow(title, widget)
            form.addRow("", self.errors[key])
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._ask_save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form, 1)
        layout.addWidget(self.escalation)
        layout.addWidget(self.errors["escalation"])
        layout.addWidget(self.buttons)
        self.task: Task | None = None
        for w in (self.instructions, self.schema):
            w.textChanged.connect(self.check)
        self.name.textChanged.connect(self.check)
        self.escalation.connect_changes(self.check)
        self.check()

    def check(self) -> dict[str, str]:
        """Validate the draft now; problems are shown under their fields and Save is enabled only without any."""
        problems, self.task = draft_problems(
            self.name.text(),
            self.instructions.toPlainText(),
            self.schema.toPlainText(),
            self.escalation.table(),
            self.options,
        )
        widgets: dict[str, QWidget] = {
            "name": self.name,
            "instructions": self.instructions,
            "schema": self.schema,
            "escalation": self.escalation.ladder,
        }
        for key, label in self.errors.items():
            label.setText(problems.get(key, ""))
            label.setVisible(key in problems)
            widgets[key].setStyleSheet(_BAD if key in problems else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(self.task is not None)
        return problems

    def save_to(self, path: Path) -> Path:
        """Write the task file (YAML, or JSON for a .json name) and close; raises ValueError while invalid."""
        if self.task is None:
            raise ValueError("the task has problems; fix them first")
        doc: dict[str, Any] = {
            "name": self.task.name,
            "instructions": self.task.instructions,
            "schema": self.task.schema,
        }
        if self.options:
            doc["options"] = self.options
        if self.task.escalation is not None:
            doc["escalation"] = self.task.escalation
        text = json.dumps(doc, indent=2) if path.suffix == ".json" else yaml.safe_dump(doc, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        self.saved.emit(str(path))
        self.accept()
        return path

    def _ask_save(self) -> None:
        if self.task is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save task file", f"{self.task.name}.yaml", "Task files (*.yaml *.json)"
        )
        if path:
            self.save_to(Path(path))
