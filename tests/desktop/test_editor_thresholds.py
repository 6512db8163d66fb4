"""The task editor keeps a task's per-field thresholds (wildcard keys included) and shows a bad one at its field."""

from __future__ import annotations

import json
from pathlib import Path

from loupe.core.tasks import load_task_file, task_from_dict
from loupe.desktop.widgets.task_editor import TaskEditor

SCHEMA = {
    "type": "object",
    "properties": {"parts": {"type": "array", "items": {"type": "object", "properties": {"v": {"type": "integer"}}}}},
    "required": ["parts"],
}
ESCALATION = {
    "ladder": ["local@low", "local@high"],
    "models": {},
    "thresholds": {"overall": 0.4, "fields": {"/parts/*/v": 0.8, "/parts/0/v": 0.3}},
    "budget": {"max_calls_per_hour": 7},
}


def test_editing_a_task_keeps_its_field_thresholds(qtbot, tmp_path: Path) -> None:
    start = task_from_dict(
        {"name": "parts", "instructions": "List the parts.", "schema": SCHEMA, "escalation": ESCALATION}, "parts.json"
    )
    editor = TaskEditor(start)
    qtbot.addWidget(editor)
    editor.instructions.setPlainText("List every part.")
    editor.escalation.max_calls.setValue(3)
    path = editor.save_to(tmp_path / "parts.json")
    saved = load_task_file(path).escalation
    assert saved["thresholds"] == {"overall": 0.4, "fields": {"/parts/*/v": 0.8, "/parts/0/v": 0.3}}
    assert saved["budget"] == {"max_calls_per_hour": 7, "max_calls_per_job": 3}
    assert json.loads(path.read_text())["instructions"] == "List every part."


def test_a_wildcard_the_new_schema_cannot_hold_is_shown_at_the_escalation_field(qtbot) -> None:
    start = task_from_dict(
        {"name": "parts", "instructions": "List the parts.", "schema": SCHEMA, "escalation": ESCALATION}, "parts.json"
    )
    editor = TaskEditor(start)
    qtbot.addWidget(editor)
    editor.schema.setPlainText(json.dumps({"type": "object", "properties": {"parts": {"type": "string"}}}))
    problems = editor.check()
    assert set(problems) == {"escalation"} and "'/parts/*/v'" in problems["escalation"]
    assert "no list at /parts" in editor.errors["escalation"].text() and editor.task is None
