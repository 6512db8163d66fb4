"""The real path: image -> llama.cpp (mtmd image encode) -> constrained decode -> validated Result.

Random weights give gibberish, so these tests assert structure (status, schema validity, a confidence
per leaf, boxes inside the image), never values. The rules every backend keeps (truncation at max_tokens with the
raw text kept, `false` schemas refusing, determinism, cancel as a value) run on llama.cpp in tests/contract.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import replace
from decimal import Decimal
from typing import Any

import jsonschema
import numpy as np
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.base import Generation, GenerationRequest
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.core.errors import ModelLoadError
from loupe.core.images.boxes import invalid_boxes
from loupe.core.tasks import builtin_names, builtin_task
from loupe.core.types import Status


def leaves(value: Any, pointer: str = "") -> set[str]:
    """JSON Pointers of every scalar and empty container in `value`."""
    if isinstance(value, dict) and value:
        return set().union(
            *(leaves(v, f"{pointer}/{k.replace('~', '~0').replace('/', '~1')}") for k, v in value.items())
        )
    if isinstance(value, list) and value:
        return set().union(*(leaves(v, f"{pointer}/{i}") for i, v in enumerate(value)))
    return {pointer}


def assert_valid(schema: Any, raw: str) -> None:
    """Independent check with plain jsonschema, numbers as Decimal so multipleOf 0.01 is exact."""
    exact_schema = json.loads(json.dumps(schema), parse_float=Decimal)
    jsonschema.Draft202012Validator(exact_schema).validate(json.loads(raw, parse_float=Decimal))


class Spy:
    """Wraps the real backend and records what it was asked (the model still runs for real)."""

    def __init__(self, inner: LlamaCppBackend) -> None:
        self.inner = inner
        self.name, self.steerable = inner.name, inner.steerable
        self.model_id, self.capabilities, self.load_ms = inner.model_id, inner.capabilities, inner.load_ms
        self.requests: list[GenerationRequest] = []

    def compile(self, schema: Any, *, allow_refusal: bool = True) -> Any:
        return self.inner.compile(schema, allow_refusal=allow_refusal)

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        self.requests.append(request)
        return self.inner.generate(request, cancel=cancel)

    def close(self) -> None:
        """The fixture owns the real backend."""


@pytest.mark.parametrize("task_name", builtin_names())
def test_each_builtin_task_gives_ok_valid_data_with_full_confidence(backend, images, task_name):
    task = builtin_task(task_name)
    # cold: the image is encoded here, not taken from the previous task's embedding cache (a cache hit takes a few
    # microseconds, which Timings rounds to 0.0 ms or 0.01 ms by chance)
    backend.forget()
    result = Engine(Spy(backend)).analyze(AnalyzeRequest((images["jpeg"],), task))
    assert result.status is Status.OK, (result.error, result.raw[-200:])
    assert_valid(task.schema, result.raw)
    assert set(result.confidence) == leaves(result.data)
    assert all(0.0 <= c <= 1.0 for c in result.confidence.values())
    assert result.tokens.image > 0 and result.tokens.completion > 0
    assert result.timings.encode_ms > 0 and result.timings.decode_ms > 0
    assert result.images[0].sha256 and (result.images[0].width, result.images[0].height) == (160, 120)
    for box in result.boxes:
        x0, y0, x1, y1 = box.pixels
        assert 0 <= x0 <= x1 <= 160 and 0 <= y0 <= y1 <= 120


# box_2d constrained to have an area ([ymin, xmin] in 0..400, [ymax, xmax] in 600..1000): every box the random
# model writes is a real box, so each one's conversion to pixels is checked
AREA = {
    "type": "array",
    "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 400}] * 2
    + [{"type": "integer", "minimum": 600, "maximum": 1000}] * 2,
    "items": False,
    "minItems": 4,
}


def test_boxes_with_an_area_are_converted_to_pixels(backend, images):
    task = builtin_task("defects")
    schema = copy.deepcopy(task.schema)
    schema["properties"]["defects"]["items"]["properties"]["box_2d"] = AREA
    result = Engine(backend).analyze(AnalyzeRequest((images["jpeg"],), replace(task, schema=schema)))
    assert result.status is Status.OK
    found = result.data["defects"]
    assert found and len(result.boxes) == len(found)
    for box, d in zip(result.boxes, found, strict=True):
        assert list(box.box_2d) == d["box_2d"] and box.label == d["label"]
        ymin, xmin, ymax, xmax = d["box_2d"]
        assert box.pixels == (
            round(xmin / 1000 * 160),
            round(ymin / 1000 * 120),
            round(xmax / 1000 * 160),
            round(ymax / 1000 * 120),
        )


def test_defects_boxes_are_converted_to_pixels(backend, images):
    task = builtin_task("defects")
    result = Engine(backend).analyze(AnalyzeRequest((images["jpeg"],), task))
    assert result.status is Status.OK
    found = result.data["defects"]
    sizes = {i.id: (i.width, i.height) for i in result.images}
    flat = {b.pointer for b in invalid_boxes(result.data, sizes)}  # no area in pixels: flagged, never a box
    drawn = [(i, d) for i, d in enumerate(found) if f"/defects/{i}/box_2d" not in flat]
    assert len(result.boxes) == len(drawn) and len(flat) + len(drawn) == len(found)
    assert all(result.confidence[f"{p}/{k}"] == 0.0 for p in flat for k in range(4))
    for box, (i, d) in zip(result.boxes, drawn, strict=True):
        assert box.pointer == f"/defects/{i}/box_2d"
        assert list(box.box_2d) == d["box_2d"] and box.label == d["label"]
        _ymin, xmin, _ymax, xmax = d["box_2d"]
        assert box.pixels[0] == round(min(xmin, xmax) / 1000 * 160)
        assert box.pixels[2] > box.pixels[0] and box.pixels[3] > box.pixels[1]


def test_exif_orientation_reaches_the_model_upright(backend, images):
    spy = Spy(backend)
    result = Engine(spy).analyze(AnalyzeRequest((images["exif6"],), builtin_task("describe")))
    assert result.status is Status.OK
    sent = spy.requests[0].images[0].image
    assert sent.size == (100, 200)  # stored 200x100 landscape; orientation 6 -> portrait
    pixels = np.asarray(sent)
    assert pixels[5, 50, 0] > 200 and pixels[195, 50, 2] > 200  # red on top, blue at the bottom
    assert (result.images[0].width, result.images[0].height) == (100, 200)


def test_two_images_in_one_request_carry_ids(backend, images):
    spy = Spy(backend)
    engine = Engine(spy)
    one = engine.analyze(AnalyzeRequest((images["jpeg"],), builtin_task("describe")))
    two = engine.analyze(AnalyzeRequest((images["jpeg"], images["exif6"]), builtin_task("describe")))
    assert two.status is Status.OK
    assert [i.id for i in two.images] == ["img_01", "img_02"]
    asked = spy.requests[-1].text  # the second analysis's (last) attempt
    assert "img_01: " in asked and "img_02: " in asked
    assert two.tokens.image > one.tokens.image  # both images were encoded


def test_missing_or_corrupt_model_files_are_clear_errors(tiny_models, tmp_path):
    model = tiny_models["smolvlm"]
    with pytest.raises(ModelLoadError, match=r"mmproj.*not found"):
        LlamaCppBackend(model.text_path, tmp_path / "nope.gguf")
    garbage = tmp_path / "garbage-mmproj.gguf"
    garbage.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        LlamaCppBackend(model.text_path, garbage)
    truncated = tmp_path / "truncated-mmproj.gguf"
    truncated.write_bytes(model.mmproj_path.read_bytes()[:4096])
    with pytest.raises(ModelLoadError, match="could not load the mmproj"):
        LlamaCppBackend(model.text_path, truncated)
    text_cut = tmp_path / "truncated-text.gguf"
    text_cut.write_bytes(model.text_path.read_bytes()[:20000])
    with pytest.raises(ModelLoadError, match="could not load the text model"):
        LlamaCppBackend(text_cut, model.mmproj_path)
    with pytest.raises(ModelLoadError, match="could not load the mmproj"):
        LlamaCppBackend(model.text_path, model.text_path)  # a text model passed as the projector


def test_gbnf_engine_stays_selectable(tiny_models, images):
    model = tiny_models["gemma3"]
    gbnf = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, constraint_engine="gbnf")
    try:
        task = builtin_task("describe").with_options(allow_refusal=False)
        result = Engine(gbnf).analyze(AnalyzeRequest((images["jpeg"],), task))
        assert result.status in (Status.OK, Status.TRUNCATED, Status.INVALID), result.error
        if result.status is Status.OK:
            assert_valid(task.schema, result.raw)
        assert result.tokens.completion > 0
    finally:
        gbnf.close()
