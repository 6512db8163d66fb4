"""Hostile task files and schemas: a YAML alias bomb, nesting past any real schema, a $ref cycle, a schema too big,
and a catastrophic `pattern` in a person's review edit. Each is a one-line error (naming where, when it can), in
bounded time and memory."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from pathlib import Path

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.batch import BatchRunner, open_job
from loupe.core.errors import TaskError
from loupe.core.schema.validate import schema_problem, validation_errors
from loupe.core.tasks import Task, builtin_task, load_task_file
from loupe.store import ReviewQueue, Store
from loupe.store.review import ReviewError

from tests.store.conftest import make_images

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def _nested(depth: int) -> dict:
    node: dict = {"type": "object"}
    for _ in range(depth):
        node = {"type": "object", "properties": {"a": node}}
    return node


def _refused(path: Path, *, memory: bool = True) -> str:
    """The one-line TaskError for `path`, within 2 s, and within 128 MiB of Python allocations (a second load
    under tracemalloc, which slows it too much to time). The bound: a task file is at most 4 MiB, and parsing JSON
    into Python objects takes up to ~25x the text (the 600,000-value enum below peaks at 87 MiB)."""
    t0 = time.monotonic()
    with pytest.raises(TaskError) as info:
        load_task_file(path)
    assert time.monotonic() - t0 < 2.0, time.monotonic() - t0
    if memory:
        tracemalloc.start()
        try:
            with pytest.raises(TaskError):
                load_task_file(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 128 << 20, peak
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path):
    path = tmp_path / "bomb.yaml"
    path.write_text("instructions: count\nschema: {type: object}\n" + BOMB)
    assert "aliases" in _refused(path)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_nesting_past_any_real_schema_is_refused_with_where(tmp_path: Path, suffix: str):
    path = tmp_path / f"deep{suffix}"
    path.write_text(json.dumps({"instructions": "x", "schema": _nested(200)}))  # JSON is YAML too
    # JSON parses 200 levels and the check names where; PyYAML's recursive parser gives up first
    expected = "nested more than 64 levels deep at /schema/properties/a" if suffix == ".json" else "nested too deeply"
    assert expected in _refused(path, memory=False)  # nesting costs time and stack, not memory
    path.write_text('{"instructions": "x", "schema": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "nested" in _refused(path, memory=False)


def test_a_ref_cycle_is_a_schema_error_not_a_recursion_traceback(tmp_path: Path):
    # earlier tests' garbage is collected now: a finalizer the collector runs at the bottom of the stack this test
    # exhausts on purpose would fail on its own (pytest reports it as an unraisable RecursionError)
    gc.collect()
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps({"instructions": "x", "schema": {"$ref": "#"}}))
    assert "refers to itself" in _refused(path)
    looping = {"type": "object", "properties": {"a": {"$ref": "#/properties/a"}}}
    assert validation_errors(looping, {"a": 1}) == [
        "/: the schema refers to itself without end ($ref cycle) or nests too deeply"
    ]


def test_too_many_values_is_refused(tmp_path: Path):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"instructions": "x", "schema": {"enum": [0] * 600_000}}))  # 1.8 MB
    assert "more than 500,000 values" in _refused(path)
    assert schema_problem({"enum": [0] * 600_000}) == ("more than 500,000 values", "")
    path.write_text(json.dumps({"instructions": "x", "schema": {"enum": list(range(1_000_000))}}))  # 6.9 MB
    assert "over the 4 MiB limit" in _refused(path)


def test_a_catastrophic_pattern_in_a_review_edit_answers_within_a_second(tmp_path: Path):
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a|a)*$"}}, "required": ["code"]}
    task = Task(name="codes", schema=schema, instructions="Read the code.", options=builtin_task("defects").options)
    folder = make_images(tmp_path / "imgs", 1)
    engine = Engine(FakeBackend(['{"code": "aaaa"}']), model="fake")
    with Store(tmp_path / "s.db") as store:
        paths = [str(p) for p in folder.iterdir()]
        job, _ = open_job(store, inputs=paths, paths=paths, task=task, model="fake", settings={}, launch={})
        BatchRunner(store, lambda p, t: engine.analyze(AnalyzeRequest((p,), t))).run(job.id)
        (stored,) = store.results(job.id)
        t0 = time.monotonic()
        with pytest.raises(ReviewError) as info:
            ReviewQueue(store).edit(stored.id, {"code": "a" * 40 + "!"}, who="tester")
        assert time.monotonic() - t0 < 1.0
        assert "took over" in str(info.value) and "\n" not in str(info.value)
        ReviewQueue(store).edit(stored.id, {"code": "a" * 40}, who="tester")  # a fine value still goes in
    # the example from the report: `regex` answers it at once (Python's re backtracks for minutes)
    t0 = time.monotonic()
    assert validation_errors({"type": "string", "pattern": "^(a+)+$"}, "a" * 35 + "!")
    assert time.monotonic() - t0 < 1.0
