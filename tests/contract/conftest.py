"""One fixture, `contract_backend`, that yields every backend the contract suite holds to the same rules.

llama.cpp runs the tiny GGUF models (tests/conftest.py `tiny_models`); MLX and ONNX run the committed tiny
Hugging Face-format models (tests/backends/tiny, built by models/hf_synthetic.py); the fake replays
hand-written valid outputs. A backend whose package is not installed is skipped, named in the reason.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loupe.backends.base import Generation, GenerationRequest
from loupe.backends.fake import FakeBackend
from loupe.core.tasks import builtin_names, builtin_task

TINY = Path(__file__).parent.parent / "backends" / "tiny"

# one valid output per built-in task, for the fake
EXAMPLES = {
    "defects": {"defects": [{"label": "scratch", "box_2d": [100, 200, 300, 400], "severity": 2, "reason": "a line"}]},
    "describe": {"caption": "A grey panel.", "tags": ["panel", "grey"]},
    "product": {"category": "panel", "brand": None, "model_name": None, "key_attributes": ["flat"]},
    "receipt": {"merchant": None, "date": None, "currency": "EUR", "total": 12.5, "line_items": []},
}


class TaskAwareFake(FakeBackend):
    """The fake, answering each built-in task's schema with its example (refusing `false`), cut at max_tokens
    one byte per token like a real backend, and honouring cancel."""

    def __init__(self) -> None:
        super().__init__(["{}"], model_id="fake")
        self._by_schema = {_key(builtin_task(n).schema): json.dumps(EXAMPLES[n]) for n in builtin_names()}

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        if cancel is not None and cancel.is_set():
            return Generation(text="", stop="cancelled")
        text = self._by_schema.get(_key(request.schema), "REFUSE: nothing fits")
        stop = "eos"
        if len(text.encode()) > request.max_tokens:
            text, stop = text.encode()[: request.max_tokens].decode(), "max_tokens"
        self.outputs = [(text, stop)]
        self.requests.clear()
        return super().generate(request, cancel=cancel)


def _key(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True)


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"backend needs {', '.join(missing)} (not installed)")


def _llama(family: str, tiny_models: Any) -> Any:
    _needs("llama_cpp")
    from loupe.backends.llama_cpp import LlamaCppBackend

    model = tiny_models[family]
    return LlamaCppBackend(model.text_path, model.mmproj_path, model_id=f"tiny-{family}", n_threads=1)


def _mlx(family: str, tiny_models: Any) -> Any:
    _needs("mlx", "mlx_vlm", "transformers")
    from loupe.backends.mlx_vlm import MlxVlmBackend

    return MlxVlmBackend(TINY / family / "hf", model_id=f"tiny-{family}-mlx")


def _onnx(family: str, tiny_models: Any) -> Any:
    _needs("onnxruntime", "transformers")
    from loupe.backends.onnx import OnnxBackend

    return OnnxBackend(TINY / family / "hf", ep="cpu", model_id=f"tiny-{family}-onnx", n_threads=1)


FACTORIES: dict[str, Callable[[Any], Any]] = {
    "fake": lambda tiny: TaskAwareFake(),
    "llama_cpp-smolvlm": lambda tiny: _llama("smolvlm", tiny),
    "llama_cpp-gemma3": lambda tiny: _llama("gemma3", tiny),
    "mlx-smolvlm": lambda tiny: _mlx("smolvlm", tiny),
    "mlx-gemma3": lambda tiny: _mlx("gemma3", tiny),
    "onnx-smolvlm": lambda tiny: _onnx("smolvlm", tiny),
}


@pytest.fixture(scope="module", params=list(FACTORIES))
def contract_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Each backend in turn (loaded once per module; closed after)."""
    tiny = request.getfixturevalue("tiny_models") if request.param.startswith("llama") else None
    backend = FACTORIES[request.param](tiny)
    yield backend
    backend.close()
