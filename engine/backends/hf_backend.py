"""What the backends for Hugging Face-format model directories (ONNX, MLX) share: the directory's config, processor
and vocabulary read once, compiling for that tokenizer, and one generation as prefill (the backend's own
`first_logits`) then the shared constrained decode loop fed by the backend's `_feeder`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from loupe.backends import hf_inputs
from loupe.backends.base import Capabilities, Generation, GenerationRequest
from loupe.backends.decode import Feed, prefill_and_decode
from loupe.core.constrain.base import Constraint


class HfBackend:
    """Base of OnnxBackend and MlxVlmBackend: each loads its weights, then calls `_finish_loading`."""

    steerable: ClassVar[bool] = True
    model_dir: Path
    # prefill: (logits for the first output token, the KV cache, prompt tokens, image tokens)
    first_logits: Callable[[GenerationRequest, dict[str, float] | None], tuple[np.ndarray, Any, int, int]]
    _feeder: Callable[[Any, int], Feed]  # the KV cache and the prompt length -> what feeds the decode loop

    def _finish_loading(self, n_ctx: int, t0: float) -> None:
        """Read the directory's config, processor and vocabulary; note the context limit and the load time."""
        self.config = json.loads((self.model_dir / "config.json").read_text())
        self.processor = hf_inputs.load_processor(self.model_dir)
        self._image_token = hf_inputs.image_token_id(self.processor, self.config)
        self._compiler, self.vocab = hf_inputs.vocabulary(self.processor, self.config)
        self._lock = threading.Lock()
        self.n_ctx = n_ctx
        self.capabilities = Capabilities(max_context=n_ctx)
        self.load_ms = (time.perf_counter() - t0) * 1000

    def compile(self, schema: dict[str, Any] | bool, *, allow_refusal: bool = True) -> Constraint:
        """Compile for this model's tokenizer."""
        return self._compiler.compile(schema, allow_refusal=allow_refusal)

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        """Prefill prompt + images, then decode under the constraint (one request at a time)."""
        with self._lock:
            return prefill_and_decode(
                request, self.vocab, self.first_logits, self._feeder, n_ctx=self.n_ctx, cancel=cancel
            )
