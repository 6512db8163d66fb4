"""The real-text task set is sound: valid schemas, valid answers, and every answer leaf stated in its instructions."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from bench.real_text_tasks import CATEGORIES, TASKS, RealTask

ANSWERED = [t for t in TASKS if t.category != "refusal"]
REFUSALS = [t for t in TASKS if t.category == "refusal"]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def leaves(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every scalar in a JSON value, with its JSONPath-like location."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def numbers_in(text: str) -> set[float]:
    """The numeric tokens of a text, signed and unsigned (so "WO-5531" yields both -5531 and 5531)."""
    found: set[float] = set()
    for token in NUMBER.findall(text):
        found.add(float(token))
        found.add(abs(float(token)))
    return found


def test_enough_tasks_in_every_category():
    counts = Counter(t.category for t in TASKS)
    assert len(ANSWERED) >= 64, f"only {len(ANSWERED)} answered tasks"
    short = {c: counts[c] for c in CATEGORIES if c != "refusal" and counts[c] < 4}
    assert not short, f"categories with fewer than 4 tasks: {short}"
    assert len(REFUSALS) >= 4, f"only {len(REFUSALS)} refusal tasks"


def test_ids_unique_kebab_case_and_categories_known():
    ids = Counter(t.id for t in TASKS)
    assert not [i for i, n in ids.items() if n > 1], f"duplicate ids: {[i for i, n in ids.items() if n > 1]}"
    bad_ids = [t.id for t in TASKS if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", t.id)]
    assert not bad_ids, f"ids not in kebab-case: {bad_ids}"
    unknown = {t.id: t.category for t in TASKS if t.category not in CATEGORIES}
    assert not unknown, f"tasks with unknown categories: {unknown}"


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_schema_is_a_valid_2020_12_object_schema(task: RealTask):
    Draft202012Validator.check_schema(task.schema)
    assert task.schema.get("type") == "object", f"{task.id}: top-level schema is not an object"
    props, required = task.schema.get("properties", {}), task.schema.get("required", [])
    assert props, f"{task.id}: schema has no properties"
    assert set(required) <= set(props), (
        f"{task.id}: required names missing from properties: {set(required) - set(props)}"
    )


@pytest.mark.parametrize("task", ANSWERED, ids=lambda t: t.id)
def test_answer_is_valid_under_its_schema(task: RealTask):
    assert task.answer is not None, f"{task.id}: non-refusal task without an answer"
    validator = Draft202012Validator(task.schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(task.answer)]
    assert not errors, f"{task.id}: answer invalid: {errors}"


@pytest.mark.parametrize("task", ANSWERED, ids=lambda t: t.id)
def test_every_answer_leaf_is_stated_in_the_instructions(task: RealTask):
    stated = numbers_in(task.instructions)
    missing = []
    for path, value in leaves(task.answer):
        if isinstance(value, str):
            if value not in task.instructions:
                missing.append(f"{path}: string {value!r} not verbatim in the instructions")
        elif isinstance(value, bool):
            continue  # booleans come from a stated yes/no, not a token
        elif isinstance(value, int | float):
            if float(value) not in stated:
                missing.append(f"{path}: number {value!r} not among the numbers {sorted(stated)}")
        else:
            missing.append(f"{path}: unexpected leaf {value!r}")
    assert not missing, f"{task.id}: {missing}"


def test_optional_tasks_omit_unstated_properties_and_keep_stated_ones():
    tasks = [t for t in ANSWERED if t.category == "optional"]
    omitted = {t.id: set(t.schema["properties"]) - set(t.answer or {}) for t in tasks}
    without = [i for i, names in omitted.items() if not names]
    assert not without, f"optional tasks whose answer omits no property: {without}"
    kept = [t.id for t in tasks if set(t.answer or {}) - set(t.schema.get("required", []))]
    assert kept, "no optional task has a stated optional property present in its answer"


def test_refusals_have_no_answer_and_say_refuse():
    answered = [t.id for t in REFUSALS if t.answer is not None]
    assert not answered, f"refusal tasks with an answer: {answered}"
    silent = [t.id for t in REFUSALS if "REFUSE:" not in t.instructions]
    assert not silent, f"refusal tasks not asking for REFUSE: {silent}"
    assert all(t.answer is not None for t in ANSWERED), "a non-refusal task has answer None"


def test_instruction_lengths_suit_a_tiny_model():
    long_ones = [
        (t.id, len(t.instructions)) for t in ANSWERED if t.category != "long-text" and len(t.instructions) > 400
    ]
    assert not long_ones, f"short-text tasks over 400 characters: {long_ones}"
    odd = [
        (t.id, len(t.instructions))
        for t in ANSWERED
        if t.category == "long-text" and not 300 <= len(t.instructions) <= 900
    ]
    assert not odd, f"long-text tasks outside 300-900 characters: {odd}"
    no_long_leaf = [
        t.id
        for t in ANSWERED
        if t.category == "long-text" and not any(isinstance(v, str) and len(v) >= 60 for _, v in leaves(t.answer))
    ]
    assert not no_long_leaf, f"long-text tasks without a string of 60+ characters in the answer: {no_long_leaf}"
