"""List fields on the tiny model: `eval --write-task` writes `*` patterns, and an image with more items than the
evaluation set saw is escalated on its extra item (the real llama.cpp engine, through the `loupe` CLI)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from loupe.core.tasks import load_task_file
from loupe.escalate.config import policy_from_dict
from loupe.models.synthetic import SyntheticModel

from tests.hybrid.test_cli_escalate import _model, _run
from tests.noise import write_noise_pngs

PART = {
    "type": "object",
    "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["v"],
    "additionalProperties": False,
}


def _task_file(path: Path, items: int, fields: dict[str, float] | None = None) -> Path:
    """A task whose answer lists exactly `items` parts (the grammar holds a random-weight model to that count)."""
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["parts"],
        "properties": {"parts": {"type": "array", "items": PART, "minItems": items, "maxItems": items}},
    }
    escalation: dict[str, Any] = {"ladder": ["local@low", "local@high"], "thresholds": {"overall": None}}
    if fields is not None:
        escalation["thresholds"]["fields"] = fields
    path.write_text(
        json.dumps(
            {
                "name": "parts",
                "instructions": "List the parts.",
                "schema": schema,
                "options": {"max_tokens": 96},
                "escalation": escalation,
            }
        )
    )
    return path


def test_write_task_writes_field_patterns_in_place_of_old_concrete_keys(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    write_noise_pngs(tmp_path / "set" / "images", 2, seed=5, name="{i:03d}.png")
    labels = tmp_path / "set" / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"image": f"images/{i:03d}.png", "data": {"parts": [{"v": 6}, {"v": 1}]}}) + "\n"
            for i in range(2)
        )
    )
    older = {"/parts/0/v": 0.25, "/parts/1/v": 0.25, "/parts": 0.1}  # as an older `--write-task` wrote them
    task = _task_file(tmp_path / "parts.json", 2, older)
    assert policy_from_dict(load_task_file(task).escalation).thresholds.fields == older  # still loads
    code, out, err = _run(
        [
            "eval",
            str(labels),
            "--task-file",
            str(task),
            *_model(tiny_models),
            "--out",
            str(tmp_path / "report"),
            "--db",
            str(tmp_path / "eval.db"),
            "--fit-thresholds",
            "--target-accuracy",
            "0.5",
            "--write-task",
            "--json",
        ]
    )
    assert code == 0, err
    brief = json.loads(out)
    (system,) = brief["systems"]
    assert list(system["fit"]["pointers"]) == ["/parts/*/v"]  # one pattern, no indexes
    fitted = system["fit"]["fields"]["/parts/*/v"]
    assert 0 < fitted <= 1 and brief["keys_replaced"] == ["/parts/0/v", "/parts/1/v"]
    # the stale concrete keys would beat the new pattern on items 0 and 1: they are gone; other keys are kept
    assert load_task_file(task).escalation["thresholds"]["fields"] == {"/parts": 0.1, "/parts/*/v": fitted}


def test_an_extra_list_item_is_escalated_on_its_own_confidence(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
) -> None:
    folder = tmp_path / "imgs"
    write_noise_pngs(folder, 1, seed=3)
    seen = {"/parts/0/v": 0.05, "/parts/1/v": 0.05}  # concrete keys from a set whose images had two parts
    old = _task_file(tmp_path / "old.json", 3, seen)  # ...and now an image with three
    code, out, err = _run(
        [
            "analyze",
            str(folder),
            "--task-file",
            str(old),
            *_model(tiny_models),
            "--escalate",
            "--db",
            str(tmp_path / "old.db"),
            "--json",
        ]
    )
    assert code == 0, err
    (line,) = [json.loads(x) for x in out.splitlines()]
    assert len(line["data"]["parts"]) == 3 and line["confidence"]["/parts/2/v"] < 0.9
    assert [s["outcome"] for s in line["escalation"]] == ["accepted"]  # the gap: nothing watches the third part

    new = _task_file(tmp_path / "new.json", 3, {**seen, "/parts/*/v": 0.9})
    code, out, err = _run(
        [
            "analyze",
            str(folder),
            "--task-file",
            str(new),
            *_model(tiny_models),
            "--escalate",
            "--db",
            str(tmp_path / "new.db"),
            "--json",
        ]
    )
    assert code == 0, err
    (line,) = [json.loads(x) for x in out.splitlines()]
    steps = line["escalation"]
    assert [s["outcome"] for s in steps[:2]] == ["escalated", "escalated"] and steps[2]["step"] == "review"
    # items 0 and 1 pass on their own (concrete) 0.05 though under the pattern's 0.9; item 2 only has the pattern
    assert re.fullmatch(r"/parts/2/v confidence 0\.\d\d < 0\.90 \(/parts/\*/v\)", steps[1]["why"]), steps[1]["why"]
    assert steps[2]["why"] == "still doubtful after the last step: " + steps[1]["why"].replace(
        steps[1]["why"].split()[2], f"{line['confidence']['/parts/2/v']:.2f}"
    )
