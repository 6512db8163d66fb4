"""Fixtures for end-to-end tests through the real llama.cpp on tiny self-built GGUF VLMs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.models.synthetic import SyntheticModel

from tests.conftest import FAMILIES


@pytest.fixture(scope="module", params=FAMILIES)
def backend(request: pytest.FixtureRequest, tiny_models: dict[str, SyntheticModel]) -> Iterator[LlamaCppBackend]:
    """A loaded llama.cpp backend per family (module scope: loading is ~30 ms, but keep it tidy)."""
    model = tiny_models[request.param]
    b = LlamaCppBackend(model.text_path, model.mmproj_path, model_id=f"tiny-{request.param}", n_threads=1)
    yield b
    b.close()
