"""The coverage benchmark's own judgement, pinned on small schemas whose answers are known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.canonical import canonical
from bench.schema_coverage import Case, Vocab, judge, make_compiler, suite_format_mode, summarize


@pytest.fixture(scope="module")
def vocab(tiny_models) -> Vocab:
    return Vocab(tiny_models["smolvlm"].text_path)


@pytest.fixture(scope="module")
def llguidance(vocab):
    return make_compiler("llguidance", vocab)


def case(schema: Any, *tests: tuple[bool, Any]) -> Case:
    return Case("hand", "h", schema, [{"valid": v, "data": d} for v, d in tests])


def test_bounds_enforced_by_the_grammar(vocab, llguidance):
    out = judge(
        case({"type": "integer", "minimum": 0, "maximum": 10}, (True, 5), (False, 11), (False, "a")),
        "llguidance",
        llguidance,
        vocab,
    )
    assert out.compiled and out.passing and not out.relaxed
    assert out.invalid_accepted_grammar == 0 and out.valid_rejected == 0 and out.mask_us


def test_keyword_left_to_post_validation_still_passes(vocab, llguidance):
    # LLGuidance does not implement `not`: the compile is relaxed, and validation catches the instance
    out = judge(case({"type": "integer", "not": {"const": 3}}, (True, 4), (False, 3)), "llguidance", llguidance, vocab)
    assert out.relaxed and out.passing
    assert out.invalid_accepted_grammar == 1 and out.caught_after_decoding == 1 and out.invalid_reaching_user == 0


def test_mislabelled_valid_instance_fails_the_schema(vocab, llguidance):
    out = judge(case({"type": "string", "maxLength": 2}, (True, "abc")), "llguidance", llguidance, vocab)
    assert out.valid_rejected == 1 and not out.passing


def test_property_order_and_integral_floats_are_canonicalised():
    schema = {"type": "object", "properties": {"b": {"type": "number"}, "a": {"enum": [{"x": 0.0}]}}}
    assert list(canonical({"a": {"x": 0.0}, "b": 1.5}, schema)) == ["b", "a"]
    assert canonical({"a": {"x": 0.0}}, schema) == {"a": {"x": 0}}


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"const": {"foo": "bar", "baz": "bax"}}, {"baz": "bax", "foo": "bar"}, {"foo": "bar"}),  # by value
        ({"enum": [{"a": 1, "b": [{"c": 1, "d": 2}]}]}, {"b": [{"d": 2, "c": 1}], "a": 1}, {"a": 1}),
        ({"const": 9007199254740992}, 9007199254740992.0, 9007199254740991.0),
        ({"type": "integer", "multipleOf": 0.5}, 1e308, 0.5),  # 1e308 written as its 309 digits
    ],
)
def test_const_and_big_numbers_compare_by_value(vocab, llguidance, schema, valid, invalid):
    # the grammar writes a const/enum object in the schema's key order, the same value as the instance in another
    out = judge(case(schema, (True, valid), (False, invalid)), "llguidance", llguidance, vocab)
    assert out.valid_rejected == 0 and out.invalid_reaching_user == 0 and out.passing


def test_the_suites_format_json_runs_with_format_as_annotation(vocab, llguidance):
    assert suite_format_mode(Path("format.json")) == "annotation"
    assert suite_format_mode(Path("optional/format/email.json")) == "assertion"
    assert suite_format_mode(Path("optional/format-assertion.json")) == "assertion"
    tests = ((True, "nobody"), (True, 12))
    annotated = judge(
        Case("s", "format#0", {"format": "email"}, [{"valid": v, "data": d} for v, d in tests], "annotation"),
        "llguidance",
        llguidance,
        vocab,
    )
    assert annotated.passing and not annotated.relaxed
    asserted = judge(case({"format": "email"}, *tests), "llguidance", llguidance, vocab)
    assert asserted.valid_rejected == 1


@pytest.mark.parametrize("ref_first", [True, False])
def test_properties_beside_a_ref_in_the_order_the_grammar_writes_them(vocab, llguidance, ref_first):
    # LLGuidance lists the $ref's properties and the node's own in the order the node writes the two keywords
    defs = {"$defs": {"bar": {"properties": {"bar": {"type": "string"}}}}, "unevaluatedProperties": False}
    own = {"properties": {"foo": {"type": "string"}}}
    ref = {"$ref": "#/$defs/bar"}
    schema = {**ref, **own, **defs} if ref_first else {**own, **ref, **defs}
    out = judge(
        case(schema, (True, {"foo": "f", "bar": "b"}), (False, {"foo": "f", "baz": "z"})),
        "llguidance",
        llguidance,
        vocab,
    )
    assert out.valid_rejected == 0 and out.invalid_reaching_user == 0 and out.passing


class AcceptEverything:
    """An engine that claims a strict compile and lets every token through (a broken engine)."""

    name = "accept-all"

    class _Matcher:
        def fill_mask(self, mask):
            mask[:] = -1

        def consume(self, token):
            return True

        def is_accepting(self):
            return True

    class _Constraint:
        source, relaxed = "<anything>", ()

        def matcher(self):
            return AcceptEverything._Matcher()

    def compile(self, schema, *, allow_refusal=True):
        return self._Constraint()


def test_an_engine_that_accepts_everything_is_caught(vocab):
    schema = {"type": "integer", "minimum": 0, "maximum": 10}
    out = judge(case(schema, (True, 5), (False, 11), (False, "a")), "accept-all", AcceptEverything(), vocab)
    assert out.invalid_accepted_grammar == 2 and not out.passing  # undeclared: post-validation may not excuse it
    blind = judge(case(schema, (False, 11)), "accept-all", AcceptEverything(), vocab, validate=lambda s, d: [])
    assert blind.invalid_reaching_user == 1 and not blind.passing
    numbers = summarize([out, blind])
    assert numbers["passing"] == 0 and numbers["invalid_reaching_user"] == 1 and numbers["with_tests"] == 2


def test_min_properties_with_optional_properties_is_widened_never_narrowed(vocab, llguidance):
    """LLGuidance expresses minProperties only when every listed property is required; its lenient mode used to
    demand an unlisted key instead, refusing {"a": 1}. The bound is now dropped from the grammar (a widening) and
    enforced after decoding."""
    schema = {"type": "object", "minProperties": 1, "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}}
    out = judge(
        case(schema, (True, {"a": 1}), (True, {"a": 1, "b": True}), (True, {"c": 0}), (False, {})),
        "llguidance",
        llguidance,
        vocab,
    )
    assert out.valid_rejected == 0 and out.invalid_reaching_user == 0 and out.passing
    from loupe.core.constrain.llguidance import relaxation_notes

    assert "enforced after decoding only: /minProperties" in relaxation_notes(schema)
