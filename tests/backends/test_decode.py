"""The shared decode loop (engine/backends/decode.py) on the real LLGuidance constraint and the tiny SmolVLM
tokenizer, with logits from a scripted function so the expected probabilities are known exactly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from loupe.backends.base import GenerationRequest
from loupe.backends.decode import decode
from loupe.core.constrain.base import allowed_ids, mask_words

from tests.backends.conftest import TINY

pytest.importorskip("transformers")

SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tok():
    from loupe.backends import hf_inputs

    processor = hf_inputs.load_processor(TINY / "smolvlm" / "hf")
    return hf_inputs.vocabulary(processor, {})


def _request(constraint, **kw) -> GenerationRequest:
    return GenerationRequest(text="x", images=(), constraint=constraint, schema=SCHEMA, **kw)


def test_probabilities_are_renormalized_over_the_allowed_tokens_and_forced_ones_are_certain(tok):
    compiler, vocab = tok
    constraint = compiler.compile(SCHEMA, allow_refusal=False)
    rng = np.random.default_rng(7)
    seen: list[np.ndarray] = []

    def logits() -> np.ndarray:
        out = rng.normal(0, 2, vocab.n_vocab).astype(np.float32)
        seen.append(out)
        return out

    fed: list[list[int]] = []

    def feed(tokens: list[int]) -> np.ndarray:
        fed.append(tokens)
        return logits()

    timings: dict[str, float] = {}
    gen = decode(_request(constraint), vocab, logits(), feed, n_past=0, n_ctx=1000, timings=timings)
    assert gen.stop == "eos" and gen.text in ('{"ok": true}', '{"ok": false}')  # the spaced layout
    assert "constraint_ms" in timings
    # replay each fed batch: its first token was chosen from the logits then current, the rest fast-forwarded
    matcher = constraint.matcher()
    mask = np.zeros(mask_words(vocab.n_vocab), dtype=np.int32)
    i = 0
    for logit, batch in zip(seen, fed, strict=False):
        matcher.fill_mask(mask)
        allowed = allowed_ids(mask, vocab.n_vocab)
        p = np.exp(logit[allowed].astype(np.float64) - logit[allowed].max())
        p /= p.sum()
        assert batch[0] == allowed[np.argmax(p)]  # greedy at temperature 0
        assert gen.steps[i].prob == pytest.approx(1.0 if allowed.size == 1 else p.max())
        assert all(s.prob == 1.0 and s.forced for s in gen.steps[i + 1 : i + len(batch)])
        for t in batch:
            assert matcher.consume(t)
        i += len(batch)
    assert len(fed) >= 1
    assert any(s.forced for s in gen.steps)  # '{"ok":' is forced by the grammar


def test_max_tokens_and_cancel_are_values(tok):
    compiler, vocab = tok
    constraint = compiler.compile(SCHEMA, allow_refusal=False)
    flat = np.zeros(vocab.n_vocab, dtype=np.float32)
    gen = decode(_request(constraint, max_tokens=2), vocab, flat, lambda t: flat, n_past=0, n_ctx=1000, timings={})
    assert gen.stop == "max_tokens" and len(gen.steps) == 2
    cancel = threading.Event()
    cancel.set()
    gen = decode(_request(constraint), vocab, flat, lambda t: flat, n_past=0, n_ctx=1000, timings={}, cancel=cancel)
    assert gen.stop == "cancelled" and gen.text == ""


def test_on_token_sees_every_token_as_it_is_decoded_and_can_stop_the_loop(tok):
    compiler, vocab = tok
    constraint = compiler.compile(SCHEMA, allow_refusal=False)
    rng = np.random.default_rng(3)
    seen: list[tuple[bytes, object]] = []
    gen = decode(
        _request(constraint, on_token=lambda piece, step: seen.append((piece, step))),
        vocab,
        rng.normal(0, 2, vocab.n_vocab),
        lambda t: rng.normal(0, 2, vocab.n_vocab),
        n_past=0,
        n_ctx=1000,
        timings={},
    )
    assert b"".join(p for p, _ in seen).decode() == gen.text and [s for _, s in seen] == gen.steps
    assert any(s.forced for _, s in seen) and len(seen) > 2  # fast-forwarded tokens are reported too
    cancel = threading.Event()
    flat = np.zeros(vocab.n_vocab, dtype=np.float32)
    gen = decode(
        _request(constraint, on_token=lambda piece, step: cancel.set()),
        vocab,
        flat,
        lambda t: flat,
        n_past=0,
        n_ctx=1000,
        timings={},
        cancel=cancel,
    )
    assert gen.stop == "cancelled" and 0 < len(gen.steps) < 10  # stopped right after the batch that set it
