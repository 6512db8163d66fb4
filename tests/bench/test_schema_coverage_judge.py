"""The coverage benchmark's own judgement, pinned on small schemas whose answers are known."""

from __future__ import annotations

import json
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
    # whichever keyword the node writes first, its own properties decode before the $ref's (constrain.prepare)
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


# -- issue 19: the grammar never refuses what the schema allows ------------------------------------------------------
DRAFT4 = "http://json-schema.org/draft-04/schema#"
DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"


def run(llguidance, vocab, schema: Any, *tests: tuple[bool, Any]):
    return judge(case(schema, *tests), "llguidance", llguidance, vocab)


def test_bounded_number_accepts_exponent_form_and_out_of_bounds_is_caught_after(vocab, llguidance):
    """LLGuidance's range regex writes bounded numbers as plain decimals: 1e-06 was refused under minimum 0. The
    bounds now leave the grammar (declared) and validation after decoding enforces them."""
    schema = {"type": "number", "minimum": 0, "exclusiveMaximum": 10}
    out = run(llguidance, vocab, schema, (True, 1e-06), (True, 0.000001), (True, 2.5e-3), (False, -1e-06), (False, 1e2))
    assert out.valid_rejected == 0 and out.passing and out.relaxed
    assert out.invalid_accepted_grammar == 2 and out.caught_after_decoding == 2 and out.invalid_reaching_user == 0
    from loupe.core.constrain.llguidance import relaxation_notes

    assert relaxation_notes(schema) == (
        "number bounds enforced after decoding only, so exponent form such as 1e-06 stays allowed: "
        "/minimum, /exclusiveMaximum",
    )


def test_formats_the_grammar_only_shapes_are_declared_and_caught_after(vocab, llguidance):
    """LLGuidance's date regex knows month lengths but not leap years: the load notes say the format is checked in full
    after decoding, and the checker refuses 29 February 2023."""
    schema = {"type": "object", "properties": {"d": {"type": "string", "format": "date"}, "n": {"format": "time"}}}
    out = run(llguidance, vocab, schema, (True, {"d": "2024-02-29"}), (False, {"d": "2023-02-29"}))
    assert out.passing and out.relaxed and out.valid_rejected == 0
    assert out.invalid_accepted_grammar == 1 and out.caught_after_decoding == 1 and out.invalid_reaching_user == 0
    from loupe.core.constrain.llguidance import relaxation_notes

    assert relaxation_notes(schema) == (
        "format checked in full after decoding only (the grammar admits its shape): "
        "date at /properties/d, time at /properties/n",
    )
    exact = {"type": "object", "properties": {"ip": {"type": "string", "format": "ipv4"}}}
    assert relaxation_notes({**exact, "examples": [{"format": "date"}]}) == ()  # a format the grammar has exactly


def test_bounds_with_multiple_of_stay_in_the_grammar(vocab, llguidance):
    # LLGuidance writes multipleOf numbers as decimals whatever the bounds: dropping them would widen for nothing
    schema = {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.5}
    out = run(llguidance, vocab, schema, (True, 2.5), (False, 10.5), (False, -1))
    assert out.passing and not out.relaxed and out.invalid_accepted_grammar == 0


@pytest.mark.parametrize("draft", [DRAFT4, DRAFT7])
def test_draft_04_07_ignore_keywords_beside_ref(vocab, llguidance, draft):
    schema = {
        "$schema": draft,
        "type": "string",
        "$ref": "#/definitions/obj",
        "definitions": {"obj": {"type": "object", "properties": {"a": {"type": "integer"}}}},
    }
    out = run(llguidance, vocab, schema, (True, {"a": 1}), (False, "x"), (False, {"a": "b"}))
    assert out.passing and not out.relaxed and out.valid_rejected == 0 and out.invalid_accepted_grammar == 0


def test_2020_12_applies_keywords_beside_ref_and_draft_07_does_not(vocab, llguidance):
    schema = {"$schema": DRAFT2020, "maxLength": 2, "$ref": "#/$defs/s", "$defs": {"s": {"type": "string"}}}
    out = run(llguidance, vocab, schema, (True, "ab"), (False, "abc"), (False, 1))
    assert out.passing and not out.relaxed and out.invalid_accepted_grammar == 0
    old = {"$schema": DRAFT7, "maxLength": 2, "$ref": "#/definitions/s", "definitions": {"s": {"type": "string"}}}
    out = run(llguidance, vocab, old, (True, "ab"), (True, "abc"), (False, 1))
    assert out.passing and not out.relaxed and out.valid_rejected == 0


