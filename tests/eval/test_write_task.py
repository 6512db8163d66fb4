"""Fitted thresholds written into a task file: YAML and JSON are rewritten and re-checked; TOML is refused plainly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from loupe.core.errors import TaskError
from loupe.core.tasks import load_task_file
from loupe.eval.thresholds import write_thresholds

from tests.eval.conftest import DIGIT_TASK


def test_yaml_task_gets_the_fields_and_keeps_its_other_settings(tmp_path: Path):
    path = tmp_path / "digit.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **DIGIT_TASK,
                "escalation": {
                    "ladder": ["local@low", "local@high"],
                    "thresholds": {"overall": 0.4, "fields": {"/old": 0.2}},
                },
            }
        )
    )
    write_thresholds(path, {"/n": 0.73})
    task = load_task_file(path)
    assert task.escalation == {
        "ladder": ["local@low", "local@high"],
        "thresholds": {"overall": 0.4, "fields": {"/old": 0.2, "/n": 0.73}},
    }
    assert task.schema == DIGIT_TASK["schema"]


def test_bad_targets_are_refused_and_the_file_is_left_alone(tmp_path: Path):
    toml = tmp_path / "digit.toml"
    toml.write_text('name = "digit"\n')
    with pytest.raises(TaskError, match=r"\.json or \.yaml.*\"/n\": 0\.5"):
        write_thresholds(toml, {"/n": 0.5})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**DIGIT_TASK, "escalation": {"thresholds": []}}))
    before = broken.read_text()
    with pytest.raises(TaskError, match="thresholds must be a table"):
        write_thresholds(broken, {"/n": 0.5})
    assert broken.read_text() == before
    good = tmp_path / "digit.json"
    good.write_text(json.dumps(DIGIT_TASK))
    with pytest.raises(TaskError, match="fields maps JSON Pointers"):  # not a pointer: checked before writing
        write_thresholds(good, {"n": 0.5})
    assert json.loads(good.read_text()) == DIGIT_TASK
