"""Strict `format` checks (loupe.core.schema.formats) on the official JSON Schema Test Suite's own cases, where the
suite is beside the checkout (../shared), and on cases written here; the grammar holding the same formats and
ECMA-262 patterns; the task option that makes `format` an annotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import llguidance as llg
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.core.constrain.base import DEFAULT_LAYOUT, LAYOUTS
from loupe.core.constrain.llguidance import LLGuidanceCompiler
from loupe.core.errors import TaskError
from loupe.core.images.load import LoadedImage
from loupe.core.schema.formats import STRICT
from loupe.core.schema.validate import validation_errors
from loupe.core.tasks import task_from_dict
from loupe.core.types import Status
from PIL import Image

from tests.engine.test_contract_units import ByteTokenizer  # the smallest real LLGuidance tokenizer

SUITE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "jsonschema" / "test-suite" / "draft2020-12"
FILES = {
    "hostname": "hostname",
    "idn-hostname": "idn-hostname",
    "regex": "ecmascript-regex",
    "regex ": "regex",
    "uri-template": "uri-template",
    "time": "time",
    "date-time": "date-time",
    "relative-json-pointer": "relative-json-pointer",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_suite_cases_of_each_strict_format(name: str):
    path = SUITE / "optional" / "format" / f"{FILES[name]}.json"
    if not path.exists():
        pytest.skip(f"the JSON Schema Test Suite is not beside this checkout ({path})")
    wrong = []
    for case in json.loads(path.read_text()):
        for test in case["tests"]:
            if (not validation_errors(case["schema"], test["data"])) != test["valid"]:
                wrong.append((test["description"], test["data"]))
    assert wrong == []


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("hostname", "example.com", True),
        ("hostname", "xn--X", False),
        ("hostname", "example.", False),
        ("hostname", "a" * 64 + ".com", False),
        ("hostname", "ab--c.com", False),
        ("hostname", "xn--bcher-kva.ch", True),
        ("idn-hostname", "bücher.ch", True),
        ("idn-hostname", "example。", False),
        ("regex", "(?<year>\\d{4})-\\k<year>", True),
        ("regex", "(?P<year>x)", False),
        ("regex", "(?i)abc", False),
        ("regex", "[^]", True),
        ("regex", "\\cA", True),
        ("regex", "\\\\a", True),
        ("regex", "a++", False),
        ("uri-template", "http://x/{a}{?b,c*}", True),
        ("uri-template", "{a,}", False),
        ("uri-template", "{v:01}", False),
        ("time", "23:59:60Z", True),
        ("time", "12:59:60Z", False),
        ("time", "01:29:60+01:30", True),
        ("date-time", "2024-02-29T10:00:00Z", True),
        ("date-time", "2023-02-29T10:00:00Z", False),
        ("date-time", "1985-04-12T23:20:50Z\n", False),
        ("relative-json-pointer", "0#", True),
    ],
)
def test_strict_formats(name: str, value: str, ok: bool):
    assert STRICT[name](value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("http://[::1]:8080/x", True),
        ("http://[::ffff:192.168.0.1]/", True),
        ("http://[::ffff:192.168.0.01]", False),
        ("http://2001:0db8:85a3:0000:0000:8a2e:0370:7334", False),
        ("http://example.com:80/a", True),
    ],
)
def test_uri_hosts(value: str, ok: bool):
    assert (validation_errors({"format": "iri"}, value) == []) is ok
    assert (validation_errors({"format": "uri-reference"}, value) == []) is ok


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        ("^\\S$", "\ufeff", False),
        ("^\\s$", "\u00a0", True),
        ("^\\d+$", "\u0967\u0968", False),
        ("^\\D$", "\u0967", True),
        ("^\\w$", "\u00e9", False),
        ("^\\cC$", "\x03", True),
        ("^\\p{Letter}+$", "école", True),
    ],
)
def test_patterns_follow_ecma_262(pattern: str, value: str, ok: bool):
    assert (validation_errors({"type": "string", "pattern": pattern}, value) == []) is ok


@pytest.fixture(scope="module")
def compiler() -> LLGuidanceCompiler:
    return LLGuidanceCompiler(llg.LLTokenizer(llg.TokenizerWrapper(ByteTokenizer())))


def grammar_accepts(compiler: LLGuidanceCompiler, schema: Any, value: Any) -> bool:
    """Whether the decoding grammar lets `value` through, fed byte by byte in the default layout."""
    m = compiler.compile(schema, allow_refusal=False).matcher()
    text = json.dumps(value, separators=LAYOUTS[DEFAULT_LAYOUT], ensure_ascii=False)
    return all(m.consume(b) for b in text.encode()) and m.is_accepting()


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ('"joe bloggs"@example.com', True),  # RFC 5321 quoted local parts
        ('"joe..bloggs"@example.com', True),
        ('"joe@bloggs"@example.com', True),
        ('"a\\"b"@example.com', True),  # a quoted pair
        ("joe.bloggs@[IPv6:::1]", True),  # address literals
        ("joe.bloggs@[127.0.0.1]", True),
        ("te~st@example.com", True),
        ("te..st@example.com", False),
        ("joe bloggs@example.com", False),
        ("joe.bloggs@[127.0.0.300]", False),
        ("a@[IPv6:1:2:3:4:5:6:7::]", False),  # RFC 5321: at most 6 groups beside "::"
        ("a@[IPv6:1:2:3:4:5:6::]", True),
        ('"a"b"@example.com', False),
    ],
)
def test_email_as_rfc_5321_writes_it_in_the_grammar_and_after(compiler, value: str, ok: bool):
    schema = {"type": "string", "format": "email"}
    assert (validation_errors(schema, value) == []) is ok
    assert grammar_accepts(compiler, schema, value) is ok
    assert compiler.compile(schema).relaxed == ()  # the grammar holds all of it, nothing left to after decoding


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("::ffff:192.168.0.1", True),  # IPv6 with an embedded IPv4
        ("1:2::192.168.0.1", True),
        ("1::d6:192.168.0.1", True),
        ("1000:1000:1000:1000:1000:1000:255.255.255.255", True),
        ("::", True),
        ("::ffff:192.168.0.01", False),  # leading zero in an IPv4 octet
        ("1::2:192.168.256.1", False),
        ("100:100:100:100:100:100:100:255.255.255.255", False),
        ("fe80::a%eth1", False),
        ("1:2:3:4:5:6:7:\u09ea", False),
    ],
)
def test_mixed_ipv6_in_the_grammar_and_after(compiler, value: str, ok: bool):
    schema = {"type": "string", "format": "ipv6"}
    assert (validation_errors(schema, value) == []) is ok
    assert grammar_accepts(compiler, schema, value) is ok


def test_email_format_beside_a_pattern_keeps_both(compiler):
    schema = {"type": "string", "format": "email", "pattern": "\\.org$"}
    assert grammar_accepts(compiler, schema, '"a b"@x.org')
    assert not grammar_accepts(compiler, schema, '"a b"@x.com')  # the pattern
    assert not grammar_accepts(compiler, schema, "a b@x.org")  # the format
    assert compiler.compile(schema).relaxed == ()


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        ("^\\D$", "\u0967", True),  # ECMA-262's \d is ASCII only: a Devanagari one is a non-digit
        ("^[\\D]$", "\u0967", True),
        ("^[\\D.]$", "5", False),
        ("^\\d$", "\u0967", False),
        ("^\\s$", "\ufeff", True),  # U+FEFF is ECMA white space, not Unicode's
        ("^\\S$", "\ufeff", False),
        ("^[\\S]$", "\ufeff", False),
        ("^\\cC$", "\x03", True),
        ("^[[]$", "[", True),  # a literal "[" in a class
        ("^[a&&b]$", "&", True),  # no set operators in ECMA classes
        ("^.$", "\u00e9", True),
        ("^abc$", "abc\n", False),  # `$` is the end, not before a final newline
        ("^[.$]+$", ".$", True),
    ],
)
def test_patterns_follow_ecma_262_in_the_grammar_too(compiler, pattern: str, value: str, ok: bool):
    schema = {"type": "string", "pattern": pattern}
    assert (validation_errors(schema, value) == []) is ok
    assert grammar_accepts(compiler, schema, value) is ok
    assert compiler.compile(schema).relaxed == ()


@pytest.mark.parametrize("value", ["\r", "\u2028", "\u2029", "\n"])
def test_ecma_dot_takes_no_line_terminator_after_decoding(value: str):
    # the grammar's `.` lets \r, U+2028 and U+2029 through (loupe.core.constrain.standard says why); validation not
    assert validation_errors({"type": "string", "pattern": "^.$"}, value)


EMAIL_TASK = {
    "instructions": "Who is it for?",
    "schema": {"type": "object", "properties": {"to": {"type": "string", "format": "email"}}, "required": ["to"]},
}


def test_format_as_annotation_or_assertion_after_decoding():
    schema = EMAIL_TASK["schema"]
    assert validation_errors(schema, {"to": "nobody"})  # the default: an assertion
    assert validation_errors(schema, {"to": "nobody"}, formats="annotation") == []
    assert validation_errors(schema, {"to": 3}, formats="annotation")  # everything else still holds


def test_the_load_notes_state_the_format_mode():
    default = task_from_dict(EMAIL_TASK, "t")
    assert default.options.format == "assertion"
    assert default.notes[0].startswith("format is an assertion") and "email" in default.notes[0]
    annotated = task_from_dict({**EMAIL_TASK, "options": {"format": "annotation"}}, "t")
    assert annotated.notes[0].startswith("format is an annotation") and "email" in annotated.notes[0]
    assert default.with_options(format="annotation").notes == annotated.notes
    assert task_from_dict({**EMAIL_TASK, "schema": {"type": "string"}}, "t").notes == ()  # no format, no note
    unknown = task_from_dict({**EMAIL_TASK, "schema": {"type": "string", "format": "topic"}}, "t")
    assert unknown.notes[0].endswith("topic unknown, not checked")  # never said to be checked
    with pytest.raises(TaskError) as err:
        task_from_dict({**EMAIL_TASK, "options": {"format": "loose"}}, "t")
    assert err.value.pointer == "/options/format" and "annotation" in err.value.problem


def test_a_task_with_format_annotation_accepts_a_non_email_and_the_default_refuses_it(compiler):
    """The engine compiles the grammar under the task's option and validates under it (a real LLGuidance grammar;
    the scripted backend answers as a model that wrote "nobody")."""

    class Scripted(FakeBackend):
        def compile(self, schema: Any, *, allow_refusal: bool = True) -> Any:
            return compiler.compile(schema, allow_refusal=allow_refusal)

    answer = '{"to": "nobody"}'
    image = LoadedImage("mem.png", Image.new("RGB", (64, 32)), "0" * 64, "PNG", ())
    for mode, status in (("annotation", Status.OK), ("assertion", Status.INVALID)):
        task = task_from_dict({**EMAIL_TASK, "options": {"format": mode, "retries": 0}}, "t")
        engine = Engine(Scripted([answer]))
        m = engine.constraint_for(task).matcher()
        assert (all(m.consume(b) for b in answer.encode()) and m.is_accepting()) is (mode == "annotation")
        assert engine.analyze(AnalyzeRequest((image,), task)).status is status
