"""Engine.analyze keeps its promise: whatever happens inside, the caller gets a Result (a line station retried a
capture forever when it raised)."""

from __future__ import annotations

import logging
from typing import Any

from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.core.tasks import Task, builtin_task
from loupe.core.types import Status

BOXED = {
    "type": "object",
    "properties": {
        "found": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "image_id": {},
                    "box_2d": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
                },
                "required": ["image_id", "box_2d"],
            },
        }
    },
    "required": ["found"],
}


def _task(schema: dict) -> Task:
    return Task(name="boxes", schema=schema, instructions="Find.", options=builtin_task("defects").options)


def test_a_non_string_image_id_beside_a_box_is_data_not_a_crash(images):
    out = (
        '{"found": [{"image_id": [1, 2], "box_2d": [0, 0, 500, 500]},'
        ' {"image_id": {"x": 1}, "box_2d": [100, 100, 600, 600]}]}'
    )
    result = Engine(FakeBackend([out])).analyze(AnalyzeRequest((images["jpeg"],), _task(BOXED)))
    assert result.status is Status.OK and len(result.boxes) == 2
    assert {b.image_id for b in result.boxes} == {"img_01"}  # an id that names no image means the first


class Broken(FakeBackend):
    def generate(self, request: Any, *, cancel: Any = None) -> Any:
        raise RuntimeError("a bug\nover two lines")


def test_an_unexpected_exception_is_an_error_result_and_a_logged_traceback(images, caplog):
    with caplog.at_level(logging.ERROR, logger="loupe.api"):
        result = Engine(Broken(["{}"])).analyze(AnalyzeRequest((images["jpeg"],), builtin_task("describe")))
    assert result.status is Status.ERROR and result.error.startswith("internal error (RuntimeError: a bug")
    assert "\n" not in result.error
    assert any(r.exc_info for r in caplog.records)  # the traceback goes to the log, not to the caller
