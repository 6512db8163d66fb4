"""Relaxing a schema for the grammar only ever widens it: every instance the schema accepts, the relaxed grammar
accepts token by token, over the real schemas of the shared splits (a fixed sample by default, all with -m slow)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe.core.constrain.base import DEFAULT_LAYOUT, LAYOUTS
from loupe.core.constrain.llguidance import plan
from loupe.core.constrain.prepare import for_grammar
from loupe.core.errors import ConstraintError
from loupe.core.schema.validate import schema_problem, validation_errors

from bench.canonical import canonical
from bench.schema_coverage import Case, Vocab, feed, load_cases, make_compiler

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "jsonschema"
SAMPLE_EVERY = 3  # the default run takes every 3rd schema of each split (about 120 relaxed ones, ~10 s)

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/jsonschema")


def relaxed_cases(every: int) -> Iterator[Case]:
    """Every `every`-th schema of each split that loads, has a valid instance, and that the grammar side changes
    (relaxed, widened, or read per its draft)."""
    for path in sorted(DATA.glob("*.jsonl.gz")):
        for i, case in enumerate(load_cases(path)):
            if i % every or not any(t["valid"] for t in case.tests) or schema_problem(case.schema):
                continue
            try:
                _, notes = plan(case.schema, None, allow_refusal=False)
            except ConstraintError:
                continue
            if notes or for_grammar(case.schema)[0] != case.schema:
                yield case


def refused(case: Case, compiler, vocab: Vocab) -> Iterator[str]:
    """The valid instances (valid by the label and by Loupe's validator) the compiled grammar refuses."""
    constraint = compiler.compile(case.schema, allow_refusal=False)
    for test in case.tests:
        if not test["valid"] or validation_errors(case.schema, test["data"]):
            continue
        text = json.dumps(canonical(test["data"], case.schema), separators=LAYOUTS[DEFAULT_LAYOUT], ensure_ascii=False)
        accepted, _ = feed(constraint.matcher(), vocab.tokenize(text), vocab.n_vocab, 1)
        if not accepted:
            yield f"{case.id}: {text[:200]}"


@pytest.fixture(scope="module")
def vocab(tiny_models) -> Vocab:
    return Vocab(tiny_models["smolvlm"].text_path)


def check(every: int, vocab: Vocab, at_least: int) -> None:
    compiler = make_compiler("llguidance", vocab)
    cases = list(relaxed_cases(every))
    assert len(cases) >= at_least  # the property is checked on real relaxed schemas, not on none
    bad = [line for case in cases for line in refused(case, compiler, vocab)]
    assert not bad, "relaxed grammars refused valid instances:\n" + "\n".join(bad)


@needs_data
def test_relaxed_grammars_accept_every_valid_instance_sample(vocab):
    check(SAMPLE_EVERY, vocab, at_least=100)


@needs_data
@pytest.mark.slow
def test_relaxed_grammars_accept_every_valid_instance_all(vocab, request):
    """Every schema (about a minute on two cores): opt in with `pytest -m slow tests/bench`."""
    if "slow" not in str(request.config.getoption("markexpr") or ""):
        pytest.skip("every shared schema takes about a minute: opt in with `pytest -m slow tests/bench`")
    check(1, vocab, at_least=300)
