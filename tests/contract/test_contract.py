"""The backend contract: every backend, same tasks, same images, same outcomes.

Random weights give gibberish, so these assert structure (status, schema validity, a confidence per
leaf, named outcomes), never values. A backend added to contract/conftest.py FACTORIES must pass all.
"""

from __future__ import annotations

import threading

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.core.tasks import Task, builtin_names, builtin_task
from loupe.core.types import Status

from tests.integration.test_llama_cpp_e2e import assert_valid, leaves


@pytest.mark.parametrize("task_name", builtin_names())
def test_each_builtin_task_gives_schema_valid_data_with_a_confidence_per_leaf(contract_backend, images, task_name):
    task = builtin_task(task_name).with_options(allow_refusal=False)  # random weights may choose to refuse
    result = Engine(contract_backend).analyze(AnalyzeRequest((images["jpeg"],), task))
    assert result.status is Status.OK, (result.error, result.raw[-200:])
    assert_valid(task.schema, result.raw)
    assert set(result.confidence) == leaves(result.data)
    assert all(0.0 <= c <= 1.0 for c in result.confidence.values())
    assert result.backend == contract_backend.name and result.tokens.completion > 0
    for box in result.boxes:
        x0, y0, x1, y1 = box.pixels
        assert 0 <= x0 <= x1 <= 160 and 0 <= y0 <= y1 <= 120


def test_real_backends_see_the_image(contract_backend, images):
    task = builtin_task("describe").with_options(allow_refusal=False)
    result = Engine(contract_backend).analyze(AnalyzeRequest((images["png"],), task))
    assert result.status is Status.OK
    if contract_backend.name != "fake":
        assert result.tokens.image > 0 and result.tokens.prompt > result.tokens.image
        assert result.timings.decode_ms > 0


def test_two_images_in_one_request(contract_backend, images):
    task = builtin_task("describe").with_options(allow_refusal=False)
    two = Engine(contract_backend).analyze(AnalyzeRequest((images["jpeg"], images["exif6"]), task))
    assert two.status is Status.OK, two.error
    assert [i.id for i in two.images] == ["img_01", "img_02"]
    if contract_backend.name != "fake":
        one = Engine(contract_backend).analyze(AnalyzeRequest((images["jpeg"],), task))
        assert two.tokens.image > one.tokens.image


def test_max_tokens_reached_is_truncated_with_raw_kept(contract_backend, images):
    task = builtin_task("describe").with_options(max_tokens=5)
    result = Engine(contract_backend).analyze(AnalyzeRequest((images["jpeg"],), task))
    assert result.status is Status.TRUNCATED
    assert result.raw and result.data is None and "max_tokens=5" in result.error


def test_schema_false_can_only_refuse(contract_backend, images):
    task = Task(name="nothing", schema=False, instructions="Nothing is acceptable.")
    result = Engine(contract_backend).analyze(AnalyzeRequest((images["jpeg"],), task))
    assert result.status is Status.REFUSED and result.error and result.data is None
    assert result.raw.startswith("REFUSE: ")


def test_deterministic_by_default(contract_backend, images):
    engine = Engine(contract_backend)
    req = AnalyzeRequest((images["png"],), builtin_task("product"))
    assert engine.analyze(req).raw == engine.analyze(req).raw


def test_cancel_is_a_value(contract_backend, images):
    cancel = threading.Event()
    cancel.set()
    result = Engine(contract_backend).analyze(
        AnalyzeRequest((images["jpeg"],), builtin_task("describe")), cancel=cancel
    )
    assert result.status is Status.ERROR and result.error == "cancelled"


@pytest.mark.parametrize("bad", ["truncated_png", "text_as_jpg", "missing", "empty"])
def test_bad_image_is_a_clear_error_naming_the_file(contract_backend, images, bad):
    result = Engine(contract_backend).analyze(AnalyzeRequest((images[bad],), builtin_task("describe")))
    assert result.status is Status.ERROR and images[bad].name in result.error
