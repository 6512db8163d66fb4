"""Per-field thresholds keyed by wildcard pointers: matching (concrete beats wildcard), checks at task load, fitting."""

from __future__ import annotations

from typing import Any

import pytest
from loupe import taskfile
from loupe.core.errors import TaskError
from loupe.core.schema.pointers import pointer_problem
from loupe.core.types import Result, Status
from loupe.escalate import Thresholds
from loupe.escalate.config import policy_from_dict
from loupe.eval.thresholds import FieldThreshold, Fit

ITEM = {"type": "object", "properties": {"severity": {"type": "integer"}, "label": {"type": "string"}}}
SCHEMA = {
    "type": "object",
    "properties": {
        "defects": {"type": "array", "items": ITEM},
        "note": {"type": "string"},
        "grid": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "object", "properties": {"v": {"type": "number"}}}},
        },
    },
    "additionalProperties": False,
}
F = "/escalation/thresholds/fields/"


def _result(data: Any, confidence: dict[str, float]) -> Result:
    return Result(Status.OK, "t", "m", "b", data=data, confidence=confidence)


def _defects(*confidences: float) -> Result:
    data = {"defects": [{"severity": i} for i in range(len(confidences))]}
    return _result(data, {f"/defects/{i}/severity": c for i, c in enumerate(confidences)})


def test_a_wildcard_covers_every_item_however_many():
    th = Thresholds(overall=None, fields={"/defects/*/severity": 0.8})
    assert th.doubt(_defects(0.9, 0.9)) is None
    assert th.doubt(_defects(0.9, 0.9, 0.9, 0.9, 0.3)) == (
        "/defects/4/severity confidence 0.30 < 0.80 (/defects/*/severity)"
    )


def test_a_concrete_key_beats_a_wildcard_for_its_pointer():
    th = Thresholds(overall=None, fields={"/defects/*/severity": 0.8, "/defects/0/severity": 0.2})
    assert th.doubt(_defects(0.3, 0.85)) is None  # item 0 only needs 0.2
    assert th.doubt(_defects(0.1, 0.85)) == "/defects/0/severity confidence 0.10 < 0.20"
    assert th.doubt(_defects(0.9, 0.5)) == "/defects/1/severity confidence 0.50 < 0.80 (/defects/*/severity)"
    assert th.limits(_defects(0.3, 0.3)) == {
        "/defects/0/severity": (0.2, "/defects/0/severity"),
        "/defects/1/severity": (0.8, "/defects/*/severity"),
    }


def test_the_highest_of_several_matching_wildcards_applies():
    data = {"grid": [[{"v": 1}, {"v": 2}], [{"v": 3}]]}
    conf = {"/grid/0/0/v": 0.6, "/grid/0/1/v": 0.6, "/grid/1/0/v": 0.6}
    th = Thresholds(overall=None, fields={"/grid/*/*/v": 0.5, "/grid/1/*/v": 0.7, "/grid/*/1/v": 0.55})
    limits = th.limits(_result(data, conf))
    assert limits == {
        "/grid/0/0/v": (0.5, "/grid/*/*/v"),
        "/grid/0/1/v": (0.55, "/grid/*/1/v"),
        "/grid/1/0/v": (0.7, "/grid/1/*/v"),
    }
    assert th.doubt(_result(data, conf)) == "/grid/1/0/v confidence 0.60 < 0.70 (/grid/1/*/v)"


def test_keys_that_match_nothing_are_ignored():
    th = Thresholds(overall=None, fields={"/missing/*/x": 0.9, "/defects/*/label": 0.9, "/defects/7/severity": 0.9})
    assert th.limits(_defects(0.1)) == {"/defects/7/severity": (0.9, "/defects/7/severity")}
    assert th.doubt(_defects(0.1)) is None
    assert th.doubt(_result(None, {"/x": 0.1})) is None  # no data: nothing to match


def _task(fields: dict[str, Any], schema: Any = SCHEMA) -> Any:
    return taskfile.from_dict(
        {"name": "t", "instructions": "Look.", "schema": schema, "escalation": {"thresholds": {"fields": fields}}},
        "t.json",
    ).task


@pytest.mark.parametrize(
    ("fields", "message", "pointer"),
    [
        ({"defects/*/severity": 0.5}, "'defects/\\*/severity' is not one", F + "defects~1*~1severity"),
        ({"/a~2b": 0.5}, "'/a~2b' is not one", F + "~1a~02b"),
        ({"/defects/*/severity": 1.5}, "must be a number in \\[0, 1\\]", F + "~1defects~1*~1severity"),
        ({"/note/*": 0.5}, "'/note/\\*'.*no list at /note", F + "~1note~1*"),
        ({"/*/severity": 0.5}, "no list at /", F + "~1*~1severity"),
        ({"/defects/*/severity/*": 0.5}, "no list at /defects/\\*/severity", None),
        ({"/defect/*/severity": 0.5}, "nothing at /defect", None),
    ],
)
def test_bad_keys_are_refused_at_load_naming_key_and_place(fields: dict[str, Any], message: str, pointer: str | None):
    with pytest.raises(TaskError, match=message) as info:
        _task(fields)
    assert info.value.source == "t.json"
    assert info.value.pointer == (pointer or F + next(iter(fields)).replace("/", "~1"))


def test_good_keys_load_including_old_concrete_ones():
    task = _task(
        {"/defects/*/severity": 0.8, "/defects/0/severity": 0.2, "/grid/*/*/v": 0.5, "/note": 0.4, "/gone": 0.3}
    )  # a concrete key the schema lacks stays allowed (it never matches), as before
    assert policy_from_dict(task.escalation).thresholds.fields["/grid/*/*/v"] == 0.5


def test_schema_walk_follows_refs_combinators_and_tuples():
    schema = {
        "$defs": {"row": {"type": "array", "prefixItems": [{"type": "string"}], "items": ITEM}},
        "type": "object",
        "properties": {
            "rows": {"$ref": "#/$defs/row"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "array"}]},
            "free": {"description": "anything"},
        },
        "patternProperties": {"^x-": {"type": "array"}},
    }
    for ok in ("/rows/*", "/rows/*/severity", "/maybe/*", "/free/*/deep/*", "/x-extra/*", "/other/*"):
        assert pointer_problem(schema, ok) is None, ok
    assert pointer_problem({**schema, "additionalProperties": False}, "/other/*") is not None
    assert (
        pointer_problem(schema, "/rows/*/severity/*") == "'*' stands for a list item, but the schema has no list "
        "at /rows/*/severity"
    )


def test_fitted_fields_become_patterns_not_indexes():
    fit = Fit(
        0.9,
        (
            FieldThreshold("/defects/*/severity", 0.7, True, 1.0, 1.0, 4),
            FieldThreshold("/defects/*/box_2d", 0.4, True, 1.0, 1.0, 4),
            FieldThreshold("/2020", 0.6, True, 1.0, 1.0, 2),
        ),
        0.0,
        1.0,
    )
    seen = [
        {"/defects/0/severity": 0.9, "/defects/1/severity": 0.8, "/defects/0/box_2d/0": 0.5, "/2020": 0.9},
        {"/defects/0/severity": 0.9, "/defects/2/severity": 0.8},
    ]
    schema = {"type": "object", "properties": {"defects": {"type": "array"}, "2020": {"type": "number"}}}
    assert fit.pointers(seen, schema) == {"/2020": 0.6, "/defects/*/box_2d/*": 0.4, "/defects/*/severity": 0.7}