def test_object_keys_decode_in_the_nodes_own_properties_order_before_its_branches(vocab, llguidance):
    """Glaiveai2K calculate_area: `oneOf` written before `properties` made LLGuidance put the branch's `shape` first,
    refusing {"radius": 10, "shape": "circle"} in the order the schema's own properties list."""
    schema = {
        "oneOf": [
            {"properties": {"shape": {"const": "circle"}}, "required": ["radius"]},
            {"properties": {"shape": {"const": "square"}}, "required": ["side"]},
        ],
        "properties": {
            "radius": {"type": "number"},
            "shape": {"enum": ["circle", "square"]},
            "side": {"type": "number"},
        },
        "required": ["shape"],
        "type": "object",
    }
    circle, square = {"radius": 10, "shape": "circle"}, {"shape": "square", "side": 2}
    out = run(llguidance, vocab, schema, (True, circle), (True, square))
    assert out.valid_rejected == 0 and out.passing


def test_unevaluated_properties_beside_ref_accepts_the_refs_properties(vocab, llguidance):
    # JSON Schema Test Suite draft2020-12 unevaluatedProperties#19
    schema = {
        "$schema": DRAFT2020,
        "$ref": "#/$defs/bar",
        "properties": {"foo": {"type": "string"}},
        "unevaluatedProperties": False,
        "$defs": {"bar": {"properties": {"bar": {"type": "string"}}}},
    }
    extra = {"foo": "f", "bar": "b", "baz": "z"}
    out = run(llguidance, vocab, schema, (True, {"foo": "foo", "bar": "bar"}), (False, extra))
    assert out.valid_rejected == 0 and out.invalid_reaching_user == 0 and out.passing


def test_refs_resolve_against_their_enclosing_id_at_load():
    from loupe.core.schema.validate import schema_problem

    # ref#15 of the suite: "#/$defs/inner" is relative to the nested $id, so it resolves (was refused at load)
    nested = {
        "$schema": DRAFT2020,
        "$id": "http://example.com/a.json",
        "properties": {"foo": {"$id": "b.json", "$defs": {"inner": {"type": "string"}}, "$ref": "#/$defs/inner"}},
        "$ref": "b.json",
    }
    assert schema_problem(nested) is None
    # refRemote#4: folderInteger.json is a file next to the nested base URI, never fetched: refused at load, where
    # every result would otherwise fail validation
    remote = {
        "$schema": DRAFT2020,
        "$id": "http://localhost:1234/draft2020-12/",
        "items": {"$id": "baseUriChange/", "items": {"$ref": "folderInteger.json"}},
    }
    message, pointer = schema_problem(remote)
    assert pointer == "/items/items/$ref" and "never fetches" in message
    # a "$ref" key inside `enum` data is not a reference
    assert schema_problem({"enum": [{"$ref": "#/nowhere"}]}) is None


def test_array_items_in_a_matching_branch_are_canonicalised():
    item = {"type": "object", "properties": {"type": {"type": "string"}, "children": {"type": "string"}}}
    schema = {"oneOf": [{"type": "string"}, {"type": "array", "items": item}]}
    assert [list(o) for o in canonical([{"children": "x", "type": "h1"}], schema)] == [["type", "children"]]
    # an integral number in digits, exactly the value written (1e308 is 10**308, not the float's binary value)
    assert canonical(1e308, {"type": "integer"}) == 10**308 and canonical(1e308, {"type": "number"}) == 10**308


def test_test_suite_ids_carry_the_relative_path(tmp_path):
    from bench.schema_coverage import load_cases, table

    group = [{"schema": {}, "tests": [{"data": 1, "valid": True}]}]
    for rel in ("optional/ecmascript-regex.json", "optional/format/ecmascript-regex.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(group))
    cases = list(load_cases(tmp_path))
    assert [c.id for c in cases] == ["optional/ecmascript-regex#0", "optional/format/ecmascript-regex#0"]
    splits = {c.split: summarize([judge_free(c)]) for c in cases}
    text = table({"splits": splits, "overall": summarize([judge_free(c) for c in cases])}, "llguidance")
    assert "test-suite/optional/format/ecmascript-regex " in text and "test-suite/optional/ecmascript-regex " in text


def judge_free(c: Case):
    from bench.schema_coverage import Outcome

    return Outcome(c.split, c.id, with_tests=True, compiled=True, passing=True)
