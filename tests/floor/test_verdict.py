"""Verdict rules: checked at task load with JSON-Pointer errors, evaluated first-match-wins."""

from __future__ import annotations

import json

import pytest
from loupe import taskfile
from loupe.core.errors import TaskError
from loupe.core.tasks import builtin_task
from loupe.core.types import Result, Status
from loupe.core.verdict import DEFAULT_RULES, Verdict, judge, rules_from_dict

DEFECTS = builtin_task("defects")
RULES = rules_from_dict(DEFECTS.verdict, DEFECTS.source)


def result(severities: list[int], *, conf: float = 0.9, status: Status = Status.OK) -> Result:
    data = {"defects": [{"label": "dent", "box_2d": [0, 0, 10, 10], "severity": s, "reason": "x"} for s in severities]}
    return Result(
        status=status,
        task="defects",
        model="m",
        backend="b",
        data=data if status is Status.OK else None,
        confidence={"/defects": conf},
        error=None if status is Status.OK else "cut off",
    )


@pytest.mark.parametrize(
    ("severities", "conf", "status", "expected"),
    [
        ([], 0.9, Status.OK, Verdict.PASS),
        ([1, 2], 0.9, Status.OK, Verdict.PASS),
        ([1, 3], 0.9, Status.OK, Verdict.FAIL),
        ([5], 0.1, Status.OK, Verdict.FAIL),  # a severe defect fails even when the model is unsure
        ([2], 0.3, Status.OK, Verdict.REVIEW),  # below the task's review_threshold (0.6)
        ([], 0.9, Status.TRUNCATED, Verdict.REVIEW),
    ],
)
def test_defects_rules(severities: list[int], conf: float, status: Status, expected: Verdict) -> None:
    got = judge(RULES, result(severities, conf=conf, status=status), review_threshold=0.6)
    assert got.verdict is expected
    assert got.reason


def test_reasons_say_why() -> None:
    assert judge(RULES, result([4])).reason == "/defects/*/severity >= 3 (4)"
    assert judge(RULES, result([], status=Status.TRUNCATED)).reason == "status truncated: cut off"
    assert "0.30 < 0.60" in judge(RULES, result([1], conf=0.3), review_threshold=0.6).reason


def test_count_rule_and_otherwise() -> None:
    rules = rules_from_dict(
        {
            "rules": [
                {
                    "if": "count",
                    "pointer": "/defects",
                    "op": ">",
                    "value": 1,
                    "then": "fail",
                    "reason": "more than one defect",
                }
            ],
            "otherwise": "REVIEW",
        }
    )
    assert judge(rules, result([1, 1])).verdict is Verdict.FAIL
    assert judge(rules, result([1, 1])).reason == "more than one defect"
    assert judge(rules, result([1])).verdict is Verdict.REVIEW


def test_a_result_that_is_not_ok_never_passes_by_default() -> None:
    assert judge(rules_from_dict({"rules": []}), result([], status=Status.ERROR)).verdict is Verdict.REVIEW
    assert judge(DEFAULT_RULES, result([], conf=0.2), review_threshold=0.5).verdict is Verdict.REVIEW
    assert judge(DEFAULT_RULES, result([], conf=0.9)).verdict is Verdict.PASS


@pytest.mark.parametrize(
    ("table", "pointer", "words"),
    [
        ({"rules": [{"if": "any", "then": "FAIL", "value": 3}]}, "/verdict/rules/0/pointer", "JSON Pointer"),
        ({"rules": [{"if": "sometimes", "then": "FAIL"}]}, "/verdict/rules/0/if", "must be one of"),
        ({"rules": [{"if": "status_not_ok", "then": "MAYBE"}]}, "/verdict/rules/0/then", "PASS, FAIL, REVIEW"),
        ({"rules": [{"if": "status_not_ok", "then": "FAIL", "color": "red"}]}, "/verdict/rules/0/color", "unknown"),
        (
            {"rules": [{"if": "any", "pointer": "/a", "op": "~", "value": 1, "then": "FAIL"}]},
            "/verdict/rules/0/op",
            "op",
        ),
        (
            {"rules": [{"if": "count", "pointer": "/a", "value": "two", "then": "FAIL"}]},
            "/verdict/rules/0/value",
            "number",
        ),
        ({"otherwise": "GREEN"}, "/verdict/otherwise", "verdict"),
        ({"rules": {}}, "/verdict/rules", "list"),
        ({"when": []}, "/verdict/when", "unknown"),
    ],
)
def test_bad_tables_are_refused_with_a_pointer(table: dict, pointer: str, words: str) -> None:
    raw = {**json.loads(json.dumps({"schema": DEFECTS.schema, "instructions": "x"})), "verdict": table}
    with pytest.raises(TaskError) as exc:
        taskfile.from_dict(raw, "line.json")
    assert exc.value.pointer == pointer
    assert words in exc.value.problem


def test_bad_outputs_table_is_refused_with_a_pointer() -> None:
    raw = {"schema": DEFECTS.schema, "instructions": "x", "outputs": {"mqtt": {"url": "http://broker"}}}
    with pytest.raises(TaskError) as exc:
        taskfile.from_dict(raw, "line.json")
    assert exc.value.pointer == "/outputs/mqtt/url"
    raw["outputs"] = {"webhook": {"url": "http://h/x", "retries": 3}}
    with pytest.raises(TaskError) as exc:
        taskfile.from_dict(raw, "line.json")
    assert exc.value.pointer == "/outputs/webhook/retries"


def test_a_match_read_with_low_confidence_is_unsure() -> None:
    """Values are candidates, not truth: a FAIL that rests only on a low-confidence severity goes to a person."""
    shaky = result([1, 5])
    shaky = Result(
        status=Status.OK,
        task="defects",
        model="m",
        backend="b",
        data=shaky.data,
        confidence={"/defects/0/severity": 0.95, "/defects/1/severity": 0.2},
    )
    got = judge(RULES, shaky, review_threshold=0.6)
    assert got.verdict is Verdict.REVIEW
    assert got.reason == "unsure FAIL: /defects/*/severity >= 3 (5), read with confidence 0.20 < 0.60"
    sure = Result(
        status=Status.OK,
        task="defects",
        model="m",
        backend="b",
        data=shaky.data,
        confidence={"/defects/0/severity": 0.2, "/defects/1/severity": 0.9},
    )
    assert judge(RULES, sure, review_threshold=0.6) == judge(RULES, result([5]), review_threshold=0.6)
    assert judge(RULES, sure, review_threshold=0.6).verdict is Verdict.FAIL
    safety_first = rules_from_dict(
        {"rules": [{"if": "any", "pointer": "/defects/*/severity", "value": 3, "then": "FAIL", "unsure": "FAIL"}]}
    )
    assert judge(safety_first, shaky, review_threshold=0.6).verdict is Verdict.FAIL
    with pytest.raises(TaskError) as caught:
        rules_from_dict({"rules": [{"if": "any", "pointer": "/a", "value": 1, "then": "FAIL", "unsure": "MAYBE"}]})
    assert caught.value.pointer == "/rules/0/unsure"
