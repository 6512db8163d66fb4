"""Schema contract pieces without a model: grammar, leaf spans, confidence, validation, pipeline outcomes."""

from __future__ import annotations

import json
import threading

import llguidance as llg
import numpy as np
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.core.confidence import TokenStep, field_confidence
from loupe.core.constrain.base import allowed_ids, mask_words, with_layout
from loupe.core.constrain.llguidance import LLGuidanceCompiler
from loupe.core.images.load import LoadedImage
from loupe.core.schema.spans import leaf_spans
from loupe.core.schema.validate import validation_errors
from loupe.core.tasks import builtin_task
from loupe.core.types import Status
from PIL import Image


class ByteTokenizer:
    """A 256-byte vocabulary plus EOS: the smallest real tokenizer for LLGuidance (not a mock)."""

    def __init__(self) -> None:
        self.tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
        self.eos_token_id, self.bos_token_id, self.special_token_ids = 256, None, [256]

    def __call__(self, s: bytes) -> list[int]:
        return list(s)


@pytest.fixture(scope="module")
def compiler() -> LLGuidanceCompiler:
    return LLGuidanceCompiler(llg.LLTokenizer(llg.TokenizerWrapper(ByteTokenizer())))


def accepts(compiler: LLGuidanceCompiler, schema, text: str, allow_refusal: bool = True) -> bool:
    m = compiler.compile(schema, allow_refusal=allow_refusal).matcher()
    return all(m.consume(b) for b in text.encode()) and m.is_accepting()


def test_grammar_is_the_schemas_json_in_one_fixed_layout(compiler):
    schema = builtin_task("defects").schema
    good = '{"defects": [{"label": "dent", "box_2d": [1, 2, 300, 1000], "severity": 3, "reason": "a dent"}]}'
    assert accepts(compiler, schema, good)
    assert accepts(compiler, schema, '{"defects": []}')
    assert not accepts(compiler, schema, '{"defects":[]}')  # one layout: the spaced one by default
    assert not accepts(compiler, schema, '{"defects":  []}')  # no free whitespace
    assert not accepts(compiler, schema, good.replace("dent", "hole", 1))  # enum
    assert not accepts(compiler, schema, good.replace("1000", "1001"))  # bound
    assert not accepts(compiler, schema, good.replace('"severity": 3', '"severity": 6'))
    assert not accepts(compiler, schema, good.replace("[1, 2, 300, 1000]", "[1, 2, 300]"))  # minItems
    compact = with_layout(schema, "compact")
    assert accepts(compiler, compact, good.replace(": ", ":").replace(", ", ","))
    assert not accepts(compiler, compact, good)


def test_control_characters_never_reach_strings(compiler):
    schema = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}
    assert accepts(compiler, schema, '{"s": "a\\nb"}')
    assert not accepts(compiler, schema, '{"s": "a\nb"}')
    assert not accepts(compiler, schema, '{"s": "a\x01b"}')


def test_refusal_is_an_alternative_only_when_allowed(compiler):
    schema = builtin_task("describe").schema
    assert accepts(compiler, schema, "REFUSE: private document")
    assert not accepts(compiler, schema, "REFUSE: private document", allow_refusal=False)


def test_mask_allows_exactly_the_grammar(compiler):
    m = compiler.compile({"enum": ["yes", "no"]}, allow_refusal=False).matcher()
    mask = np.zeros(mask_words(257), dtype=np.int32)
    m.fill_mask(mask)
    assert allowed_ids(mask, 257).tolist() == [ord('"')]
    m.consume(ord('"'))
    m.fill_mask(mask)
    assert allowed_ids(mask, 257).tolist() == [ord("n"), ord("y")]


def test_unsupported_parts_are_loosened_and_reported(compiler):
    # a look-behind pattern cannot be decoded: only that keyword is dropped, `type` and `maxLength` stay
    c = compiler.compile({"type": "string", "pattern": "(?<=a)b", "maxLength": 3}, allow_refusal=False)
    assert any("/pattern" in note for note in c.relaxed) and any("look-around" in note for note in c.relaxed)
    m = c.matcher()
    assert all(m.consume(b) for b in b'"ab"') and m.is_accepting()
    assert not all(compiler.compile({"type": "string", "maxLength": 3}).matcher().consume(b) for b in b'"abcd"')
    m = c.matcher()
    assert not all(m.consume(b) for b in b"12")  # still a string
    # `not` is unimplemented in LLGuidance: lenient mode ignores it, post-validation enforces it
    c = compiler.compile({"type": "integer", "not": {"const": 3}}, allow_refusal=False)
    assert c.relaxed and "not" in c.relaxed[0]


def test_relax_finds_the_deepest_culprit():
    from loupe.core.constrain.relax import relax

    schema = {
        "type": "object",
        "properties": {"ok": {"type": "integer"}, "bad": {"type": "array", "items": {"x-unsupported": 1}}},
    }
    fixed, pointers = relax(schema, lambda s: "x-unsupported" not in json.dumps(s))
    assert pointers == ["/properties/bad/items/x-unsupported"]
    assert fixed["properties"]["ok"] == {"type": "integer"} and fixed["properties"]["bad"]["type"] == "array"


def test_leaf_spans_cover_every_leaf():
    text = '{"a":[1,"x",{"b":null}],"c":{},"d":[],"e~/f":true}'
    spans = leaf_spans(text.encode())
    assert {p: text[a:b] for p, (a, b) in spans.items()} == {
        "/a/0": "1",
        "/a/1": '"x"',
        "/a/2/b": "null",
        "/c": "{}",
        "/d": "[]",
        "/e~0~1f": "true",
    }


