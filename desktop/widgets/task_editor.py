"""A simple task editor: name, instructions and JSON Schema, checked as you type with the engine's own task
checks (each problem shown at its field), saved as a task file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from engine.errors import TaskError
from engine.tasks import Task, task_from_dict

_BAD = "border: 1px solid #c62828;"
STARTER_SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"],
                  "additionalProperties": False}


def draft_problems(name: str, instructions: str, schema_text: str) -> tuple[dict[str, str], Task | None]:
    """Problems by field ('name', 'instructions', 'schema') and the task when there are none."""
    try:
        schema: Any = json.loads(schema_text)
    except ValueError as exc:
        return {"schema": f"not JSON: {exc}"}, None
    raw = {"name": name.strip(), "instructions": instructions, "schema": schema}
    try:
        return {}, task_from_dict(raw, "<task editor>")
    except TaskError as exc:
        field = exc.pointer.split("/")[1] if exc.pointer.count("/") else "schema"
        where = exc.pointer[len("/schema"):] if field == "schema" and exc.pointer.startswith("/schema") else ""
        return {field if field in ("name", "instructions") else "schema": exc.problem + (f" (at {where})"
                                                                                          if where else "")}, None


class TaskEditor(QDialog):
    """Edits a new task (or a copy of one); `saved(path)` once written as a task file."""

    saved = Signal(str)

    def __init__(self, start: Task | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Task editor")
        self.resize(640, 560)
        self.name = QLineEdit(start.name if start else "my-task")
        self.instructions = QPlainTextEdit(start.instructions if start else "")
        self.instructions.setPlaceholderText("What to extract from each image, in plain words")
        self.schema = QPlainTextEdit(json.dumps(start.schema if start else STARTER_SCHEMA, indent=2))
        self.errors = {k: QLabel() for k in ("name", "instructions", "schema")}
        for label in self.errors.values():
            label.setStyleSheet("color: #c62828;")
            label.setWordWrap(True)
        form = QFormLayout()
        for key, widget, title in (("name", self.name, "Name"), ("instructions", self.instructions, "Instructions"),
                                   ("schema", self.schema, "JSON Schema")):
            form.addRow(title, widget)
            form.addRow("", self.errors[key])
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._ask_save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form, 1)
        layout.addWidget(self.buttons)
        self.task: Task | None = None
        for w in (self.instructions, self.schema):
            w.textChanged.connect(self.check)
        self.name.textChanged.connect(self.check)
        self.check()

    def check(self) -> dict[str, str]:
        """Validate the draft now; problems are shown under their fields and Save is enabled only without any."""
        problems, self.task = draft_problems(self.name.text(), self.instructions.toPlainText(),
                                             self.schema.toPlainText())
        widgets = {"name": self.name, "instructions": self.instructions, "schema": self.schema}
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
        doc = {"name": self.task.name, "instructions": self.task.instructions, "schema": self.task.schema}
        text = json.dumps(doc, indent=2) if path.suffix == ".json" else yaml.safe_dump(doc, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        self.saved.emit(str(path))
        self.accept()
        return path

    def _ask_save(self) -> None:
        if self.task is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save task file", f"{self.task.name}.yaml",
                                              "Task files (*.yaml *.json)")
        if path:
            self.save_to(Path(path))
