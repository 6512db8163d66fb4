"""Fixtures for end-to-end tests through the real llama.cpp on tiny self-built GGUF VLMs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.backends.llama_cpp import LlamaCppBackend
from models.synthetic import SyntheticModel, build

FAMILIES = ("smolvlm", "gemma3")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_models(tiny_dir: Path) -> dict[str, SyntheticModel]:
    """Both tiny families, built once per test session (milliseconds each)."""
    return {fam: build(f"tiny-{fam}", tiny_dir) for fam in FAMILIES}


@pytest.fixture(scope="module", params=FAMILIES)
def backend(request: pytest.FixtureRequest, tiny_models: dict[str, SyntheticModel]) -> Iterator[LlamaCppBackend]:
    """A loaded llama.cpp backend per family (module scope: loading is ~30 ms, but keep it tidy)."""
    model = tiny_models[request.param]
    b = LlamaCppBackend(model.text_path, model.mmproj_path, model_id=f"tiny-{request.param}", n_threads=2)
    yield b
    b.close()
