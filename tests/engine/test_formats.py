"""Strict `format` checks (loupe.core.schema.formats) on the official JSON Schema Test Suite's own cases, where the
suite is beside the checkout (../shared), and on cases written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loupe.core.schema.formats import STRICT
from loupe.core.schema.validate import validation_errors

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
