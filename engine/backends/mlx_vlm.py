"""MLX backend: a Hugging Face-format (or mlx-community) VLM through mlx-vlm, decoded by our own loop.

mlx-vlm loads the weights and runs the vision tower and the language model (Apple GPU on macOS, the
CPU build elsewhere); we drive the model's forward pass with its KV cache ourselves instead of
`mlx_vlm.generate`, so the shared constrained loop (backends.decode) masks the logits with our
constraint, keeps renormalized probabilities and fast-forwards forced tokens exactly as on llama.cpp.
(mlx-vlm's own llguidance processor masks with a Metal-only kernel and cannot run on Linux.)
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any, ClassVar

import mlx.core as mx
import numpy as np
from loupe.backends import hf_inputs
from loupe.backends.base import GenerationRequest
from loupe.backends.decode import Feed
from loupe.backends.hf_backend import HfBackend
from loupe.core.errors import BackendError, ModelLoadError
from mlx_vlm import load as mlx_load
from mlx_vlm.models.cache import make_prompt_cache

_TEXT_KEYS = ("input_ids", "pixel_values", "attention_mask")


class MlxVlmBackend(HfBackend):
    """A loaded mlx-vlm model with its processor."""

    name: ClassVar[str] = "mlx"

    def __init__(self, model_dir: str | Path, *, model_id: str | None = None, n_ctx: int = 8192) -> None:
        t0 = time.perf_counter()
        self.model_dir = Path(model_dir)
        hf_inputs.check_model_dir(self.model_dir)
        if not any(self.model_dir.glob("*.safetensors")):
            raise ModelLoadError(f"{self.model_dir} has no *.safetensors weights (an MLX model directory has them)")
        self.model_id = model_id or self.model_dir.name
        try:
            self.model, _ = mlx_load(str(self.model_dir))
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"mlx-vlm cannot load {self.model_dir}: {str(exc).splitlines()[0][:300]}") from None
        self._finish_loading(n_ctx, t0)

    @classmethod
    def is_available(cls) -> bool:
        """Whether mlx and mlx-vlm are installed."""
        return all(importlib.util.find_spec(m) is not None for m in ("mlx", "mlx_vlm", "transformers"))

    def first_logits(
        self, request: GenerationRequest, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, list[Any], int, int]:
        """Prefill: (logits for the first output token, the KV cache, prompt tokens, image tokens)."""
        timings = {} if timings is None else timings
        inputs = hf_inputs.prepare(self.processor, request, timings)
        t1 = time.perf_counter()
        ids = inputs["input_ids"]
        if ids.shape[1] >= self.n_ctx:
            raise BackendError(f"prompt needs more than the context of {self.n_ctx} tokens; lower the image detail")
        extra = {k: mx.array(v) for k, v in inputs.items() if k not in _TEXT_KEYS}
        pixels = mx.array(inputs["pixel_values"]) if "pixel_values" in inputs else None
        mask = mx.array(inputs["attention_mask"]) if "attention_mask" in inputs else None
        input_ids = mx.array(ids)
        emb = self.model.get_input_embeddings(input_ids, pixels, mask=mask, **extra)
        mx.eval(emb.inputs_embeds)
        t2 = time.perf_counter()
        timings["encode_ms"] = (t2 - t1) * 1000  # the vision tower + projector (and the token embeddings)
        kwargs = {k: v for k, v in emb.to_dict().items() if k != "inputs_embeds" and v is not None}
        cache = make_prompt_cache(self.model.language_model)
        out = self.model.language_model(input_ids, inputs_embeds=emb.inputs_embeds, cache=cache, **kwargs)
        logits = _last(out.logits)
        timings["prefill_ms"] = (time.perf_counter() - t2) * 1000
        n_image = int((ids[0] == self._image_token).sum())
        return logits, cache, int(ids.shape[1]), n_image

    def _feeder(self, cache: list[Any], n_prompt: int) -> Feed:
        def feed(tokens: list[int]) -> np.ndarray:
            return _last(self.model.language_model(mx.array([tokens]), cache=cache).logits)

        return feed

    def close(self) -> None:
        """Drop the model."""
        self.model = None


def _last(logits: Any) -> np.ndarray:
    return np.array(logits[0, -1].astype(mx.float32))