def test_confidence_is_weakest_token_of_the_value():
    text = b'{"a":"xy","b":1}'
    steps = [TokenStep(i, i + 1, 1.0, True) for i in range(len(text))]
    steps[6] = TokenStep(6, 7, 0.3)  # 'x'
    steps[7] = TokenStep(7, 8, 0.8)  # 'y'
    steps[14] = TokenStep(14, 15, 0.6)  # '1'
    conf = field_confidence(steps, leaf_spans(text))
    assert conf == {"/a": 0.3, "/b": 0.6}


def test_multiple_of_is_exact_for_decimals():
    schema = {"type": "number", "multipleOf": 0.01}
    assert validation_errors(schema, 19.99) == []
    assert validation_errors(schema, 0.29) == []
    assert validation_errors(schema, 0.291) != []


def _image() -> LoadedImage:
    return LoadedImage("mem.png", Image.new("RGB", (400, 200)), "0" * 64, "PNG", ())


def test_pipeline_outcomes_with_fake_backend():
    task = builtin_task("describe")
    req = AnalyzeRequest((_image(),), task)
    ok = Engine(FakeBackend(['{"caption":"a panel","tags":["metal"]}'])).analyze(req)
    assert ok.status is Status.OK and ok.data == {"caption": "a panel", "tags": ["metal"]}
    assert set(ok.confidence) == {"/caption", "/tags/0"} and ok.min_confidence == pytest.approx(0.9)
    refused = Engine(FakeBackend(["REFUSE: a person's face"])).analyze(req)
    assert refused.status is Status.REFUSED and refused.error == "a person's face" and refused.data is None
    cut = Engine(FakeBackend([('{"caption":"a pan', "max_tokens")])).analyze(req)
    assert cut.status is Status.TRUNCATED and cut.raw == '{"caption":"a pan' and "max_tokens" in cut.error


def test_invalid_output_is_retried_then_reported_invalid_never_ok():
    task = builtin_task("describe")
    bad = '{"caption":"","tags":[]}'  # minLength 1 violated
    backend = FakeBackend([bad, bad])
    res = Engine(backend).analyze(AnalyzeRequest((_image(),), task))
    assert res.status is Status.INVALID and res.attempts == 2
    assert "/caption" in res.error and res.data == json.loads(bad)
    assert backend.requests[1].temperature > 0 and backend.requests[1].seed != backend.requests[0].seed
    fixed = Engine(FakeBackend([bad, '{"caption":"ok","tags":[]}'])).analyze(AnalyzeRequest((_image(),), task))
    assert fixed.status is Status.OK and fixed.attempts == 2


def test_a_request_canceled_before_it_starts_never_reaches_the_backend():
    backend, cancel = FakeBackend(['{"caption":"x","tags":[]}']), threading.Event()
    cancel.set()  # e.g. a server request whose client left while it waited for the model
    res = Engine(backend).analyze(AnalyzeRequest((_image(),), builtin_task("describe")), cancel=cancel)
    assert res.status is Status.ERROR and res.error == "cancelled" and res.tokens.prompt == 0
    assert backend.requests == [] and res.images[0].path == "mem.png"  # no prefill; the image is still on record


def test_prompt_carries_ids_instructions_and_schema():
    backend = FakeBackend(['{"caption":"x","tags":[]}'])
    task = builtin_task("describe")
    Engine(backend).analyze(AnalyzeRequest((_image(), _image()), task))
    req = backend.requests[0]
    assert [i.id for i in req.images] == ["img_01", "img_02"]
    assert req.text.endswith("img_01: <__media__>\nimg_02: <__media__>")  # the task's part first (shared prefix)
    assert req.text.startswith(task.instructions)
    assert task.instructions in req.text and '"caption"' in req.text


def test_bad_image_is_an_error_result_not_an_exception(images):
    res = Engine(FakeBackend(["{}"])).analyze(AnalyzeRequest((images["text_as_jpg"],), builtin_task("describe")))
    assert res.status is Status.ERROR and "not an image" in res.error


def test_refusal_needs_a_majority():
    from loupe.core.constrain.base import gate_refusal

    starts = np.array([True, False, False])
    assert gate_refusal(np.array([0.45, 0.35, 0.2]), starts).tolist() == [False, True, True]
    assert gate_refusal(np.array([0.55, 0.4, 0.05]), starts).tolist() == [True, False, False]
    assert gate_refusal(np.array([0.5, 0.5]), np.array([False, False])).tolist() == [True, True]


def test_submit_runs_on_the_engine_thread_and_close_stops_it():
    import threading

    backend = FakeBackend(['{"caption":"x","tags":[]}'])
    engine = Engine(backend)
    seen: list[str] = []
    future = engine.submit(
        AnalyzeRequest((_image(),), builtin_task("describe")),
        on_event=lambda kind, info: seen.append(threading.current_thread().name),
    )
    assert future.result(timeout=10).status is Status.OK
    assert seen and seen[0].startswith("loupe-engine")
    engine.close()
    assert backend.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("loupe-engine")]


def test_detail_sets_the_image_token_cap():
    backend = FakeBackend(['{"caption":"x","tags":[]}'])
    engine = Engine(backend)
    for detail, cap in (("low", 128), ("high", None), (900, None)):
        engine.analyze(AnalyzeRequest((_image(),), builtin_task("describe").with_options(detail=detail)))
        assert backend.requests[-1].image_max_tokens == cap
