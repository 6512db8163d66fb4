"""A cancel set while llama.cpp evaluates the prompt stops it between graph nodes (real llama.cpp, tiny models).

The cancel objects here are set after a given number of checks: llama.cpp asks between graph nodes, so the test
knows the prompt was stopped part-way without timing anything."""

from __future__ import annotations

import pytest
from loupe.backends.llama_cpp import LlamaCppBackend

from tests.conftest import FAMILIES, defects_request


class SetAfter:
    """An Event-like flag that reads as set from its n-th check on, counting the checks."""

    def __init__(self, n: int) -> None:
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


@pytest.fixture(params=FAMILIES)
def backend(request: pytest.FixtureRequest, tiny_models) -> LlamaCppBackend:
    model = tiny_models[request.param]
    b = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, n_batch=16, n_ubatch=16)
    yield b
    b.close()


def test_a_cancel_during_the_prompt_stops_it_and_the_backend_stays_usable(backend, picture):
    reference = backend.generate(defects_request(backend, picture, 20))
    backend.forget()
    cancel = SetAfter(5)
    stopped = backend.generate(defects_request(backend, picture, 20), cancel=cancel)  # type: ignore[arg-type]
    assert stopped.stop == "cancelled" and stopped.text == "" and not stopped.steps
    # stopped inside the first micro-batch of 16 tokens: the prompt is hundreds of tokens long
    assert cancel.checks == 5
    assert stopped.timings.get("prefill_tokens", 0) < 16
    again = backend.generate(defects_request(backend, picture, 20))
    assert again.text == reference.text
    assert [s.prob for s in again.steps] == pytest.approx([s.prob for s in reference.steps])


def test_a_cancel_never_set_changes_nothing_and_is_not_asked_while_decoding(backend, picture):
    reference = backend.generate(defects_request(backend, picture, 20))
    runs = {}
    for max_tokens in (20, 8):
        backend.forget()
        never = SetAfter(10**9)
        runs[max_tokens] = (backend.generate(defects_request(backend, picture, max_tokens), cancel=never), never.checks)
    out, checks = runs[20]
    assert out.text == reference.text and out.stop == reference.stop
    short, short_checks = runs[8]
    assert short_checks > len(short.steps) + 1  # llama.cpp asked between the prompt's graph nodes
    # 12 more tokens decoded add at most one check per token (the decode loop's), not one per graph node
    assert 0 <= checks - short_checks <= len(out.steps) - len(short.steps) + 1
